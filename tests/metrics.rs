//! The latency histograms and the readiness gauge at `/metrics`, scraped
//! from a real node streaming demo replies.
//!
//! The metrics recorder is process-wide, so the tests of this file run one
//! at a time (`ONE_AT_A_TIME`) and compare a scrape taken after a reply with
//! one taken before it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TTFT: &str = "chatstream_time_to_first_token_seconds";
const BETWEEN: &str = "chatstream_time_between_tokens_seconds";
const APPEND: &str = "chatstream_append_seconds";
const UPSTREAM: &str = "chatstream_upstream_duration_seconds";
const READY: &str = "chatstream_ready";

/// One sample of a scrape: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of one `/metrics` page.
struct Scrape {
    samples: Vec<Sample>,
}

/// One histogram series as a scrape shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Histogram {
    /// The `le="+Inf"` bucket: every observation.
    all: f64,
    count: f64,
    sum: f64,
}

impl Scrape {
    async fn of(node: &TestNode) -> Scrape {
        let response = node.http.get(node.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        Scrape::parse(&response.text().await.unwrap())
    }

    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                let value: f64 = value.parse().expect("a sample value");
                let (name, labels) = match series.split_once('{') {
                    None => (series, Vec::new()),
                    Some((name, labels)) => {
                        let labels = labels.strip_suffix('}').expect("labels end with }");
                        let labels = labels
                            .split("\",")
                            .map(|pair| {
                                let (key, value) = pair.split_once("=\"").expect("key=\"value\"");
                                (key.to_owned(), value.trim_end_matches('"').to_owned())
                            })
                            .collect();
                        (name, labels)
                    }
                };
                (name.to_owned(), labels, value)
            })
            .collect();
        Scrape { samples }
    }

    /// The value of the one sample of `name` whose labels include
    /// `labels`; 0 when there is none (a series appears once touched).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(sample, sample_labels, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name}{labels:?} names one series, not {matching:?}"
        );
        matching.first().copied().unwrap_or(0.0)
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        let mut bucket = labels.to_vec();
        bucket.push(("le", "+Inf"));
        Histogram {
            all: self.value(&format!("{name}_bucket"), &bucket),
            count: self.value(&format!("{name}_count"), labels),
            sum: self.value(&format!("{name}_sum"), labels),
        }
    }

    /// What `name` observed since `before`.
    fn since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> Histogram {
        let (now, then) = (self.histogram(name, labels), before.histogram(name, labels));
        Histogram {
            all: now.all - then.all,
            count: now.count - then.count,
            sum: now.sum - then.sum,
        }
    }

    fn is_histogram(&self, name: &str) -> bool {
        self.samples.iter().any(|(sample, labels, _)| {
            sample == &format!("{name}_bucket") && labels.iter().any(|(k, _)| k == "le")
        })
    }
}

/// Asserts that `histogram` holds exactly `count` observations, each in
/// `+Inf`, summing to a positive time under the test's deadline.
fn assert_observed(what: &str, histogram: Histogram, count: usize) {
    assert_eq!(
        (histogram.all, histogram.count),
        (count as f64, count as f64),
        "{what}: {histogram:?}"
    );
    if count > 0 {
        assert!(
            histogram.sum > 0.0 && histogram.sum < DEADLINE.as_secs_f64(),
            "{what} sums to seconds spent: {histogram:?}"
        );
    }
}

fn deltas_of(frames: &[Value], reply_id: &str) -> usize {
    frames
        .iter()
        .filter(|f| {
            f["type"] == "event"
                && f["event"]["kind"] == "delta"
                && f["event"]["message_id"] == reply_id
        })
        .count()
}

async fn ready_gauge(node: &TestNode) -> f64 {
    Scrape::of(node).await.value(READY, &[])
}

