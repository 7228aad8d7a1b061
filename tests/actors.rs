//! Actor-level tests: they build a node's actor tree without HTTP and drive
//! the Conversation, Generation and Connection actors directly.
//!
//! Nothing here sleeps to synchronise: tests wait on a condition with a
//! deadline (`eventually`) or receive from a channel under a timeout. Where a
//! test must show that something does *not* arrive, it appends a sentinel event
//! and checks that the sentinel is the next thing delivered: delivery is
//! ordered, so anything spurious would have come first. The one sleep (after
//! a cancel) only gives a stopped stream time to misbehave.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatstream::actors::NodeContext;
use chatstream::actors::chat::Chat;
use chatstream::actors::connections::ConnectionsMsg;
use chatstream::actors::connections::connection::{ConnectionArgs, ConnectionMsg};
use chatstream::actors::connections::inbox::Inbox;
use chatstream::actors::connections::outbox::{Outbox, OutboxReceiver};
use chatstream::actors::conversations::ConversationsMsg;
use chatstream::actors::conversations::conversation::{JoinError, JoinMode, Subscriber};
use chatstream::actors::directory::{ActorDirectory, ActorKind};
use chatstream::actors::registry::RegistryMsg;
use chatstream::actors::supervisor::{NodeActors, NodeMsg, NodeSupervisor};
use chatstream::config::Settings;
use chatstream::engine::{Appended, BusMessage, MemoryEngine, TurnRequest};
use chatstream::protocol::UserId;
use chatstream::protocol::{
    ErrorCode, Event, LogEntry, Message, MessageStatus, Role, SendRequest, ServerFrame, Since,
    close_code,
};
use chatstream::providers::{
    ChatTurn, Completion, CompletionRequest, CompletionStream, DemoProvider, Provider,
    ProviderError, Providers,
};
use futures_util::{StreamExt, stream};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long a test waits for something that should happen promptly; only a
/// failing test ever waits this long.
const DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// A node without HTTP
// ---------------------------------------------------------------------------

/// Settings for fast, deterministic tests: every token is appended as its own
/// delta, and restarts back off for milliseconds, not seconds.
fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.coalesce_ms = 0;
    settings.generation_backoff_ms = 5;
    settings.generation_max_restarts = 3;
    settings.heartbeat_ms = 25_000;
    settings.frames_per_second = 1_000;
    settings.outbox_frames = 1_024;
    settings
}

fn demo() -> DemoProvider {
    DemoProvider::new(Duration::from_millis(2), 30)
}

fn demo_providers() -> Providers {
    Providers::new("demo").with("demo", Arc::new(demo()))
}

/// One node's actor tree, stopped when dropped (also when a test panics).
struct TestNode {
    context: Arc<NodeContext>,
    actors: NodeActors,
}

impl TestNode {
    async fn start(settings: Settings, providers: Providers) -> TestNode {
        let context = Arc::new(NodeContext {
            node_id: format!("test-{}", Uuid::new_v4().simple()),
            settings,
            engine: Arc::new(MemoryEngine::new(1000)),
            providers,
            directory: ActorDirectory::default(),
            persistence: None,
        });
        let (root, _) = Actor::spawn(None, NodeSupervisor, context.clone())
            .await
            .expect("the actor tree starts");
        let actors = ractor::call!(root, NodeMsg::Actors).expect("the root answers");
        TestNode { context, actors }
    }

    async fn stop(self) {
        self.actors
            .root
            .stop_and_wait(None, Some(DEADLINE))
            .await
            .expect("the actor tree stops");
    }

    fn chat(&self) -> Chat {
        Chat::new(self.context.clone(), self.actors.generations.clone())
    }

    /// Starts a turn straight in the engine, so no generation runs: the test
    /// appends the reply's events itself. Returns (conversation, reply).
    async fn manual_turn(&self, user: UserId) -> (Uuid, Uuid) {
        let turn = self
            .context
            .engine
            .start_turn(TurnRequest {
                user,
                conversation_id: None,
                content: "tell me about ordering".into(),
                model: "demo".into(),
                client_msg_id: None,
                branch: Default::default(),
            })
            .await
            .expect("the turn starts");
        (turn.ack.conversation_id, turn.ack.assistant_message_id)
    }

