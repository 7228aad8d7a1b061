//! One conformance suite for the engine interface, run against the memory
//! engine, a real redis-server and a real Redis Cluster (three masters,
//! three replicas): all must behave identically.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chatstream::engine::redis::{RedisOptions, RedisTarget};
use chatstream::engine::{
    Branch, BusMessage, Engine, EngineError, Limits, MemoryEngine, NodeAnnouncement, RedisEngine,
    TextAppend, Turn, TurnRequest,
};
use chatstream::protocol::UserId;
use chatstream::protocol::{ErrorCode, Event, MessageStatus, Role};
use chatstream::transcript::Transcript;
use common::redis_cluster::RedisCluster;
use common::redis_server::RedisServer;
use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

/// The node the engine under test serves: turns are leased to it.
const NODE: &str = "conformance";

/// An engine under test, and what keeps it alive.
struct Subject {
    engine: Arc<dyn Engine>,
    _server: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

async fn memory(history: usize, limits: Limits) -> Subject {
    Subject {
        engine: Arc::new(MemoryEngine::with_limits(history, limits)),
        _server: None,
        _cluster: None,
    }
}

async fn redis(history: usize, limits: Limits) -> Subject {
    let server = RedisServer::start();
    let engine = redis_engine(&server, NODE, history, limits).await;
    Subject {
        engine: Arc::new(engine),
        _server: Some(server),
        _cluster: None,
    }
}

async fn redis_cluster(history: usize, limits: Limits) -> Subject {
    let cluster = RedisCluster::start();
    let mut options = RedisOptions::new(history, Duration::from_secs(3600));
    options.limits = limits;
    let engine = RedisEngine::connect_to(&RedisTarget::cluster(&cluster.seeds()), NODE, options)
        .await
        .expect("connects to the test Redis Cluster");
    Subject {
        engine: Arc::new(engine),
        _server: None,
        _cluster: Some(cluster),
    }
}

/// A node's Redis engine on `server`.
async fn redis_engine(
    server: &RedisServer,
    node: &str,
    history: usize,
    limits: Limits,
) -> RedisEngine {
    let mut options = RedisOptions::new(history, Duration::from_secs(3600));
    options.limits = limits;
    RedisEngine::connect_with(&server.url(), node, options)
        .await
        .expect("connects to the test redis-server")
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
        mod redis_cluster_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::redis_cluster).await;
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
    the_message_limit_holds_at_its_edge,
    the_generation_limit_holds_at_its_edge,
    a_rebuilt_streaming_reply_counts_toward_its_users_limit,
    versions_branch_the_tree_and_the_newest_is_active,
    a_continued_reply_starts_with_the_old_text,
    versions_are_idempotent_by_client_msg_id,
    a_turn_after_a_message_not_in_the_conversation_is_refused,
    a_rename_sets_the_title_and_the_time,
);

/// Builds a fresh engine keeping `history` entries per conversation.
trait MakeSubject {
    /// With the contract's default limits.
    async fn make(&self, history: usize) -> Subject {
        self.make_limited(history, Limits::default()).await
    }

    async fn make_limited(&self, history: usize, limits: Limits) -> Subject;
}

impl<F, Fut> MakeSubject for F
where
    F: Fn(usize, Limits) -> Fut,
    Fut: std::future::Future<Output = Subject>,
{
    async fn make_limited(&self, history: usize, limits: Limits) -> Subject {
        self(history, limits).await
    }
}

fn turn(user: &UserId, conversation_id: Option<Uuid>, content: &str) -> TurnRequest {
    TurnRequest {
        user: user.clone(),
        conversation_id,
        content: content.into(),
        model: "demo".into(),
        client_msg_id: None,
        branch: Branch::Newest,
    }
}

/// A turn asking only for a new reply to the user message `to`.
fn reply_to(user: &UserId, conversation_id: Uuid, to: Uuid, prefix: &str) -> TurnRequest {
    TurnRequest {
        branch: Branch::Reply {
            to,
            prefix: prefix.into(),
        },
        ..turn(user, Some(conversation_id), "")
    }
}

