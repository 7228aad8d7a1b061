//! The streaming workload (`--workload stream`): replies at a model's pace,
//! every token crossing nodes through Redis, measured in a steady window.
//!
//! C conversations, each its own guest. Conversation i has one subscriber
//! socket on node i mod N and its reply generated on node i + 1 mod N (the
//! `POST /api/chat` goes there), so every token travels between nodes. The
//! nodes' demo model streams R tokens a second (`DEMO_TOKEN_DELAY_MS` =
//! 1000 / R, set on the nodes); the sends are staggered over one token
//! period so that tokens arrive evenly rather than in one burst per period.
//!
//! Once every subscriber has its W warm-up tokens, the measured window
//! lasts T token periods: the tokens received in it over its length are the
//! delivered rate, the CPU the measured processes (`--pid`) spent in it over
//! those tokens is the cost per token, and the latency of each delta in it
//! is its receive time minus its `ts`. Loss, repeats and order are checked
//! over every event of every conversation, and each reply's token count
//! against its `done`'s `usage.completion_tokens`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::sync::Notify;

use super::histogram::{Histogram, Percentiles};
use super::procstat::{self, Sample};
use super::sequence::{SeqCheck, SeqFaults};
use super::setup;
use super::socket::{Socket, Stop, now_millis};
use super::target::Target;
use super::{LoadArgs, SETUP_CONCURRENCY, SETUP_TIMEOUT};
use crate::protocol::{ConversationDetail, Event, ServerFrame};

/// What every subscriber tells the run while it streams.
#[derive(Default)]
struct Progress {
    /// Subscribers that have their warm-up tokens.
    warmed: AtomicUsize,
    warmed_changed: Notify,
    /// Tokens received so far, all subscribers together.
    tokens: AtomicU64,
    /// Deltas received so far.
    deltas: AtomicU64,
    /// Whether the measured window is open (latencies are recorded).
    measuring: AtomicBool,
}

/// What one subscriber saw of its conversation.
struct Followed {
    seqs: SeqFaults,
    tokens: u64,
    /// `usage.completion_tokens` of the reply's `done`, once it came.
    completion_tokens: Option<u64>,
    /// Whether the reply ended (`done`, `cancelled`, `failed`) before the
    /// deadline.
    ended: bool,
    /// The reply ended while the window was open: it was shorter than the
    /// run needs (`DEMO_REPLY_TOKENS`).
    ended_in_window: bool,
    latency: Histogram,
    errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub nodes: Vec<String>,
    pub conversations: usize,
    pub tokens_per_second_per_reply: f64,
    pub warmup_tokens: u64,
    pub measured_tokens: u64,
    /// Conversations × rate.
    pub offered_tokens_per_second: f64,
    pub window_secs: f64,
    pub tokens_in_window: u64,
    pub deltas_in_window: u64,
    pub delivered_tokens_per_second: f64,
    /// Receive time minus the event's `ts`, every delta of the window.
    pub latency_ms: Percentiles,
    /// Every event of every conversation.
    pub seq_faults: SeqFaults,
    /// Tokens of ended replies that never arrived (`done`'s count minus
    /// those received); negative would be tokens received twice.
    pub tokens_missing: i64,
    pub replies_unfinished: usize,
    pub replies_ended_in_window: usize,
    /// CPU seconds of each measured process over the window.
    pub cpu_secs: Vec<ProcessCpu>,
    pub cpu_us_per_token: Option<f64>,
    pub error_count: usize,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub pid: u32,
    pub secs: f64,
}

/// One conversation ready to stream.
struct Ready {
    socket: Socket,
    conversation: ConversationDetail,
    token: String,
    generating: usize,
}

