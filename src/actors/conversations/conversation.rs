//! One conversation with local subscribers: merges the log with live events by
//! seq and fans each event out to its Connections.
//!
//! `head` is the last seq fanned out; every subscriber has received every event
//! up to it, each exactly once, in order. A live event at or below `head` is a
//! duplicate and dropped; one beyond `head + 1` reveals a gap, which is filled
//! from the log before anything newer goes out. A joining subscriber gets its
//! backlog from one log read that also advances everyone else, so a join never
//! opens a window in which an event is missed (the seed's lost "chunk 7").

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::Instrument as _;
use uuid::Uuid;

use super::ConversationsMsg;
use crate::actors::connections::connection::ConnectionMsg;
use crate::actors::registry::RegistryMsg;
use crate::actors::{Frame, NodeContext};
use crate::engine::{ConversationInfo, EngineError, History, Snapshot};
use crate::transcript::Transcript;

/// How soon a rebuild that could not reach the store is tried again.
const REBUILD_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
use crate::protocol::{ApiError, LogEntry, Message, ServerFrame, Since};

/// A Connection following this conversation.
#[derive(Clone)]
pub struct Subscriber {
    pub connection: ActorRef<ConnectionMsg>,
    pub connection_id: Uuid,
    /// Names this subscription, so the Connection can drop frames of one it
    /// has since left.
    pub token: u64,
}

/// How a subscriber starts following.
#[derive(Debug, Clone)]
pub enum JoinMode {
    /// An explicit `subscribe`: answered with `subscribed`, then the missed
    /// events or a snapshot.
    Subscribe {
        since: Option<Since>,
        frame_id: Option<String>,
    },
    /// The sender of a `send`: every event after `after_seq` of `epoch`,
    /// without a `subscribed` frame.
    After { epoch: Arc<str>, after_seq: u64 },
}

/// Why a join did not take.
#[derive(Debug, Clone)]
pub enum JoinError {
    /// The actor is stopping: ask the supervisor again.
    Retry,
    Failed(ApiError),
}

pub enum ConversationMsg {
    Join {
        subscriber: Subscriber,
        mode: JoinMode,
        /// Answered with the subscriber's first frames (`subscribed`, then
        /// the missed events or a snapshot), which the Connection sends before
        /// anything else of this subscription; live events follow as `Deliver`.
        reply: RpcReplyPort<Result<Vec<Frame>, JoinError>>,
    },
    Leave {
        connection_id: Uuid,
    },
    /// An event published on the bus.
    Live {
        epoch: Arc<str>,
        entry: Arc<LogEntry>,
    },
    /// Live delivery may have missed events: read the log after `head`.
    CatchUp,
    /// The conversation was deleted: unsubscribe everyone and stop.
    Deleted,
    /// The log store lost its data: recreate the conversation from this
    /// node's copy, then start every subscriber over in the new epoch.
    Rebuild,
    /// The node's Registry was restarted: register with the new one, then
    /// catch up on what the old one could not route.
    Reregister(ActorRef<RegistryMsg>),
}

pub struct ConversationArgs {
    pub conversation_id: Uuid,
    pub context: Arc<NodeContext>,
    pub registry: ActorRef<RegistryMsg>,
    pub supervisor: ActorRef<ConversationsMsg>,
}

pub struct Conversation;

pub struct ConversationState {
    conversation_id: Uuid,
    context: Arc<NodeContext>,
    registry: ActorRef<RegistryMsg>,
    supervisor: ActorRef<ConversationsMsg>,
    epoch: Arc<str>,
    head: u64,
    subscribers: HashMap<Uuid, Subscriber>,
    /// Set once this actor asked to be stopped; joins then go elsewhere.
    closing: bool,
    /// The conversation as of `head`: what this node rebuilds it from if
    /// the log store loses its data.
    info: Option<ConversationInfo>,
    transcript: Transcript,
    /// What the actor's log lines are about: this conversation, on this node.
    span: tracing::Span,
}

