//! One suite of checks run against both durable stores: each check is an async
//! function taking `Arc<dyn Store>`, run once on a fresh SQLite file (in a
//! temporary directory) and once on a fresh PostgreSQL database (on the server
//! of `CHATSTREAM_TEST_POSTGRES`, see `common/postgres.rs`). Below the shared
//! suite, a few checks that only make sense for one backend.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstream::protocol::UserId;
use chatstream::protocol::{Message, MessageStatus, Role, Usage};
use chatstream::store::{
    self, SNIPPET_CLOSE, SNIPPET_OPEN, SqliteStore, Store, StoreError, StoreWrite,
    StoredConversation, StoredMessage,
};
use chrono::{DateTime, Utc};
use common::postgres as pg;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Fixtures.

enum Place {
    Dir(PathBuf),
    Database(String),
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir()
        .join("chatstream-store-tests")
        .join(Uuid::new_v4().simple().to_string())
}

async fn sqlite_store() -> (Arc<dyn Store>, Place) {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("history.db").display());
    let store = store::connect(&url).await.expect("open the SQLite store");
    assert_eq!(store.name(), "sqlite");
    (store, Place::Dir(dir))
}

async fn postgres_store() -> (Arc<dyn Store>, Place) {
    let url = pg::fresh_database_url().await;
    let store = store::connect(&url)
        .await
        .expect("connect to the PostgreSQL store");
    assert_eq!(store.name(), "postgres");
    (store, Place::Database(url))
}

async fn clean(place: Place) {
    match place {
        Place::Dir(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Place::Database(url) => pg::drop_database(&url).await,
    }
}

/// Each check once per backend: `sqlite::<check>` and `postgres::<check>`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (store, place) = super::sqlite_store().await;
                    super::$check(store).await;
                    super::clean(place).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (store, place) = super::postgres_store().await;
                    super::$check(store).await;
                    super::clean(place).await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    round_trip_keeps_every_field,
    times_keep_microseconds,
    reapplying_changes_nothing,
    messages_come_in_position_order,
    a_message_never_moves_back,
    a_later_ending_replaces_an_earlier_one,
    a_rewrite_without_ending_details_keeps_them,
    conversation_writes_keep_the_later_title,
    a_message_without_its_conversation_is_skipped,
    delete_removes_everything_for_good,
    a_failed_batch_leaves_nothing,
    listing_is_newest_first,
    listing_pages_exactly_over_shared_times,
    a_foreign_cursor_is_refused,
    owners_are_isolated,
    search_finds_words_with_snippets,
    search_follows_message_updates,
    search_and_diacritics,
    hostile_queries_are_only_words,
    streaming_replies_are_listed,
    message_conversation_answers,
    count_conversations_counts,
    text_with_nul_is_kept,
    concurrent_batches_all_land,
    large_histories_stay_fast,
    a_tree_keeps_its_parents,
);

// ---------------------------------------------------------------------------
// Helpers.

/// A time with microseconds: `2026-05-04T03:02:01.123456Z` plus `offset_micros`.
fn at(offset_micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_777_863_721_123_456 + offset_micros).unwrap()
}

fn conversation(owner: &UserId, title: &str, updated_at: DateTime<Utc>) -> StoredConversation {
    StoredConversation {
        id: Uuid::new_v4(),
        owner: owner.clone(),
        title: Some(title.to_string()),
        created_at: at(0),
        updated_at,
    }
}

fn message(
    conversation: &StoredConversation,
    position: u64,
    role: Role,
    content: &str,
    status: MessageStatus,
) -> StoredMessage {
    StoredMessage {
        message: Message {
            parent_id: None,
            id: Uuid::new_v4(),
            conversation_id: conversation.id,
            role,
            content: content.to_string(),
            status,
            model: (role == Role::Assistant).then(|| "demo".to_string()),
            created_at: at(position as i64 * 1_000_001),
            error: None,
        },
        position,
        finish_reason: None,
        usage: None,
    }
}

fn with_content(message: &StoredMessage, content: &str, status: MessageStatus) -> StoredMessage {
    let mut next = message.clone();
    next.message.content = content.to_string();
    next.message.status = status;
    next
}

async fn apply(store: &Arc<dyn Store>, writes: Vec<StoreWrite>) {
    store.apply(&writes).await.expect("apply a batch");
}

fn conv(c: &StoredConversation) -> StoreWrite {
    StoreWrite::Conversation(c.clone())
}

fn msg(m: &StoredMessage) -> StoreWrite {
    StoreWrite::Message(m.clone())
}

async fn only_message(store: &Arc<dyn Store>, conversation: Uuid) -> StoredMessage {
    let mut messages = store.messages(conversation).await.unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0)
}

async fn all_pages(
    store: &Arc<dyn Store>,
    owner: &UserId,
    limit: usize,
) -> Vec<StoredConversation> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..100_000 {
        let page = store
            .list_conversations(owner, limit, before.as_deref())
            .await
            .unwrap();
        assert!(page.conversations.len() <= limit.max(1));
        all.extend(page.conversations.iter().cloned());
        match page.next {
            Some(next) => {
                assert_eq!(
                    page.conversations.len(),
                    limit.max(1),
                    "only the last page may be short"
                );
                before = Some(next);
            }
            None => return all,
        }
    }
    panic!("listing never ended");
}

// ---------------------------------------------------------------------------
// The shared suite.

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    // An empty batch is a no-op.
    store.apply(&[]).await.unwrap();
}