pub async fn run(args: &LoadArgs, targets: &[Target]) -> anyhow::Result<StreamReport> {
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be above 0 and at most 1000 tokens a second");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let period = Duration::from_secs_f64(1.0 / args.rate);

    let ready = tokio::time::timeout(
        SETUP_TIMEOUT,
        stream::iter(0..args.clients)
            .map(|i| prepare(i, targets, &http))
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>(),
    )
    .await
    .context("setting up the conversations took too long")?
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()
    .context("setting up a conversation")?;

    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let count = ready.len() as u32;
    let mut subscribers = Vec::with_capacity(ready.len());
    let mut sends = Vec::with_capacity(ready.len());
    for (i, ready) in ready.into_iter().enumerate() {
        let send_at = started + period * i as u32 / count;
        let url = targets[ready.generating].http("/api/chat");
        let body = serde_json::json!({
            "conversation_id": ready.conversation.id,
            "content": args.content,
        });
        let (http, token) = (http.clone(), ready.token.clone());
        sends.push(tokio::spawn(async move {
            tokio::time::sleep_until(send_at.into()).await;
            let answer = http.post(url).bearer_auth(token).json(&body).send().await;
            match answer.map(|a| a.status()) {
                Ok(status) if status.as_u16() == 202 => Ok(()),
                Ok(status) => Err(format!("POST /api/chat answered {status}")),
                Err(error) => Err(format!("POST /api/chat failed: {error}")),
            }
        }));
        subscribers.push(tokio::spawn(follow(
            ready.socket,
            ready.conversation.seq,
            args.warmup_tokens,
            progress.clone(),
            deadline,
        )));
    }

    let mut errors = Vec::new();
    let window = measure(args, period, &progress, deadline).await;
    for send in sends {
        if let Err(error) = send.await.context("a send panicked")? {
            errors.push(error);
        }
    }
    let mut seq_faults = SeqFaults::default();
    let mut latency = Histogram::default();
    let (mut tokens_missing, mut unfinished, mut ended_in_window) = (0i64, 0, 0);
    for subscriber in subscribers {
        let followed = subscriber.await.context("a subscriber panicked")?;
        seq_faults.add(&followed.seqs);
        latency.merge(&followed.latency);
        errors.extend(followed.errors);
        match (followed.ended, followed.completion_tokens) {
            (false, _) => unfinished += 1,
            (true, Some(expected)) => tokens_missing += expected as i64 - followed.tokens as i64,
            (true, None) => errors.push("a reply ended without done".into()),
        }
        ended_in_window += usize::from(followed.ended_in_window);
    }
    let window = match window {
        Ok(window) => window,
        Err(error) => {
            errors.push(error.to_string());
            Window::default()
        }
    };
    let cpu_total: f64 = window.cpu.iter().map(|p| p.secs).sum();
    let error_count = errors.len();
    errors.truncate(10);
    Ok(StreamReport {
        nodes: targets.iter().map(Target::to_string).collect(),
        conversations: args.clients,
        tokens_per_second_per_reply: args.rate,
        warmup_tokens: args.warmup_tokens,
        measured_tokens: args.measured_tokens,
        offered_tokens_per_second: args.clients as f64 * args.rate,
        window_secs: window.secs,
        tokens_in_window: window.tokens,
        deltas_in_window: window.deltas,
        delivered_tokens_per_second: if window.secs > 0.0 {
            window.tokens as f64 / window.secs
        } else {
            0.0
        },
        latency_ms: latency.summary(),
        seq_faults,
        tokens_missing,
        replies_unfinished: unfinished,
        replies_ended_in_window: ended_in_window,
        cpu_us_per_token: (window.tokens > 0 && !window.cpu.is_empty())
            .then(|| cpu_total * 1e6 / window.tokens as f64),
        cpu_secs: window.cpu,
        error_count,
        errors,
    })
}

/// Guest and conversation on the generating node, subscriber on the other.
async fn prepare(i: usize, targets: &[Target], http: &reqwest::Client) -> anyhow::Result<Ready> {
    let generating = (i + 1) % targets.len();
    let (guest, conversation) = setup::guest_with_conversation(&targets[generating], http).await?;
    let mut socket = Socket::connect(&targets[i % targets.len()].websocket(&guest.token)).await?;
    setup::subscribe(&mut socket, &conversation).await?;
    Ok(Ready {
        socket,
        conversation,
        token: guest.token,
        generating,
    })
}

#[derive(Default)]
struct Window {
    secs: f64,
    tokens: u64,
    deltas: u64,
    cpu: Vec<ProcessCpu>,
}

/// Waits for every subscriber's warm-up, then measures T token periods.
async fn measure(
    args: &LoadArgs,
    period: Duration,
    progress: &Progress,
    deadline: Instant,
) -> anyhow::Result<Window> {
    while progress.warmed.load(Ordering::Acquire) < args.clients {
        tokio::select! {
            () = progress.warmed_changed.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {
                bail!(
                    "only {} of {} subscribers had their warm-up tokens by the deadline",
                    progress.warmed.load(Ordering::Acquire),
                    args.clients
                );
            }
        }
    }
    let before = procstat::sample(&args.pid)?;
    let (tokens, deltas) = (
        progress.tokens.load(Ordering::Acquire),
        progress.deltas.load(Ordering::Acquire),
    );
    let opened = Instant::now();
    progress.measuring.store(true, Ordering::Release);
    let closes = (opened + period * args.measured_tokens as u32).min(deadline);
    tokio::time::sleep_until(closes.into()).await;
    progress.measuring.store(false, Ordering::Release);
    let after = procstat::sample(&args.pid)?;
    let secs = opened.elapsed().as_secs_f64();
    Ok(Window {
        secs,
        tokens: progress.tokens.load(Ordering::Acquire) - tokens,
        deltas: progress.deltas.load(Ordering::Acquire) - deltas,
        cpu: cpu_of(&before, &after),
    })
}

