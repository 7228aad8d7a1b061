//! The Redis engine: any number of nodes share one truth.
//!
//! Every change to a conversation is one Lua script (`redis.lua`): the seq is
//! incremented, the event added to the conversation's stream, the materialized
//! state updated and the event published, atomically, so that history and live
//! delivery cannot disagree. Keys carry the conversation's hash tag
//! (`cs:{<id>}:…`) so that Redis Cluster keeps each conversation in one slot.
//! A conversation keeps a fixed set of keys, however many messages it holds,
//! so that a turn, a delta and an ending cost Redis the same in any
//! conversation. The script touches only the conversation's slot; what is
//! about a user or the whole cluster lives in keys of its own, written
//! beside it: the user's count of streaming replies (`user_generations`),
//! the in-flight replies failover scans (partitioned over slots on a
//! cluster), the message and `client_msg_id` indexes.
//!
//! The connection (`link`) carries commands and subscriptions: a RESP3
//! connection manager on one server; on a Redis Cluster, the cluster client
//! (one for commands, one for subscriptions alone), where events are
//! published and subscribed to sharded (`SPUBLISH`, `SSUBSCRIBE`), so a
//! conversation's events travel only through its shard. Both reconnect and
//! resubscribe by themselves, and the engine subscribes again after an
//! outage too. Pub/sub is at-most-once, so after a disconnection, or a shard
//! channel moved to another master, every watcher is told to catch up from
//! the log.
//!
//! Every operation is fenced on the life of Redis's data (`life`): it
//! checks, in the same atomic step, that its slot's sentinel still holds the
//! value this node knows, so that no answer ever rests on data Redis lost
//! without this node noticing. A loss is recorded once (`Life::record`),
//! whichever notices it first: an operation (the fence) or the health check
//! (a timer).

mod life;
mod link;
mod slots;
mod user_generations;

pub use link::RedisTarget;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use redis::{AsyncCommands, FromRedisValue, PushInfo, PushKind, RedisError, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    Appended, Branch, BusMessage, ConversationInfo, Engine, EngineError, EngineResult, History,
    Limits, MessageInfo, NodeAnnouncement, Snapshot, TextAppend, Turn, TurnRequest, new_epoch,
    title_from,
};
use crate::protocol::{Event, LogEntry, Message, MessageStatus, Role, TurnAck, UserId};
use life::{Life, data_lost, sentinel_key};
use link::Link;
use slots::{CLUSTER_SLOTS, key_slot, slot_tag};
use user_generations::UserGenerations;

/// How long a `client_msg_id` is remembered (the contract asks for 24 hours).
const TURN_MEMORY: Duration = Duration::from_secs(48 * 3600);
/// How long a first send may take before a concurrent resend stops waiting.
const TURN_CLAIM: Duration = Duration::from_secs(30);
/// How often the connection is checked, and catch-ups repeated after an outage.
const HEALTH_EVERY: Duration = Duration::from_secs(1);
/// Catch-ups sent after an outage: the first may run before the automatic
/// resubscription completes; later ones cover that window.
const CATCH_UPS_AFTER_OUTAGE: u8 = 3;
/// How long a reservation of a user's place counts before it may be judged
/// (`RedisOptions::reservation_grace`).
const RESERVATION_GRACE: Duration = Duration::from_secs(30);

/// How a `RedisEngine` runs. `RedisOptions::new` gives the defaults.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Log entries kept per conversation.
    pub history_size: usize,
    /// Lifetime of a conversation after its last turn.
    pub conversation_ttl: Duration,
    /// How often the health check pings Redis, reads its sentinel and
    /// repeats catch-ups after an outage. Operations notice a data loss by
    /// themselves (the fence): this only bounds how soon an idle node does.
    pub health_every: Duration,
    /// How long after a data loss a missing conversation answers
    /// `unavailable` rather than `not_found`: the time nodes get to rebuild
    /// what they hold before it counts as gone (or, with a durable store,
    /// before the store's older copy is restored instead).
    pub rebuild_window: Duration,
    /// The limits every turn is held to.
    pub limits: Limits,
    /// How long a reply counts toward its user's limit before it may be
    /// judged ended when the user reaches the limit (then a reply that no
    /// longer streams, whose removal was lost, stops counting); longer than
    /// recording a turn takes.
    pub reservation_grace: Duration,
}

impl RedisOptions {
    pub fn new(history_size: usize, conversation_ttl: Duration) -> RedisOptions {
        RedisOptions {
            history_size,
            conversation_ttl,
            health_every: HEALTH_EVERY,
            rebuild_window: REBUILD_WINDOW,
            limits: Limits::default(),
            reservation_grace: RESERVATION_GRACE,
        }
    }
}