async fn round_trip_keeps_every_field(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = StoredConversation {
        id: Uuid::new_v4(),
        owner: owner.clone(),
        title: Some("Tiếng Việt có dấu 🎉 — “quotes” 'and' \\ back\\slash".into()),
        created_at: at(0),
        updated_at: at(987_654_321),
    };
    let untitled = StoredConversation {
        title: None,
        ..conversation(&owner, "", at(5))
    };
    let user = StoredMessage {
        message: Message {
            parent_id: None,
            id: Uuid::new_v4(),
            conversation_id: c.id,
            role: Role::User,
            content: "Xin chào! Bạn có nói được tiếng Việt không? 👋🏽🧑‍💻 日本語\n\ttabs".into(),
            status: MessageStatus::Complete,
            model: None,
            created_at: at(1),
            error: None,
        },
        position: 0,
        finish_reason: None,
        usage: None,
    };
    let reply = StoredMessage {
        message: Message {
            parent_id: None,
            id: Uuid::new_v4(),
            conversation_id: c.id,
            role: Role::Assistant,
            content: "Có, tôi nói được tiếng Việt. 🇻🇳 Ελληνικά, العربية, emoji: 😀".into(),
            status: MessageStatus::Complete,
            model: Some("demo-model:v1".into()),
            created_at: at(2),
            error: None,
        },
        position: 1,
        finish_reason: Some("stop".into()),
        usage: Some(Usage {
            prompt_tokens: 12,
            completion_tokens: 3_456,
        }),
    };
    let failed = StoredMessage {
        message: Message {
            status: MessageStatus::Failed,
            error: Some("upstream timed out ⏱".into()),
            ..message(&c, 2, Role::Assistant, "partial", MessageStatus::Failed).message
        },
        position: 2,
        finish_reason: None,
        usage: None,
    };
    let cancelled = with_content(
        &message(&c, 3, Role::Assistant, "", MessageStatus::Cancelled),
        "",
        MessageStatus::Cancelled,
    );
    let mut streaming = message(&c, 4, Role::Assistant, "", MessageStatus::Streaming);
    streaming.message.model = None;
    let expected = vec![
        user.clone(),
        reply.clone(),
        failed.clone(),
        cancelled.clone(),
        streaming.clone(),
    ];
    let mut writes = vec![conv(&c), conv(&untitled)];
    writes.extend(expected.iter().map(msg));
    apply(&store, writes).await;

    assert_eq!(store.conversation(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.conversation(untitled.id).await.unwrap(),
        Some(untitled.clone())
    );
    assert_eq!(store.messages(c.id).await.unwrap(), expected);
    assert!(store.messages(untitled.id).await.unwrap().is_empty());
    assert_eq!(store.conversation(Uuid::new_v4()).await.unwrap(), None);
    assert!(store.messages(Uuid::new_v4()).await.unwrap().is_empty());
    for m in &expected {
        assert_eq!(
            store.message_conversation(m.message.id).await.unwrap(),
            Some(c.id)
        );
    }
}

async fn times_keep_microseconds(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    // Now, old, before 1970, and a time with nanoseconds (truncated to µs).
    let now = store::store_precision(Utc::now());
    let times = [
        now,
        DateTime::from_timestamp_micros(1).unwrap(),
        DateTime::from_timestamp_micros(-86_400_000_001).unwrap(),
        DateTime::from_timestamp_micros(946_684_799_999_999).unwrap(),
    ];
    for time in times {
        let c = StoredConversation {
            created_at: time,
            updated_at: time,
            ..conversation(&owner, "t", time)
        };
        let mut m = message(&c, 0, Role::User, "x", MessageStatus::Complete);
        m.message.created_at = time;
        apply(&store, vec![conv(&c), msg(&m)]).await;
        assert_eq!(store.conversation(c.id).await.unwrap(), Some(c.clone()));
        assert_eq!(only_message(&store, c.id).await.message.created_at, time);
    }
    let nanos = DateTime::from_timestamp(1_777_863_721, 123_456_789).unwrap();
    let c = StoredConversation {
        created_at: nanos,
        updated_at: nanos,
        ..conversation(&owner, "nanos", nanos)
    };
    apply(&store, vec![conv(&c)]).await;
    let stored = store.conversation(c.id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, store::store_precision(nanos));
    assert_eq!(
        stored.created_at.timestamp_subsec_nanos(),
        123_456_000,
        "the store keeps microseconds and truncates the rest"
    );
}

async fn reapplying_changes_nothing(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "again", at(10));
    let a = message(&c, 0, Role::User, "hello", MessageStatus::Complete);
    let b = message(&c, 1, Role::Assistant, "hi there", MessageStatus::Streaming);
    let batch = vec![conv(&c), msg(&a), msg(&b)];
    apply(&store, batch.clone()).await;
    let first = (
        store.conversation(c.id).await.unwrap(),
        store.messages(c.id).await.unwrap(),
    );
    for _ in 0..3 {
        apply(&store, batch.clone()).await;
    }
    let again = (
        store.conversation(c.id).await.unwrap(),
        store.messages(c.id).await.unwrap(),
    );
    assert_eq!(first, again);
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);
    assert_eq!(store.search(&owner, "hello", 10).await.unwrap().len(), 1);
    assert_eq!(
        store.streaming_replies().await.unwrap(),
        vec![(c.id, b.message.id)]
    );
}

async fn messages_come_in_position_order(store: Arc<dyn Store>) {
    let c = conversation(&UserId::new_guest(), "order", at(0));
    let messages: Vec<StoredMessage> = (0..40u64)
        .map(|i| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            message(
                &c,
                i,
                role,
                &format!("message {i}"),
                MessageStatus::Complete,
            )
        })
        .collect();
    // Written out of order, across batches.
    let mut shuffled: Vec<&StoredMessage> = messages.iter().collect();
    shuffled.sort_by_key(|m| (m.position * 7919) % 41);
    apply(&store, vec![conv(&c)]).await;
    for chunk in shuffled.chunks(9) {
        apply(&store, chunk.iter().map(|m| msg(m)).collect()).await;
    }
    assert_eq!(store.messages(c.id).await.unwrap(), messages);
}

async fn a_message_never_moves_back(store: Arc<dyn Store>) {
    let c = conversation(&UserId::new_guest(), "checkpoints", at(0));
    let reply = message(
        &c,
        1,
        Role::Assistant,
        "Hello wor",
        MessageStatus::Streaming,
    );
    apply(&store, vec![conv(&c), msg(&reply)]).await;

    // A longer checkpoint replaces.
    let longer = with_content(&reply, "Hello world", MessageStatus::Streaming);
    apply(&store, vec![msg(&longer)]).await;
    assert_eq!(only_message(&store, c.id).await, longer);

    // A shorter checkpoint (late, or replayed) is ignored.
    let shorter = with_content(&reply, "Hello", MessageStatus::Streaming);
    apply(&store, vec![msg(&shorter)]).await;
    assert_eq!(only_message(&store, c.id).await, longer);

    // Shorter in bytes though not in characters: ignored too.
    let fewer_bytes = with_content(&reply, "Hello worl", MessageStatus::Streaming);
    let more_bytes = with_content(&reply, "Hello wörld", MessageStatus::Streaming);
    apply(&store, vec![msg(&more_bytes)]).await;
    apply(&store, vec![msg(&fewer_bytes)]).await;
    assert_eq!(only_message(&store, c.id).await, more_bytes);

    // The ending replaces, even with less text.
    let mut done = with_content(&reply, "Hello!", MessageStatus::Complete);
    done.finish_reason = Some("stop".into());
    done.usage = Some(Usage {
        prompt_tokens: 5,
        completion_tokens: 2,
    });
    apply(&store, vec![msg(&done)]).await;
    assert_eq!(only_message(&store, c.id).await, done);

    // A streaming checkpoint after the ending never downgrades it, however long.
    let late = with_content(
        &reply,
        "Hello world, and much more text than before",
        MessageStatus::Streaming,
    );
    apply(&store, vec![msg(&late)]).await;
    assert_eq!(only_message(&store, c.id).await, done);
    assert!(store.streaming_replies().await.unwrap().is_empty());
}

/// The persister rewrites an ended reply from the engine, which does not keep
/// a `done`'s finish reason and usage: the store keeps those it has.
async fn a_rewrite_without_ending_details_keeps_them(store: Arc<dyn Store>) {
    let c = conversation(&UserId::new_guest(), "details", at(0));
    let reply = message(
        &c,
        1,
        Role::Assistant,
        "all of it",
        MessageStatus::Streaming,
    );
    let mut done = with_content(&reply, "all of it", MessageStatus::Complete);
    done.finish_reason = Some("stop".into());
    done.usage = Some(Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
    });
    apply(&store, vec![conv(&c), msg(&reply), msg(&done)]).await;
    let rewrite = with_content(&reply, "all of it", MessageStatus::Complete);
    apply(&store, vec![msg(&rewrite)]).await;
    assert_eq!(only_message(&store, c.id).await, done);

    // Another ending is the corrected truth, details and all.
    let cancelled = with_content(&reply, "all of it", MessageStatus::Cancelled);
    apply(&store, vec![msg(&cancelled)]).await;
    assert_eq!(only_message(&store, c.id).await, cancelled);
}

