//! One WebSocket connection: the user's identity, their subscriptions, the
//! heartbeat, and the outgoing side of the socket.
//!
//! The socket's read loop (in `http/ws.rs`) feeds incoming frames here
//! through an `Inbox`, which applies the rate limit first; frames go out
//! through the `Outbox`. Each subscription carries a token,
//! and a delivered frame whose token is not the current one for its
//! conversation is dropped: after `unsubscribed`, nothing of that
//! subscription can slip out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use uuid::Uuid;

use super::inbox::ReadSlot;
use super::outbox::{Outbox, OutboxError};
use crate::actors::chat::Chat;
use crate::actors::conversations::ConversationsMsg;
use crate::actors::conversations::conversation::{JoinError, JoinMode, Subscriber};
use crate::actors::{Frame, NodeContext};
use crate::engine::Turn;
use crate::protocol::{
    Ack, ApiError, ClientFrame, ClientRequest, ErrorCode, PROTOCOL_VERSION, ServerFrame, Since,
    UserId, close_code,
};

/// How often a join is retried when it meets a Conversation that is stopping.
const JOIN_ATTEMPTS: usize = 5;

pub enum ConnectionMsg {
    /// A text frame from the client, holding its place in the read queue
    /// until handled.
    Text { text: String, slot: ReadSlot },
    /// A binary frame from the client (not part of the protocol).
    Binary { slot: ReadSlot },
    /// Any sign of life below the protocol (a WebSocket ping or pong).
    Activity,
    /// A frame of a followed conversation.
    Deliver {
        conversation_id: Uuid,
        token: u64,
        frame: Frame,
    },
    /// The conversation was deleted.
    Unsubscribed { conversation_id: Uuid, token: u64 },
    /// Time to check the heartbeat.
    HeartbeatCheck,
    /// Close the socket with this code and stop (the node is stopping, or
    /// the read loop saw a protocol violation).
    Close { code: u16, reason: String },
    /// The socket is gone.
    ClientGone,
}

pub struct ConnectionArgs {
    pub connection_id: Uuid,
    pub user_id: UserId,
    /// Shared with the socket's read loop, which answers a flood itself.
    pub outbox: Arc<Outbox>,
    pub chat: Chat,
    pub conversations: ActorRef<ConversationsMsg>,
}

pub struct Connection;

pub struct ConnectionState {
    connection_id: Uuid,
    user_id: UserId,
    outbox: Arc<Outbox>,
    chat: Chat,
    conversations: ActorRef<ConversationsMsg>,
    context: Arc<NodeContext>,
    /// conversation id → the token of the current subscription.
    subscriptions: HashMap<Uuid, u64>,
    next_token: u64,
    last_seen: Instant,
    heartbeat: Option<JoinHandle<()>>,
    closed: bool,
    /// What the actor's log lines are about: this connection, of this node.
    span: tracing::Span,
}

impl Actor for Connection {
    type Msg = ConnectionMsg;
    type State = ConnectionState;
    type Arguments = ConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConnectionMsg>,
        args: ConnectionArgs,
    ) -> Result<ConnectionState, ActorProcessingErr> {
        let context = args.chat.context().clone();
        let settings = &context.settings;
        // Checked ten times per interval: silence closes within 2.1 intervals.
        let check_every = (settings.heartbeat() / 10).max(Duration::from_millis(10));
        let heartbeat = Some(myself.send_interval(check_every, || ConnectionMsg::HeartbeatCheck));
        let state = ConnectionState {
            connection_id: args.connection_id,
            user_id: args.user_id,
            outbox: args.outbox,
            chat: args.chat,
            conversations: args.conversations,
            subscriptions: HashMap::new(),
            next_token: 0,
            last_seen: Instant::now(),
            heartbeat,
            closed: false,
            span: crate::telemetry::connection_span(&context.node_id, args.connection_id),
            context,
        };
        state
            .span
            .in_scope(|| tracing::debug!(user_id = %state.user_id, "connection opened"));
        state.send(&ServerFrame::Welcome {
            node_id: state.context.node_id.clone(),
            connection_id: state.connection_id,
            user_id: state.user_id.clone(),
            protocol: PROTOCOL_VERSION,
            heartbeat_ms: state.context.settings.heartbeat_ms,
        });
        metrics::gauge!("chatstream_connections").increment(1);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<ConnectionMsg>,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(heartbeat) = state.heartbeat.take() {
            heartbeat.abort();
        }
        for conversation_id in state.subscriptions.keys() {
            let _ = state.conversations.cast(ConversationsMsg::Leave {
                conversation_id: *conversation_id,
                connection_id: state.connection_id,
            });
        }
        state
            .outbox
            .close(close_code::GOING_AWAY, "connection closed");
        metrics::gauge!("chatstream_connections").decrement(1);
        state.span.in_scope(|| tracing::debug!("connection closed"));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConnectionMsg>,
        message: ConnectionMsg,
        state: &mut ConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        // A delivered frame is the fan-out's hot path and logs nothing: it
        // is spared the span's bookkeeping.
        if matches!(message, ConnectionMsg::Deliver { .. }) {
            return state.handle(&myself, message).await;
        }
        let span = state.span.clone();
        state.handle(&myself, message).instrument(span).await
    }
}

