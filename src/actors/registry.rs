//! The node's registry: bridges the engine's bus into Conversation mailboxes.
//!
//! It owns the node's subscription; the node supervisor forwards the
//! engine's bus into its mailbox (and, when a Registry is restarted, into
//! its successor's). A Conversation actor registers before it
//! reads the log (subscribe first, then read: nothing published in between is
//! missed), and every published event is routed to the one local actor of its
//! conversation. When the bus says live delivery may have missed something, it
//! tells every Conversation to catch up from the log.
//!
//! The handler never waits on the engine: subscribing and unsubscribing go,
//! in order, through one task beside the actor, and announcements through
//! another, so that subscription churn or a slow Redis never delays the
//! routing of live events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::NodeContext;
use super::conversations::conversation::ConversationMsg;
use super::generations::GenerationsMsg;
use crate::engine::{BusMessage, EngineError, NodeAnnouncement};

/// How often the node announces its live actors to the cluster.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement holds: a node silent for this long is gone.
const ANNOUNCEMENT_TTL: Duration = Duration::from_secs(5);

pub enum RegistryMsg {
    /// Route this conversation's events to `actor`; answers once the engine
    /// delivers them.
    Register {
        conversation_id: Uuid,
        actor: ActorRef<ConversationMsg>,
        reply: RpcReplyPort<Result<(), EngineError>>,
    },
    /// The actor stopped; forget it unless another took its place.
    Unregister {
        conversation_id: Uuid,
        actor: ActorId,
    },
    Bus(BusMessage),
    /// The engine refused to deliver this conversation's events to `actor`.
    WatchFailed {
        conversation_id: Uuid,
        actor: ActorId,
    },
}

/// A change of the node's subscription, applied in order by the watcher task.
enum WatchOp {
    Watch {
        conversation_id: Uuid,
        actor: ActorId,
        reply: RpcReplyPort<Result<(), EngineError>>,
    },
    Unwatch {
        conversation_id: Uuid,
    },
}

pub struct RegistryArgs {
    pub context: Arc<NodeContext>,
    pub generations: ActorRef<GenerationsMsg>,
}

pub struct Registry;