async fn a_later_ending_replaces_an_earlier_one(store: Arc<dyn Store>) {
    let c = conversation(&UserId::new_guest(), "endings", at(0));
    let reply = message(&c, 1, Role::Assistant, "partial", MessageStatus::Streaming);
    let mut failed = with_content(&reply, "partial", MessageStatus::Failed);
    failed.message.error = Some("node lost".into());
    apply(&store, vec![conv(&c), msg(&reply), msg(&failed)]).await;
    assert_eq!(only_message(&store, c.id).await, failed);

    let mut complete = with_content(&reply, "partial, then complete", MessageStatus::Complete);
    complete.finish_reason = Some("length".into());
    complete.usage = Some(Usage {
        prompt_tokens: 1,
        completion_tokens: 2,
    });
    apply(&store, vec![msg(&complete)]).await;
    assert_eq!(only_message(&store, c.id).await, complete);

    // Final over final, even with shorter text: the corrected truth.
    let cancelled = with_content(&reply, "part", MessageStatus::Cancelled);
    apply(&store, vec![msg(&cancelled)]).await;
    assert_eq!(only_message(&store, c.id).await, cancelled);

    // The first write fixes created_at.
    let mut moved = cancelled.clone();
    moved.message.created_at = at(999_999_999);
    apply(&store, vec![msg(&moved)]).await;
    assert_eq!(only_message(&store, c.id).await, cancelled);
}

async fn conversation_writes_keep_the_later_title(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let first = conversation(&owner, "First", at(1_000));
    apply(&store, vec![conv(&first)]).await;

    let renamed = StoredConversation {
        title: Some("Renamed".into()),
        updated_at: at(2_000),
        ..first.clone()
    };
    apply(&store, vec![conv(&renamed)]).await;
    assert_eq!(
        store.conversation(first.id).await.unwrap(),
        Some(renamed.clone())
    );

    // A late write with an older updated_at changes nothing.
    let stale = StoredConversation {
        title: Some("Stale".into()),
        updated_at: at(1_500),
        ..first.clone()
    };
    apply(&store, vec![conv(&stale)]).await;
    assert_eq!(
        store.conversation(first.id).await.unwrap(),
        Some(renamed.clone())
    );

    // owner and created_at never change.
    let hijack = StoredConversation {
        owner: UserId::new_guest(),
        created_at: at(5_000),
        updated_at: at(3_000),
        title: None,
        ..first.clone()
    };
    apply(&store, vec![conv(&hijack)]).await;
    assert_eq!(
        store.conversation(first.id).await.unwrap(),
        Some(StoredConversation {
            title: None,
            updated_at: at(3_000),
            ..first.clone()
        })
    );
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);
    assert_eq!(store.count_conversations(&hijack.owner).await.unwrap(), 0);
}

async fn a_message_without_its_conversation_is_skipped(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let present = conversation(&owner, "present", at(0));
    let absent = conversation(&owner, "absent", at(0));
    let a = message(&present, 0, Role::User, "kept", MessageStatus::Complete);
    let orphan = message(&absent, 0, Role::User, "orphan", MessageStatus::Streaming);
    let b = message(
        &present,
        1,
        Role::Assistant,
        "kept too",
        MessageStatus::Complete,
    );
    apply(&store, vec![conv(&present), msg(&a), msg(&orphan), msg(&b)]).await;

    assert_eq!(store.messages(present.id).await.unwrap(), vec![a, b]);
    assert_eq!(store.conversation(absent.id).await.unwrap(), None);
    assert!(store.messages(absent.id).await.unwrap().is_empty());
    assert_eq!(
        store.message_conversation(orphan.message.id).await.unwrap(),
        None
    );
    assert!(store.streaming_replies().await.unwrap().is_empty());
    assert!(store.search(&owner, "orphan", 10).await.unwrap().is_empty());

    // Once the conversation is written, the same message lands.
    apply(&store, vec![conv(&absent), msg(&orphan)]).await;
    assert_eq!(store.messages(absent.id).await.unwrap(), vec![orphan]);
}

async fn delete_removes_everything_for_good(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let doomed = conversation(&owner, "doomed", at(20));
    let kept = conversation(&owner, "kept", at(10));
    let question = message(
        &doomed,
        0,
        Role::User,
        "zanzibar question",
        MessageStatus::Complete,
    );
    let answer = message(
        &doomed,
        1,
        Role::Assistant,
        "zanzibar answer",
        MessageStatus::Streaming,
    );
    let other = message(&kept, 0, Role::User, "unrelated", MessageStatus::Complete);
    let batch = vec![
        conv(&doomed),
        conv(&kept),
        msg(&question),
        msg(&answer),
        msg(&other),
    ];
    apply(&store, batch.clone()).await;
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 2);

    apply(&store, vec![StoreWrite::DeleteConversation(doomed.id)]).await;
    assert_eq!(store.conversation(doomed.id).await.unwrap(), None);
    assert!(store.messages(doomed.id).await.unwrap().is_empty());
    assert_eq!(
        store
            .message_conversation(question.message.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.message_conversation(answer.message.id).await.unwrap(),
        None
    );
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);
    let page = store.list_conversations(&owner, 10, None).await.unwrap();
    assert_eq!(page.conversations, vec![kept.clone()]);
    assert!(
        store
            .search(&owner, "zanzibar", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.streaming_replies().await.unwrap().is_empty());
    assert_eq!(store.messages(kept.id).await.unwrap(), vec![other.clone()]);

    // Late writes of the conversation and its messages do not resurrect it.
    apply(&store, batch.clone()).await;
    let newer = StoredConversation {
        updated_at: at(1_000_000),
        ..doomed.clone()
    };
    apply(&store, vec![conv(&newer), msg(&question)]).await;
    assert_eq!(store.conversation(doomed.id).await.unwrap(), None);
    assert!(store.messages(doomed.id).await.unwrap().is_empty());
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);

    // Deleting again, or deleting what was never stored, is fine; the
    // tombstone of the latter holds too.
    let never = conversation(&owner, "never", at(0));
    apply(
        &store,
        vec![
            StoreWrite::DeleteConversation(doomed.id),
            StoreWrite::DeleteConversation(never.id),
        ],
    )
    .await;
    apply(&store, vec![conv(&never)]).await;
    assert_eq!(store.conversation(never.id).await.unwrap(), None);

    // Write, delete, write again in one batch: gone.
    let brief = conversation(&owner, "brief", at(0));
    let m = message(&brief, 0, Role::User, "brief", MessageStatus::Complete);
    apply(
        &store,
        vec![
            conv(&brief),
            msg(&m),
            StoreWrite::DeleteConversation(brief.id),
            conv(&brief),
            msg(&m),
        ],
    )
    .await;
    assert_eq!(store.conversation(brief.id).await.unwrap(), None);
    assert_eq!(
        store.message_conversation(m.message.id).await.unwrap(),
        None
    );
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);
}