pub struct RedisEngine {
    /// The life of Redis's data this node works in.
    life: Arc<Life>,
    node_id: String,
    connection: Link,
    script: Script,
    user_generations: UserGenerations,
    /// The channels this node listens on (its control channel and the
    /// conversations' it watches), subscribed to again after an outage; a
    /// shard channel that Redis Cluster unsubscribes (its slot moved) is
    /// subscribed to again only while it is here.
    watched: Arc<Mutex<HashSet<String>>>,
    /// Log entries kept per conversation.
    history_size: usize,
    /// Lifetime of a conversation after its last turn.
    conversation_ttl: Duration,
    limits: Limits,
    bus_receiver: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn meta_keys(conversation_id: Uuid) -> [String; 4] {
    ["meta", "log", "msgs", "order"].map(|part| format!("cs:{{{conversation_id}}}:{part}"))
}

fn events_channel(conversation_id: Uuid) -> String {
    format!("cs:{{{conversation_id}}}:events")
}

fn node_channel(node_id: &str) -> String {
    format!("cs:node:{node_id}")
}

fn user_key(user: &UserId) -> String {
    format!("cs:user:{user}:conversations")
}

fn message_key(message_id: Uuid) -> String {
    format!("cs:msg:{message_id}")
}

fn turn_key(user: &UserId, client_msg_id: Uuid) -> String {
    format!("cs:turn:{user}:{client_msg_id}")
}

/// The nodes' announcements share one slot (`{nodes}`): a node writes its
/// own every few seconds and a listing reads them all in one step.
fn announcement_key(node_id: &str) -> String {
    format!("cs:{{nodes}}:{node_id}:actors")
}

const NODES_KEY: &str = "cs:{nodes}";

/// Partitions of the in-flight replies on a Redis Cluster, spread evenly
/// over the slots so that turns and endings do not all meet in one.
const IN_FLIGHT_PARTITIONS: usize = 16;

/// Every streaming reply of the cluster, as `<conversation>:<message>`:
/// where failover looks for replies whose node stopped renewing their lease.
/// One key on a single server; on a cluster, one of `IN_FLIGHT_PARTITIONS`
/// keys, this one `conversation_id`'s.
fn in_flight_key(slots: usize, conversation_id: Uuid) -> String {
    let partition = (conversation_id.as_u128() % IN_FLIGHT_PARTITIONS as u128) as usize;
    in_flight_partition(slots, partition)
}

/// Every key of the in-flight replies.
fn in_flight_keys(slots: usize) -> Vec<String> {
    let partitions = if slots == 1 { 1 } else { IN_FLIGHT_PARTITIONS };
    (0..partitions)
        .map(|partition| in_flight_partition(slots, partition))
        .collect()
}

fn in_flight_partition(slots: usize, partition: usize) -> String {
    if slots == 1 {
        return "cs:inflight".to_owned();
    }
    let slot = (partition * CLUSTER_SLOTS / IN_FLIGHT_PARTITIONS) as u16;
    format!("cs:inflight:{{{}}}", slot_tag(slot))
}

fn in_flight_member(conversation_id: Uuid, message_id: Uuid) -> String {
    format!("{conversation_id}:{message_id}")
}

fn lease_key(conversation_id: Uuid, message_id: Uuid) -> String {
    format!("cs:{{{conversation_id}}}:lease:{message_id}")
}

fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A turn remembered by its `client_msg_id`.
#[derive(Serialize, Deserialize)]
struct RememberedTurn {
    /// `TurnRequest::fingerprint`: a plain send's content, as remembered
    /// before branches existed.
    content: String,
    requested_conversation: Option<Uuid>,
    ack: TurnAck,
    user_seq: u64,
}

/// A message published on a conversation channel.
#[derive(Deserialize)]
struct Publication {
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    entry: Option<LogEntry>,
    #[serde(default)]
    deleted: bool,
}

/// A message published on a node's control channel.
#[derive(Serialize, Deserialize)]
struct Control {
    stop: Uuid,
}

/// Why a turn was refused because another turn added a message after the
/// newest one its node read: the node reads again and retries.
const STALE_TURN: &str = "another turn came first";

fn map_error(error: RedisError) -> EngineError {
    let detail = error.detail().unwrap_or_default().to_owned();
    match error.code() {
        Some("NOTFOUND") => EngineError::NotFound,
        Some("FORBIDDEN") => EngineError::Forbidden,
        Some("CONFLICT") => EngineError::Conflict(detail),
        Some("STALE") => EngineError::Conflict(STALE_TURN.into()),
        // The script names the limit it applied.
        Some("TOOLARGE") => EngineError::ConversationFull {
            limit: detail.parse().unwrap_or_default(),
        },
        Some("LOADING") | Some("BUSY") | Some("MASTERDOWN") | Some("TRYAGAIN") => {
            EngineError::Unavailable(error.to_string())
        }
        _ if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error() =>
        {
            EngineError::Unavailable(error.to_string())
        }
        _ => EngineError::Internal(error.to_string()),
    }
}

fn internal(what: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(what.to_string())
}

/// The error code of a script that found the sentinel changed: `LOST now
/// <value>`, or `LOST vanished`.
const LOST: &str = "LOST";

impl RedisEngine {
    /// Connects to `url` (RESP3 is switched on), subscribes to this node's
    /// control channel and starts watching the connection's health.
    pub async fn connect(
        url: &str,
        node_id: &str,
        history_size: usize,
        conversation_ttl: Duration,
    ) -> Result<RedisEngine, RedisError> {
        RedisEngine::connect_with(
            url,
            node_id,
            RedisOptions::new(history_size, conversation_ttl),
        )
        .await
    }

    /// `connect` with every option.
    pub async fn connect_with(
        url: &str,
        node_id: &str,
        options: RedisOptions,
    ) -> Result<RedisEngine, RedisError> {
        RedisEngine::connect_to(&RedisTarget::single(url), node_id, options).await
    }

    /// Connects to one server or a Redis Cluster, subscribes to this node's
    /// control channel and starts watching the connection's health.
    pub async fn connect_to(
        target: &RedisTarget,
        node_id: &str,
        options: RedisOptions,
    ) -> Result<RedisEngine, RedisError> {
        let (push_sender, push_receiver) = mpsc::unbounded_channel();
        let mut connection = Link::connect(target, push_sender).await?;
        let watched = Arc::new(Mutex::new(HashSet::from([node_channel(node_id)])));
        connection.subscribe(&node_channel(node_id)).await?;
        let (bus, bus_receiver) = mpsc::unbounded_channel();
        let (outage_sender, outage_receiver) = mpsc::unbounded_channel();
        let life = Arc::new(Life::new(
            connection.slots(),
            bus.clone(),
            options.rebuild_window,
        ));
        // The sentinels the health check watches are learnt before the
        // first operation, so that a loss from now on is noticed.
        check_sentinels(&mut connection, &life).await?;
        let tasks = vec![
            tokio::spawn(route_pushes(
                push_receiver,
                bus,
                outage_sender,
                connection.clone(),
                watched.clone(),
            )),
            tokio::spawn(watch_health(
                connection.clone(),
                life.clone(),
                watched.clone(),
                outage_receiver,
                options.health_every,
            )),
        ];
        Ok(RedisEngine {
            life,
            node_id: node_id.to_owned(),
            connection,
            script: Script::new(include_str!("redis.lua")),
            user_generations: UserGenerations::new(options.reservation_grace),
            watched,
            history_size: options.history_size.max(1),
            conversation_ttl: options.conversation_ttl,
            limits: options.limits,
            bus_receiver: Mutex::new(Some(bus_receiver)),
            tasks,
        })
    }

    /// The slot `key` lives in (always 0 on a single server).
    fn slot_of(&self, key: &str) -> u16 {
        if self.connection.slots() == 1 {
            0
        } else {
            key_slot(key.as_bytes())
        }
    }

