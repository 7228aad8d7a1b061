//! The transactional outbox: events for other systems (the Kafka export,
//! `docs/events.md`), written by [`Store::apply`](super::Store::apply) in
//! the transaction of the change each one describes, so that there is no
//! event without its change and no change without its event.
//!
//! A store writes events only when it was opened with [`OutboxOptions`]
//! (a node with `KAFKA_BROKERS`). An event is added when a write changes
//! what the store holds, never when it repeats what is there:
//!
//! - `conversation.created`: a conversation inserted (not an update of one
//!   already stored, not one refused by its tombstone);
//! - `message.user`: a user message inserted;
//! - `reply.ended`: an assistant message moved from absent or `streaming`
//!   to `complete`, `cancelled` or `failed` (a later rewrite of an ended
//!   reply adds nothing);
//! - `conversation.deleted`: a stored conversation removed.
//!
//! Each event's id is derived from what it describes ([`event_id`]: UUIDv5 of
//! its type and the conversation's or message's id) and the table refuses a
//! second row with the same id, so a batch that the persister retries, or
//! that two nodes both write, adds one event. Its `seq` (the table's
//! increasing key) orders a conversation's events: a conversation's writes
//! run one transaction at a time (PostgreSQL's advisory lock per
//! conversation, SQLite's single writer), so its events commit in `seq`
//! order.
//!
//! [`Outbox`] is the reading side: rows are claimed for a lease
//! (`claimed_by`, `claimed_until`), so that with several exporters each row
//! is published by one at a time and a dead exporter's rows return to the
//! others when its lease ends; a row is claimable only when no earlier row of
//! its conversation is claimed by anyone, so a conversation's events are
//! never published out of order.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{StoreResult, StoredConversation, StoredMessage};
use crate::protocol::{MessageStatus, Usage};

/// The version of the events' JSON (`"schema"`); a change that could break a
/// consumer gets a new one.
pub const SCHEMA: u32 = 1;

/// The namespace of event ids (UUIDv5): ids are stable across nodes,
/// retries and versions of chatstream.
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_1b7e_8a43_4c2e_9d61_3a7f_e2b4_c0d9);

/// How a store writes its outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxOptions {
    /// Whether events carry message text and titles (`KAFKA_INCLUDE_TEXT`).
    pub include_text: bool,
}

/// The kinds of events, as the `type` of their JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    ConversationCreated,
    MessageUser,
    ReplyEnded,
    ConversationDeleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConversationCreated => "conversation.created",
            EventKind::MessageUser => "message.user",
            EventKind::ReplyEnded => "reply.ended",
            EventKind::ConversationDeleted => "conversation.deleted",
        }
    }
}

/// The id of the event of `kind` about `subject` (the conversation for
/// conversation events, the message for message events): the same for every
/// write of the same change, which is what makes retries add nothing.
pub fn event_id(kind: EventKind, subject: Uuid) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{}:{}", kind.as_str(), subject).as_bytes(),
    )
}

/// An event to add to the outbox, built inside a write's transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewEvent {
    pub event_id: Uuid,
    pub conversation_id: Uuid,
    pub kind: EventKind,
    pub created_at: DateTime<Utc>,
    /// The event's JSON without `seq`, which the table assigns.
    pub payload: String,
}

/// The JSON of an event (docs/events.md), but `seq`, added when published.
/// Every field is always present (null when it does not apply) except the
/// text ones, present only with `include_text`.
#[derive(Serialize)]
struct Payload<'a> {
    schema: u32,
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    user_id: &'a str,
    conversation_id: Uuid,
    message_id: Option<Uuid>,
    position: Option<u64>,
    model: Option<&'a str>,
    status: Option<&'static str>,
    finish_reason: Option<&'a str>,
    usage: Option<Usage>,
    error: Option<&'a str>,
    message_created_at: Option<String>,
    /// The store keeps no timing of a reply's stream (only when the reply
    /// started, `message_created_at`): null in schema 1.
    time_to_first_token_ms: Option<u64>,
    /// As `time_to_first_token_ms`.
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl<'a> Payload<'a> {
    fn new(
        kind: EventKind,
        subject: Uuid,
        conversation_id: Uuid,
        owner: &'a str,
        now: DateTime<Utc>,
    ) -> Payload<'a> {
        Payload {
            schema: SCHEMA,
            id: event_id(kind, subject),
            kind: kind.as_str(),
            time: rfc3339(now),
            user_id: owner,
            conversation_id,
            message_id: None,
            position: None,
            model: None,
            status: None,
            finish_reason: None,
            usage: None,
            error: None,
            message_created_at: None,
            time_to_first_token_ms: None,
            duration_ms: None,
            title: None,
            text: None,
        }
    }

    fn into_event(self, kind: EventKind, now: DateTime<Utc>) -> NewEvent {
        NewEvent {
            event_id: self.id,
            conversation_id: self.conversation_id,
            kind,
            created_at: now,
            payload: serde_json::to_string(&self).expect("an event serializes"),
        }
    }
}

