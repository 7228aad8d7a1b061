//! One conformance suite for the engine interface, run against the memory
//! engine and against a real redis-server: both must behave identically.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chatstream::engine::{
    BusMessage, Engine, EngineError, MemoryEngine, NodeAnnouncement, RedisEngine, TextAppend, Turn,
    TurnRequest,
};
use chatstream::protocol::UserId;
use chatstream::protocol::{Event, MessageStatus, Role};
use chatstream::transcript::Transcript;
use common::redis_server::RedisServer;
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

/// The node the engine under test serves: turns are leased to it.
const NODE: &str = "conformance";

/// An engine under test, and what keeps it alive.
struct Subject {
    engine: Arc<dyn Engine>,
    _server: Option<RedisServer>,
}

async fn memory(history: usize) -> Subject {
    Subject {
        engine: Arc::new(MemoryEngine::new(history)),
        _server: None,
    }
}

async fn redis(history: usize) -> Subject {
    let server = RedisServer::start();
    let engine = RedisEngine::connect(
        &server.url(),
        "conformance",
        history,
        Duration::from_secs(3600),
    )
    .await
    .expect("connects to the test redis-server");
    Subject {
        engine: Arc::new(engine),
        _server: Some(server),
    }
}

/// Runs each scenario against both engines.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod memory_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::memory).await;
                }
            )*
        }
        mod redis_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::redis).await;
                }
            )*
        }
    };
}

conformance!(
    a_turn_appends_the_user_message_and_a_streaming_reply,
    appends_follow_the_transcript_rules,
    text_appends_are_checked_by_offset,
    folding_the_log_gives_the_snapshot,
    client_msg_ids_make_sends_idempotent,
    only_the_owner_can_add_a_turn,
    the_bus_carries_watched_conversations_only,
    trimmed_history_is_reported,
    delete_forgets_everything,
    listings_are_per_owner_newest_first,
    node_announcements_are_listed,
    leases_fence_writers_and_lapsed_ones_are_adopted,
    a_message_is_read_whole_with_its_position,
);

/// Builds a fresh engine keeping `history` entries per conversation.
trait MakeSubject {
    async fn make(&self, history: usize) -> Subject;
}

impl<F, Fut> MakeSubject for F
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Subject>,
{
    async fn make(&self, history: usize) -> Subject {
        self(history).await
    }
}

fn turn(user: &UserId, conversation_id: Option<Uuid>, content: &str) -> TurnRequest {
    TurnRequest {
        user: user.clone(),
        conversation_id,
        content: content.into(),
        model: "demo".into(),
        client_msg_id: None,
    }
}

fn delta(message_id: Uuid, text: &str) -> Event {
    Event::Delta {
        message_id,
        text: text.into(),
    }
}

fn done(message_id: Uuid) -> Event {
    Event::Done {
        message_id,
        finish_reason: "stop".into(),
        usage: None,
    }
}

async fn new_turn(engine: &dyn Engine, user: &UserId, content: &str) -> Turn {
    engine.start_turn(turn(user, None, content)).await.unwrap()
}

async fn next_bus(bus: &mut UnboundedReceiver<BusMessage>) -> BusMessage {
    tokio::time::timeout(Duration::from_secs(5), bus.recv())
        .await
        .expect("a bus message arrives")
        .expect("the bus is open")
}

async fn a_turn_appends_the_user_message_and_a_streaming_reply(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let t = new_turn(engine, &user, "Hello there, engine").await;
    assert!(t.started);
    assert_eq!(t.user_seq, 1);
    let id = t.ack.conversation_id;

    let info = engine.conversation(id).await.unwrap().unwrap();
    assert_eq!(info.owner, user);
    assert_eq!(info.title.as_deref(), Some("Hello there, engine"));

    let snapshot = engine.snapshot(id).await.unwrap();
    assert_eq!(snapshot.seq, 2);
    assert_eq!(snapshot.epoch, t.epoch);
    let [asked, reply] = snapshot.messages.as_slice() else {
        panic!("two messages: {:?}", snapshot.messages)
    };
    assert_eq!(
        (asked.id, asked.role, asked.status),
        (t.ack.user_message_id, Role::User, MessageStatus::Complete)
    );
    assert_eq!(asked.content, "Hello there, engine");
    assert_eq!(
        (reply.id, reply.role, reply.status, reply.content.as_str()),
        (
            t.ack.assistant_message_id,
            Role::Assistant,
            MessageStatus::Streaming,
            ""
        )
    );
    assert_eq!(reply.model.as_deref(), Some("demo"));

    let history = engine.read(id, 0).await.unwrap();
    let seqs: Vec<u64> = history.entries.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    let info = engine
        .message(t.ack.assistant_message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.conversation_id, info.owner, info.role),
        (id, user, Role::Assistant)
    );
    assert!(engine.message(Uuid::new_v4()).await.unwrap().is_none());
    assert!(engine.conversation(Uuid::new_v4()).await.unwrap().is_none());
}