    /// The sentinel operations on `slot` are fenced on: the one this node
    /// knows, or, the first time it works there, the one Redis holds (set
    /// if there is none).
    async fn fence(&self, slot: u16) -> EngineResult<Arc<str>> {
        if let Some(known) = self.life.known(slot) {
            return Ok(known);
        }
        let current = slot_sentinel(&mut self.connection.clone(), slot)
            .await
            .map_err(map_error)?;
        Ok(self.life.learn(slot, &current))
    }

    /// Runs one operation of the conversation script, fenced on the
    /// sentinel of the conversation's slot; the common arguments come first,
    /// then `args`. A missing conversation answers `NotFound` only outside
    /// the rebuild window after a loss.
    async fn run(
        &self,
        conversation_id: Uuid,
        op: &'static str,
        args: &[&str],
    ) -> EngineResult<Vec<String>> {
        let keys = meta_keys(conversation_id);
        let slot = self.slot_of(&keys[0]);
        let checked = self.fence(slot).await?;
        let mut invocation = self.script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation
            .key(sentinel_key(self.connection.slots(), slot))
            .arg(op)
            .arg(now_iso())
            .arg(self.history_size)
            .arg(self.conversation_ttl.as_secs().max(1))
            .arg(&*checked)
            .arg(self.limits.max_messages_per_conversation)
            .arg(self.connection.publish_command());
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        let started = std::time::Instant::now();
        let outcome = invocation.invoke_async(&mut connection).await;
        metrics::histogram!("chatstream_redis_script_seconds", "op" => op)
            .record(started.elapsed());
        match outcome {
            Ok(result) => Ok(result),
            Err(error) if error.code() == Some(LOST) => {
                let seen = error
                    .detail()
                    .and_then(|d| d.strip_prefix("now "))
                    .map(str::to_owned);
                Err(self.lost(slot, &checked, seen).await)
            }
            Err(error) => match map_error(error) {
                EngineError::NotFound => {
                    self.life.missing()?;
                    Err(EngineError::NotFound)
                }
                other => Err(other),
            },
        }
    }

    /// Runs the commands `add` puts in a pipeline, all on keys of the slot
    /// of `scope` (a key), as one MULTI/EXEC behind a GET of that slot's
    /// sentinel (the fence of the paths that use no script), and reads their
    /// answers as `T` (a tuple, one element per command).
    ///
    /// A transaction rather than a script: the commands stay the plain
    /// reads they were, in the same single round trip, with no Lua and no
    /// script cache to load again after Redis restarted empty; MULTI/EXEC
    /// runs them with no other client's command in between, and a restart in
    /// between fails the whole transaction (it is one connection).
    async fn fenced<T: FromRedisValue>(
        &self,
        scope: &str,
        add: impl FnOnce(&mut redis::Pipeline),
    ) -> EngineResult<T> {
        let slot = self.slot_of(scope);
        let checked = self.fence(slot).await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .get(sentinel_key(self.connection.slots(), slot));
        add(&mut pipe);
        let mut connection = self.connection.clone();
        let mut answers: Vec<Value> = pipe.query_async(&mut connection).await.map_err(map_error)?;
        if answers.is_empty() {
            return Err(internal("short reply"));
        }
        let seen = Option::<String>::from_redis_value(answers.remove(0)).map_err(internal)?;
        if seen.as_deref() != Some(&*checked) {
            return Err(self.lost(slot, &checked, seen).await);
        }
        T::from_redis_value(Value::Array(answers)).map_err(internal)
    }

    /// A fenced operation found `slot`'s sentinel no longer `checked`
    /// (`seen`: its value now, `None` when it vanished, and then this node
    /// sets a new one unless another did first). Records the loss (once:
    /// `Life::record`) and answers the caller's error: the operation did
    /// nothing, and the conversations are being rebuilt. Nothing is retried
    /// here.
    async fn lost(&self, slot: u16, checked: &str, seen: Option<String>) -> EngineError {
        let current = match seen {
            Some(current) => Some(current),
            None => slot_sentinel(&mut self.connection.clone(), slot).await.ok(),
        };
        // If Redis could not be asked, the sentinel stays `checked`: the next
        // operation, or the health check, finds the change again.
        if let Some(current) = current {
            self.life.record(slot, checked, &current);
        }
        data_lost()
    }

    /// Reads what `log_event` answers: seq, entry, epoch (and, after an
    /// ending, the conversation's owner).
    fn appended(result: &[String]) -> EngineResult<Appended> {
        let [_, entry, epoch, ..] = result else {
            return Err(internal("short reply"));
        };
        let entry: LogEntry = serde_json::from_str(entry).map_err(internal)?;
        Ok(Appended {
            epoch: epoch.as_str().into(),
            entry: entry.into(),
        })
    }

    /// The conversation's epoch: a read of nothing after the newest seq.
    async fn epoch_of(&self, conversation_id: Uuid) -> EngineResult<Arc<str>> {
        Ok(self.read(conversation_id, u64::MAX).await?.epoch)
    }