/// A conversation inserted.
pub(crate) fn conversation_created(
    conversation: &StoredConversation,
    options: OutboxOptions,
    now: DateTime<Utc>,
) -> NewEvent {
    let kind = EventKind::ConversationCreated;
    let mut payload = Payload::new(
        kind,
        conversation.id,
        conversation.id,
        conversation.owner.as_str(),
        now,
    );
    if options.include_text {
        payload.title = Some(conversation.title.as_deref());
    }
    payload.into_event(kind, now)
}

/// A stored conversation deleted.
pub(crate) fn conversation_deleted(id: Uuid, owner: &str, now: DateTime<Utc>) -> NewEvent {
    let kind = EventKind::ConversationDeleted;
    Payload::new(kind, id, id, owner, now).into_event(kind, now)
}

/// A user message inserted, or an assistant message ended: `kind` says
/// which.
pub(crate) fn message_event(
    kind: EventKind,
    stored: &StoredMessage,
    owner: &str,
    options: OutboxOptions,
    now: DateTime<Utc>,
) -> NewEvent {
    let message = &stored.message;
    let mut payload = Payload::new(kind, message.id, message.conversation_id, owner, now);
    payload.message_id = Some(message.id);
    payload.position = Some(stored.position);
    payload.model = message.model.as_deref();
    payload.message_created_at = Some(rfc3339(message.created_at));
    if kind == EventKind::ReplyEnded {
        payload.status = Some(ending_name(message.status));
        payload.finish_reason = stored.finish_reason.as_deref();
        payload.usage = stored.usage;
        payload.error = message.error.as_deref();
    }
    if options.include_text {
        payload.text = Some(&message.content);
    }
    payload.into_event(kind, now)
}

/// A final status as the wire names the ending event.
fn ending_name(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Complete => "done",
        MessageStatus::Cancelled => "cancelled",
        MessageStatus::Failed => "failed",
        MessageStatus::Streaming => "streaming",
    }
}

/// The event a message write adds, given what the store held before it
/// (`previous`: the stored status, None when the message was not stored)
/// and that the write took effect.
pub(crate) fn message_event_kind(
    stored: &StoredMessage,
    previous: Option<MessageStatus>,
) -> Option<EventKind> {
    use crate::protocol::Role;
    match stored.message.role {
        Role::User if previous.is_none() => Some(EventKind::MessageUser),
        Role::Assistant
            if stored.message.status != MessageStatus::Streaming
                && previous.is_none_or(|status| status == MessageStatus::Streaming) =>
        {
            Some(EventKind::ReplyEnded)
        }
        _ => None,
    }
}

/// Whether a message write may add an event, so that the store reads what
/// it held before: streaming checkpoints, the bulk of the writes, never do.
pub(crate) fn may_add_event(stored: &StoredMessage) -> bool {
    stored.message.role == crate::protocol::Role::User
        || stored.message.status != MessageStatus::Streaming
}

/// One event waiting in the outbox, as an exporter claimed it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Increasing in the order the events were written; a conversation's
    /// events are published in this order.
    pub seq: i64,
    pub event_id: Uuid,
    /// The Kafka key: one conversation's events go to one partition.
    pub conversation_id: Uuid,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// The event's JSON without `seq`.
    pub payload: String,
}

impl OutboxRow {
    /// The event's JSON as published: the stored payload with `seq`.
    pub fn event_json(&self) -> Vec<u8> {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&self.payload) {
            Ok(mut object) => {
                object.insert("seq".into(), self.seq.into());
                serde_json::to_vec(&object).expect("a JSON object serializes")
            }
            // Every payload is written by `NewEvent`: this is only reached
            // by a row written by hand, published as it is.
            Err(_) => self.payload.clone().into_bytes(),
        }
    }
}