async fn appends_follow_the_transcript_rules(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let t = new_turn(engine, &user, "rules").await;
    let (id, reply) = (t.ack.conversation_id, t.ack.assistant_message_id);

    let conflict = |r: Result<_, EngineError>| matches!(r, Err(EngineError::Conflict(_)));
    assert!(conflict(
        engine
            .append(id, delta(t.ack.user_message_id, "x"))
            .await
            .map(|_| ())
    ));
    assert!(conflict(
        engine
            .start_turn(turn(&user, Some(id), "too soon"))
            .await
            .map(|_| ())
    ));
    engine.append(id, delta(reply, "Hi")).await.unwrap();
    let ended = engine
        .append(id, Event::Cancelled { message_id: reply })
        .await
        .unwrap();
    assert_eq!(ended.entry.seq, 4);
    assert_eq!(ended.epoch, t.epoch);
    // The first ending wins: nothing follows it.
    assert!(conflict(engine.append(id, done(reply)).await.map(|_| ())));
    assert!(conflict(
        engine.append(id, delta(reply, "more")).await.map(|_| ())
    ));
    assert!(engine.append(Uuid::new_v4(), done(reply)).await.is_err());
    assert_eq!(engine.snapshot(id).await.unwrap().seq, 4);
    let info = engine.message(reply).await.unwrap().unwrap();
    assert_eq!(info.status, MessageStatus::Cancelled);

    // The next turn is accepted once the reply has ended.
    let next = engine
        .start_turn(turn(&user, Some(id), "again"))
        .await
        .unwrap();
    assert_eq!(next.user_seq, 5);
    engine
        .append(
            id,
            Event::Failed {
                message_id: next.ack.assistant_message_id,
                error: "upstream broke".into(),
            },
        )
        .await
        .unwrap();
    let snapshot = engine.snapshot(id).await.unwrap();
    let failed = &snapshot.messages[3];
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("upstream broke"));
    assert_eq!(snapshot.messages[1].content, "Hi");
}

async fn text_appends_are_checked_by_offset(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let t = new_turn(engine, &UserId::new_guest(), "offsets").await;
    let (id, reply) = (t.ack.conversation_id, t.ack.assistant_message_id);
    let first = engine
        .append_text(id, reply, 0, "Héllo".into(), NODE)
        .await
        .unwrap();
    assert!(matches!(first, TextAppend::Appended(ref a) if a.entry.seq == 3));
    // A retry of the same append is recognised, not applied twice.
    assert!(matches!(
        engine
            .append_text(id, reply, 0, "Héllo".into(), NODE)
            .await
            .unwrap(),
        TextAppend::AlreadyApplied
    ));
    assert!(matches!(
        engine.append_text(id, reply, 0, "Other".into(), NODE).await,
        Err(EngineError::Conflict(_))
    ));
    assert!(matches!(
        engine.append_text(id, reply, 99, "x".into(), NODE).await,
        Err(EngineError::Conflict(_))
    ));
    engine
        .append_text(id, reply, "Héllo".len(), " world".into(), NODE)
        .await
        .unwrap();
    let snapshot = engine.snapshot(id).await.unwrap();
    assert_eq!(snapshot.messages[1].content, "Héllo world");
    assert_eq!(snapshot.seq, 4);
}

