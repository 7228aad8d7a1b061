//! The store's outbox of events (src/store/outbox.rs), on both stores: each
//! check runs once on a fresh SQLite file and once on a fresh PostgreSQL
//! database (`CHATSTREAM_TEST_POSTGRES`, see `common/postgres.rs`).
//!
//! An event is written in the transaction of its change, once per change
//! however often the change is written again, and claimed by one exporter
//! at a time without ever letting a conversation's later event out before
//! an earlier one.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chatstream::protocol::{Message, MessageStatus, Role, Usage, UserId};
use chatstream::store::{
    self, OutboxOptions, OutboxRow, Store, StoreError, StoreWrite, StoredConversation,
    StoredMessage,
};
use chrono::{DateTime, Utc};
use common::postgres as pg;
use serde_json::Value;
use uuid::Uuid;

enum Place {
    Dir(PathBuf),
    Database(String),
}

impl Place {
    async fn open(&self, outbox: Option<OutboxOptions>) -> Arc<dyn Store> {
        let url = match self {
            Place::Dir(dir) => format!("sqlite://{}", dir.join("history.db").display()),
            Place::Database(url) => url.clone(),
        };
        store::connect_with(&url, outbox)
            .await
            .expect("open the store")
    }

    async fn clean(self) {
        match self {
            Place::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::Database(url) => pg::drop_database(&url).await,
        }
    }
}

async fn sqlite_place() -> Place {
    Place::Dir(
        std::env::temp_dir()
            .join("chatstream-outbox-tests")
            .join(Uuid::new_v4().simple().to_string()),
    )
}

async fn postgres_place() -> Place {
    Place::Database(pg::fresh_database_url().await)
}

/// Each check once per backend: `sqlite::<check>` and `postgres::<check>`.
macro_rules! both_stores {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let place = super::sqlite_place().await;
                    super::$check(&place).await;
                    place.clean().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let place = super::postgres_place().await;
                    super::$check(&place).await;
                    place.clean().await;
                }
            )*
        }
    };
}

both_stores!(
    each_change_adds_its_event,
    rewrites_and_retries_add_nothing,
    a_failed_batch_leaves_no_change_and_no_event,
    claims_keep_each_conversation_in_order,
    a_lapsed_claim_goes_to_another_exporter,
    text_only_when_asked,
    no_outbox_no_events,
);

const OUTBOX: OutboxOptions = OutboxOptions {
    include_text: false,
};
const LEASE: Duration = Duration::from_secs(30);

fn conversation(owner: &UserId) -> StoredConversation {
    let now = store::store_precision(Utc::now());
    StoredConversation {
        id: Uuid::new_v4(),
        owner: owner.clone(),
        title: Some("a private title".into()),
        created_at: now,
        updated_at: now,
    }
}

fn message(
    conversation: &StoredConversation,
    position: u64,
    role: Role,
    status: MessageStatus,
) -> StoredMessage {
    StoredMessage {
        message: Message {
            parent_id: None,
            id: Uuid::new_v4(),
            conversation_id: conversation.id,
            role,
            content: format!("private words {position}"),
            status,
            model: Some("demo".into()),
            created_at: store::store_precision(Utc::now()),
            error: None,
        },
        position,
        finish_reason: None,
        usage: None,
    }
}

fn ended(reply: &StoredMessage, status: MessageStatus) -> StoredMessage {
    let mut ended = reply.clone();
    ended.message.status = status;
    ended.message.content.push_str(" and the rest");
    if status == MessageStatus::Complete {
        ended.finish_reason = Some("stop".into());
        ended.usage = Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 11,
        });
    }
    if status == MessageStatus::Failed {
        ended.message.error = Some("The model failed.".into());
    }
    ended
}

fn conv(c: &StoredConversation) -> StoreWrite {
    StoreWrite::Conversation(c.clone())
}

fn msg(m: &StoredMessage) -> StoreWrite {
    StoreWrite::Message(m.clone())
}

async fn apply(store: &Arc<dyn Store>, writes: &[StoreWrite]) {
    store.apply(writes).await.expect("apply a batch");
}