/// Ends a reply as `done` on behalf of `NODE`.
async fn finish(engine: &dyn Engine, turn: &Turn) {
    engine
        .end_reply(
            turn.ack.conversation_id,
            done(turn.ack.assistant_message_id),
            NODE,
        )
        .await
        .unwrap();
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

#[test]
fn the_default_limits_are_the_contracts() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_messages_per_conversation: 2_000,
            max_generations_per_user: 4,
        }
    );
}

/// A conversation takes turns up to exactly its limit of messages; the turn
/// whose two messages would pass it is refused as `too_large` and appends
/// nothing.
async fn the_message_limit_holds_at_its_edge(make: impl MakeSubject) {
    let limits = Limits {
        max_messages_per_conversation: 6,
        ..Limits::default()
    };
    let subject = make.make_limited(100, limits).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let mut conversation = None;
    for i in 0..3 {
        let t = engine
            .start_turn(turn(&user, conversation, &format!("turn {i}")))
            .await
            .expect("a turn up to the limit passes");
        conversation = Some(t.ack.conversation_id);
        engine
            .end_reply(
                t.ack.conversation_id,
                done(t.ack.assistant_message_id),
                NODE,
            )
            .await
            .unwrap();
    }
    let id = conversation.unwrap();
    let full = engine.snapshot(id).await.unwrap();
    assert_eq!(full.messages.len(), 6, "exactly at the limit");

    let over = TurnRequest {
        client_msg_id: Some(Uuid::new_v4()),
        ..turn(&user, Some(id), "one turn too many")
    };
    let refused = engine.start_turn(over.clone()).await;
    assert_eq!(
        refused.as_ref().err(),
        Some(&EngineError::ConversationFull { limit: 6 })
    );
    let error = refused.unwrap_err().into_api("conversation");
    assert_eq!(error.code, ErrorCode::TooLarge);
    assert!(error.message.contains("6 messages"), "{}", error.message);
    let after = engine.snapshot(id).await.unwrap();
    assert_eq!((after.seq, &after.messages), (full.seq, &full.messages));
    assert!(
        engine
            .read(id, full.seq)
            .await
            .unwrap()
            .entries
            .unwrap()
            .is_empty(),
        "nothing appended"
    );
    // The refused send left no turn behind for its client_msg_id to answer.
    assert_eq!(
        engine.start_turn(over).await.err(),
        Some(EngineError::ConversationFull { limit: 6 })
    );
    // The limit is per conversation.
    new_turn(engine, &user, "a new conversation").await;
}

/// How a streaming reply stops counting toward its user's limit.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Done,
    Cancelled,
    Failed,
    /// Ended by the node that adopted it after its own node let go.
    AdoptedAndDone,
    Deleted,
}

