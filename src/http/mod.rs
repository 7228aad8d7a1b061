//! The HTTP face of a node (actix-web): routes, the bearer-token extractor and
//! the mapping of errors to the contract's JSON bodies. Only this module knows
//! about actix.

pub mod admin;
pub mod api;
pub mod headers;
pub mod limits;
pub mod peer;
pub mod request_span;
pub mod ws;

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::actors::NodeContext;
use crate::actors::chat::Chat;
use crate::actors::supervisor::NodeActors;
use crate::auth::{Auth, Verified};
use crate::protocol::{ApiError, ErrorCode, UserId};

/// What every request handler shares.
pub struct AppState {
    pub auth: Auth,
    pub admin_token: admin::AdminToken,
    /// Whose `X-Forwarded-*` headers are believed (`TRUSTED_PROXIES`): for
    /// the client's IP (`peer::client_ip`) and the request's origin.
    pub trusted_proxies: peer::TrustedProxies,
    /// Origins besides the node's own that may open a WebSocket.
    pub allowed_origins: peer::AllowedOrigins,
    /// Guest identities per IP and requests per user.
    pub limits: Arc<limits::RequestLimits>,
    pub chat: Chat,
    pub actors: NodeActors,
    pub context: Arc<NodeContext>,
    pub metrics: PrometheusHandle,
    /// Set while the node stops: readiness answers 503 so that the balancer
    /// sends nobody new.
    pub draining: std::sync::atomic::AtomicBool,
}

/// The single-file page served at `/` when no built frontend is found, so
/// that the binary alone is a working chat.
const FALLBACK_HTML: &str = include_str!("fallback.html");

/// Every route, with the built frontend served from `static_dir` when given,
/// each request in its own span (`request_span`). The routes sit in one
/// scope because a `ServiceConfig` cannot wrap a middleware around what it
/// configures; the scope's empty prefix matches every path.
pub fn routes(config: &mut web::ServiceConfig, static_dir: Option<&std::path::Path>) {
    let static_dir = static_dir.map(std::path::Path::to_path_buf);
    config.service(
        web::scope("")
            .wrap(tracing_actix_web::TracingLogger::<request_span::RequestSpan>::new())
            .configure(|config| app_routes(config, static_dir.as_deref())),
    );
}

fn app_routes(config: &mut web::ServiceConfig, static_dir: Option<&std::path::Path>) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(256 * 1024)
                .error_handler(|error, _| {
                    use actix_web::error::JsonPayloadError;
                    let error = match &error {
                        JsonPayloadError::Overflow { .. }
                        | JsonPayloadError::OverflowKnownLength { .. } => {
                            ApiError::new(ErrorCode::TooLarge, "The request body is too large.")
                        }
                        JsonPayloadError::ContentType => ApiError::bad_request(
                            "The request body must be JSON (Content-Type: application/json).",
                        ),
                        JsonPayloadError::Deserialize(e) => {
                            ApiError::bad_request(crate::protocol::describe_json_error(e))
                        }
                        _ => ApiError::bad_request("The request body could not be read."),
                    };
                    HttpError(error).into()
                }),
        )
        .app_data(web::PathConfig::default().error_handler(|_, _| {
            // A path id that is not a UUID names nothing.
            HttpError(ApiError::not_found("resource")).into()
        }))
        .route("/ws/chat", web::get().to(ws::chat_socket))
        .configure(api::routes)
        .configure(admin::routes);
    match static_dir {
        Some(dir) => {
            // Only reads reach the files; any other method on an unknown
            // path falls through to the JSON 404.
            config.service(
                web::scope("")
                    .guard(
                        actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()),
                    )
                    .wrap(
                        actix_web::middleware::ErrorHandlers::new()
                            .handler(StatusCode::BAD_REQUEST, static_path_refused),
                    )
                    .service(
                        actix_files::Files::new("/", dir)
                            .index_file("index.html")
                            .default_handler(web::to(not_found)),
                    ),
            );
            config.default_service(web::to(not_found));
        }
        None => {
            config.route("/", web::get().to(fallback_page));
            config.default_service(web::to(not_found));
        }
    }
}

/// actix-files answers a path it refuses to map (an encoded `/`, a `..`
/// segment) with a 400 in its own words; to a client that is a path that
/// names nothing: the contract's JSON 404.
fn static_path_refused<B>(
    response: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let (request, _) = response.into_parts();
    let answer = HttpError(ApiError::not_found("route")).error_response();
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(request, answer).map_into_right_body(),
    ))
}

/// The contract's answer to an unknown route (or method).
async fn not_found() -> HttpResponse {
    HttpError(ApiError::not_found("route")).error_response()
}

async fn fallback_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(FALLBACK_HTML)
}

/// An `ApiError` as an HTTP response: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.0 }))
    }
}

impl From<ApiError> for HttpError {
    fn from(error: ApiError) -> Self {
        HttpError(error)
    }
}

/// The caller of an `/api/` route, from `Authorization: Bearer <token>`.
pub struct User(pub UserId);

impl FromRequest for User {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<User, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let caller = authenticate(request);
        Box::pin(async move { caller.await.map(|verified| User(verified.user_id)) })
    }
}

/// The caller with what its token says: what a renewal needs.
pub struct Caller(pub Verified);

impl FromRequest for Caller {
    type Error = HttpError;
    type Future = LocalBoxFuture<'static, Result<Caller, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let caller = authenticate(request);
        Box::pin(async move { caller.await.map(Caller) })
    }
}

/// Checks the request's bearer token. Boxed and owning what it needs: an
/// identity provider's token may wait for its keys to be fetched.
fn authenticate(request: &HttpRequest) -> LocalBoxFuture<'static, Result<Verified, HttpError>> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .expect("AppState is registered")
        .clone();
    let token = bearer(request).map(str::to_owned);
    Box::pin(async move {
        let token =
            token.ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
        let verified = state.auth.verify_token(&token).await?;
        state.limits.api(&verified.user_id)?;
        Ok(verified)
    })
}

/// The bearer token of a request, if any.
pub fn bearer(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}
