//! The engine with a durable store behind it: history that outlives every
//! process and every cache.
//!
//! `DurableEngine` wraps either engine. Everything it answers still comes from
//! the engine (the live log stays the one truth while it holds a
//! conversation); what it adds is on both sides of it:
//!
//! - **Writing.** A turn is written to the store before `start_turn`
//!   returns (so before its ack), and a reply's ending before the ending is
//!   appended (so no client can see an ending the store does not hold). Both
//!   wait a bounded time; when the store does not answer, the write goes to
//!   the persister instead, which retries until it does. Reply text goes to
//!   the persister only (`Pending::Grew`), which writes it as checkpoints:
//!   the token path never waits on the database.
//! - **Restoring.** A conversation the engine no longer holds (the memory
//!   engine after a restart; Redis after expiry, eviction or data loss) is
//!   rebuilt from the store under a new epoch on its next use, and a reply
//!   stored as streaming is rebuilt without a lease, so that the Failover
//!   actor adopts and continues it.
//!
//! Operations of a reply's writer (`append_text`, `end_reply`, leases) never
//! restore: after a data loss the nodes rebuild what they hold from their own,
//! newer copies first (`BusMessage::LogLost`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    Appended, BusMessage, ConversationInfo, Engine, EngineError, EngineResult, History,
    MessageInfo, NodeAnnouncement, Snapshot, TextAppend, Turn, TurnRequest,
};
use crate::protocol::{Event, Message, MessageStatus, Usage, UserId};
use crate::store::group_commit::GroupCommit;
use crate::store::{Store, StoreError, StoreWrite, StoredConversation, StoredMessage};

/// How long a turn or an ending waits for the store before it goes ahead and
/// leaves the write to the persister.
const DIRECT_WRITE_WAIT: Duration = Duration::from_secs(1);

/// After a direct write failed, how long the following ones skip the store
/// and go to the persister at once, so that an outage does not slow every
/// turn and ending by `DIRECT_WRITE_WAIT`.
const STORE_DOWN_BACKOFF: Duration = Duration::from_secs(5);

/// Something the persister must write. It reads the current state from the
/// engine when it writes, so a later write always carries the latest text.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    /// The conversation's record and these of its messages.
    Messages {
        conversation_id: Uuid,
        message_ids: Vec<Uuid>,
    },
    /// A streaming reply's text grew: a checkpoint is due.
    Grew {
        conversation_id: Uuid,
        message_id: Uuid,
    },
    /// A reply ended, with what its ending says that the engine does not
    /// keep.
    Ended {
        conversation_id: Uuid,
        message_id: Uuid,
        ending: EndingDetails,
    },
}

/// The parts of a `done` that only the event carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndingDetails {
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

impl EndingDetails {
    pub fn of(event: &Event) -> EndingDetails {
        match event {
            Event::Done {
                finish_reason,
                usage,
                ..
            } => EndingDetails {
                finish_reason: Some(finish_reason.clone()),
                usage: *usage,
            },
            _ => EndingDetails::default(),
        }
    }
}

/// The persister's end of the journal.
pub type JournalReceiver = mpsc::UnboundedReceiver<Pending>;

pub struct DurableEngine {
    engine: Arc<dyn Engine>,
    store: Arc<dyn Store>,
    journal: mpsc::UnboundedSender<Pending>,
    /// For a store with one writer at a time (SQLite): direct writes that
    /// arrive together are committed together. A store that takes writers in
    /// parallel (PostgreSQL) gets them in parallel: there a shared
    /// transaction would serialize statements that its connections run at
    /// once (measured: 87 ms a write grouped, 15 ms in parallel).
    group: Option<GroupCommit>,
    store_down_until: Mutex<Option<Instant>>,
}

impl DurableEngine {
    /// The engine with `store` behind it, and the journal its persister reads.
    pub fn new(engine: Arc<dyn Engine>, store: Arc<dyn Store>) -> (DurableEngine, JournalReceiver) {
        let (journal, receiver) = mpsc::unbounded_channel();
        let durable = DurableEngine {
            engine,
            journal,
            group: store
                .single_writer()
                .then(|| GroupCommit::new(store.clone())),
            store,
            store_down_until: Mutex::new(None),
        };
        (durable, receiver)
    }

