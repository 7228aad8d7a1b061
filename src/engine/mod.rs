//! The engine: where conversations, their event logs and their live events live.
//!
//! One interface, two implementations, as Centrifuge splits its broker: the
//! memory engine is the embedded single-node default, the Redis engine lets any
//! number of nodes share one truth. Nothing above this module knows which one
//! runs. The conformance suite in `tests/engine_conformance.rs` holds both to
//! the same behaviour.

pub mod durable;
pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::protocol::{
    ApiError, ErrorCode, Event, LogEntry, Message, MessageStatus, Role, TurnAck, UserId,
};

pub use memory::MemoryEngine;
pub use redis::RedisEngine;

/// What the engine knows of a conversation besides its log.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationInfo {
    pub id: Uuid,
    pub owner: UserId,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a message lives and who may act on it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageInfo {
    pub conversation_id: Uuid,
    pub owner: UserId,
    pub role: Role,
    pub status: MessageStatus,
}

/// An event the log accepted.
#[derive(Debug, Clone)]
pub struct Appended {
    pub epoch: Arc<str>,
    pub entry: Arc<LogEntry>,
}

/// A read of the log after some seq.
#[derive(Debug, Clone)]
pub struct History {
    pub epoch: Arc<str>,
    /// The newest seq at the time of the read.
    pub head: u64,
    /// Every entry after the requested seq up to `head`, or `None` when some of
    /// them are no longer kept.
    pub entries: Option<Vec<Arc<LogEntry>>>,
}

/// The whole state of a conversation as of one seq.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub info: ConversationInfo,
    pub epoch: Arc<str>,
    pub seq: u64,
    pub messages: Vec<Message>,
}

/// A user's turn: their message and the reply it asks for, or a new
/// version of a reply alone.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub user: UserId,
    /// `None` starts a new conversation.
    pub conversation_id: Option<Uuid>,
    /// The user's message; unused by `Branch::Reply`, which appends none.
    pub content: String,
    pub model: String,
    pub client_msg_id: Option<Uuid>,
    /// Where the new messages go in the conversation's tree.
    pub branch: Branch,
}

/// Where a turn's messages go in the conversation's tree (contract 1.2,
/// "Versions and branches").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Branch {
    /// A user message after the conversation's newest one (the first, in a
    /// new conversation), and its reply: a plain `send`. The engine finds
    /// the newest message in the turn's own atomic step.
    #[default]
    Newest,
    /// A user message after `parent` (`None`: a first message beside the
    /// others), and its reply: a `send` with `parent_id`, an `edit`.
    After(Option<Uuid>),
    /// A reply alone, to the user message `to`, whose text starts with
    /// `prefix` (appended as its first delta in the same step): a
    /// `regenerate` (no prefix) or a `continue`.
    Reply { to: Uuid, prefix: String },
}

impl TurnRequest {
    /// The messages a turn appends, after `newest` (the conversation's newest
    /// message, for `Branch::Newest`): the user's, complete (none for a
    /// `Branch::Reply`), and the assistant's reply, streaming and empty.
    pub fn messages(
        &self,
        conversation_id: Uuid,
        newest: Option<Uuid>,
    ) -> (Option<Message>, Message) {
        let now = now();
        let user_message = |parent_id: Option<Uuid>| Message {
            id: Uuid::new_v4(),
            conversation_id,
            parent_id,
            role: Role::User,
            content: self.content.clone(),
            status: MessageStatus::Complete,
            model: None,
            created_at: now,
            error: None,
        };
        let (user, reply_parent) = match &self.branch {
            Branch::Reply { to, .. } => (None, *to),
            Branch::Newest | Branch::After(_) => {
                let parent = match &self.branch {
                    Branch::After(parent) => *parent,
                    _ => newest,
                };
                let user = user_message(parent);
                let id = user.id;
                (Some(user), id)
            }
        };
        let reply = Message {
            id: Uuid::new_v4(),
            conversation_id,
            parent_id: Some(reply_parent),
            role: Role::Assistant,
            content: String::new(),
            status: MessageStatus::Streaming,
            model: Some(self.model.clone()),
            created_at: now,
            error: None,
        };
        (user, reply)
    }

    /// What the turn appends, for telling a resend of it (same
    /// `client_msg_id`, same fingerprint) from a different request reusing
    /// the `client_msg_id`. A plain send's is its content, as remembered
    /// before branches existed.
    pub fn fingerprint(&self) -> String {
        match &self.branch {
            Branch::Newest => self.content.clone(),
            Branch::After(parent) => {
                let parent = parent.map_or_else(String::new, |p| p.to_string());
                format!("after {parent}\n{}", self.content)
            }
            Branch::Reply { to, prefix } => format!("reply {to}\n{prefix}"),
        }
    }
}

/// The outcome of a turn.
#[derive(Debug, Clone)]
pub struct Turn {
    pub ack: TurnAck,
    pub epoch: Arc<str>,
    /// The seq of the event carrying the user's message: the sender follows
    /// the conversation from there.
    pub user_seq: u64,
    /// False when this was a resend of a turn already started.
    pub started: bool,
}