async fn a_failed_batch_leaves_nothing(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let existing = conversation(&owner, "existing", at(0));
    let before = message(&existing, 0, Role::User, "before", MessageStatus::Streaming);
    apply(&store, vec![conv(&existing), msg(&before)]).await;

    let fresh = conversation(&owner, "fresh", at(50));
    let fresh_message = message(&fresh, 0, Role::User, "fresh", MessageStatus::Complete);
    let after = with_content(&before, "before, and after", MessageStatus::Complete);
    let renamed = StoredConversation {
        title: Some("renamed".into()),
        updated_at: at(100),
        ..existing.clone()
    };
    // A position no database column holds: the last write fails, after the
    // others ran in the same transaction.
    let mut invalid = message(
        &fresh,
        1,
        Role::Assistant,
        "invalid",
        MessageStatus::Complete,
    );
    invalid.position = u64::MAX;
    let batch = vec![
        conv(&fresh),
        msg(&fresh_message),
        msg(&after),
        conv(&renamed),
        StoreWrite::DeleteConversation(Uuid::new_v4()),
        msg(&invalid),
    ];
    let error = store.apply(&batch).await.unwrap_err();
    assert!(matches!(error, StoreError::Internal(_)), "{error:?}");

    // Token counts no column holds fail the same way.
    let mut too_many_tokens = with_content(&before, "tokens", MessageStatus::Complete);
    too_many_tokens.usage = Some(Usage {
        prompt_tokens: u64::MAX,
        completion_tokens: 1,
    });
    let error = store
        .apply(&[conv(&fresh), msg(&after), msg(&too_many_tokens)])
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Internal(_)), "{error:?}");

    assert_eq!(store.conversation(fresh.id).await.unwrap(), None);
    assert_eq!(
        store
            .message_conversation(fresh_message.message.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.conversation(existing.id).await.unwrap(),
        Some(existing.clone())
    );
    assert_eq!(only_message(&store, existing.id).await, before);
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);

    // The store still takes writes afterwards.
    apply(&store, vec![conv(&fresh), msg(&fresh_message)]).await;
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 2);
}

async fn listing_is_newest_first(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let old = conversation(&owner, "old", at(1_000));
    let middle = conversation(&owner, "middle", at(2_000));
    let new = conversation(&owner, "new", at(3_000));
    apply(&store, vec![conv(&middle), conv(&new), conv(&old)]).await;
    let page = store.list_conversations(&owner, 50, None).await.unwrap();
    assert_eq!(
        page.conversations,
        vec![new.clone(), middle.clone(), old.clone()]
    );
    assert_eq!(page.next, None);

    // Updating one moves it to the front.
    let touched = StoredConversation {
        updated_at: at(4_000),
        ..old.clone()
    };
    apply(&store, vec![conv(&touched)]).await;
    let page = store.list_conversations(&owner, 2, None).await.unwrap();
    assert_eq!(page.conversations, vec![touched.clone(), new.clone()]);
    let next = page.next.expect("a second page");
    let page = store
        .list_conversations(&owner, 2, Some(&next))
        .await
        .unwrap();
    assert_eq!(page.conversations, vec![middle.clone()]);
    assert_eq!(page.next, None);

    // A limit of 0 is taken as 1.
    let page = store.list_conversations(&owner, 0, None).await.unwrap();
    assert_eq!(page.conversations, vec![touched]);
    assert!(page.next.is_some());

    // Nobody else's, and an owner without any.
    let stranger = UserId::new_guest();
    let page = store.list_conversations(&stranger, 10, None).await.unwrap();
    assert!(page.conversations.is_empty());
    assert_eq!(page.next, None);
}

async fn listing_pages_exactly_over_shared_times(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    // 250 conversations, 10 per updated_at: many ties.
    let conversations: Vec<StoredConversation> = (0..250)
        .map(|i| conversation(&owner, &format!("c{i}"), at((i / 10) * 1_000_000)))
        .collect();
    let mut expected = conversations.clone();
    expected.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));
    // Written in an order unrelated to the listing's.
    let mut shuffled = conversations.clone();
    shuffled.sort_by_key(|c| c.id.as_u128() % 97);
    for chunk in shuffled.chunks(60) {
        apply(&store, chunk.iter().map(conv).collect()).await;
    }
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 250);

    for limit in [1, 7, 10, 50, 249, 250, 251, 1000] {
        let listed = all_pages(&store, &owner, limit).await;
        assert_eq!(listed.len(), 250, "limit {limit}");
        let ids: HashSet<Uuid> = listed.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 250, "limit {limit}: each conversation once");
        assert_eq!(listed, expected, "limit {limit}: newest first, ties by id");
    }

    // Limits may change from page to page.
    let first = store.list_conversations(&owner, 3, None).await.unwrap();
    let rest = store
        .list_conversations(&owner, 500, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.next, None);
    let mut listed = first.conversations.clone();
    listed.extend(rest.conversations);
    assert_eq!(listed, expected);

    // A page boundary inside a group of ties, then new conversations arrive
    // in front: the rest of the listing is unaffected.
    let first = store.list_conversations(&owner, 15, None).await.unwrap();
    let newer = conversation(&owner, "newer", at(900_000_000));
    apply(&store, vec![conv(&newer)]).await;
    let second = store
        .list_conversations(&owner, 15, first.next.as_deref())
        .await
        .unwrap();
    assert_eq!(second.conversations, expected[15..30].to_vec());
}

async fn a_foreign_cursor_is_refused(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let conversations: Vec<StoredConversation> = (0..5)
        .map(|i| conversation(&owner, "c", at(i * 1_000)))
        .collect();
    apply(&store, conversations.iter().map(conv).collect()).await;
    let page = store.list_conversations(&owner, 2, None).await.unwrap();
    let cursor = page.next.unwrap();

    let mut flipped = cursor.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let garbage = [
        "",
        "garbage",
        "null",
        "0",
        "'; DROP TABLE conversations; --",
        &cursor[..cursor.len() - 1],
        &format!("{cursor}0"),
        &cursor.to_uppercase(),
        &flipped,
        "2026-05-04T03:02:01Z",
        "ééééééééééééééééééééééééééééé",
    ];
    for bad in garbage {
        assert_eq!(
            store.list_conversations(&owner, 2, Some(bad)).await,
            Err(StoreError::InvalidCursor),
            "cursor {bad:?}"
        );
    }
    // The genuine one still works.
    let page = store
        .list_conversations(&owner, 2, Some(&cursor))
        .await
        .unwrap();
    assert_eq!(page.conversations.len(), 2);
}