    /// Rebuilds every conversation whose reply the store holds as streaming
    /// and the engine does not hold at all, so that the Failover actor
    /// continues those replies (after the embedded node restarted, or after
    /// Redis lost data no running node held). Answers how many were rebuilt.
    pub async fn resume_streaming(&self) -> EngineResult<usize> {
        let replies = self.store.streaming_replies().await.map_err(unavailable)?;
        let mut conversations: Vec<Uuid> = replies.into_iter().map(|(c, _)| c).collect();
        conversations.sort();
        conversations.dedup();
        let mut rebuilt = 0;
        for id in conversations {
            if self.engine.conversation(id).await?.is_none() && self.restore(id).await? {
                rebuilt += 1;
            }
        }
        Ok(rebuilt)
    }

    /// Rebuilds a conversation from the store, if it holds it. False when
    /// the store has no such conversation (never stored, or deleted).
    async fn restore(&self, id: Uuid) -> EngineResult<bool> {
        let Some(stored) = self.store.conversation(id).await.map_err(unavailable)? else {
            return Ok(false);
        };
        let messages = self.store.messages(id).await.map_err(unavailable)?;
        let copy = Snapshot {
            info: ConversationInfo {
                id: stored.id,
                owner: stored.owner,
                title: stored.title,
                created_at: stored.created_at,
                updated_at: stored.updated_at,
            },
            epoch: Arc::from(""),
            seq: 0,
            messages: messages.into_iter().map(|m| m.message).collect(),
        };
        let epoch = self.engine.rebuild(&copy, None).await?;
        tracing::info!(conversation_id = %id, %epoch, "conversation restored from the store");
        metrics::counter!("chatstream_store_restored_total").increment(1);
        Ok(true)
    }

    /// Runs `op`; if the engine does not hold the conversation but the store
    /// does, restores it and runs `op` again.
    async fn restoring<T, F, Fut>(&self, id: Uuid, op: F) -> EngineResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = EngineResult<T>>,
    {
        match op().await {
            Err(EngineError::NotFound) if self.restore(id).await? => op().await,
            result => result,
        }
    }

    fn store_recently_down(&self) -> bool {
        let until = *self
            .store_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    /// Writes at once, waiting a bounded time; a write the store did not
    /// take is handed to the persister as `retry`.
    async fn write_now(&self, writes: Vec<StoreWrite>, retry: Pending) {
        if !self.store_recently_down() {
            let write = async {
                match &self.group {
                    Some(group) => group.apply(writes).await,
                    None => self.store.apply(&writes).await,
                }
            };
            match tokio::time::timeout(DIRECT_WRITE_WAIT, write).await {
                Ok(Ok(())) => return,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "the store refused a write; the persister retries it")
                }
                Err(_) => tracing::warn!(
                    "the store did not answer in time; the persister retries the write"
                ),
            }
            *self
                .store_down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + STORE_DOWN_BACKOFF);
        }
        metrics::counter!("chatstream_store_deferred_writes_total").increment(1);
        let _ = self.journal.send(retry);
    }

    /// The store's record of a conversation and some of its messages, as the
    /// engine holds them now; `None` when it no longer holds the conversation.
    async fn records(
        &self,
        conversation_id: Uuid,
        message_ids: &[Uuid],
        ending: Option<(Uuid, &EndingDetails, &Event)>,
    ) -> EngineResult<Option<Vec<StoreWrite>>> {
        let Some(info) = self.engine.conversation(conversation_id).await? else {
            return Ok(None);
        };
        let mut writes = vec![StoreWrite::Conversation(stored_conversation(&info))];
        for message_id in message_ids {
            let Some((position, mut message)) =
                self.engine.message_at(conversation_id, *message_id).await?
            else {
                continue;
            };
            let mut details = EndingDetails::default();
            if let Some((ended, ending_details, event)) = ending
                && ended == *message_id
                && message.status == MessageStatus::Streaming
            {
                apply_ending(&mut message, event);
                details = ending_details.clone();
            }
            writes.push(StoreWrite::Message(StoredMessage {
                message,
                position,
                finish_reason: details.finish_reason,
                usage: details.usage,
            }));
        }
        Ok(Some(writes))
    }

    /// Appends a reply's ending, writing it to the store first so that no
    /// client can receive an ending the store does not hold.
    async fn end<F, Fut>(
        &self,
        conversation_id: Uuid,
        ending: &Event,
        append: F,
    ) -> EngineResult<Appended>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = EngineResult<Appended>>,
    {
        let message_id = ending.message_id();
        let details = EndingDetails::of(ending);
        let pending = Pending::Ended {
            conversation_id,
            message_id,
            ending: details.clone(),
        };
        match self
            .records(
                conversation_id,
                &[message_id],
                Some((message_id, &details, ending)),
            )
            .await
        {
            Ok(Some(writes)) => self.write_now(writes, pending).await,
            Ok(None) => {}
            Err(_) => {
                let _ = self.journal.send(pending);
            }
        }
        let result = append().await;
        match &result {
            // The conversation's record was read before the ending: its
            // update time is rewritten after it.
            Ok(_) => {
                let _ = self.journal.send(Pending::Messages {
                    conversation_id,
                    message_ids: Vec::new(),
                });
            }
            // Refused: another ending won, and the store may now hold the
            // loser. The persister rewrites what the log says.
            Err(error) if !matches!(error, EngineError::Unavailable(_)) => {
                let _ = self.journal.send(Pending::Messages {
                    conversation_id,
                    message_ids: vec![message_id],
                });
            }
            Err(_) => {}
        }
        result
    }
}

