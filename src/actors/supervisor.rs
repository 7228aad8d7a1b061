//! The root of a node's actor tree.
//!
//! Spawns the Registry and the three supervisors in dependency order and hands
//! their addresses to the HTTP layer. Its children are long-lived and never
//! fail by design; if one does, that is a bug, reported loudly. The
//! Registry, the Failover scanner, the Persister and the Exporter are started
//! again (their state lives outside them: the bus is forwarded here, the
//! journal is shared, the outbox is in the store, and Conversations register
//! with a new Registry and catch up from the log). The three supervisors hold
//! the node's live actors and cannot be replaced without losing them: if one
//! fails, `/readyz` answers 503, which takes the node out of the balancer and
//! lets its orchestrator replace it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::NodeContext;
use super::connections::{Connections, ConnectionsMsg};
use super::conversations::{Conversations, ConversationsArgs, ConversationsMsg};
use super::directory::ActorKind;
use super::exporter::kafka::ExportConfig;
use super::exporter::{Exporter, ExporterArgs, ExporterMsg};
use super::failover::{Failover, FailoverArgs};
use super::generations::{Generations, GenerationsMsg};
use super::persister::{Persister, PersisterMsg};
use super::registry::{Registry, RegistryArgs, RegistryMsg, forward_bus};

/// Restarts of one node-level actor allowed within `RESTART_WINDOW`; past
/// that it stays down (and `/readyz` says so) rather than crash-loop.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The directory keys of the node-level actors that must be alive for the
/// node to be ready (the Persister, when there is one, is added). Not the
/// Exporter: while it is down events wait in the store's outbox and the
/// node serves as well as ever (`chatstream_outbox_oldest_seconds` tells).
pub const NODE_ACTORS: [&str; 5] = [
    "registry",
    "generations",
    "conversations",
    "connections",
    "failover",
];

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
    /// Present when the node exports events (`KAFKA_BROKERS`).
    pub exporter: Option<ActorRef<ExporterMsg>>,
}

pub enum NodeMsg {
    Actors(RpcReplyPort<NodeActors>),
    /// The node is stopping: children that stop from now on stay stopped.
    /// Answered once recorded (a call, because supervision events overtake
    /// plain messages).
    Stopping(RpcReplyPort<()>),
}

pub struct NodeSupervisor;

pub struct NodeState {
    actors: NodeActors,
    context: Arc<NodeContext>,
    failover: ActorCell,
    /// The Registry the bus is forwarded to.
    current_registry: watch::Sender<ActorRef<RegistryMsg>>,
    bus_forwarder: Option<JoinHandle<()>>,
    /// Recent restart times, per restartable actor.
    restarts: std::collections::HashMap<&'static str, Vec<Instant>>,
    /// Set when the node stops, after which nothing is restarted.
    stopping: bool,
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

