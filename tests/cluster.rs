//! Several nodes sharing one real redis-server, or a real Redis Cluster
//! (three masters, three replicas): every node serves every conversation,
//! with nothing lost or repeated, whichever node generates.

mod common;

use std::time::Duration;

use chatstream::protocol::MessageStatus;
use common::redis_cluster::RedisCluster;
use common::redis_server::RedisServer;
use common::*;
use rand::Rng;
use serde_json::json;

/// What the nodes share.
#[derive(Clone, Copy)]
enum Shared {
    OneRedis,
    RedisCluster,
}

struct Cluster {
    redis: Option<RedisServer>,
    _redis_cluster: Option<RedisCluster>,
    nodes: Vec<TestNode>,
}

impl Cluster {
    /// `size` nodes on one redis-server.
    async fn start(size: usize, configure: impl Fn(&mut chatstream::config::Settings)) -> Cluster {
        Cluster::start_on(Shared::OneRedis, size, configure).await
    }

    async fn start_on(
        shared: Shared,
        size: usize,
        configure: impl Fn(&mut chatstream::config::Settings),
    ) -> Cluster {
        let (redis, redis_cluster) = match shared {
            Shared::OneRedis => (Some(RedisServer::start()), None),
            Shared::RedisCluster => (None, Some(RedisCluster::start())),
        };
        let mut nodes = Vec::new();
        for i in 0..size {
            let url = redis.as_ref().map(RedisServer::url);
            let seeds = redis_cluster.as_ref().map(RedisCluster::seeds);
            nodes.push(
                TestNode::start(|s| {
                    s.redis_url = url;
                    s.redis_cluster_nodes = seeds.unwrap_or_default();
                    s.node_id = Some(format!("node-{i}"));
                    configure(s);
                })
                .await,
            );
        }
        Cluster {
            redis,
            _redis_cluster: redis_cluster,
            nodes,
        }
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

/// Runs each scenario with the nodes on one redis-server and on a Redis
/// Cluster.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod one_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Shared::OneRedis).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Shared::RedisCluster).await;
                }
            )*
        }
    };
}

on_both!(
    a_reply_generated_on_one_node_reaches_subscribers_on_the_others,
    a_cancel_on_another_node_stops_the_generation_where_it_runs,
    a_client_reconnecting_to_another_node_resumes_with_no_gap,
    subscribers_joining_random_nodes_at_random_moments_never_miss_an_event,
    the_cluster_scope_lists_every_node_and_its_actors,
);

/// The one redis-server nodes started on `Shared::OneRedis` share.
fn the_redis(redis: &mut Option<RedisServer>) -> &mut RedisServer {
    redis.as_mut().expect("the nodes share one redis-server")
}

