//! Nodes on a real Redis Cluster (three masters, three replicas, started by
//! the test): conversations spread over every master, each one's events
//! travel through its own shard only, and a manual failover of every master
//! while replies stream loses, repeats and reorders nothing.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chatstream::engine::redis::{RedisOptions, RedisTarget};
use chatstream::engine::{Engine, RedisEngine};
use chatstream::protocol::UserId;
use common::follower::{Follower, advance, finish};
use common::redis_cluster::RedisCluster;
use common::*;

fn key_slot(key: &str, cluster: &RedisCluster) -> u16 {
    let mut connection = redis::Client::open(cluster.seeds()[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut connection)
        .unwrap()
}

/// Subscribers of `channel` on the server at `port`: sharded (`SSUBSCRIBE`)
/// and classic (`SUBSCRIBE`).
fn subscribers(port: u16, channel: &str) -> (u64, u64) {
    let mut connection = redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap();
    let (_, sharded): (String, u64) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query(&mut connection)
        .unwrap();
    let (_, classic): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(&mut connection)
        .unwrap();
    (sharded, classic)
}

/// Twenty conversations land on every master (one hash slot each); a
/// conversation's events are subscribed to on its own master only, and
/// sharded, so that they never cross the cluster bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_spread_over_the_masters_and_events_stay_in_their_shard() {
    let cluster = RedisCluster::start();
    let engine = RedisEngine::connect_to(
        &RedisTarget::cluster(&cluster.seeds()),
        "spread",
        RedisOptions::new(100, Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let user = UserId::new_guest();
    let mut masters = HashSet::new();
    let mut conversations = Vec::new();
    for i in 0..20 {
        let info = engine
            .create_conversation(user.clone(), Some(format!("conversation {i}")))
            .await
            .unwrap();
        let slot = key_slot(&format!("cs:{{{}}}:meta", info.id), &cluster);
        masters.insert(cluster.master_of(slot).port);
        conversations.push(info.id);
    }
    assert_eq!(masters.len(), 3, "twenty conversations reach every master");
    for master in &masters {
        assert!(cluster.keys_on(*master) > 0, "master {master} holds keys");
    }
    assert_eq!(engine.list_conversations(&user).await.unwrap().len(), 20);

    let watched = conversations[0];
    engine.watch(watched).await.unwrap();
    let channel = format!("cs:{{{watched}}}:events");
    let home = cluster.master_of(key_slot(&channel, &cluster)).port;
    eventually("the conversation's shard has its subscriber", || async {
        subscribers(home, &channel) == (1, 0)
    })
    .await;
    for node in cluster.nodes().iter().filter(|n| n.port != home) {
        assert_eq!(
            subscribers(node.port, &channel),
            (0, 0),
            "no subscription on {} (master: {})",
            node.port,
            node.master
        );
    }
}

const TOKENS: usize = 400;

/// `count` nodes on `cluster`, the demo model writing `tokens` tokens
/// `delay_ms` apart; one test user may drive every reply.
async fn nodes_on(
    cluster: &RedisCluster,
    count: usize,
    delay_ms: u64,
    tokens: usize,
) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for i in 0..count {
        let seeds = cluster.seeds();
        nodes.push(
            TestNode::start(|s| {
                s.redis_cluster_nodes = seeds;
                s.node_id = Some(format!("node-{i}"));
                s.demo_token_delay_ms = delay_ms;
                s.demo_reply_tokens = tokens;
                s.max_generations_per_user = 100;
            })
            .await,
        );
    }
    nodes
}

/// Three nodes on a Redis Cluster, replies streaming from each: every
/// master is failed over to its replica in turn (`CLUSTER FAILOVER`), and
/// every follower, the sender on the generating node and a watcher on
/// another, ends with the complete reply an undisturbed run gives, with no
/// gap, repeat or reordering (subscribers may be closed and resume with
/// `since`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_over_every_master_mid_reply_loses_nothing() {
    let cluster = RedisCluster::start();
    let nodes = nodes_on(&cluster, 3, 25, TOKENS).await;
    let (token, _) = nodes[0].guest().await;
    let mut followers = Vec::new();
    for i in 0..6 {
        let sender = Follower::start(
            &nodes[i % 3].ws_url(&token),
            &format!("failover question {i}"),
        )
        .await;
        let watcher = Follower::watch(&nodes[(i + 1) % 3].ws_url(&token), &sender.0).await;
        followers.extend([sender, watcher]);
    }
    let conversations: HashSet<String> = followers
        .iter()
        .map(|(f, _)| f.conversation.clone())
        .collect();
    assert_eq!(conversations.len(), 6);

    // Some text first, then each master in turn while the replies stream.
    let mut followers = advance(followers, 6).await;
    let masters: Vec<u16> = cluster
        .nodes()
        .iter()
        .filter(|n| n.master)
        .map(|n| n.port)
        .collect();
    for (round, master) in masters.into_iter().enumerate() {
        cluster.fail_over(master);
        followers = advance(followers, 6 + 8 * (round as u64 + 1)).await;
    }
    assert!(
        followers.iter().all(|(f, _)| !f.ended()),
        "every failover happened while the replies streamed"
    );
    for follower in finish(followers).await {
        follower.assert_complete(TOKENS);
    }
    for node in nodes {
        node.stop().await;
    }
}