/// A user may have exactly `max_generations_per_user` replies streaming;
/// the turn that would start one more is refused as `rate_limited` and
/// appends nothing; every way a reply ends gives its place back.
async fn the_generation_limit_holds_at_its_edge(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let client_msg_id = Some(Uuid::new_v4());
    let first = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "question 0")
        })
        .await
        .unwrap();
    let mut streaming = vec![first.clone()];
    for i in 1..4 {
        streaming.push(new_turn(engine, &user, &format!("question {i}")).await);
    }
    let waiting = engine
        .create_conversation(user.clone(), None)
        .await
        .unwrap();

    let refused = engine
        .start_turn(turn(&user, Some(waiting.id), "a fifth"))
        .await;
    assert_eq!(
        refused.as_ref().err(),
        Some(&EngineError::TooManyGenerations { limit: 4 })
    );
    let error = refused.unwrap_err().into_api("conversation");
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert!(error.message.contains("4 replies"), "{}", error.message);
    assert_eq!(
        engine.snapshot(waiting.id).await.unwrap().seq,
        0,
        "nothing appended"
    );
    assert!(matches!(
        engine
            .start_turn(turn(&user, None, "a fifth, elsewhere"))
            .await,
        Err(EngineError::TooManyGenerations { limit: 4 })
    ));
    assert_eq!(
        engine.list_conversations(&user).await.unwrap().len(),
        5,
        "no conversation was created"
    );
    // A resend starts nothing: it answers its first ack at the limit too.
    let resent = engine
        .start_turn(TurnRequest {
            client_msg_id,
            ..turn(&user, None, "question 0")
        })
        .await
        .unwrap();
    assert!(!resent.started);
    assert_eq!(resent.ack, first.ack);
    // One user's replies do not count against another's.
    new_turn(engine, &UserId::new_guest(), "someone else").await;

    for (round, ending) in [
        Ending::Done,
        Ending::Cancelled,
        Ending::Failed,
        Ending::AdoptedAndDone,
        Ending::Deleted,
    ]
    .into_iter()
    .enumerate()
    {
        let ended = streaming.remove(0);
        let (id, reply) = (ended.ack.conversation_id, ended.ack.assistant_message_id);
        match ending {
            Ending::Done => {
                engine.end_reply(id, done(reply), NODE).await.unwrap();
            }
            Ending::Cancelled => {
                engine
                    .append(id, Event::Cancelled { message_id: reply })
                    .await
                    .unwrap();
            }
            Ending::Failed => {
                engine
                    .append(
                        id,
                        Event::Failed {
                            message_id: reply,
                            error: "the model is unavailable".into(),
                        },
                    )
                    .await
                    .unwrap();
            }
            Ending::AdoptedAndDone => {
                engine.release_lease(id, reply, NODE).await.unwrap();
                let adopted = engine
                    .claim_orphans("adopter", Duration::from_secs(30))
                    .await
                    .unwrap();
                assert!(adopted.contains(&(id, reply)), "{adopted:?}");
                engine.end_reply(id, done(reply), "adopter").await.unwrap();
            }
            Ending::Deleted => engine.delete_conversation(id).await.unwrap(),
        }
        let next = engine
            .start_turn(turn(&user, None, &format!("after {ending:?}")))
            .await
            .unwrap_or_else(|e| panic!("round {round}: a place is free after {ending:?}: {e}"));
        assert!(
            matches!(
                engine.start_turn(turn(&user, None, "one too many")).await,
                Err(EngineError::TooManyGenerations { limit: 4 })
            ),
            "round {round}: the new reply took the free place"
        );
        streaming.push(next);
    }
}

/// A streaming reply recreated by `rebuild` (after the log store lost it)
/// counts toward its user's limit again, and its ending frees the place.
async fn a_rebuilt_streaming_reply_counts_toward_its_users_limit(make: impl MakeSubject) {
    let limits = Limits {
        max_generations_per_user: 1,
        ..Limits::default()
    };
    let subject = make.make_limited(100, limits).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let t = new_turn(engine, &user, "rebuild me").await;
    let (id, reply) = (t.ack.conversation_id, t.ack.assistant_message_id);
    let copy = engine.snapshot(id).await.unwrap();
    engine.delete_conversation(id).await.unwrap();
    engine.rebuild(&copy, Some(NODE)).await.unwrap();
    assert!(matches!(
        engine
            .start_turn(turn(&user, None, "while it streams"))
            .await,
        Err(EngineError::TooManyGenerations { limit: 1 })
    ));
    engine.end_reply(id, done(reply), NODE).await.unwrap();
    new_turn(engine, &user, "once it ended").await;
}

// ---------------------------------------------------------------------------
// The Redis engine only: several nodes on one redis-server, and what each
// operation costs Redis.