async fn generations_on(node: &TestNode) -> Vec<String> {
    let (_, body) = node
        .api(
            reqwest::Method::GET,
            "/admin/actors",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    body["actors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "generation")
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_reply_generated_on_one_node_reaches_subscribers_on_the_others(shared: Shared) {
    let cluster = Cluster::start_on(shared, 3, |s| s.demo_token_delay_ms = 15).await;
    let [a, b, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let (token, _) = a.guest().await;
    let mut sender = a.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("across nodes").await;
    assert_eq!(
        generations_on(a).await,
        vec![reply_id.clone()],
        "the sender's node generates"
    );

    let mut views = Vec::new();
    for node in [b, c] {
        // Tokens are valid on every node: they share AUTH_SECRET.
        let mut client = node.connect(&token).await;
        assert_eq!(client.welcome["node_id"], node.node.node_id());
        let subscribed = client
            .request(json!({"type": "subscribe", "conversation_id": conversation}))
            .await;
        assert_eq!(subscribed["type"], "subscribed");
        views.push(client);
    }
    let expected = demo_reply(30, "across nodes");
    for client in &mut views {
        let frames = client.until(|f| reply_over(f, &reply_id)).await;
        let mut view = View::default();
        view.apply_all(&conversation, &frames);
        assert_eq!(view.messages()[1].content, expected);
        assert_eq!(view.messages()[1].status, MessageStatus::Complete);
    }
    let frames = sender.until(|f| ends(f, &reply_id)).await;
    let mut view = View::default();
    view.apply_all(&conversation, &frames);
    assert_eq!(view.messages()[1].content, expected);
    cluster.stop().await;
}

async fn a_cancel_on_another_node_stops_the_generation_where_it_runs(shared: Shared) {
    let cluster = Cluster::start_on(shared, 3, |s| {
        s.demo_token_delay_ms = 25;
        s.demo_reply_tokens = 400;
    })
    .await;
    let [a, _, c] = &cluster.nodes[..] else {
        unreachable!()
    };
    let (token, _) = a.guest().await;
    let mut sender = a.connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("stop me from afar").await;
    let mut view = View::default();
    view.apply_all(&conversation, &sender.until(|f| f["seq"] == 5).await);

    let mut canceller = c.connect(&token).await;
    let cancelled = canceller
        .request(json!({"type": "cancel", "message_id": reply_id}))
        .await;
    assert_eq!(cancelled["type"], "ack", "{cancelled}");
    let rest = sender.until(|f| ends(f, &reply_id)).await;
    view.apply_all(&conversation, &rest);
    assert_eq!(rest.last().unwrap()["event"]["kind"], "cancelled");
    eventually("the generation on the other node stops", || async {
        generations_on(a).await.is_empty()
    })
    .await;
    // Nothing was appended after the cancel: the stored seq is the view's.
    let (_, stored) = c
        .api(
            reqwest::Method::GET,
            &format!("/api/conversations/{conversation}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(stored["seq"], view.seq);
    assert_eq!(stored["messages"][1]["status"], "cancelled");
    let again = canceller
        .request(json!({"type": "cancel", "message_id": reply_id}))
        .await;
    assert_eq!(again["code"], "conflict");
    cluster.stop().await;
}

async fn a_client_reconnecting_to_another_node_resumes_with_no_gap(shared: Shared) {
    let cluster = Cluster::start_on(shared, 3, |s| s.demo_token_delay_ms = 15).await;
    let (token, _) = cluster.nodes[0].guest().await;
    let mut client = cluster.nodes[0].connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = client.send_turn("hop between nodes").await;
    let mut view = View::default();
    view.apply_all(&conversation, &client.until(|f| f["seq"] == 6).await);
    client.close().await;

    // Hop through the other nodes, reading a little on each.
    for node in &cluster.nodes[1..] {
        let mut client = node.connect(&token).await;
        let since = json!({"epoch": view.epoch.clone().unwrap(), "seq": view.seq});
        let subscribed = client
            .request(json!({"type": "subscribe", "conversation_id": conversation, "since": since}))
            .await;
        assert_eq!(subscribed["recovered"], true);
        let target = view.seq + 4;
        view.apply_all(
            &conversation,
            &client
                .until(|f| f["seq"] == target || ends(f, &reply_id))
                .await,
        );
        client.close().await;
    }
    let mut last = cluster.nodes[0].connect(&token).await;
    let since = json!({"epoch": view.epoch.clone().unwrap(), "seq": view.seq});
    last.request(json!({"type": "subscribe", "conversation_id": conversation, "since": since}))
        .await;
    if view.messages()[1].status == MessageStatus::Streaming {
        view.apply_all(&conversation, &last.until(|f| ends(f, &reply_id)).await);
    }
    assert_eq!(
        view.messages()[1].content,
        demo_reply(30, "hop between nodes")
    );
    cluster.stop().await;
}

/// The seed's lost "chunk 7", across nodes: joiners subscribe on random nodes
/// at random moments while replies generated on random nodes stream, and
/// each must see every event exactly once, in order.
async fn subscribers_joining_random_nodes_at_random_moments_never_miss_an_event(shared: Shared) {
    const ROUNDS: usize = 25;
    const CONVERSATIONS: usize = 4;
    const JOINERS: usize = 60;
    let cluster = Cluster::start_on(shared, 3, |s| {
        s.demo_token_delay_ms = 3;
        s.demo_reply_tokens = 40;
        s.frames_per_second = 10_000;
    })
    .await;
    let (token, _) = cluster.nodes[0].guest().await;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.ws_url(&token)).collect();
    let mut joins = 0;
    for round in 0..ROUNDS {
        let mut replies = Vec::new();
        for i in 0..CONVERSATIONS {
            let node = &cluster.nodes[rand::rng().random_range(0..cluster.nodes.len())];
            let mut sender = node.connect(&token).await;
            let question = format!("round {round} question {i}");
            let Sent {
                conversation,
                reply_id,
                ..
            } = sender.send_turn(&question).await;
            replies.push((conversation, reply_id, demo_reply(40, &question)));
        }
        let mut tasks = Vec::new();
        for _ in 0..JOINERS {
            let (conversation, reply_id, expected) =
                replies[rand::rng().random_range(0..replies.len())].clone();
            let url = urls[rand::rng().random_range(0..urls.len())].clone();
            let delay = Duration::from_millis(rand::rng().random_range(0..150));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut client = Client::connect(&url).await;
                let subscribed = client
                    .request(json!({"type": "subscribe", "conversation_id": conversation}))
                    .await;
                assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
                let frames = client.until(|f| reply_over(f, &reply_id)).await;
                let mut view = View::default();
                view.apply_all(&conversation, &frames);
                assert_eq!(view.messages()[1].content, expected);
                client.close().await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
            joins += 1;
        }
    }
    assert_eq!(joins, ROUNDS * JOINERS);
    cluster.stop().await;
}

async fn the_cluster_scope_lists_every_node_and_its_actors(shared: Shared) {
    let cluster = Cluster::start_on(shared, 3, |s| s.demo_token_delay_ms = 40).await;
    let (token, _) = cluster.nodes[1].guest().await;
    let mut sender = cluster.nodes[1].connect(&token).await;
    let ack = sender
        .request(json!({"type": "send", "content": "who runs me?"}))
        .await;
    let reply_id = ack["assistant_message_id"].as_str().unwrap().to_owned();
    let node = &cluster.nodes[0];
    let (status, _) = node
        .api(
            reqwest::Method::GET,
            "/admin/actors?scope=cluster",
            None,
            None,
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = node
        .api(
            reqwest::Method::GET,
            "/admin/actors?scope=cluster",
            Some("wrong"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    eventually(
        "every node appears with the generation on node-1",
        || async {
            let (_, body) = node
                .api(
                    reqwest::Method::GET,
                    "/admin/actors?scope=cluster",
                    Some(ADMIN_TOKEN),
                    None,
                )
                .await;
            let nodes = body["nodes"].as_array().cloned().unwrap_or_default();
            let generating = nodes
                .iter()
                .find(|n| n["node_id"] == "node-1")
                .is_some_and(|n| {
                    n["actors"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| a["kind"] == "generation" && a["key"] == reply_id.as_str())
                });
            body["node_id"] == "node-0" && nodes.len() == 3 && generating
        },
    )
    .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_reply_loses_nothing_and_readiness_follows() {
    let mut cluster = Cluster::start(2, |s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 150;
    })
    .await;
    let (token, _) = cluster.nodes[0].guest().await;
    let mut sender = cluster.nodes[0].connect(&token).await;
    let mut watcher = cluster.nodes[1].connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("survive a restart").await;
    watcher
        .request(json!({"type": "subscribe", "conversation_id": conversation}))
        .await;
    let mut sender_view = View::default();
    sender_view.apply_all(&conversation, &sender.until(|f| f["seq"] == 10).await);

    the_redis(&mut cluster.redis).kill();
    let node = &cluster.nodes[1];
    eventually("/readyz reports Redis down", || async {
        let (status, body) = node.api(reqwest::Method::GET, "/readyz", None, None).await;
        status == 503 && body["dependencies"]["redis"] == "down" && body["ready"] == false
    })
    .await;
    let (status, _) = node.api(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200, "the node itself stays up");
    the_redis(&mut cluster.redis).restart();
    eventually("/readyz reports Redis up again", || async {
        node.api(reqwest::Method::GET, "/readyz", None, None)
            .await
            .0
            == 200
    })
    .await;

    let expected = demo_reply(150, "survive a restart");
    sender_view.apply_all(&conversation, &sender.until(|f| ends(f, &reply_id)).await);
    assert_eq!(sender_view.messages()[1].content, expected);
    let mut watcher_view = View::default();
    watcher_view.apply_all(
        &conversation,
        &watcher.until(|f| reply_over(f, &reply_id)).await,
    );
    assert_eq!(watcher_view.messages(), sender_view.messages());
    assert_eq!(
        watcher_view.epoch, sender_view.epoch,
        "the log kept its data: same epoch"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_mid_reply_rebuilds_what_the_nodes_hold() {
    let mut cluster = Cluster::start(2, |s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 150;
    })
    .await;
    let (token, _) = cluster.nodes[0].guest().await;
    let mut sender = cluster.nodes[0].connect(&token).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("rebuild me").await;
    let mut watcher = cluster.nodes[1].connect(&token).await;
    watcher
        .request(json!({"type": "subscribe", "conversation_id": conversation}))
        .await;
    let mut sender_view = View::default();
    sender_view.apply_all(&conversation, &sender.until(|f| f["seq"] == 12).await);
    let old_epoch = sender_view.epoch.clone().unwrap();
    let delivered = sender_view.messages()[1].content.clone();

    the_redis(&mut cluster.redis).restart_empty();

    // Each follower is told to start over in a new epoch (`subscribed`
    // without id, then a snapshot), never an event of it before that.
    for (client, view) in [
        (&mut sender, &mut sender_view),
        (&mut watcher, &mut View::default()),
    ] {
        let frames = client
            .until(|f| reply_over(f, &reply_id) && f["epoch"] != old_epoch.as_str())
            .await;
        let resync = frames
            .iter()
            .position(|f| f["type"] == "subscribed" && f.get("id").is_none())
            .expect("a subscribed frame announces the rebuilt log");
        assert_eq!(frames[resync]["recovered"], false);
        assert_ne!(frames[resync]["epoch"], old_epoch.as_str());
        assert_eq!(frames[resync + 1]["type"], "snapshot");
        assert!(
            frames[..resync]
                .iter()
                .all(|f| f["epoch"] == old_epoch.as_str() || f["type"] != "event"),
            "no event of the new epoch before the snapshot"
        );
        view.apply_all(&conversation, &frames[resync..]);
        let reply = &view.messages()[1];
        assert_eq!(reply.status, MessageStatus::Complete);
        assert_eq!(reply.content, demo_reply(150, "rebuild me"));
        assert!(
            reply.content.starts_with(&delivered),
            "delivered text is never lost"
        );
    }
    // The rebuilt conversation answers on every node, in its new epoch.
    for node in &cluster.nodes {
        let (status, body) = node
            .api(
                reqwest::Method::GET,
                &format!("/api/conversations/{conversation}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_ne!(body["epoch"], old_epoch.as_str());
    }
    cluster.stop().await;
}
