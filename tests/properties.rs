//! Property tests of the two promises the log makes (ARCHITECTURE.md, "One
//! log per conversation"): history and state never disagree, and delivery
//! merges history with live events without losing or repeating one.
//!
//! - Whatever a conversation goes through, folding its log from seq 1 gives
//!   exactly the engine's snapshot, and both hold what the operations meant.
//! - However live events reach a `Conversation` actor (in order, late, early,
//!   twice, never, around a subscriber's replay), every subscriber receives
//!   each seq once, in order, from where it started up to the head.
//!
//! Nothing here sleeps to synchronise: the actor's mailbox is ordered, so a
//! join it answers, or its drain, proves every earlier message handled, and
//! a marker cast to the fake Connection after that comes out after every
//! frame the actor sent it.
//!
//! `PROPTEST_CASES` sets the number of cases of every property, for a deeper
//! run than the default one sized for `cargo test`.

use std::sync::Arc;
use std::time::Duration;

use chatstream::actors::connections::connection::ConnectionMsg;
use chatstream::actors::conversations::ConversationsMsg;
use chatstream::actors::conversations::conversation::{
    Conversation, ConversationArgs, ConversationMsg, JoinError, JoinMode, Subscriber,
};
use chatstream::actors::directory::ActorDirectory;
use chatstream::actors::registry::RegistryMsg;
use chatstream::actors::{Frame, NodeContext};
use chatstream::config::Settings;
use chatstream::engine::{BusMessage, Engine, EngineError, MemoryEngine, TextAppend, TurnRequest};
use chatstream::protocol::{
    Event, LogEntry, Message, MessageStatus, Role, ServerFrame, Since, Usage, UserId,
};
use chatstream::providers::Providers;
use chatstream::transcript::Transcript;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The lease holder every write of these tests comes from.
const NODE: &str = "properties";

/// How long a test waits for something that should happen at once; only a
/// failing test ever waits this long.
const DEADLINE: Duration = Duration::from_secs(10);

/// Enough entries that no log here is ever trimmed: both properties are
/// about a log that is kept whole.
const HISTORY: usize = 100_000;

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // A failure prints its shrunk input; nothing is written next to the
        // sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

// ---------------------------------------------------------------------------
// Folding the log gives the snapshot
// ---------------------------------------------------------------------------

/// Text whose byte length and character count differ: any scalar value,
/// often a multi-byte one, a combining mark or a NUL.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec!['a', 'é', '€', '😀', '\u{301}', '\0', '\n']);
    prop::collection::vec(prop_oneof![any::<char>(), special], 0..6).prop_map(String::from_iter)
}

/// One write to a streaming reply.
#[derive(Debug, Clone)]
enum Write {
    /// Text at the reply's current length, as a generation appends it.
    Text(String),
    /// The same append twice: a generation retrying one whose answer was
    /// lost. The retry must not append again.
    Retried(String),
    /// Text at a length the reply does not have: a writer that lost its
    /// place. Refused.
    Misplaced(String),
    /// A delta appended without an offset check.
    Delta(String),
}

#[derive(Debug, Clone)]
enum Ending {
    Done(Option<Usage>),
    Cancelled,
    Failed(String),
}

impl Ending {
    fn event(&self, message_id: Uuid) -> Event {
        match self {
            Ending::Done(usage) => Event::Done {
                message_id,
                finish_reason: "stop".into(),
                usage: *usage,
            },
            Ending::Cancelled => Event::Cancelled { message_id },
            Ending::Failed(error) => Event::Failed {
                message_id,
                error: error.clone(),
            },
        }
    }

    fn status(&self) -> MessageStatus {
        match self {
            Ending::Done(_) => MessageStatus::Complete,
            Ending::Cancelled => MessageStatus::Cancelled,
            Ending::Failed(_) => MessageStatus::Failed,
        }
    }
}

/// Something written after the reply ended: the first ending wins and
/// nothing follows it, so this is refused.
#[derive(Debug, Clone)]
enum Late {
    Text(String),
    Ending(Ending),
}