async fn folding_the_log_gives_the_snapshot(make: impl MakeSubject) {
    let subject = make.make(1000).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let t = new_turn(engine, &user, "fold me").await;
    let id = t.ack.conversation_id;
    let mut offset = 0;
    for word in [
        "One",
        " two",
        " three \"quoted\"",
        " ünïcödé",
        " \\ slash / and\nnewline",
    ] {
        engine
            .append_text(id, t.ack.assistant_message_id, offset, word.into(), NODE)
            .await
            .unwrap();
        offset += word.len();
    }
    engine
        .append(id, done(t.ack.assistant_message_id))
        .await
        .unwrap();
    let second = engine
        .start_turn(turn(&user, Some(id), "and more"))
        .await
        .unwrap();
    engine
        .append(id, delta(second.ack.assistant_message_id, "Sure"))
        .await
        .unwrap();

    let history = engine.read(id, 0).await.unwrap();
    let mut folded = Transcript::default();
    let entries = history.entries.unwrap();
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        folded.apply(&entry.event).unwrap();
    }
    let snapshot = engine.snapshot(id).await.unwrap();
    assert_eq!(history.head, snapshot.seq);
    assert_eq!(folded.messages(), snapshot.messages.as_slice());
    assert_eq!(
        snapshot.messages[1].content,
        "One two three \"quoted\" ünïcödé \\ slash / and\nnewline"
    );
    // Reading after some seq gives exactly the rest.
    let tail = engine.read(id, 5).await.unwrap().entries.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (6..=history.head).collect::<Vec<_>>()
    );
    assert!(
        engine
            .read(id, history.head)
            .await
            .unwrap()
            .entries
            .unwrap()
            .is_empty()
    );
    assert!(
        engine
            .read(id, history.head + 5)
            .await
            .unwrap()
            .entries
            .unwrap()
            .is_empty()
    );
}

async fn client_msg_ids_make_sends_idempotent(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let client_msg_id = Some(Uuid::new_v4());
    let first = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "once")
        })
        .await
        .unwrap();
    let again = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "once")
        })
        .await
        .unwrap();
    assert!(!again.started);
    assert_eq!(again.ack, first.ack);
    assert_eq!(again.user_seq, first.user_seq);
    assert_eq!(
        engine
            .snapshot(first.ack.conversation_id)
            .await
            .unwrap()
            .seq,
        2,
        "nothing appended"
    );
    // Naming the conversation it created is the same send.
    let named = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, Some(first.ack.conversation_id), "once")
        })
        .await
        .unwrap();
    assert_eq!(named.ack, first.ack);
    let changed = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "twice")
        })
        .await;
    assert!(matches!(changed, Err(EngineError::Conflict(_))));
    // Ids are per user.
    let other = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&UserId::new_guest(), None, "once")
        })
        .await
        .unwrap();
    assert!(other.started);
    assert_ne!(other.ack, first.ack);
}

async fn only_the_owner_can_add_a_turn(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let owner = UserId::new_guest();
    let t = new_turn(engine, &owner, "mine").await;
    engine
        .append(t.ack.conversation_id, done(t.ack.assistant_message_id))
        .await
        .unwrap();
    let intruder = engine
        .start_turn(turn(
            &UserId::new_guest(),
            Some(t.ack.conversation_id),
            "hi",
        ))
        .await;
    assert!(matches!(intruder, Err(EngineError::Forbidden)));
    let unknown = engine
        .start_turn(turn(&owner, Some(Uuid::new_v4()), "hi"))
        .await;
    assert!(matches!(unknown, Err(EngineError::NotFound)));
}

