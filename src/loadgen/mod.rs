//! `chatstream load`: a load generator for a running node or cluster.
//!
//! Three workloads (`--workload`). `turns`, the default: N clients, each a
//! guest with its own conversation, send K messages one after another over
//! a WebSocket, waiting for each reply to end; W watchers per conversation
//! (more sockets of the same user) follow it, to load the fan-out. `stream`
//! (`streaming.rs`): replies at a model's pace across nodes, measured in a
//! steady window with the servers' CPU per token. `idle` (`idle.rs`): what
//! an idle connection costs in memory and how fast one is welcomed.
//!
//! For `turns`: Everything a socket receives is counted and timed; the report
//! gives rates over the measured window (from the first `send` to the last
//! socket done) and latency percentiles of append→screen (receive wall time
//! minus the event's `ts`; client and server share this machine's clock) and
//! send→first delta.
//!
//! It only targets loopback addresses (`target.rs`), and every run is
//! bounded: counts are capped, and the run stops by itself at
//! `--duration-secs` (setup has its own limit).
//!
//! - `target.rs`: the loopback-only target URL.
//! - `setup.rs`: guest, conversation and subscribed sockets, before the clock starts.
//! - `socket.rs`: one WebSocket speaking `protocol` frames, counting what it receives.
//! - `sender.rs`, `watcher.rs`: the two kinds of client.
//! - `tally.rs`, `histogram.rs`: counters and latency histograms.
//! - `report.rs`: the figures, as a table or JSON.
//! - `streaming.rs`, `idle.rs`: the other two workloads, each with its report.
//! - `sequence.rs`: lost, repeated and reordered seqs, named apart.
//! - `procstat.rs`: CPU time and resident memory of the measured processes.

mod histogram;
mod idle;
mod procstat;
mod report;
mod sender;
mod sequence;
mod setup;
mod socket;
mod streaming;
mod tally;
mod target;
mod watcher;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{StreamExt, stream};
use tokio::sync::watch;

pub use histogram::Percentiles;
pub use idle::IdleReport;
pub use report::{Rates, Report, Shape};
pub use sequence::SeqFaults;
pub use streaming::StreamReport;
pub use tally::EventCounts;
pub use target::Target;

use sender::Sender;
use tally::Tally;
use watcher::Watcher;

/// Most clients (conversations) one run may have.
pub const MAX_CLIENTS: usize = 5_000;
/// Most messages one client may send.
pub const MAX_MESSAGES: usize = 10_000;
/// Most WebSockets one run may open (senders and watchers).
pub const MAX_CONNECTIONS: usize = 10_000;
/// The longest measured window.
pub const MAX_DURATION_SECS: u64 = 600;
/// How long getting every client ready may take: less than twice the
/// default heartbeat, after which the first sockets, silent meanwhile, would
/// be closed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(40);
/// Clients being set up at once.
const SETUP_CONCURRENCY: usize = 32;

/// What the load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Clients sending messages one after another, with watchers.
    Turns,
    /// Replies at `--rate` tokens a second, measured in a steady window.
    Stream,
    /// Connections that only wait: memory and connect time.
    Idle,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// `turns`, `stream` or `idle`.
    #[arg(long, value_enum, default_value_t = Workload::Turns)]
    pub workload: Workload,

    /// The node or proxy to load (http://ADDRESS:PORT); loopback addresses
    /// only. Several nodes, comma-separated, make the load cross them:
    /// client i sends to node i mod N (which generates its replies) and its
    /// watchers follow on node i + 1 mod N, so that every event they get
    /// travels between nodes through Redis.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    pub url: Vec<String>,

    /// Concurrent clients, each with its own guest and conversation (for
    /// `stream`, the conversations; for `idle`, the connections).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub clients: usize,

    /// Messages each client sends, one after another, each after the
    /// previous reply ended.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub messages: usize,

    /// Extra sockets per conversation that only follow it (fan-out).
    #[arg(long, short = 'w', default_value_t = 0)]
    pub watchers: usize,

    /// The run stops after this many seconds even if turns remain.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: u64,

    /// The text of every message.
    #[arg(long, default_value = "How do actors work?")]
    pub content: String,

    /// `stream`: the tokens a second of each reply, which the nodes' demo
    /// model must be set to (`DEMO_TOKEN_DELAY_MS` = 1000 / rate); the
    /// sends are staggered over one token period.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// `stream`: tokens every subscriber receives before the measured window.
    #[arg(long, default_value_t = 20)]
    pub warmup_tokens: u64,

    /// `stream`: the measured window lasts this many token periods (the
    /// nodes' `DEMO_REPLY_TOKENS` must leave room for warm-up, window and
    /// the stagger).
    #[arg(long, default_value_t = 100)]
    pub measured_tokens: u64,

    /// Processes on this machine (nodes, `redis-server`) whose CPU time
    /// (`stream`) and resident memory (`idle`) are measured, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// A small run against `url`, with the flags' defaults.
    pub fn new(url: impl Into<String>) -> LoadArgs {
        LoadArgs {
            workload: Workload::Turns,
            rate: 20.0,
            warmup_tokens: 20,
            measured_tokens: 100,
            pid: Vec::new(),
            url: vec![url.into()],
            clients: 10,
            messages: 10,
            watchers: 0,
            duration_secs: 30,
            content: "How do actors work?".into(),
            json: false,
        }
    }

    fn connections(&self) -> usize {
        self.clients.saturating_mul(self.watchers.saturating_add(1))
    }

    fn check(&self) -> anyhow::Result<()> {
        let most = match self.workload {
            Workload::Idle => MAX_CONNECTIONS,
            Workload::Turns | Workload::Stream => MAX_CLIENTS,
        };
        if !(1..=most).contains(&self.clients) {
            bail!("--clients must be 1 to {most}");
        }
        if self.measured_tokens == 0 || self.measured_tokens > 100_000 {
            bail!("--measured-tokens must be 1 to 100000");
        }
        if !(1..=MAX_MESSAGES).contains(&self.messages) {
            bail!("--messages must be 1 to {MAX_MESSAGES}");
        }
        if self.connections() > MAX_CONNECTIONS {
            bail!("clients × (1 + watchers) must be at most {MAX_CONNECTIONS}");
        }
        if !(1..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            bail!("--duration-secs must be 1 to {MAX_DURATION_SECS}");
        }
        if self.url.is_empty() {
            bail!("--url must name at least one node");
        }
        if self.content.is_empty() {
            bail!("--content must not be empty");
        }
        Ok(())
    }
}

