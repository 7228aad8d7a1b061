//! Several in-process nodes on one throwaway redis-server, keeping history in
//! one PostgreSQL database (contract 1.1, "Durable history", in a cluster):
//! history outlives Redis (flushed, restarted empty, expired), streaming goes
//! on through a database outage that loses nothing, and every node lists a
//! user's conversations alike.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatstream::config::Settings;
use chatstream::protocol::{Message, MessageStatus, Role, UserId};
use chatstream::store::Store;
use common::postgres::{drop_database, fresh_database_url};
use common::redis_server::RedisServer;
use common::tcp_proxy::{TcpProxy, url_host_port, url_with_host_port};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

/// After Redis lost its data, a conversation no node holds answers
/// `unavailable` until the Redis engine's rebuild window (15 s) has passed,
/// leaving the nodes that hold conversations time to rebuild them from their
/// newer copies; then the store restores it. A margin on top.
const AFTER_LOSS: Duration = Duration::from_secs(40);
/// Pause between two attempts of a request answered `unavailable`.
const RETRY: Duration = Duration::from_millis(100);
/// The longest any test of this file may run.
const TEST_DEADLINE: Duration = Duration::from_secs(150);

/// Runs a test body under [`TEST_DEADLINE`].
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("the test finishes within its deadline");
}

struct Cluster {
    redis: RedisServer,
    nodes: Vec<TestNode>,
    /// The nodes' database, reached directly (the nodes may reach it through
    /// a proxy).
    database_url: String,
}

impl Cluster {
    /// `size` nodes on a new redis-server and a new PostgreSQL database.
    async fn start(size: usize, configure: impl Fn(&mut Settings)) -> Cluster {
        let database_url = fresh_database_url().await;
        let nodes_url = database_url.clone();
        Cluster::start_on(size, database_url, &nodes_url, configure).await
    }

    /// `size` nodes on a new redis-server, keeping history in the database
    /// `database_url`, which they reach at `nodes_url`.
    async fn start_on(
        size: usize,
        database_url: String,
        nodes_url: &str,
        configure: impl Fn(&mut Settings),
    ) -> Cluster {
        let redis = RedisServer::start();
        let mut nodes = Vec::new();
        for i in 0..size {
            nodes.push(
                TestNode::start(|s| {
                    s.redis_url = Some(redis.url());
                    s.database_url = Some(nodes_url.to_owned());
                    s.node_id = Some(format!("node-{i}"));
                    // Clients here send no pings, and some listen for long.
                    s.heartbeat_ms = 120_000;
                    s.frames_per_second = 1_000;
                    configure(s);
                })
                .await,
            );
        }
        Cluster {
            redis,
            nodes,
            database_url,
        }
    }

    /// The nodes' store, opened directly.
    async fn store(&self) -> Arc<dyn Store> {
        chatstream::store::connect(&self.database_url)
            .await
            .expect("the test database answers")
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
        drop_database(&self.database_url).await;
    }
}

/// Empties the redis-server: every key, the engine's sentinel included.
async fn flushall(redis: &RedisServer) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
}

/// `MODELS_CONFIG` naming a model `unreachable` whose only upstream is a
/// closed port: its replies end `failed`.
fn unreachable_model_config() -> std::path::PathBuf {
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("models.toml");
    std::fs::write(
        &path,
        format!(
            "[[models]]\nid = \"unreachable\"\n\n[[models.upstreams]]\n\
             base_url = \"http://127.0.0.1:{closed_port}/v1\"\n"
        ),
    )
    .unwrap();
    path
}

// ---------------------------------------------------------------------------
// Requests that may meet a conversation being rebuilt: `unavailable` (503)
// is retried, `not_found` (or anything else) fails the test at once.

/// GET /api/conversations/{id} through `node`: (status, body).
async fn detail(node: &TestNode, token: &str, id: &str) -> (u16, Value) {
    node.api(
        Method::GET,
        &format!("/api/conversations/{id}"),
        Some(token),
        None,
    )
    .await
}