async fn the_bus_carries_watched_conversations_only(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let mut bus = engine.take_bus().expect("the bus is handed out once");
    assert!(engine.take_bus().is_none());
    let user = UserId::new_guest();
    let watched = new_turn(engine, &user, "watched").await;
    let quiet = new_turn(engine, &user, "quiet").await;
    engine.watch(watched.ack.conversation_id).await.unwrap();

    engine
        .append(
            quiet.ack.conversation_id,
            delta(quiet.ack.assistant_message_id, "unseen"),
        )
        .await
        .unwrap();
    let appended = engine
        .append(
            watched.ack.conversation_id,
            delta(watched.ack.assistant_message_id, "seen"),
        )
        .await
        .unwrap();
    match next_bus(&mut bus).await {
        BusMessage::Published {
            conversation_id,
            epoch,
            entry,
        } => {
            assert_eq!(
                conversation_id, watched.ack.conversation_id,
                "only watched conversations are published"
            );
            assert_eq!(epoch, watched.epoch);
            assert_eq!(entry, appended.entry);
        }
        other => panic!("expected a publication, got {other:?}"),
    }

    engine.unwatch(watched.ack.conversation_id).await.unwrap();
    engine.watch(quiet.ack.conversation_id).await.unwrap();
    engine
        .append(
            watched.ack.conversation_id,
            done(watched.ack.assistant_message_id),
        )
        .await
        .unwrap();
    engine
        .append(
            quiet.ack.conversation_id,
            done(quiet.ack.assistant_message_id),
        )
        .await
        .unwrap();
    match next_bus(&mut bus).await {
        BusMessage::Published {
            conversation_id,
            entry,
            ..
        } => {
            assert_eq!(
                conversation_id, quiet.ack.conversation_id,
                "unwatched conversations are not published"
            );
            assert!(matches!(entry.event, Event::Done { .. }));
        }
        other => panic!("expected a publication, got {other:?}"),
    }
    engine
        .delete_conversation(quiet.ack.conversation_id)
        .await
        .unwrap();
    assert!(matches!(
        next_bus(&mut bus).await,
        BusMessage::Deleted { conversation_id } if conversation_id == quiet.ack.conversation_id
    ));
}

async fn trimmed_history_is_reported(make: impl MakeSubject) {
    let subject = make.make(5).await;
    let engine = subject.engine.as_ref();
    let t = new_turn(engine, &UserId::new_guest(), "long").await;
    let id = t.ack.conversation_id;
    for i in 0..20 {
        engine
            .append(id, delta(t.ack.assistant_message_id, &i.to_string()))
            .await
            .unwrap();
    }
    let all = engine.read(id, 0).await.unwrap();
    assert_eq!(all.head, 22);
    assert!(all.entries.is_none(), "events 1.. are no longer kept");
    let recent = engine.read(id, 19).await.unwrap().entries.unwrap();
    assert_eq!(
        recent.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [20, 21, 22]
    );
    // The snapshot still holds everything.
    let snapshot = engine.snapshot(id).await.unwrap();
    assert_eq!(
        snapshot.messages[1].content,
        (0..20).map(|i| i.to_string()).collect::<String>()
    );
}

async fn delete_forgets_everything(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let client_msg_id = Some(Uuid::new_v4());
    let t = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "forget me")
        })
        .await
        .unwrap();
    let id = t.ack.conversation_id;
    engine.delete_conversation(id).await.unwrap();
    assert!(engine.conversation(id).await.unwrap().is_none());
    assert!(matches!(
        engine.snapshot(id).await,
        Err(EngineError::NotFound)
    ));
    assert!(matches!(
        engine.read(id, 0).await,
        Err(EngineError::NotFound)
    ));
    assert!(
        engine
            .message(t.ack.assistant_message_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(engine.list_conversations(&user).await.unwrap().is_empty());
    assert!(matches!(
        engine.delete_conversation(id).await,
        Err(EngineError::NotFound)
    ));
    // Its client_msg_id is forgotten: the same id starts a new turn.
    let again = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "forget me")
        })
        .await
        .unwrap();
    assert!(again.started);
    assert_ne!(again.ack.conversation_id, id);
}

