//! Operator endpoints: liveness, readiness, metrics and the live actor list.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, HttpError, bearer};
use crate::protocol::{ApiError, ErrorCode};

/// How long readiness waits for the log store before calling it down.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/admin/actors", web::get().to(actors));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let engine = &state.context.engine;
    let up = matches!(
        tokio::time::timeout(READINESS_TIMEOUT, engine.ping()).await,
        Ok(Ok(()))
    );
    let body = json!({
        "ready": up,
        "dependencies": { engine.name(): if up { "up" } else { "down" } },
    });
    if up {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

async fn actors(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    match bearer(&request) {
        None => return Err(ApiError::new(ErrorCode::Unauthorized, "missing bearer token").into()),
        Some(token) if !constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
            return Err(ApiError::new(ErrorCode::Forbidden, "not the admin token").into());
        }
        Some(_) => {}
    }
    Ok(HttpResponse::Ok().json(json!({
        "node_id": state.context.node_id,
        "actors": state.context.directory.list(),
    })))
}

/// Compares secrets without revealing where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