/// The backlog, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    /// Rows not yet published (claimed or not).
    pub rows: u64,
    /// When the oldest of them was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// The reading side of the outbox, for exporters.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Claims up to `limit` rows for `lease` in the name of `claimer`, in
    /// `seq` order: rows not claimed (or whose claim lapsed) and with no
    /// earlier row of their conversation claimed by anyone. Answers them in
    /// `seq` order.
    async fn claim(
        &self,
        claimer: &str,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<OutboxRow>>;

    /// Removes published rows (whoever holds them now: they are out).
    async fn published(&self, seqs: &[i64]) -> StoreResult<()>;

    /// Gives back rows `claimer` holds but did not publish, for the next
    /// claim (its own or another exporter's).
    async fn release(&self, claimer: &str, seqs: &[i64]) -> StoreResult<()>;

    /// How many rows wait and since when.
    async fn stats(&self) -> StoreResult<OutboxStats>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Message, Role, UserId};

    fn message(role: Role, status: MessageStatus) -> StoredMessage {
        StoredMessage {
            message: Message {
                parent_id: None,
                id: Uuid::new_v4(),
                conversation_id: Uuid::new_v4(),
                role,
                content: "secret words".into(),
                status,
                model: Some("demo".into()),
                created_at: Utc::now(),
                error: None,
            },
            position: 1,
            finish_reason: Some("stop".into()),
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5,
            }),
        }
    }

    #[test]
    fn event_ids_are_stable_and_differ_by_kind() {
        let subject = Uuid::new_v4();
        assert_eq!(
            event_id(EventKind::ReplyEnded, subject),
            event_id(EventKind::ReplyEnded, subject)
        );
        assert_ne!(
            event_id(EventKind::ReplyEnded, subject),
            event_id(EventKind::MessageUser, subject)
        );
        assert_eq!(
            event_id(EventKind::ReplyEnded, subject).get_version_num(),
            5
        );
    }

    #[test]
    fn only_a_first_ending_or_a_new_user_message_adds_an_event() {
        use MessageStatus::*;
        let user = message(Role::User, Complete);
        assert_eq!(
            message_event_kind(&user, None),
            Some(EventKind::MessageUser)
        );
        assert_eq!(message_event_kind(&user, Some(Complete)), None);
        let ended = message(Role::Assistant, Cancelled);
        assert_eq!(
            message_event_kind(&ended, None),
            Some(EventKind::ReplyEnded)
        );
        assert_eq!(
            message_event_kind(&ended, Some(Streaming)),
            Some(EventKind::ReplyEnded)
        );
        assert_eq!(message_event_kind(&ended, Some(Complete)), None);
        let streaming = message(Role::Assistant, Streaming);
        assert!(!may_add_event(&streaming));
        assert_eq!(message_event_kind(&streaming, None), None);
    }

    #[test]
    fn text_is_left_out_unless_asked_for() {
        let stored = message(Role::Assistant, MessageStatus::Complete);
        let owner = UserId::new_guest();
        let now = Utc::now();
        let without = message_event(
            EventKind::ReplyEnded,
            &stored,
            owner.as_str(),
            OutboxOptions::default(),
            now,
        );
        assert!(!without.payload.contains("secret"));
        let json: serde_json::Value = serde_json::from_str(&without.payload).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["type"], "reply.ended");
        assert_eq!(json["status"], "done");
        assert_eq!(json["usage"]["completion_tokens"], 5);
        assert!(json["duration_ms"].is_null());
        assert!(json.get("text").is_none());
        let with = message_event(
            EventKind::ReplyEnded,
            &stored,
            owner.as_str(),
            OutboxOptions { include_text: true },
            now,
        );
        let json: serde_json::Value = serde_json::from_str(&with.payload).unwrap();
        assert_eq!(json["text"], "secret words");

        let row = OutboxRow {
            seq: 42,
            event_id: with.event_id,
            conversation_id: with.conversation_id,
            kind: "reply.ended".into(),
            created_at: now,
            payload: with.payload,
        };
        let published: serde_json::Value = serde_json::from_slice(&row.event_json()).unwrap();
        assert_eq!(published["seq"], 42);
        assert_eq!(published["id"], with.event_id.to_string());
    }
}