pub struct RegistryState {
    generations: ActorRef<GenerationsMsg>,
    routes: HashMap<Uuid, ActorRef<ConversationMsg>>,
    watch_ops: mpsc::UnboundedSender<WatchOp>,
    watcher: Option<JoinHandle<()>>,
    announcer: Option<JoinHandle<()>>,
}

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RegistryMsg>,
        RegistryArgs {
            context,
            generations,
        }: RegistryArgs,
    ) -> Result<RegistryState, ActorProcessingErr> {
        let announcer = Some(tokio::spawn(announce(context.clone(), myself.clone())));
        let (watch_ops, ops) = mpsc::unbounded_channel();
        let watcher = Some(tokio::spawn(apply_watch_ops(
            context.clone(),
            ops,
            myself.clone(),
        )));
        Ok(RegistryState {
            generations,
            routes: HashMap::new(),
            watch_ops,
            watcher,
            announcer,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<RegistryMsg>,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        for task in [state.watcher.take(), state.announcer.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegistryMsg>,
        message: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMsg::Register {
                conversation_id,
                actor,
                reply,
            } => {
                // Routed from now on; events published before the
                // subscription takes effect are read from the log by the
                // Conversation, which registers before it reads.
                let actor_id = actor.get_id();
                state.routes.insert(conversation_id, actor);
                let _ = state.watch_ops.send(WatchOp::Watch {
                    conversation_id,
                    actor: actor_id,
                    reply,
                });
            }
            RegistryMsg::WatchFailed {
                conversation_id,
                actor,
            } => {
                if state
                    .routes
                    .get(&conversation_id)
                    .is_some_and(|current| current.get_id() == actor)
                {
                    state.routes.remove(&conversation_id);
                }
            }
            RegistryMsg::Unregister {
                conversation_id,
                actor,
            } => {
                if state
                    .routes
                    .get(&conversation_id)
                    .is_some_and(|current| current.get_id() == actor)
                {
                    state.routes.remove(&conversation_id);
                    let _ = state.watch_ops.send(WatchOp::Unwatch { conversation_id });
                }
            }
            RegistryMsg::Bus(BusMessage::Published {
                conversation_id,
                epoch,
                entry,
            }) => {
                if let Some(actor) = state.routes.get(&conversation_id) {
                    let _ = actor.cast(ConversationMsg::Live { epoch, entry });
                }
            }
            RegistryMsg::Bus(BusMessage::Deleted { conversation_id }) => {
                if let Some(actor) = state.routes.get(&conversation_id) {
                    let _ = actor.cast(ConversationMsg::Deleted);
                }
            }
            RegistryMsg::Bus(BusMessage::CatchUp) => {
                for actor in state.routes.values() {
                    let _ = actor.cast(ConversationMsg::CatchUp);
                }
            }
            RegistryMsg::Bus(BusMessage::LogLost) => {
                for actor in state.routes.values() {
                    let _ = actor.cast(ConversationMsg::Rebuild);
                }
                let _ = state.generations.cast(GenerationsMsg::Rebuild);
            }
            RegistryMsg::Bus(BusMessage::StopGeneration { message_id }) => {
                let _ = state.generations.cast(GenerationsMsg::Abort { message_id });
            }
        }
        Ok(())
    }
}

/// Applies subscription changes one after the other, so that a watch and
/// the unwatch that follows it reach the engine in that order.
async fn apply_watch_ops(
    context: Arc<NodeContext>,
    mut ops: mpsc::UnboundedReceiver<WatchOp>,
    registry: ActorRef<RegistryMsg>,
) {
    while let Some(op) = ops.recv().await {
        match op {
            WatchOp::Watch {
                conversation_id,
                actor,
                reply,
            } => {
                let result = context.engine.watch(conversation_id).await;
                if result.is_err() {
                    let _ = registry.cast(RegistryMsg::WatchFailed {
                        conversation_id,
                        actor,
                    });
                }
                let _ = reply.send(result);
            }
            WatchOp::Unwatch { conversation_id } => {
                if let Err(error) = context.engine.unwatch(conversation_id).await {
                    tracing::warn!(%conversation_id, %error, "unwatch failed");
                }
            }
        }
    }
}

/// Tells the cluster, every `ANNOUNCE_EVERY`, which actors live here, for
/// as long as `registry` lives (a killed actor skips `post_stop`, which
/// would otherwise end this task).
async fn announce(context: Arc<NodeContext>, registry: ActorRef<RegistryMsg>) {
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if registry.get_status() == ractor::ActorStatus::Stopped {
            return;
        }
        let actors = match serde_json::to_value(context.directory.list()) {
            Ok(actors) => actors,
            Err(error) => {
                tracing::error!(%error, "the actor directory could not be listed");
                continue;
            }
        };
        let announcement = NodeAnnouncement {
            node_id: context.node_id.clone(),
            actors,
        };
        if let Err(error) = context
            .engine
            .announce_node(announcement, ANNOUNCEMENT_TTL)
            .await
        {
            tracing::debug!(%error, "announcing this node failed");
        }
    }
}

/// Forwards the engine's bus into the current Registry's mailbox. A message
/// the Registry could not take (it failed) waits for its successor, so
/// nothing on the bus is lost across a restart.
pub async fn forward_bus(
    mut bus: mpsc::UnboundedReceiver<BusMessage>,
    mut registry: tokio::sync::watch::Receiver<ActorRef<RegistryMsg>>,
) {
    while let Some(message) = bus.recv().await {
        let mut message = RegistryMsg::Bus(message);
        loop {
            let current = registry.borrow_and_update().clone();
            match current.cast(message) {
                Ok(()) => break,
                Err(ractor::MessagingErr::SendErr(unsent)) => message = unsent,
                Err(_) => return,
            }
            if registry.changed().await.is_err() {
                return;
            }
        }
    }
}
