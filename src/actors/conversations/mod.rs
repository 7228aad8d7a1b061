//! The Conversations supervisor: one Conversation actor per conversation that
//! has local subscribers, spawned on the first join and stopped when idle.
//!
//! Joins pass through here so that there is never more than one actor per
//! conversation: an actor that went idle asks to be stopped, and a join that
//! reaches it meanwhile is answered `Retry` and comes back here.

pub mod conversation;

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

use super::NodeContext;
use super::directory::ActorKind;
use super::registry::RegistryMsg;
use conversation::{
    Conversation, ConversationArgs, ConversationMsg, JoinError, JoinMode, Subscriber,
};

pub enum ConversationsMsg {
    Join {
        conversation_id: Uuid,
        subscriber: Subscriber,
        mode: JoinMode,
        reply: RpcReplyPort<Result<Vec<super::Frame>, JoinError>>,
    },
    Leave {
        conversation_id: Uuid,
        connection_id: Uuid,
    },
    /// A Conversation has no subscribers left and asks to be stopped.
    Idle {
        conversation_id: Uuid,
        actor: ActorId,
    },
    /// The node's Registry was restarted.
    Registry(ActorRef<RegistryMsg>),
}

pub struct Conversations;

pub struct ConversationsArgs {
    pub context: Arc<NodeContext>,
    pub registry: ActorRef<RegistryMsg>,
}

pub struct ConversationsState {
    context: Arc<NodeContext>,
    registry: ActorRef<RegistryMsg>,
    running: HashMap<Uuid, ActorRef<ConversationMsg>>,
}

impl Actor for Conversations {
    type Msg = ConversationsMsg;
    type State = ConversationsState;
    type Arguments = ConversationsArgs;

    async fn pre_start(
        &self,
        _: ActorRef<ConversationsMsg>,
        args: ConversationsArgs,
    ) -> Result<ConversationsState, ActorProcessingErr> {
        Ok(ConversationsState {
            context: args.context,
            registry: args.registry,
            running: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationsMsg>,
        message: ConversationsMsg,
        state: &mut ConversationsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConversationsMsg::Join {
                conversation_id,
                subscriber,
                mode,
                reply,
            } => {
                let actor = match state.running.get(&conversation_id) {
                    Some(actor) => actor.clone(),
                    None => match state.spawn(&myself, conversation_id).await {
                        Ok(actor) => actor,
                        Err(error) => {
                            let _ = reply.send(Err(JoinError::Failed(error)));
                            return Ok(());
                        }
                    },
                };
                let _ = actor.cast(ConversationMsg::Join {
                    subscriber,
                    mode,
                    reply,
                });
            }
            ConversationsMsg::Registry(registry) => {
                for actor in state.running.values() {
                    let _ = actor.cast(ConversationMsg::Reregister(registry.clone()));
                }
                state.registry = registry;
            }
            ConversationsMsg::Leave {
                conversation_id,
                connection_id,
            } => {
                if let Some(actor) = state.running.get(&conversation_id) {
                    let _ = actor.cast(ConversationMsg::Leave { connection_id });
                }
            }
            ConversationsMsg::Idle {
                conversation_id,
                actor,
            } => {
                if let Some(current) = state.running.get(&conversation_id)
                    && current.get_id() == actor
                {
                    current.stop(Some("idle".into()));
                    state.running.remove(&conversation_id);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<ConversationsMsg>,
        event: SupervisionEvent,
        state: &mut ConversationsState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error)),
            _ => return Ok(()),
        };
        state.context.directory.remove(&cell);
        state
            .running
            .retain(|_, actor| actor.get_id() != cell.get_id());
        if let Some(error) = failure {
            // It could not start (the log store unreachable, the conversation
            // just deleted) or it panicked. Joins waiting for it are answered
            // by their dropped reply ports, and the Connections retry.
            tracing::warn!(actor = %cell.get_id(), %error, "a conversation actor failed");
        }
        Ok(())
    }
}

impl ConversationsState {
    async fn spawn(
        &mut self,
        myself: &ActorRef<ConversationsMsg>,
        conversation_id: Uuid,
    ) -> Result<ActorRef<ConversationMsg>, crate::protocol::ApiError> {
        let args = ConversationArgs {
            conversation_id,
            context: self.context.clone(),
            registry: self.registry.clone(),
            supervisor: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Conversation, args, myself.get_cell())
            .await
            .map_err(|e| {
                crate::protocol::ApiError::unavailable(format!(
                    "cannot follow the conversation: {e}"
                ))
            })?;
        self.context.directory.add(
            &actor.get_cell(),
            ActorKind::Conversation,
            conversation_id,
            Some(&myself.get_cell()),
        );
        self.running.insert(conversation_id, actor.clone());
        Ok(actor)
    }
}