/// A user's turn and what happens to its reply.
#[derive(Debug, Clone)]
struct TurnPlan {
    content: String,
    writes: Vec<Write>,
    /// `None` leaves the reply streaming, and the next turn is refused.
    ending: Option<Ending>,
    late: Option<Late>,
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        prop::option::of((0u64..1_000, 0u64..1_000)).prop_map(|usage| Ending::Done(usage.map(
            |(prompt_tokens, completion_tokens)| Usage {
                prompt_tokens,
                completion_tokens,
            }
        ))),
        Just(Ending::Cancelled),
        text().prop_map(Ending::Failed),
    ]
}

fn turn_plan() -> impl Strategy<Value = TurnPlan> {
    let write = prop_oneof![
        4 => text().prop_map(Write::Text),
        1 => text().prop_map(Write::Retried),
        1 => text().prop_map(Write::Misplaced),
        2 => text().prop_map(Write::Delta),
    ];
    let late = prop_oneof![text().prop_map(Late::Text), ending().prop_map(Late::Ending)];
    (
        text(),
        prop::collection::vec(write, 0..10),
        prop_oneof![4 => ending().prop_map(Some), 1 => Just(None)],
        prop::option::of(late),
    )
        .prop_map(|(content, writes, ending, late)| TurnPlan {
            content,
            writes,
            ending,
            late,
        })
}

/// A message as the operations that made it mean it to be.
#[derive(Debug, Clone, PartialEq)]
struct Meant {
    role: Role,
    content: String,
    status: MessageStatus,
    error: Option<String>,
}

impl Meant {
    fn of(message: &Message) -> Meant {
        Meant {
            role: message.role,
            content: message.content.clone(),
            status: message.status,
            error: message.error.clone(),
        }
    }
}