/// A message published to the nodes that watch a conversation.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// An event was appended to a watched conversation's log.
    Published {
        conversation_id: Uuid,
        epoch: Arc<str>,
        entry: Arc<LogEntry>,
    },
    /// A watched conversation was deleted.
    Deleted { conversation_id: Uuid },
    /// Live delivery may have missed events (the bus reconnected): every
    /// watcher must catch up from the log.
    CatchUp,
    /// Another node recorded a cancel of a reply generated here: stop its
    /// generation (and the upstream request) at once.
    StopGeneration { message_id: Uuid },
    /// The log store came back without its data: every conversation this
    /// node holds must be rebuilt (under a new epoch) from what it knows.
    LogLost,
}

/// The outcome of appending reply text at a known offset.
#[derive(Debug, Clone)]
pub enum TextAppend {
    Appended(Appended),
    /// The same text was already at that offset: an earlier attempt whose
    /// answer was lost did append it, and nothing was appended twice.
    AlreadyApplied,
}

/// What one node last announced about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAnnouncement {
    pub node_id: String,
    /// The node's live actors, as `/admin/actors` lists them.
    pub actors: serde_json::Value,
}

/// What an engine holds each turn to, checked in the same atomic step as
/// the turn's appends (contract 1.1, "Identity, origins and limits"). The
/// defaults are the contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages of one conversation, user and assistant together: a turn
    /// whose two messages would pass it is refused.
    pub max_messages_per_conversation: usize,
    /// Replies one user may have streaming at once, across every node that
    /// shares the engine: a turn that would start one more is refused.
    pub max_generations_per_user: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_messages_per_conversation: 2_000,
            max_generations_per_user: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("not found")]
    NotFound,
    #[error("belongs to another user")]
    Forbidden,
    #[error("{0}")]
    Conflict(String),
    /// The turn's two messages would take the conversation past `limit`
    /// messages; nothing was appended.
    #[error("the conversation holds its limit of {limit} messages")]
    ConversationFull { limit: usize },
    /// The turn would start more than `limit` replies streaming at once for
    /// its user; nothing was appended.
    #[error("the user already has {limit} replies streaming")]
    TooManyGenerations { limit: usize },
    #[error("the log store is unavailable: {0}")]
    Unavailable(String),
    #[error("internal engine error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The contract's error for this failure, naming `what` was looked up.
    pub fn into_api(self, what: &str) -> ApiError {
        match self {
            EngineError::NotFound => ApiError::not_found(what),
            EngineError::Forbidden => ApiError::forbidden(what),
            EngineError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            EngineError::ConversationFull { limit } => ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "This conversation has reached its limit of {}. \
                     Start a new conversation to go on.",
                    counted(limit, "message", "messages")
                ),
            ),
            EngineError::TooManyGenerations { limit } => ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "You already have {} being written. \
                     Wait for one to finish, then send again.",
                    counted(limit, "reply", "replies")
                ),
            ),
            EngineError::Unavailable(detail) => ApiError::logged(
                ErrorCode::Unavailable,
                "The service is briefly unavailable; try again in a moment.",
                detail,
            ),
            EngineError::Internal(detail) => ApiError::logged(
                ErrorCode::Internal,
                "Something went wrong on our side.",
                detail,
            ),
        }
    }
}

/// "1 reply", "4 replies".
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub type EngineResult<T> = Result<T, EngineError>;

