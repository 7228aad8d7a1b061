//! The Kafka export against a real Kafka-protocol broker: `tansu`, started
//! by each test on a free port of 127.0.0.1 with its in-memory storage
//! (`CHATSTREAM_TEST_TANSU` names the binary; `.ci/run` installs it under
//! `~/.cache/chatstream-tools`, where the tests also look).
//! Events are read back with the Kafka client itself, partition by
//! partition, and checked against what the clients were told: every
//! ended turn's events arrive, with their ids, in order within each
//! conversation (the first time each id is seen), whatever happens to the
//! broker or to a node.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chatstream::actors::exporter::kafka::partition_for;
use chatstream::store::outbox::{EventKind, event_id};
use common::node_process::NodeProcess;
use common::postgres as pg;
use common::tcp_proxy::TcpProxy;
use common::{Client, TestNode, ends};
use rskafka::BackoffConfig;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client as KafkaClient, ClientBuilder};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

const PARTITIONS: i32 = 3;
/// How long the export of the last event may take once it was written.
const EXPORT_DEADLINE: Duration = Duration::from_secs(30);

/// `CHATSTREAM_TEST_TANSU`, else where `.ci/run` installs tansu, else
/// `tansu` on the PATH.
fn tansu_binary() -> String {
    if let Ok(path) = std::env::var("CHATSTREAM_TEST_TANSU")
        && !path.trim().is_empty()
    {
        return path;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = format!("{home}/.cache/chatstream-tools/tansu-0.6.0/bin/tansu");
    if std::path::Path::new(&installed).is_file() {
        return installed;
    }
    "tansu".into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker process, killed when dropped.
struct Broker {
    child: Child,
    /// Where clients reach it: its own port, or a proxy's in front of it.
    pub advertised: String,
}

impl Broker {
    /// Starts a broker on `port` advertising `advertised` (None: its own
    /// address), and waits until it creates `topic`.
    async fn start(port: u16, advertised: Option<String>, topic: &str) -> Broker {
        let listen = format!("127.0.0.1:{port}");
        let advertised = advertised.unwrap_or_else(|| listen.clone());
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{listen}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{advertised}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Kafka broker `{binary}` cannot start ({e}): set CHATSTREAM_TEST_TANSU to a tansu binary, or run .ci/run, which installs one"
                )
            });
        let broker = Broker { child, advertised };
        let deadline = Instant::now() + common::DEADLINE;
        loop {
            if let Ok(client) = ClientBuilder::new(vec![listen.clone()]).build().await
                && let Ok(controller) = client.controller_client()
                && controller
                    .create_topic(topic, PARTITIONS, 1, 5_000)
                    .await
                    .is_ok()
            {
                return broker;
            }
            assert!(Instant::now() < deadline, "the broker never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing
    /// answers, as with a broker that hangs.
    fn freeze(&self) {
        signal("-STOP", &self.pid());
    }

    fn thaw(&self) {
        signal("-CONT", &self.pid());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        signal("-CONT", &self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill")
        .args([which, pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

/// One event as read back from Kafka.
#[derive(Debug, Clone)]
struct Received {
    partition: i32,
    key: String,
    event: Value,
}

impl Received {
    fn id(&self) -> String {
        self.event["id"].as_str().unwrap().to_owned()
    }
}

/// Reads the topic from the start, partition by partition.
struct Consumer {
    partitions: Vec<(PartitionClient, i64)>,
    received: Vec<Received>,
    _client: Arc<KafkaClient>,
}

impl Consumer {
    async fn new(broker: &str, topic: &str) -> Consumer {
        let client = Arc::new(
            ClientBuilder::new(vec![broker.to_owned()])
                // A read during an outage gives up soon and is tried again
                // at the next poll, rather than backing off for minutes.
                .backoff_config(BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                    deadline: Some(Duration::from_secs(2)),
                })
                .build()
                .await
                .expect("a consumer reaches the broker"),
        );
        let mut partitions = Vec::new();
        for partition in 0..PARTITIONS {
            let partition_client = client
                .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Retry)
                .await
                .unwrap();
            partitions.push((partition_client, 0));
        }
        Consumer {
            partitions,
            received: Vec::new(),
            _client: client,
        }
    }

    /// Reads what arrived since the last call.
    async fn poll(&mut self) {
        for (client, offset) in &mut self.partitions {
            let Ok((records, _)) = client.fetch_records(*offset, 1..1_000_000, 100).await else {
                continue;
            };
            for record in records {
                *offset = record.offset + 1;
                let key = String::from_utf8(record.record.key.clone().unwrap()).unwrap();
                let event: Value = serde_json::from_slice(&record.record.value.unwrap()).unwrap();
                assert_eq!(
                    record.record.headers.get("event_id").map(Vec::as_slice),
                    event["id"].as_str().map(str::as_bytes),
                    "the event_id header names the event"
                );
                self.received.push(Received {
                    partition: client.partition(),
                    key,
                    event,
                });
            }
        }
    }

    fn ids(&self) -> HashSet<String> {
        self.received.iter().map(Received::id).collect()
    }

    /// Reads until every id of `expected` has arrived.
    async fn until_all(&mut self, expected: &HashSet<String>) {
        let deadline = Instant::now() + EXPORT_DEADLINE;
        loop {
            self.poll().await;
            let ids = self.ids();
            let missing: Vec<&String> = expected.difference(&ids).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} events never arrived, e.g. {:?}",
                missing.len(),
                missing.iter().take(3).collect::<Vec<_>>()
            );
        }
    }

    /// Checks every event read: its key is its conversation and its
    /// partition Kafka's for that key; a repeated id repeats the same event;
    /// each conversation's events, first arrivals only, come in `seq` order.
    fn check(&self) {
        let mut first: HashMap<String, &Received> = HashMap::new();
        let mut by_conversation: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for received in &self.received {
            let event = &received.event;
            assert_eq!(event["schema"], 1);
            assert_eq!(received.key, event["conversation_id"].as_str().unwrap());
            assert_eq!(
                received.partition,
                partition_for(received.key.as_bytes(), PARTITIONS)
            );
            assert!(event.get("text").is_none(), "no text by default: {event}");
            match first.get(&received.id()) {
                Some(earlier) => assert_eq!(
                    earlier.event, received.event,
                    "a duplicate is the same event"
                ),
                None => {
                    first.insert(received.id(), received);
                    by_conversation
                        .entry(received.key.clone())
                        .or_default()
                        .push(event["seq"].as_i64().unwrap());
                }
            }
        }
        for (conversation, seqs) in by_conversation {
            assert!(
                seqs.windows(2).all(|pair| pair[0] < pair[1]),
                "conversation {conversation} out of order: {seqs:?}"
            );
        }
    }

    fn duplicates(&self) -> usize {
        self.received.len() - self.ids().len()
    }
}

/// Reads until `condition` holds.
async fn poll_until(consumer: &mut Consumer, condition: impl Fn(&Consumer) -> bool) {
    let deadline = Instant::now() + EXPORT_DEADLINE;
    loop {
        consumer.poll().await;
        if condition(consumer) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events stopped arriving after {}",
            consumer.received.len()
        );
    }
}

fn id(kind: EventKind, subject: &str) -> String {
    event_id(kind, subject.parse::<Uuid>().unwrap()).to_string()
}

/// The events of one acknowledged turn in a new conversation, ended.
fn turn_events(ack: &Value) -> Vec<String> {
    let conversation = ack["conversation_id"].as_str().unwrap();
    vec![
        id(EventKind::ConversationCreated, conversation),
        id(
            EventKind::MessageUser,
            ack["user_message_id"].as_str().unwrap(),
        ),
        id(
            EventKind::ReplyEnded,
            ack["assistant_message_id"].as_str().unwrap(),
        ),
    ]
}

/// One turn in a new conversation, to its ending: the events it must
/// produce.
async fn one_turn(client: &mut Client, content: &str) -> Vec<String> {
    let sent = client.send_turn(content).await;
    client.until(|frame| ends(frame, &sent.reply_id)).await;
    turn_events(&sent.ack)
}

fn topic() -> String {
    format!("chatstream.events.test.{}", Uuid::new_v4().simple())
}

async fn outbox_rows(url: &str) -> i64 {
    let mut connection = PgConnection::connect(url).await.unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_ended_turn_arrives_in_order_per_conversation() {
    let topic = topic();
    let broker = Broker::start(free_port(), None, &topic).await;
    let node = TestNode::start(|settings| {
        settings.kafka_brokers = vec![broker.advertised.clone()];
        settings.kafka_topic = topic.clone();
    })
    .await;
    let (token, user) = node.guest().await;
    let mut client = node.connect(&token).await;
    let mut expected = Vec::new();
    let mut conversations = Vec::new();
    for i in 0..4 {
        let sent = client.send_turn(&format!("question {i}")).await;
        client.until(|frame| ends(frame, &sent.reply_id)).await;
        expected.extend(turn_events(&sent.ack));
        conversations.push(sent);
    }
    // A second turn in the first conversation, cancelled mid-reply.
    let first = &conversations[0].conversation;
    let ack = client
        .request(serde_json::json!({"type": "send", "conversation_id": first, "content": "and?"}))
        .await;
    let second_reply = ack["assistant_message_id"].as_str().unwrap().to_owned();
    client
        .request(serde_json::json!({"type": "cancel", "message_id": second_reply}))
        .await;
    client.until(|frame| ends(frame, &second_reply)).await;
    expected.push(id(
        EventKind::MessageUser,
        ack["user_message_id"].as_str().unwrap(),
    ));
    expected.push(id(EventKind::ReplyEnded, &second_reply));
    // The last conversation deleted.
    let last = conversations[3].conversation.clone();
    let (status, _) = node
        .api(
            reqwest::Method::DELETE,
            &format!("/api/conversations/{last}"),
            Some(&token),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "deleted: {status}");
    expected.push(id(EventKind::ConversationDeleted, &last));

    let mut consumer = Consumer::new(&broker.advertised, &topic).await;
    let expected_set: HashSet<String> = expected.iter().cloned().collect();
    consumer.until_all(&expected_set).await;
    consumer.check();
    assert!(consumer.ids().is_subset(&expected_set), "no stray event");

    let events: HashMap<String, &Value> = consumer
        .received
        .iter()
        .map(|received| (received.id(), &received.event))
        .collect();
    for received in &consumer.received {
        assert_eq!(received.event["user_id"], user.to_string());
    }
    // A conversation's events in the order they happened.
    let order: Vec<&str> = {
        let mut first_conversation: Vec<&Value> = events
            .values()
            .copied()
            .filter(|event| event["conversation_id"] == first.as_str())
            .collect();
        first_conversation.sort_by_key(|event| event["seq"].as_i64());
        first_conversation
            .iter()
            .map(|event| event["type"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        order,
        [
            "conversation.created",
            "message.user",
            "reply.ended",
            "message.user",
            "reply.ended"
        ]
    );
    let done = events[&expected[2]];
    assert_eq!(done["status"], "done");
    assert_eq!(done["model"], "demo");
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        events[&id(EventKind::ReplyEnded, &second_reply)]["status"],
        "cancelled"
    );

    // The outbox drains, and the metrics say so.
    let store = node.node.state.context.store().unwrap().clone();
    common::eventually("the outbox drains", || {
        let store = store.clone();
        async move { store.outbox().unwrap().stats().await.unwrap().rows == 0 }
    })
    .await;
    // The gauges are read from the store every 2 s.
    common::eventually("the outbox metrics are exported", || {
        let request = node.http.get(node.url("/metrics")).send();
        async move {
            let metrics = request.await.unwrap().text().await.unwrap();
            [
                "chatstream_outbox_published_total",
                "chatstream_outbox_rows",
                "chatstream_outbox_oldest_seconds",
            ]
            .iter()
            .all(|name| metrics.contains(name))
        }
    })
    .await;
    client.close().await;
    node.stop().await;
}

/// Clients doing turns one after the other, each in a new conversation,
/// until told to stop: the events every ended turn must produce.
fn spawn_load(
    node: std::net::SocketAddr,
    clients: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|i| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let guest = common::Guest::new(node).await;
                let mut client =
                    Client::connect(&format!("ws://{node}/ws/chat?token={}", guest.token)).await;
                let mut expected = Vec::new();
                let mut n = 0;
                while !*stop.borrow() {
                    expected.extend(one_turn(&mut client, &format!("load {i}.{n}")).await);
                    n += 1;
                }
                client.close().await;
                expected
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_mid_load_loses_nothing() {
    let database = pg::fresh_database_url().await;
    let topic = topic();
    // The node reaches the broker only through a proxy (the broker
    // advertises the proxy's address), so that the test can cut it off.
    let broker_port = free_port();
    let proxy = TcpProxy::start(&format!("127.0.0.1:{broker_port}")).await;
    let broker = Broker::start(broker_port, Some(proxy.addr().to_string()), &topic).await;
    let node = TestNode::start(|settings| {
        settings.database_url = Some(database.clone());
        settings.kafka_brokers = vec![broker.advertised.clone()];
        settings.kafka_topic = topic.clone();
    })
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = spawn_load(node.node.addr, 4, stopped);
    let mut consumer = Consumer::new(&broker.advertised, &topic).await;
    poll_until(&mut consumer, |c| c.received.len() >= 6).await;

    // The broker cut off for 4 s while turns go on: they still end (the
    // export never touches a stream) and their events wait in the outbox.
    proxy.down();
    let cut = Instant::now();
    let mut waiting = 0;
    while cut.elapsed() < Duration::from_secs(4) {
        waiting = waiting.max(outbox_rows(&database).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        waiting > 0,
        "events waited in the outbox while the broker was away"
    );
    proxy.up();
    let seen = consumer.received.len();
    poll_until(&mut consumer, |c| c.received.len() >= seen + 12).await;

    // The broker stopped (SIGSTOP) for 4 s and continued: requests in
    // flight hang rather than fail.
    let seen = consumer.received.len();
    broker.freeze();
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.thaw();
    poll_until(&mut consumer, |c| c.received.len() >= seen + 12).await;

    let _ = stop.send(true);
    let mut expected = HashSet::new();
    for task in load {
        expected.extend(task.await.unwrap());
    }
    assert!(expected.len() >= 60, "enough load: {}", expected.len());
    consumer.until_all(&expected).await;
    consumer.check();
    common::eventually("the outbox drains", || {
        let database = database.clone();
        async move { outbox_rows(&database).await == 0 }
    })
    .await;
    node.stop().await;
    pg::drop_database(&database).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_publish_every_event() {
    let database = pg::fresh_database_url().await;
    let topic = topic();
    let broker = Broker::start(free_port(), None, &topic).await;
    let mut nodes = Vec::new();
    for name in ["export-a", "export-b"] {
        nodes.push(
            TestNode::start(|settings| {
                settings.node_id = Some(format!("{name}-{}", Uuid::new_v4().simple()));
                settings.database_url = Some(database.clone());
                settings.kafka_brokers = vec![broker.advertised.clone()];
                settings.kafka_topic = topic.clone();
            })
            .await,
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut load = spawn_load(nodes[0].node.addr, 3, stopped.clone());
    load.extend(spawn_load(nodes[1].node.addr, 3, stopped));
    let mut consumer = Consumer::new(&broker.advertised, &topic).await;
    poll_until(&mut consumer, |c| c.received.len() >= 150).await;
    let _ = stop.send(true);
    let mut expected = HashSet::new();
    for task in load {
        expected.extend(task.await.unwrap());
    }
    consumer.until_all(&expected).await;
    consumer.check();
    assert_eq!(consumer.ids(), expected, "every event, and no other");
    common::eventually("the outbox drains", || {
        let database = database.clone();
        async move { outbox_rows(&database).await == 0 }
    })
    .await;
    eprintln!(
        "{} events, {} duplicates",
        consumer.ids().len(),
        consumer.duplicates()
    );
    for node in nodes {
        node.stop().await;
    }
    pg::drop_database(&database).await;
}

/// The rows of the outbox claimed by `claimer` and still leased.
async fn held_by(url: &str, claimer: &str) -> Vec<i64> {
    let mut connection = PgConnection::connect(url).await.unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT seq FROM outbox WHERE claimed_by = $1 AND claimed_until > now() ORDER BY seq",
    )
    .bind(claimer)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    rows.into_iter().map(|(seq,)| seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_batch_leaves_its_rows_to_another() {
    let database = pg::fresh_database_url().await;
    let topic = topic();
    let broker = Broker::start(free_port(), None, &topic).await;
    let lease_ms = "12000";
    let dead = format!("doomed-{}", Uuid::new_v4().simple());
    let mut doomed = NodeProcess::start(&[
        ("DATABASE_URL", database.as_str()),
        ("NODE_ID", dead.as_str()),
        ("KAFKA_BROKERS", broker.advertised.as_str()),
        ("KAFKA_TOPIC", topic.as_str()),
        ("KAFKA_CLAIM_LEASE_MS", lease_ms),
    ])
    .await;
    let doomed_addr: std::net::SocketAddr = doomed.addr.parse().unwrap();
    let guest = common::Guest::new(doomed_addr).await;
    let mut client = Client::connect(&doomed.ws_url(&guest.token)).await;
    let mut consumer = Consumer::new(&broker.advertised, &topic).await;
    // Its exporter is connected: the first turn's events arrive.
    let mut expected: HashSet<String> = one_turn(&mut client, "before").await.into_iter().collect();
    consumer.until_all(&expected).await;

    // The broker hangs; turns still end, and the node's exporter claims
    // their events and waits on the broker with them.
    broker.freeze();
    for i in 0..3 {
        expected.extend(one_turn(&mut client, &format!("during {i}")).await);
    }
    let deadline = Instant::now() + common::DEADLINE;
    let claimed = loop {
        let held = held_by(&database, &dead).await;
        if !held.is_empty() {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the exporter never claimed a row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Killed mid-batch: it never publishes nor gives back what it holds.
    doomed.stop("-KILL");
    drop(client);
    broker.thaw();

    // Another node with an exporter: it publishes its own events at once,
    // and leaves the dead node's claimed rows alone while their lease runs.
    let survivor = TestNode::start(|settings| {
        settings.node_id = Some(format!("survivor-{}", Uuid::new_v4().simple()));
        settings.database_url = Some(database.clone());
        settings.kafka_brokers = vec![broker.advertised.clone()];
        settings.kafka_topic = topic.clone();
        settings.kafka_claim_lease_ms = 12_000;
    })
    .await;
    let (token, _) = survivor.guest().await;
    let mut other = survivor.connect(&token).await;
    let own: HashSet<String> = one_turn(&mut other, "after").await.into_iter().collect();
    consumer.until_all(&own).await;
    let still_held = held_by(&database, &dead).await;
    assert_eq!(
        still_held, claimed,
        "the dead node's rows stay its own until the lease ends"
    );
    let before_lease: HashSet<String> = consumer.ids();

    // After the lease: everything is out, the dead node's rows included.
    expected.extend(own);
    consumer.until_all(&expected).await;
    consumer.check();
    assert!(
        !before_lease.is_superset(&expected),
        "some events were waiting for the lease to end"
    );
    common::eventually("the outbox drains", || {
        let database = database.clone();
        async move { outbox_rows(&database).await == 0 }
    })
    .await;
    other.close().await;
    survivor.stop().await;
    pg::drop_database(&database).await;
}