/// Applies `plan` to a fresh memory engine and checks its log against its
/// snapshot and against what the operations meant.
async fn fold_equals_snapshot(plan: Vec<TurnPlan>) -> Result<(), TestCaseError> {
    let engine = MemoryEngine::new(HISTORY);
    let user = UserId::from(Uuid::new_v4());
    let mut conversation_id = None;
    let mut meant: Vec<Meant> = Vec::new();
    // Every operation the log must have taken, one seq each.
    let mut accepted = 0u64;
    for turn in plan {
        let started = engine
            .start_turn(TurnRequest {
                user: user.clone(),
                conversation_id,
                content: turn.content.clone(),
                model: "demo".into(),
                client_msg_id: None,
                branch: Default::default(),
            })
            .await;
        if meant
            .last()
            .is_some_and(|m| m.status == MessageStatus::Streaming)
        {
            prop_assert!(
                matches!(started, Err(EngineError::Conflict(_))),
                "a turn while a reply streams: {started:?}"
            );
            continue;
        }
        let started = started.map_err(fail)?;
        prop_assert_eq!(started.user_seq, accepted + 1);
        let conversation = started.ack.conversation_id;
        let reply = started.ack.assistant_message_id;
        conversation_id = Some(conversation);
        meant.push(Meant {
            role: Role::User,
            content: turn.content,
            status: MessageStatus::Complete,
            error: None,
        });
        meant.push(Meant {
            role: Role::Assistant,
            content: String::new(),
            status: MessageStatus::Streaming,
            error: None,
        });
        accepted += 2;
        for write in turn.writes {
            let content = &mut meant.last_mut().expect("the reply").content;
            let offset = content.len();
            match write {
                Write::Text(text) => {
                    let appended = engine
                        .append_text(conversation, reply, offset, text.clone(), NODE)
                        .await
                        .map_err(fail)?;
                    prop_assert!(matches!(appended, TextAppend::Appended(_)));
                    content.push_str(&text);
                    accepted += 1;
                }
                Write::Retried(text) => {
                    for attempt in 0..2 {
                        let appended = engine
                            .append_text(conversation, reply, offset, text.clone(), NODE)
                            .await
                            .map_err(fail)?;
                        // Empty text is at its offset again after the first
                        // attempt, so its retry is a new (empty) delta.
                        if attempt == 0 || text.is_empty() {
                            prop_assert!(matches!(appended, TextAppend::Appended(_)));
                            accepted += 1;
                        } else {
                            prop_assert!(matches!(appended, TextAppend::AlreadyApplied));
                        }
                    }
                    content.push_str(&text);
                }
                Write::Misplaced(text) => {
                    let wrong = offset + text.len() + 1;
                    let refused = engine
                        .append_text(conversation, reply, wrong, text, NODE)
                        .await;
                    prop_assert!(
                        matches!(refused, Err(EngineError::Conflict(_))),
                        "text at the wrong offset: {refused:?}"
                    );
                }
                Write::Delta(text) => {
                    let event = Event::Delta {
                        message_id: reply,
                        text: text.clone(),
                    };
                    engine.append(conversation, event).await.map_err(fail)?;
                    content.push_str(&text);
                    accepted += 1;
                }
            }
        }
        let Some(ending) = turn.ending else {
            continue;
        };
        // Cancels are appended by whoever cancels; the other endings by the
        // generation, under its lease.
        match &ending {
            Ending::Cancelled => engine.append(conversation, ending.event(reply)).await,
            _ => {
                engine
                    .end_reply(conversation, ending.event(reply), NODE)
                    .await
            }
        }
        .map_err(fail)?;
        let message = meant.last_mut().expect("the reply");
        message.status = ending.status();
        if let Ending::Failed(error) = &ending {
            message.error = Some(error.clone());
        }
        accepted += 1;
        let offset = message.content.len();
        let refused = match turn.late {
            None => continue,
            Some(Late::Text(text)) => engine
                .append_text(conversation, reply, offset, text, NODE)
                .await
                .map(|_| ()),
            Some(Late::Ending(late)) => engine
                .end_reply(conversation, late.event(reply), NODE)
                .await
                .map(|_| ()),
        };
        prop_assert!(
            matches!(refused, Err(EngineError::Conflict(_))),
            "a write after the ending: {refused:?}"
        );
    }

    let conversation = conversation_id.expect("the first turn always starts");
    let history = engine.read(conversation, 0).await.map_err(fail)?;
    let snapshot = engine.snapshot(conversation).await.map_err(fail)?;
    let log = history.entries.expect("nothing is trimmed");
    let seqs: Vec<u64> = log.iter().map(|entry| entry.seq).collect();
    prop_assert_eq!(seqs, (1..=accepted).collect::<Vec<_>>());
    prop_assert_eq!(history.head, accepted);
    prop_assert_eq!(snapshot.seq, accepted);
    prop_assert_eq!(&history.epoch, &snapshot.epoch);

    let mut fold = Transcript::default();
    for entry in &log {
        fold.apply(&entry.event)
            .map_err(|rejection| fail(format!("seq {}: {rejection}", entry.seq)))?;
    }
    prop_assert_eq!(fold.messages(), snapshot.messages.as_slice());
    // The engine folds with the same function; comparing with what the
    // operations meant is what catches a fold wrong in both places.
    let held: Vec<Meant> = snapshot.messages.iter().map(Meant::of).collect();
    prop_assert_eq!(held, meant);

    // A reader resuming after any seq gets exactly the rest of the log.
    for after in 0..=accepted {
        let rest = engine
            .read(conversation, after)
            .await
            .map_err(fail)?
            .entries
            .expect("nothing is trimmed");
        prop_assert!(
            rest.iter().map(|e| e.seq).eq(after + 1..=accepted),
            "read after {after}"
        );
        for entry in &rest {
            prop_assert_eq!(&entry.event, &log[entry.seq as usize - 1].event);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn folding_any_event_sequence_equals_the_snapshot(
        plan in prop::collection::vec(turn_plan(), 1..6)
    ) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(fold_equals_snapshot(plan))?;
    }
}

// ---------------------------------------------------------------------------
// Replay merged with live events by seq is exactly-once
// ---------------------------------------------------------------------------

/// Answers the Conversation's registration; the test plays the bus itself.
struct FakeRegistry;

impl Actor for FakeRegistry {
    type Msg = RegistryMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<RegistryMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<RegistryMsg>,
        message: RegistryMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let RegistryMsg::Register { reply, .. } = message {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }
}

/// Stands in for the Conversations supervisor: no subscriber leaves here, so
/// the actor never asks it for anything that matters.
struct FakeSupervisor;

impl Actor for FakeSupervisor {
    type Msg = ConversationsMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<ConversationsMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// What the fake Connection passes on to the test.
enum Seen {
    Frame {
        token: u64,
        frame: Frame,
    },
    Unsubscribed,
    /// The marker: every frame cast before it has been passed on.
    Flushed,
}

/// Stands in for every subscriber's Connection: passes on what it is sent,
/// in the order it is sent.
struct FakeConnection;

impl Actor for FakeConnection {
    type Msg = ConnectionMsg;
    type State = mpsc::UnboundedSender<Seen>;
    type Arguments = mpsc::UnboundedSender<Seen>;

    async fn pre_start(
        &self,
        _: ActorRef<ConnectionMsg>,
        seen: mpsc::UnboundedSender<Seen>,
    ) -> Result<mpsc::UnboundedSender<Seen>, ActorProcessingErr> {
        Ok(seen)
    }

    async fn handle(
        &self,
        _: ActorRef<ConnectionMsg>,
        message: ConnectionMsg,
        seen: &mut mpsc::UnboundedSender<Seen>,
    ) -> Result<(), ActorProcessingErr> {
        let _ = match message {
            ConnectionMsg::Deliver { token, frame, .. } => seen.send(Seen::Frame { token, frame }),
            ConnectionMsg::Unsubscribed { .. } => seen.send(Seen::Unsubscribed),
            ConnectionMsg::Activity => seen.send(Seen::Flushed),
            _ => Ok(()),
        };
        Ok(())
    }
}

/// Where a subscriber asks to start.
#[derive(Debug, Clone)]
enum Start {
    /// As the sender of a turn: every event after a seq the log has.
    After(Index),
    /// A `subscribe` resuming from a seq, which may be beyond the head.
    Since(Index),
    /// A `subscribe` without `since`: a snapshot first.
    Fresh,
}

/// One thing that happens while the Conversation actor runs.
#[derive(Debug, Clone)]
enum Step {
    /// Events appended to the log, each published on the bus.
    Append(u8),
    /// The bus delivers up to this many of its next publications, in order:
    /// the usual case.
    DeliverNext(u8),
    /// The bus delivers any publication so far: a repeat, or one ahead of
    /// some it has not delivered yet.
    Deliver(Index),
    /// The bus will lose its next publications, made yet or not (delivery
    /// is at most once).
    Lose(u8),
    /// The bus reconnected: read the log after `head`.
    CatchUp,
    /// A subscriber joins. Its replay runs when the actor gets to it, while
    /// later steps go on, unless the test waits for its answer: then
    /// everything before it in the mailbox has been handled too.
    Join(Start, bool),
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        2 => any::<Index>().prop_map(Start::After),
        2 => any::<Index>().prop_map(Start::Since),
        1 => Just(Start::Fresh),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => live_step(),
        1 => Just(Step::CatchUp),
        1 => (start(), any::<bool>()).prop_map(|(start, wait)| Step::Join(start, wait)),
    ]
}

/// Appends and the bus's doings alone: after the last join and catch-up,
/// only the actor's own merge can fill a gap.
fn live_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u8..4).prop_map(Step::Append),
        4 => (1u8..6).prop_map(Step::DeliverNext),
        2 => any::<Index>().prop_map(Step::Deliver),
        2 => (1u8..4).prop_map(Step::Lose),
    ]
}

