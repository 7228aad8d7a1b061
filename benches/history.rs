//! Durable history benchmarks: reading a long conversation, listing a user's
//! conversations, and searching messages, on SQLite and PostgreSQL, through
//! the store alone and through a real node (HTTP and WebSocket).
//!
//! A plain `harness = false` binary like `hot_path`: each figure is a
//! latency distribution (p50, p99) of a few dozen to a few hundred
//! operations, timed with `std::time`; the variants compared in a table
//! (SQLite against PostgreSQL, a conversation the engine holds against one
//! restored from the store) are measured alternately, one sample of each in
//! turn, so that drift on a shared machine hits them alike.
//!
//!     cargo bench --bench history                  # everything, 5 to 10 min
//!     cargo bench --bench history -- conversation  # sections whose name matches:
//!                                                  #   conversation, listing, search
//!     cargo bench --bench history -- serve-memory 127.0.0.1:PORT
//!         # a node on the memory engine without a durable store (what a node
//!         # ran before durable history), settings from the environment like
//!         # `chatstream serve`: the "off" variant of `load_matrix.sh durable`
//!
//! Environment:
//! - `CHATSTREAM_TEST_POSTGRES`: PostgreSQL admin URL (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`); the bench creates its
//!   own databases `chatstream_bench_<random>_<section>` and drops them at
//!   the end. Unreachable: the PostgreSQL columns are left out.
//! - `HISTORY_BENCH_QUICK=1`: small sizes, to try the bench out.
//! - `HISTORY_BENCH_MAX_LOAD` (default 1.0), `HISTORY_BENCH_IDLE_WAIT_SECS`
//!   (default 600): before each measured block the bench waits until the
//!   1-minute load average is under the first, at most the second.
//! - `HISTORY_BENCH_KEEP=1`: keep the SQLite files and PostgreSQL databases
//!   (their paths and URLs are printed), to inspect query plans afterwards.
//!
//! The data are generated with a fixed seed: English and Vietnamese text,
//! words drawn from a Zipf distribution over a vocabulary of common words
//! followed by a long tail of rare ones, messages of 300 to 1,500 bytes.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chatstream::config::Settings;
use chatstream::engine::{ConversationInfo, Engine, MemoryEngine, Snapshot};
use chatstream::node::Node;
use chatstream::protocol::UserId;
use chatstream::protocol::{ConversationDetail, Message, MessageStatus, Role, Usage};
use chatstream::store::{
    PostgresStore, SqliteStore, Store, StoreWrite, StoredConversation, StoredMessage,
};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use sqlx::{Connection as _, Executor as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

const AUTH_SECRET: &str = "bench-auth-secret-of-at-least-32-bytes";
const ADMIN_TOKEN: &str = "bench-admin-token-of-at-least-32-bytes";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Writes per `Store::apply` when filling.
const FILL_BATCH: usize = 500;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if args.first().map(String::as_str) == Some("serve-memory") {
        let bind = args.get(1).context("serve-memory ADDRESS:PORT")?;
        return runtime.block_on(serve_memory(bind));
    }
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // the measurements take minutes and are for `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        println!("history benchmarks: run them with `cargo bench --bench history`");
        return Ok(());
    }
    let filter = args.first().cloned();
    runtime.block_on(run(filter))
}

/// A node on the memory engine without a durable store, configured from the
/// environment as `chatstream serve` is; runs until SIGTERM or SIGINT.
async fn serve_memory(bind: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let mut settings = Settings::defaults();
    settings.bind = bind.to_owned();
    settings.redis_url = None;
    settings.database_url = None;
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new(settings.history_size));
    let providers = chatstream::node::default_providers(&settings)?;
    let node = Node::start_with(settings, engine, None, providers).await?;
    println!(
        "memory node without a store {} serving on http://{}",
        node.node_id(),
        node.addr
    );
    node.run_until_signal().await
}

// ---------------------------------------------------------------------------
// The run: sizes, stores, sections.

#[derive(Clone, Copy)]
struct Sizes {
    /// Conversations of `conversation_messages` messages (half of them read
    /// cold over HTTP, half over WebSocket, in each restart round).
    long_conversations: usize,
    conversation_messages: usize,
    restart_rounds: usize,
    held_samples: usize,
    /// Listing: the user's conversations, and other users × their conversations.
    listed: usize,
    other_users: usize,
    other_conversations_each: usize,
    /// Search: messages per conversation, the searcher's conversations, other
    /// users × their conversations.
    search_conversation_messages: usize,
    searcher_conversations: usize,
    search_other_users: usize,
    search_other_conversations_each: usize,
    store_samples: usize,
    walks: usize,
    search_samples: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            long_conversations: 40,
            conversation_messages: 1_000,
            restart_rounds: 3,
            held_samples: 200,
            listed: 10_000,
            other_users: 2_000,
            other_conversations_each: 10,
            search_conversation_messages: 100,
            searcher_conversations: 100,
            search_other_users: 300,
            search_other_conversations_each: 3,
            store_samples: 300,
            walks: 20,
            search_samples: 60,
        }
    }

    fn quick() -> Sizes {
        Sizes {
            long_conversations: 6,
            conversation_messages: 1_000,
            restart_rounds: 1,
            held_samples: 20,
            listed: 2_000,
            other_users: 100,
            other_conversations_each: 10,
            search_conversation_messages: 100,
            searcher_conversations: 10,
            search_other_users: 30,
            search_other_conversations_each: 3,
            store_samples: 30,
            walks: 3,
            search_samples: 10,
        }
    }
}

struct Bench {
    sizes: Sizes,
    scratch: PathBuf,
    admin_url: Option<String>,
    /// PostgreSQL databases created, dropped at the end.
    databases: Vec<String>,
    rows: Vec<Row>,
    notes: Vec<String>,
    max_load: f64,
    idle_wait: Duration,
}

/// One measured figure: a case, a variant (the column), its samples.
struct Row {
    section: &'static str,
    case: String,
    variant: &'static str,
    stats: Stats,
}

