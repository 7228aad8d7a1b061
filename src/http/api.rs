//! The JSON API under `/api/`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{AppState, Caller, HttpError, User};
use crate::auth::tickets;
use crate::engine::Turn;
use crate::protocol::{ApiError, EditRequest, RegenerateRequest, SendRequest};

pub fn routes(config: &mut web::ServiceConfig) {
    // A path served with another method names no route here: 404, as JSON.
    let resource = |path| web::resource(path).default_service(web::to(super::not_found));
    config
        .service(resource("/api/auth/guest").route(web::post().to(guest)))
        .service(resource("/api/auth/refresh").route(web::post().to(refresh)))
        .service(resource("/api/ws-ticket").route(web::post().to(ws_ticket)))
        .service(
            resource("/api/conversations")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/api/conversations/{id}")
                .route(web::get().to(detail))
                .route(web::patch().to(rename))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/chat").route(web::post().to(chat)))
        .service(resource("/api/cancel").route(web::post().to(cancel)))
        .service(resource("/api/regenerate").route(web::post().to(regenerate)))
        .service(resource("/api/edit").route(web::post().to(edit)))
        .service(resource("/api/continue").route(web::post().to(continue_reply)))
        .service(resource("/api/models").route(web::get().to(models)))
        .service(resource("/api/search").route(web::get().to(search)));
}

type Answer = Result<HttpResponse, HttpError>;

/// A new guest identity, unless guests are switched off
/// (`GUEST_ACCESS=false`); tokens already issued stay valid either way.
async fn guest(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    if !state.auth.guest_access() {
        return Err(ApiError::new(
            crate::protocol::ErrorCode::Forbidden,
            "guest access is switched off on this server; sign in instead",
        )
        .into());
    }
    let ip = super::peer::client_ip(&request, &state.trusted_proxies);
    state.limits.guest(ip)?;
    Ok(HttpResponse::Ok().json(state.auth.issue_guest()))
}

/// A new token for the caller, who must hold a valid, unexpired one (else
/// 401 from `Caller`); the old token stays valid until it expires. Guest
/// tokens renew also while guests are switched off. The holder of an
/// identity provider's token gets this node's HS256 token for the same
/// `user_id`, expiring when the provider's token does (see `Auth::renew`).
async fn refresh(state: web::Data<AppState>, Caller(caller): Caller) -> Answer {
    Ok(HttpResponse::Ok().json(state.auth.renew(&caller)?))
}

/// A single-use ticket that opens `GET /ws/chat?ticket=` as the caller, on
/// any node sharing this one's engine, for `tickets::TICKET_TTL`.
async fn ws_ticket(state: web::Data<AppState>, User(user): User) -> Answer {
    let ticket = tickets::issue(&*state.context.engine, &user, tickets::TICKET_TTL).await?;
    Ok(HttpResponse::Ok().json(ticket))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    before: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    User(user): User,
    query: Result<web::Query<ListQuery>, actix_web::Error>,
) -> Answer {
    let query = query.map_err(|_| {
        ApiError::bad_request("limit must be a positive number and before a cursor from `next`")
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    let listing = state
        .chat
        .list(user, limit, query.before.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(listing))
}

/// Conversations per listing page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 50;

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

async fn search(
    state: web::Data<AppState>,
    User(user): User,
    query: Result<web::Query<SearchQuery>, actix_web::Error>,
) -> Answer {
    let query = query.map_err(|_| ApiError::bad_request("q is the text to search for"))?;
    let results = state
        .chat
        .search(user, &query.q, query.limit.unwrap_or(20))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    title: Option<String>,
}

async fn create(
    state: web::Data<AppState>,
    User(user): User,
    body: Result<web::Bytes, actix_web::Error>,
) -> Answer {
    let body = body.map_err(|e| {
        ApiError::logged(
            crate::protocol::ErrorCode::TooLarge,
            "The request body is too large.",
            e,
        )
    })?;
    // The body is optional, but when present it must be valid.
    let title = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<CreateBody>(&body)
            .map_err(|e| ApiError::bad_request(crate::protocol::describe_json_error(&e)))?
            .title
    };
    let detail = state.chat.create(user, title).await?;
    Ok(HttpResponse::Created().json(detail))
}

async fn detail(state: web::Data<AppState>, User(user): User, id: web::Path<Uuid>) -> Answer {
    Ok(HttpResponse::Ok().json(state.chat.detail(user, *id).await?))
}

#[derive(Deserialize)]
struct RenameBody {
    title: String,
}

async fn rename(
    state: web::Data<AppState>,
    User(user): User,
    id: web::Path<Uuid>,
    body: web::Json<RenameBody>,
) -> Answer {
    Ok(HttpResponse::Ok().json(state.chat.rename(user, *id, &body.title).await?))
}

async fn delete(state: web::Data<AppState>, User(user): User, id: web::Path<Uuid>) -> Answer {
    state.chat.delete(user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn chat(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<SendRequest>,
) -> Answer {
    accepted(state.chat.send(user, body.into_inner()).await?)
}

async fn regenerate(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<RegenerateRequest>,
) -> Answer {
    accepted(state.chat.regenerate(user, body.into_inner()).await?)
}

async fn edit(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<EditRequest>,
) -> Answer {
    accepted(state.chat.edit(user, body.into_inner()).await?)
}

async fn continue_reply(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<RegenerateRequest>,
) -> Answer {
    accepted(state.chat.continue_reply(user, body.into_inner()).await?)
}

/// The 202 of a turn started over HTTP (or of its resend): the ids, the
/// reply's as `message_id`.
fn accepted(turn: Turn) -> Answer {
    Ok(HttpResponse::Accepted().json(json!({
        "conversation_id": turn.ack.conversation_id,
        "user_message_id": turn.ack.user_message_id,
        "message_id": turn.ack.assistant_message_id,
        "status": "streaming",
    })))
}

#[derive(Deserialize)]
struct CancelBody {
    message_id: Uuid,
}

async fn cancel(
    state: web::Data<AppState>,
    User(user): User,
    body: web::Json<CancelBody>,
) -> Answer {
    state.chat.cancel(user, body.message_id).await?;
    Ok(HttpResponse::Accepted()
        .json(json!({"message_id": body.message_id, "status": "cancelling"})))
}

async fn models(state: web::Data<AppState>, _: User) -> HttpResponse {
    let models: Vec<_> = state
        .context
        .providers
        .list()
        .map(|(id, provider)| json!({"id": id, "provider": provider}))
        .collect();
    HttpResponse::Ok()
        .json(json!({ "models": models, "default": state.context.providers.default_model() }))
}