async fn owners_are_isolated(store: Arc<dyn Store>) {
    let alice = UserId::new_guest();
    let bob = UserId::new_guest();
    let a = conversation(&alice, "alice's", at(1));
    let b = conversation(&bob, "bob's", at(2));
    let a_message = message(
        &a,
        0,
        Role::User,
        "secret banana recipe",
        MessageStatus::Complete,
    );
    let b_message = message(
        &b,
        0,
        Role::User,
        "banana bread for bob",
        MessageStatus::Complete,
    );
    apply(
        &store,
        vec![conv(&a), conv(&b), msg(&a_message), msg(&b_message)],
    )
    .await;

    let page = store.list_conversations(&alice, 10, None).await.unwrap();
    assert_eq!(page.conversations, vec![a.clone()]);
    let page = store.list_conversations(&bob, 10, None).await.unwrap();
    assert_eq!(page.conversations, vec![b.clone()]);
    // Bob's cursor position does not leak Alice's conversations into his pages.
    let first = store.list_conversations(&bob, 1, None).await.unwrap();
    assert_eq!(first.next, None);

    assert_eq!(store.count_conversations(&alice).await.unwrap(), 1);
    assert_eq!(store.count_conversations(&bob).await.unwrap(), 1);

    let hits = store.search(&alice, "banana", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, a_message.message.id);
    let hits = store.search(&bob, "banana", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, b_message.message.id);
    assert!(store.search(&alice, "bread", 10).await.unwrap().is_empty());
    assert!(store.search(&bob, "secret", 10).await.unwrap().is_empty());
    assert!(
        store
            .search(&UserId::new_guest(), "banana", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn search_finds_words_with_snippets(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "Animals", at(0));
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor";
    let long =
        format!("{filler} {filler} the quick brown fox jumps over the lazy dog {filler} {filler}");
    let fox_long = message(&c, 0, Role::User, &long, MessageStatus::Complete);
    let fox_often = message(
        &c,
        1,
        Role::Assistant,
        "fox, fox and fox again",
        MessageStatus::Complete,
    );
    let quick_only = message(
        &c,
        2,
        Role::User,
        "quick thinking without the animal",
        MessageStatus::Complete,
    );
    let untitled = StoredConversation {
        title: None,
        ..conversation(&owner, "", at(0))
    };
    let other = message(
        &untitled,
        0,
        Role::User,
        "a fox in another conversation",
        MessageStatus::Streaming,
    );
    apply(
        &store,
        vec![
            conv(&c),
            conv(&untitled),
            msg(&fox_long),
            msg(&fox_often),
            msg(&quick_only),
            msg(&other),
        ],
    )
    .await;

    let hits = store.search(&owner, "fox", 10).await.unwrap();
    let ids: Vec<Uuid> = hits.iter().map(|h| h.message_id).collect();
    assert_eq!(ids.len(), 3, "{hits:?}");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        [fox_long.message.id, fox_often.message.id, other.message.id]
            .iter()
            .collect::<HashSet<_>>()
    );
    assert_eq!(ids[0], fox_often.message.id, "best match first: {hits:?}");
    let marked = format!("{SNIPPET_OPEN}fox{SNIPPET_CLOSE}");
    for hit in &hits {
        assert!(hit.snippet.contains(&marked), "snippet {:?}", hit.snippet);
    }
    let long_hit = hits
        .iter()
        .find(|h| h.message_id == fox_long.message.id)
        .unwrap();
    assert!(
        long_hit.snippet.chars().count() < long.chars().count(),
        "a snippet is an extract: {:?}",
        long_hit.snippet
    );
    assert!(long_hit.snippet.contains("brown"), "{:?}", long_hit.snippet);
    assert_eq!(long_hit.conversation_id, c.id);
    assert_eq!(long_hit.conversation_title.as_deref(), Some("Animals"));
    assert_eq!(long_hit.role, Role::User);
    assert_eq!(long_hit.created_at, fox_long.message.created_at);
    let other_hit = hits
        .iter()
        .find(|h| h.message_id == other.message.id)
        .unwrap();
    assert_eq!(other_hit.conversation_title, None);
    assert_eq!(other_hit.conversation_id, untitled.id);

    // Every word is required; case does not matter.
    let hits = store.search(&owner, "QUICK Dog", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].message_id, fox_long.message.id);
    assert!(
        hits[0]
            .snippet
            .contains(&format!("{SNIPPET_OPEN}quick{SNIPPET_CLOSE}"))
    );
    assert!(
        hits[0]
            .snippet
            .contains(&format!("{SNIPPET_OPEN}dog{SNIPPET_CLOSE}"))
    );
    assert_eq!(store.search(&owner, "quick", 10).await.unwrap().len(), 2);
    // Whole words: no prefix matching.
    assert!(store.search(&owner, "fo", 10).await.unwrap().is_empty());
    assert!(store.search(&owner, "zebra", 10).await.unwrap().is_empty());

    // The limit.
    assert_eq!(store.search(&owner, "fox", 2).await.unwrap().len(), 2);
    assert!(store.search(&owner, "fox", 0).await.unwrap().is_empty());
}

async fn search_follows_message_updates(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "updates", at(0));
    let reply = message(&c, 1, Role::Assistant, "alpha", MessageStatus::Streaming);
    apply(&store, vec![conv(&c), msg(&reply)]).await;
    assert_eq!(store.search(&owner, "alpha", 10).await.unwrap().len(), 1);
    assert!(store.search(&owner, "beta", 10).await.unwrap().is_empty());

    apply(
        &store,
        vec![msg(&with_content(
            &reply,
            "alpha beta",
            MessageStatus::Streaming,
        ))],
    )
    .await;
    assert_eq!(store.search(&owner, "beta", 10).await.unwrap().len(), 1);

    apply(
        &store,
        vec![msg(&with_content(&reply, "gamma", MessageStatus::Complete))],
    )
    .await;
    assert!(store.search(&owner, "alpha", 10).await.unwrap().is_empty());
    assert!(store.search(&owner, "beta", 10).await.unwrap().is_empty());
    let hits = store.search(&owner, "gamma", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message_id, reply.message.id);

    // A status-only rewrite keeps it findable.
    apply(
        &store,
        vec![msg(&with_content(&reply, "gamma", MessageStatus::Failed))],
    )
    .await;
    assert_eq!(store.search(&owner, "gamma", 10).await.unwrap().len(), 1);

    apply(&store, vec![StoreWrite::DeleteConversation(c.id)]).await;
    assert!(store.search(&owner, "gamma", 10).await.unwrap().is_empty());
}

/// SQLite folds diacritics (FTS5 `remove_diacritics 2`); PostgreSQL's `simple`
/// configuration does not: there only the accented words find accented text.
async fn search_and_diacritics(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "Tiếng Việt", at(0));
    let m = message(
        &c,
        0,
        Role::User,
        "Tôi đang học tiếng Việt mỗi ngày",
        MessageStatus::Complete,
    );
    let e = message(
        &c,
        1,
        Role::Assistant,
        "Crème brûlée et café",
        MessageStatus::Complete,
    );
    apply(&store, vec![conv(&c), msg(&m), msg(&e)]).await;

    // Exactly as written, and lowercased: both backends.
    for query in ["tiếng Việt", "tiếng việt", "TIẾNG Việt"] {
        let hits = store.search(&owner, query, 10).await.unwrap();
        if query == "TIẾNG Việt" && store.name() == "postgres" {
            // Lowercasing non-ASCII letters follows the database's LC_CTYPE.
            continue;
        }
        assert_eq!(hits.len(), 1, "{query}: {hits:?}");
        assert_eq!(hits[0].message_id, m.message.id);
        assert!(
            hits[0]
                .snippet
                .contains(&format!("{SNIPPET_OPEN}tiếng{SNIPPET_CLOSE}")),
            "{:?}",
            hits[0].snippet
        );
    }
    let hits = store.search(&owner, "café", 10).await.unwrap();
    assert_eq!(hits.len(), 1);

    let unaccented = [
        "tieng viet",
        "TIENG VIET",
        "tiêng viêt",
        "hoc moi ngay",
        "creme brulee",
        "cafe",
    ];
    for query in unaccented {
        let hits = store.search(&owner, query, 10).await.unwrap();
        match store.name() {
            "sqlite" => {
                assert_eq!(hits.len(), 1, "{query}: {hits:?}");
                // The snippet shows the text as written.
                assert!(
                    hits[0].snippet.contains(SNIPPET_OPEN) && !hits[0].snippet.contains(query),
                    "{query}: {:?}",
                    hits[0].snippet
                );
            }
            _ => assert!(
                hits.is_empty(),
                "{query}: 'simple' is accent-sensitive: {hits:?}"
            ),
        }
    }
    if store.name() == "sqlite" {
        let hits = store.search(&owner, "tieng viet", 10).await.unwrap();
        assert!(
            hits[0].snippet.contains(&format!(
                "{SNIPPET_OPEN}tiếng{SNIPPET_CLOSE} {SNIPPET_OPEN}Việt{SNIPPET_CLOSE}"
            )),
            "{:?}",
            hits[0].snippet
        );
    }
}

