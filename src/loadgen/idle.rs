//! The idle workload (`--workload idle`): what a connection that only
//! waits costs a node.
//!
//! N guests, each with a conversation of its own (created first, over HTTP,
//! spread over the nodes like the connections). Then, one at a time, each
//! opens a socket on node i mod N, is timed from the connect to its
//! `welcome`, and subscribes to its conversation; once open, the socket is
//! kept alive by a task of its own (pings, as a browser tab would) until the
//! run ends. The measured processes' (`--pid`) resident memory is read
//! before the first socket and after the last one's subscription: its
//! growth over N is the memory of one idle, subscribed connection.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::sync::watch;

use super::histogram::{Histogram, Percentiles};
use super::procstat;
use super::setup;
use super::socket::{Socket, Stop};
use super::target::Target;
use super::{LoadArgs, SETUP_CONCURRENCY};

/// How long creating every guest and conversation may take.
const GUESTS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub nodes: Vec<String>,
    pub connections: usize,
    /// Connect (TCP and upgrade) to `welcome`, one connection at a time.
    pub connect_to_welcome_ms: Percentiles,
    /// Resident memory of each measured process before and after, KiB.
    pub rss_before_kib: Vec<u64>,
    pub rss_after_kib: Vec<u64>,
    /// The growth of all measured processes over the connections.
    pub rss_per_connection_kib: Option<f64>,
    /// Sockets the server closed while they were held open.
    pub closed_early: usize,
    pub error_count: usize,
    pub errors: Vec<String>,
}

pub async fn run(args: &LoadArgs, targets: &[Target]) -> anyhow::Result<IdleReport> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let guests = tokio::time::timeout(
        GUESTS_TIMEOUT,
        stream::iter(0..args.clients)
            .map(|i| setup::guest_with_conversation(&targets[i % targets.len()], &http))
            .buffered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>(),
    )
    .await
    .context("creating the guests took too long")?
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()
    .context("creating a guest")?;

    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let before = procstat::sample(&args.pid)?;
    let (stop, stopped) = watch::channel(false);
    let mut held = Vec::with_capacity(guests.len());
    let mut connect = Histogram::default();
    let mut errors = Vec::new();
    for (i, (guest, conversation)) in guests.iter().enumerate() {
        if Instant::now() >= deadline {
            errors.push(format!("the deadline passed after {i} connections"));
            break;
        }
        let url = targets[i % targets.len()].websocket(&guest.token);
        let began = Instant::now();
        let mut socket = match Socket::connect(&url).await {
            Ok(socket) => socket,
            Err(error) => {
                errors.push(format!("connection {i}: {error:#}"));
                continue;
            }
        };
        connect.record(began.elapsed().as_micros() as u64);
        if let Err(error) = setup::subscribe(&mut socket, conversation).await {
            errors.push(format!("connection {i}: {error:#}"));
            continue;
        }
        held.push(tokio::spawn(hold(socket, stopped.clone(), deadline)));
    }
    let after = procstat::sample(&args.pid)?;
    let opened = held.len();
    let _ = stop.send(true);
    let mut closed_early = 0;
    for socket in held {
        if !socket.await.context("a held socket panicked")? {
            closed_early += 1;
        }
    }
    let grown: i64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.rss_kib as i64 - b.rss_kib as i64)
        .sum();
    let error_count = errors.len();
    errors.truncate(10);
    Ok(IdleReport {
        nodes: targets.iter().map(Target::to_string).collect(),
        connections: opened,
        connect_to_welcome_ms: connect.summary(),
        rss_before_kib: before.iter().map(|s| s.rss_kib).collect(),
        rss_after_kib: after.iter().map(|s| s.rss_kib).collect(),
        rss_per_connection_kib: (opened > 0 && !before.is_empty())
            .then(|| grown as f64 / opened as f64),
        closed_early,
        error_count,
        errors,
    })
}

/// Keeps a socket open (its heartbeat answered) until the run stops; false
/// if the server closed it first.
async fn hold(mut socket: Socket, mut stopped: watch::Receiver<bool>, deadline: Instant) -> bool {
    let open = loop {
        tokio::select! {
            frame = socket.next(deadline) => match frame {
                Ok(_) => {}
                Err(Stop::Deadline) => break true,
                Err(Stop::Closed(_)) => break false,
            },
            _ = stopped.wait_for(|stop| *stop) => break true,
        }
    };
    socket.close().await;
    open
}

impl IdleReport {
    pub fn to_table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let p = &self.connect_to_welcome_ms;
        let _ = writeln!(
            out,
            "chatstream load (idle) → {}: {} connections, each its own guest and subscribed conversation",
            self.nodes.join(","),
            self.connections
        );
        let _ = writeln!(
            out,
            "connect → welcome ms, one at a time: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
            p.p50, p.p95, p.p99, p.max
        );
        let _ = writeln!(
            out,
            "rss KiB before {:?}, after {:?}: {} KiB per connection",
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_per_connection_kib
                .map_or("n/a".to_owned(), |kib| format!("{kib:.2}"))
        );
        let _ = writeln!(
            out,
            "checks: {} closed early, {} errors",
            self.closed_early, self.error_count
        );
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }
}
