//! `GET /ws/chat`: upgrades the socket, checks the token, and runs the two
//! loops that connect it to its Connection actor.
//!
//! The read loop stays on the actix worker (actix-ws's `MessageStream` is
//! `!Send`) and only casts frames to the actor. The write loop drains the
//! actor's `Outbox` into the socket, so the actor never waits on a slow client.

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use serde::Deserialize;
use uuid::Uuid;

use super::AppState;
use crate::actors::Frame;
use crate::actors::connections::ConnectionsMsg;
use crate::actors::connections::connection::{ConnectionArgs, ConnectionMsg};
use crate::actors::connections::outbox::{Close, Outbox, OutboxReceiver};
use crate::protocol::{ApiError, ErrorCode, ServerFrame, close_code};

#[derive(Deserialize)]
pub struct SocketQuery {
    token: Option<String>,
}

pub async fn chat_socket(
    request: HttpRequest,
    body: web::Payload,
    query: web::Query<SocketQuery>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let settings = &state.context.settings;
    let (outbox, receiver) = Outbox::channel(settings.outbox_frames);
    actix_web::rt::spawn(write_loop(session.clone(), receiver));

    let user = match query.token.as_deref() {
        Some(token) => state.auth.verify(token),
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing token query parameter",
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
    let args = ConnectionArgs {
        connection_id,
        user_id,
        outbox,
        chat: state.chat.clone(),
        conversations: state.actors.conversations.clone(),
    };
    let opened = state
        .actors
        .connections
        .call(|reply| ConnectionsMsg::Open { args, reply }, None)
        .await;
    let connection = match opened {
        Ok(CallResult::Success(Ok(connection))) => connection,
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
    actix_web::rt::spawn(read_loop(messages, connection, session));
    Ok(response)
}

async fn read_loop(
    mut messages: actix_ws::AggregatedMessageStream,
    connection: ActorRef<ConnectionMsg>,
    mut session: Session,
) {
    while let Some(message) = messages.recv().await {
        let forwarded = match message {
            Ok(AggregatedMessage::Text(text)) => {
                connection.cast(ConnectionMsg::Text(text.to_string()))
            }
            Ok(AggregatedMessage::Binary(_)) => connection.cast(ConnectionMsg::Binary),
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = session.pong(&bytes).await;
                connection.cast(ConnectionMsg::Activity)
            }
            Ok(AggregatedMessage::Pong(_)) => connection.cast(ConnectionMsg::Activity),
            Ok(AggregatedMessage::Close(_)) => break,
            Err(error) => {
                let (code, reason) = match error {
                    ProtocolError::Overflow | ProtocolError::Io(_) => {
                        (close_code::TOO_BIG, "message over the size limit")
                    }
                    _ => (1002, "WebSocket protocol error"),
                };
                let _ = connection.cast(ConnectionMsg::Close {
                    code,
                    reason: reason.into(),
                });
                return;
            }
        };
        // The Connection is gone: it closed the socket through its outbox
        // (or, if it failed, the write loop closes with 1011). Stop reading.
        if forwarded.is_err() {
            return;
        }
    }
    let _ = connection.cast(ConnectionMsg::ClientGone);
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
        while let Ok(frame) = receiver.frames.try_recv() {
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
