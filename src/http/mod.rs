//! The HTTP face of a node (actix-web): routes, the bearer-token extractor and
//! the mapping of errors to the contract's JSON bodies. Only this module knows
//! about actix.

pub mod admin;
pub mod api;
pub mod ws;

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::actors::NodeContext;
use crate::actors::chat::Chat;
use crate::actors::supervisor::NodeActors;
use crate::auth::Auth;
use crate::protocol::{ApiError, ErrorCode, UserId};

/// What every request handler shares.
pub struct AppState {
    pub auth: Auth,
    pub admin_token: String,
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

/// Every route, with the built frontend served from `static_dir` when given.
pub fn routes(config: &mut web::ServiceConfig, static_dir: Option<&std::path::Path>) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(256 * 1024)
                .error_handler(|error, _| {
                    let code = match &error {
                        actix_web::error::JsonPayloadError::Overflow { .. }
                        | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                            ErrorCode::TooLarge
                        }
                        _ => ErrorCode::BadRequest,
                    };
                    HttpError(ApiError::new(code, error.to_string())).into()
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
        HttpResponse::build(self.status_code())
            .json(json!({"error": {"code": self.0.code, "message": self.0.message}}))
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
    type Future = Ready<Result<User, HttpError>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = request
            .app_data::<web::Data<AppState>>()
            .expect("AppState is registered");
        let result = bearer(request)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))
            .and_then(|token| state.auth.verify(token))
            .map(User)
            .map_err(HttpError);
        ready(result)
    }
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