/// A plain connection to the test server, to look behind the engine.
async fn inspect(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The conversation's keys, without the `cs:{<id>}:` prefix, sorted.
async fn conversation_keys(
    connection: &mut redis::aio::MultiplexedConnection,
    conversation_id: Uuid,
) -> Vec<String> {
    let prefix = format!("cs:{{{conversation_id}}}:");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("cs:{{{conversation_id}}}:*"))
        .query_async(connection)
        .await
        .unwrap();
    let mut names: Vec<String> = keys
        .iter()
        .map(|k| k.strip_prefix(&prefix).unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Two engines on one redis-server stand for two nodes: the limit on
/// replies streaming at once holds for the user across both, and a reply
/// ended by the other node (a cancel, an adoption after its node let go)
/// gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generation_limit_holds_across_nodes() {
    let server = RedisServer::start();
    let a = redis_engine(&server, "node-a", 100, Limits::default()).await;
    let b = redis_engine(&server, "node-b", 100, Limits::default()).await;
    let user = UserId::new_guest();
    let on_a = [
        new_turn(&a, &user, "a one").await,
        new_turn(&a, &user, "a two").await,
    ];
    new_turn(&b, &user, "b one").await;
    new_turn(&b, &user, "b two").await;
    for (node, engine) in [("a", &a), ("b", &b)] {
        assert!(
            matches!(
                engine.start_turn(turn(&user, None, "a fifth")).await,
                Err(EngineError::TooManyGenerations { limit: 4 })
            ),
            "node {node} counts the other node's replies"
        );
    }

    // Node b cancels a reply node a generates: node a may start one.
    let cancelled = &on_a[0];
    b.append(
        cancelled.ack.conversation_id,
        Event::Cancelled {
            message_id: cancelled.ack.assistant_message_id,
        },
    )
    .await
    .unwrap();
    new_turn(&a, &user, "after the cancel").await;
    assert!(matches!(
        b.start_turn(turn(&user, None, "one too many")).await,
        Err(EngineError::TooManyGenerations { limit: 4 })
    ));

    // Node a lets a reply go; node b adopts and finishes it: b may start one.
    let adopted = &on_a[1];
    let (id, reply) = (
        adopted.ack.conversation_id,
        adopted.ack.assistant_message_id,
    );
    a.release_lease(id, reply, "node-a").await.unwrap();
    let claimed = b
        .claim_orphans("node-b", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(claimed.contains(&(id, reply)), "{claimed:?}");
    b.end_reply(id, done(reply), "node-b").await.unwrap();
    new_turn(&b, &user, "after the adoption").await;
    assert!(matches!(
        a.start_turn(turn(&user, None, "one too many")).await,
        Err(EngineError::TooManyGenerations { limit: 4 })
    ));
}

/// A reply whose removal from its user's count is lost (its conversation's
/// keys vanished behind the engine, so no ending can ever be appended)
/// stops counting when its user reaches the limit, once its reservation is
/// older than the grace; a reply that still streams keeps counting however
/// long it streams, and a reservation younger than the grace is never
/// judged (its turn may still be being recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_count_is_dropped_at_the_limit_but_a_streaming_reply_keeps_counting() {
    let server = RedisServer::start();
    let mut options = RedisOptions::new(100, Duration::from_secs(3600));
    options.limits = Limits {
        max_generations_per_user: 1,
        ..Limits::default()
    };
    let grace = Duration::from_millis(500);
    options.reservation_grace = grace;
    let engine = RedisEngine::connect_with(&server.url(), NODE, options)
        .await
        .unwrap();
    let (live_user, lost_user) = (UserId::new_guest(), UserId::new_guest());
    new_turn(&engine, &live_user, "still streaming").await;
    let lost = new_turn(&engine, &lost_user, "about to vanish").await;
    let reserved = tokio::time::Instant::now();
    let mut connection = inspect(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("cs:{{{}}}:*", lost.ack.conversation_id))
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    let refused = engine
        .start_turn(turn(&lost_user, None, "right away"))
        .await;
    if reserved.elapsed() < grace {
        assert!(
            matches!(refused, Err(EngineError::TooManyGenerations { limit: 1 })),
            "a reservation younger than the grace still counts: {refused:?}"
        );
        // The grace is what is under test: the reservation must grow older.
        tokio::time::sleep_until(reserved + grace).await;
    }
    engine
        .start_turn(turn(&lost_user, None, "once its reply is found gone"))
        .await
        .expect("the lost count was dropped");
    assert!(
        matches!(
            engine.start_turn(turn(&live_user, None, "a second")).await,
            Err(EngineError::TooManyGenerations { limit: 1 })
        ),
        "the streaming reply, older than the grace, still counts"
    );
}

/// What Redis runs for one send (a turn, three deltas, the ending), by
/// command: read from Redis's own statistics, which count the commands a
/// script calls.
async fn commands_of_a_send(
    engine: &RedisEngine,
    connection: &mut redis::aio::MultiplexedConnection,
    user: &UserId,
    conversation_id: Uuid,
) -> Vec<(String, u64)> {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(connection)
        .await
        .unwrap();
    let t = engine
        .start_turn(turn(user, Some(conversation_id), "and one more thing"))
        .await
        .unwrap();
    let mut offset = 0;
    for text in ["Sure", ", here", " it is."] {
        engine
            .append_text(
                conversation_id,
                t.ack.assistant_message_id,
                offset,
                text.into(),
                NODE,
            )
            .await
            .unwrap();
        offset += text.len();
    }
    engine
        .end_reply(conversation_id, done(t.ack.assistant_message_id), NODE)
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    let mut calls: Vec<(String, u64)> = info
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("config") && !name.starts_with("info"))
                .then(|| (name.to_owned(), calls))
        })
        .collect();
    calls.sort();
    calls
}

