//! Micro-benchmarks of the hot path, below the sockets: what one event costs
//! to serialize, to append in the memory engine, and to travel the actor
//! tree from a generation to every subscriber's outbox.
//!
//! A plain `harness = false` binary timed with `std::time`: the figures it
//! exists for are throughputs of whole loops (millions of operations), where
//! a statistics framework adds compile time and nothing the reading needs.
//!
//!     cargo bench --bench hot_path            # everything, about 30 s
//!     cargo bench --bench hot_path -- frame   # the sections whose name matches
//!
//! The `redis` section starts its own `redis-server` (skipped without one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatstream::actors::Frame;
use chatstream::actors::NodeContext;
use chatstream::actors::chat::Chat;
use chatstream::actors::connections::ConnectionsMsg;
use chatstream::actors::connections::connection::{ConnectionArgs, ConnectionMsg};
use chatstream::actors::connections::outbox::{Outbox, OutboxReceiver};
use chatstream::actors::directory::ActorDirectory;
use chatstream::actors::supervisor::{NodeActors, NodeMsg, NodeSupervisor};
use chatstream::config::Settings;
use chatstream::engine::redis::RedisOptions;
use chatstream::engine::{Engine, MemoryEngine, RedisEngine, TextAppend, TurnRequest};
use chatstream::protocol::UserId;
use chatstream::protocol::{Event, LogEntry, ServerFrame};
use chatstream::providers::{DemoProvider, Providers};
use ractor::{Actor, ActorRef};
use uuid::Uuid;

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("hot_path benchmarks ({} CPUs)", num_cpus());
    if wanted("frame") {
        frame_serialization();
    }
    if wanted("engine") {
        runtime.block_on(memory_engine_append());
    }
    if wanted("redis") {
        runtime.block_on(redis_cost_per_send());
    }
    if wanted("actors") {
        // (conversations, watchers each, COALESCE_MS, ms between tokens, turns)
        for (clients, watchers, coalesce_ms, delay_ms, turns) in [
            (50, 0, 0, 0, 50),
            (50, 0, 5, 0, 50),
            (10, 9, 0, 0, 50),
            (1000, 0, 0, 20, 1),
        ] {
            runtime.block_on(actor_pipeline(
                clients,
                watchers,
                coalesce_ms,
                delay_ms,
                turns,
            ));
        }
    }
}

