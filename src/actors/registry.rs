//! The node's registry: bridges the engine's bus into Conversation mailboxes.
//!
//! It owns the node's subscription. A Conversation actor registers before it
//! reads the log (subscribe first, then read: nothing published in between is
//! missed), and every published event is routed to the one local actor of its
//! conversation. When the bus says live delivery may have missed something, it
//! tells every Conversation to catch up from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
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
    /// Time to tell the cluster which actors live here.
    Announce,
}

pub struct RegistryArgs {
    pub context: Arc<NodeContext>,
    pub generations: ActorRef<GenerationsMsg>,
}

pub struct Registry;

pub struct RegistryState {
    context: Arc<NodeContext>,
    generations: ActorRef<GenerationsMsg>,
    routes: HashMap<Uuid, ActorRef<ConversationMsg>>,
    bus_reader: Option<JoinHandle<()>>,
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
        let announcer = Some(myself.send_interval(ANNOUNCE_EVERY, || RegistryMsg::Announce));
        let bus_reader = context.engine.take_bus().map(|mut bus| {
            tokio::spawn(async move {
                while let Some(message) = bus.recv().await {
                    if myself.cast(RegistryMsg::Bus(message)).is_err() {
                        break;
                    }
                }
            })
        });
        if bus_reader.is_none() {
            tracing::error!("the engine's bus was already taken: live events will not arrive");
        }
        Ok(RegistryState {
            context,
            generations,
            routes: HashMap::new(),
            bus_reader,
            announcer,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<RegistryMsg>,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        for task in [state.bus_reader.take(), state.announcer.take()]
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
                let result = state.context.engine.watch(conversation_id).await;
                if result.is_ok() {
                    state.routes.insert(conversation_id, actor);
                }
                let _ = reply.send(result);
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
                    if let Err(error) = state.context.engine.unwatch(conversation_id).await {
                        tracing::warn!(%conversation_id, %error, "unwatch failed");
                    }
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
            RegistryMsg::Announce => {
                let announcement = NodeAnnouncement {
                    node_id: state.context.node_id.clone(),
                    actors: serde_json::to_value(state.context.directory.list())?,
                };
                if let Err(error) = state
                    .context
                    .engine
                    .announce_node(announcement, ANNOUNCEMENT_TTL)
                    .await
                {
                    tracing::debug!(%error, "announcing this node failed");
                }
            }
        }
        Ok(())
    }
}