/// The event log, the materialized state and the live bus of every conversation.
///
/// Appends are atomic and checked against the materialized state (see
/// `transcript`): the seq grows by exactly one per accepted event, and the
/// event is published to the bus with that seq in the same step, so that
/// history and live delivery can never disagree.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// A short name for readiness reports and logs.
    fn name(&self) -> &'static str;

    /// Whether the log store answers.
    async fn ping(&self) -> EngineResult<()>;

    async fn create_conversation(
        &self,
        owner: UserId,
        title: Option<String>,
    ) -> EngineResult<ConversationInfo>;

    async fn conversation(&self, id: Uuid) -> EngineResult<Option<ConversationInfo>>;

    /// The owner's conversations, most recently updated first.
    async fn list_conversations(&self, owner: &UserId) -> EngineResult<Vec<ConversationInfo>>;

    /// Gives the conversation a new title; its `updated_at` moves to now.
    async fn rename_conversation(&self, id: Uuid, title: String) -> EngineResult<ConversationInfo>;

    /// Forgets a conversation, its log and its `client_msg_id`s, and publishes
    /// `Deleted` to its watchers.
    async fn delete_conversation(&self, id: Uuid) -> EngineResult<()>;

    /// Atomically: checks the `client_msg_id` (a resend answers the first
    /// turn; different content or conversation is a conflict), checks
    /// ownership, that no reply is streaming and the engine's `Limits`
    /// (`ConversationFull`, `TooManyGenerations`), creates the conversation
    /// if needed, and appends the user's message and the streaming assistant
    /// message. A refused turn appends nothing.
    async fn start_turn(&self, request: TurnRequest) -> EngineResult<Turn>;

    /// Appends one event if it applies (see `Transcript::apply`); a rejected
    /// event is a `Conflict` and appends nothing. `Message` events are added
    /// by `start_turn` only.
    async fn append(&self, conversation_id: Uuid, event: Event) -> EngineResult<Appended>;

    /// Appends a delta to a streaming reply whose text is `offset` bytes
    /// long, on behalf of the generation `holder` (a node id). A retry of an
    /// append whose answer was lost is recognised and not applied twice; any
    /// other offset mismatch, or a lease on the reply held by another node,
    /// is a `Conflict`: someone else writes this reply now.
    async fn append_text(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        holder: &str,
    ) -> EngineResult<TextAppend>;

    /// Appends a reply's ending (`done`, `failed`, `cancelled`) on behalf of
    /// its generation `holder`, refused as a `Conflict` when another node
    /// holds the reply's lease.
    async fn end_reply(
        &self,
        conversation_id: Uuid,
        ending: Event,
        holder: &str,
    ) -> EngineResult<Appended>;

    /// The log after `after_seq`.
    async fn read(&self, conversation_id: Uuid, after_seq: u64) -> EngineResult<History>;

    async fn snapshot(&self, conversation_id: Uuid) -> EngineResult<Snapshot>;

    /// Recreates a conversation the log store lost, from a node's copy of
    /// it, under a new epoch: one `message` event per message, so that the
    /// new log folds to the same state; a streaming reply is leased to
    /// `holder` (the node generating it) if given. If the conversation exists
    /// (another node rebuilt it first), nothing changes. Answers the epoch in
    /// force.
    async fn rebuild(&self, copy: &Snapshot, holder: Option<&str>) -> EngineResult<Arc<str>>;

    async fn message(&self, message_id: Uuid) -> EngineResult<Option<MessageInfo>>;

    /// One message of a conversation, whole (its text so far, for a reply
    /// still streaming), with its position among the conversation's
    /// messages (0 for the first). `None` when the conversation has no such
    /// message; `NotFound` when the conversation does not exist.
    async fn message_at(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<Option<(u64, Message)>>;

    /// Starts delivering this conversation's published events to the bus.
    async fn watch(&self, conversation_id: Uuid) -> EngineResult<()>;

    /// Stops delivering this conversation's published events.
    async fn unwatch(&self, conversation_id: Uuid) -> EngineResult<()>;

    /// Takes or renews the lease on generating a reply for `ttl`. False
    /// when another node holds it, or the reply no longer streams: this one
    /// must stop generating. On Redis, `start_turn` already leases the reply
    /// to the node that started it, so that it is adopted if that node dies
    /// before its generation starts.
    async fn renew_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
        ttl: std::time::Duration,
    ) -> EngineResult<bool>;

    /// Gives up the lease (if `holder` has it) so that another node takes the
    /// reply over at once; the reply stays in flight.
    async fn release_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
    ) -> EngineResult<()>;

    /// Leases to `holder` every streaming reply whose lease lapsed (its node
    /// stopped or stopped renewing), and returns them: (conversation, message).
    async fn claim_orphans(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> EngineResult<Vec<(Uuid, Uuid)>>;

    /// Asks the node holding this reply's lease, if any, to stop generating it.
    async fn stop_remote_generation(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<()>;

    /// Publishes this node's live actors, valid for `ttl`.
    async fn announce_node(
        &self,
        announcement: NodeAnnouncement,
        ttl: std::time::Duration,
    ) -> EngineResult<()>;

    /// The latest announcement of every node still alive.
    async fn nodes(&self) -> EngineResult<Vec<NodeAnnouncement>>;

    /// The node's bus: every message for watched conversations. Handed out
    /// once, to the node's registry.
    fn take_bus(&self) -> Option<mpsc::UnboundedReceiver<BusMessage>>;

    /// Keeps a WebSocket ticket for `user` for `ttl`, by the SHA-256
    /// `digest` of the ticket (never the ticket itself), for any node to take.
    async fn put_ticket(
        &self,
        digest: &[u8; 32],
        user: &UserId,
        ttl: std::time::Duration,
    ) -> EngineResult<()>;

    /// Takes the ticket with this digest: its user, once across every node
    /// sharing the engine; `None` when it was taken, expired or never put.
    async fn take_ticket(&self, digest: &[u8; 32]) -> EngineResult<Option<UserId>>;
}

/// How long a node's lease on generating a reply lasts without renewal: the
/// longest a reply waits before another node takes it over after its node
/// died. Generations renew it three times within this.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(3);

/// The current time to the microsecond: the precision every store keeps, so
/// that a time reads back exactly as it was written.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A new epoch name: opaque, and different for every life of a log.
pub fn new_epoch() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A title from the first message of a conversation.
pub fn title_from(content: &str) -> String {
    const MAX: usize = 60;
    let line = content.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX {
        line
    } else {
        let cut: String = line.chars().take(MAX - 1).collect();
        format!("{}…", cut.trim_end())
    }
}