/// CPU seconds this process has used (user and system), from /proc.
fn cpu_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th, in clock ticks (100 per second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn delta_entry(seq: u64) -> LogEntry {
    LogEntry {
        seq,
        ts: 1_795_736_962_875.994,
        event: Event::Delta {
            message_id: Uuid::new_v4(),
            text: " survives".into(),
        },
    }
}

/// One delta frame for 100 subscribers: serialized once and shared (what the
/// Conversation actor does) against serialized for each subscriber.
fn frame_serialization() {
    const SUBSCRIBERS: usize = 100;
    const EVENTS: u64 = 20_000;
    let conversation = Uuid::new_v4();
    let entries: Vec<LogEntry> = (1..=EVENTS).map(delta_entry).collect();
    let mut sink: Vec<Frame> = Vec::with_capacity(SUBSCRIBERS);

    let started = Instant::now();
    for entry in &entries {
        let frame = Frame::from(ServerFrame::event(conversation, "c2b4dcbfda40", entry).to_text());
        sink.clear();
        sink.extend((0..SUBSCRIBERS).map(|_| frame.clone()));
    }
    let once = started.elapsed();

    let started = Instant::now();
    for entry in &entries {
        sink.clear();
        sink.extend((0..SUBSCRIBERS).map(|_| {
            Frame::from(ServerFrame::event(conversation, "c2b4dcbfda40", entry).to_text())
        }));
    }
    let each = started.elapsed();

    let deliveries = (EVENTS as usize * SUBSCRIBERS) as f64;
    println!("\nframe: one delta event to {SUBSCRIBERS} subscribers ({EVENTS} events)");
    println!(
        "  serialized once, shared     {:>8.1} ns/delivery  {:>12.0} deliveries/s  ({:.2} µs per event serialized)",
        once.as_nanos() as f64 / deliveries,
        deliveries / once.as_secs_f64(),
        once.as_secs_f64() * 1e6 / EVENTS as f64,
    );
    println!(
        "  serialized per subscriber   {:>8.1} ns/delivery  {:>12.0} deliveries/s",
        each.as_nanos() as f64 / deliveries,
        deliveries / each.as_secs_f64(),
    );
}

/// `MemoryEngine::append_text` on a watched conversation, the bus drained as
/// it goes: the engine's share of every delta.
async fn memory_engine_append() {
    const REPLIES: usize = 200;
    const DELTAS_PER_REPLY: usize = 500;
    let engine = MemoryEngine::new(10_000);
    let mut bus = engine.take_bus().expect("the bus");
    let user = UserId::new_guest();
    let conversation = engine
        .create_conversation(user.clone(), None)
        .await
        .expect("a conversation")
        .id;
    engine.watch(conversation).await.expect("watched");
    let mut appends = 0u64;
    let mut busy = Duration::ZERO;
    for _ in 0..REPLIES {
        let turn = engine
            .start_turn(TurnRequest {
                user: user.clone(),
                conversation_id: Some(conversation),
                content: "How do actors work?".into(),
                model: "demo".into(),
                client_msg_id: None,
                branch: Default::default(),
            })
            .await
            .expect("a turn");
        let reply = turn.ack.assistant_message_id;
        let started = Instant::now();
        let mut offset = 0;
        for _ in 0..DELTAS_PER_REPLY {
            let text = " token".to_owned();
            let len = text.len();
            let appended = engine
                .append_text(conversation, reply, offset, text, "bench")
                .await
                .expect("appended");
            assert!(matches!(appended, TextAppend::Appended(_)));
            offset += len;
            appends += 1;
            while bus.try_recv().is_ok() {}
        }
        busy += started.elapsed();
        let done = Event::Done {
            message_id: reply,
            finish_reason: "stop".into(),
            usage: None,
        };
        engine
            .end_reply(conversation, done, "bench")
            .await
            .expect("ended");
        while bus.try_recv().is_ok() {}
    }
    println!("\nengine: MemoryEngine::append_text, one watched conversation, bus drained");
    println!(
        "  {appends} appends  {:>8.2} µs/append  {:>12.0} appends/s",
        busy.as_secs_f64() * 1e6 / appends as f64,
        appends as f64 / busy.as_secs_f64()
    );
}

/// A node's actor tree without HTTP: `clients` Connections each send turns
/// to the demo model (`delay_ms` between tokens), `watchers` more
/// Connections per conversation follow it; every outbox is drained as a
/// socket's write loop would. Counts the frames that reach outboxes, and the
/// process's CPU time per frame.
async fn actor_pipeline(
    clients: usize,
    watchers: usize,
    coalesce_ms: u64,
    delay_ms: u64,
    turns: usize,
) {
    const TOKENS: usize = 120;
    let mut settings = Settings::defaults();
    settings.coalesce_ms = coalesce_ms;
    settings.frames_per_second = 100_000;
    let engine = Arc::new(MemoryEngine::new(10_000));
    let context = Arc::new(NodeContext {
        node_id: "bench".into(),
        settings,
        engine: engine.clone(),
        providers: Providers::new("demo").with(
            "demo",
            Arc::new(DemoProvider::new(Duration::from_millis(delay_ms), TOKENS)),
        ),
        directory: ActorDirectory::default(),
        persistence: None,
    });
    let (root, _) = Actor::spawn(None, NodeSupervisor, context.clone())
        .await
        .expect("the actor tree starts");
    let actors: NodeActors = ractor::call!(root, NodeMsg::Actors).expect("the root answers");
    let chat = Chat::new(context.clone(), actors.generations.clone());

    let mut conversations = Vec::new();
    for _ in 0..clients {
        let user = UserId::new_guest();
        let conversation = engine
            .create_conversation(user.clone(), None)
            .await
            .expect("a conversation")
            .id;
        let sender = open(&actors, &chat, user.clone()).await;
        let mut followers = Vec::new();
        for _ in 0..watchers {
            let (actor, mut outbox) = open(&actors, &chat, user.clone()).await;
            actor
                .cast(ConnectionMsg::Text {
                    text: format!(
                        r#"{{"type":"subscribe","id":"s","conversation_id":"{conversation}"}}"#
                    ),
                    slot: None,
                })
                .expect("the connection is alive");
            wait_for(&mut outbox, r#""type":"subscribed""#).await;
            followers.push((actor, outbox));
        }
        conversations.push((conversation, sender, followers));
    }

    let started = Instant::now();
    let cpu_before = cpu_time();
    let mut tasks = Vec::new();
    for (conversation, (actor, mut outbox), followers) in conversations {
        tasks.push(tokio::spawn(async move {
            let mut frames = 0u64;
            for turn in 0..turns {
                actor
                    .cast(ConnectionMsg::Text {
                        text: format!(
                            r#"{{"type":"send","id":"t{turn}","conversation_id":"{conversation}","content":"How do actors work?"}}"#
                        ),
                        slot: None,
                    })
                    .expect("the connection is alive");
                frames += wait_for(&mut outbox, r#""kind":"done""#).await;
            }
            frames
        }));
        for (_actor, mut outbox) in followers {
            tasks.push(tokio::spawn(async move {
                let mut frames = 0;
                for _ in 0..turns {
                    frames += wait_for(&mut outbox, r#""kind":"done""#).await;
                }
                frames
            }));
        }
    }
    let mut frames = 0;
    for task in tasks {
        frames += task.await.expect("a client task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu_before;
    let all_turns = (clients * turns) as f64;
    println!(
        "\nactors: {clients} conversations × {turns} turns × {TOKENS} tokens ({delay_ms} ms apart), {watchers} watchers each, COALESCE_MS={coalesce_ms}"
    );
    println!(
        "  {:>8.0} turns/s  {:>10.0} frames to outboxes/s  ({frames} frames in {elapsed:.2} s, {:.2} µs CPU per frame)",
        all_turns / elapsed,
        frames as f64 / elapsed,
        cpu * 1e6 / frames as f64,
    );
    root.stop_and_wait(None, Some(Duration::from_secs(5)))
        .await
        .expect("the actor tree stops");
}

async fn open(
    actors: &NodeActors,
    chat: &Chat,
    user_id: UserId,
) -> (ActorRef<ConnectionMsg>, OutboxReceiver) {
    let (outbox, receiver) = Outbox::channel(1 << 16, usize::MAX);
    let args = ConnectionArgs {
        connection_id: Uuid::new_v4(),
        user_id,
        outbox,
        chat: chat.clone(),
        conversations: actors.conversations.clone(),
    };
    let actor = ractor::call!(actors.connections, |reply| ConnectionsMsg::Open {
        args,
        reply
    })
    .expect("the Connections supervisor answers")
    .expect("the connection opens");
    (actor, receiver)
}

/// Drains an outbox up to and including the first frame containing
/// `marker`; answers how many frames that was.
async fn wait_for(outbox: &mut OutboxReceiver, marker: &str) -> u64 {
    let mut frames = 0;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), outbox.frames.recv())
            .await
            .expect("a frame in time")
            .expect("the outbox is open");
        frames += 1;
        if frame.contains(marker) {
            return frames;
        }
    }
}

/// Redis's work for one send (a turn, five deltas, the ending) into a
/// conversation of 2 messages and into one of 2,000, as Redis itself
/// counts it, medians over the sends: the CPU time of its main thread (the
/// thread every command of every node waits for; the measurement's own
/// commands taken out), the execution time of the scripts (`INFO
/// commandstats`, which times a script with the commands it calls), and the
/// commands run, a script's included (free of a shared machine's noise).
/// Also what the reads that grow with the conversation cost: a snapshot (a
/// join without `since`, a GET, a generation's start) and `message_at`
/// (what a durable node reads per turn and ending).
async fn redis_cost_per_send() {
    const SENDS: usize = 100;
    const DELTAS: usize = 5;
    let Some(server) = BenchRedis::start() else {
        println!("\nredis: skipped, no redis-server on PATH");
        return;
    };
    let mut options = RedisOptions::new(10_000, Duration::from_secs(3600));
    // The long conversation takes more turns than the default allows: the
    // measure is of a send's cost, not of the limit.
    options.limits.max_messages_per_conversation = usize::MAX;
    options.limits.max_generations_per_user = usize::MAX;
    let engine = RedisEngine::connect_with(&server.url(), "bench", options)
        .await
        .expect("connects to the bench redis-server");
    let mut stats = server.stats();
    // What measuring costs Redis's CPU by itself, taken out of every send.
    let mut idle: Vec<u64> = (0..SENDS)
        .map(|_| {
            let before = stats.cpu_micros();
            for _ in 0..3 {
                stats.reset();
                stats.script_micros();
                stats.commands();
            }
            stats.cpu_micros() - before
        })
        .collect();
    let overhead = median(&mut idle);
    println!(
        "\nredis: Redis's work per send (turn + {DELTAS} deltas + ending), median of {SENDS} sends"
    );
    for size in [2usize, 2000] {
        let user = UserId::new_guest();
        let long = filled_conversation(&engine, &user, None, size).await;
        let mut cpu = Vec::new();
        let mut commands = Vec::new();
        let mut scripts = [Vec::new(), Vec::new(), Vec::new()];
        let mut last = long;
        for _ in 0..SENDS {
            // A fresh 2-message conversation for every short send, so that
            // the short case stays short; the long one grows to 2,200.
            let id = if size == 2 {
                filled_conversation(&engine, &user, None, 2).await
            } else {
                long
            };
            last = id;
            let before = stats.cpu_micros();
            stats.reset();
            let turn = engine
                .start_turn(bench_turn(
                    &user,
                    Some(id),
                    "And what about supervision trees?",
                ))
                .await
                .expect("a turn");
            scripts[0].push(stats.script_micros());
            let mut ran = stats.commands();
            stats.reset();
            let reply = turn.ack.assistant_message_id;
            let mut offset = 0;
            for _ in 0..DELTAS {
                let text = " a few tokens of text".to_owned();
                let len = text.len();
                engine
                    .append_text(id, reply, offset, text, "bench")
                    .await
                    .expect("appended");
                offset += len;
            }
            scripts[1].push(stats.script_micros());
            ran += stats.commands();
            stats.reset();
            engine
                .end_reply(id, bench_done(reply), "bench")
                .await
                .expect("ended");
            scripts[2].push(stats.script_micros());
            ran += stats.commands();
            cpu.push((stats.cpu_micros() - before).saturating_sub(overhead));
            commands.push(ran);
        }
        let [turns, deltas, endings] = &mut scripts;
        let mut totals: Vec<u64> = (0..SENDS)
            .map(|i| turns[i] + deltas[i] + endings[i])
            .collect();
        stats.reset();
        for _ in 0..10 {
            engine.snapshot(last).await.expect("a snapshot");
        }
        let snapshot = stats.script_micros() as f64 / 10.0;
        let messages = engine.snapshot(last).await.expect("a snapshot").messages;
        stats.reset();
        for _ in 0..50 {
            for message in &messages[messages.len() - 2..] {
                engine
                    .message_at(last, message.id)
                    .await
                    .expect("a message");
            }
        }
        let message_at = stats.script_micros() as f64 / 100.0;
        println!(
            "  {size:>5} messages: CPU {:>6} µs  scripts {:>6} µs (turn {:>5}, {DELTAS} deltas {:>4}, ending {:>5})  {:>5} commands  snapshot of {}: {:>6.0} µs  message_at {:>4.0} µs",
            median(&mut cpu),
            median(&mut totals),
            median(turns),
            median(deltas),
            median(endings),
            median(&mut commands),
            messages.len(),
            snapshot,
            message_at,
        );
    }
}

fn bench_turn(user: &UserId, conversation_id: Option<Uuid>, content: &str) -> TurnRequest {
    TurnRequest {
        user: user.clone(),
        conversation_id,
        content: content.into(),
        model: "demo".into(),
        client_msg_id: None,
        branch: Default::default(),
    }
}

fn bench_done(message_id: Uuid) -> Event {
    Event::Done {
        message_id,
        finish_reason: "stop".into(),
        usage: None,
    }
}

/// A conversation of `messages` messages (questions and 600-byte answers),
/// every reply ended.
async fn filled_conversation(
    engine: &RedisEngine,
    user: &UserId,
    mut conversation: Option<Uuid>,
    messages: usize,
) -> Uuid {
    let answer = "x".repeat(600);
    for _ in 0..messages / 2 {
        let turn = engine
            .start_turn(bench_turn(
                user,
                conversation,
                "How do actors work in this system?",
            ))
            .await
            .expect("a turn");
        let id = turn.ack.conversation_id;
        conversation = Some(id);
        let reply = turn.ack.assistant_message_id;
        engine
            .append_text(id, reply, 0, answer.clone(), "bench")
            .await
            .expect("appended");
        engine
            .end_reply(id, bench_done(reply), "bench")
            .await
            .expect("ended");
    }
    conversation.expect("at least one turn")
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// A throwaway redis-server on a free port, without persistence (so that
/// the figures are Redis's work, not the disk's).
struct BenchRedis {
    port: u16,
    child: std::process::Child,
}

impl BenchRedis {
    fn start() -> Option<BenchRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = BenchRedis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.connection().is_none() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> Option<redis::Connection> {
        let mut connection = redis::Client::open(self.url())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .ok()
            .map(|_| connection)
    }

    fn stats(&self) -> RedisStats {
        let mut connection = self.connection().expect("the bench redis-server answers");
        // Redis 7 keeps a latency histogram per command, allocated (and
        // zeroed, tens of microseconds) at a command's first call after
        // CONFIG RESETSTAT: with it on, every reset would charge the next
        // phase for each kind of command it runs. Older servers have no
        // such setting and nothing to switch off.
        let _: Result<(), _> = redis::cmd("CONFIG")
            .arg("SET")
            .arg("latency-tracking")
            .arg("no")
            .query(&mut connection);
        RedisStats(connection)
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Redis reports of its own work.
struct RedisStats(redis::Connection);

impl RedisStats {
    fn info(&mut self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.0)
            .expect("INFO")
    }

    /// CPU time of Redis's main thread, user and system, in microseconds.
    fn cpu_micros(&mut self) -> u64 {
        let info = self.info("cpu");
        let seconds: f64 = info
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                matches!(
                    name,
                    "used_cpu_sys_main_thread" | "used_cpu_user_main_thread"
                )
                .then(|| value.trim().parse::<f64>().ok())?
            })
            .sum();
        (seconds * 1e6) as u64
    }

    /// Starts the command statistics over.
    fn reset(&mut self) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut self.0)
            .expect("CONFIG RESETSTAT");
    }

    /// `(name, calls, usec)` of every command run since the last reset,
    /// leaving out the measurement's own.
    fn commandstats(&mut self) -> Vec<(String, u64, u64)> {
        self.info("commandstats")
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |key: &str| -> Option<u64> {
                    stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
                        .parse()
                        .ok()
                };
                let own = ["config", "info"].iter().any(|own| name.starts_with(own));
                (!own).then(|| Some((name.to_owned(), field("calls")?, field("usec")?)))?
            })
            .collect()
    }

    /// Microseconds Redis spent running scripts since the last reset, the
    /// commands they called included.
    fn script_micros(&mut self) -> u64 {
        self.commandstats()
            .iter()
            .filter(|(name, _, _)| name.starts_with("evalsha"))
            .map(|(_, _, usec)| usec)
            .sum()
    }

    /// Commands Redis ran since the last reset, those a script called
    /// included (Redis counts them too).
    fn commands(&mut self) -> u64 {
        self.commandstats().iter().map(|(_, calls, _)| calls).sum()
    }
}