async fn hostile_queries_are_only_words(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "hostile", at(0));
    let m = message(
        &c,
        0,
        Role::User,
        "the fox and the table near the drop",
        MessageStatus::Complete,
    );
    apply(&store, vec![conv(&c), msg(&m)]).await;

    let long = "fox ".repeat(5_000);
    let many: String = (0..5_000).map(|i| format!("w{i} ")).collect();
    let huge_word = "x".repeat(40_000);
    let hostile = [
        "\"",
        "\"\"",
        "\"fox",
        "fox\"",
        "*",
        "fox*",
        "*fox",
        "NEAR(",
        "NEAR(fox table)",
        "NEAR",
        "'; drop table messages; --",
        "'; DROP TABLE conversations; --",
        ")(",
        "(((",
        ")))",
        "fox OR table",
        "fox AND",
        "AND",
        "OR",
        "NOT fox",
        "-fox",
        "+fox",
        "fox -table",
        "^fox",
        "content:fox",
        "messages_fts:fox",
        "{fox}",
        "fox:*",
        "!fox",
        "fox & table",
        "fox | table",
        "fox <-> table",
        "fox <2> table",
        "'fox'",
        "''",
        "\\",
        "\\\"",
        "%",
        "_",
        "%fox%",
        "fox\0",
        "\0",
        "\u{1}\u{2}",
        "😀",
        "\u{202e}fox",
        "SELECT * FROM messages",
        "1=1",
        "NULL",
        "rank",
        "$1",
        "?",
        "?1",
        ":fox",
        "@fox",
        "#",
        ";",
        "--",
        "/* fox */",
        &long,
        &many,
        &huge_word,
        "𞤀",
        "fox 𞤀",
    ];
    for query in hostile {
        let started = Instant::now();
        let result = store.search(&owner, query, 10).await;
        let shown: String = query.chars().take(40).collect();
        assert!(result.is_ok(), "{shown:?}: {result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{shown:?} took {:?}",
            started.elapsed()
        );
    }
    // The words inside are searched.
    for query in [
        "\"fox",
        "fox*",
        "NEAR(fox",
        "(fox)",
        "'fox'",
        "fox\0",
        "{fox}",
        "-fox",
        "fox|table",
        "NEAR(fox table)",
        "'; drop table",
        "fox AND",
        "table:fox",
        &long,
    ] {
        let hits = store.search(&owner, query, 10).await.unwrap();
        let shown: String = query.chars().take(40).collect();
        assert_eq!(hits.len(), 1, "{shown:?}: {hits:?}");
    }
    // No words: no hits.
    for query in ["", " ", "\t\n  ", "\"", "*", ")(", "--", "\0", "'\"*"] {
        assert!(
            store.search(&owner, query, 10).await.unwrap().is_empty(),
            "{query:?}"
        );
    }
    // Nothing was dropped.
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 1);
    assert_eq!(store.messages(c.id).await.unwrap(), vec![m]);
    assert_eq!(store.search(&owner, "fox", 10).await.unwrap().len(), 1);
}

async fn streaming_replies_are_listed(store: Arc<dyn Store>) {
    assert!(store.streaming_replies().await.unwrap().is_empty());
    let a = conversation(&UserId::new_guest(), "a", at(0));
    let b = conversation(&UserId::new_guest(), "b", at(0));
    let a_done = message(&a, 0, Role::Assistant, "done", MessageStatus::Complete);
    let a_streaming = message(&a, 1, Role::Assistant, "stream", MessageStatus::Streaming);
    let b_streaming = message(&b, 3, Role::Assistant, "", MessageStatus::Streaming);
    let b_failed = message(&b, 1, Role::Assistant, "x", MessageStatus::Failed);
    let b_cancelled = message(&b, 2, Role::Assistant, "y", MessageStatus::Cancelled);
    apply(
        &store,
        vec![
            conv(&a),
            conv(&b),
            msg(&a_done),
            msg(&a_streaming),
            msg(&b_streaming),
            msg(&b_failed),
            msg(&b_cancelled),
        ],
    )
    .await;
    let listed: HashSet<(Uuid, Uuid)> = store
        .streaming_replies()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        HashSet::from([
            (a.id, a_streaming.message.id),
            (b.id, b_streaming.message.id)
        ])
    );

    apply(
        &store,
        vec![msg(&with_content(
            &a_streaming,
            "stream ended",
            MessageStatus::Complete,
        ))],
    )
    .await;
    assert_eq!(
        store.streaming_replies().await.unwrap(),
        vec![(b.id, b_streaming.message.id)]
    );
    apply(&store, vec![StoreWrite::DeleteConversation(b.id)]).await;
    assert!(store.streaming_replies().await.unwrap().is_empty());
}

async fn message_conversation_answers(store: Arc<dyn Store>) {
    let a = conversation(&UserId::new_guest(), "a", at(0));
    let b = conversation(&UserId::new_guest(), "b", at(0));
    let in_a = message(&a, 0, Role::User, "a", MessageStatus::Complete);
    let in_b = message(&b, 0, Role::User, "b", MessageStatus::Complete);
    apply(&store, vec![conv(&a), conv(&b), msg(&in_a), msg(&in_b)]).await;
    assert_eq!(
        store.message_conversation(in_a.message.id).await.unwrap(),
        Some(a.id)
    );
    assert_eq!(
        store.message_conversation(in_b.message.id).await.unwrap(),
        Some(b.id)
    );
    assert_eq!(
        store.message_conversation(Uuid::new_v4()).await.unwrap(),
        None
    );
    // A message id is never a conversation id.
    assert_eq!(store.message_conversation(a.id).await.unwrap(), None);
}

async fn count_conversations_counts(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 0);
    let conversations: Vec<StoredConversation> =
        (0..17).map(|i| conversation(&owner, "c", at(i))).collect();
    apply(&store, conversations.iter().map(conv).collect()).await;
    let other = conversation(&UserId::new_guest(), "other", at(0));
    apply(&store, vec![conv(&other)]).await;
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 17);
    apply(
        &store,
        conversations[..5]
            .iter()
            .map(|c| StoreWrite::DeleteConversation(c.id))
            .collect(),
    )
    .await;
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 12);
    assert_eq!(store.count_conversations(&other.owner).await.unwrap(), 1);
}

/// PostgreSQL text cannot hold U+0000: that store keeps it as U+FFFD rather
/// than refusing the batch; SQLite keeps it as is.
async fn text_with_nul_is_kept(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "nul\0title", at(0));
    let m = message(&c, 0, Role::User, "before\0after", MessageStatus::Complete);
    apply(&store, vec![conv(&c), msg(&m)]).await;
    let stored = only_message(&store, c.id).await;
    let title = store
        .conversation(c.id)
        .await
        .unwrap()
        .unwrap()
        .title
        .unwrap();
    match store.name() {
        "postgres" => {
            assert_eq!(stored.message.content, "before\u{FFFD}after");
            assert_eq!(title, "nul\u{FFFD}title");
        }
        _ => {
            assert_eq!(stored, m);
            assert_eq!(title, "nul\0title");
        }
    }
    assert_eq!(store.search(&owner, "before", 10).await.unwrap().len(), 1);
}