        let registry = spawn_registry(&context, &generations, &root).await?;
        let (current_registry, registry_watch) = watch::channel(registry.clone());
        let bus_forwarder = match context.engine.take_bus() {
            Some(bus) => Some(tokio::spawn(forward_bus(bus, registry_watch))),
            None => {
                tracing::error!("the engine's bus was already taken: live events will not arrive");
                None
            }
        };
        let failover = spawn_failover(&context, &generations, &root).await?;
        let persister = match &context.persistence {
            Some(_) => Some(spawn_persister(&context, &root).await?),
            None => None,
        };
        let exporter = match ExportConfig::from_settings(&context.settings)? {
            Some(config) => Some(spawn_exporter(&context, config, &root).await?),
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
                exporter,
            },
            context,
            failover,
            current_registry,
            bus_forwarder,
            restarts: Default::default(),
            stopping: false,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeMsg>,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        state.context.directory.remove(&myself.get_cell());
        if let Some(forwarder) = state.bus_forwarder.take() {
            forwarder.abort();
        }
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
            NodeMsg::Stopping(reply) => {
                state.stopping = true;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(actor = %cell.get_id(), %error, "a node-level actor failed");
                metrics::counter!("chatstream_node_actor_failures_total").increment(1);
                state.context.directory.remove(&cell);
                if let Err(error) = state.restart(&myself, &cell).await {
                    tracing::error!(%error, "a node-level actor could not be restarted");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.context.directory.remove(&cell);
                // Stopped while the node runs (killed, say): as good as failed.
                if !state.stopping {
                    tracing::error!(actor = %cell.get_id(), "a node-level actor stopped");
                    if let Err(error) = state.restart(&myself, &cell).await {
                        tracing::error!(%error, "a node-level actor could not be restarted");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl NodeState {
    /// Starts a failed Registry, Failover, Persister or Exporter again,
    /// within the restart budget.
    async fn restart(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        failed: &ActorCell,
    ) -> Result<(), ActorProcessingErr> {
        let id = failed.get_id();
        let which = if id == self.actors.registry.get_id() {
            "registry"
        } else if id == self.failover.get_id() {
            "failover"
        } else if self.actors.persister.as_ref().map(|p| p.get_id()) == Some(id) {
            "persister"
        } else if self.actors.exporter.as_ref().map(|e| e.get_id()) == Some(id) {
            "exporter"
        } else {
            // A supervisor of live actors: not replaceable; readiness reports it.
            return Ok(());
        };
        let now = Instant::now();
        let recent = self.restarts.entry(which).or_default();
        recent.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
        if recent.len() >= MAX_RESTARTS {
            tracing::error!(actor = which, "restarted too often; it stays down");
            return Ok(());
        }
        recent.push(now);
        let root = myself.get_cell();
        match which {
            "registry" => {
                let registry =
                    spawn_registry(&self.context, &self.actors.generations, &root).await?;
                self.actors.registry = registry.clone();
                let _ = self.current_registry.send(registry.clone());
                let _ = self
                    .actors
                    .conversations
                    .cast(ConversationsMsg::Registry(registry));
            }
            "failover" => {
                self.failover =
                    spawn_failover(&self.context, &self.actors.generations, &root).await?;
            }
            "persister" => {
                self.actors.persister = Some(spawn_persister(&self.context, &root).await?)
            }
            _ => {
                let config = ExportConfig::from_settings(&self.context.settings)?
                    .ok_or("an exporter without KAFKA_BROKERS")?;
                self.actors.exporter = Some(spawn_exporter(&self.context, config, &root).await?)
            }
        }
        tracing::warn!(actor = which, "restarted a node-level actor");
        Ok(())
    }
}

async fn spawn_registry(
    context: &Arc<NodeContext>,
    generations: &ActorRef<GenerationsMsg>,
    root: &ActorCell,
) -> Result<ActorRef<RegistryMsg>, ActorProcessingErr> {
    let args = RegistryArgs {
        context: context.clone(),
        generations: generations.clone(),
    };
    let (registry, _) = Actor::spawn_linked(None, Registry, args, root.clone()).await?;
    context.directory.add(
        &registry.get_cell(),
        ActorKind::Registry,
        "registry",
        Some(root),
    );
    Ok(registry)
}

async fn spawn_failover(
    context: &Arc<NodeContext>,
    generations: &ActorRef<GenerationsMsg>,
    root: &ActorCell,
) -> Result<ActorCell, ActorProcessingErr> {
    let args = FailoverArgs {
        context: context.clone(),
        generations: generations.clone(),
    };
    let (failover, _) = Actor::spawn_linked(None, Failover, args, root.clone()).await?;
    context.directory.add(
        &failover.get_cell(),
        ActorKind::Failover,
        "failover",
        Some(root),
    );
    Ok(failover.get_cell())
}

async fn spawn_persister(
    context: &Arc<NodeContext>,
    root: &ActorCell,
) -> Result<ActorRef<PersisterMsg>, ActorProcessingErr> {
    let persistence = context
        .persistence
        .clone()
        .ok_or("a persister needs a durable store")?;
    let (persister, _) = Actor::spawn_linked(None, Persister, persistence, root.clone()).await?;
    context.directory.add(
        &persister.get_cell(),
        ActorKind::Persister,
        "persister",
        Some(root),
    );
    Ok(persister)
}

async fn spawn_exporter(
    context: &Arc<NodeContext>,
    config: ExportConfig,
    root: &ActorCell,
) -> Result<ActorRef<ExporterMsg>, ActorProcessingErr> {
    let args = ExporterArgs {
        context: context.clone(),
        config,
    };
    let (exporter, _) = Actor::spawn_linked(None, Exporter, args, root.clone()).await?;
    context.directory.add(
        &exporter.get_cell(),
        ActorKind::Exporter,
        "exporter",
        Some(root),
    );
    Ok(exporter)
}