async fn run(filter: Option<String>) -> anyhow::Result<()> {
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let quick = std::env::var("HISTORY_BENCH_QUICK").is_ok_and(|v| v == "1");
    let keep = std::env::var("HISTORY_BENCH_KEEP").is_ok_and(|v| v == "1");
    let scratch = std::env::temp_dir().join(format!(
        "chatstream-history-bench-{}",
        &Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&scratch)?;
    let admin_url = std::env::var("CHATSTREAM_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned());
    let admin_url = match tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::PgConnection::connect(&admin_url),
    )
    .await
    {
        Ok(Ok(connection)) => {
            connection.close().await.ok();
            Some(admin_url)
        }
        Ok(Err(error)) => {
            println!("PostgreSQL unreachable at {admin_url} ({error}): SQLite only");
            None
        }
        Err(_) => {
            println!("PostgreSQL did not answer at {admin_url}: SQLite only");
            None
        }
    };
    let mut bench = Bench {
        sizes: if quick { Sizes::quick() } else { Sizes::full() },
        scratch: scratch.clone(),
        admin_url,
        databases: Vec::new(),
        rows: Vec::new(),
        notes: Vec::new(),
        max_load: env_f64("HISTORY_BENCH_MAX_LOAD", 1.0),
        idle_wait: Duration::from_secs(env_f64("HISTORY_BENCH_IDLE_WAIT_SECS", 600.0) as u64),
    };
    println!(
        "history benchmarks ({} CPUs, {}, scratch {})",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if quick { "quick sizes" } else { "full sizes" },
        scratch.display()
    );
    let outcome = std::panic::AssertUnwindSafe(async {
        if wanted("conversation") {
            bench.conversation().await?;
        }
        if wanted("listing") {
            bench.listing().await?;
        }
        if wanted("search") {
            bench.search().await?;
        }
        anyhow::Ok(())
    })
    .catch_unwind()
    .await;
    bench.print_tables();
    if keep {
        println!("\nkept: {}", scratch.display());
        for name in &bench.databases {
            if let Some(admin) = &bench.admin_url {
                println!("kept: {}", with_database(admin, name));
            }
        }
    } else {
        bench.drop_databases().await;
        let _ = std::fs::remove_dir_all(&scratch);
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Bench {
    /// A fresh PostgreSQL database for a section, and a store on it.
    async fn postgres(
        &mut self,
        section: &str,
    ) -> anyhow::Result<Option<(String, Arc<dyn Store>)>> {
        let Some(admin) = self.admin_url.clone() else {
            return Ok(None);
        };
        let name = format!(
            "chatstream_bench_{}_{section}",
            &Uuid::new_v4().simple().to_string()[..10]
        );
        let mut connection = sqlx::PgConnection::connect(&admin).await?;
        connection
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("creating the database {name}"))?;
        connection.close().await.ok();
        self.databases.push(name.clone());
        let url = with_database(&admin, &name);
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).await?);
        Ok(Some((url, store)))
    }

    async fn drop_databases(&mut self) {
        let Some(admin) = &self.admin_url else {
            return;
        };
        let Ok(mut connection) = sqlx::PgConnection::connect(admin).await else {
            println!("could not reach PostgreSQL to drop {:?}", self.databases);
            return;
        };
        for name in self.databases.drain(..) {
            if let Err(error) = connection
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await
            {
                println!("could not drop {name}: {error}");
            }
        }
        connection.close().await.ok();
    }

    /// Waits until the machine's 1-minute load average is under the limit
    /// (at most `idle_wait`), and says what it found.
    async fn wait_idle(&mut self, what: &str) {
        let started = Instant::now();
        let mut load = loadavg();
        while load >= self.max_load && started.elapsed() < self.idle_wait {
            tokio::time::sleep(Duration::from_secs(5)).await;
            load = loadavg();
        }
        let waited = started.elapsed().as_secs();
        if load >= self.max_load {
            let note = format!(
                "{what}: measured with a 1-minute load average of {load:.2} after waiting {waited} s for it to fall under {:.1}",
                self.max_load
            );
            println!("warning: {note}");
            self.notes.push(note);
        } else {
            println!("-- {what} (load average {load:.2}, waited {waited} s)");
        }
    }

    fn record(
        &mut self,
        section: &'static str,
        case: &str,
        variant: &'static str,
        samples: Vec<Duration>,
    ) {
        let stats = Stats::of(samples);
        println!("   {case} [{variant}]: {stats}");
        self.rows.push(Row {
            section,
            case: case.to_owned(),
            variant,
            stats,
        });
    }

    fn print_tables(&self) {
        let mut sections: Vec<&'static str> = Vec::new();
        for row in &self.rows {
            if !sections.contains(&row.section) {
                sections.push(row.section);
            }
        }
        println!();
        for section in sections {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.section == section).collect();
            let mut variants: Vec<&'static str> = Vec::new();
            let mut cases: Vec<&str> = Vec::new();
            for row in &rows {
                if !variants.contains(&row.variant) {
                    variants.push(row.variant);
                }
                if !cases.contains(&row.case.as_str()) {
                    cases.push(&row.case);
                }
            }
            println!("## {section}\n");
            let mut header = String::from("| case |");
            let mut rule = String::from("|---|");
            for variant in &variants {
                let _ = write!(header, " {variant}: p50 / p99 ms (n) |");
                rule.push_str("---|");
            }
            println!("{header}\n{rule}");
            for case in cases {
                let mut line = format!("| {case} |");
                for variant in &variants {
                    match rows
                        .iter()
                        .find(|r| r.case == case && r.variant == *variant)
                    {
                        Some(row) => {
                            let s = &row.stats;
                            let _ = write!(line, " {} / {} ({}) |", ms(s.p50), ms(s.p99), s.n);
                        }
                        None => line.push_str(" — |"),
                    }
                }
                println!("{line}");
            }
            println!();
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

// ---------------------------------------------------------------------------
// Timing.

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    mean: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let n = samples.len();
        let at = |q: f64| {
            if n == 0 {
                Duration::ZERO
            } else {
                samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
            }
        };
        Stats {
            n,
            p50: at(0.5),
            p99: at(0.99),
            mean: samples.iter().sum::<Duration>() / n.max(1) as u32,
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n={} p50={} p99={} mean={} max={} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.mean),
            ms(self.max)
        )
    }
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One operation to time: given the iteration number, it runs once and
/// answers how long the part that counts took.
type Job = Box<dyn Fn(usize) -> BoxFuture<'static, anyhow::Result<Duration>> + Send + Sync>;

