//! The Persister actor: writes conversation state to the durable store off
//! the token path.
//!
//! `DurableEngine` journals what changed (`Pending`): text that grew, turns
//! and endings the store did not take at once. Every `TICK` the persister
//! drains that journal into a set of due writes, reads each one's current
//! state from the engine and writes them in one transaction. A streaming
//! reply's text is written at most once per `CHECKPOINT_EVERY`; turns and
//! endings at the next tick. Writes are upserts by id, so a retry or a write
//! another node also made changes nothing; while the database is down the
//! due set is kept and retried with backoff, so an outage delays persistence
//! and loses nothing (as long as the engine keeps the state meanwhile).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::engine::durable::{EndingDetails, JournalReceiver, Pending, stored_conversation};
use crate::engine::{Engine, EngineError};
use crate::protocol::MessageStatus;
use crate::store::{Store, StoreWrite, StoredMessage};

/// How often the journal is drained and due writes are made.
const TICK: Duration = Duration::from_millis(100);
/// The most often a streaming reply's text is written.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Messages written in one transaction at most: short transactions hold
/// their conversations' locks (PostgreSQL) or the one writer's (SQLite) only
/// briefly, so turns and endings written meanwhile do not wait behind them.
const BATCH: usize = 50;
/// Longest wait for one batch before it counts as failed.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest pause between retries while the store is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the persister needs: the store, the engine it reads state from (the
/// inner one: reading must not restore), and the journal.
pub struct Persistence {
    pub store: Arc<dyn Store>,
    pub engine: Arc<dyn Engine>,
    /// Drained by the running persister at each tick; shared rather than
    /// taken, so that a persister restarted after a failure (which skips
    /// `post_stop`) finds it.
    pub journal: Mutex<Option<JournalReceiver>>,
}

pub enum PersisterMsg {
    Tick,
    /// Writes everything due now, checkpoints included, and answers whether
    /// nothing is left (the node is stopping).
    Drain(RpcReplyPort<bool>),
}

pub struct Persister;

pub struct PersisterState {
    persistence: Arc<Persistence>,
    /// Messages whose state must be written, by message id.
    due: HashMap<Uuid, Due>,
    /// Conversations whose record must be written.
    conversations: HashSet<Uuid>,
    failures: u32,
    retry_at: Option<Instant>,
    ticker: JoinHandle<()>,
}

struct Due {
    conversation_id: Uuid,
    /// When the oldest unwritten change happened.
    since: Instant,
    /// Written at the next tick rather than at the next checkpoint.
    urgent: bool,
    ending: Option<EndingDetails>,
}

impl Actor for Persister {
    type Msg = PersisterMsg;
    type State = PersisterState;
    type Arguments = Arc<Persistence>;