/// The conversation as `node` answers it once it is available.
async fn detail_when_available(node: &TestNode, token: &str, id: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = detail(node, token, id).await;
        match status {
            200 => return body,
            503 => assert!(
                Instant::now() < deadline,
                "{id} still unavailable on {} after {within:?}: {body}",
                node.node.node_id()
            ),
            _ => panic!(
                "GET {id} on {} answered {status} (only 200 or 503 may answer \
                 an existing conversation): {body}",
                node.node.node_id()
            ),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Subscribes once the conversation is available: its `subscribed` (not
/// recovered) and the snapshot that follows.
async fn subscribe_when_available(
    client: &mut Client,
    conversation: &str,
    within: Duration,
) -> (Value, Value) {
    let deadline = Instant::now() + within;
    loop {
        let reply = client
            .request(json!({"type": "subscribe", "conversation_id": conversation}))
            .await;
        if reply["type"] == "subscribed" {
            assert_eq!(reply["recovered"], false, "{reply}");
            let frames = client
                .until(|f| f["type"] == "snapshot" || f["type"] == "error")
                .await;
            let snapshot = frames.last().unwrap().clone();
            assert_eq!(snapshot["type"], "snapshot", "{frames:?}");
            return (reply, snapshot);
        }
        assert_eq!(
            reply["code"], "unavailable",
            "subscribe may only be refused as unavailable: {reply}"
        );
        assert!(
            Instant::now() < deadline,
            "{conversation} still unavailable after {within:?}: {reply}"
        );
        tokio::time::sleep(RETRY).await;
    }
}

/// Sends `frame` (with a `client_msg_id`, so that a resend creates nothing
/// new) until it is acknowledged.
async fn send_when_available(client: &mut Client, frame: Value, within: Duration) -> Value {
    assert!(frame["client_msg_id"].is_string());
    let deadline = Instant::now() + within;
    loop {
        let reply = client.request(frame.clone()).await;
        if reply["type"] == "ack" {
            return reply;
        }
        assert_eq!(
            reply["code"], "unavailable",
            "send may only be refused as unavailable: {reply}"
        );
        assert!(
            Instant::now() < deadline,
            "send still unavailable after {within:?}: {reply}"
        );
        tokio::time::sleep(RETRY).await;
    }
}

// ---------------------------------------------------------------------------
// Reading what clients and nodes see.

fn messages_of(body: &Value) -> Vec<Message> {
    serde_json::from_value(body["messages"].clone()).expect("messages match the contract")
}

fn is_error(frame: &Value) -> bool {
    frame["type"] == "error"
}

/// Frames until `stop`, failing on any `error` frame.
async fn frames_until(client: &mut Client, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let frames = client.until(|f| is_error(f) || stop(f)).await;
    assert!(!is_error(frames.last().unwrap()), "{:?}", frames.last());
    frames
}

/// The keys of `node`'s live actors of `kind`.
async fn actor_keys(node: &TestNode, kind: &str) -> Vec<String> {
    let (status, body) = node
        .api(Method::GET, "/admin/actors", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `node` follows the conversation or generates one of its replies.
async fn holds(node: &TestNode, conversation: &str, replies: &[&str]) -> bool {
    actor_keys(node, "conversation")
        .await
        .iter()
        .any(|k| k == conversation)
        || actor_keys(node, "generation")
            .await
            .iter()
            .any(|k| replies.contains(&k.as_str()))
}

/// Waits until none of `nodes` holds the conversation.
async fn wait_until_not_held(nodes: &[&TestNode], conversation: &str, replies: &[&str]) {
    eventually(&format!("no node holds {conversation}"), || async {
        for node in nodes {
            if holds(node, conversation, replies).await {
                return false;
            }
        }
        true
    })
    .await;
}

/// Waits until the store holds exactly `expected` for each conversation.
async fn wait_until_stored(store: &dyn Store, expected: &[(String, Vec<Message>)]) {
    for (id, messages) in expected {
        let id: Uuid = id.parse().unwrap();
        let mut last = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(stored) = store.messages(id).await {
                last = stored.into_iter().map(|m| m.message).collect();
                if &last == messages {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the store never held conversation {id} as the nodes do:\n\
                 stored:   {last:?}\nexpected: {messages:?}"
            );
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// Every page of the user's listing through `node`, `limit` at a time.
async fn listing_pages(node: &TestNode, token: &str, limit: usize) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut path = format!("/api/conversations?limit={limit}");
    loop {
        let (status, page) = node.api(Method::GET, &path, Some(token), None).await;
        assert_eq!(status, 200, "{page}");
        let next = page["next"].as_str().map(str::to_owned);
        pages.push(page);
        match next {
            Some(cursor) => path = format!("/api/conversations?limit={limit}&before={cursor}"),
            None => return pages,
        }
        assert!(pages.len() <= 100, "the listing never ends");
    }
}

fn listed_ids(pages: &[Value]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|p| p["conversations"].as_array().unwrap().iter())
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// One client following one conversation, with its strict view.
struct Follower {
    client: Client,
    view: View,
}

impl Follower {
    fn new(client: Client) -> Follower {
        Follower {
            client,
            view: View::default(),
        }
    }

    /// Applies frames until `stop`; answers them.
    async fn read_until(
        &mut self,
        conversation: &str,
        stop: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        let frames = frames_until(&mut self.client, stop).await;
        self.view.apply_all(conversation, &frames);
        frames
    }

    fn reply(&self, reply_id: &str) -> Option<&Message> {
        self.view
            .messages()
            .iter()
            .find(|m| m.id.to_string() == reply_id)
    }
}

/// A reply streaming to its sender and to a watcher on another node.
struct Stream {
    question: String,
    conversation: String,
    reply_id: String,
    followers: Vec<Follower>,
}

impl Stream {
    /// Sends `question` from `sender_node` and subscribes a watcher on
    /// `watcher_node`.
    async fn start(
        sender_node: &TestNode,
        watcher_node: &TestNode,
        token: &str,
        question: &str,
    ) -> Stream {
        let mut sender = sender_node.connect(token).await;
        let Sent {
            conversation,
            reply_id,
            ..
        } = sender.send_turn(question).await;
        let mut watcher = watcher_node.connect(token).await;
        let subscribed = watcher
            .request(json!({"type": "subscribe", "conversation_id": conversation}))
            .await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        Stream {
            question: question.to_owned(),
            conversation,
            reply_id,
            followers: vec![Follower::new(sender), Follower::new(watcher)],
        }
    }

    /// Reads until every follower has received some of the reply's text.
    async fn until_some_text(&mut self) {
        for follower in &mut self.followers {
            let reply_id = self.reply_id.clone();
            while follower
                .reply(&reply_id)
                .is_none_or(|m| m.content.is_empty())
            {
                follower
                    .read_until(&self.conversation, |f| f["type"] == "event")
                    .await;
            }
        }
    }

    /// Reads until every follower has seen the reply end; answers the ending
    /// events (or snapshots) each saw.
    async fn until_over(&mut self) -> Vec<Value> {
        let mut endings = Vec::new();
        for follower in &mut self.followers {
            let frames = follower
                .read_until(&self.conversation, |f| reply_over(f, &self.reply_id))
                .await;
            endings.push(frames.last().unwrap().clone());
        }
        endings
    }
}

// ---------------------------------------------------------------------------
// 1. History outlives Redis losing its data.

#[derive(Debug, Clone, Copy)]
enum Loss {
    Flushall,
    RestartEmpty,
}

const LOSS_TOKENS: usize = 120;
const FOLLOW_UP: &str = "and after Redis forgot everything?";

/// A conversation whose reply ended `done` before the loss, followed on two
/// nodes, then left by both.
async fn ended_done(sender_node: &TestNode, watcher_node: &TestNode, token: &str) -> String {
    let mut stream = Stream::start(sender_node, watcher_node, token, "answered before").await;
    for ending in stream.until_over().await {
        assert_eq!(ending["event"]["kind"], "done", "{ending}");
    }
    for follower in stream.followers {
        follower.client.close().await;
    }
    stream.conversation
}

/// A conversation whose reply was cancelled from a third node.
async fn ended_cancelled(sender_node: &TestNode, canceller_node: &TestNode, token: &str) -> String {
    let mut sender = sender_node.connect(token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("cancelled before").await;
    frames_until(&mut sender, |f| f["seq"] == 5).await;
    let mut canceller = canceller_node.connect(token).await;
    let ack = canceller
        .request(json!({"type": "cancel", "message_id": reply_id}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let frames = frames_until(&mut sender, |f| ends(f, &reply_id)).await;
    assert_eq!(frames.last().unwrap()["event"]["kind"], "cancelled");
    sender.close().await;
    canceller.close().await;
    conversation
}

/// A conversation whose reply failed (its model's upstream is unreachable).
async fn ended_failed(node: &TestNode, token: &str) -> String {
    let mut sender = node.connect(token).await;
    let ack = sender
        .request(json!({"type": "send", "content": "failed before", "model": "unreachable"}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let reply_id = ack["assistant_message_id"].as_str().unwrap().to_owned();
    let frames = frames_until(&mut sender, |f| ends(f, &reply_id)).await;
    assert_eq!(frames.last().unwrap()["event"]["kind"], "failed");
    sender.close().await;
    ack["conversation_id"].as_str().unwrap().to_owned()
}

/// A conversation whose reply ended, still followed by a watcher on
/// `watcher_node`: that node holds it through the loss.
async fn ended_held(
    sender_node: &TestNode,
    watcher_node: &TestNode,
    token: &str,
) -> (String, Follower) {
    let mut stream = Stream::start(sender_node, watcher_node, token, "followed through").await;
    stream.until_over().await;
    let mut followers = stream.followers.into_iter();
    followers.next().unwrap().client.close().await;
    (stream.conversation, followers.next().unwrap())
}

/// Checks the frames a follower got after the loss: told to start over in a
/// new epoch (`subscribed` without id, then a snapshot) before any event of
/// it. Answers the snapshot.
fn start_over_of(frames: &[Value], old_epoch: &str) -> Value {
    let resync = frames
        .iter()
        .position(|f| f["type"] == "subscribed" && f.get("id").is_none())
        .unwrap_or_else(|| panic!("a subscribed frame announces the rebuilt log: {frames:?}"));
    assert_eq!(frames[resync]["recovered"], false);
    assert_ne!(frames[resync]["epoch"], old_epoch);
    assert_eq!(frames[resync + 1]["type"], "snapshot");
    assert_eq!(frames[resync + 1]["epoch"], frames[resync]["epoch"]);
    assert!(
        frames[..resync]
            .iter()
            .all(|f| f["type"] != "event" || f["epoch"] == old_epoch),
        "no event of the new epoch before its snapshot"
    );
    frames[resync + 1].clone()
}

async fn history_outlives_redis_losing_its_data(loss: Loss) {
    let models = unreachable_model_config();
    let mut cluster = Cluster::start(3, |s| {
        s.demo_token_delay_ms = 15;
        s.demo_reply_tokens = LOSS_TOKENS;
        s.models_config = Some(models.clone());
    })
    .await;
    let store = cluster.store().await;
    let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
    let [a, b, c] = nodes[..] else { unreachable!() };
    let (token, _) = a.guest().await;

    // Conversations that ended before the loss: three that no node holds
    // any more, one that a watcher on b still follows.
    let (done, cancelled, failed, (held, mut held_watcher)) = tokio::join!(
        ended_done(a, b, &token),
        ended_cancelled(b, c, &token),
        ended_failed(c, &token),
        ended_held(a, b, &token),
    );
    for id in [&done, &cancelled, &failed] {
        wait_until_not_held(&nodes, id, &[]).await;
    }
    wait_until_not_held(&[a, c], &held, &[]).await;
    let mut before = HashMap::new();
    for id in [&done, &cancelled, &failed, &held] {
        before.insert(
            id.clone(),
            detail_when_available(a, &token, id, DEADLINE).await,
        );
    }
    let ended: Vec<(String, Vec<Message>)> = before
        .iter()
        .map(|(id, body)| (id.clone(), messages_of(body)))
        .collect();
    wait_until_stored(store.as_ref(), &ended).await;

    // Replies streaming when Redis loses its data, each followed on another
    // node than the one generating it.
    let mut streams = Vec::new();
    for i in 0..3 {
        let question = format!("streaming through the loss {i}");
        streams.push(Stream::start(nodes[i], nodes[(i + 2) % 3], &token, &question).await);
    }
    for stream in &mut streams {
        stream.until_some_text().await;
    }
    let old_epochs: Vec<String> = streams
        .iter()
        .map(|s| s.followers[0].view.epoch.clone().unwrap())
        .collect();

    match loss {
        Loss::Flushall => {
            flushall(&cluster.redis).await;
        }
        Loss::RestartEmpty => tokio::task::block_in_place(|| cluster.redis.restart_empty()),
    }
    let lost_at = Instant::now();

    // While the nodes rebuild, an existing conversation is never `not_found`,
    // and the listing, read from the store, lists them all.
    let all: Vec<String> = [&done, &cancelled, &failed, &held]
        .into_iter()
        .cloned()
        .chain(streams.iter().map(|s| s.conversation.clone()))
        .collect();
    for node in &nodes {
        for id in &all {
            let (status, body) = detail(node, &token, id).await;
            assert!(
                status == 200 || status == 503,
                "GET {id} answered {status} while rebuilding: {body}"
            );
        }
        let mut listed = listed_ids(&listing_pages(node, &token, 50).await);
        listed.sort();
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(listed, expected);
    }

    // Streaming replies: every follower starts over in the new epoch and
    // the reply ends as an undisturbed one would, the text it had kept.
    for (stream, old_epoch) in streams.iter_mut().zip(&old_epochs) {
        for follower in &mut stream.followers {
            let delivered = follower.reply(&stream.reply_id).unwrap().content.clone();
            let reply_id = stream.reply_id.clone();
            let frames = frames_until(&mut follower.client, |f| {
                reply_over(f, &reply_id) && f["epoch"] != old_epoch.as_str()
            })
            .await;
            let snapshot = start_over_of(&frames, old_epoch);
            let rebuilt: Vec<Message> =
                serde_json::from_value(snapshot["messages"].clone()).unwrap();
            let rebuilt_reply = rebuilt
                .iter()
                .find(|m| m.id.to_string() == reply_id)
                .unwrap();
            if !rebuilt_reply.content.starts_with(&delivered) {
                println!(
                    "{reply_id}: the rebuilt snapshot holds {} bytes of the {} this \
                     follower had received (the rest is appended again)",
                    rebuilt_reply.content.len(),
                    delivered.len()
                );
            }
            follower.view.apply_all(&stream.conversation, &frames);
            let reply = follower.reply(&reply_id).unwrap();
            assert_eq!(reply.status, MessageStatus::Complete);
            assert_eq!(reply.content, demo_reply(LOSS_TOKENS, &stream.question));
            assert!(reply.content.starts_with(&delivered));
        }
    }

    // The held conversation: rebuilt by b from its copy, unchanged.
    let held_epoch = before[&held]["epoch"].as_str().unwrap().to_owned();
    let frames = frames_until(&mut held_watcher.client, |f| {
        f["type"] == "snapshot" && f["epoch"] != held_epoch.as_str()
    })
    .await;
    let snapshot = start_over_of(&frames, &held_epoch);
    assert_eq!(messages_of(&snapshot), messages_of(&before[&held]));

    // Conversations no node held are restored from the store on their next
    // use, whichever it is: a send, a subscribe, a GET.
    let done_reply = demo_reply(LOSS_TOKENS, "answered before");
    let (sent, (subscribed, snapshot), got) = tokio::join!(
        async {
            let mut client = c.connect(&token).await;
            let ack = send_when_available(
                &mut client,
                json!({"type": "send", "conversation_id": done, "content": FOLLOW_UP,
                       "client_msg_id": Uuid::new_v4()}),
                AFTER_LOSS,
            )
            .await;
            let restored_after = lost_at.elapsed();
            let reply_id = ack["assistant_message_id"].as_str().unwrap().to_owned();
            let frames = frames_until(&mut client, |f| ends(f, &reply_id)).await;
            (frames, reply_id, restored_after)
        },
        async {
            let mut client = a.connect(&token).await;
            subscribe_when_available(&mut client, &cancelled, AFTER_LOSS).await
        },
        async {
            let body = detail_when_available(b, &token, &failed, AFTER_LOSS).await;
            (body, lost_at.elapsed())
        },
    );
    let (frames, follow_up_reply, restored_after) = sent;
    println!(
        "after the loss, the idle conversations answered again after {restored_after:?} \
         (send) and {:?} (GET)",
        got.1
    );
    assert_eq!(
        delta_text(&frames, &follow_up_reply),
        demo_conversation_reply(
            LOSS_TOKENS,
            &[
                (Role::User, "answered before"),
                (Role::Assistant, &done_reply),
                (Role::User, FOLLOW_UP),
            ]
        )
    );
    assert_eq!(frames.last().unwrap()["event"]["kind"], "done");
    assert_ne!(frames[0]["epoch"], before[&done]["epoch"]);
    assert_ne!(subscribed["epoch"], before[&cancelled]["epoch"]);
    assert_eq!(messages_of(&snapshot), messages_of(&before[&cancelled]));
    assert_ne!(got.0["epoch"], before[&failed]["epoch"]);
    assert_eq!(messages_of(&got.0), messages_of(&before[&failed]));

    // Every node now answers every conversation alike: the ended messages
    // unchanged, the streamed replies whole, all in one new epoch.
    let mut after = HashMap::new();
    for id in &all {
        let first = detail_when_available(a, &token, id, AFTER_LOSS).await;
        for node in [b, c] {
            let body = detail_when_available(node, &token, id, AFTER_LOSS).await;
            assert_eq!(body, first, "{id} reads the same on every node");
        }
        if let Some(old) = before.get(id) {
            assert_ne!(first["epoch"], old["epoch"], "{id} lives in a new epoch");
            assert_eq!(first["title"], old["title"], "{id} keeps its title");
        }
        after.insert(id.clone(), first);
    }
    for id in [&cancelled, &failed, &held] {
        assert_eq!(messages_of(&after[id]), messages_of(&before[id]), "{id}");
    }
    let continued = messages_of(&after[&done]);
    assert_eq!(continued[..2], messages_of(&before[&done])[..]);
    assert_eq!(
        (continued[2].role, continued[2].content.as_str()),
        (Role::User, FOLLOW_UP)
    );
    assert_eq!(continued[3].id.to_string(), follow_up_reply);
    assert_eq!(continued[3].status, MessageStatus::Complete);
    for (stream, old_epoch) in streams.iter().zip(&old_epochs) {
        let messages = messages_of(&after[&stream.conversation]);
        assert_ne!(after[&stream.conversation]["epoch"], old_epoch.as_str());
        assert_eq!(messages.len(), 2);
        assert_eq!(
            (messages[0].role, messages[0].content.as_str()),
            (Role::User, stream.question.as_str())
        );
        assert_eq!(messages[1].id.to_string(), stream.reply_id);
        assert_eq!(messages[1].status, MessageStatus::Complete);
        assert_eq!(messages[1].model.as_deref(), Some("demo"));
        assert_eq!(
            messages[1].content,
            demo_reply(LOSS_TOKENS, &stream.question)
        );
        // Every follower's view folds to what the nodes hold.
        for follower in &stream.followers {
            assert_eq!(follower.view.messages(), &messages[..]);
        }
    }

    // The store holds all of it, and every node lists all of it alike.
    let expected: Vec<(String, Vec<Message>)> = after
        .iter()
        .map(|(id, body)| (id.clone(), messages_of(body)))
        .collect();
    wait_until_stored(store.as_ref(), &expected).await;
    let listing = listed_ids(&listing_pages(a, &token, 50).await);
    for node in [b, c] {
        assert_eq!(listed_ids(&listing_pages(node, &token, 50).await), listing);
    }
    held_watcher.client.close().await;
    for stream in streams {
        for follower in stream.followers {
            follower.client.close().await;
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_outlives_a_redis_flushall_while_replies_stream() {
    bounded(history_outlives_redis_losing_its_data(Loss::Flushall)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_outlives_redis_restarted_empty_while_replies_stream() {
    bounded(history_outlives_redis_losing_its_data(Loss::RestartEmpty)).await;
}

// ---------------------------------------------------------------------------
// 2. A database outage while replies stream.

const OUTAGE_TOKENS: usize = 100;
/// How long the database stays unreachable, at least.
const OUTAGE: Duration = Duration::from_millis(3_500);

/// Samples `/readyz` of every node until stopped: (status, body) each time.
struct ReadinessSampler {
    samples: Arc<Mutex<Vec<(u16, Value)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessSampler {
    fn start(urls: Vec<String>) -> ReadinessSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let recorded = samples.clone();
        let task = tokio::spawn(async move {
            let http = common::http_client();
            loop {
                for url in &urls {
                    let response = http.get(url).send().await.unwrap();
                    let status = response.status().as_u16();
                    let body = response.json().await.unwrap_or(Value::Null);
                    recorded.lock().unwrap().push((status, body));
                }
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
        ReadinessSampler {
            samples,
            stop,
            task,
        }
    }

    fn saw(&self, condition: impl Fn(&(u16, Value)) -> bool) -> bool {
        self.samples.lock().unwrap().iter().any(condition)
    }

    async fn finish(self) -> Vec<(u16, Value)> {
        self.stop.send_replace(true);
        self.task.await.unwrap();
        Arc::try_unwrap(self.samples).unwrap().into_inner().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_never_stops_streaming_and_loses_nothing() {
    bounded(async {
        let database_url = fresh_database_url().await;
        let proxy = TcpProxy::start(&url_host_port(&database_url, 5432)).await;
        let nodes_url = url_with_host_port(&database_url, proxy.addr());
        let cluster = Cluster::start_on(3, database_url, &nodes_url, |s| {
            s.demo_token_delay_ms = 20;
            s.demo_reply_tokens = OUTAGE_TOKENS;
        })
        .await;
        let store = cluster.store().await;
        let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
        // Two users, so that neither has more than three replies streaming.
        let (early_token, _) = nodes[0].guest().await;
        let (late_token, _) = nodes[1].guest().await;

        // Replies under way when the database goes down; they end during
        // the outage.
        let mut early = Vec::new();
        for i in 0..3 {
            let question = format!("through the outage {i}");
            early.push(Stream::start(nodes[i], nodes[(i + 1) % 3], &early_token, &question).await);
        }
        for stream in &mut early {
            stream.until_some_text().await;
        }
        let readiness = ReadinessSampler::start(nodes.iter().map(|n| n.url("/readyz")).collect());
        proxy.down();
        let down_at = Instant::now();

        // Turns started during the outage are acknowledged all the same.
        let mut late = Vec::new();
        for i in 0..3 {
            let question = format!("sent during the outage {i}");
            let asked = Instant::now();
            late.push(Stream::start(nodes[i], nodes[(i + 2) % 3], &late_token, &question).await);
            println!(
                "a turn started during the outage was acknowledged after {:?}",
                asked.elapsed()
            );
        }
        // One of them is cancelled from another node, during the outage.
        late[1].until_some_text().await;
        let mut canceller = nodes[0].connect(&late_token).await;
        let ack = canceller
            .request(json!({"type": "cancel", "message_id": late[1].reply_id}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        // The early replies end during the outage, and a new turn follows
        // one of them. Their `done` events carry details only the store
        // keeps besides.
        let mut endings = HashMap::new();
        for stream in &mut early {
            let seen = stream.until_over().await;
            for ending in &seen {
                assert_eq!(ending["event"]["kind"], "done", "{ending}");
            }
            endings.insert(stream.reply_id.clone(), seen[0]["event"].clone());
        }
        let follow_up = "and one more, still during the outage";
        let follow_up_frame = json!({"type": "send", "conversation_id": early[0].conversation,
                                     "content": follow_up});
        let ack = early[0].followers[0].client.request(follow_up_frame).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let follow_up_reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
        eventually("a node reports the store down", || async {
            readiness.saw(|(_, body)| body["store"]["postgres"] == "down")
        })
        .await;
        // The outage lasts until all that happened, and at least `OUTAGE`.
        tokio::time::sleep_until(down_at + OUTAGE).await;
        assert!(
            proxy.refused() > 0,
            "the nodes tried the database while it was down"
        );
        proxy.up();
        let up_at = Instant::now();
        println!(
            "3 replies ended, one was cancelled and 4 turns started during a {:?} outage",
            up_at - down_at
        );

        // Every reply goes on to its end as if nothing happened: every
        // token, in order, in the same epoch, and the same text.
        for stream in &mut late {
            stream.until_over().await;
        }
        let first = &mut early[0];
        let reply_id = follow_up_reply.clone();
        for follower in &mut first.followers {
            follower
                .read_until(&first.conversation, |f| ends(f, &reply_id))
                .await;
        }
        let first_answer = demo_reply(OUTAGE_TOKENS, &first.question);
        let expected_follow_up = demo_conversation_reply(
            OUTAGE_TOKENS,
            &[
                (Role::User, &first.question),
                (Role::Assistant, &first_answer),
                (Role::User, follow_up),
            ],
        );
        for stream in early.iter().chain(&late) {
            for follower in &stream.followers {
                let reply = follower.reply(&stream.reply_id).unwrap();
                let expected = demo_reply(OUTAGE_TOKENS, &stream.question);
                if reply.status == MessageStatus::Cancelled {
                    assert!(expected.starts_with(&reply.content));
                } else {
                    assert_eq!(reply.status, MessageStatus::Complete);
                    assert_eq!(reply.content, expected);
                }
                assert_eq!(
                    follower.view.epoch, stream.followers[0].view.epoch,
                    "no follower was made to start over"
                );
            }
        }
        assert_eq!(
            late[1].followers[0]
                .reply(&late[1].reply_id)
                .unwrap()
                .status,
            MessageStatus::Cancelled
        );
        for follower in &early[0].followers {
            let reply = follower.reply(&follow_up_reply).unwrap();
            assert_eq!(reply.content, expected_follow_up);
            assert_eq!(reply.status, MessageStatus::Complete);
        }

        // Readiness never followed the store.
        let samples = readiness.finish().await;
        assert!(
            samples.iter().all(|(status, _)| *status == 200),
            "/readyz answered 200 throughout: {samples:?}"
        );

        // Within a bounded time of its return, the database holds every
        // message with its final status and text, and the details of the
        // endings it missed.
        let mut expected = Vec::new();
        let owned = early
            .iter()
            .map(|s| (s, &early_token))
            .chain(late.iter().map(|s| (s, &late_token)));
        for (stream, token) in owned {
            let body = detail_when_available(nodes[0], token, &stream.conversation, DEADLINE).await;
            expected.push((stream.conversation.clone(), messages_of(&body)));
        }
        wait_until_stored(store.as_ref(), &expected).await;
        println!(
            "the store caught up {:?} after the database came back",
            up_at.elapsed()
        );
        for (conversation, _) in &expected {
            for stored in store.messages(conversation.parse().unwrap()).await.unwrap() {
                let Some(ending) = endings.get(&stored.message.id.to_string()) else {
                    continue;
                };
                if ending["kind"] == "done" {
                    assert_eq!(
                        (
                            stored.finish_reason.as_deref(),
                            stored.usage.map(|u| json!(u))
                        ),
                        (
                            ending["finish_reason"].as_str(),
                            Some(ending["usage"].clone())
                        ),
                        "the store keeps the ending's details of {}",
                        stored.message.id
                    );
                }
            }
        }
        drop(proxy);
        cluster.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// 3. History outlives its expiry from Redis.

/// The nodes' `conversation_ttl_secs`: a conversation leaves Redis this long
/// after its last turn or ending.
const TTL_SECS: u64 = 2;

/// Waits until Redis no longer holds the conversation: its TTL ran out.
async fn wait_until_expired(redis: &RedisServer, conversation: &str) {
    let client = redis::Client::open(redis.url()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("cs:{{{conversation}}}:meta");
    eventually(&format!("{key} expires"), || {
        let mut connection = connection.clone();
        let key = key.clone();
        async move {
            let exists: u64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap();
            exists == 0
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_outlives_its_expiry_from_redis() {
    bounded(async {
        let cluster = Cluster::start(3, |s| s.conversation_ttl_secs = TTL_SECS).await;
        let store = cluster.store().await;
        let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
        let [a, b, c] = nodes[..] else { unreachable!() };
        let (token, _) = a.guest().await;
        let question = "remember me once I expire";
        let answer = demo_reply(30, question);

        let mut first = Follower::new(a.connect(&token).await);
        let Sent {
            conversation,
            reply_id,
            ..
        } = first.client.send_turn(question).await;
        first
            .read_until(&conversation, |f| ends(f, &reply_id))
            .await;
        let before = detail_when_available(a, &token, &conversation, DEADLINE).await;
        assert_eq!(
            before["epoch"].as_str(),
            first.view.epoch.as_deref(),
            "read before it expired"
        );
        assert_eq!(messages_of(&before), first.view.messages());
        first.client.close().await;
        wait_until_not_held(&nodes, &conversation, &[&reply_id]).await;
        wait_until_stored(
            store.as_ref(),
            &[(conversation.clone(), messages_of(&before))],
        )
        .await;
        let mut epochs = vec![before["epoch"].clone()];
        let mut is_new_epoch = |epoch: &Value| {
            let new = !epochs.contains(epoch);
            epochs.push(epoch.clone());
            new
        };

        // After each expiry, its next use, on another node each time, finds
        // it whole, restored under a new epoch. A cancel of its reply looks
        // the message up: it is no longer streaming.
        wait_until_expired(&cluster.redis, &conversation).await;
        let (status, body) = b
            .api(
                Method::POST,
                "/api/cancel",
                Some(&token),
                Some(json!({"message_id": reply_id})),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("conflict")),
            "{body}"
        );

        // A GET.
        wait_until_expired(&cluster.redis, &conversation).await;
        let got = detail_when_available(b, &token, &conversation, DEADLINE).await;
        assert_eq!(messages_of(&got), messages_of(&before));
        assert_eq!(got["title"], before["title"]);
        assert!(is_new_epoch(&got["epoch"]), "{got}");

        // A subscribe, whose watcher stays.
        wait_until_expired(&cluster.redis, &conversation).await;
        let mut watcher = Follower::new(c.connect(&token).await);
        let (subscribed, snapshot) =
            subscribe_when_available(&mut watcher.client, &conversation, DEADLINE).await;
        watcher.view.apply(&conversation, &snapshot);
        assert_eq!(messages_of(&snapshot), messages_of(&before));
        assert!(is_new_epoch(&subscribed["epoch"]), "{subscribed}");

        // A send, while the watcher follows: the new turn comes after the
        // restored messages, and the reply continues the conversation.
        wait_until_expired(&cluster.redis, &conversation).await;
        let follow_up = "do you still remember?";
        let mut sender = a.connect(&token).await;
        let ack = send_when_available(
            &mut sender,
            json!({"type": "send", "conversation_id": conversation, "content": follow_up,
                   "client_msg_id": Uuid::new_v4()}),
            DEADLINE,
        )
        .await;
        let follow_up_reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
        let frames = frames_until(&mut sender, |f| ends(f, &follow_up_reply)).await;
        let expected = demo_conversation_reply(
            30,
            &[
                (Role::User, question),
                (Role::Assistant, &answer),
                (Role::User, follow_up),
            ],
        );
        assert_eq!(delta_text(&frames, &follow_up_reply), expected);
        assert!(is_new_epoch(&frames[0]["epoch"]), "{}", frames[0]);
        let frames = watcher
            .read_until(&conversation, |f| reply_over(f, &follow_up_reply))
            .await;
        start_over_of(&frames, subscribed["epoch"].as_str().unwrap());
        let messages = watcher.view.messages().to_vec();
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[..2], messages_of(&before)[..]);
        assert_eq!(
            (messages[2].role, messages[2].content.as_str()),
            (Role::User, follow_up)
        );
        assert_eq!(messages[3].id.to_string(), follow_up_reply);
        assert_eq!(
            (messages[3].status, messages[3].content.as_str()),
            (MessageStatus::Complete, expected.as_str())
        );

        // Every node answers the same messages, and the store holds them.
        for node in [a, b, c] {
            let body = detail_when_available(node, &token, &conversation, DEADLINE).await;
            assert_eq!(messages_of(&body), messages);
            assert_eq!(body["title"], before["title"]);
        }
        wait_until_stored(store.as_ref(), &[(conversation.clone(), messages)]).await;
        sender.close().await;
        watcher.client.close().await;
        cluster.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// 4. One listing, from the store, on every node.

/// The owner's conversations in the store once they stop changing: a
/// reply's last checkpoint lands within `CHECKPOINT_EVERY` of its end, and
/// may still move its conversation's `updated_at` (the listing's cursor).
async fn settled_listing(store: &dyn Store, owner: &UserId) -> Vec<Uuid> {
    let quiet = chatstream::actors::persister::CHECKPOINT_EVERY * 2;
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    let mut unchanged_since = Instant::now();
    loop {
        let page = store.list_conversations(owner, 200, None).await.unwrap();
        if last.as_ref() != Some(&page) {
            last = Some(page);
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= quiet {
            let page = last.unwrap();
            assert_eq!(page.next, None);
            return page.conversations.iter().map(|c| c.id).collect();
        }
        assert!(Instant::now() < deadline, "the listing never settled");
        tokio::time::sleep(RETRY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_a_users_conversations_alike_from_the_store() {
    bounded(async {
        let cluster = Cluster::start(3, |_| {}).await;
        let store = cluster.store().await;
        let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
        let (token, user) = nodes[0].guest().await;
        let (other_token, _) = nodes[2].guest().await;

        // Created one after the other, on every node in turn: by a send (its
        // reply over before the next), or empty, with a title.
        let mut created = Vec::new();
        for i in 0..8 {
            let node = nodes[i % 3];
            if i % 4 == 3 {
                let (status, body) = node
                    .api(
                        Method::POST,
                        "/api/conversations",
                        Some(&token),
                        Some(json!({"title": format!("empty conversation {i}")})),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
                created.push(body["id"].as_str().unwrap().to_owned());
            } else {
                let mut client = node.connect(&token).await;
                let Sent {
                    conversation,
                    reply_id,
                    ..
                } = client.send_turn(&format!("listed question {i}")).await;
                frames_until(&mut client, |f| ends(f, &reply_id)).await;
                client.close().await;
                created.push(conversation);
            }
        }
        let mut stranger = nodes[1].connect(&other_token).await;
        let theirs = stranger.send_turn("not on the first user's list").await;
        frames_until(&mut stranger, |f| ends(f, &theirs.reply_id)).await;
        stranger.close().await;

        let newest_first: Vec<String> = created.iter().rev().cloned().collect();
        let settled: Vec<String> = settled_listing(store.as_ref(), &UserId::from(user))
            .await
            .iter()
            .map(Uuid::to_string)
            .collect();
        assert_eq!(settled, newest_first, "newest first");

        // Every node answers the same pages, whatever their size.
        let mut whole = Vec::new();
        for limit in [1, 3, 50] {
            let pages = listing_pages(nodes[0], &token, limit).await;
            assert_eq!(listed_ids(&pages), newest_first, "limit {limit}");
            assert_eq!(pages.len(), newest_first.len().div_ceil(limit));
            for node in &nodes[1..] {
                assert_eq!(
                    listing_pages(node, &token, limit).await,
                    pages,
                    "limit {limit} on {}",
                    node.node.node_id()
                );
            }
            if limit == 50 {
                whole = pages;
            }
        }
        // A cursor from one node pages on any other.
        let mut ids = Vec::new();
        let mut path = "/api/conversations?limit=3".to_owned();
        for hop in 0.. {
            let (status, page) = nodes[hop % 3]
                .api(Method::GET, &path, Some(&token), None)
                .await;
            assert_eq!(status, 200, "{page}");
            ids.extend(listed_ids(std::slice::from_ref(&page)));
            match page["next"].as_str() {
                Some(cursor) => path = format!("/api/conversations?limit=3&before={cursor}"),
                None => break,
            }
        }
        assert_eq!(ids, newest_first);
        // Each entry is the conversation as its detail shows it.
        for entry in whole[0]["conversations"].as_array().unwrap() {
            let id = entry["id"].as_str().unwrap();
            let body = detail_when_available(nodes[1], &token, id, DEADLINE).await;
            assert_eq!(entry["title"], body["title"], "{id}");
        }
        let (status, theirs_listed) = nodes[0]
            .api(Method::GET, "/api/conversations", Some(&other_token), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            listed_ids(std::slice::from_ref(&theirs_listed)),
            vec![theirs.conversation.clone()]
        );

        // Redis forgetting everything changes nothing in the listing.
        flushall(&cluster.redis).await;
        for node in &nodes {
            assert_eq!(listing_pages(node, &token, 50).await, whole);
        }
        cluster.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Known defects of the code under test, each shown by a test that fails
// until it is fixed (run them with `--ignored`).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_a_done_replys_finish_reason_and_usage() {
    bounded(async {
        let cluster = Cluster::start(2, |s| s.demo_token_delay_ms = 10).await;
        let store = cluster.store().await;
        let (token, user) = cluster.nodes[0].guest().await;
        let mut client = cluster.nodes[1].connect(&token).await;
        let Sent {
            conversation,
            reply_id,
            ..
        } = client.send_turn("how did you finish?").await;
        let frames = frames_until(&mut client, |f| ends(f, &reply_id)).await;
        let done = frames.last().unwrap()["event"].clone();
        assert_eq!(done["kind"], "done");
        settled_listing(store.as_ref(), &UserId::from(user)).await;
        let stored = store.messages(conversation.parse().unwrap()).await.unwrap();
        let reply = stored
            .iter()
            .find(|m| m.message.id.to_string() == reply_id)
            .unwrap();
        assert_eq!(reply.message.status, MessageStatus::Complete);
        assert_eq!(
            (
                reply.finish_reason.as_deref(),
                reply.usage.map(|u| json!(u))
            ),
            (done["finish_reason"].as_str(), Some(done["usage"].clone()))
        );
        client.close().await;
        cluster.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_streaming_longer_than_the_conversation_ttl_ends_normally() {
    bounded(async {
        let cluster = Cluster::start(2, |s| {
            // Twice the lease renewals' period at least: they extend it.
            s.conversation_ttl_secs = 3;
            s.demo_token_delay_ms = 100;
            s.demo_reply_tokens = 75;
        })
        .await;
        let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
        let (token, _) = nodes[0].guest().await;
        let question = "a reply of seven seconds, please";
        let mut stream = Stream::start(nodes[0], nodes[1], &token, question).await;
        for ending in stream.until_over().await {
            assert_eq!(ending["event"]["kind"], "done", "{ending}");
        }
        for follower in &stream.followers {
            let reply = follower.reply(&stream.reply_id).unwrap();
            assert_eq!(reply.content, demo_reply(75, question));
        }
        for follower in stream.followers {
            follower.client.close().await;
        }
        cluster.stop().await;
    })
    .await;
}

/// Versions and branches (contract 1.2): a tree made on one node is the same
/// tree on the other, as it streams and after Redis lost every key, when it
/// comes back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branched_conversation_is_one_tree_on_every_node_and_after_redis_lost_it() {
    bounded(async {
        let cluster = Cluster::start(2, |_| {}).await;
        let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
        let (token, _) = a.guest().await;
        let mut writer = a.connect(&token).await;
        let sent = writer.send_turn("Grow a tree").await;
        frames_until(&mut writer, |f| ends(f, &sent.reply_id)).await;
        // A watcher on the other node, from the first event on.
        let mut watcher = b.connect(&token).await;
        let subscribed = watcher
            .request(json!({"type": "subscribe", "conversation_id": sent.conversation}))
            .await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        let snapshot = frames_until(&mut watcher, |f| f["type"] == "snapshot")
            .await
            .pop()
            .unwrap();

        let regenerated = writer
            .request(json!({"type": "regenerate", "message_id": sent.reply_id}))
            .await;
        let version = regenerated["assistant_message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        frames_until(&mut writer, |f| ends(f, &version)).await;
        let edited = writer
            .request(
                json!({"type": "edit", "message_id": sent.ack["user_message_id"],
                            "content": "Grow a forest"}),
            )
            .await;
        let edit_reply = edited["assistant_message_id"].as_str().unwrap().to_owned();
        frames_until(&mut writer, |f| ends(f, &edit_reply)).await;

        // The watcher's fold of what it was sent is the whole tree.
        let frames = frames_until(&mut watcher, |f| ends(f, &edit_reply)).await;
        let mut view = View::default();
        view.apply(&sent.conversation, &snapshot);
        view.apply_all(&sent.conversation, &frames);
        let on_a = detail_when_available(a, &token, &sent.conversation, AFTER_LOSS).await;
        let on_b = detail_when_available(b, &token, &sent.conversation, AFTER_LOSS).await;
        assert_eq!(on_a, on_b, "one tree on every node");
        let tree: Vec<Message> = messages_of(&on_a)
            .into_iter()
            .chain(serde_json::from_value::<Vec<Message>>(on_a["branches"].clone()).unwrap())
            .collect();
        let mut folded = view.messages().to_vec();
        folded.sort_by_key(|m| m.id);
        let mut stored = tree.clone();
        stored.sort_by_key(|m| m.id);
        assert_eq!(folded, stored, "the live events fold to the same tree");
        assert_eq!(
            on_a["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap())
                .collect::<Vec<_>>(),
            [
                edited["user_message_id"].as_str().unwrap(),
                edit_reply.as_str()
            ]
        );

        // Redis loses everything; the store gives the tree back.
        let store = cluster.store().await;
        wait_until_stored(
            store.as_ref(),
            &[(sent.conversation.clone(), view.messages().to_vec())],
        )
        .await;
        flushall(&cluster.redis).await;
        let restored = detail_when_available(b, &token, &sent.conversation, AFTER_LOSS).await;
        assert_ne!(restored["epoch"], on_a["epoch"]);
        assert_eq!(restored["messages"], on_a["messages"]);
        assert_eq!(restored["branches"], on_a["branches"]);
        watcher.close().await;
        writer.close().await;
        cluster.stop().await;
    })
    .await;
}