async fn concurrent_batches_all_land(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let conversations: Vec<StoredConversation> = (0..4)
        .map(|i| conversation(&owner, "busy", at(i)))
        .collect();
    apply(&store, conversations.iter().map(conv).collect()).await;
    let doomed = conversations[3].id;
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        let conversations = conversations.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..15u64 {
                // Each batch touches every conversation, in a task-dependent order.
                let mut writes = Vec::new();
                for k in 0..4 {
                    let c = &conversations[((task + k) % 4) as usize];
                    let m = message(
                        c,
                        task * 100 + round,
                        Role::User,
                        &format!("task {task} round {round}"),
                        MessageStatus::Complete,
                    );
                    writes.push(StoreWrite::Conversation(StoredConversation {
                        updated_at: at(1_000 + round as i64),
                        ..c.clone()
                    }));
                    writes.push(StoreWrite::Message(m));
                }
                if task == 0 && round == 7 {
                    writes.push(StoreWrite::DeleteConversation(doomed));
                }
                store.apply(&writes).await.expect("a concurrent batch");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.conversation(doomed).await.unwrap(), None);
    assert!(store.messages(doomed).await.unwrap().is_empty());
    for c in &conversations[..3] {
        assert_eq!(store.messages(c.id).await.unwrap().len(), 8 * 15);
    }
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 3);
}

/// 10,000 conversations for one owner, a 1,000-message conversation, and
/// search over 100,000 messages (of many owners) answer within bounds that
/// only indexes allow (generous for a debug build on a slow machine).
async fn large_histories_stay_fast(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let started = Instant::now();
    let conversations: Vec<StoredConversation> = (0..10_000)
        .map(|i| conversation(&owner, &format!("conversation {i}"), at(i * 1_000)))
        .collect();
    for chunk in conversations.chunks(2_000) {
        apply(&store, chunk.iter().map(conv).collect()).await;
    }
    // 100,000 messages: 1,000 in one conversation, the rest spread over the
    // others and over other owners.
    let long = &conversations[0];
    let mut writes = Vec::new();
    for i in 0..1_000u64 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        writes.push(msg(&message(
            long,
            i,
            role,
            &format!("long conversation line {i} walrus"),
            MessageStatus::Complete,
        )));
    }
    apply(&store, writes).await;
    let others: Vec<StoredConversation> = (0..1_000)
        .map(|i| conversation(&UserId::new_guest(), "other owner", at(i)))
        .collect();
    apply(&store, others.iter().map(conv).collect()).await;
    let words = [
        "apple", "banana", "cherry", "damson", "elder", "fig", "grape", "walrus",
    ];
    let mut batch = Vec::new();
    for i in 0..99_000u64 {
        let c = if i % 2 == 0 {
            &conversations[1 + (i as usize / 2) % 9_999]
        } else {
            &others[(i as usize / 2) % 1_000]
        };
        let text = format!(
            "message {i} about {} and {} with some filler text to index",
            words[(i % 8) as usize],
            words[(i / 8 % 8) as usize]
        );
        batch.push(msg(&message(
            c,
            1 + i / 20_000,
            Role::User,
            &text,
            MessageStatus::Complete,
        )));
        if batch.len() == 5_000 {
            apply(&store, std::mem::take(&mut batch)).await;
        }
    }
    apply(&store, batch).await;
    eprintln!(
        "{}: wrote 10,000 conversations and 100,000 messages in {:?}",
        store.name(),
        started.elapsed()
    );

    let started = Instant::now();
    let listed = all_pages(&store, &owner, 50).await;
    let elapsed = started.elapsed();
    assert_eq!(listed.len(), 10_000);
    eprintln!(
        "{}: listed 10,000 conversations in 200 pages in {elapsed:?}",
        store.name()
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "listing took {elapsed:?}"
    );
    let started = Instant::now();
    let last_page_cursor = {
        let page = store.list_conversations(&owner, 9_990, None).await.unwrap();
        page.next.unwrap()
    };
    let page = store
        .list_conversations(&owner, 50, Some(&last_page_cursor))
        .await
        .unwrap();
    assert_eq!(page.conversations.len(), 10);
    assert_eq!(store.count_conversations(&owner).await.unwrap(), 10_000);
    eprintln!(
        "{}: deep page and count in {:?}",
        store.name(),
        started.elapsed()
    );

    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(store.messages(long.id).await.unwrap().len(), 1_000);
    }
    let elapsed = started.elapsed() / 10;
    eprintln!(
        "{}: read a 1,000-message conversation in {elapsed:?}",
        store.name()
    );
    assert!(elapsed < Duration::from_secs(2), "reading took {elapsed:?}");

    let started = Instant::now();
    let hits = store.search(&owner, "walrus", 20).await.unwrap();
    assert_eq!(hits.len(), 20);
    let hits = store.search(&owner, "cherry fig", 20).await.unwrap();
    assert_eq!(hits.len(), 20);
    assert!(hits.iter().all(|h| h.snippet.contains(SNIPPET_OPEN)));
    let rare = store.search(&owner, "message 98766", 20).await.unwrap();
    assert_eq!(rare.len(), 1, "{rare:?}");
    let none = store.search(&owner, "zeppelin", 20).await.unwrap();
    assert!(none.is_empty());
    let elapsed = started.elapsed() / 4;
    eprintln!(
        "{}: searched 100,000 messages in {elapsed:?} per query",
        store.name()
    );
    assert!(elapsed < Duration::from_secs(3), "search took {elapsed:?}");
    assert!(store.streaming_replies().await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// PostgreSQL only.

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn postgres_unreachable_answers_unavailable_quickly() {
    let c = conversation(&UserId::new_guest(), "lost", at(0));
    let writes = [conv(&c)];

    // Connection refused.
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/chatstream",
        closed_port().await
    );
    let store = store::PostgresStore::connect_lazy(&url).unwrap();
    let started = Instant::now();
    let error = store.apply(&writes).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(elapsed < Duration::from_secs(5), "apply took {elapsed:?}");
    eprintln!("refused: apply answered {error:?} in {elapsed:?}");
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.search(&c.owner, "lost", 5).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.list_conversations(&c.owner, 5, None).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.messages(c.id).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(store::connect(&url).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));

    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/chatstream");
    let store = store::PostgresStore::connect_lazy(&url).unwrap();
    let started = Instant::now();
    let error = store.apply(&writes).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(elapsed < Duration::from_secs(6), "apply took {elapsed:?}");
    eprintln!("silent: apply answered {error:?} in {elapsed:?}");
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_database() {
    let url = pg::fresh_database_url().await;
    // Two nodes start at once: migrations run once.
    let (one, two) = tokio::join!(store::connect(&url), store::connect(&url));
    let (one, two) = (one.unwrap(), two.unwrap());
    let c = conversation(&UserId::new_guest(), "shared", at(0));
    let m = message(&c, 0, Role::User, "shared", MessageStatus::Complete);
    apply(&one, vec![conv(&c), msg(&m)]).await;
    assert_eq!(two.messages(c.id).await.unwrap(), vec![m.clone()]);
    apply(&two, vec![StoreWrite::DeleteConversation(c.id)]).await;
    // A late write from the first node does not bring it back.
    apply(&one, vec![conv(&c), msg(&m)]).await;
    assert_eq!(two.conversation(c.id).await.unwrap(), None);
    assert_eq!(one.conversation(c.id).await.unwrap(), None);
    // Reconnecting later finds the schema in place.
    drop((one, two));
    let again = store::connect(&url).await.unwrap();
    assert_eq!(again.conversation(c.id).await.unwrap(), None);
    drop(again);
    pg::drop_database(&url).await;
}