fn job<F, Fut>(f: F) -> Job
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Box::new(move |i| {
        let fut = f(i);
        async move {
            let started = Instant::now();
            fut.await?;
            Ok(started.elapsed())
        }
        .boxed()
    })
}

/// Runs the jobs in turn (one sample of each, the order reversed every other
/// round), `warmup` rounds untimed, then up to `rounds` rounds or `budget`.
async fn alternate(
    jobs: &[Job],
    warmup: usize,
    rounds: usize,
    budget: Duration,
) -> anyhow::Result<Vec<Vec<Duration>>> {
    for i in 0..warmup {
        for job in jobs {
            job(i).await?;
        }
    }
    let mut samples = vec![Vec::with_capacity(rounds); jobs.len()];
    let started = Instant::now();
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for k in order {
            samples[k].push(jobs[k](warmup + round).await?);
        }
        if round >= 10 && started.elapsed() > budget {
            break;
        }
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------
// Generated text.

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    English,
    Vietnamese,
}

const ENGLISH: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "for",
    "on",
    "with",
    "as",
    "are",
    "this",
    "be",
    "at",
    "or",
    "by",
    "from",
    "can",
    "an",
    "not",
    "your",
    "will",
    "if",
    "which",
    "when",
    "we",
    "each",
    "more",
    "one",
    "all",
    "there",
    "they",
    "use",
    "so",
    "how",
    "what",
    "about",
    "into",
    "than",
    "then",
    "them",
    "these",
    "some",
    "would",
    "other",
    "time",
    "has",
    "also",
    "only",
    "new",
    "data",
    "actor",
    "message",
    "server",
    "node",
    "stream",
    "token",
    "request",
    "reply",
    "database",
    "query",
    "index",
    "cache",
    "thread",
    "process",
    "function",
    "value",
    "error",
    "system",
    "network",
    "client",
    "socket",
    "memory",
    "latency",
    "throughput",
    "buffer",
    "queue",
    "lock",
    "transaction",
    "model",
    "search",
    "history",
    "conversation",
    "question",
    "answer",
    "example",
    "code",
    "test",
    "file",
    "user",
    "page",
    "rust",
    "async",
    "runtime",
    "task",
    "future",
    "channel",
    "state",
    "event",
    "log",
    "write",
    "read",
    "table",
    "row",
    "column",
    "key",
    "string",
    "vector",
    "type",
    "trait",
    "struct",
    "method",
    "call",
    "return",
    "result",
    "option",
    "compile",
    "build",
    "release",
    "leak",
    "performance",
    "benchmark",
    "supervisor",
    "restart",
    "failure",
    "retry",
    "timeout",
    "connection",
    "pool",
    "limit",
    "cursor",
    "snapshot",
    "epoch",
    "sequence",
    "order",
    "gap",
    "because",
    "should",
    "could",
    "might",
    "first",
    "second",
    "before",
    "after",
    "while",
    "where",
    "why",
    "here",
    "just",
    "like",
    "make",
    "need",
    "know",
    "see",
    "way",
    "does",
    "work",
    "works",
    "good",
    "better",
    "simple",
    "fast",
    "slow",
    "large",
    "small",
    "case",
    "problem",
    "solution",
    "approach",
    "design",
    "change",
    "version",
    "library",
    "crate",
];

const VIETNAMESE: &[&str] = &[
    "và", "của", "là", "có", "không", "được", "trong", "cho", "các", "một", "những", "này", "với",
    "người", "đã", "để", "khi", "thì", "cũng", "như", "về", "đến", "từ", "ra", "làm", "sẽ",
    "nhiều", "hơn", "theo", "bạn", "tôi", "chúng", "ta", "nếu", "nhưng", "vì", "nên", "mà", "đó",
    "lại", "rất", "còn", "vào", "sau", "trên", "năm", "việc", "phải", "thể", "tiếng", "hệ",
    "thống", "dữ", "liệu", "máy", "chủ", "mạng", "tin", "nhắn", "việt", "trò", "chuyện", "lịch",
    "sử", "tìm", "kiếm", "câu", "hỏi", "trả", "lời", "mô", "hình", "ngôn", "ngữ", "lập", "trình",
    "cơ", "sở", "bộ", "nhớ", "tốc", "độ", "kết", "nối", "dùng", "ứng", "dụng", "phần", "mềm",
    "tính", "thời", "gian", "thực", "hiện", "kiểm", "tra", "lỗi", "đoạn", "mã", "giải", "pháp",
    "luồng", "tác", "nhân", "giám", "sát", "khởi", "động", "lưu", "trữ", "bảng", "chỉ", "mục",
    "truy", "vấn", "kết", "quả", "ví", "dụ", "cách", "hoạt", "đơn", "giản", "nhanh", "chậm", "lớn",
    "nhỏ", "vấn", "đề", "thiết", "kế", "thay", "đổi", "phiên", "bản", "thư", "viện", "hiệu",
    "năng", "đo", "lường", "thử", "nghiệm",
];

/// A word list and its Zipf weights (s = 1): the i-th word has weight 1/(i+1).
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(words: Vec<String>) -> Vocabulary {
        let mut total = 0.0;
        let cumulative = (0..words.len())
            .map(|i| {
                total += 1.0 / (i as f64 + 1.0);
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn sample<'a>(&'a self, rng: &mut StdRng) -> &'a str {
        let total = *self.cumulative.last().unwrap();
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }
}

struct TextGen {
    rng: StdRng,
    english: Vocabulary,
    vietnamese: Vocabulary,
}