async fn listings_are_per_owner_newest_first(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "first").await;
    let created = engine
        .create_conversation(user.clone(), Some("Named".into()))
        .await
        .unwrap();
    assert_eq!(created.title.as_deref(), Some("Named"));
    let untitled = engine
        .create_conversation(user.clone(), None)
        .await
        .unwrap();
    assert_eq!(untitled.title, None);
    assert_eq!(engine.snapshot(created.id).await.unwrap().seq, 0);
    // Touch the first conversation last.
    engine
        .append(
            first.ack.conversation_id,
            done(first.ack.assistant_message_id),
        )
        .await
        .unwrap();
    let list = engine.list_conversations(&user).await.unwrap();
    let ids: Vec<Uuid> = list.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], first.ack.conversation_id);
    assert!(list.windows(2).all(|w| w[0].updated_at >= w[1].updated_at));
    assert!(
        engine
            .list_conversations(&UserId::new_guest())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn node_announcements_are_listed(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let announcement = NodeAnnouncement {
        node_id: "conformance".into(),
        actors: serde_json::json!([{"id": "1", "kind": "supervisor"}]),
    };
    engine
        .announce_node(announcement.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(engine.nodes().await.unwrap(), vec![announcement]);
}

async fn leases_fence_writers_and_lapsed_ones_are_adopted(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let t = new_turn(engine, &UserId::new_guest(), "lease me").await;
    let (id, reply) = (t.ack.conversation_id, t.ack.assistant_message_id);
    let ttl = Duration::from_secs(30);
    assert!(engine.renew_lease(id, reply, NODE, ttl).await.unwrap());
    assert!(
        !engine.renew_lease(id, reply, "other", ttl).await.unwrap(),
        "held by {NODE}"
    );
    assert!(
        engine.claim_orphans("other", ttl).await.unwrap().is_empty(),
        "a live lease is not orphaned"
    );
    let fenced = engine
        .append_text(id, reply, 0, "zombie".into(), "other")
        .await;
    assert!(
        matches!(fenced, Err(EngineError::Conflict(_))),
        "only the holder writes"
    );
    assert!(matches!(
        engine.end_reply(id, done(reply), "other").await,
        Err(EngineError::Conflict(_))
    ));
    engine
        .append_text(id, reply, 0, "mine".into(), NODE)
        .await
        .unwrap();

    // Handed over: another node adopts it, and the first is fenced out.
    engine.release_lease(id, reply, NODE).await.unwrap();
    assert_eq!(
        engine.claim_orphans("other", ttl).await.unwrap(),
        vec![(id, reply)]
    );
    assert!(
        engine.claim_orphans("third", ttl).await.unwrap().is_empty(),
        "claimed once"
    );
    assert!(!engine.renew_lease(id, reply, NODE, ttl).await.unwrap());
    let stale = engine.append_text(id, reply, 4, " more".into(), NODE).await;
    assert!(matches!(stale, Err(EngineError::Conflict(_))));
    engine
        .append_text(id, reply, 4, " theirs".into(), "other")
        .await
        .unwrap();

    // A lapsed lease is adopted too.
    engine
        .renew_lease(id, reply, "other", Duration::from_millis(50))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let adopted = loop {
        let adopted = engine.claim_orphans(NODE, ttl).await.unwrap();
        if !adopted.is_empty() || tokio::time::Instant::now() > deadline {
            break adopted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(adopted, vec![(id, reply)]);

    // A cancel (anyone may write it) ends the reply: it is never adopted again.
    engine
        .append(id, Event::Cancelled { message_id: reply })
        .await
        .unwrap();
    assert!(!engine.renew_lease(id, reply, NODE, ttl).await.unwrap());
    engine.release_lease(id, reply, NODE).await.unwrap();
    assert!(engine.claim_orphans("other", ttl).await.unwrap().is_empty());
    assert_eq!(
        engine.snapshot(id).await.unwrap().messages[1].content,
        "mine theirs"
    );
}

async fn a_message_is_read_whole_with_its_position(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "first").await;
    let id = first.ack.conversation_id;
    let reply = first.ack.assistant_message_id;
    engine
        .append_text(id, reply, 0, "Xin chào".into(), NODE)
        .await
        .unwrap();
    let (position, message) = engine.message_at(id, reply).await.unwrap().unwrap();
    assert_eq!(position, 1);
    assert_eq!(message.content, "Xin chào");
    assert_eq!(message.status, MessageStatus::Streaming);
    engine.end_reply(id, done(reply), NODE).await.unwrap();
    let second = engine
        .start_turn(turn(&user, Some(id), "second"))
        .await
        .unwrap();
    let (position, message) = engine
        .message_at(id, second.ack.user_message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(position, 2);
    assert_eq!(
        (message.role, message.content.as_str()),
        (Role::User, "second")
    );
    let (_, ended) = engine.message_at(id, reply).await.unwrap().unwrap();
    assert_eq!(ended.status, MessageStatus::Complete);
    assert_eq!(ended.content, "Xin chào");
    assert!(
        engine
            .message_at(id, Uuid::new_v4())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        engine.message_at(Uuid::new_v4(), reply).await,
        Err(EngineError::NotFound)
    ));
}