impl ConnectionState {
    /// The actor's `handle`, here so that it can run inside the span.
    async fn handle(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        message: ConnectionMsg,
    ) -> Result<(), ActorProcessingErr> {
        if self.closed {
            return Ok(());
        }
        match message {
            ConnectionMsg::Text { text, slot } => {
                self.last_seen = Instant::now();
                match ClientFrame::parse(&text) {
                    Ok(frame) => self.request(myself, frame).await,
                    Err(e) => self.send_error(e.id, e.error),
                }
                drop(slot);
            }
            ConnectionMsg::Binary { slot: _ } => {
                self.last_seen = Instant::now();
                self.send_error(
                    None,
                    ApiError::bad_request("binary frames are not supported"),
                );
            }
            ConnectionMsg::Activity => self.last_seen = Instant::now(),
            ConnectionMsg::Deliver {
                conversation_id,
                token,
                frame,
            } => {
                if self.subscriptions.get(&conversation_id) == Some(&token) {
                    self.push(frame);
                }
            }
            ConnectionMsg::Unsubscribed {
                conversation_id,
                token,
            } => {
                if self.subscriptions.get(&conversation_id) == Some(&token) {
                    self.subscriptions.remove(&conversation_id);
                    self.send(&ServerFrame::Unsubscribed {
                        id: None,
                        conversation_id,
                    });
                }
            }
            ConnectionMsg::HeartbeatCheck => {
                if self.last_seen.elapsed() > self.context.settings.heartbeat() * 2 {
                    self.close(close_code::HEARTBEAT_TIMEOUT, "heartbeat timeout");
                }
            }
            ConnectionMsg::Close { code, reason } => self.close(code, &reason),
            ConnectionMsg::ClientGone => self.closed = true,
        }
        if self.closed || self.outbox.is_closed() {
            self.closed = true;
            myself.stop(None);
        }
        Ok(())
    }

    async fn request(&mut self, myself: &ActorRef<ConnectionMsg>, frame: ClientFrame) {
        let ClientFrame { id, request } = frame;
        let user = self.user_id.clone();
        match request {
            ClientRequest::Ping => self.send(&ServerFrame::Pong { id }),
            ClientRequest::Subscribe {
                conversation_id,
                since,
            } => {
                if let Err(error) = self
                    .subscribe(myself, conversation_id, since, id.clone())
                    .await
                {
                    self.send_error(id, error);
                }
            }
            ClientRequest::Unsubscribe { conversation_id } => {
                if self.subscriptions.remove(&conversation_id).is_some() {
                    let _ = self.conversations.cast(ConversationsMsg::Leave {
                        conversation_id,
                        connection_id: self.connection_id,
                    });
                }
                self.send(&ServerFrame::Unsubscribed {
                    id,
                    conversation_id,
                });
            }
            ClientRequest::Send(send) => {
                let turn = self.chat.send(user, send).await;
                self.acknowledge_turn(myself, id, turn).await;
            }
            ClientRequest::Regenerate(request) => {
                let turn = self.chat.regenerate(user, request).await;
                self.acknowledge_turn(myself, id, turn).await;
            }
            ClientRequest::Edit(request) => {
                let turn = self.chat.edit(user, request).await;
                self.acknowledge_turn(myself, id, turn).await;
            }
            ClientRequest::Continue(request) => {
                let turn = self.chat.continue_reply(user, request).await;
                self.acknowledge_turn(myself, id, turn).await;
            }
            ClientRequest::Cancel { message_id } => {
                match self.chat.cancel(user, message_id).await {
                    Ok(()) => self.send(&ServerFrame::Ack {
                        id,
                        ack: Ack::Cancelled { message_id },
                    }),
                    Err(error) => self.send_error(id, error),
                }
            }
        }
    }