/// The `chatstream load` command: runs and prints the report.
pub async fn main(args: LoadArgs) -> anyhow::Result<()> {
    let (json, table) = match args.workload {
        Workload::Turns => {
            let report = run(&args).await?;
            (report.to_json(), report.to_table())
        }
        Workload::Stream => {
            let report = run_stream(&args).await?;
            (serde_json::to_string_pretty(&report)?, report.to_table())
        }
        Workload::Idle => {
            let report = run_idle(&args).await?;
            (serde_json::to_string_pretty(&report)?, report.to_table())
        }
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{table}");
    }
    Ok(())
}

/// Runs the `stream` workload.
pub async fn run_stream(args: &LoadArgs) -> anyhow::Result<StreamReport> {
    args.check()?;
    streaming::run(args, &targets(args)?).await
}

/// Runs the `idle` workload.
pub async fn run_idle(args: &LoadArgs) -> anyhow::Result<IdleReport> {
    args.check()?;
    idle::run(args, &targets(args)?).await
}

fn targets(args: &LoadArgs) -> anyhow::Result<Vec<Target>> {
    args.url.iter().map(|url| Target::parse(url)).collect()
}

/// Runs the load and reports what was received.
pub async fn run(args: &LoadArgs) -> anyhow::Result<Report> {
    args.check()?;
    let targets = targets(args)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let prepared = tokio::time::timeout(
        SETUP_TIMEOUT,
        stream::iter(0..args.clients)
            .map(|i| {
                let sending = &targets[i % targets.len()];
                let watching = &targets[(i + 1) % targets.len()];
                setup::prepare(sending, watching, &http, args.watchers)
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>(),
    )
    .await
    .context("setting up the clients took too long")?
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()
    .context("setting up a client")?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut conversations = Vec::with_capacity(prepared.len());
    for mut ready in prepared {
        // Frames of the setup (welcome, subscribed) are not part of the load.
        ready.sender.tally = Tally::default();
        let (finished, finished_rx) = watch::channel(None);
        let sender = tokio::spawn(
            Sender {
                socket: ready.sender,
                conversation_id: ready.conversation_id,
                content: args.content.clone(),
                messages: args.messages,
                finished,
            }
            .run(deadline),
        );
        let watchers: Vec<_> = ready
            .watchers
            .into_iter()
            .map(|mut socket| {
                socket.tally = Tally::default();
                tokio::spawn(
                    Watcher {
                        socket,
                        finished: finished_rx.clone(),
                    }
                    .run(deadline),
                )
            })
            .collect();
        conversations.push((sender, watchers));
    }

    let mut total = Tally::default();
    let (mut appended, mut expected) = (0, 0);
    let mut last_done = started;
    for (sender, watchers) in conversations {
        let (tally, done_at) = sender.await.context("a sender panicked")?;
        // The sender saw its conversation from seq 1: its last seq is how
        // many events the conversation's log got.
        let events = tally.last_seq;
        appended += events;
        expected += events * (1 + watchers.len() as u64);
        last_done = last_done.max(done_at);
        total.merge(&tally);
        for watcher in watchers {
            let (tally, done_at) = watcher.await.context("a watcher panicked")?;
            last_done = last_done.max(done_at);
            total.merge(&tally);
        }
    }
    let stopped_by_deadline = last_done >= deadline;
    let elapsed = last_done.min(deadline).duration_since(started);
    let shape = Shape {
        target: targets
            .iter()
            .map(Target::to_string)
            .collect::<Vec<_>>()
            .join(","),
        clients: args.clients,
        messages_per_client: args.messages,
        watchers_per_conversation: args.watchers,
        connections: args.connections(),
        duration_limit_secs: args.duration_secs as f64,
    };
    Ok(Report::new(
        shape,
        &total,
        appended,
        expected,
        elapsed.as_secs_f64(),
        stopped_by_deadline,
    ))
}