fn cpu_of(before: &[Sample], after: &[Sample]) -> Vec<ProcessCpu> {
    before
        .iter()
        .zip(procstat::cpu_between(before, after))
        .map(|(sample, spent)| ProcessCpu {
            pid: sample.pid,
            secs: spent.as_secs_f64(),
        })
        .collect()
}

/// Reads one conversation until its reply ends or the deadline passes.
async fn follow(
    mut socket: Socket,
    head: u64,
    warmup: u64,
    progress: Arc<Progress>,
    deadline: Instant,
) -> Followed {
    let mut followed = Followed {
        seqs: SeqFaults::default(),
        tokens: 0,
        completion_tokens: None,
        ended: false,
        ended_in_window: false,
        latency: Histogram::default(),
        errors: Vec::new(),
    };
    let mut seqs = SeqCheck::after(head);
    let mut warmed = false;
    loop {
        let (seq, ts, event) = match socket.next(deadline).await {
            Ok(ServerFrame::Event { seq, ts, event, .. }) => (seq, ts, event),
            Ok(_) => continue,
            Err(Stop::Deadline) => break,
            Err(Stop::Closed(code)) => {
                followed
                    .errors
                    .push(format!("subscriber socket closed (code {code:?})"));
                break;
            }
        };
        let received_ms = now_millis();
        seqs.observe(seq);
        match event {
            Event::Delta { text, .. } => {
                let tokens = tokens_in(&text);
                followed.tokens += tokens;
                progress.tokens.fetch_add(tokens, Ordering::AcqRel);
                progress.deltas.fetch_add(1, Ordering::AcqRel);
                if !warmed && followed.tokens >= warmup {
                    warmed = true;
                    progress.warmed.fetch_add(1, Ordering::AcqRel);
                    progress.warmed_changed.notify_one();
                }
                if progress.measuring.load(Ordering::Acquire) {
                    let micros = ((received_ms - ts).max(0.0) * 1000.0).round() as u64;
                    followed.latency.record(micros);
                }
            }
            Event::Done { usage, .. } => {
                followed.completion_tokens = usage.map(|u| u.completion_tokens);
                followed.ended = true;
            }
            Event::Cancelled { .. } | Event::Failed { .. } => {
                followed
                    .errors
                    .push(format!("a reply ended early: {event:?}"));
                followed.ended = true;
            }
            Event::Message { .. } => {}
        }
        if followed.ended {
            followed.ended_in_window = progress.measuring.load(Ordering::Acquire);
            break;
        }
    }
    if !warmed {
        // The run cannot measure without this one; let it stop waiting.
        progress.warmed_changed.notify_one();
    }
    followed.seqs = seqs.finish();
    socket.close().await;
    followed
}

/// The demo model's tokens in a delta: a token is a word with the
/// whitespace before it, and deltas hold whole tokens.
fn tokens_in(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

impl StreamReport {
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chatstream load (stream) → {}: {} conversations × {} tokens/s = {} offered; warm-up {}, measured {} tokens",
            self.nodes.join(","),
            self.conversations,
            self.tokens_per_second_per_reply,
            self.offered_tokens_per_second,
            self.warmup_tokens,
            self.measured_tokens
        );
        let _ = writeln!(
            out,
            "window {:.2} s: {} tokens in {} deltas, {:.0} tokens/s delivered",
            self.window_secs,
            self.tokens_in_window,
            self.deltas_in_window,
            self.delivered_tokens_per_second
        );
        let p = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms (receive − ts): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  ({} deltas)",
            p.p50, p.p95, p.p99, p.max, p.count
        );
        let cpu: Vec<String> = self
            .cpu_secs
            .iter()
            .map(|c| format!("{}: {:.2} s", c.pid, c.secs))
            .collect();
        let _ = writeln!(
            out,
            "cpu {}; {} µs per token",
            cpu.join(", "),
            self.cpu_us_per_token
                .map_or("n/a".to_owned(), |us| format!("{us:.1}"))
        );
        let f = &self.seq_faults;
        let _ = writeln!(
            out,
            "checks: {} lost, {} repeated, {} out of order, {} tokens missing, {} replies unfinished, {} ended in the window, {} errors",
            f.lost,
            f.repeated,
            f.out_of_order,
            self.tokens_missing,
            self.replies_unfinished,
            self.replies_ended_in_window,
            self.error_count
        );
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }
}