    /// Claims a `client_msg_id`, or answers the turn it already started.
    async fn claim_turn(
        &self,
        request: &TurnRequest,
        client_msg_id: Uuid,
    ) -> EngineResult<Option<Turn>> {
        let key = turn_key(&request.user, client_msg_id);
        let mut connection = self.connection.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let claimed: bool = redis::cmd("SET")
                .arg(&key)
                .arg("pending")
                .arg("NX")
                .arg("EX")
                .arg(TURN_CLAIM.as_secs())
                .query_async::<Option<String>>(&mut connection)
                .await
                .map_err(map_error)?
                .is_some();
            if claimed {
                return Ok(None);
            }
            let current: Option<String> = connection.get(&key).await.map_err(map_error)?;
            match current.as_deref() {
                // The first send is still being recorded, on this node or another.
                Some("pending") | None => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(EngineError::Unavailable(
                            "the first send with this client_msg_id is still being processed"
                                .into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some(json) => {
                    let first: RememberedTurn = serde_json::from_str(json).map_err(internal)?;
                    let same_conversation = request.conversation_id.is_none_or(|id| {
                        Some(id) == first.requested_conversation || id == first.ack.conversation_id
                    });
                    if first.content != request.fingerprint() || !same_conversation {
                        return Err(EngineError::Conflict(
                            "client_msg_id was already used for a different message".into(),
                        ));
                    }
                    let epoch = self.epoch_of(first.ack.conversation_id).await?;
                    return Ok(Some(Turn {
                        ack: first.ack,
                        epoch,
                        user_seq: first.user_seq,
                        started: false,
                    }));
                }
            }
        }
    }
}

/// Turns pushes into bus messages. A disconnection is reported as an
/// outage; so is a shard channel that Redis Cluster unsubscribed this node
/// from while it still watches it (its slot moved to another master), after
/// subscribing to it again where it lives now.
async fn route_pushes(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    bus: mpsc::UnboundedSender<BusMessage>,
    outages: mpsc::UnboundedSender<()>,
    connection: Link,
    watched: Arc<Mutex<HashSet<String>>>,
) {
    while let Some(push) = pushes.recv().await {
        let channel = match push.data.first() {
            Some(Value::BulkString(channel)) => String::from_utf8_lossy(channel).into_owned(),
            _ => String::new(),
        };
        match push.kind {
            PushKind::Disconnection => {
                let _ = outages.send(());
            }
            PushKind::Message | PushKind::SMessage => {
                let Some(Value::BulkString(payload)) = push.data.get(1) else {
                    continue;
                };
                if let Some(message) = parse_publication(&channel, payload) {
                    let _ = bus.send(message);
                }
            }
            PushKind::SUnsubscribe => {
                let still_watched = watched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&channel);
                if still_watched {
                    let mut connection = connection.clone();
                    let outages = outages.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection.subscribe(&channel).await {
                            tracing::warn!(%channel, %error, "could not subscribe again to a moved shard channel");
                        }
                        let _ = outages.send(());
                    });
                }
            }
            _ => {}
        }
    }
}

fn parse_publication(channel: &str, payload: &[u8]) -> Option<BusMessage> {
    if let Some(id) = channel
        .strip_prefix("cs:{")
        .and_then(|rest| rest.strip_suffix("}:events"))
    {
        let conversation_id = id.parse().ok()?;
        let publication: Publication = serde_json::from_slice(payload).ok()?;
        if publication.deleted {
            return Some(BusMessage::Deleted { conversation_id });
        }
        return Some(BusMessage::Published {
            conversation_id,
            epoch: publication.epoch?.into(),
            entry: publication.entry?.into(),
        });
    }
    let control: Control = serde_json::from_slice(payload).ok()?;
    Some(BusMessage::StopGeneration {
        message_id: control.stop,
    })
}

/// How long after a data loss a missing conversation answers `unavailable`
/// rather than `not_found`: nodes are still rebuilding what they hold.
const REBUILD_WINDOW: Duration = Duration::from_secs(15);

/// `slot`'s sentinel now, set (to a fresh value) if it has none: one round
/// trip.
async fn slot_sentinel(connection: &mut Link, slot: u16) -> Result<String, RedisError> {
    let fresh = Uuid::new_v4().to_string();
    let key = sentinel_key(connection.slots(), slot);
    let (current,): (Option<String>,) = redis::pipe()
        .cmd("SET")
        .arg(&key)
        .arg(&fresh)
        .arg("NX")
        .ignore()
        .get(&key)
        .query_async(connection)
        .await?;
    Ok(current.unwrap_or(fresh))
}

/// Reads the sentinel of the first slot of every master's slot range (the
/// one slot of a single server), learning those not known yet and
/// recording a change as a loss.
async fn check_sentinels(connection: &mut Link, life: &Life) -> Result<(), RedisError> {
    for slot in connection.range_starts().await? {
        let current = slot_sentinel(connection, slot).await?;
        match life.known(slot) {
            Some(checked) => life.record(slot, &checked, &current),
            None => {
                life.learn(slot, &current);
            }
        }
    }
    Ok(())
}

/// Checks the sentinels every `every` (a second by default). After an
/// outage (a failed check or a reported disconnection), the first
/// successful check subscribes again to every channel this node watches —
/// a server that came back, or a master that replaced it, may have come up
/// after the client's own resubscription ran — and each of the next
/// successful checks tells every watcher to catch up from the log. A
/// changed sentinel is recorded as a loss (`Life::record`, shared with the
/// fence: whichever sees a change first reports it), so that every node
/// rebuilds what it holds even when no operation ran to notice.
async fn watch_health(
    mut connection: Link,
    life: Arc<Life>,
    watched: Arc<Mutex<HashSet<String>>>,
    mut outages: mpsc::UnboundedReceiver<()>,
    every: Duration,
) {
    let mut catch_ups_owed = 0u8;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            outage = outages.recv() => {
                if outage.is_none() {
                    return;
                }
                catch_ups_owed = CATCH_UPS_AFTER_OUTAGE;
                continue;
            }
        }
        if check_sentinels(&mut connection, &life).await.is_err() {
            catch_ups_owed = CATCH_UPS_AFTER_OUTAGE;
            continue;
        }
        if life.bus.is_closed() {
            return;
        }
        if catch_ups_owed == CATCH_UPS_AFTER_OUTAGE
            && subscribe_again(&connection, &watched).await.is_err()
        {
            continue;
        }
        if catch_ups_owed > 0 {
            catch_ups_owed -= 1;
            if life.bus.send(BusMessage::CatchUp).is_err() {
                return;
            }
        }
    }
}

/// Subscribes to every watched channel again (a subscription already in
/// place is only confirmed), all at once.
async fn subscribe_again(
    connection: &Link,
    watched: &Mutex<HashSet<String>>,
) -> Result<(), RedisError> {
    let channels: Vec<String> = watched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    futures_util::future::try_join_all(channels.iter().map(|channel| {
        let mut connection = connection.clone();
        async move { connection.subscribe(channel).await }
    }))
    .await
    .map(drop)
}

fn message_event_json(message: &Message) -> EngineResult<(String, String)> {
    let mut stored = message.clone();
    stored.content = String::new();
    let stored = serde_json::to_string(&stored).map_err(internal)?;
    let event = serde_json::to_string(&Event::Message {
        message: message.clone(),
    })
    .map_err(internal)?;
    Ok((stored, event))
}

fn parse_time(text: &str) -> EngineResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(internal)
}