/// A send into a conversation of 202 messages makes Redis run exactly the
/// commands a send into one of 2 does: nothing loops over the messages (the
/// conversation's TTL is renewed on a fixed set of keys). That set stays
/// fixed however long the conversation grows, and every key in it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_costs_redis_the_same_however_long_the_conversation() {
    let server = RedisServer::start();
    let mut options = RedisOptions::new(1000, Duration::from_secs(3600));
    // No health check during the test: only the send's commands are counted.
    options.health_every = Duration::from_secs(3600);
    let engine = RedisEngine::connect_with(&server.url(), NODE, options)
        .await
        .unwrap();
    let mut connection = inspect(&server).await;
    let user = UserId::new_guest();
    let mut conversations = Vec::new();
    for turns in [1, 101] {
        let first = new_turn(&engine, &user, "the first question").await;
        let id = first.ack.conversation_id;
        engine
            .end_reply(id, done(first.ack.assistant_message_id), NODE)
            .await
            .unwrap();
        for i in 1..turns {
            let t = engine
                .start_turn(turn(&user, Some(id), &format!("question {i}")))
                .await
                .unwrap();
            engine
                .append_text(
                    id,
                    t.ack.assistant_message_id,
                    0,
                    format!("answer {i}"),
                    NODE,
                )
                .await
                .unwrap();
            engine
                .end_reply(id, done(t.ack.assistant_message_id), NODE)
                .await
                .unwrap();
        }
        assert_eq!(engine.snapshot(id).await.unwrap().messages.len(), turns * 2);
        conversations.push(id);
    }
    let short = commands_of_a_send(&engine, &mut connection, &user, conversations[0]).await;
    let long = commands_of_a_send(&engine, &mut connection, &user, conversations[1]).await;
    assert!(short.iter().any(|(name, _)| name == "evalsha"), "{short:?}");
    assert_eq!(short, long, "Redis's commands for one send, short and long");

    let fixed = ["log", "meta", "msgs", "order", "pos", "texts"];
    for id in &conversations {
        assert_eq!(conversation_keys(&mut connection, *id).await, fixed);
    }
    let long = conversations[1];
    let streaming = engine
        .start_turn(turn(&user, Some(long), "one more"))
        .await
        .unwrap();
    let reply = streaming.ack.assistant_message_id;
    let mut while_streaming = vec![format!("lease:{reply}"), format!("text:{reply}")];
    while_streaming.extend(fixed.map(String::from));
    while_streaming.sort();
    assert_eq!(
        conversation_keys(&mut connection, long).await,
        while_streaming
    );
    for key in conversation_keys(&mut connection, long).await {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("cs:{{{long}}}:{key}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} expires (PTTL {ttl})");
    }
}

/// Rewrites a conversation into the layout written before `texts`, `pos`
/// and `parent_id`: every message's text in a `text:<id>` key of its own,
/// and no message naming its parent.
async fn into_former_layout(
    connection: &mut redis::aio::MultiplexedConnection,
    conversation_id: Uuid,
) {
    let key = |part: &str| format!("cs:{{{conversation_id}}}:{part}");
    let texts: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key("texts"))
        .query_async(connection)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for (id, text) in &texts {
        pipe.set(key(&format!("text:{id}")), text).ignore();
    }
    // Messages did not name their parent then: each followed the one
    // before it.
    let stored: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key("msgs"))
        .query_async(connection)
        .await
        .unwrap();
    for (id, json) in stored {
        let mut message: serde_json::Value = serde_json::from_str(&json).unwrap();
        message.as_object_mut().unwrap().remove("parent_id");
        pipe.hset(key("msgs"), id, message.to_string()).ignore();
    }
    pipe.del(key("texts"))
        .ignore()
        .del(key("pos"))
        .ignore()
        .hdel(key("meta"), "layout")
        .ignore();
    let _: () = pipe.query_async(connection).await.unwrap();
}

