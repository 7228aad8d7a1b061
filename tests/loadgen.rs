//! `chatstream load` against a real node, in process, with tiny counts: what
//! it reports must be what happened.

mod common;

use chatstream::loadgen::{self, LoadArgs, Workload};
use common::TestNode;
use common::redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_counts_what_was_sent_and_received() {
    let node = TestNode::start(|_| {}).await;
    let (clients, messages, watchers) = (3, 2, 2);
    let args = LoadArgs {
        clients,
        messages,
        watchers,
        duration_secs: 30,
        ..LoadArgs::new(format!("http://{}", node.node.addr))
    };
    let report = loadgen::run(&args).await.expect("the load runs");
    let sockets = (clients * (1 + watchers)) as u64;
    let turns = (clients * messages) as u64;

    assert!(!report.stopped_by_deadline, "{}", report.to_table());
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert_eq!(report.turns, turns);
    assert_eq!(report.turns_failed, 0);
    assert_eq!(report.shape.connections, sockets as usize);
    // Each turn appends the user's message, the assistant's, its deltas and
    // `done`; every socket of the conversation receives each event once.
    let kinds = report.events_by_kind;
    assert_eq!(kinds.message, 2 * turns * (1 + watchers as u64));
    assert_eq!(kinds.done, turns * (1 + watchers as u64));
    assert_eq!(kinds.cancelled + kinds.failed, 0);
    assert!(kinds.delta >= turns * (1 + watchers as u64));
    assert_eq!(
        report.events_expected,
        report.events_appended * (1 + watchers as u64)
    );
    assert_eq!(report.events_received, report.events_expected);
    assert_eq!(report.events_received, kinds.total());
    assert_eq!(report.gaps, 0);
    // Every event came in a frame, and acks came too.
    assert!(report.frames_received >= report.events_received + turns);
    assert!(report.bytes_received > report.frames_received);

    let screen = report.append_to_screen_ms;
    assert_eq!(screen.count, report.events_received);
    assert!(report.append_to_screen_min_raw_ms.unwrap() >= 0.0);
    assert!(0.0 <= screen.min && screen.min <= screen.p50);
    assert!(screen.p50 <= screen.p95 && screen.p95 <= screen.p99 && screen.p99 <= screen.max);
    let first = report.send_to_first_delta_ms;
    assert_eq!(first.count, turns);
    assert!(0.0 <= first.min && first.p50 <= first.max);
    assert!(report.rates.events > 0.0 && report.elapsed_secs > 0.0);

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["turns"], turns);
    assert!(report.to_table().contains("append → screen"));
    node.stop().await;
}

/// Given two nodes, each client sends to one and its watchers follow on
/// the other: every event crosses Redis to reach them, and still arrives
/// once, in order. With the second node gone, the run cannot even start,
/// so it was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_across_nodes_loses_nothing() {
    let redis = RedisServer::start();
    let (a, b) = (
        TestNode::start(|s| s.redis_url = Some(redis.url())).await,
        TestNode::start(|s| s.redis_url = Some(redis.url())).await,
    );
    let (clients, messages, watchers) = (4, 2, 1);
    let args = LoadArgs {
        url: vec![
            format!("http://{}", a.node.addr),
            format!("http://{}", b.node.addr),
        ],
        clients,
        messages,
        watchers,
        ..LoadArgs::new("")
    };
    let report = loadgen::run(&args).await.expect("the load runs");
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert_eq!(report.turns, (clients * messages) as u64);
    assert_eq!(report.events_received, report.events_expected);
    assert_eq!(report.events_expected, report.events_appended * 2);
    assert_eq!(report.gaps, 0);

    b.stop().await;
    assert!(
        loadgen::run(&args).await.is_err(),
        "the second node was used"
    );
    a.stop().await;
}

/// The stream workload across two nodes: each conversation's subscriber on
/// one node, its reply generated on the other; every token of every reply
/// is received once and in order, and the window's CPU is read from /proc
/// (here, of this process, which runs both nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_workload_counts_every_token_across_nodes() {
    let redis = RedisServer::start();
    let paced = |s: &mut chatstream::config::Settings| {
        s.redis_url = Some(redis.url());
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 60;
    };
    let (a, b) = (TestNode::start(paced).await, TestNode::start(paced).await);
    let conversations = 4;
    let args = LoadArgs {
        workload: Workload::Stream,
        url: vec![
            format!("http://{}", a.node.addr),
            format!("http://{}", b.node.addr),
        ],
        clients: conversations,
        rate: 50.0,
        warmup_tokens: 5,
        measured_tokens: 20,
        pid: vec![std::process::id()],
        ..LoadArgs::new("")
    };
    let report = loadgen::run_stream(&args).await.expect("the load runs");
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert!(report.seq_faults.is_clean(), "{:?}", report.seq_faults);
    assert_eq!(report.tokens_missing, 0);
    assert_eq!(report.replies_unfinished, 0);
    assert_eq!(report.replies_ended_in_window, 0, "{}", report.to_table());
    assert_eq!(report.offered_tokens_per_second, 200.0);
    assert!(report.tokens_in_window > 0 && report.deltas_in_window > 0);
    assert!(report.tokens_in_window < 60 * conversations as u64);
    assert!(report.window_secs >= 0.4, "{}", report.window_secs);
    assert!(report.latency_ms.count > 0);
    assert_eq!(report.cpu_secs.len(), 1);
    assert!(report.cpu_us_per_token.is_some());
    a.stop().await;
    b.stop().await;
}

/// The idle workload: every connection opened one at a time, welcomed,
/// subscribed and held until the end; the node's memory read before and
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_workload_holds_every_connection() {
    let node = TestNode::start(|_| {}).await;
    let args = LoadArgs {
        workload: Workload::Idle,
        clients: 6,
        pid: vec![std::process::id()],
        ..LoadArgs::new(format!("http://{}", node.node.addr))
    };
    let report = loadgen::run_idle(&args).await.expect("the load runs");
    assert_eq!(report.error_count, 0, "{:?}", report.errors);
    assert_eq!(report.connections, 6);
    assert_eq!(report.closed_early, 0);
    assert_eq!(report.connect_to_welcome_ms.count, 6);
    assert!(report.rss_per_connection_kib.is_some());
    assert!(report.rss_after_kib[0] > 0);
    node.stop().await;
}

#[tokio::test]
async fn refuses_targets_off_this_machine() {
    for url in [
        "http://10.1.2.3:8080",
        "http://example.com",
        "http://localhost:8080",
    ] {
        let error = loadgen::run(&LoadArgs::new(url)).await.unwrap_err();
        assert!(error.to_string().contains("loopback"), "{url}: {error}");
    }
    let too_many = LoadArgs {
        clients: loadgen::MAX_CLIENTS + 1,
        ..LoadArgs::new("http://127.0.0.1:9")
    };
    assert!(loadgen::run(&too_many).await.is_err());
    let among_others = LoadArgs {
        url: vec!["http://127.0.0.1:9".into(), "http://10.1.2.3:8080".into()],
        ..LoadArgs::new("")
    };
    let error = loadgen::run(&among_others).await.unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
}