    /// Answers a turn's frame (`send`, `regenerate`, `edit`, `continue`):
    /// the sender follows the conversation from the turn's first event on,
    /// then gets its `ack`.
    async fn acknowledge_turn(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        id: Option<String>,
        turn: Result<Turn, ApiError>,
    ) {
        let turn = match turn {
            Ok(turn) => turn,
            Err(error) => return self.send_error(id, error),
        };
        let conversation_id = turn.ack.conversation_id;
        let mut followed = Ok(());
        if !self.subscriptions.contains_key(&conversation_id) {
            let mode = JoinMode::After {
                epoch: turn.epoch.clone(),
                after_seq: turn.user_seq - 1,
            };
            followed = self.join(myself, conversation_id, mode).await;
        }
        self.send(&ServerFrame::Ack {
            id,
            ack: Ack::Sent(turn.ack),
        });
        // The turn happened; only its live events could not be followed.
        // Say so, so that the client subscribes itself.
        if let Err(error) = followed {
            tracing::warn!(%conversation_id, %error.message, "sender not subscribed");
            self.send_error(
                None,
                ApiError::new(
                    error.code,
                    format!(
                        "sent, but not subscribed to {conversation_id}: {}; subscribe to follow it",
                        error.message
                    ),
                ),
            );
        }
    }

    async fn subscribe(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        conversation_id: Uuid,
        since: Option<Since>,
        frame_id: Option<String>,
    ) -> Result<(), ApiError> {
        self.chat
            .owned_conversation(self.user_id.clone(), conversation_id)
            .await?;
        if !self.subscriptions.contains_key(&conversation_id)
            && self.subscriptions.len() >= self.context.settings.max_subscriptions
        {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "a connection may follow at most {} conversations",
                    self.context.settings.max_subscriptions
                ),
            ));
        }
        self.join(
            myself,
            conversation_id,
            JoinMode::Subscribe { since, frame_id },
        )
        .await
    }

    /// Starts a new subscription (replacing any previous one) and has the
    /// Conversation deliver its first frames.
    async fn join(
        &mut self,
        myself: &ActorRef<ConnectionMsg>,
        conversation_id: Uuid,
        mode: JoinMode,
    ) -> Result<(), ApiError> {
        self.next_token += 1;
        let token = self.next_token;
        self.subscriptions.insert(conversation_id, token);
        for _ in 0..JOIN_ATTEMPTS {
            let subscriber = Subscriber {
                connection: myself.clone(),
                connection_id: self.connection_id,
                token,
            };
            let mode = mode.clone();
            let call = self.conversations.call(
                |reply| ConversationsMsg::Join {
                    conversation_id,
                    subscriber,
                    mode,
                    reply,
                },
                Some(crate::actors::CALL_TIMEOUT),
            );
            match call.await {
                Ok(CallResult::Success(Ok(first_frames))) => {
                    for frame in first_frames {
                        self.push(frame);
                    }
                    return Ok(());
                }
                Ok(CallResult::Success(Err(JoinError::Failed(error)))) => {
                    self.subscriptions.remove(&conversation_id);
                    return Err(error);
                }
                // The Conversation was stopping; the supervisor spawns another.
                Ok(CallResult::Success(Err(JoinError::Retry))) | Ok(CallResult::SenderError) => {
                    continue;
                }
                Ok(CallResult::Timeout) | Err(_) => break,
            }
        }
        self.subscriptions.remove(&conversation_id);
        Err(ApiError::unavailable(
            "could not follow the conversation, retry",
        ))
    }

    fn send(&self, frame: &ServerFrame) {
        self.push(Frame::from(frame.to_text()));
    }

    fn send_error(&self, id: Option<String>, error: ApiError) {
        self.send(&ServerFrame::error(id, error));
    }

    fn push(&self, frame: Frame) {
        match self.outbox.push(frame) {
            Ok(()) => metrics::counter!("chatstream_frames_sent_total").increment(1),
            Err(OutboxError::Full) => {
                metrics::counter!("chatstream_slow_clients_total").increment(1);
                self.outbox
                    .close(close_code::TOO_SLOW, "client reads too slowly");
            }
            Err(OutboxError::Closed) => {}
        }
    }

    fn close(&mut self, code: u16, reason: &str) {
        self.outbox.close(code, reason);
        self.closed = true;
    }
}