#[async_trait]
impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> EngineResult<()> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    async fn create_conversation(
        &self,
        owner: UserId,
        title: Option<String>,
    ) -> EngineResult<ConversationInfo> {
        let id = Uuid::new_v4();
        let title_arg = title.as_ref().map(|t| format!("T{t}")).unwrap_or_default();
        let mut connection = self.connection.clone();
        let _: () = connection
            .sadd(user_key(&owner), id.to_string())
            .await
            .map_err(map_error)?;
        self.run(
            id,
            "create",
            &[&owner.to_string(), &title_arg, &new_epoch()],
        )
        .await?;
        self.conversation(id).await?.ok_or(EngineError::NotFound)
    }

    async fn conversation(&self, id: Uuid) -> EngineResult<Option<ConversationInfo>> {
        let (fields,): (Vec<Option<String>>,) = self
            .fenced(&meta_keys(id)[0], |pipe| {
                pipe.cmd("HMGET").arg(&meta_keys(id)[0]).arg(&[
                    "owner",
                    "title",
                    "created_at",
                    "updated_at",
                ]);
            })
            .await?;
        let [Some(owner), title, Some(created_at), Some(updated_at)] =
            <[Option<String>; 4]>::try_from(fields).map_err(|_| internal("short reply"))?
        else {
            return self.life.missing().map(|()| None);
        };
        Ok(Some(ConversationInfo {
            id,
            owner: owner.parse().map_err(internal)?,
            title,
            created_at: parse_time(&created_at)?,
            updated_at: parse_time(&updated_at)?,
        }))
    }

    async fn rename_conversation(&self, id: Uuid, title: String) -> EngineResult<ConversationInfo> {
        self.run(id, "rename", &[&title]).await?;
        self.conversation(id).await?.ok_or(EngineError::NotFound)
    }

    async fn list_conversations(&self, owner: &UserId) -> EngineResult<Vec<ConversationInfo>> {
        let (ids,): (Vec<String>,) = self
            .fenced(&user_key(owner), |pipe| {
                pipe.smembers(user_key(owner));
            })
            .await?;
        let mut connection = self.connection.clone();
        let mut list = Vec::new();
        for id in ids {
            let Ok(id) = id.parse::<Uuid>() else { continue };
            match self.conversation(id).await? {
                Some(info) if &info.owner == owner => list.push(info),
                // Expired or deleted: forget it here too.
                _ => {
                    let _: () = connection
                        .srem(user_key(owner), id.to_string())
                        .await
                        .map_err(map_error)?;
                }
            }
        }
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(list)
    }

    async fn delete_conversation(&self, id: Uuid) -> EngineResult<()> {
        let owner = self.conversation(id).await?.map(|info| info.owner);
        let removed = self.run(id, "delete", &[]).await?;
        let mut connection = self.connection.clone();
        let mut commands = Vec::new();
        let mut streaming = None;
        for item in &removed {
            if let Some(message_id) = item.strip_prefix('m') {
                commands.push(
                    redis::cmd("DEL")
                        .arg(format!("cs:msg:{message_id}"))
                        .to_owned(),
                );
            } else if let Some(member) = item.strip_prefix('t') {
                commands.push(
                    redis::cmd("DEL")
                        .arg(format!("cs:turn:{member}"))
                        .to_owned(),
                );
            } else if let Some(message_id) = item.strip_prefix('s') {
                streaming = message_id.parse::<Uuid>().ok();
            }
        }
        if let Some(message_id) = streaming {
            commands.push(
                redis::cmd("ZREM")
                    .arg(in_flight_key(connection.slots(), id))
                    .arg(in_flight_member(id, message_id))
                    .to_owned(),
            );
        }
        if let Some(owner) = &owner {
            commands.push(
                redis::cmd("SREM")
                    .arg(user_key(owner))
                    .arg(id.to_string())
                    .to_owned(),
            );
        }
        connection.run_each(commands).await.map_err(map_error)?;
        if let (Some(owner), Some(message_id)) = (&owner, streaming) {
            self.user_generations
                .release(&mut connection, owner, id, message_id)
                .await?;
        }
        Ok(())
    }

    async fn start_turn(&self, request: TurnRequest) -> EngineResult<Turn> {
        if let Some(client_msg_id) = request.client_msg_id
            && let Some(first) = self.claim_turn(&request, client_msg_id).await?
        {
            return Ok(first);
        }
        let result = self.record_turn(&request).await;
        if let (Err(_), Some(client_msg_id)) = (&result, request.client_msg_id) {
            let mut connection = self.connection.clone();
            let _: Result<(), _> = connection.del(turn_key(&request.user, client_msg_id)).await;
        }
        result
    }

    async fn append(&self, conversation_id: Uuid, event: Event) -> EngineResult<Appended> {
        self.append_event(conversation_id, event, "").await
    }

    async fn append_text(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        holder: &str,
    ) -> EngineResult<TextAppend> {
        let event = Event::Delta { message_id, text };
        let event_json = serde_json::to_string(&event).map_err(internal)?;
        let Event::Delta { text, .. } = event else {
            unreachable!("built just above")
        };
        let result = self
            .run(
                conversation_id,
                "append",
                &[
                    "delta",
                    &message_id.to_string(),
                    &event_json,
                    &offset.to_string(),
                    &text,
                    holder,
                ],
            )
            .await?;
        if result.first().map(String::as_str) == Some("applied") {
            return Ok(TextAppend::AlreadyApplied);
        }
        Self::appended(&result).map(TextAppend::Appended)
    }

    async fn end_reply(
        &self,
        conversation_id: Uuid,
        ending: Event,
        holder: &str,
    ) -> EngineResult<Appended> {
        self.append_event(conversation_id, ending, holder).await
    }

    async fn read(&self, conversation_id: Uuid, after_seq: u64) -> EngineResult<History> {
        let after = after_seq.min(i64::MAX as u64).to_string();
        let result = self.run(conversation_id, "read", &[&after]).await?;
        let [epoch, head, kept, entries @ ..] = result.as_slice() else {
            return Err(internal("short reply"));
        };
        let entries = if kept == "kept" {
            let parsed: Result<Vec<LogEntry>, _> =
                entries.iter().map(|e| serde_json::from_str(e)).collect();
            Some(
                parsed
                    .map_err(internal)?
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            )
        } else {
            None
        };
        Ok(History {
            epoch: epoch.as_str().into(),
            head: head.parse().map_err(internal)?,
            entries,
        })
    }

    async fn snapshot(&self, conversation_id: Uuid) -> EngineResult<Snapshot> {
        let result = self.run(conversation_id, "snapshot", &[]).await?;
        let [
            epoch,
            seq,
            owner,
            title,
            created_at,
            updated_at,
            messages @ ..,
        ] = result.as_slice()
        else {
            return Err(internal("short reply"));
        };
        let messages = messages
            .chunks_exact(2)
            .map(|pair| {
                let mut message: Message = serde_json::from_str(&pair[0]).map_err(internal)?;
                message.content = pair[1].clone();
                Ok(message)
            })
            .collect::<EngineResult<Vec<_>>>()?;
        Ok(Snapshot {
            info: ConversationInfo {
                id: conversation_id,
                owner: owner.parse().map_err(internal)?,
                title: title.strip_prefix('T').map(str::to_owned),
                created_at: parse_time(created_at)?,
                updated_at: parse_time(updated_at)?,
            },
            epoch: epoch.as_str().into(),
            seq: seq.parse().map_err(internal)?,
            messages,
        })
    }

    async fn rebuild(&self, copy: &Snapshot, holder: Option<&str>) -> EngineResult<Arc<str>> {
        let id = copy.info.id;
        let mut args = vec![
            copy.info.owner.to_string(),
            copy.info
                .title
                .as_ref()
                .map(|t| format!("T{t}"))
                .unwrap_or_default(),
            copy.info
                .created_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            new_epoch(),
            holder.unwrap_or_default().to_owned(),
            super::LEASE_TTL.as_millis().to_string(),
            copy.messages.len().to_string(),
        ];
        for message in &copy.messages {
            let (stored, event) = message_event_json(message)?;
            args.extend([
                message.id.to_string(),
                stored,
                message.content.clone(),
                event,
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = self.run(id, "rebuild", &args).await?;
        let [epoch, outcome] = result.as_slice() else {
            return Err(internal("short reply"));
        };
        if outcome == "rebuilt" {
            let ttl = self.conversation_ttl.as_secs().max(1);
            let mut connection = self.connection.clone();
            let now = Utc::now().timestamp_millis();
            let mut commands = vec![
                redis::cmd("SADD")
                    .arg(user_key(&copy.info.owner))
                    .arg(id.to_string())
                    .to_owned(),
            ];
            for message in &copy.messages {
                commands.push(
                    redis::cmd("SET")
                        .arg(message_key(message.id))
                        .arg(id.to_string())
                        .arg("EX")
                        .arg(ttl)
                        .to_owned(),
                );
                if message.status == MessageStatus::Streaming {
                    commands.push(
                        redis::cmd("ZADD")
                            .arg(in_flight_key(connection.slots(), id))
                            .arg(now)
                            .arg(in_flight_member(id, message.id))
                            .to_owned(),
                    );
                    commands.push(UserGenerations::recount(
                        &copy.info.owner,
                        id,
                        message.id,
                        now,
                    ));
                }
            }
            connection.run_each(commands).await.map_err(map_error)?;
            tracing::info!(conversation_id = %id, %epoch, "conversation rebuilt under a new epoch");
        }
        Ok(epoch.as_str().into())
    }

    async fn message_at(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<Option<(u64, Message)>> {
        let result = self
            .run(conversation_id, "message", &[&message_id.to_string()])
            .await?;
        let [position, stored, content] = result.as_slice() else {
            return Ok(None);
        };
        let mut message: Message = serde_json::from_str(stored).map_err(internal)?;
        message.content = content.clone();
        Ok(Some((position.parse().map_err(internal)?, message)))
    }

    async fn message(&self, message_id: Uuid) -> EngineResult<Option<MessageInfo>> {
        let (conversation,): (Option<String>,) = self
            .fenced(&message_key(message_id), |pipe| {
                pipe.get(message_key(message_id));
            })
            .await?;
        let Some(conversation_id) = conversation.and_then(|c| c.parse::<Uuid>().ok()) else {
            return self.life.missing().map(|()| None);
        };
        let keys = meta_keys(conversation_id);
        let (owner, stored): (Option<String>, Option<String>) = self
            .fenced(&keys[0], |pipe| {
                pipe.hget(&keys[0], "owner")
                    .hget(&keys[2], message_id.to_string());
            })
            .await?;
        let (Some(owner), Some(stored)) = (owner, stored) else {
            return self.life.missing().map(|()| None);
        };
        #[derive(Deserialize)]
        struct Stored {
            role: Role,
            status: MessageStatus,
        }
        let stored: Stored = serde_json::from_str(&stored).map_err(internal)?;
        Ok(Some(MessageInfo {
            conversation_id,
            owner: owner.parse().map_err(internal)?,
            role: stored.role,
            status: stored.status,
        }))
    }

    async fn watch(&self, conversation_id: Uuid) -> EngineResult<()> {
        let channel = events_channel(conversation_id);
        self.watched_channels().insert(channel.clone());
        let mut connection = self.connection.clone();
        connection.subscribe(&channel).await.map_err(map_error)
    }

    async fn unwatch(&self, conversation_id: Uuid) -> EngineResult<()> {
        let channel = events_channel(conversation_id);
        self.watched_channels().remove(&channel);
        let mut connection = self.connection.clone();
        connection.unsubscribe(&channel).await.map_err(map_error)
    }

    async fn renew_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<bool> {
        let ttl = ttl.as_millis().to_string();
        let result = self
            .run(
                conversation_id,
                "lease",
                &[&message_id.to_string(), holder, &ttl],
            )
            .await?;
        Ok(result.first().map(String::as_str) == Some("1"))
    }

    async fn release_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
    ) -> EngineResult<()> {
        self.run(
            conversation_id,
            "release",
            &[&message_id.to_string(), holder],
        )
        .await
        .map(|_| ())
    }

    async fn claim_orphans(&self, holder: &str, ttl: Duration) -> EngineResult<Vec<(Uuid, Uuid)>> {
        // Fenced: an empty list after a loss is no news of orphans. As every
        // node scans every 500 ms, this also notices a loss on idle nodes.
        let mut members = Vec::new();
        for key in in_flight_keys(self.connection.slots()) {
            let (partition,): (Vec<String>,) = self
                .fenced(&key, |pipe| {
                    pipe.zrange(&key, 0, -1);
                })
                .await?;
            members.extend(partition);
        }
        let mut connection = self.connection.clone();
        let replies: Vec<(Uuid, Uuid)> = members
            .iter()
            .filter_map(|m| {
                let (conversation, message) = m.split_once(':')?;
                Some((conversation.parse().ok()?, message.parse().ok()?))
            })
            .collect();
        if replies.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip finds the lapsed leases; only those are claimed.
        let held: Vec<bool> = connection
            .query_each(
                replies
                    .iter()
                    .map(|(conversation_id, message_id)| {
                        redis::cmd("EXISTS")
                            .arg(lease_key(*conversation_id, *message_id))
                            .to_owned()
                    })
                    .collect(),
            )
            .await
            .map_err(map_error)?;
        let ttl = ttl.as_millis().to_string();
        let mut claimed = Vec::new();
        for (&(conversation_id, message_id), held) in replies.iter().zip(held) {
            if held {
                continue;
            }
            let outcome = match self
                .run(
                    conversation_id,
                    "claim",
                    &[&message_id.to_string(), holder, &ttl],
                )
                .await
            {
                Ok(outcome) => outcome,
                Err(EngineError::NotFound) => vec!["ended".to_owned()],
                Err(error) => return Err(error),
            };
            match outcome.first().map(String::as_str) {
                Some("claimed") => claimed.push((conversation_id, message_id)),
                Some("ended") => self.forget_in_flight(conversation_id, message_id).await?,
                _ => {}
            }
        }
        Ok(claimed)
    }

    async fn stop_remote_generation(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<()> {
        let holder = self
            .run(conversation_id, "holder", &[&message_id.to_string()])
            .await?;
        if let Some(node) = holder.first().filter(|h| !h.is_empty()) {
            let control = serde_json::to_string(&Control { stop: message_id }).map_err(internal)?;
            let mut connection = self.connection.clone();
            connection
                .publish(&node_channel(node), &control)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn announce_node(
        &self,
        announcement: NodeAnnouncement,
        ttl: Duration,
    ) -> EngineResult<()> {
        let expires = Utc::now().timestamp_millis() + ttl.as_millis() as i64;
        let mut connection = self.connection.clone();
        redis::pipe()
            .pset_ex(
                announcement_key(&announcement.node_id),
                announcement.actors.to_string(),
                ttl.as_millis() as u64,
            )
            .ignore()
            .zadd(NODES_KEY, &announcement.node_id, expires)
            .ignore()
            .zrembyscore(NODES_KEY, "-inf", Utc::now().timestamp_millis())
            .ignore()
            .query_async::<()>(&mut connection)
            .await
            .map_err(map_error)
    }

    async fn nodes(&self) -> EngineResult<Vec<NodeAnnouncement>> {
        let mut connection = self.connection.clone();
        let now = Utc::now().timestamp_millis();
        let ids: Vec<String> = connection
            .zrangebyscore(NODES_KEY, now, "+inf")
            .await
            .map_err(map_error)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| announcement_key(id)).collect();
        let actors: Vec<Option<String>> = connection.mget(&keys).await.map_err(map_error)?;
        let mut by_node: HashMap<String, serde_json::Value> = HashMap::new();
        for (id, actors) in ids.into_iter().zip(actors) {
            if let Some(actors) = actors.and_then(|a| serde_json::from_str(&a).ok()) {
                by_node.insert(id, actors);
            }
        }
        let mut nodes: Vec<_> = by_node
            .into_iter()
            .map(|(node_id, actors)| NodeAnnouncement { node_id, actors })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    fn take_bus(&self) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
        self.bus_receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    // Tickets are plain SET PX and GETDEL, not fenced on the sentinel: a
    // data loss only loses tickets, which are then refused as unknown (the
    // safe answer), and GETDEL alone makes each one open a single socket.
    async fn put_ticket(
        &self,
        digest: &[u8; 32],
        user: &UserId,
        ttl: Duration,
    ) -> EngineResult<()> {
        let mut connection = self.connection.clone();
        connection
            .pset_ex::<_, _, ()>(ticket_key(digest), user.as_str(), ttl.as_millis() as u64)
            .await
            .map_err(map_error)
    }

    async fn take_ticket(&self, digest: &[u8; 32]) -> EngineResult<Option<UserId>> {
        let mut connection = self.connection.clone();
        let user: Option<String> = connection
            .get_del(ticket_key(digest))
            .await
            .map_err(map_error)?;
        Ok(user.and_then(|user| UserId::parse(&user)))
    }
}

/// `cs:ticket:<hex digest>`: one WebSocket ticket's user.
fn ticket_key(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cs:ticket:{hex}")
}

impl RedisEngine {
    /// Appends a delta (at any offset) or an ending, written by `holder`
    /// ('' for anyone); an ending takes the reply out of flight.
    async fn append_event(
        &self,
        conversation_id: Uuid,
        event: Event,
        holder: &str,
    ) -> EngineResult<Appended> {
        let message_id = event.message_id();
        let id = message_id.to_string();
        let event_json = serde_json::to_string(&event).map_err(internal)?;
        let (status, error) = match &event {
            Event::Message { .. } => return Err(internal("messages are added by start_turn")),
            Event::Delta { text, .. } => {
                let result = self
                    .run(
                        conversation_id,
                        "append",
                        &["delta", &id, &event_json, "-1", text, holder],
                    )
                    .await?;
                return Self::appended(&result);
            }
            Event::Done { .. } => ("complete", String::new()),
            Event::Cancelled { .. } => ("cancelled", String::new()),
            Event::Failed { error, .. } => ("failed", format!("E{error}")),
        };
        let kind = match status {
            "complete" => "done",
            other => other,
        };
        let result = self
            .run(
                conversation_id,
                "append",
                &[kind, &id, &event_json, status, &error, holder],
            )
            .await?;
        // The reply is no longer in flight nor counted toward its user's
        // limit. Best effort: failover drops an ended reply it finds in
        // flight, and a count whose reply ended is dropped when it matters.
        let _ = self.forget_in_flight(conversation_id, message_id).await;
        if let Some(owner) = result.get(3).and_then(|owner| UserId::parse(owner)) {
            let _ = self
                .user_generations
                .release(
                    &mut self.connection.clone(),
                    &owner,
                    conversation_id,
                    message_id,
                )
                .await;
        }
        Self::appended(&result)
    }

    /// Takes a reply out of the in-flight replies failover scans.
    async fn forget_in_flight(&self, conversation_id: Uuid, message_id: Uuid) -> EngineResult<()> {
        let mut connection = self.connection.clone();
        connection
            .zrem(
                in_flight_key(connection.slots(), conversation_id),
                in_flight_member(conversation_id, message_id),
            )
            .await
            .map_err(map_error)
    }

    fn watched_channels(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the user's message and the streaming reply (creating the
    /// conversation if asked), then indexes the new messages and remembers
    /// the `client_msg_id`.
    async fn record_turn(&self, request: &TurnRequest) -> EngineResult<Turn> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.record_turn_once(request).await {
                Err(EngineError::Conflict(detail)) if detail == STALE_TURN && attempts < 3 => {}
                outcome => return outcome,
            }
        }
    }

    /// One attempt at `record_turn`: refused as `STALE_TURN` when another
    /// turn added a message after the newest one read here.
    async fn record_turn_once(&self, request: &TurnRequest) -> EngineResult<Turn> {
        let create = request.conversation_id.is_none();
        let conversation_id = request.conversation_id.unwrap_or_else(Uuid::new_v4);
        let now = Utc::now();
        let newest = match (&request.branch, create) {
            (Branch::Newest, false) => {
                let result = self.run(conversation_id, "newest", &[]).await?;
                let newest = result.first().ok_or_else(|| internal("short reply"))?;
                Some(newest.clone())
            }
            _ => None,
        };
        let newest_id = match newest.as_deref() {
            Some("") | None => None,
            Some(id) => Some(id.parse().map_err(internal)?),
        };
        let place = match (&request.branch, &newest) {
            (Branch::Newest, Some(newest)) => format!("newest {newest}"),
            (Branch::After(Some(parent)), _) => format!("after {parent}"),
            (Branch::Reply { to, .. }, _) => format!("after {to}"),
            _ => String::new(),
        };
        let (user_message, reply) = request.messages(conversation_id, newest_id);
        let (user_stored, user_event) = match &user_message {
            Some(message) => message_event_json(message)?,
            None => (String::new(), String::new()),
        };
        let (reply_stored, reply_event) = message_event_json(&reply)?;
        let (prefix_event, prefix) = match &request.branch {
            Branch::Reply { prefix, .. } if !prefix.is_empty() => {
                let delta = Event::Delta {
                    message_id: reply.id,
                    text: prefix.clone(),
                };
                (
                    serde_json::to_string(&delta).map_err(internal)?,
                    prefix.as_str(),
                )
            }
            _ => (String::new(), ""),
        };
        let user_message_id = user_message
            .as_ref()
            .map_or_else(String::new, |m| m.id.to_string());
        let member = request
            .client_msg_id
            .map(|c| format!("{}:{c}", request.user))
            .unwrap_or_default();
        let title = if create {
            format!("T{}", title_from(&request.content))
        } else {
            String::new()
        };
        let mut connection = self.connection.clone();
        if create {
            let _: () = connection
                .sadd(user_key(&request.user), conversation_id.to_string())
                .await
                .map_err(map_error)?;
        }
        self.user_generations
            .reserve(
                &mut connection,
                &request.user,
                conversation_id,
                reply.id,
                self.limits.max_generations_per_user,
            )
            .await?;
        let result = self
            .run(
                conversation_id,
                "turn",
                &[
                    &request.user.to_string(),
                    if create { "1" } else { "0" },
                    &title,
                    &new_epoch(),
                    &member,
                    &user_message_id,
                    &user_stored,
                    &request.content,
                    &user_event,
                    &reply.id.to_string(),
                    &reply_stored,
                    &reply_event,
                    &self.node_id,
                    &super::LEASE_TTL.as_millis().to_string(),
                    &place,
                    &prefix_event,
                    prefix,
                ],
            )
            .await;
        let result = match result {
            Ok(result) => result,
            Err(refused) => {
                let _ = self
                    .user_generations
                    .release(&mut connection, &request.user, conversation_id, reply.id)
                    .await;
                return Err(refused);
            }
        };
        let [epoch, user_seq] = result.as_slice() else {
            return Err(internal("short reply"));
        };
        let ack = TurnAck {
            conversation_id,
            user_message_id: user_message
                .as_ref()
                .map_or(reply.parent_id.unwrap_or_default(), |m| m.id),
            assistant_message_id: reply.id,
        };
        let user_seq: u64 = user_seq.parse().map_err(internal)?;
        let ttl = self.conversation_ttl.as_secs().max(1);
        let index = |message_id: Uuid| {
            redis::cmd("SET")
                .arg(message_key(message_id))
                .arg(conversation_id.to_string())
                .arg("EX")
                .arg(ttl)
                .to_owned()
        };
        let mut commands: Vec<_> = user_message
            .iter()
            .map(|m| index(m.id))
            .chain([index(reply.id)])
            .collect();
        commands.push(
            redis::cmd("EXPIRE")
                .arg(user_key(&request.user))
                .arg(ttl)
                .to_owned(),
        );
        commands.push(
            redis::cmd("ZADD")
                .arg(in_flight_key(connection.slots(), conversation_id))
                .arg(now.timestamp_millis())
                .arg(in_flight_member(conversation_id, reply.id))
                .to_owned(),
        );
        if let Some(client_msg_id) = request.client_msg_id {
            let remembered = RememberedTurn {
                content: request.fingerprint(),
                requested_conversation: request.conversation_id,
                ack,
                user_seq,
            };
            commands.push(
                redis::cmd("SET")
                    .arg(turn_key(&request.user, client_msg_id))
                    .arg(serde_json::to_string(&remembered).map_err(internal)?)
                    .arg("EX")
                    .arg(TURN_MEMORY.as_secs())
                    .to_owned(),
            );
        }
        connection.run_each(commands).await.map_err(map_error)?;
        Ok(Turn {
            ack,
            epoch: epoch.as_str().into(),
            user_seq,
            started: true,
        })
    }
}