/// Appends a conversation's events turn after turn, and keeps what the bus
/// published, in publication order.
struct LogWriter {
    engine: Arc<MemoryEngine>,
    bus: mpsc::UnboundedReceiver<BusMessage>,
    user: UserId,
    conversation_id: Uuid,
    /// The streaming reply and how many deltas it has.
    reply: Option<(Uuid, usize)>,
    published: Vec<(Arc<str>, Arc<LogEntry>)>,
}

impl LogWriter {
    /// The next event (or two, for a turn): a few deltas, then `done`, then
    /// a new turn.
    async fn append(&mut self) -> Result<(), TestCaseError> {
        match self.reply {
            Some((reply, deltas)) if deltas < 3 => {
                let offset = deltas;
                self.engine
                    .append_text(self.conversation_id, reply, offset, "x".into(), NODE)
                    .await
                    .map_err(fail)?;
                self.reply = Some((reply, deltas + 1));
            }
            Some((reply, _)) => {
                let done = Event::Done {
                    message_id: reply,
                    finish_reason: "stop".into(),
                    usage: None,
                };
                self.engine
                    .end_reply(self.conversation_id, done, NODE)
                    .await
                    .map_err(fail)?;
                self.reply = None;
            }
            None => {
                let turn = self
                    .engine
                    .start_turn(TurnRequest {
                        user: self.user.clone(),
                        conversation_id: Some(self.conversation_id),
                        content: "again".into(),
                        model: "demo".into(),
                        client_msg_id: None,
                        branch: Default::default(),
                    })
                    .await
                    .map_err(fail)?;
                self.reply = Some((turn.ack.assistant_message_id, 0));
            }
        }
        // The memory engine publishes inside the append.
        while let Ok(message) = self.bus.try_recv() {
            if let BusMessage::Published { epoch, entry, .. } = message {
                self.published.push((epoch, entry));
            }
        }
        Ok(())
    }

