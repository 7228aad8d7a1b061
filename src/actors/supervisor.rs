//! The root of a node's actor tree.
//!
//! Spawns the Registry and the three supervisors in dependency order and hands
//! their addresses to the HTTP layer. Its children are long-lived and never
//! fail by design; if one does, that is a bug, reported loudly, and the node
//! keeps serving with what remains rather than stopping every user's stream.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::NodeContext;
use super::connections::{Connections, ConnectionsMsg};
use super::conversations::{Conversations, ConversationsArgs, ConversationsMsg};
use super::directory::ActorKind;
use super::failover::{Failover, FailoverArgs};
use super::generations::{Generations, GenerationsMsg};
use super::persister::{Persister, PersisterMsg};
use super::registry::{Registry, RegistryArgs, RegistryMsg};

/// The addresses of the node's long-lived actors.
#[derive(Clone)]
pub struct NodeActors {
    pub root: ActorRef<NodeMsg>,
    pub registry: ActorRef<RegistryMsg>,
    pub connections: ActorRef<ConnectionsMsg>,
    pub conversations: ActorRef<ConversationsMsg>,
    pub generations: ActorRef<GenerationsMsg>,
    /// Present when the node has a durable store.
    pub persister: Option<ActorRef<PersisterMsg>>,
}

pub enum NodeMsg {
    Actors(RpcReplyPort<NodeActors>),
}

pub struct NodeSupervisor;

pub struct NodeState {
    actors: NodeActors,
    context: Arc<NodeContext>,
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeMsg>,
        context: Arc<NodeContext>,
    ) -> Result<NodeState, ActorProcessingErr> {
        let directory = &context.directory;
        let root = myself.get_cell();
        directory.add(&root, ActorKind::Supervisor, "node", None);

        let (generations, _) =
            Actor::spawn_linked(None, Generations, context.clone(), root.clone()).await?;
        directory.add(
            &generations.get_cell(),
            ActorKind::Supervisor,
            "generations",
            Some(&root),
        );

        let registry_args = RegistryArgs {
            context: context.clone(),
            generations: generations.clone(),
        };
        let (registry, _) =
            Actor::spawn_linked(None, Registry, registry_args, root.clone()).await?;
        directory.add(
            &registry.get_cell(),
            ActorKind::Registry,
            "registry",
            Some(&root),
        );

        let failover_args = FailoverArgs {
            context: context.clone(),
            generations: generations.clone(),
        };
        let (failover, _) =
            Actor::spawn_linked(None, Failover, failover_args, root.clone()).await?;
        directory.add(
            &failover.get_cell(),
            ActorKind::Failover,
            "failover",
            Some(&root),
        );

        let persister = match &context.persistence {
            Some(persistence) => {
                let (persister, _) =
                    Actor::spawn_linked(None, Persister, persistence.clone(), root.clone()).await?;
                directory.add(
                    &persister.get_cell(),
                    ActorKind::Persister,
                    "persister",
                    Some(&root),
                );
                Some(persister)
            }
            None => None,
        };

        let conversations_args = ConversationsArgs {
            context: context.clone(),
            registry: registry.clone(),
        };
        let (conversations, _) =
            Actor::spawn_linked(None, Conversations, conversations_args, root.clone()).await?;
        directory.add(
            &conversations.get_cell(),
            ActorKind::Supervisor,
            "conversations",
            Some(&root),
        );

        let (connections, _) =
            Actor::spawn_linked(None, Connections, context.clone(), root.clone()).await?;
        directory.add(
            &connections.get_cell(),
            ActorKind::Supervisor,
            "connections",
            Some(&root),
        );

        Ok(NodeState {
            actors: NodeActors {
                root: myself,
                registry,
                connections,
                conversations,
                generations,
                persister,
            },
            context,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.context.directory.remove(&myself.get_cell());
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<NodeMsg>,
        message: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeMsg::Actors(reply) => {
                let _ = reply.send(state.actors.clone());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(actor = %cell.get_id(), %error, "a node-level actor failed");
                state.context.directory.remove(&cell);
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.context.directory.remove(&cell);
            }
            _ => {}
        }
        Ok(())
    }
}