/// Scrapes until `name` observed at least `count` times since `before`:
/// the last append is timed when its call returns, which can be after the
/// client has read the event it published.
async fn scrape_after(
    node: &TestNode,
    before: &Scrape,
    name: &str,
    labels: &[(&str, &str)],
    count: usize,
) -> Scrape {
    eventually(&format!("{count} observations of {name}"), || async {
        Scrape::of(node).await.since(before, name, labels).count >= count as f64
    })
    .await;
    Scrape::of(node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_timed_from_its_start_token_by_token_to_its_end() {
    let _one = ONE_AT_A_TIME.lock().await;
    const DELAY: Duration = Duration::from_millis(3);
    const TOKENS: usize = 20;
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = DELAY.as_millis() as u64;
        s.demo_reply_tokens = TOKENS;
    })
    .await;
    // Nobody calls /readyz: the node's own evaluation sets the gauge.
    eventually("the node reports itself ready", || async {
        ready_gauge(&node).await == 1.0
    })
    .await;
    let before = Scrape::of(&node).await;

    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("How is a reply timed?").await;
    let frames = client.until(|f| ends(f, &sent.reply_id)).await;
    assert_eq!(frames.last().unwrap()["event"]["kind"], "done");
    let deltas = deltas_of(&frames, &sent.reply_id);
    assert!(deltas >= 2, "the reply came in pieces: {deltas}");

    let after = scrape_after(&node, &before, APPEND, &[], deltas + 1).await;
    for name in [TTFT, BETWEEN, APPEND, UPSTREAM] {
        assert!(after.is_histogram(name), "{name} has buckets");
    }
    let demo = [("model", "demo")];
    let first = after.since(&before, TTFT, &demo);
    assert_observed("time to first token", first, 1);
    // The demo model waits DELAY before each token.
    assert!(first.sum >= DELAY.as_secs_f64(), "{first:?}");
    assert_observed(
        "time between tokens",
        after.since(&before, BETWEEN, &demo),
        deltas - 1,
    );
    // Each delta, and the ending.
    assert_observed("appends", after.since(&before, APPEND, &[]), deltas + 1);
    let done = after.since(&before, UPSTREAM, &[("model", "demo"), ("outcome", "done")]);
    assert_observed("upstream requests done", done, 1);
    assert!(
        done.sum >= (TOKENS as f64) * DELAY.as_secs_f64(),
        "the request lasts until its last token: {done:?}"
    );
    assert!(
        first.sum < done.sum,
        "the first token comes before the request ends: {first:?} {done:?}"
    );
    for outcome in ["cancelled", "failed"] {
        let other = after.since(
            &before,
            UPSTREAM,
            &[("model", "demo"), ("outcome", outcome)],
        );
        assert_observed(outcome, other, 0);
    }

    let recorder = node.node.state.metrics.clone();
    node.stop().await;
    let stopped = Scrape::parse(&recorder.render());
    assert_eq!(
        stopped.value(READY, &[]),
        0.0,
        "a stopped node is not ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_reply_ends_its_upstream_request_as_cancelled() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(|s| {
        s.demo_token_delay_ms = 20;
        s.demo_reply_tokens = 200;
    })
    .await;
    let before = Scrape::of(&node).await;

    let (token, _) = node.guest().await;
    let mut client = node.connect(&token).await;
    let sent = client.send_turn("Stop me when I start").await;
    let mut frames = client
        .until(|f| f["type"] == "event" && f["event"]["kind"] == "delta")
        .await;
    let cancelled = client
        .request(json!({"type": "cancel", "message_id": sent.reply_id}))
        .await;
    assert_eq!(cancelled["type"], "ack", "{cancelled}");
    frames.extend(client.until(|f| ends(f, &sent.reply_id)).await);
    assert_eq!(frames.last().unwrap()["event"]["kind"], "cancelled");
    let deltas = deltas_of(&frames, &sent.reply_id);
    assert!(deltas < 200, "cancelled before its end: {deltas} deltas");

    let cancelled = [("model", "demo"), ("outcome", "cancelled")];
    // The request is observed as the aborted stream task is dropped.
    scrape_after(&node, &before, UPSTREAM, &cancelled, 1).await;
    let after = scrape_after(&node, &before, APPEND, &[], deltas + 1).await;
    assert_observed(
        "upstream requests cancelled",
        after.since(&before, UPSTREAM, &cancelled),
        1,
    );
    for outcome in ["done", "failed"] {
        let other = after.since(
            &before,
            UPSTREAM,
            &[("model", "demo"), ("outcome", outcome)],
        );
        assert_observed(outcome, other, 0);
    }
    let demo = [("model", "demo")];
    assert_observed("time to first token", after.since(&before, TTFT, &demo), 1);
    assert_observed(
        "time between tokens",
        after.since(&before, BETWEEN, &demo),
        deltas - 1,
    );
    // Each delta, and the cancel.
    assert_observed("appends", after.since(&before, APPEND, &[]), deltas + 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_gauge_follows_readiness_without_anyone_asking() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node = TestNode::start(|_| {}).await;
    eventually("the node reports itself ready", || async {
        ready_gauge(&node).await == 1.0
    })
    .await;
    // A node-level supervisor that dies takes the node out of readiness.
    node.node.state.actors.conversations.kill();
    eventually("the node reports itself not ready", || async {
        ready_gauge(&node).await == 0.0
    })
    .await;
    let response = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503, "the gauge agrees with /readyz");
    tokio::time::timeout(Duration::from_secs(30), node.stop())
        .await
        .expect("the node still stops");
}