impl Actor for Conversation {
    type Msg = ConversationMsg;
    type State = ConversationState;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        _: ActorRef<ConversationMsg>,
        args: ConversationArgs,
    ) -> Result<ConversationState, ActorProcessingErr> {
        Ok(ConversationState {
            conversation_id: args.conversation_id,
            span: crate::telemetry::conversation_span(&args.context.node_id, args.conversation_id),
            context: args.context,
            registry: args.registry,
            supervisor: args.supervisor,
            epoch: "".into(),
            head: 0,
            subscribers: HashMap::new(),
            closing: false,
            info: None,
            transcript: Transcript::default(),
        })
    }

    /// Subscribes and reads the log here rather than in `pre_start`, which
    /// the supervisor waits for: activating a conversation never holds up
    /// the others. Joins wait in the mailbox until this is done.
    async fn post_start(
        &self,
        myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        state.start(&myself).instrument(span).await
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ConversationMsg>,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.registry.cast(RegistryMsg::Unregister {
            conversation_id: state.conversation_id,
            actor: myself.get_id(),
        });
        state
            .span
            .in_scope(|| tracing::debug!("conversation no longer followed here"));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationMsg>,
        message: ConversationMsg,
        state: &mut ConversationState,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        state.handle(&myself, message).instrument(span).await
    }
}