    /// Starts a turn through `Chat`, which also starts its generation.
    /// Returns (conversation, reply).
    async fn send(&self, user: UserId, content: &str, model: &str) -> (Uuid, Uuid) {
        let turn = self
            .chat()
            .send(
                user,
                SendRequest {
                    conversation_id: None,
                    content: content.into(),
                    client_msg_id: None,
                    model: Some(model.into()),
                    parent_id: None,
                },
            )
            .await
            .expect("the turn starts");
        (turn.ack.conversation_id, turn.ack.assistant_message_id)
    }

    async fn delta(&self, conversation_id: Uuid, message_id: Uuid, text: &str) -> Appended {
        let event = Event::Delta {
            message_id,
            text: text.into(),
        };
        self.context
            .engine
            .append(conversation_id, event)
            .await
            .expect("the delta applies")
    }

    /// The whole log (the test engine keeps 1000 entries, more than any test writes).
    async fn log(&self, conversation_id: Uuid) -> Vec<Arc<LogEntry>> {
        self.context
            .engine
            .read(conversation_id, 0)
            .await
            .expect("the log reads")
            .entries
            .expect("nothing was trimmed")
    }

    async fn message(&self, conversation_id: Uuid, message_id: Uuid) -> Message {
        let snapshot = self.context.engine.snapshot(conversation_id).await.unwrap();
        snapshot
            .messages
            .into_iter()
            .find(|m| m.id == message_id)
            .expect("the message exists")
    }

    fn has_actor(&self, kind: ActorKind, key: Uuid) -> bool {
        let key = key.to_string();
        self.context
            .directory
            .list()
            .iter()
            .any(|a| a.kind == kind && a.key.as_deref() == Some(key.as_str()))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Harmless after `stop`; stops the tree when an assertion failed first.
        self.actors.root.stop(None);
    }
}