impl TextGen {
    fn new(seed: u64) -> TextGen {
        let mut rng = StdRng::seed_from_u64(seed);
        // Long tails of rare words: made-up Latin-looking words for English,
        // syllables with Vietnamese diacritics for Vietnamese.
        let latin = [
            "ka", "lo", "mi", "ren", "tor", "va", "quel", "dis", "ny", "ph", "ar", "ost", "bel",
            "cu", "zan", "ix",
        ];
        let mut english: Vec<String> = ENGLISH.iter().map(|w| (*w).to_owned()).collect();
        let mut seen: HashSet<String> = english.iter().cloned().collect();
        while english.len() < 3_000 {
            let parts = rng.random_range(2..4);
            let word: String = (0..parts)
                .map(|_| latin[rng.random_range(0..latin.len())])
                .collect();
            if seen.insert(word.clone()) {
                english.push(word);
            }
        }
        let onsets = [
            "b", "c", "d", "đ", "g", "h", "kh", "l", "m", "n", "ng", "nh", "ph", "qu", "r", "s",
            "t", "th", "tr", "v", "x",
        ];
        let vowels = [
            "a", "à", "á", "ả", "ã", "ạ", "ă", "ắ", "ằ", "â", "ấ", "ầ", "e", "é", "è", "ê", "ế",
            "ề", "i", "í", "ì", "o", "ó", "ò", "ô", "ố", "ồ", "ơ", "ớ", "ờ", "u", "ú", "ù", "ư",
            "ứ", "ừ", "y", "ý",
        ];
        let codas = ["", "", "n", "ng", "m", "c", "t", "nh", "ch", "i", "o", "u"];
        let mut vietnamese: Vec<String> = VIETNAMESE.iter().map(|w| (*w).to_owned()).collect();
        let mut seen: HashSet<String> = vietnamese.iter().cloned().collect();
        while vietnamese.len() < 3_000 {
            let word = format!(
                "{}{}{}",
                onsets[rng.random_range(0..onsets.len())],
                vowels[rng.random_range(0..vowels.len())],
                codas[rng.random_range(0..codas.len())]
            );
            if seen.insert(word.clone()) {
                vietnamese.push(word);
            }
        }
        TextGen {
            rng,
            english: Vocabulary::new(english),
            vietnamese: Vocabulary::new(vietnamese),
        }
    }

    /// Sentences of 6 to 18 words until the text is `min..=max` bytes long.
    fn text(&mut self, lang: Lang, min: usize, max: usize) -> String {
        let target = self.rng.random_range(min..=max);
        let vocabulary = match lang {
            Lang::English => &self.english,
            Lang::Vietnamese => &self.vietnamese,
        };
        let mut text = String::with_capacity(target + 100);
        while text.len() < target {
            let words = self.rng.random_range(6..=18);
            for i in 0..words {
                let word = vocabulary.sample(&mut self.rng);
                if i == 0 {
                    let mut chars = word.chars();
                    if let Some(first) = chars.next() {
                        text.extend(first.to_uppercase());
                        text.push_str(chars.as_str());
                    }
                } else {
                    text.push_str(word);
                }
                if i + 1 == words {
                    text.push_str(". ");
                } else if self.rng.random_range(0..9) == 0 {
                    text.push_str(", ");
                } else {
                    text.push(' ');
                }
            }
        }
        text.truncate(text.trim_end().len());
        text
    }

    fn lang(&mut self) -> Lang {
        if self.rng.random_bool(0.5) {
            Lang::English
        } else {
            Lang::Vietnamese
        }
    }
}

/// A conversation of `messages` messages (user and assistant in turn), with
/// its writes in order (the conversation first).
fn conversation_writes(
    text_gen: &mut TextGen,
    owner: UserId,
    messages: usize,
    start: DateTime<Utc>,
    mut plant: impl FnMut(usize, &mut String),
) -> (Uuid, Vec<StoreWrite>) {
    let id = Uuid::new_v4();
    let lang = text_gen.lang();
    let mut writes = Vec::with_capacity(messages + 1);
    let first = text_gen.text(lang, 40, 120);
    let title: String = first.chars().take(48).collect();
    let last = start + TimeDelta::seconds(messages as i64 * 7);
    writes.push(StoreWrite::Conversation(StoredConversation {
        id,
        owner,
        title: Some(title),
        created_at: start,
        updated_at: last,
    }));
    for position in 0..messages {
        let role = if position % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let mut content = match role {
            Role::User => text_gen.text(lang, 300, 700),
            Role::Assistant => text_gen.text(lang, 600, 1_500),
        };
        plant(position, &mut content);
        writes.push(StoreWrite::Message(StoredMessage {
            message: Message {
                parent_id: None,
                id: Uuid::new_v4(),
                conversation_id: id,
                role,
                content,
                status: MessageStatus::Complete,
                model: (role == Role::Assistant).then(|| "demo".to_owned()),
                created_at: start + TimeDelta::seconds(position as i64 * 7),
                error: None,
            },
            position: position as u64,
            finish_reason: (role == Role::Assistant).then(|| "stop".to_owned()),
            usage: (role == Role::Assistant).then_some(Usage {
                prompt_tokens: 100,
                completion_tokens: 200,
            }),
        }));
    }
    (id, writes)
}

/// Applies `writes` in batches of `FILL_BATCH` to every store, and prints
/// the write rate of each.
async fn fill(
    stores: &[(&'static str, Arc<dyn Store>)],
    writes: &[StoreWrite],
) -> anyhow::Result<()> {
    for (name, store) in stores {
        let started = Instant::now();
        for batch in writes.chunks(FILL_BATCH) {
            store
                .apply(batch)
                .await
                .with_context(|| format!("filling {name}"))?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "   filled {name}: {} writes in {elapsed:.1} s ({:.0} writes/s, batches of {FILL_BATCH})",
            writes.len(),
            writes.len() as f64 / elapsed
        );
    }
    Ok(())
}

fn node_settings(data_dir: &Path, database_url: Option<String>) -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".into();
    settings.node_id = None;
    settings.redis_url = None;
    settings.database_url = database_url;
    settings.data_dir = data_dir.to_owned();
    settings.auth_secret = Some(AUTH_SECRET.into());
    settings.admin_token = Some(ADMIN_TOKEN.into());
    // Subscribing and unsubscribing in a loop exceeds the default 20 frames/s.
    settings.frames_per_second = 100_000;
    settings.static_dir = None;
    settings.ai_service_urls = Vec::new();
    settings.models_config = None;
    settings
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket on `node` for `token`, past its `welcome`.
async fn websocket(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/chat?token={token}")).await?;
    let welcome = next_text(&mut ws).await?;
    if !frame_is(&welcome, "welcome") {
        bail!(
            "expected welcome, got {}",
            welcome.chars().take(200).collect::<String>()
        );
    }
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Err(_) => bail!("no frame within 30 s"),
            Ok(None) => bail!("the socket closed"),
            Ok(Some(message)) => match message? {
                WsMessage::Text(text) => return Ok(text.to_string()),
                WsMessage::Close(close) => bail!("the socket closed: {close:?}"),
                _ => {}
            },
        }
    }
}

