//! The Generations supervisor: one Generation actor per in-flight reply, with
//! a restart policy.
//!
//! A Generation that fails (its provider broke off, the log store was
//! unreachable) is restarted after a backoff that doubles each time, up to
//! `GENERATION_MAX_RESTARTS`; the new attempt continues from the text already
//! published. After the last one the reply ends `failed` with its text kept.
//! A cancelled or finished Generation terminates instead of failing and is
//! never restarted.

pub mod failure;
pub mod generation;
pub mod timing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use uuid::Uuid;

use super::NodeContext;
use super::directory::ActorKind;
use crate::engine::{Engine, EngineError};
use crate::protocol::{ApiError, Event};
use failure::{FailureKind, failed};
use generation::{Generation, GenerationArgs, GenerationMsg};

/// Which reply to generate, with which model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSpec {
    pub conversation_id: Uuid,
    pub message_id: Uuid,
    pub model: String,
}

pub enum GenerationsMsg {
    Start(GenerationSpec),
    /// Stop the reply and record `cancelled`, wherever its generation is.
    Cancel {
        conversation_id: Uuid,
        message_id: Uuid,
        reply: RpcReplyPort<Result<(), ApiError>>,
    },
    /// Stop the reply's generation without recording anything (its
    /// conversation was deleted).
    Abort {
        message_id: Uuid,
    },
    /// A backoff ended: start the next attempt.
    Restart {
        message_id: Uuid,
    },
    /// The node is stopping: every Generation hands its reply over to the
    /// cluster, and none starts here any more. Answers with the actors to
    /// wait for.
    Handoff(RpcReplyPort<Vec<ActorCell>>),
    /// The log store lost its data: every Generation rebuilds its
    /// conversation.
    Rebuild,
}

pub struct Generations;

struct Attempt {
    spec: GenerationSpec,
    /// Restarts so far.
    restarts: u32,
    /// When the reply was started here: every attempt's time to first
    /// token runs from it, so a restart before the first token counts its
    /// backoff.
    started: Instant,
    /// The running actor; `None` while waiting out a backoff.
    actor: Option<ActorRef<GenerationMsg>>,
}

pub struct GenerationsState {
    context: Arc<NodeContext>,
    replies: HashMap<Uuid, Attempt>,
    /// Set when the node stops: replies are left to other nodes.
    draining: bool,
}

