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
                .close(Some(close(close_code::RESTART, "the node is stopping")))
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
        if forwarded.is_err() {
            // The actor is gone without closing the socket: an internal failure.
            let _ = session
                .close(Some(close(close_code::INTERNAL, "internal error")))
                .await;
            return;
        }
    }
    let _ = connection.cast(ConnectionMsg::ClientGone);
}

async fn write_loop(mut session: Session, mut receiver: OutboxReceiver) {
    loop {
        tokio::select! {
            biased;
            close_signal = &mut receiver.close => {
                // Frames queued before the close still go out, so that an
                // error frame preceding it is seen — unless the client is too
                // slow to read them, which is why it is being closed.
                let reason = close_signal.unwrap_or(Close { code: close_code::INTERNAL, reason: "internal error".into() });
                if reason.code != close_code::TOO_SLOW {
                    while let Ok(frame) = receiver.frames.try_recv() {
                        if session.text(frame).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = session.close(Some(close(reason.code, &reason.reason))).await;
                return;
            }
            frame = receiver.frames.recv() => match frame {
                Some(frame) => {
                    if session.text(frame).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = session.close(Some(close(close_code::INTERNAL, "internal error"))).await;
                    return;
                }
            },
        }
    }
}

fn close(code: u16, reason: &str) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    }
}