/// Whether a server frame's `type` is `kind` (the tag is serialized first).
fn frame_is(text: &str, kind: &str) -> bool {
    let head = &text.as_bytes()[..text.len().min(48)];
    let tag = format!("\"type\":\"{kind}\"");
    head.windows(tag.len()).any(|w| w == tag.as_bytes())
}

/// `subscribe` without `since`, timed to the end of the snapshot; then
/// `unsubscribe`, untimed.
async fn subscribe_once(
    ws: &tokio::sync::Mutex<Ws>,
    conversation: Uuid,
    i: usize,
) -> anyhow::Result<Duration> {
    let mut ws = ws.lock().await;
    let frame = serde_json::json!({"type": "subscribe", "id": format!("s{i}"), "conversation_id": conversation});
    let started = Instant::now();
    ws.send(WsMessage::Text(frame.to_string().into())).await?;
    let mut subscribed = false;
    loop {
        let text = next_text(&mut ws).await?;
        if frame_is(&text, "subscribed") {
            subscribed = true;
        } else if frame_is(&text, "snapshot") {
            if !subscribed {
                bail!("snapshot before subscribed");
            }
            break;
        } else if frame_is(&text, "error") {
            bail!("subscribe refused: {text}");
        }
    }
    let elapsed = started.elapsed();
    let frame = serde_json::json!({"type": "unsubscribe", "id": format!("u{i}"), "conversation_id": conversation});
    ws.send(WsMessage::Text(frame.to_string().into())).await?;
    loop {
        let text = next_text(&mut ws).await?;
        if frame_is(&text, "unsubscribed") {
            break;
        }
    }
    Ok(elapsed)
}

async fn get_ok(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<bytes::Bytes> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body)
}

/// A node of the bench: its settings (to restart it), the node, and a token.
struct BenchNode {
    name: &'static str,
    settings: Settings,
    node: Option<Node>,
    token: String,
}

impl BenchNode {
    async fn start(
        name: &'static str,
        settings: Settings,
        user: UserId,
    ) -> anyhow::Result<BenchNode> {
        let node = Node::start(settings.clone()).await?;
        let token = node.state.auth.issue_for(user.clone()).token;
        Ok(BenchNode {
            name,
            settings,
            node: Some(node),
            token,
        })
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.node.as_ref().expect("running").addr
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.stop(1001).await;
        }
        self.node = Some(Node::start(self.settings.clone()).await?);
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop(1001).await;
        }
    }
}

// ---------------------------------------------------------------------------
// 1. A conversation of 1,000 messages.

impl Bench {
    async fn conversation(&mut self) -> anyhow::Result<()> {
        const SECTION: &str = "A conversation of 1,000 messages";
        let sizes = self.sizes;
        println!("\n# {SECTION}");
        let data_dir = self.scratch.join("conversation");
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(data_dir.join("chatstream.db")).await?);
        let postgres = self.postgres("conversation").await?;
        let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![("SQLite", sqlite.clone())];
        if let Some((_, store)) = &postgres {
            stores.push(("PostgreSQL", store.clone()));
        }

        let user = UserId::new_guest();
        let mut text_gen = TextGen::new(1);
        let mut writes = Vec::new();
        let mut conversations = Vec::new();
        let start = Utc::now() - TimeDelta::days(30);
        for _ in 0..sizes.long_conversations {
            let (id, w) = conversation_writes(
                &mut text_gen,
                user.clone(),
                sizes.conversation_messages,
                start,
                |_, _| {},
            );
            conversations.push(id);
            writes.extend(w);
        }
        // A small conversation that warms each node's store path up, untimed.
        let (warm, w) = conversation_writes(&mut text_gen, user.clone(), 2, start, |_, _| {});
        writes.extend(w);
        fill(&stores, &writes).await?;
        let bytes: usize = writes
            .iter()
            .filter_map(|w| match w {
                StoreWrite::Message(m) if m.message.conversation_id == conversations[0] => {
                    Some(m.message.content.len())
                }
                _ => None,
            })
            .sum();
        println!(
            "   one conversation: {} messages, {bytes} bytes of text",
            sizes.conversation_messages
        );
        drop(writes);

        // Nodes: the embedded default (memory engine, SQLite in DATA_DIR) and
        // the memory engine with PostgreSQL (DATABASE_URL).
        let mut nodes =
            vec![BenchNode::start("SQLite", node_settings(&data_dir, None), user.clone()).await?];
        if let Some((url, _)) = &postgres {
            let dir = self.scratch.join("conversation-pg-node");
            nodes.push(
                BenchNode::start(
                    "PostgreSQL",
                    node_settings(&dir, Some(url.clone())),
                    user.clone(),
                )
                .await?,
            );
        }
        let http = reqwest::Client::new();
        let half = conversations.len() / 2;
        let (by_http, by_ws) = conversations.split_at(half);

        // (b) and cold (c): the first use after a restart, restored from the store.
        self.wait_idle("conversation: first use after a restart")
            .await;
        let mut cold_get: Vec<Vec<Duration>> = vec![Vec::new(); nodes.len()];
        let mut cold_ws: Vec<Vec<Duration>> = vec![Vec::new(); nodes.len()];
        let mut get_size = 0;
        for round in 0..sizes.restart_rounds {
            if round > 0 {
                for node in &mut nodes {
                    node.restart().await?;
                }
            }
            let mut sockets = Vec::new();
            for node in &nodes {
                get_ok(
                    &http,
                    &node.url(&format!("/api/conversations/{warm}")),
                    &node.token,
                )
                .await?;
                sockets.push(tokio::sync::Mutex::new(
                    websocket(node.addr(), &node.token).await?,
                ));
            }
            for i in 0..half {
                let order: Vec<usize> = if i % 2 == 0 {
                    (0..nodes.len()).collect()
                } else {
                    (0..nodes.len()).rev().collect()
                };
                for &k in &order {
                    let node = &nodes[k];
                    let started = Instant::now();
                    let body = get_ok(
                        &http,
                        &node.url(&format!("/api/conversations/{}", by_http[i])),
                        &node.token,
                    )
                    .await?;
                    cold_get[k].push(started.elapsed());
                    get_size = body.len();
                }
                for &k in &order {
                    cold_ws[k].push(subscribe_once(&sockets[k], by_ws[i], round * half + i).await?);
                }
            }
        }
        println!("   GET body: {get_size} bytes");
        let names: Vec<&'static str> = nodes.iter().map(|n| n.name).collect();
        for (k, samples) in cold_get.into_iter().enumerate() {
            self.record(
                SECTION,
                "(b) GET /api/conversations/{id}, restored from the store",
                names[k],
                samples,
            );
        }
        for (k, samples) in cold_ws.into_iter().enumerate() {
            self.record(
                SECTION,
                "(c') subscribe → subscribed + snapshot, restored from the store",
                names[k],
                samples,
            );
        }