/// A conversation written before this layout reads whole, with each
/// message's parent found from the order, is moved to the fixed set of keys
/// by its next write, and is deleted without a key left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_in_the_former_layout_is_read_and_migrated() {
    let server = RedisServer::start();
    let engine = redis_engine(&server, NODE, 100, Limits::default()).await;
    let mut connection = inspect(&server).await;
    let user = UserId::new_guest();
    let first = new_turn(&engine, &user, "written long ago").await;
    let id = first.ack.conversation_id;
    engine
        .append_text(
            id,
            first.ack.assistant_message_id,
            0,
            "An old answer".into(),
            NODE,
        )
        .await
        .unwrap();
    engine
        .end_reply(id, done(first.ack.assistant_message_id), NODE)
        .await
        .unwrap();
    let second = engine
        .start_turn(turn(&user, Some(id), "and still streaming"))
        .await
        .unwrap();
    let reply = second.ack.assistant_message_id;
    engine
        .append_text(id, reply, 0, "Half an".into(), NODE)
        .await
        .unwrap();
    let before = engine.snapshot(id).await.unwrap();
    into_former_layout(&mut connection, id).await;
    assert!(conversation_keys(&mut connection, id).await.len() > 6);

    let read = engine.snapshot(id).await.unwrap();
    assert_eq!(
        read.messages, before.messages,
        "read through the former keys"
    );
    for (position, message) in before.messages.iter().enumerate() {
        assert_eq!(
            engine.message_at(id, message.id).await.unwrap(),
            Some((position as u64, message.clone()))
        );
    }

    engine
        .append_text(id, reply, 7, " answer".into(), NODE)
        .await
        .unwrap();
    engine.end_reply(id, done(reply), NODE).await.unwrap();
    assert_eq!(
        conversation_keys(&mut connection, id).await,
        ["log", "meta", "msgs", "order", "pos", "texts"],
        "migrated by the ending"
    );
    let after = engine.snapshot(id).await.unwrap();
    assert_eq!(after.messages[..3], before.messages[..3]);
    assert_eq!(after.messages[3].content, "Half an answer");
    assert_eq!(after.messages[3].status, MessageStatus::Complete);
    for (position, message) in after.messages.iter().enumerate() {
        assert_eq!(
            engine.message_at(id, message.id).await.unwrap(),
            Some((position as u64, message.clone()))
        );
    }

    into_former_layout(&mut connection, id).await;
    engine.delete_conversation(id).await.unwrap();
    assert!(conversation_keys(&mut connection, id).await.is_empty());
}

/// Folds the whole log and checks it gives the snapshot: the tree too.
async fn assert_log_folds_to_snapshot(
    engine: &dyn Engine,
    id: Uuid,
) -> Vec<chatstream::protocol::Message> {
    let history = engine.read(id, 0).await.unwrap();
    let mut folded = Transcript::default();
    for entry in history.entries.unwrap() {
        folded.apply(&entry.event).unwrap();
    }
    let snapshot = engine.snapshot(id).await.unwrap();
    assert_eq!(folded.messages(), snapshot.messages.as_slice());
    snapshot.messages
}