    fn head(&self) -> u64 {
        self.published.len() as u64
    }
}

/// A subscriber as the test follows it.
struct Joined {
    token: u64,
    start: Begins,
    answer: Option<ractor::concurrency::OneshotReceiver<Result<Vec<Frame>, JoinError>>>,
    /// The join's answer: the frames that come before any delivered one.
    first: Vec<Frame>,
    delivered: Vec<Frame>,
}

impl Joined {
    /// Waits for the join's answer, the first time only.
    async fn wait(&mut self) -> Result<(), TestCaseError> {
        let Some(answer) = self.answer.take() else {
            return Ok(());
        };
        self.first = tokio::time::timeout(DEADLINE, answer)
            .await
            .map_err(|_| fail(format!("join {} was not answered", self.token)))?
            .map_err(fail)?
            .map_err(|error| fail(format!("join {}: {error:?}", self.token)))?;
        Ok(())
    }
}

/// Where a subscriber's stream must begin, resolved against the log.
#[derive(Debug, Clone, Copy)]
enum Begins {
    After(u64),
    Since(u64),
    Fresh,
}

/// Runs `steps` against a Conversation actor over a memory engine whose bus
/// the test delivers by hand, then checks every subscriber's stream.
async fn replay_merges_exactly_once(initial: u8, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let engine = Arc::new(MemoryEngine::new(HISTORY));
    let bus = engine.take_bus().expect("a fresh engine's bus");
    let user = UserId::from(Uuid::new_v4());
    let info = engine
        .create_conversation(user.clone(), None)
        .await
        .map_err(fail)?;
    engine.watch(info.id).await.map_err(fail)?;
    let epoch = engine.snapshot(info.id).await.map_err(fail)?.epoch;
    let mut log = LogWriter {
        engine: engine.clone(),
        bus,
        user,
        conversation_id: info.id,
        reply: None,
        published: Vec::new(),
    };
    // History from before the actor started.
    for _ in 0..initial {
        log.append().await?;
    }

    let context = Arc::new(NodeContext {
        node_id: NODE.into(),
        settings: Settings::defaults(),
        engine: engine.clone(),
        providers: Providers::new("demo"),
        directory: ActorDirectory::default(),
        persistence: None,
    });
    let (registry, _) = Actor::spawn(None, FakeRegistry, ()).await.map_err(fail)?;
    let (supervisor, _) = Actor::spawn(None, FakeSupervisor, ()).await.map_err(fail)?;
    let (seen_sender, mut seen) = mpsc::unbounded_channel();
    let (connection, _) = Actor::spawn(None, FakeConnection, seen_sender)
        .await
        .map_err(fail)?;
    let (actor, _) = Actor::spawn(
        None,
        Conversation,
        ConversationArgs {
            conversation_id: info.id,
            context,
            registry: registry.clone(),
            supervisor: supervisor.clone(),
        },
    )
    .await
    .map_err(fail)?;

    let mut joined: Vec<Joined> = Vec::new();
    let join = |joined: &mut Vec<Joined>, start: Begins| {
        let token = joined.len() as u64;
        let mode = match start {
            Begins::After(after_seq) => JoinMode::After {
                epoch: epoch.clone(),
                after_seq,
            },
            Begins::Since(seq) => JoinMode::Subscribe {
                since: Some(Since {
                    epoch: epoch.to_string(),
                    seq,
                }),
                frame_id: Some(format!("join-{token}")),
            },
            Begins::Fresh => JoinMode::Subscribe {
                since: None,
                frame_id: Some(format!("join-{token}")),
            },
        };
        let (reply, answer) = ractor::concurrency::oneshot();
        let subscriber = Subscriber {
            connection: connection.clone(),
            connection_id: Uuid::new_v4(),
            token,
        };
        joined.push(Joined {
            token,
            start,
            answer: Some(answer),
            first: Vec::new(),
            delivered: Vec::new(),
        });
        actor.cast(ConversationMsg::Join {
            subscriber,
            mode,
            reply: reply.into(),
        })
    };
    // The bus's position: the next publication it would deliver, and how
    // many from there it is going to lose.
    let mut next = 0;
    let mut losing = 0;
    let skip_lost = |next: &mut usize, losing: &mut usize, published: usize| {
        let lost = (*losing).min(published - *next);
        *next += lost;
        *losing -= lost;
    };
    // Which publications the bus did deliver, at least once.
    let mut delivered = Vec::new();
    let mut deliver = |index: usize, published: &[(Arc<str>, Arc<LogEntry>)]| {
        delivered.resize(published.len(), false);
        delivered[index] = true;
        let (epoch, entry) = &published[index];
        actor.cast(ConversationMsg::Live {
            epoch: epoch.clone(),
            entry: entry.clone(),
        })
    };
    for step in steps {
        match step {
            Step::Append(count) => {
                for _ in 0..count {
                    log.append().await?;
                }
            }
            Step::DeliverNext(count) => {
                for _ in 0..count {
                    skip_lost(&mut next, &mut losing, log.published.len());
                    if next == log.published.len() {
                        break;
                    }
                    deliver(next, &log.published).map_err(fail)?;
                    next += 1;
                }
            }
            Step::Deliver(index) => {
                if !log.published.is_empty() {
                    let index = index.index(log.published.len());
                    deliver(index, &log.published).map_err(fail)?;
                }
            }
            Step::Lose(count) => losing += usize::from(count),
            Step::CatchUp => actor.cast(ConversationMsg::CatchUp).map_err(fail)?,
            Step::Join(start, wait) => {
                let head = log.head();
                let start = match start {
                    Start::After(index) => Begins::After(index.index(head as usize + 1) as u64),
                    Start::Since(index) => Begins::Since(index.index(head as usize + 3) as u64),
                    Start::Fresh => Begins::Fresh,
                };
                join(&mut joined, start).map_err(fail)?;
                if wait {
                    joined.last_mut().expect("just joined").wait().await?;
                }
            }
        }
    }
    // The bus delivers what it has not lost.
    skip_lost(&mut next, &mut losing, log.published.len());
    for index in next..log.published.len() {
        deliver(index, &log.published).map_err(fail)?;
    }
    // A loss is noticed by the next live event beyond it; only when the
    // newest was lost does it take the catch-up that follows a reconnection.
    let newest_delivered =
        delivered.len() == log.published.len() && delivered.last() == Some(&true);
    if !newest_delivered {
        actor.cast(ConversationMsg::CatchUp).map_err(fail)?;
    }
    // The actor handles everything in its mailbox, then stops.
    actor
        .drain_and_wait(Some(DEADLINE))
        .await
        .map_err(|error| fail(format!("the conversation did not drain: {error}")))?;

    for subscriber in &mut joined {
        subscriber.wait().await?;
    }
    connection.cast(ConnectionMsg::Activity).map_err(fail)?;
    loop {
        let next = tokio::time::timeout(DEADLINE, seen.recv())
            .await
            .map_err(|_| fail("the fake connection did not flush"))?
            .ok_or_else(|| fail("the fake connection stopped"))?;
        match next {
            Seen::Frame { token, frame } => joined[token as usize].delivered.push(frame),
            Seen::Unsubscribed => return Err(fail("a subscriber was unsubscribed")),
            Seen::Flushed => break,
        }
    }

    let history = engine.read(info.id, 0).await.map_err(fail)?;
    prop_assert_eq!(history.head, log.head());
    let entries = history.entries.expect("nothing is trimmed");
    for subscriber in &joined {
        let frames = subscriber.first.iter().chain(&subscriber.delivered);
        check_stream(subscriber, frames, &entries, &epoch).map_err(|error| {
            fail(format!(
                "subscriber {} ({:?}): {error}",
                subscriber.token, subscriber.start
            ))
        })?;
    }

    connection.stop(None);
    supervisor.stop(None);
    registry.stop(None);
    Ok(())
}