#[test]
fn postgres_test_urls_get_their_database_replaced() {
    assert_eq!(
        pg::with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        pg::with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(pg::with_database("postgres://h:1", "x"), "postgres://h:1/x");
    assert_eq!(
        pg::database_name("postgres://h/chatstream_test_1?a=b").as_deref(),
        Some("chatstream_test_1")
    );
}

// ---------------------------------------------------------------------------
// SQLite only.

#[tokio::test]
async fn sqlite_file_is_set_up_for_durability() {
    let dir = temp_dir();
    let path = dir.join("nested").join("deeper").join("history.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists(), "the file and its directories are created");
    let pool = store.pool();
    let (fts5,): (i64,) = sqlx::query_as("SELECT sqlite_compileoption_used('ENABLE_FTS5')")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fts5, 1, "the bundled SQLite has FTS5");
    let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(synchronous, 1, "NORMAL");
    let (foreign_keys,): (i64,) = sqlx::query_as("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(foreign_keys, 1);
    let (busy,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(busy >= 1_000, "busy timeout {busy} ms");

    // The queries use their indexes.
    let plan = |sql: &'static str| async move {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql).fetch_all(pool).await.unwrap();
        rows.into_iter()
            .map(|row| row.3)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let listing = plan(
        "EXPLAIN QUERY PLAN SELECT id FROM conversations WHERE owner = 'x' \
         AND (updated_at < 1 OR (updated_at = 1 AND id < 'y')) \
         ORDER BY updated_at DESC, id DESC LIMIT 51",
    )
    .await;
    assert!(
        listing.contains("conversations_by_owner") && !listing.contains("TEMP B-TREE"),
        "{listing}"
    );
    let reading = plan(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE conversation_id = 'x' ORDER BY position, id",
    )
    .await;
    assert!(reading.contains("messages_by_conversation"), "{reading}");
    let streaming = plan(
        "EXPLAIN QUERY PLAN SELECT conversation_id, id FROM messages WHERE status = 'streaming' \
         ORDER BY conversation_id, position",
    )
    .await;
    assert!(streaming.contains("messages_streaming"), "{streaming}");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sqlite_history_survives_reopening() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("history.db").display());
    let c = conversation(&UserId::new_guest(), "kept", at(0));
    let m = message(
        &c,
        0,
        Role::User,
        "kept across restarts",
        MessageStatus::Streaming,
    );
    {
        let store = store::connect(&url).await.unwrap();
        apply(
            &store,
            vec![
                conv(&c),
                msg(&m),
                StoreWrite::DeleteConversation(Uuid::new_v4()),
            ],
        )
        .await;
    }
    let store = store::connect(&url).await.unwrap();
    assert_eq!(store.conversation(c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.messages(c.id).await.unwrap(), vec![m.clone()]);
    assert_eq!(
        store.streaming_replies().await.unwrap(),
        vec![(c.id, m.message.id)]
    );
    assert_eq!(
        store.search(&c.owner, "restarts", 5).await.unwrap().len(),
        1
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sqlite_in_memory_and_bad_urls() {
    let store = store::connect("sqlite::memory:").await.unwrap();
    let c = conversation(&UserId::new_guest(), "memory", at(0));
    apply(&store, vec![conv(&c)]).await;
    assert_eq!(store.conversation(c.id).await.unwrap(), Some(c));

    for bad in [
        "sqlite://",
        "sqlite:",
        "mysql://localhost/db",
        "history.db",
        "",
    ] {
        assert!(store::connect(bad).await.is_err(), "{bad}");
    }
}

/// Versions and branches: every message keeps the message it follows, and a
/// tree reads back in log order with its parents.
async fn a_tree_keeps_its_parents(store: Arc<dyn Store>) {
    let owner = UserId::new_guest();
    let c = conversation(&owner, "tree", at(10));
    let question = message(&c, 0, Role::User, "q", MessageStatus::Complete);
    let mut first = message(&c, 1, Role::Assistant, "a", MessageStatus::Complete);
    first.message.parent_id = Some(question.message.id);
    let mut second = message(&c, 2, Role::Assistant, "b", MessageStatus::Complete);
    second.message.parent_id = Some(question.message.id);
    // An edit of the first question: a first message too.
    let edited = message(&c, 3, Role::User, "q2", MessageStatus::Complete);
    apply(
        &store,
        vec![
            conv(&c),
            msg(&question),
            msg(&first),
            msg(&second),
            msg(&edited),
        ],
    )
    .await;
    let stored: Vec<Message> = store
        .messages(c.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(
        stored,
        [
            question.message,
            first.message,
            second.message,
            edited.message
        ]
    );
}

// ---------------------------------------------------------------------------
// Upgrading a store written before messages named their parent.

/// The migrations in `dir` older than `version`: a store as an earlier
/// release left it.
async fn migrations_before(dir: &str, version: i64) -> sqlx::migrate::Migrator {
    let mut older = sqlx::migrate::Migrator::new(std::path::Path::new(dir))
        .await
        .unwrap();
    older.migrations = older
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    older
}

/// Three messages of one conversation as an earlier release stored them.
fn older_history() -> (StoredConversation, Vec<StoredMessage>) {
    let c = conversation(&UserId::new_guest(), "old", at(0));
    let rows = (0..3)
        .map(|position| {
            let role = if position % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            message(&c, position, role, "old text", MessageStatus::Complete)
        })
        .collect();
    (c, rows)
}

/// What the store reads of a history written before `branches`: each
/// message follows the one before it.
async fn assert_linked_in_order(
    store: Arc<dyn Store>,
    c: &StoredConversation,
    rows: &[StoredMessage],
) {
    let parents: Vec<Option<Uuid>> = store
        .messages(c.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message.parent_id)
        .collect();
    assert_eq!(
        parents,
        [None, Some(rows[0].message.id), Some(rows[1].message.id)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_sqlite_store_gets_its_parents() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("history.db").display());
    let (c, rows) = older_history();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    migrations_before("src/store/migrations/sqlite", 3)
        .await
        .run(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO conversations (id, owner, title, created_at, updated_at) VALUES (?1, ?2, 'old', 0, 0)")
        .bind(c.id.to_string())
        .bind(c.owner.to_string())
        .execute(&pool)
        .await
        .unwrap();
    for m in &rows {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, created_at) \
             VALUES (?1, ?2, ?3, ?4, 'old text', 'complete', 0)",
        )
        .bind(m.message.id.to_string())
        .bind(c.id.to_string())
        .bind(m.position as i64)
        .bind(if m.message.role == Role::User { "user" } else { "assistant" })
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let store = store::connect(&format!("sqlite://{}", dir.join("history.db").display()))
        .await
        .unwrap();
    assert_linked_in_order(store, &c, &rows).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_postgres_store_gets_its_parents() {
    let url = pg::fresh_database_url().await;
    let (c, rows) = older_history();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    migrations_before("src/store/migrations/postgres", 4)
        .await
        .run(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO conversations (id, owner, title, created_at, updated_at) VALUES ($1, $2, 'old', now(), now())")
        .bind(c.id)
        .bind(c.owner.to_string())
        .execute(&pool)
        .await
        .unwrap();
    for m in &rows {
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, position, role, content, status, created_at) \
             VALUES ($1, $2, $3, $4, 'old text', 'complete', now())",
        )
        .bind(m.message.id)
        .bind(c.id)
        .bind(m.position as i64)
        .bind(if m.message.role == Role::User { "user" } else { "assistant" })
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let store = store::connect(&url).await.unwrap();
    assert_linked_in_order(store, &c, &rows).await;
    pg::drop_database(&url).await;
}