async fn versions_branch_the_tree_and_the_newest_is_active(make: impl MakeSubject) {
    let subject = make.make(1000).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "What is a tree?").await;
    let id = first.ack.conversation_id;
    let question = first.ack.user_message_id;
    finish(engine, &first).await;

    // A second version of the reply: a reply alone, beside the first.
    let again = engine
        .start_turn(reply_to(&user, id, question, ""))
        .await
        .unwrap();
    assert!(again.started);
    assert_eq!(
        again.ack.user_message_id, question,
        "the question it answers"
    );
    assert_eq!(again.user_seq, 4, "followed from the new reply's own event");
    finish(engine, &again).await;

    // A follow-up after the second version, then an edit of the first
    // question: a second first message and its reply.
    let follow_up = engine
        .start_turn(turn(&user, Some(id), "And a forest?"))
        .await
        .unwrap();
    finish(engine, &follow_up).await;
    let edited = engine
        .start_turn(TurnRequest {
            branch: Branch::After(None),
            ..turn(&user, Some(id), "What is a graph?")
        })
        .await
        .unwrap();
    finish(engine, &edited).await;

    let messages = assert_log_folds_to_snapshot(engine, id).await;
    let parents: Vec<(Uuid, Option<Uuid>)> = messages.iter().map(|m| (m.id, m.parent_id)).collect();
    assert_eq!(
        parents,
        [
            (question, None),
            (first.ack.assistant_message_id, Some(question)),
            (again.ack.assistant_message_id, Some(question)),
            (
                follow_up.ack.user_message_id,
                Some(again.ack.assistant_message_id)
            ),
            (
                follow_up.ack.assistant_message_id,
                Some(follow_up.ack.user_message_id)
            ),
            (edited.ack.user_message_id, None),
            (
                edited.ack.assistant_message_id,
                Some(edited.ack.user_message_id)
            ),
        ],
        "every message names the one it follows, in log order"
    );
    let (path, branches) = chatstream::branches::split_active(messages);
    assert_eq!(
        path.iter().map(|m| m.id).collect::<Vec<_>>(),
        [edited.ack.user_message_id, edited.ack.assistant_message_id]
    );
    assert_eq!(branches.len(), 5);
    // Positions count every message, branches too.
    assert_eq!(
        engine
            .message_at(id, edited.ack.assistant_message_id)
            .await
            .unwrap()
            .map(|(position, _)| position),
        Some(6)
    );
}

async fn a_continued_reply_starts_with_the_old_text(make: impl MakeSubject) {
    let subject = make.make(1000).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "Tell me a long story").await;
    let id = first.ack.conversation_id;
    engine
        .append_text(
            id,
            first.ack.assistant_message_id,
            0,
            "Once upon".into(),
            NODE,
        )
        .await
        .unwrap();
    engine
        .append(
            id,
            Event::Cancelled {
                message_id: first.ack.assistant_message_id,
            },
        )
        .await
        .unwrap();
    let head = engine.read(id, u64::MAX).await.unwrap().head;

    let continued = engine
        .start_turn(reply_to(&user, id, first.ack.user_message_id, "Once upon"))
        .await
        .unwrap();
    let reply = continued.ack.assistant_message_id;
    // Its message (empty, as every new reply), then its first delta.
    let entries = engine.read(id, head).await.unwrap().entries.unwrap();
    assert_eq!(entries.len(), 2);
    match &entries[0].event {
        Event::Message { message } => {
            assert_eq!((message.id, message.content.as_str()), (reply, ""));
            assert_eq!(message.parent_id, Some(first.ack.user_message_id));
        }
        other => panic!("a message event first, not {other:?}"),
    }
    assert_eq!(entries[1].event, delta(reply, "Once upon"));
    // The writer goes on from the end of that text.
    engine
        .append_text(id, reply, "Once upon".len(), " a time".into(), NODE)
        .await
        .unwrap();
    let messages = assert_log_folds_to_snapshot(engine, id).await;
    let new = messages.iter().find(|m| m.id == reply).unwrap();
    assert_eq!(
        (new.content.as_str(), new.status),
        ("Once upon a time", MessageStatus::Streaming)
    );
    let old = messages
        .iter()
        .find(|m| m.id == first.ack.assistant_message_id)
        .unwrap();
    assert_eq!(
        (old.content.as_str(), old.status),
        ("Once upon", MessageStatus::Cancelled),
        "the stopped version is kept as it was"
    );
}