/// Checks one subscriber's frames, its join's answer first: an opening
/// (`subscribed` and a snapshot, or nothing for a sender), then an event for
/// each seq after where it began, once, in order, up to the log's head, each
/// the log's own.
fn check_stream<'a>(
    subscriber: &Joined,
    frames: impl Iterator<Item = &'a Frame>,
    log: &[Arc<LogEntry>],
    epoch: &str,
) -> Result<(), TestCaseError> {
    let mut frames = frames
        .map(|frame| serde_json::from_str::<ServerFrame>(frame).map_err(fail))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .peekable();
    let snapshot_at = |frame: Option<ServerFrame>| -> Result<u64, TestCaseError> {
        let Some(ServerFrame::Snapshot {
            epoch: at_epoch,
            seq,
            messages,
            ..
        }) = frame
        else {
            return Err(fail(format!("a snapshot was expected, not {frame:?}")));
        };
        prop_assert_eq!(at_epoch.as_str(), epoch);
        let mut fold = Transcript::default();
        for entry in &log[..seq as usize] {
            fold.apply(&entry.event).map_err(fail)?;
        }
        prop_assert_eq!(fold.messages(), messages.as_slice(), "snapshot at {}", seq);
        Ok(seq)
    };
    let mut at = match subscriber.start {
        Begins::After(after) => match frames.peek() {
            // A sender whose start the log no longer has starts over.
            Some(ServerFrame::Subscribed { id: None, .. }) => {
                frames.next();
                snapshot_at(frames.next())?
            }
            _ => after,
        },
        Begins::Since(_) | Begins::Fresh => {
            let Some(ServerFrame::Subscribed {
                id: Some(_),
                epoch: at_epoch,
                seq: head,
                recovered,
                ..
            }) = frames.next()
            else {
                return Err(fail("`subscribed` was expected first"));
            };
            prop_assert_eq!(at_epoch.as_str(), epoch);
            match subscriber.start {
                Begins::Since(since) if recovered => {
                    prop_assert!(since <= head, "recovered from {} past {}", since, head);
                    since
                }
                Begins::Fresh if recovered => return Err(fail("recovered without `since`")),
                _ => snapshot_at(frames.next())?,
            }
        }
    };
    for frame in frames {
        let ServerFrame::Event {
            epoch: at_epoch,
            seq,
            event,
            ..
        } = frame
        else {
            return Err(fail(format!("after the opening, only events: {frame:?}")));
        };
        prop_assert_eq!(at_epoch.as_str(), epoch);
        prop_assert_eq!(seq, at + 1, "after seq {}", at);
        prop_assert_eq!(&event, &log[seq as usize - 1].event, "seq {}", seq);
        at = seq;
    }
    prop_assert_eq!(at, log.len() as u64, "the stream stops short of the head");
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn replay_merged_with_live_events_by_seq_is_exactly_once(
        initial in 0u8..6,
        first in start(),
        steps in prop::collection::vec(step(), 0..50),
        tail in prop::collection::vec(live_step(), 0..12),
    ) {
        // A subscriber from the start, so that no case checks nothing.
        let steps = std::iter::once(Step::Join(first, false)).chain(steps).chain(tail).collect();
        // One thread: the actor runs only while the test awaits, so that a
        // case plays out the same every time and shrinks to the point.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(replay_merges_exactly_once(initial, steps))?;
    }
}