        // (a) and (c): the engine holds every conversation now.
        self.wait_idle("conversation: held by the engine").await;
        let conversations = Arc::new(conversations);
        let mut jobs: Vec<Job> = Vec::new();
        for node in &nodes {
            let http = http.clone();
            let base = node.url("/api/conversations/");
            let token = node.token.clone();
            let list = conversations.clone();
            jobs.push(job(move |i| {
                let url = format!("{base}{}", list[i % list.len()]);
                let http = http.clone();
                let token = token.clone();
                async move { get_ok(&http, &url, &token).await.map(drop) }
            }));
        }
        let samples = alternate(&jobs, 5, sizes.held_samples, Duration::from_secs(60)).await?;
        for (k, samples) in samples.into_iter().enumerate() {
            self.record(
                SECTION,
                "(a) GET /api/conversations/{id}, held by the engine",
                names[k],
                samples,
            );
        }
        let mut jobs: Vec<Job> = Vec::new();
        for node in &nodes {
            let socket = Arc::new(tokio::sync::Mutex::new(
                websocket(node.addr(), &node.token).await?,
            ));
            let list = conversations.clone();
            jobs.push(Box::new(move |i| {
                let socket = socket.clone();
                let conversation = list[i % list.len()];
                async move { subscribe_once(&socket, conversation, 100_000 + i).await }.boxed()
            }));
        }
        let samples = alternate(&jobs, 5, sizes.held_samples, Duration::from_secs(60)).await?;
        for (k, samples) in samples.into_iter().enumerate() {
            self.record(
                SECTION,
                "(c) subscribe → subscribed + snapshot, held by the engine",
                names[k],
                samples,
            );
        }
        drop(jobs);
        for node in &mut nodes {
            node.stop().await;
        }

