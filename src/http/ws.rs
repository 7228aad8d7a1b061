//! `GET /ws/chat`: upgrades the socket, checks the token, and runs the two
//! loops that connect it to its Connection actor.
//!
//! The read loop stays on the actix worker (actix-ws's `MessageStream` is
//! `!Send`) and only casts frames to the actor. The write loop drains the
//! actor's `Outbox` into the socket, so the actor never waits on a slow client.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use ractor::rpc::CallResult;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::actors::Frame;
use crate::actors::connections::connection::ConnectionArgs;
use crate::actors::connections::inbox::Inbox;
use crate::actors::connections::outbox::{Close, Outbox, OutboxReceiver};
use crate::actors::connections::{ConnectionsMsg, OpenError};
use crate::protocol::{ApiError, ErrorCode, ServerFrame, close_code};

/// How a socket names its user: a single-use `ticket` from
/// `POST /api/ws-ticket` (preferred: it is worthless once used), or a bearer
/// `token`. With both, the ticket counts.
#[derive(Deserialize)]
pub struct SocketQuery {
    token: Option<String>,
    ticket: Option<String>,
}

pub async fn chat_socket(
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<SocketQuery>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    // Another site's page must not open a socket with a visitor's
    // credentials: refused before upgrading, and before a ticket is spent.
    if !super::peer::origin_allowed(&request, &state.trusted_proxies, &state.allowed_origins) {
        tracing::debug!(origin = ?request.headers().get(actix_web::http::header::ORIGIN), "WebSocket upgrade refused: origin not allowed");
        let refusal = super::HttpError(ApiError::new(
            ErrorCode::Forbidden,
            "this page's origin may not open a chat connection to this server",
        ));
        return Ok(actix_web::ResponseError::error_response(&refusal));
    }
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let settings = &state.context.settings;
    let (outbox, receiver) = Outbox::channel(settings.outbox_frames, settings.outbox_bytes);
    actix_web::rt::spawn(write_loop(session.clone(), receiver));

    // Checked after the upgrade is prepared, so that a refusal reaches the
    // client as the contract's `error` and close 1008.
    let user = match (query.ticket.as_deref(), query.token.as_deref()) {
        (Some(ticket), _) => crate::auth::tickets::redeem(&*state.context.engine, ticket).await,
        (None, Some(token)) => state.auth.verify(token).await,
        (None, None) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing ticket or token query parameter",
        )),
    };
    let user_id = match user {
        Ok(user_id) => user_id,
        Err(error) => {
            let _ = outbox.push(Frame::from(ServerFrame::error(None, error).to_text()));
            outbox.close(close_code::POLICY, "bad or expired token");
            return Ok(response);
        }
    };
    let connection_id = Uuid::new_v4();
    // The upgrade's request span (`request_span`) then names the connection
    // whose actor logs under the same id.
    tracing::Span::current().record("connection_id", tracing::field::display(connection_id));
    let args = ConnectionArgs {
        connection_id,
        user_id,
        outbox: outbox.clone(),
        chat: state.chat.clone(),
        conversations: state.actors.conversations.clone(),
    };
    let opened = state
        .actors
        .connections
        .call(
            |reply| ConnectionsMsg::Open { args, reply },
            Some(crate::actors::CALL_TIMEOUT),
        )
        .await;
    let connection = match opened {
        Ok(CallResult::Success(Ok(connection))) => connection,
        Ok(CallResult::Success(Err(OpenError::OverLimit))) => {
            let error = ApiError::new(
                ErrorCode::RateLimited,
                "Too many connections are open for this user; close one and try again.",
            );
            let _ = outbox.push(Frame::from(ServerFrame::error(None, error).to_text()));
            outbox.close(close_code::OVER_LIMIT, "too many connections");
            return Ok(response);
        }
        _ => {
            let _ = session
                .close(Some(close_reason(
                    close_code::RESTART,
                    "the node is stopping",
                )))
                .await;
            return Ok(response);
        }
    };
    let max_bytes = settings.max_frame_bytes;
    let messages = stream
        .max_frame_size(max_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_bytes);
    let inbox = Inbox::new(connection, outbox, settings.frames_per_second);
    actix_web::rt::spawn(read_loop(messages, inbox, session));
    Ok(response)
}

async fn read_loop(
    mut messages: actix_ws::AggregatedMessageStream,
    mut inbox: Inbox,
    mut session: Session,
) {
    while let Some(message) = messages.recv().await {
        let fed = match message {
            Ok(AggregatedMessage::Text(text)) => inbox.text(&text).await,
            Ok(AggregatedMessage::Binary(_)) => inbox.binary().await,
            Ok(AggregatedMessage::Ping(bytes)) => match inbox.control() {
                Ok(true) => {
                    let _ = session.pong(&bytes).await;
                    Ok(())
                }
                other => other.map(drop),
            },
            Ok(AggregatedMessage::Pong(_)) => inbox.control().map(drop),
            Ok(AggregatedMessage::Close(_)) => break,
            Err(error) => {
                // actix-ws reports a continuation over the size limit as an
                // `Other` I/O error and text that is not UTF-8 as
                // `InvalidData`; any other I/O error is the connection going.
                let (code, reason) = match error {
                    ProtocolError::Overflow => (close_code::TOO_BIG, "message over the size limit"),
                    ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        (close_code::INVALID_DATA, "text frames must be UTF-8")
                    }
                    ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::Other => {
                        (close_code::TOO_BIG, "message over the size limit")
                    }
                    ProtocolError::Io(_) => break,
                    _ => (1002, "WebSocket protocol error"),
                };
                inbox.close(code, reason);
                return;
            }
        };
        // The Connection is gone: it closed the socket through its outbox
        // (or, if it failed, the write loop closes with 1011). Stop reading.
        if fed.is_err() {
            return;
        }
    }
    inbox.client_gone();
}

/// How long a close frame may wait behind frames a slow client has not read;
/// after that the connection is dropped without one.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

async fn write_loop(mut session: Session, mut receiver: OutboxReceiver) {
    let close = loop {
        tokio::select! {
            biased;
            signal = &mut receiver.close => break signal.ok(),
            frame = receiver.frames.recv() => {
                let Some(frame) = frame else { break None };
                // A client that does not read blocks `text`; a close must
                // still get through, so it interrupts the wait.
                tokio::select! {
                    biased;
                    signal = &mut receiver.close => break signal.ok(),
                    sent = session.text(frame) => if sent.is_err() { return },
                }
            }
        }
    };
    // `None`: the Connection vanished without closing, an internal failure.
    let close = close.unwrap_or(Close {
        code: close_code::INTERNAL,
        reason: "internal error".into(),
    });
    // Frames queued before the close still go out (an error frame that
    // explains it, say), unless the client is being dropped for not reading.
    if close.code != close_code::TOO_SLOW {
        while let Some(frame) = receiver.frames.try_recv() {
            if session.text(frame).await.is_err() {
                return;
            }
        }
    }
    let _ = tokio::time::timeout(
        CLOSE_PATIENCE,
        session.close(Some(close_reason(close.code, &close.reason))),
    )
    .await;
}

fn close_reason(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    }
}