/// Polls `condition` every 5 ms until it holds, failing the test at `deadline`.
async fn eventually(what: &str, deadline: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The text of every delta of `message_id` in `log`, joined.
fn fold_deltas(log: &[Arc<LogEntry>], message_id: Uuid) -> String {
    log.iter()
        .filter_map(|entry| match &entry.event {
            Event::Delta {
                message_id: id,
                text,
            } if *id == message_id => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn parse(frame: &str) -> ServerFrame {
    serde_json::from_str(frame).unwrap_or_else(|e| panic!("bad server frame {frame}: {e}"))
}

// ---------------------------------------------------------------------------
// A stand-in Connection that records what a Conversation delivers
// ---------------------------------------------------------------------------

/// Has `type Msg = ConnectionMsg`, so a Conversation takes it for a
/// Connection; forwards every delivered frame, parsed, to the test.
struct ForwardingConnection;

impl Actor for ForwardingConnection {
    type Msg = ConnectionMsg;
    type State = mpsc::UnboundedSender<ServerFrame>;
    type Arguments = mpsc::UnboundedSender<ServerFrame>;

    async fn pre_start(
        &self,
        _: ActorRef<ConnectionMsg>,
        frames: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(frames)
    }

    async fn handle(
        &self,
        _: ActorRef<ConnectionMsg>,
        message: ConnectionMsg,
        frames: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let ConnectionMsg::Deliver { frame, .. } = message {
            let _ = frames.send(parse(&frame));
        }
        Ok(())
    }
}

/// A subscriber the test controls: joins conversations and reads its frames.
struct Probe {
    subscriber: Subscriber,
    frames: mpsc::UnboundedReceiver<ServerFrame>,
    /// The first frames a join answered with, read before delivered ones.
    backlog: VecDeque<ServerFrame>,
}

impl Probe {
    async fn spawn() -> Probe {
        let (sender, frames) = mpsc::unbounded_channel();
        let (connection, _) = Actor::spawn(None, ForwardingConnection, sender)
            .await
            .expect("the probe starts");
        let subscriber = Subscriber {
            connection,
            connection_id: Uuid::new_v4(),
            token: 1,
        };
        Probe {
            subscriber,
            frames,
            backlog: VecDeque::new(),
        }
    }

    /// Joins through the Conversations supervisor, retrying as a Connection
    /// does when it meets a Conversation that is stopping.
    async fn join(&mut self, node: &TestNode, conversation_id: Uuid, mode: JoinMode) {
        for _ in 0..5 {
            let subscriber = self.subscriber.clone();
            let mode = mode.clone();
            let joined = ractor::call!(node.actors.conversations, |reply| {
                ConversationsMsg::Join {
                    conversation_id,
                    subscriber,
                    mode,
                    reply,
                }
            })
            .expect("the Conversations supervisor answers");
            match joined {
                Ok(first_frames) => {
                    // They come before any delivered frame of this subscription.
                    self.backlog.extend(
                        first_frames.iter().map(|f| {
                            serde_json::from_str::<ServerFrame>(f).expect("frames are JSON")
                        }),
                    );
                    return;
                }
                Err(JoinError::Retry) => continue,
                Err(JoinError::Failed(error)) => panic!("join failed: {error}"),
            }
        }
        panic!("join kept meeting a stopping Conversation");
    }

    async fn next(&mut self) -> ServerFrame {
        if let Some(frame) = self.backlog.pop_front() {
            return frame;
        }
        tokio::time::timeout(DEADLINE, self.frames.recv())
            .await
            .expect("a frame arrives in time")
            .expect("the probe is alive")
    }

    /// The next frame, which must be an event: (seq, event).
    async fn next_event(&mut self) -> (u64, Event) {
        match self.next().await {
            ServerFrame::Event { seq, event, .. } => (seq, event),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Seqs of events received until (and including) `last`.
    async fn event_seqs_until(&mut self, last: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let (seq, _) = self.next_event().await;
            seqs.push(seq);
            if seq >= last {
                return seqs;
            }
        }
    }

    /// Expects `subscribed`, then `snapshot`; returns its epoch, seq and messages.
    async fn expect_snapshot(&mut self) -> (String, u64, Vec<Message>) {
        let subscribed_seq = match self.next().await {
            ServerFrame::Subscribed { seq, recovered, .. } => {
                assert!(
                    !recovered,
                    "a join without a usable `since` is not recovered"
                );
                seq
            }
            other => panic!("expected subscribed, got {other:?}"),
        };
        match self.next().await {
            ServerFrame::Snapshot {
                epoch,
                seq,
                messages,
                ..
            } => {
                assert_eq!(seq, subscribed_seq, "subscribed names the snapshot's seq");
                (epoch, seq, messages)
            }
            other => panic!("expected snapshot, got {other:?}"),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.subscriber.connection.stop(None);
    }
}

fn subscribe(since: Option<Since>, frame_id: &str) -> JoinMode {
    JoinMode::Subscribe {
        since,
        frame_id: Some(frame_id.into()),
    }
}

// ---------------------------------------------------------------------------
// Test providers
// ---------------------------------------------------------------------------

/// Sets its flag when dropped: shows that a provider stream was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Yields a token every `tick`, forever, or stalls for good after
/// `stall_after` tokens (a model that hangs mid-reply). Its stream holds a
/// `DropFlag`.
struct EndlessProvider {
    tick: Duration,
    stall_after: Option<u64>,
    dropped: Arc<AtomicBool>,
}

impl EndlessProvider {
    fn new(tick: Duration) -> EndlessProvider {
        EndlessProvider {
            tick,
            stall_after: None,
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    fn stalling_after(tokens: u64) -> EndlessProvider {
        EndlessProvider {
            stall_after: Some(tokens),
            ..EndlessProvider::new(Duration::from_millis(5))
        }
    }
}

impl Provider for EndlessProvider {
    fn kind(&self) -> &'static str {
        "test-endless"
    }

    fn can_continue(&self) -> bool {
        true
    }

    fn complete(&self, _: CompletionRequest) -> CompletionStream {
        let (tick, stall_after) = (self.tick, self.stall_after);
        let guard = DropFlag(self.dropped.clone());
        // The guard lives in the stream's state (or in its pending future):
        // it drops exactly when the stream does.
        stream::unfold((guard, 0u64), move |(guard, n)| async move {
            if stall_after.is_some_and(|limit| n >= limit) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(tick).await;
            let piece = Completion::Text(format!(" t{n}"));
            Some((Ok(piece), (guard, n + 1)))
        })
        .boxed()
    }
}

/// The demo model with a broken connection: its first `failing_calls` streams
/// yield `pieces` pieces and then a retryable error; later calls are the demo
/// model itself, which continues from `request.continue_from`.
struct BrokenProvider {
    demo: DemoProvider,
    pieces: usize,
    failing_calls: usize,
    calls: AtomicUsize,
}

impl Provider for BrokenProvider {
    fn kind(&self) -> &'static str {
        "test-broken"
    }

    fn can_continue(&self) -> bool {
        true
    }

    fn complete(&self, request: CompletionRequest) -> CompletionStream {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let demo = self.demo.complete(request);
        if call >= self.failing_calls {
            return demo;
        }
        let failure = ProviderError {
            message: "connection reset by the test".into(),
            retryable: true,
        };
        demo.take(self.pieces)
            .chain(stream::iter([Err(failure)]))
            .boxed()
    }
}

// ---------------------------------------------------------------------------
// 1. A Conversation merges the log and live events by seq
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_drops_duplicates_and_fills_gaps() {
    let node = TestNode::start(test_settings(), demo_providers()).await;
    let engine = node.context.engine.clone();
    let (conversation, reply) = node.manual_turn(UserId::new_guest()).await;

    let mut probe = Probe::spawn().await;
    probe.join(&node, conversation, subscribe(None, "s")).await;
    let (epoch, snapshot_seq, _) = probe.expect_snapshot().await;
    assert_eq!(
        snapshot_seq, 2,
        "the snapshot holds the user message and the reply"
    );

    let mut received = Vec::new();
    let first = node.delta(conversation, reply, "one").await;
    received.push(probe.next_event().await);
    assert_eq!(received[0].0, first.entry.seq);

    // (a) Replay two entries the subscriber already has (one from the
    // snapshot, one live) as if the bus delivered them again. They reach the
    // registry ahead of the next append's publication, so if they were not
    // dropped they would be delivered before it.
    let user_message = node.log(conversation).await[0].clone();
    for stale in [first.entry.clone(), user_message] {
        node.actors
            .registry
            .cast(RegistryMsg::Bus(BusMessage::Published {
                conversation_id: conversation,
                epoch: first.epoch.clone(),
                entry: stale,
            }))
            .unwrap();
    }
    let second = node.delta(conversation, reply, "two").await;
    received.push(probe.next_event().await);
    assert_eq!(
        received[1].0, second.entry.seq,
        "a re-delivered entry went out twice"
    );

    // (b) Two appends the bus never publishes (the memory engine publishes
    // only watched conversations), then one it does: the Conversation sees a
    // gap and must fill it from the log before delivering the third.
    engine.unwatch(conversation).await.unwrap();
    node.delta(conversation, reply, "three").await;
    node.delta(conversation, reply, "four").await;
    engine.watch(conversation).await.unwrap();
    node.delta(conversation, reply, "five").await;
    for _ in 0..3 {
        received.push(probe.next_event().await);
    }

    // A sentinel: it must be the very next frame, so nothing repeated or
    // stray is queued before it.
    let sentinel = node.delta(conversation, reply, "six").await;
    received.push(probe.next_event().await);

    let seqs: Vec<u64> = received.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (snapshot_seq + 1..=sentinel.entry.seq).collect();
    assert_eq!(seqs, expected, "every event once, in seq order, no gap");
    let texts: Vec<&str> = received
        .iter()
        .map(|(_, event)| match event {
            Event::Delta { text, .. } => text.as_str(),
            other => panic!("expected a delta, got {other:?}"),
        })
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four", "five", "six"]);
    assert_eq!(*first.epoch, *epoch);

    drop(probe);
    node.stop().await;
}

// ---------------------------------------------------------------------------
// 2. A subscriber resumes from `since`
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_resumes_from_since_mid_stream() {
    // Deltas before the late join (its backlog), during it (racing its log
    // read), and after it (certainly live for it).
    const BEFORE: u64 = 10;
    const DURING: u64 = 20;
    const AFTER: u64 = 5;
    let node = Arc::new(TestNode::start(test_settings(), demo_providers()).await);
    let (conversation, reply) = node.manual_turn(UserId::new_guest()).await;

    let mut early = Probe::spawn().await;
    early
        .join(&node, conversation, subscribe(None, "early"))
        .await;
    let (epoch, start_seq, _) = early.expect_snapshot().await;
    let last_seq = start_seq + BEFORE + DURING + AFTER;

    for n in 0..BEFORE {
        node.delta(conversation, reply, &format!(" b{n}")).await;
    }
    let since = Since {
        epoch: epoch.clone(),
        seq: start_seq + 4,
    };
    let appender = tokio::spawn({
        let node = node.clone();
        async move {
            for n in 0..DURING {
                node.delta(conversation, reply, &format!(" d{n}")).await;
                tokio::task::yield_now().await;
            }
        }
    });

    let mut late = Probe::spawn().await;
    late.join(&node, conversation, subscribe(Some(since.clone()), "late"))
        .await;
    match late.next().await {
        ServerFrame::Subscribed {
            id,
            epoch: subscribed_epoch,
            seq,
            recovered,
            ..
        } => {
            assert_eq!(id.as_deref(), Some("late"));
            assert!(recovered, "the position is still in the log");
            assert_eq!(subscribed_epoch, epoch);
            assert!(
                seq >= start_seq + BEFORE,
                "subscribed names the current head"
            );
        }
        other => panic!("expected subscribed, got {other:?}"),
    }
    appender.await.unwrap();
    for n in 0..AFTER {
        node.delta(conversation, reply, &format!(" a{n}")).await;
    }

    let late_seqs = late.event_seqs_until(last_seq).await;
    assert_eq!(
        late_seqs,
        (since.seq + 1..=last_seq).collect::<Vec<_>>(),
        "exactly the events after `since`, then the live ones, once each, in order"
    );
    let early_seqs = early.event_seqs_until(last_seq).await;
    assert_eq!(early_seqs, (start_seq + 1..=last_seq).collect::<Vec<_>>());

    // A position of another epoch cannot be resumed: a snapshot answers it.
    let mut stranger = Probe::spawn().await;
    let wrong = Since {
        epoch: "not-this-epoch".into(),
        seq: since.seq,
    };
    stranger
        .join(&node, conversation, subscribe(Some(wrong), "stranger"))
        .await;
    let (snapshot_epoch, snapshot_seq, messages) = stranger.expect_snapshot().await;
    assert_eq!(snapshot_epoch, epoch);
    assert_eq!(snapshot_seq, last_seq);
    let content = &messages.iter().find(|m| m.id == reply).unwrap().content;
    assert_eq!(*content, fold_deltas(&node.log(conversation).await, reply));

    // Everyone continues live from there, with nothing queued before it.
    let sentinel = node.delta(conversation, reply, " end").await.entry.seq;
    for probe in [&mut early, &mut late, &mut stranger] {
        assert_eq!(probe.next_event().await.0, sentinel);
    }

    drop((early, late, stranger));
    Arc::into_inner(node)
        .expect("the appender is done")
        .stop()
        .await;
}

// ---------------------------------------------------------------------------
// 3. Cancelling a generation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_provider_and_keeps_the_text() {
    let endless = Arc::new(EndlessProvider::new(Duration::from_millis(20)));
    let dropped = endless.dropped.clone();
    let providers = demo_providers().with("endless", endless);
    let node = TestNode::start(test_settings(), providers).await;
    let user = UserId::new_guest();
    let (conversation, reply) = node.send(user.clone(), "never stop", "endless").await;

    eventually("a few deltas in the log", DEADLINE, async || {
        let log = node.log(conversation).await;
        log.iter()
            .filter(|e| matches!(e.event, Event::Delta { .. }))
            .count()
            >= 3
    })
    .await;
    assert!(node.has_actor(ActorKind::Generation, reply));

    node.chat()
        .cancel(user.clone(), reply)
        .await
        .expect("a streaming reply can be cancelled");
    eventually(
        "the provider stream to be dropped",
        Duration::from_millis(500),
        async || dropped.load(Ordering::SeqCst),
    )
    .await;

    let message = node.message(conversation, reply).await;
    assert_eq!(message.status, MessageStatus::Cancelled);
    let log = node.log(conversation).await;
    assert!(!message.content.is_empty(), "the text so far is kept");
    assert_eq!(message.content, fold_deltas(&log, reply));
    let last = log.last().unwrap();
    assert_eq!(last.event, Event::Cancelled { message_id: reply });

    eventually(
        "the generation to leave the directory",
        DEADLINE,
        async || !node.has_actor(ActorKind::Generation, reply),
    )
    .await;

    // Asserting an absence: a few provider ticks later, nothing was appended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let head = node
        .context
        .engine
        .snapshot(conversation)
        .await
        .unwrap()
        .seq;
    assert_eq!(head, last.seq, "nothing is appended after `cancelled`");

    let again = node.chat().cancel(user, reply).await.unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict);

    node.stop().await;
}

/// A provider that hangs never yields again, so only the Generation aborting
/// its stream task (not the task noticing the actor is gone) can drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_drops_a_stalled_provider_stream() {
    let stalled = Arc::new(EndlessProvider::stalling_after(3));
    let dropped = stalled.dropped.clone();
    let providers = demo_providers().with("stalled", stalled);
    let node = TestNode::start(test_settings(), providers).await;
    let user = UserId::new_guest();
    let (conversation, reply) = node.send(user.clone(), "then hang", "stalled").await;

    eventually("the three tokens before the stall", DEADLINE, async || {
        node.message(conversation, reply).await.content == " t0 t1 t2"
    })
    .await;
    node.chat().cancel(user, reply).await.unwrap();
    eventually(
        "the stalled stream to be dropped",
        Duration::from_millis(500),
        async || dropped.load(Ordering::SeqCst),
    )
    .await;
    let message = node.message(conversation, reply).await;
    assert_eq!(message.status, MessageStatus::Cancelled);
    assert_eq!(message.content, " t0 t1 t2");

    node.stop().await;
}

// ---------------------------------------------------------------------------
// 4. The Generations supervisor restarts a failed reply
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_generation_continues_without_repeating() {
    let broken = Arc::new(BrokenProvider {
        demo: demo(),
        pieces: 7,
        failing_calls: 1,
        calls: AtomicUsize::new(0),
    });
    let providers = demo_providers().with("flaky", broken.clone());
    let node = TestNode::start(test_settings(), providers).await;
    let content = "how do supervisors work?";
    let (conversation, reply) = node.send(UserId::new_guest(), content, "flaky").await;

    eventually("the reply to complete", DEADLINE, async || {
        node.message(conversation, reply).await.status != MessageStatus::Streaming
    })
    .await;

    let message = node.message(conversation, reply).await;
    assert_eq!(message.status, MessageStatus::Complete);
    let history = [ChatTurn {
        role: Role::User,
        content: content.into(),
    }];
    let undisturbed = demo().reply_tokens(&history).concat();
    assert_eq!(message.content, undisturbed);
    assert_eq!(
        broken.calls.load(Ordering::SeqCst),
        2,
        "one failure, one restart"
    );
    let log = node.log(conversation).await;
    assert_eq!(fold_deltas(&log, reply), undisturbed, "no text is repeated");
    assert!(matches!(log.last().unwrap().event, Event::Done { .. }));

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_fails_after_its_last_restart_keeping_the_text() {
    let broken = Arc::new(BrokenProvider {
        demo: demo(),
        pieces: 3,
        failing_calls: usize::MAX,
        calls: AtomicUsize::new(0),
    });
    let providers = demo_providers().with("broken", broken.clone());
    let mut settings = test_settings();
    settings.generation_max_restarts = 2;
    let node = TestNode::start(settings, providers).await;
    let content = "what if it never works?";
    let (conversation, reply) = node.send(UserId::new_guest(), content, "broken").await;

    eventually("the reply to end", DEADLINE, async || {
        node.message(conversation, reply).await.status != MessageStatus::Streaming
    })
    .await;

    let message = node.message(conversation, reply).await;
    assert_eq!(message.status, MessageStatus::Failed);
    assert!(message.error.as_deref().is_some_and(|e| !e.is_empty()));
    // Three attempts (the first and two restarts), three pieces each, each
    // continuing where the previous one broke off.
    assert_eq!(broken.calls.load(Ordering::SeqCst), 3);
    let history = [ChatTurn {
        role: Role::User,
        content: content.into(),
    }];
    let expected: String = demo().reply_tokens(&history)[..9].concat();
    assert_eq!(message.content, expected, "the text so far is kept");
    let log = node.log(conversation).await;
    assert_eq!(fold_deltas(&log, reply), expected);
    assert!(matches!(log.last().unwrap().event, Event::Failed { .. }));

    node.stop().await;
}

// ---------------------------------------------------------------------------
// 5. A Connection enforces its limits
// ---------------------------------------------------------------------------

/// A Connection actor with the test holding the other end of its outbox.
struct Client {
    actor: ActorRef<ConnectionMsg>,
    connection_id: Uuid,
    outbox: OutboxReceiver,
}

impl Client {
    async fn open(node: &TestNode, user_id: UserId, outbox_capacity: usize) -> Client {
        let (outbox, receiver) = Outbox::channel(outbox_capacity, usize::MAX);
        let connection_id = Uuid::new_v4();
        let args = ConnectionArgs {
            connection_id,
            user_id,
            outbox,
            chat: node.chat(),
            conversations: node.actors.conversations.clone(),
        };
        let actor = ractor::call!(node.actors.connections, |reply| ConnectionsMsg::Open {
            args,
            reply
        })
        .expect("the Connections supervisor answers")
        .expect("the connection opens");
        Client {
            actor,
            connection_id,
            outbox: receiver,
        }
    }

    fn text(&self, text: impl Into<String>) {
        self.actor
            .cast(ConnectionMsg::Text {
                text: text.into(),
                slot: None,
            })
            .expect("the connection is alive");
    }

    async fn next(&mut self) -> ServerFrame {
        let frame = tokio::time::timeout(DEADLINE, self.outbox.frames.recv())
            .await
            .expect("a frame arrives in time")
            .expect("the outbox is open");
        parse(&frame)
    }

    async fn expect_welcome(&mut self) {
        match self.next().await {
            ServerFrame::Welcome { connection_id, .. } => {
                assert_eq!(connection_id, self.connection_id)
            }
            other => panic!("the first frame must be welcome, got {other:?}"),
        }
    }

    /// The close code the Connection sends, waiting at most `deadline`.
    async fn close_code(&mut self, deadline: Duration) -> u16 {
        tokio::time::timeout(deadline, &mut self.outbox.close)
            .await
            .expect("the connection closes in time")
            .expect("the close signal is sent")
            .code
    }

    /// Whether the Connection has neither closed nor been told to.
    fn is_open(&mut self) -> bool {
        self.outbox.close.try_recv().is_err() && !self.outbox.frames.is_closed()
    }
}

fn error_code(frame: &ServerFrame) -> Option<(Option<&str>, ErrorCode)> {
    match frame {
        ServerFrame::Error { id, code, .. } => Some((id.as_deref(), *code)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_rate_limits_client_frames_before_parsing() {
    let node = TestNode::start(test_settings(), demo_providers()).await;
    let (outbox, receiver) = Outbox::channel(1_024, usize::MAX);
    let connection_id = Uuid::new_v4();
    let args = ConnectionArgs {
        connection_id,
        user_id: UserId::new_guest(),
        outbox: outbox.clone(),
        chat: node.chat(),
        conversations: node.actors.conversations.clone(),
    };
    let actor = ractor::call!(node.actors.connections, |reply| ConnectionsMsg::Open {
        args,
        reply
    })
    .unwrap()
    .unwrap();
    let mut client = Client {
        actor: actor.clone(),
        connection_id,
        outbox: receiver,
    };
    client.expect_welcome().await;
    // 5 a second, bursts of 10; closed once 40 are refused within 5 seconds.
    let mut inbox = Inbox::new(actor, outbox, 5);

    for _ in 0..30 {
        inbox
            .text(r#"{"type":"ping","id":"p"}"#)
            .await
            .expect("the connection is alive");
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..30 {
        match client.next().await {
            ServerFrame::Pong { id } => {
                assert_eq!(id.as_deref(), Some("p"));
                pongs += 1;
            }
            frame => {
                assert_eq!(
                    error_code(&frame),
                    Some((None, ErrorCode::RateLimited)),
                    "every frame is answered with pong or rate_limited, refused ones unread"
                );
                limited += 1;
            }
        }
    }
    assert!(pongs >= 10, "the burst is allowed, got {pongs} pongs");
    assert!(
        limited >= 15,
        "the rest is rate limited, got {limited} errors"
    );
    assert!(
        client.is_open(),
        "rate limiting alone does not close the socket"
    );

    // A refused frame is not parsed: not even malformed JSON gets a
    // `bad_request` while the limit holds.
    inbox.text("{not json").await.unwrap();
    assert_eq!(
        error_code(&client.next().await),
        Some((None, ErrorCode::RateLimited))
    );

    // Flooding on: closed with 4029 once 40 frames were refused within 5 seconds.
    let mut refused_before_close = 0;
    while inbox.text(r#"{"type":"ping"}"#).await.is_ok() {
        refused_before_close += 1;
        assert!(refused_before_close < 1_000, "a flood is closed");
    }
    assert_eq!(client.close_code(DEADLINE).await, 4029);

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_closes_with_heartbeat_timeout() {
    let mut settings = test_settings();
    settings.heartbeat_ms = 100;
    let node = TestNode::start(settings, demo_providers()).await;
    let opened = Instant::now();
    let mut client = Client::open(&node, UserId::new_guest(), 1_024).await;
    match client.next().await {
        ServerFrame::Welcome { heartbeat_ms, .. } => assert_eq!(heartbeat_ms, 100),
        other => panic!("the first frame must be welcome, got {other:?}"),
    }

    let code = client.close_code(Duration::from_secs(2)).await;
    assert_eq!(code, close_code::HEARTBEAT_TIMEOUT);
    assert!(
        opened.elapsed() >= Duration::from_millis(200),
        "silence is allowed for twice the heartbeat"
    );
    eventually(
        "the connection to leave the directory",
        DEADLINE,
        async || !node.has_actor(ActorKind::Connection, client.connection_id),
    )
    .await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_closed_with_too_slow() {
    let endless = Arc::new(EndlessProvider::new(Duration::from_millis(5)));
    let providers = demo_providers().with("endless", endless);
    let node = TestNode::start(test_settings(), providers).await;
    let user = UserId::new_guest();
    let (conversation, _) = node.send(user.clone(), "stream a lot", "endless").await;

    // Room for four frames, and the test never reads them: welcome,
    // subscribed, snapshot and one event fill it; the next event cannot fit.
    let mut client = Client::open(&node, user.clone(), 4).await;
    client.text(format!(
        r#"{{"type":"subscribe","id":"s","conversation_id":"{conversation}"}}"#
    ));
    assert_eq!(client.close_code(DEADLINE).await, close_code::TOO_SLOW);
    eventually(
        "the connection to leave the directory",
        DEADLINE,
        async || !node.has_actor(ActorKind::Connection, client.connection_id),
    )
    .await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_frames_are_answered_and_the_connection_survives() {
    let node = TestNode::start(test_settings(), demo_providers()).await;
    let user = UserId::new_guest();
    let mut client = Client::open(&node, user.clone(), 1_024).await;
    client.expect_welcome().await;

    client.text("{not json");
    let frame = client.next().await;
    assert_eq!(error_code(&frame), Some((None, ErrorCode::BadRequest)));

    let huge = "a".repeat(40_000);
    client.text(format!(
        r#"{{"type":"send","id":"big","content":"{huge}"}}"#
    ));
    let frame = client.next().await;
    assert_eq!(error_code(&frame), Some((Some("big"), ErrorCode::TooLarge)));
    let conversations = node.context.engine.list_conversations(&user).await.unwrap();
    assert!(conversations.is_empty(), "a rejected send starts nothing");

    client.text(r#"{"type":"ping","id":"after"}"#);
    assert_eq!(
        client.next().await,
        ServerFrame::Pong {
            id: Some("after".into())
        }
    );
    assert!(client.is_open());

    node.stop().await;
}