async fn versions_are_idempotent_by_client_msg_id(make: impl MakeSubject) {
    let subject = make.make(1000).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "Once").await;
    let id = first.ack.conversation_id;
    finish(engine, &first).await;
    let client_msg_id = Some(Uuid::new_v4());
    let regenerate = TurnRequest {
        client_msg_id,
        ..reply_to(&user, id, first.ack.user_message_id, "")
    };
    let version = engine.start_turn(regenerate.clone()).await.unwrap();
    let seq = engine.snapshot(id).await.unwrap().seq;
    let resent = engine.start_turn(regenerate).await.unwrap();
    assert!(!resent.started);
    assert_eq!(
        (resent.ack, resent.user_seq),
        (version.ack, version.user_seq)
    );
    assert_eq!(
        engine.snapshot(id).await.unwrap().seq,
        seq,
        "nothing appended"
    );
    finish(engine, &version).await;
    // The same id for another kind of request is a conflict.
    let reused = engine
        .start_turn(TurnRequest {
            client_msg_id,
            branch: Branch::After(None),
            ..turn(&user, Some(id), "Once")
        })
        .await;
    assert!(
        matches!(reused, Err(EngineError::Conflict(_))),
        "{reused:?}"
    );
    // An edit resent is the same edit.
    let edit_id = Some(Uuid::new_v4());
    let edit = TurnRequest {
        client_msg_id: edit_id,
        branch: Branch::After(None),
        ..turn(&user, Some(id), "Twice")
    };
    let edited = engine.start_turn(edit.clone()).await.unwrap();
    let edited_again = engine.start_turn(edit).await.unwrap();
    assert_eq!(edited_again.ack, edited.ack);
    assert!(!edited_again.started);
}

async fn a_turn_after_a_message_not_in_the_conversation_is_refused(make: impl MakeSubject) {
    let subject = make.make(1000).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let first = new_turn(engine, &user, "Here").await;
    let id = first.ack.conversation_id;
    finish(engine, &first).await;
    let elsewhere = new_turn(engine, &user, "There").await;
    finish(engine, &elsewhere).await;
    let seq = engine.snapshot(id).await.unwrap().seq;
    for branch in [
        Branch::After(Some(Uuid::new_v4())),
        Branch::After(Some(elsewhere.ack.assistant_message_id)),
        Branch::Reply {
            to: elsewhere.ack.user_message_id,
            prefix: String::new(),
        },
    ] {
        let refused = engine
            .start_turn(TurnRequest {
                branch: branch.clone(),
                ..turn(&user, Some(id), "Lost")
            })
            .await;
        assert!(
            matches!(refused, Err(EngineError::Conflict(_))),
            "{branch:?}: {refused:?}"
        );
    }
    assert_eq!(
        engine.snapshot(id).await.unwrap().seq,
        seq,
        "nothing appended"
    );
    // A new reply while one streams is refused like a send.
    let streaming = engine
        .start_turn(turn(&user, Some(id), "Still here"))
        .await
        .unwrap();
    let refused = engine
        .start_turn(reply_to(&user, id, first.ack.user_message_id, ""))
        .await;
    assert!(
        matches!(refused, Err(EngineError::Conflict(_))),
        "{refused:?}"
    );
    finish(engine, &streaming).await;
}

async fn a_rename_sets_the_title_and_the_time(make: impl MakeSubject) {
    let subject = make.make(100).await;
    let engine = subject.engine.as_ref();
    let user = UserId::new_guest();
    let older = new_turn(engine, &user, "first conversation").await;
    let newer = new_turn(engine, &user, "second conversation").await;
    let before = engine
        .conversation(older.ack.conversation_id)
        .await
        .unwrap()
        .unwrap();
    let renamed = engine
        .rename_conversation(older.ack.conversation_id, "Cây và rừng".into())
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Cây và rừng"));
    assert!(renamed.updated_at > before.updated_at);
    assert_eq!(
        engine
            .conversation(older.ack.conversation_id)
            .await
            .unwrap(),
        Some(renamed)
    );
    let listed: Vec<Uuid> = engine
        .list_conversations(&user)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        listed,
        [older.ack.conversation_id, newer.ack.conversation_id],
        "the renamed one is the most recently updated"
    );
    assert!(matches!(
        engine.rename_conversation(Uuid::new_v4(), "x".into()).await,
        Err(EngineError::NotFound)
    ));
}