/// What a message becomes once `ending` applies to it.
fn apply_ending(message: &mut Message, ending: &Event) {
    match ending {
        Event::Done { .. } => message.status = MessageStatus::Complete,
        Event::Cancelled { .. } => message.status = MessageStatus::Cancelled,
        Event::Failed { error, .. } => {
            message.status = MessageStatus::Failed;
            message.error = Some(error.clone());
        }
        _ => {}
    }
}

pub fn stored_conversation(info: &ConversationInfo) -> StoredConversation {
    StoredConversation {
        id: info.id,
        owner: info.owner.clone(),
        title: info.title.clone(),
        created_at: info.created_at,
        updated_at: info.updated_at,
    }
}

fn unavailable(error: StoreError) -> EngineError {
    match error {
        StoreError::Unavailable(m) => EngineError::Unavailable(m),
        other => EngineError::Internal(other.to_string()),
    }
}

#[async_trait]
impl Engine for DurableEngine {
    fn name(&self) -> &'static str {
        self.engine.name()
    }

    async fn ping(&self) -> EngineResult<()> {
        self.engine.ping().await
    }

    async fn create_conversation(
        &self,
        owner: UserId,
        title: Option<String>,
    ) -> EngineResult<ConversationInfo> {
        let info = self.engine.create_conversation(owner, title).await?;
        let pending = Pending::Messages {
            conversation_id: info.id,
            message_ids: Vec::new(),
        };
        self.write_now(
            vec![StoreWrite::Conversation(stored_conversation(&info))],
            pending,
        )
        .await;
        Ok(info)
    }

    async fn conversation(&self, id: Uuid) -> EngineResult<Option<ConversationInfo>> {
        match self.engine.conversation(id).await? {
            Some(info) => Ok(Some(info)),
            None if self.restore(id).await? => self.engine.conversation(id).await,
            None => Ok(None),
        }
    }

    async fn list_conversations(&self, owner: &UserId) -> EngineResult<Vec<ConversationInfo>> {
        self.engine.list_conversations(owner).await
    }

    /// Written to the store like a turn: before the answer, or by the
    /// persister when the store does not answer in time.
    async fn rename_conversation(&self, id: Uuid, title: String) -> EngineResult<ConversationInfo> {
        let info = self
            .restoring(id, || self.engine.rename_conversation(id, title.clone()))
            .await?;
        let pending = Pending::Messages {
            conversation_id: id,
            message_ids: Vec::new(),
        };
        match self.records(id, &[], None).await {
            Ok(Some(writes)) => self.write_now(writes, pending).await,
            Ok(None) => {}
            Err(_) => {
                let _ = self.journal.send(pending);
            }
        }
        Ok(info)
    }

    /// Deletes from the store first: a conversation gone from the store can
    /// never be restored, whatever happens to the engine's copy.
    async fn delete_conversation(&self, id: Uuid) -> EngineResult<()> {
        self.store
            .apply(&[StoreWrite::DeleteConversation(id)])
            .await
            .map_err(unavailable)?;
        match self.engine.delete_conversation(id).await {
            Err(EngineError::NotFound) => Ok(()),
            result => result,
        }
    }

    async fn start_turn(&self, request: TurnRequest) -> EngineResult<Turn> {
        let turn = match request.conversation_id {
            Some(id) => {
                self.restoring(id, || self.engine.start_turn(request.clone()))
                    .await?
            }
            None => self.engine.start_turn(request).await?,
        };
        if turn.started {
            let conversation_id = turn.ack.conversation_id;
            let message_ids = vec![turn.ack.user_message_id, turn.ack.assistant_message_id];
            let pending = Pending::Messages {
                conversation_id,
                message_ids: message_ids.clone(),
            };
            match self.records(conversation_id, &message_ids, None).await {
                Ok(Some(writes)) => self.write_now(writes, pending).await,
                Ok(None) => {}
                Err(_) => {
                    let _ = self.journal.send(pending);
                }
            }
        }
        Ok(turn)
    }

    async fn append(&self, conversation_id: Uuid, event: Event) -> EngineResult<Appended> {
        if event.is_ending() {
            let ending = event.clone();
            self.restoring(conversation_id, || {
                self.end(conversation_id, &ending, || {
                    self.engine.append(conversation_id, ending.clone())
                })
            })
            .await
        } else {
            self.restoring(conversation_id, || {
                self.engine.append(conversation_id, event.clone())
            })
            .await
        }
    }

    async fn append_text(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        holder: &str,
    ) -> EngineResult<TextAppend> {
        let appended = self
            .engine
            .append_text(conversation_id, message_id, offset, text, holder)
            .await?;
        let _ = self.journal.send(Pending::Grew {
            conversation_id,
            message_id,
        });
        Ok(appended)
    }

    async fn end_reply(
        &self,
        conversation_id: Uuid,
        ending: Event,
        holder: &str,
    ) -> EngineResult<Appended> {
        self.end(conversation_id, &ending, || {
            self.engine
                .end_reply(conversation_id, ending.clone(), holder)
        })
        .await
    }

    async fn read(&self, conversation_id: Uuid, after_seq: u64) -> EngineResult<History> {
        self.restoring(conversation_id, || {
            self.engine.read(conversation_id, after_seq)
        })
        .await
    }

    async fn snapshot(&self, conversation_id: Uuid) -> EngineResult<Snapshot> {
        self.restoring(conversation_id, || self.engine.snapshot(conversation_id))
            .await
    }

    async fn rebuild(&self, copy: &Snapshot, holder: Option<&str>) -> EngineResult<Arc<str>> {
        self.engine.rebuild(copy, holder).await
    }

    async fn message(&self, message_id: Uuid) -> EngineResult<Option<MessageInfo>> {
        if let Some(info) = self.engine.message(message_id).await? {
            return Ok(Some(info));
        }
        match self
            .store
            .message_conversation(message_id)
            .await
            .map_err(unavailable)?
        {
            Some(conversation_id) if self.restore(conversation_id).await? => {
                self.engine.message(message_id).await
            }
            _ => Ok(None),
        }
    }

    async fn message_at(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<Option<(u64, Message)>> {
        self.engine.message_at(conversation_id, message_id).await
    }

    async fn watch(&self, conversation_id: Uuid) -> EngineResult<()> {
        self.engine.watch(conversation_id).await
    }

    async fn unwatch(&self, conversation_id: Uuid) -> EngineResult<()> {
        self.engine.unwatch(conversation_id).await
    }

    async fn renew_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<bool> {
        self.engine
            .renew_lease(conversation_id, message_id, holder, ttl)
            .await
    }

    async fn release_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
    ) -> EngineResult<()> {
        self.engine
            .release_lease(conversation_id, message_id, holder)
            .await
    }

    async fn claim_orphans(&self, holder: &str, ttl: Duration) -> EngineResult<Vec<(Uuid, Uuid)>> {
        self.engine.claim_orphans(holder, ttl).await
    }

    async fn stop_remote_generation(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<()> {
        self.engine
            .stop_remote_generation(conversation_id, message_id)
            .await
    }

    async fn announce_node(
        &self,
        announcement: NodeAnnouncement,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.engine.announce_node(announcement, ttl).await
    }

    async fn nodes(&self) -> EngineResult<Vec<NodeAnnouncement>> {
        self.engine.nodes().await
    }

    fn take_bus(&self) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
        self.engine.take_bus()
    }

    async fn put_ticket(
        &self,
        digest: &[u8; 32],
        user: &UserId,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.engine.put_ticket(digest, user, ttl).await
    }

    async fn take_ticket(&self, digest: &[u8; 32]) -> EngineResult<Option<UserId>> {
        self.engine.take_ticket(digest).await
    }
}