impl ConversationState {
    /// Registers with the Registry, then reads where the conversation is.
    async fn start(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let conversation_id = self.conversation_id;
        self.register(myself).await?;
        // Registered first, read second: anything appended from here on is
        // either in this read or arrives live.
        let snapshot = match self.context.engine.snapshot(conversation_id).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                // `post_stop` does not run for a failed start: unregister here.
                let _ = self.registry.cast(RegistryMsg::Unregister {
                    conversation_id,
                    actor: myself.get_id(),
                });
                return Err(error.into());
            }
        };
        self.epoch = snapshot.epoch;
        self.head = snapshot.seq;
        self.info = Some(snapshot.info);
        self.transcript = Transcript::from_messages(snapshot.messages);
        tracing::debug!(epoch = %self.epoch, head = self.head, "conversation followed here");
        Ok(())
    }

    /// The actor's `handle`, here so that it can run inside the span.
    async fn handle(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
        message: ConversationMsg,
    ) -> Result<(), ActorProcessingErr> {
        // Idle means the last subscriber left (or the first join failed): a
        // fresh actor that gets a live event before its first join is not.
        let followed =
            !self.subscribers.is_empty() || matches!(message, ConversationMsg::Join { .. });
        match message {
            ConversationMsg::Join {
                subscriber,
                mode,
                reply,
            } => {
                if self.closing {
                    let _ = reply.send(Err(JoinError::Retry));
                    return Ok(());
                }
                let result = self.join(subscriber, mode).await.map_err(JoinError::Failed);
                let _ = reply.send(result);
            }
            ConversationMsg::Leave { connection_id } => {
                self.subscribers.remove(&connection_id);
            }
            ConversationMsg::Live { epoch, entry } => self.live(epoch, entry).await,
            ConversationMsg::CatchUp => self.catch_up().await,
            ConversationMsg::Reregister(registry) => {
                self.registry = registry;
                self.register(myself).await?;
                self.catch_up().await;
            }
            ConversationMsg::Rebuild => {
                if !self.rebuild().await {
                    // The store is still unreachable: try again shortly.
                    myself.send_after(REBUILD_RETRY, || ConversationMsg::Rebuild);
                }
            }
            ConversationMsg::Deleted => {
                for subscriber in self.subscribers.values() {
                    let _ = subscriber.connection.cast(ConnectionMsg::Unsubscribed {
                        conversation_id: self.conversation_id,
                        token: subscriber.token,
                    });
                }
                self.subscribers.clear();
            }
        }
        if followed && self.subscribers.is_empty() && !self.closing {
            self.closing = true;
            let _ = self.supervisor.cast(ConversationsMsg::Idle {
                conversation_id: self.conversation_id,
                actor: myself.get_id(),
            });
        }
        Ok(())
    }

    /// Has the Registry route this conversation's events here; answers once
    /// the engine delivers them.
    async fn register(&self, myself: &ActorRef<ConversationMsg>) -> Result<(), ActorProcessingErr> {
        let conversation_id = self.conversation_id;
        ractor::call_t!(
            self.registry,
            |reply| RegistryMsg::Register {
                conversation_id,
                actor: myself.clone(),
                reply,
            },
            crate::actors::CALL_TIMEOUT.as_millis() as u64
        )??;
        Ok(())
    }

    async fn join(
        &mut self,
        subscriber: Subscriber,
        mode: JoinMode,
    ) -> Result<Vec<Frame>, ApiError> {
        self.subscribers.remove(&subscriber.connection_id);
        // A second pass only happens when the first found a new epoch.
        for _ in 0..2 {
            let (resume_from, frame_id) = match &mode {
                JoinMode::Subscribe { since, frame_id } => (
                    since
                        .as_ref()
                        .filter(|s| *s.epoch == *self.epoch)
                        .map(|s| s.seq),
                    Some(frame_id.clone()),
                ),
                JoinMode::After { epoch, after_seq } => {
                    ((**epoch == *self.epoch).then_some(*after_seq), None)
                }
            };
            let read_from = resume_from.map_or(self.head, |seq| seq.min(self.head));
            let history = self
                .context
                .engine
                .read(self.conversation_id, read_from)
                .await
                .map_err(|e| e.into_api("conversation"))?;
            if !self.accept_epoch(&history).await {
                continue;
            }
            let recovered = match history.entries {
                Some(entries) => {
                    self.advance(&entries);
                    resume_from
                        .filter(|seq| *seq <= history.head)
                        .map(|after| (after, entries))
                }
                // Our own position is no longer kept: everyone starts over.
                None if read_from == self.head => {
                    self.resync_all().await;
                    None
                }
                // Only the requested range is gone: a snapshot answers it.
                None => None,
            };
            let mut first_frames = Vec::new();
            match (recovered, frame_id) {
                (Some((after, entries)), frame_id) => {
                    if let Some(id) = frame_id {
                        first_frames.push(Frame::from(
                            ServerFrame::Subscribed {
                                id,
                                conversation_id: self.conversation_id,
                                epoch: self.epoch.to_string(),
                                seq: self.head,
                                recovered: true,
                            }
                            .to_text(),
                        ));
                    }
                    first_frames.extend(
                        entries
                            .iter()
                            .filter(|e| e.seq > after && e.seq <= self.head)
                            .map(|e| self.frame_of(e)),
                    );
                }
                (None, frame_id) => {
                    first_frames = self.snapshot_frames(frame_id.flatten());
                }
            }
            self.subscribers
                .insert(subscriber.connection_id, subscriber);
            return Ok(first_frames);
        }
        Err(ApiError::unavailable(
            "the conversation's log is being rebuilt, retry",
        ))
    }

    /// `subscribed` (not recovered) and a snapshot at `head`, from this
    /// actor's copy: the join's read has just brought it to the log's head,
    /// so the whole conversation is not read again for each subscriber.
    fn snapshot_frames(&self, frame_id: Option<String>) -> Vec<Frame> {
        self.start_over(frame_id, self.head, self.transcript.messages().to_vec())
            .to_vec()
    }

    /// Recreates the conversation from this node's copy (a no-op if another
    /// node did first), then resynchronises every subscriber. False when the
    /// store could not be reached.
    async fn rebuild(&mut self) -> bool {
        let Some(info) = self.info.clone() else {
            return true;
        };
        let copy = Snapshot {
            info,
            epoch: self.epoch.clone(),
            seq: self.head,
            messages: self.transcript.messages().to_vec(),
        };
        match self.context.engine.rebuild(&copy, None).await {
            Ok(_) => {
                self.resync_all().await;
                true
            }
            Err(error) => {
                tracing::warn!(conversation_id = %self.conversation_id, %error, "rebuild failed");
                false
            }
        }
    }

    async fn live(&mut self, epoch: Arc<str>, entry: Arc<LogEntry>) {
        if *epoch != *self.epoch {
            self.resync_all().await;
            return;
        }
        if entry.seq <= self.head {
            return;
        }
        if entry.seq == self.head + 1 {
            self.advance(std::slice::from_ref(&entry));
        } else {
            self.catch_up().await;
        }
    }

    async fn catch_up(&mut self) {
        match self
            .context
            .engine
            .read(self.conversation_id, self.head)
            .await
        {
            Ok(history) => {
                if !self.accept_epoch(&history).await {
                    return;
                }
                match history.entries {
                    Some(entries) => self.advance(&entries),
                    None => self.resync_all().await,
                }
            }
            // Deleted while this node missed the news (it was cut off from
            // the bus): its subscribers are told now.
            Err(EngineError::NotFound) => self.unsubscribe_all(),
            Err(error) => {
                tracing::warn!(conversation_id = %self.conversation_id, %error, "catch-up read failed")
            }
        }
    }

    fn unsubscribe_all(&mut self) {
        for subscriber in self.subscribers.values() {
            let _ = subscriber.connection.cast(ConnectionMsg::Unsubscribed {
                conversation_id: self.conversation_id,
                token: subscriber.token,
            });
        }
        self.subscribers.clear();
    }

    /// Checks a read's epoch; a new epoch means the log was lost and rebuilt,
    /// and every subscriber starts over from a snapshot of it.
    async fn accept_epoch(&mut self, history: &History) -> bool {
        if *history.epoch == *self.epoch {
            return true;
        }
        self.resync_all().await;
        false
    }

    /// Starts every subscriber over from a snapshot of the current log.
    async fn resync_all(&mut self) {
        let snapshot = match self.context.engine.snapshot(self.conversation_id).await {
            Ok(snapshot) => snapshot,
            Err(EngineError::NotFound) => {
                self.unsubscribe_all();
                return;
            }
            Err(error) => {
                tracing::warn!(conversation_id = %self.conversation_id, %error, "resync failed");
                return;
            }
        };
        self.epoch = snapshot.epoch.clone();
        self.head = snapshot.seq;
        self.info = Some(snapshot.info);
        self.transcript = Transcript::from_messages(snapshot.messages.clone());
        let frames = self.start_over(None, snapshot.seq, snapshot.messages);
        for subscriber in self.subscribers.values() {
            for frame in &frames {
                self.send_frame(subscriber, frame.clone());
            }
        }
    }

    /// `subscribed` (not recovered) and a snapshot at `seq` of this epoch:
    /// how a subscriber starts over.
    fn start_over(&self, id: Option<String>, seq: u64, messages: Vec<Message>) -> [Frame; 2] {
        let subscribed = ServerFrame::Subscribed {
            id,
            conversation_id: self.conversation_id,
            epoch: self.epoch.to_string(),
            seq,
            recovered: false,
        };
        let (messages, branches) = crate::branches::split_active(messages);
        let snapshot = ServerFrame::Snapshot {
            conversation_id: self.conversation_id,
            epoch: self.epoch.to_string(),
            seq,
            messages,
            branches,
        };
        [
            Frame::from(subscribed.to_text()),
            Frame::from(snapshot.to_text()),
        ]
    }

    /// Fans out every entry right after `head`, in order; entries at or
    /// below it were already delivered.
    fn advance(&mut self, entries: &[Arc<LogEntry>]) {
        for entry in entries {
            if entry.seq != self.head + 1 {
                continue;
            }
            self.head = entry.seq;
            // The copy follows the log; an event it refuses cannot be in a
            // valid log, so there is nothing better to do than keep going.
            let _ = self.transcript.apply(&entry.event);
            let frame = self.frame_of(entry);
            let mut gone = Vec::new();
            for subscriber in self.subscribers.values() {
                if !self.send_frame(subscriber, frame.clone()) {
                    gone.push(subscriber.connection_id);
                }
            }
            for connection_id in gone {
                self.subscribers.remove(&connection_id);
            }
            metrics::counter!("chatstream_events_fanned_out_total")
                .increment(self.subscribers.len() as u64);
        }
    }

    fn frame_of(&self, entry: &LogEntry) -> Frame {
        Frame::from(ServerFrame::event(self.conversation_id, &self.epoch, entry).to_text())
    }

    /// Whether the subscriber's Connection is still alive.
    fn send_frame(&self, subscriber: &Subscriber, frame: Frame) -> bool {
        subscriber
            .connection
            .cast(ConnectionMsg::Deliver {
                conversation_id: self.conversation_id,
                token: subscriber.token,
                frame,
            })
            .is_ok()
    }
}
