//! The span of one HTTP request (`tracing-actix-web`'s `TracingLogger`),
//! and the line logged when it is answered.
//!
//! It records what an operator needs to find a request and nothing a client
//! must keep secret: the path without its query (a socket's `?ticket=` or
//! `?token=`), no header (`Authorization`), and the client's address as
//! `peer::client_ip` believes it. A WebSocket upgrade adds its
//! `connection_id` (`ws.rs`); its span lasts as long as the socket.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpMessage as _, web};
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{RequestId, RootSpanBuilder};

use super::{AppState, peer};

/// Builds each request's span; see the module's documentation.
pub struct RequestSpan;

/// When the request arrived, for the line logged when it is answered.
struct Arrived(Instant);

/// Operators' probes, polled every few seconds: logged only at debug level.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Arrived(Instant::now()));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let client_ip = request
            .app_data::<web::Data<AppState>>()
            .map(|state| peer::client_ip(request.request(), &state.trusted_proxies).to_string());
        // At ERROR level so that it is enabled whatever the filter, and the
        // warnings logged while handling the request keep its fields.
        tracing::error_span!(
            "HTTP request",
            http.method = %request.method(),
            http.target = %request.path(),
            http.route = Empty,
            http.client_ip = client_ip.as_deref(),
            http.status_code = Empty,
            %request_id,
            connection_id = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, request) = match outcome {
            Ok(response) => (response.status(), Some(response.request())),
            Err(error) => (error.as_response_error().status_code(), None),
        };
        span.record("http.status_code", status.as_u16());
        let route = request.and_then(|request| request.match_pattern());
        if let Some(route) = &route {
            span.record("http.route", route.as_str());
        }
        let elapsed_ms = request.and_then(|request| {
            let arrived = request.extensions().get::<Arrived>()?.0;
            Some(arrived.elapsed().as_micros() as f64 / 1000.0)
        });
        let probe = request.is_some_and(|request| PROBES.contains(&request.path()));
        // Called inside the span: the line carries its fields.
        if probe {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request answered");
        } else {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request answered");
        }
    }
}
