//! Micro-benchmarks of the hot path, below the sockets: what one event costs
//! to serialize, to append in the memory engine, and to travel the actor
//! tree from a generation to every subscriber's outbox.
//!
//! A plain `harness = false` binary timed with `std::time`: the figures it
//! exists for are throughputs of whole loops (millions of operations), where
//! a statistics framework adds compile time and nothing the reading needs.
//!
//!     cargo bench --bench hot_path            # everything, about 15 s
//!     cargo bench --bench hot_path -- frame   # the sections whose name matches

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
use chatstream::engine::{Engine, MemoryEngine, TextAppend, TurnRequest};
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
                .cast(ConnectionMsg::Text(format!(
                    r#"{{"type":"subscribe","id":"s","conversation_id":"{conversation}"}}"#
                )))
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
                    .cast(ConnectionMsg::Text(format!(
                        r#"{{"type":"send","id":"t{turn}","conversation_id":"{conversation}","content":"How do actors work?"}}"#
                    )))
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
    let (outbox, receiver) = Outbox::channel(1 << 16);
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