/// Every row waiting, claimed (and so taken) by a throwaway claimer.
async fn take_all(store: &Arc<dyn Store>) -> Vec<OutboxRow> {
    let claimer = Uuid::new_v4().to_string();
    store
        .outbox()
        .expect("an outbox")
        .claim(&claimer, LEASE, 10_000)
        .await
        .unwrap()
}

fn json(row: &OutboxRow) -> Value {
    serde_json::from_slice(&row.event_json()).unwrap()
}

fn kinds(rows: &[OutboxRow]) -> Vec<&str> {
    rows.iter().map(|row| row.kind.as_str()).collect()
}

async fn each_change_adds_its_event(place: &Place) {
    let store = place.open(Some(OUTBOX)).await;
    let owner = UserId::new_guest();
    let c = conversation(&owner);
    let question = message(&c, 0, Role::User, MessageStatus::Complete);
    let reply = message(&c, 1, Role::Assistant, MessageStatus::Streaming);
    apply(&store, &[conv(&c), msg(&question), msg(&reply)]).await;
    // A checkpoint of the streaming reply: no event.
    let mut longer = reply.clone();
    longer.message.content.push_str(" more");
    apply(&store, &[conv(&c), msg(&longer)]).await;
    let done = ended(&reply, MessageStatus::Complete);
    apply(&store, &[conv(&c), msg(&done)]).await;
    // A cancelled reply straight from nothing, and a failed one.
    let cancelled = ended(
        &message(&c, 2, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Cancelled,
    );
    let failed = ended(
        &message(&c, 3, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Failed,
    );
    apply(&store, &[msg(&cancelled), msg(&failed)]).await;
    apply(&store, &[StoreWrite::DeleteConversation(c.id)]).await;

    let stats = store.outbox().unwrap().stats().await.unwrap();
    assert_eq!(stats.rows, 6);
    assert!(stats.oldest.is_some_and(|oldest| oldest <= Utc::now()));

    let rows = take_all(&store).await;
    assert_eq!(
        kinds(&rows),
        [
            "conversation.created",
            "message.user",
            "reply.ended",
            "reply.ended",
            "reply.ended",
            "conversation.deleted",
        ]
    );
    assert!(rows.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    for row in &rows {
        let event = json(row);
        assert_eq!(event["schema"], 1);
        assert_eq!(event["id"], row.event_id.to_string());
        assert_eq!(event["type"], row.kind);
        assert_eq!(event["seq"], row.seq);
        assert_eq!(event["user_id"], owner.as_str());
        assert_eq!(event["conversation_id"], c.id.to_string());
        assert_eq!(row.conversation_id, c.id);
        let time: DateTime<Utc> = event["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(time, row.created_at);
        assert!(event.get("text").is_none() && event.get("title").is_none());
        assert!(
            !String::from_utf8(row.event_json())
                .unwrap()
                .contains("private")
        );
        assert!(event["time_to_first_token_ms"].is_null() && event["duration_ms"].is_null());
    }
    let user = json(&rows[1]);
    assert_eq!(user["message_id"], question.message.id.to_string());
    assert_eq!(user["position"], 0);
    let done_event = json(&rows[2]);
    assert_eq!(done_event["message_id"], reply.message.id.to_string());
    assert_eq!(done_event["status"], "done");
    assert_eq!(done_event["model"], "demo");
    assert_eq!(done_event["finish_reason"], "stop");
    assert_eq!(done_event["usage"]["prompt_tokens"], 7);
    assert_eq!(done_event["usage"]["completion_tokens"], 11);
    assert_eq!(
        done_event["message_created_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        reply.message.created_at
    );
    assert_eq!(json(&rows[3])["status"], "cancelled");
    assert!(json(&rows[3])["usage"].is_null());
    assert_eq!(json(&rows[4])["status"], "failed");
    assert_eq!(json(&rows[4])["error"], "The model failed.");
    assert!(json(&rows[5])["message_id"].is_null());
}

async fn rewrites_and_retries_add_nothing(place: &Place) {
    let store = place.open(Some(OUTBOX)).await;
    let owner = UserId::new_guest();
    let c = conversation(&owner);
    let question = message(&c, 0, Role::User, MessageStatus::Complete);
    let done = ended(
        &message(&c, 1, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Complete,
    );
    let batch = [conv(&c), msg(&question), msg(&done)];
    apply(&store, &batch).await;
    // The persister retrying a batch whose answer it did not get, and
    // another node writing the same turn.
    apply(&store, &batch).await;
    let other_node = place.open(Some(OUTBOX)).await;
    apply(&other_node, &batch).await;
    // The engine's rewrite of the ended reply, without its details; a later
    // conversation update (a new title).
    let mut rewrite = done.clone();
    rewrite.finish_reason = None;
    rewrite.usage = None;
    let mut retitled = c.clone();
    retitled.title = Some("another".into());
    retitled.updated_at += chrono::Duration::seconds(1);
    apply(&store, &[conv(&retitled), msg(&rewrite)]).await;

    let rows = take_all(&store).await;
    assert_eq!(
        kinds(&rows),
        ["conversation.created", "message.user", "reply.ended"]
    );
    store
        .outbox()
        .unwrap()
        .published(&rows.iter().map(|row| row.seq).collect::<Vec<_>>())
        .await
        .unwrap();
    // Published and gone from the outbox: the same writes again still add
    // nothing, since the store already holds their changes.
    apply(&store, &batch).await;
    apply(&store, &[StoreWrite::DeleteConversation(c.id)]).await;
    apply(&store, &[StoreWrite::DeleteConversation(c.id)]).await;
    apply(&store, &batch).await;
    let rows = take_all(&store).await;
    assert_eq!(kinds(&rows), ["conversation.deleted"]);
    assert_eq!(store.outbox().unwrap().stats().await.unwrap().rows, 1);
}

async fn a_failed_batch_leaves_no_change_and_no_event(place: &Place) {
    let store = place.open(Some(OUTBOX)).await;
    let owner = UserId::new_guest();
    let kept = conversation(&owner);
    apply(&store, &[conv(&kept)]).await;
    let created = take_all(&store).await;
    assert_eq!(kinds(&created), ["conversation.created"]);
    store
        .outbox()
        .unwrap()
        .published(&[created[0].seq])
        .await
        .unwrap();

    let fresh = conversation(&owner);
    let question = message(&fresh, 0, Role::User, MessageStatus::Complete);
    let reply = ended(
        &message(&kept, 0, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Complete,
    );
    // A position no column holds: the last write fails after the others ran
    // in the same transaction (each of which would add an event).
    let mut invalid = message(&fresh, 1, Role::User, MessageStatus::Complete);
    invalid.position = u64::MAX;
    let error = store
        .apply(&[
            conv(&fresh),
            msg(&question),
            msg(&reply),
            StoreWrite::DeleteConversation(kept.id),
            msg(&invalid),
        ])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Internal(_)), "{error:?}");

    assert_eq!(store.conversation(fresh.id).await.unwrap(), None);
    assert!(store.conversation(kept.id).await.unwrap().is_some());
    assert!(store.messages(kept.id).await.unwrap().is_empty());
    let stats = store.outbox().unwrap().stats().await.unwrap();
    assert_eq!(stats.rows, 0);
    assert_eq!(stats.oldest, None);

    // The same batch without the bad write lands whole, with its events.
    apply(
        &store,
        &[
            conv(&fresh),
            msg(&question),
            msg(&reply),
            StoreWrite::DeleteConversation(kept.id),
        ],
    )
    .await;
    assert_eq!(
        kinds(&take_all(&store).await),
        [
            "conversation.created",
            "message.user",
            "reply.ended",
            "conversation.deleted"
        ]
    );
}

async fn claims_keep_each_conversation_in_order(place: &Place) {
    let store = place.open(Some(OUTBOX)).await;
    let outbox = store.outbox().unwrap();
    let owner = UserId::new_guest();
    let x = conversation(&owner);
    let y = conversation(&owner);
    let x_question = message(&x, 0, Role::User, MessageStatus::Complete);
    let x_reply = ended(
        &message(&x, 1, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Complete,
    );
    apply(&store, &[conv(&x), msg(&x_question)]).await;
    apply(&store, &[conv(&y)]).await;
    apply(&store, &[msg(&x_reply)]).await;
    // Rows, in seq order: x.created, x.user, y.created, x.ended.

    let a = outbox.claim("node-a", LEASE, 2).await.unwrap();
    assert_eq!(kinds(&a), ["conversation.created", "message.user"]);
    assert!(a.iter().all(|row| row.conversation_id == x.id));
    // Another exporter gets y's event, never x's later one while an
    // earlier one of x is out.
    let b = outbox.claim("node-b", LEASE, 10).await.unwrap();
    assert_eq!(kinds(&b), ["conversation.created"]);
    assert_eq!(b[0].conversation_id, y.id);
    assert!(outbox.claim("node-b", LEASE, 10).await.unwrap().is_empty());

    // A publishes its first row and gives the second back: the next claim
    // takes x's rows from there, in order.
    outbox.published(&[a[0].seq]).await.unwrap();
    assert!(outbox.claim("node-b", LEASE, 10).await.unwrap().is_empty());
    // Only the holder gives rows back.
    outbox.release("node-b", &[a[1].seq]).await.unwrap();
    assert!(outbox.claim("node-b", LEASE, 10).await.unwrap().is_empty());
    outbox.release("node-a", &[a[1].seq]).await.unwrap();
    let next = outbox.claim("node-b", LEASE, 10).await.unwrap();
    assert_eq!(kinds(&next), ["message.user", "reply.ended"]);
    assert_eq!(next[0].seq, a[1].seq);
    assert!(next.iter().all(|row| row.conversation_id == x.id));
    assert_eq!(outbox.stats().await.unwrap().rows, 3);
}

async fn a_lapsed_claim_goes_to_another_exporter(place: &Place) {
    let store = place.open(Some(OUTBOX)).await;
    let outbox = store.outbox().unwrap();
    let owner = UserId::new_guest();
    let c = conversation(&owner);
    apply(
        &store,
        &[
            conv(&c),
            msg(&message(&c, 0, Role::User, MessageStatus::Complete)),
        ],
    )
    .await;
    let short = Duration::from_millis(600);
    let dead = outbox.claim("dead-node", short, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    let claimed_at = std::time::Instant::now();
    // Held: nobody else gets them while the lease runs.
    assert!(
        outbox
            .claim("live-node", LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The holder never comes back: once the lease ends, they are the next
    // claimer's, in order.
    let deadline = claimed_at + common::DEADLINE;
    let taken = loop {
        let taken = outbox.claim("live-node", LEASE, 10).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lapsed claim was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(claimed_at.elapsed() >= short);
    assert_eq!(taken, dead);
    // The dead node's late acknowledgement of what it published is taken
    // at its word (the rows are out), and nothing is published twice.
    outbox
        .published(&dead.iter().map(|row| row.seq).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(outbox.stats().await.unwrap().rows, 0);
}

async fn text_only_when_asked(place: &Place) {
    let store = place.open(Some(OutboxOptions { include_text: true })).await;
    let owner = UserId::new_guest();
    let c = conversation(&owner);
    let question = message(&c, 0, Role::User, MessageStatus::Complete);
    let done = ended(
        &message(&c, 1, Role::Assistant, MessageStatus::Streaming),
        MessageStatus::Complete,
    );
    apply(&store, &[conv(&c), msg(&question), msg(&done)]).await;
    let rows = take_all(&store).await;
    assert_eq!(json(&rows[0])["title"], "a private title");
    assert_eq!(json(&rows[1])["text"], question.message.content);
    assert_eq!(json(&rows[2])["text"], done.message.content);
}

async fn no_outbox_no_events(place: &Place) {
    let store = place.open(None).await;
    assert!(store.outbox().is_none());
    let owner = UserId::new_guest();
    let c = conversation(&owner);
    apply(
        &store,
        &[
            conv(&c),
            msg(&message(&c, 0, Role::User, MessageStatus::Complete)),
        ],
    )
    .await;
    apply(&store, &[StoreWrite::DeleteConversation(c.id)]).await;
    // The same database, read by a store that writes an outbox: empty.
    let reader = place.open(Some(OUTBOX)).await;
    assert_eq!(reader.outbox().unwrap().stats().await.unwrap().rows, 0);
}