/// A master of a Redis Cluster restarted empty mid-reply (its replica,
/// syncing from it, empties too): the nodes notice the loss in that
/// master's slots and rebuild what they hold under a new epoch, and every
/// follower ends with the complete reply, with no gap or repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_mid_reply_is_rebuilt() {
    let mut cluster = RedisCluster::start();
    let nodes = nodes_on(&cluster, 2, 20, 200).await;
    let (token, _) = nodes[0].guest().await;
    let sender = Follower::start(&nodes[0].ws_url(&token), "lost and rebuilt").await;
    let watcher = Follower::watch(&nodes[1].ws_url(&token), &sender.0).await;
    let mut followers = advance(vec![sender, watcher], 10).await;
    let old_epoch = followers[0].0.view.epoch.clone().unwrap();
    let slot = key_slot(
        &format!("cs:{{{}}}:meta", followers[0].0.conversation),
        &cluster,
    );
    let master = cluster.master_of(slot).port;

    cluster.restart_empty(master);
    followers = advance(followers, 30).await;
    for follower in finish(followers).await {
        assert_ne!(
            follower.view.epoch.as_deref(),
            Some(old_epoch.as_str()),
            "the conversation was rebuilt under a new epoch"
        );
        follower.assert_complete(200);
    }
    for node in nodes {
        node.stop().await;
    }
}

/// A conversation's slot moved to another master mid-reply (a reshard):
/// while its keys move, commands are sent on (`ASK`) or retried
/// (`TRYAGAIN`); its shard channel follows the slot; every follower ends
/// with the complete reply, with no gap, repeat or reordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_mid_reply_loses_nothing() {
    let cluster = RedisCluster::start();
    let nodes = nodes_on(&cluster, 2, 20, 200).await;
    let (token, _) = nodes[0].guest().await;
    let sender = Follower::start(&nodes[0].ws_url(&token), "moved while streaming").await;
    let watcher = Follower::watch(&nodes[1].ws_url(&token), &sender.0).await;
    let mut followers = advance(vec![sender, watcher], 10).await;
    let slot = key_slot(
        &format!("cs:{{{}}}:meta", followers[0].0.conversation),
        &cluster,
    );
    let from = cluster.master_of(slot).port;
    let to = cluster
        .nodes()
        .into_iter()
        .find(|n| n.master && n.port != from)
        .unwrap()
        .port;

    cluster.move_slot(slot, to);
    assert_eq!(cluster.master_of(slot).port, to);
    followers = advance(followers, 30).await;
    assert!(
        followers.iter().all(|(f, _)| !f.ended()),
        "the slot moved while the reply streamed"
    );
    let old_epoch = followers[0].0.view.epoch.clone();
    for follower in finish(followers).await {
        assert_eq!(follower.view.epoch, old_epoch, "the log moved whole");
        follower.assert_complete(200);
    }
    for node in nodes {
        node.stop().await;
    }
}