    async fn pre_start(
        &self,
        myself: ActorRef<PersisterMsg>,
        persistence: Arc<Persistence>,
    ) -> Result<PersisterState, ActorProcessingErr> {
        Ok(PersisterState {
            persistence,
            due: HashMap::new(),
            conversations: HashSet::new(),
            failures: 0,
            retry_at: None,
            ticker: myself.send_interval(TICK, || PersisterMsg::Tick),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<PersisterMsg>,
        state: &mut PersisterState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<PersisterMsg>,
        message: PersisterMsg,
        state: &mut PersisterState,
    ) -> Result<(), ActorProcessingErr> {
        state.drain_journal();
        match message {
            PersisterMsg::Tick => {
                if state.retry_at.is_none_or(|at| at <= Instant::now()) {
                    state.write_due(false).await;
                }
            }
            PersisterMsg::Drain(reply) => {
                state.write_due(true).await;
                let _ = reply.send(state.due.is_empty() && state.conversations.is_empty());
            }
        }
        metrics::gauge!("chatstream_store_pending_writes").set(state.due.len() as f64);
        Ok(())
    }
}

impl PersisterState {
    fn drain_journal(&mut self) {
        let mut received = Vec::new();
        {
            let mut journal = self
                .persistence
                .journal
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Some(journal) = journal.as_mut() else {
                return;
            };
            while let Ok(pending) = journal.try_recv() {
                received.push(pending);
            }
        }
        let now = Instant::now();
        for pending in received {
            match pending {
                Pending::Messages {
                    conversation_id,
                    message_ids,
                } => {
                    self.conversations.insert(conversation_id);
                    for message_id in message_ids {
                        self.mark(conversation_id, message_id, now).urgent = true;
                    }
                }
                Pending::Grew {
                    conversation_id,
                    message_id,
                } => {
                    self.mark(conversation_id, message_id, now);
                }
                Pending::Ended {
                    conversation_id,
                    message_id,
                    ending,
                } => {
                    let due = self.mark(conversation_id, message_id, now);
                    due.urgent = true;
                    due.ending = Some(ending);
                }
            }
        }
    }

    fn mark(&mut self, conversation_id: Uuid, message_id: Uuid, now: Instant) -> &mut Due {
        self.due.entry(message_id).or_insert(Due {
            conversation_id,
            since: now,
            urgent: false,
            ending: None,
        })
    }

    /// Writes what is due (everything when `all`), in batches.
    async fn write_due(&mut self, all: bool) {
        let now = Instant::now();
        let mut ready: Vec<Uuid> = self
            .due
            .iter()
            .filter(|(_, due)| all || due.urgent || due.since + CHECKPOINT_EVERY <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut conversations: Vec<Uuid> = self.conversations.iter().copied().collect();
        while !ready.is_empty() || !conversations.is_empty() {
            let chunk: Vec<Uuid> = ready.drain(..ready.len().min(BATCH)).collect();
            let mut by_conversation: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
            for id in conversations.drain(..) {
                by_conversation.entry(id).or_default();
            }
            for message_id in chunk {
                if let Some(due) = self.due.get(&message_id) {
                    by_conversation
                        .entry(due.conversation_id)
                        .or_default()
                        .push(message_id);
                }
            }
            if !self.write_batch(by_conversation).await {
                return;
            }
        }
    }

    /// Reads the current state of these conversations and messages from the
    /// engine and writes it in one transaction. False when the store failed.
    async fn write_batch(&mut self, batch: HashMap<Uuid, Vec<Uuid>>) -> bool {
        let engine = self.persistence.engine.clone();
        let mut writes = Vec::new();
        let mut written_messages = Vec::new();
        let mut written_conversations = Vec::new();
        for (conversation_id, message_ids) in batch {
            let info = match engine.conversation(conversation_id).await {
                Ok(Some(info)) => info,
                // Deleted, or lost with the engine's data: nothing to write
                // now; a restore or the node that rebuilds it writes again.
                Ok(None) | Err(EngineError::NotFound) => {
                    self.forget(conversation_id, &message_ids);
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%conversation_id, %error, "could not read a conversation to persist");
                    continue;
                }
            };
            writes.push(StoreWrite::Conversation(stored_conversation(&info)));
            written_conversations.push(conversation_id);
            for message_id in message_ids {
                match engine.message_at(conversation_id, message_id).await {
                    Ok(Some((position, message))) => {
                        let ending = match message.status {
                            MessageStatus::Streaming => EndingDetails::default(),
                            _ => self
                                .due
                                .get(&message_id)
                                .and_then(|due| due.ending.clone())
                                .unwrap_or_default(),
                        };
                        writes.push(StoreWrite::Message(StoredMessage {
                            message,
                            position,
                            finish_reason: ending.finish_reason,
                            usage: ending.usage,
                        }));
                        written_messages.push(message_id);
                    }
                    Ok(None) | Err(EngineError::NotFound) => {
                        self.due.remove(&message_id);
                    }
                    Err(error) => {
                        tracing::debug!(%message_id, %error, "could not read a message to persist");
                    }
                }
            }
        }
        if writes.is_empty() {
            return true;
        }
        let result =
            tokio::time::timeout(WRITE_DEADLINE, self.persistence.store.apply(&writes)).await;
        match result {
            Ok(Ok(())) => {
                for id in written_messages {
                    self.due.remove(&id);
                }
                for id in written_conversations {
                    self.conversations.remove(&id);
                }
                if self.failures > 0 {
                    tracing::info!(failures = self.failures, "the store is writable again");
                }
                self.failures = 0;
                self.retry_at = None;
                true
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                self.failures += 1;
                let backoff = (TICK * 2u32.saturating_pow(self.failures.min(6))).min(MAX_BACKOFF);
                self.retry_at = Some(Instant::now() + backoff);
                metrics::counter!("chatstream_store_write_errors_total").increment(1);
                if self.failures == 1 || self.failures.is_multiple_of(20) {
                    tracing::warn!(
                        %error,
                        failures = self.failures,
                        pending = self.due.len(),
                        "could not write to the store; retrying"
                    );
                }
                false
            }
        }
    }

    fn forget(&mut self, conversation_id: Uuid, message_ids: &[Uuid]) {
        self.conversations.remove(&conversation_id);
        for id in message_ids {
            self.due.remove(id);
        }
    }
}