        // (d) the store alone, and the parts of a restore.
        self.wait_idle("conversation: the store alone").await;
        let jobs: Vec<Job> = stores
            .iter()
            .map(|(_, store)| {
                let store = store.clone();
                let list = conversations.clone();
                job(move |i| {
                    let store = store.clone();
                    let id = list[i % list.len()];
                    async move {
                        let messages = store.messages(id).await?;
                        anyhow::ensure!(messages.len() == 1_000, "{} messages", messages.len());
                        Ok(())
                    }
                })
            })
            .collect();
        let samples = alternate(&jobs, 5, sizes.store_samples, Duration::from_secs(60)).await?;
        for (k, samples) in samples.into_iter().enumerate() {
            self.record(
                SECTION,
                "(d) Store::messages (1,000 rows)",
                stores[k].0,
                samples,
            );
        }
        let info = sqlite
            .conversation(conversations[0])
            .await?
            .context("stored")?;
        let messages: Vec<Message> = sqlite
            .messages(conversations[0])
            .await?
            .into_iter()
            .map(|m| m.message)
            .collect();
        let copy = Arc::new(Snapshot {
            info: ConversationInfo {
                id: info.id,
                owner: info.owner,
                title: info.title.clone(),
                created_at: info.created_at,
                updated_at: info.updated_at,
            },
            epoch: Arc::from(""),
            seq: 0,
            messages,
        });
        let rebuild = {
            let copy = copy.clone();
            job(move |_| {
                let copy = copy.clone();
                async move {
                    let engine = MemoryEngine::new(10_000);
                    engine.rebuild(&copy, None).await?;
                    Ok(())
                }
            })
        };
        let samples = alternate(&[rebuild], 3, 100, Duration::from_secs(30))
            .await?
            .remove(0);
        self.record(
            SECTION,
            "part: MemoryEngine::rebuild of 1,000 messages",
            "memory engine",
            samples,
        );
        let engine = Arc::new(MemoryEngine::new(10_000));
        engine.rebuild(&copy, None).await?;
        let id = copy.info.id;
        let snapshot = {
            let engine = engine.clone();
            job(move |_| {
                let engine = engine.clone();
                async move {
                    let snapshot = engine.snapshot(id).await?;
                    let (messages, branches) =
                        chatstream::branches::split_active(snapshot.messages);
                    let detail = ConversationDetail {
                        id: snapshot.info.id,
                        title: snapshot.info.title,
                        epoch: snapshot.epoch.to_string(),
                        seq: snapshot.seq,
                        messages,
                        branches,
                    };
                    std::hint::black_box(serde_json::to_vec(&detail)?);
                    Ok(())
                }
            })
        };
        let samples = alternate(&[snapshot], 3, 100, Duration::from_secs(30))
            .await?
            .remove(0);
        self.record(
            SECTION,
            "part: Engine::snapshot + JSON of the detail (memory)",
            "memory engine",
            samples,
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// 2. Listing 10,000 conversations.

impl Bench {
    async fn listing(&mut self) -> anyhow::Result<()> {
        const SECTION: &str = "Listing 10,000 conversations of one user";
        let sizes = self.sizes;
        println!("\n# {SECTION}");
        let data_dir = self.scratch.join("listing");
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(data_dir.join("chatstream.db")).await?);
        let postgres = self.postgres("listing").await?;
        let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![("SQLite", sqlite.clone())];
        if let Some((_, store)) = &postgres {
            stores.push(("PostgreSQL", store.clone()));
        }

        // The user's conversations and others', in random order, updated over
        // the past 90 days; one in 50 shares its update time with another.
        let user = UserId::new_guest();
        let mut rng = StdRng::seed_from_u64(2);
        let now = chatstream::store::store_precision(Utc::now());
        let mut owners: Vec<UserId> = vec![user.clone(); sizes.listed];
        for _ in 0..sizes.other_users {
            let other = UserId::new_guest();
            owners.extend(std::iter::repeat_n(other, sizes.other_conversations_each));
        }
        owners.shuffle(&mut rng);
        let mut last_time = now;
        let writes: Vec<StoreWrite> = owners
            .into_iter()
            .map(|owner| {
                let updated = if rng.random_range(0..50) == 0 {
                    last_time
                } else {
                    now - TimeDelta::microseconds(
                        rng.random_range(0..90 * 24 * 3600 * 1_000_000_i64),
                    )
                };
                last_time = updated;
                StoreWrite::Conversation(StoredConversation {
                    id: Uuid::new_v4(),
                    owner,
                    title: Some(format!("Conversation {}", rng.random_range(0..1_000_000))),
                    created_at: updated - TimeDelta::hours(1),
                    updated_at: updated,
                })
            })
            .collect();
        fill(&stores, &writes).await?;
        drop(writes);

        // The cursor of the middle page: after the first half.
        let mut cursor: Option<String> = None;
        let mut seen = 0;
        while seen < sizes.listed / 2 {
            let page = sqlite
                .list_conversations(&user, 200, cursor.as_deref())
                .await?;
            seen += page.conversations.len();
            cursor = page.next;
        }
        let middle = Arc::new(cursor.context("a middle page")?);
        let listed = sizes.listed;

        self.wait_idle("listing: the store alone").await;
        let cases: [(&str, Option<Arc<String>>, usize); 2] = [
            ("first page, limit 50", None, 50),
            (
                "middle page (after 5,000), limit 50",
                Some(middle.clone()),
                50,
            ),
        ];
        for (case, before, limit) in cases {
            let jobs: Vec<Job> = stores
                .iter()
                .map(|(_, store)| {
                    let store = store.clone();
                    let before = before.clone();
                    let user = user.clone();
                    job(move |_| {
                        let store = store.clone();
                        let before = before.clone();
                        let user = user.clone();
                        async move {
                            let page = store
                                .list_conversations(
                                    &user,
                                    limit,
                                    before.as_deref().map(String::as_str),
                                )
                                .await?;
                            anyhow::ensure!(page.conversations.len() == limit);
                            Ok(())
                        }
                    })
                })
                .collect();
            let samples = alternate(&jobs, 5, sizes.store_samples, Duration::from_secs(60)).await?;
            for (k, samples) in samples.into_iter().enumerate() {
                self.record(
                    SECTION,
                    &format!("Store::list_conversations, {case}"),
                    stores[k].0,
                    samples,
                );
            }
        }
        let jobs: Vec<Job> = stores
            .iter()
            .map(|(_, store)| {
                let store = store.clone();
                let user = user.clone();
                job(move |_| {
                    let store = store.clone();
                    let user = user.clone();
                    async move {
                        let mut cursor: Option<String> = None;
                        let mut seen = 0;
                        loop {
                            let page = store
                                .list_conversations(&user, 200, cursor.as_deref())
                                .await?;
                            seen += page.conversations.len();
                            match page.next {
                                Some(next) => cursor = Some(next),
                                None => break,
                            }
                        }
                        anyhow::ensure!(seen == listed, "walked {seen}");
                        Ok(())
                    }
                })
            })
            .collect();
        let samples = alternate(&jobs, 1, sizes.walks, Duration::from_secs(90)).await?;
        for (k, samples) in samples.into_iter().enumerate() {
            self.record(
                SECTION,
                "Store::list_conversations, every page with limit 200 (whole walk)",
                stores[k].0,
                samples,
            );
        }

        // Through HTTP: GET /api/conversations on a node on each store.
        let mut nodes =
            vec![BenchNode::start("SQLite", node_settings(&data_dir, None), user.clone()).await?];
        if let Some((url, _)) = &postgres {
            let dir = self.scratch.join("listing-pg-node");
            nodes.push(
                BenchNode::start(
                    "PostgreSQL",
                    node_settings(&dir, Some(url.clone())),
                    user.clone(),
                )
                .await?,
            );
        }
        let http = reqwest::Client::new();
        self.wait_idle("listing: over HTTP").await;
        let cases: [(&str, String); 2] = [
            (
                "GET /api/conversations?limit=50",
                "/api/conversations?limit=50".to_owned(),
            ),
            (
                "GET /api/conversations?limit=50&before=<middle>",
                format!("/api/conversations?limit=50&before={middle}"),
            ),
        ];
        for (case, path) in cases {
            let jobs: Vec<Job> = nodes
                .iter()
                .map(|node| {
                    let url = node.url(&path);
                    let token = node.token.clone();
                    let http = http.clone();
                    job(move |_| {
                        let (url, token, http) = (url.clone(), token.clone(), http.clone());
                        async move { get_ok(&http, &url, &token).await.map(drop) }
                    })
                })
                .collect();
            let samples = alternate(&jobs, 5, sizes.store_samples, Duration::from_secs(60)).await?;
            for (k, samples) in samples.into_iter().enumerate() {
                self.record(SECTION, case, nodes[k].name, samples);
            }
        }
        let jobs: Vec<Job> = nodes
            .iter()
            .map(|node| {
                let base = node.url("/api/conversations?limit=200");
                let token = node.token.clone();
                let http = http.clone();
                job(move |_| {
                    let (base, token, http) = (base.clone(), token.clone(), http.clone());
                    async move {
                        let mut url = base.clone();
                        let mut seen = 0;
                        loop {
                            let body = get_ok(&http, &url, &token).await?;
                            let page: chatstream::protocol::ConversationListing =
                                serde_json::from_slice(&body)?;
                            seen += page.conversations.len();
                            match page.next {
                                Some(next) => url = format!("{base}&before={next}"),
                                None => break,
                            }
                        }
                        anyhow::ensure!(seen == listed, "walked {seen}");
                        Ok(())
                    }
                })
            })
            .collect();
        let samples = alternate(&jobs, 1, sizes.walks, Duration::from_secs(90)).await?;
        for (k, samples) in samples.into_iter().enumerate() {
            self.record(
                SECTION,
                "GET /api/conversations?limit=200, every page (whole walk)",
                nodes[k].name,
                samples,
            );
        }
        drop(jobs);
        for node in &mut nodes {
            node.stop().await;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// 3. Search over 100,000 messages.

/// The queries: (label, text).
const QUERIES: &[(&str, &str)] = &[
    ("common English word", "the"),
    ("common Vietnamese word", "không"),
    ("rare word", "quokka"),
    ("two words, English", "memory leak"),
    ("two words, Vietnamese", "tiếng việt"),
];
/// The rare word: planted in this many of the searcher's messages, and ten
/// times as many of other users'.
const RARE_WORD: &str = "quokka";
const RARE_IN_SEARCHER: usize = 5;

fn words_of(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Bench {
    async fn search(&mut self) -> anyhow::Result<()> {
        const SECTION: &str = "Search over 100,000 messages";
        let sizes = self.sizes;
        println!("\n# {SECTION}");
        let data_dir = self.scratch.join("search");
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(data_dir.join("chatstream.db")).await?);
        let postgres = self.postgres("search").await?;
        let mut stores: Vec<(&'static str, Arc<dyn Store>)> = vec![("SQLite", sqlite.clone())];
        if let Some((_, store)) = &postgres {
            stores.push(("PostgreSQL", store.clone()));
        }

        let searcher = UserId::new_guest();
        let mut owners: Vec<UserId> = vec![searcher.clone(); sizes.searcher_conversations];
        for _ in 0..sizes.search_other_users {
            let other = UserId::new_guest();
            owners.extend(std::iter::repeat_n(
                other,
                sizes.search_other_conversations_each,
            ));
        }
        let mut rng = StdRng::seed_from_u64(3);
        owners.shuffle(&mut rng);
        let per = sizes.search_conversation_messages;
        let searcher_messages = sizes.searcher_conversations * per;
        let other_messages = owners.len() * per - searcher_messages;
        // Which messages get the rare word: RARE_IN_SEARCHER of the
        // searcher's, ten times as many of the others'.
        let mut rare_searcher: HashSet<usize> = HashSet::new();
        while rare_searcher.len() < RARE_IN_SEARCHER.min(searcher_messages) {
            rare_searcher.insert(rng.random_range(0..searcher_messages));
        }
        let mut rare_other: HashSet<usize> = HashSet::new();
        while rare_other.len() < (10 * RARE_IN_SEARCHER).min(other_messages) {
            rare_other.insert(rng.random_range(0..other_messages));
        }
        let mut text_gen = TextGen::new(4);
        let start = Utc::now() - TimeDelta::days(60);
        let mut writes = Vec::with_capacity(owners.len() * (per + 1));
        let (mut searcher_index, mut other_index) = (0, 0);
        let query_words: Vec<HashSet<String>> = QUERIES.iter().map(|(_, q)| words_of(q)).collect();
        let mut hits_searcher = vec![0usize; QUERIES.len()];
        let mut hits_all = vec![0usize; QUERIES.len()];
        for (c, owner) in owners.iter().enumerate() {
            let is_searcher = *owner == searcher;
            let started = start + TimeDelta::minutes(c as i64);
            let (_, w) =
                conversation_writes(&mut text_gen, owner.clone(), per, started, |_, content| {
                    let planted = if is_searcher {
                        searcher_index += 1;
                        rare_searcher.contains(&(searcher_index - 1))
                    } else {
                        other_index += 1;
                        rare_other.contains(&(other_index - 1))
                    };
                    if planted {
                        content.push_str(&format!(" The {RARE_WORD} smiled at the camera."));
                    }
                });
            for write in &w {
                if let StoreWrite::Message(m) = write {
                    let words = words_of(&m.message.content);
                    for (q, wanted) in query_words.iter().enumerate() {
                        if wanted.iter().all(|w| words.contains(w)) {
                            hits_all[q] += 1;
                            if is_searcher {
                                hits_searcher[q] += 1;
                            }
                        }
                    }
                }
            }
            writes.extend(w);
        }
        let total_messages = writes
            .iter()
            .filter(|w| matches!(w, StoreWrite::Message(_)))
            .count();
        let total_bytes: usize = writes
            .iter()
            .filter_map(|w| match w {
                StoreWrite::Message(m) => Some(m.message.content.len()),
                _ => None,
            })
            .sum();
        println!(
            "   {total_messages} messages ({} MB of text) in {} conversations; the searcher owns {searcher_messages}",
            total_bytes / 1_000_000,
            owners.len()
        );
        fill(&stores, &writes).await?;
        drop(writes);
        if let Some((url, _)) = &postgres {
            // What autovacuum would have done by now: statistics for the
            // planner, the GIN index's pending list merged.
            let mut connection = sqlx::PgConnection::connect(url).await?;
            let started = Instant::now();
            connection.execute("VACUUM ANALYZE").await?;
            println!(
                "   PostgreSQL VACUUM ANALYZE: {:.1} s",
                started.elapsed().as_secs_f64()
            );
            connection.close().await.ok();
        }

        for (q, (label, query)) in QUERIES.iter().enumerate() {
            self.wait_idle(&format!("search: {label}")).await;
            let jobs: Vec<Job> = stores
                .iter()
                .map(|(_, store)| {
                    let store = store.clone();
                    let searcher = searcher.clone();
                    job(move |_| {
                        let store = store.clone();
                        let searcher = searcher.clone();
                        async move {
                            std::hint::black_box(store.search(&searcher, query, 20).await?);
                            Ok(())
                        }
                    })
                })
                .collect();
            let mut found = Vec::new();
            for (name, store) in &stores {
                found.push(format!(
                    "{name} {}",
                    store.search(&searcher, query, 50).await?.len()
                ));
            }
            let samples =
                alternate(&jobs, 3, sizes.search_samples, Duration::from_secs(60)).await?;
            let case = format!(
                "Store::search \"{query}\" ({label}; in {} of the searcher's messages, {} of all), limit 20",
                hits_searcher[q], hits_all[q]
            );
            println!("   {case}: results with limit 50: {}", found.join(", "));
            for (k, samples) in samples.into_iter().enumerate() {
                self.record(SECTION, &case, stores[k].0, samples);
            }
        }
        Ok(())
    }
}
