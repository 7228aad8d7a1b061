//! Chaos against real processes: redis-server, three node processes and nginx
//! (the local cluster of `scripts/cluster.sh`). Nodes are killed, restarted
//! one by one, Redis is killed and restarted, and every reply still ends
//! complete, identical to an undisturbed run, with no gap or repeat in any
//! client's transcript. Bounded in time; one scenario at a time.

mod common;

use std::time::{Duration, Instant};

use common::follower::{Follower, advance, finish};
use common::local_cluster::LocalCluster;
use common::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The scenarios share the machine's two cores; running them one at a time
/// keeps their timing meaningful.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const TOKEN_DELAY_MS: &str = "25";

async fn guest(address: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!("http://{address}/api/auth/guest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn get(address: &str, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{address}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The replies each node generates now, by node number.
async fn generations(cluster: &LocalCluster, n: usize) -> Vec<String> {
    let (_, body) = get(&cluster.node(n), "/admin/actors", cluster.admin_token()).await;
    body["actors"]
        .as_array()
        .map(|actors| {
            actors
                .iter()
                .filter(|a| a["kind"] == "generation")
                .map(|a| a["key"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn start_followers(
    cluster: &LocalCluster,
    count: usize,
    label: &str,
) -> Vec<(Follower, Client)> {
    let token = guest(&cluster.nginx()).await;
    let url = format!("ws://{}/ws/chat?token={token}", cluster.nginx());
    let mut followers = Vec::new();
    for i in 0..count {
        followers.push(Follower::start(&url, &format!("{label} question {i}")).await);
    }
    followers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_generating_node_mid_reply_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const TOKENS: usize = 120;
    let cluster = LocalCluster::up(&[
        ("DEMO_TOKEN_DELAY_MS", TOKEN_DELAY_MS),
        ("DEMO_REPLY_TOKENS", &TOKENS.to_string()),
    ]);
    let followers = start_followers(&cluster, 9, "kill").await;
    let followers = advance(followers, 10).await;

    // Kill the node generating the most replies.
    let mut busiest = (1, Vec::new());
    for n in 1..=3 {
        let replies = generations(&cluster, n).await;
        if replies.len() > busiest.1.len() {
            busiest = (n, replies);
        }
    }
    let (victim, orphaned) = busiest;
    assert!(!orphaned.is_empty(), "some node generates replies");
    let killed_at = Instant::now();
    cluster.stop_node(victim, "-KILL");

    let finished = finish(followers).await;
    let mut resumed_after = Duration::ZERO;
    for follower in &finished {
        follower.assert_complete(TOKENS);
        if orphaned.contains(&follower.reply_id) {
            let first_after = follower
                .arrivals
                .iter()
                .find(|(at, _)| *at > killed_at)
                .map(|(at, _)| at.duration_since(killed_at))
                .expect("the orphaned reply went on after the kill");
            resumed_after = resumed_after.max(first_after);
        }
    }
    assert!(
        finished.iter().any(|f| f.reconnects > 0),
        "clients of the dead node reconnected"
    );
    eprintln!(
        "kill -9 of node-{victim} with {} replies: streaming resumed on survivors after at most {resumed_after:?}",
        orphaned.len()
    );
    assert!(
        resumed_after < Duration::from_secs(5),
        "resumed within 5 s, took {resumed_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const TOKENS: usize = 400;
    let cluster = LocalCluster::up(&[
        ("DEMO_TOKEN_DELAY_MS", TOKEN_DELAY_MS),
        ("DEMO_REPLY_TOKENS", &TOKENS.to_string()),
    ]);
    let followers = start_followers(&cluster, 6, "rolling").await;
    let followers = advance(followers, 5).await;
    // Followers keep reading while the nodes restart one after another.
    let reading = tokio::spawn(finish(followers));
    let mut exits = Vec::new();
    for n in 1..=3 {
        exits.push(cluster.stop_node(n, "-TERM"));
        cluster.start_node(n);
    }
    let finished = reading.await.unwrap();
    for follower in &finished {
        follower.assert_complete(TOKENS);
    }
    assert!(
        finished.iter().any(|f| f.reconnects > 0),
        "sockets were closed and resumed"
    );
    eprintln!("SIGTERM to exit, per node: {exits:?}");
    assert!(
        exits.iter().all(|e| *e < Duration::from_secs(10)),
        "each node exits in bounded time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_with_its_append_only_file_loses_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const TOKENS: usize = 150;
    let cluster = LocalCluster::up(&[
        ("DEMO_TOKEN_DELAY_MS", TOKEN_DELAY_MS),
        ("DEMO_REPLY_TOKENS", &TOKENS.to_string()),
    ]);
    // One conversation completes before the outage.
    let done = finish(start_followers(&cluster, 1, "before").await).await;
    done[0].assert_complete(TOKENS);

    let followers = advance(start_followers(&cluster, 4, "outage").await, 8).await;
    cluster.kill_redis();
    cluster.start_redis();
    let finished = finish(followers).await;
    for follower in &finished {
        follower.assert_complete(TOKENS);
    }
    // The completed conversation is still there, same epoch, same text.
    let owner_url = &done[0].url;
    let owner_token = owner_url.split("token=").nth(1).unwrap();
    let (status, stored) = get(
        &cluster.nginx(),
        &format!("/api/conversations/{}", done[0].conversation),
        owner_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stored["epoch"], done[0].view.epoch.clone().unwrap());
    assert_eq!(
        stored["messages"][1]["content"],
        demo_reply(TOKENS, &done[0].question)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_kill_ends_cancelled_and_is_never_resumed() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let cluster = LocalCluster::up(&[
        ("DEMO_TOKEN_DELAY_MS", TOKEN_DELAY_MS),
        ("DEMO_REPLY_TOKENS", "400"),
    ]);
    let token = guest(&cluster.nginx()).await;
    // Send through node-1, cancel through node-2 while node-1 is killed.
    let mut sender =
        Client::connect(&format!("ws://{}/ws/chat?token={token}", cluster.node(1))).await;
    let Sent {
        conversation,
        reply_id,
        ..
    } = sender.send_turn("cancel me as you die").await;
    sender.until(|f| f["seq"] == 6).await;
    let mut canceller =
        Client::connect(&format!("ws://{}/ws/chat?token={token}", cluster.node(2))).await;
    canceller
        .send(json!({"type": "cancel", "id": "c", "message_id": reply_id}))
        .await;
    cluster.stop_node(1, "-KILL");
    let answer = canceller.until(|f| f["id"] == "c").await;
    assert_eq!(answer.last().unwrap()["type"], "ack", "{answer:?}");

    // Well past the lease: nobody resumed it, nothing followed `cancelled`.
    let path = format!("/api/conversations/{conversation}");
    let (_, first) = get(&cluster.node(2), &path, &token).await;
    assert_eq!(first["messages"][1]["status"], "cancelled");
    // Absence can only be shown by letting time pass: the lease lapses and
    // the survivors' failover scans run several times meanwhile.
    tokio::time::sleep(chatstream::engine::LEASE_TTL + Duration::from_secs(2)).await;
    let (_, later) = get(&cluster.node(3), &path, &token).await;
    assert_eq!(
        later["seq"], first["seq"],
        "nothing was appended after the cancel"
    );
    assert_eq!(
        later["messages"][1]["content"],
        first["messages"][1]["content"]
    );
    for n in [2, 3] {
        assert!(
            generations(&cluster, n).await.is_empty(),
            "no node generates it"
        );
    }
}