impl Actor for Generations {
    type Msg = GenerationsMsg;
    type State = GenerationsState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        _: ActorRef<GenerationsMsg>,
        context: Arc<NodeContext>,
    ) -> Result<GenerationsState, ActorProcessingErr> {
        Ok(GenerationsState {
            context,
            replies: HashMap::new(),
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GenerationsMsg>,
        message: GenerationsMsg,
        state: &mut GenerationsState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GenerationsMsg::Start(spec) => {
                let message_id = spec.message_id;
                if state.replies.contains_key(&message_id) {
                    return Ok(());
                }
                state.replies.insert(
                    message_id,
                    Attempt {
                        spec,
                        restarts: 0,
                        started: Instant::now(),
                        actor: None,
                    },
                );
                state.spawn(&myself, message_id).await;
            }
            GenerationsMsg::Restart { message_id } => state.spawn(&myself, message_id).await,
            GenerationsMsg::Cancel {
                conversation_id,
                message_id,
                reply,
            } => match state.replies.get(&message_id).and_then(|a| a.actor.clone()) {
                // The Generation flushes its text, records `cancelled` and answers.
                Some(actor) => {
                    // The actor stopped meanwhile: record the cancel here.
                    if let Err(ractor::MessagingErr::SendErr(GenerationMsg::Cancel(reply))) =
                        actor.cast(GenerationMsg::Cancel(reply))
                    {
                        state.cancel_in_background(conversation_id, message_id, reply);
                    }
                }
                // Not running here (or between attempts).
                None => {
                    state.replies.remove(&message_id);
                    state.cancel_in_background(conversation_id, message_id, reply);
                }
            },
            GenerationsMsg::Abort { message_id } => {
                if let Some(attempt) = state.replies.remove(&message_id)
                    && let Some(actor) = attempt.actor
                {
                    actor.stop(Some("aborted".into()));
                }
            }
            GenerationsMsg::Rebuild => {
                for actor in state.replies.values().filter_map(|a| a.actor.as_ref()) {
                    let _ = actor.cast(GenerationMsg::Rebuild);
                }
            }
            GenerationsMsg::Handoff(reply) => {
                state.draining = true;
                let mut running = Vec::new();
                let mut releases = Vec::new();
                for attempt in state.replies.values() {
                    match &attempt.actor {
                        Some(actor) => {
                            let _ = actor.cast(GenerationMsg::Handoff);
                            running.push(actor.get_cell());
                        }
                        None => releases.push(state.release(&attempt.spec)),
                    }
                }
                // Answered once the waiting replies are released, so that
                // another node adopts them before this one exits.
                tokio::spawn(async move {
                    futures_util::future::join_all(releases).await;
                    let _ = reply.send(running);
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GenerationsMsg>,
        event: SupervisionEvent,
        state: &mut GenerationsState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.context.directory.remove(&cell);
                if let Some(message_id) = state.message_of(&cell) {
                    state.replies.remove(&message_id);
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                state.context.directory.remove(&cell);
                if let Some(message_id) = state.message_of(&cell) {
                    state.failed(&myself, message_id, error.to_string());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl GenerationsState {
    fn message_of(&self, cell: &ActorCell) -> Option<Uuid> {
        self.replies
            .iter()
            .find(|(_, a)| {
                a.actor
                    .as_ref()
                    .is_some_and(|actor| actor.get_id() == cell.get_id())
            })
            .map(|(id, _)| *id)
    }

    async fn spawn(&mut self, myself: &ActorRef<GenerationsMsg>, message_id: Uuid) {
        let Some(attempt) = self.replies.get(&message_id) else {
            return;
        };
        if self.draining {
            let spec = attempt.spec.clone();
            self.replies.remove(&message_id);
            // The release runs on by itself; nothing here waits for it.
            drop(self.release(&spec));
            return;
        }
        let generation = Generation::new(&self.context.node_id, &attempt.spec);
        let args = GenerationArgs {
            spec: attempt.spec.clone(),
            started: attempt.started,
            context: self.context.clone(),
        };
        match Actor::spawn_linked(None, generation, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.context.directory.add(
                    &actor.get_cell(),
                    ActorKind::Generation,
                    message_id,
                    Some(&myself.get_cell()),
                );
                metrics::counter!("chatstream_generations_started_total").increment(1);
                if let Some(attempt) = self.replies.get_mut(&message_id) {
                    attempt.actor = Some(actor);
                }
            }
            Err(error) => self.failed(myself, message_id, error.to_string()),
        }
    }

    /// An attempt failed: restart after a backoff, or give up and record
    /// `failed` with the text kept.
    fn failed(&mut self, myself: &ActorRef<GenerationsMsg>, message_id: Uuid, error: String) {
        let max_restarts = self.context.settings.generation_max_restarts;
        let Some(attempt) = self.replies.get_mut(&message_id) else {
            return;
        };
        attempt.actor = None;
        if attempt.restarts < max_restarts {
            let delay = self.context.settings.generation_backoff(attempt.restarts);
            attempt.restarts += 1;
            tracing::warn!(%message_id, %error, restart = attempt.restarts, ?delay, "generation failed, restarting");
            metrics::counter!("chatstream_generation_restarts_total").increment(1);
            myself.send_after(delay, move || GenerationsMsg::Restart { message_id });
            return;
        }
        let conversation_id = attempt.spec.conversation_id;
        self.replies.remove(&message_id);
        let event = failed(message_id, FailureKind::GaveUp, &error);
        let engine = self.context.engine.clone();
        tokio::spawn(async move {
            if let Err(error) = engine.append(conversation_id, event).await {
                tracing::error!(%message_id, %error, "could not record the failure");
            }
        });
    }

    /// Leaves a reply to the other nodes: one adopts it at once. In the
    /// background, like every engine call of this supervisor, so that a
    /// slow log store never holds up its other messages.
    fn release(&self, spec: &GenerationSpec) -> tokio::task::JoinHandle<()> {
        let context = self.context.clone();
        let (conversation_id, message_id) = (spec.conversation_id, spec.message_id);
        tokio::spawn(async move {
            if let Err(error) = context
                .engine
                .release_lease(conversation_id, message_id, &context.node_id)
                .await
            {
                tracing::warn!(%message_id, %error, "lease not released; it lapses instead");
            }
        })
    }

    /// Records a cancel for a reply no Generation here runs, answering `reply`.
    fn cancel_in_background(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        reply: RpcReplyPort<Result<(), ApiError>>,
    ) {
        let engine = self.context.engine.clone();
        tokio::spawn(async move {
            let _ = reply.send(record_cancel(engine.as_ref(), conversation_id, message_id).await);
        });
    }
}

/// Records a cancel for a reply this node does not generate (any more), then
/// tells whichever node does to stop at once; one that cannot be told stops
/// at its next append, which the log refuses.
pub(crate) async fn record_cancel(
    engine: &dyn Engine,
    conversation_id: Uuid,
    message_id: Uuid,
) -> Result<(), ApiError> {
    match engine
        .append(conversation_id, Event::Cancelled { message_id })
        .await
    {
        Ok(_) => {}
        Err(EngineError::Conflict(_) | EngineError::NotFound) => {
            return Err(ApiError::conflict("the reply is no longer streaming"));
        }
        Err(other) => return Err(other.into_api("message")),
    }
    if let Err(error) = engine
        .stop_remote_generation(conversation_id, message_id)
        .await
    {
        tracing::warn!(%message_id, %error, "could not reach the generating node; it stops at its next append");
    }
    Ok(())
}
