//! One in-flight reply: streams from the model provider into the log.
//!
//! The provider stream is driven by a task that forwards each piece to this
//! actor as a message, so no `handle` call outlives one append and a stop is
//! never stuck behind a long stream. The task is aborted on stop (dropping the
//! stream, and with it the upstream request). Pieces arriving within the
//! coalescing window are appended as one delta.
//!
//! A retryable provider failure makes the actor fail; its supervisor restarts
//! it, and the new attempt reads the text already published and continues
//! after it. Any append that the log rejects means the reply was ended
//! elsewhere (a cancel, a delete): the actor stops quietly.

use std::sync::Arc;

use futures_util::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use super::GenerationSpec;
use crate::actors::NodeContext;
use crate::engine::EngineError;
use crate::protocol::{ApiError, Event, MessageStatus, Usage};
use crate::providers::{ChatTurn, Completion, CompletionRequest, Provider, ProviderError};

pub enum GenerationMsg {
    /// The next item of the provider stream.
    Piece(Completion),
    /// The provider stream failed.
    ProviderFailed(ProviderError),
    /// Append what the coalescing window gathered.
    Flush,
    /// Stop at once, keeping the text so far, and record `cancelled`.
    Cancel(RpcReplyPort<Result<(), ApiError>>),
}

pub struct GenerationArgs {
    pub spec: GenerationSpec,
    pub context: Arc<NodeContext>,
}

pub struct Generation;

pub struct GenerationState {
    spec: GenerationSpec,
    context: Arc<NodeContext>,
    provider: Arc<dyn Provider>,
    /// Set up in `pre_start`, taken by `post_start` to start streaming.
    request: Option<CompletionRequest>,
    stream_task: Option<JoinHandle<()>>,
    /// Text received but not yet appended.
    pending: String,
    flush_scheduled: bool,
    /// Whether any text of this reply is in the log, from this attempt or an
    /// earlier one.
    published_any: bool,
}

impl Actor for Generation {
    type Msg = GenerationMsg;
    type State = GenerationState;
    type Arguments = GenerationArgs;

    async fn pre_start(
        &self,
        _: ActorRef<GenerationMsg>,
        args: GenerationArgs,
    ) -> Result<GenerationState, ActorProcessingErr> {
        let GenerationArgs { spec, context } = args;
        let provider = context
            .providers
            .get(&spec.model)
            .cloned()
            .ok_or_else(|| format!("model {:?} is not configured on this node", spec.model))?;
        let snapshot = context.engine.snapshot(spec.conversation_id).await?;
        let position = snapshot
            .messages
            .iter()
            .position(|m| m.id == spec.message_id)
            .ok_or("the reply's message is not in its conversation")?;
        let reply = &snapshot.messages[position];
        let request = (reply.status == MessageStatus::Streaming).then(|| CompletionRequest {
            model: spec.model.clone(),
            history: snapshot.messages[..position]
                .iter()
                .map(|m| ChatTurn {
                    role: m.role,
                    content: m.content.clone(),
                })
                .collect(),
            continue_from: reply.content.clone(),
        });
        Ok(GenerationState {
            published_any: !reply.content.is_empty(),
            spec,
            context,
            provider,
            request,
            stream_task: None,
            pending: String::new(),
            flush_scheduled: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<GenerationMsg>,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(request) = state.request.take() else {
            // Ended while no attempt was running (a cancel during a restart's backoff).
            myself.stop(Some("already ended".into()));
            return Ok(());
        };
        let mut stream = state.provider.complete(request);
        state.stream_task = Some(tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let message = match item {
                    Ok(piece) => GenerationMsg::Piece(piece),
                    Err(error) => GenerationMsg::ProviderFailed(error),
                };
                if myself.cast(message).is_err() {
                    return;
                }
            }
        }));
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<GenerationMsg>,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_stream();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GenerationMsg>,
        message: GenerationMsg,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GenerationMsg::Piece(Completion::Text(text)) => {
                state.pending.push_str(&text);
                let window = state.context.settings.coalesce();
                if window.is_zero() {
                    state.flush(&myself).await?;
                } else if !state.flush_scheduled {
                    state.flush_scheduled = true;
                    myself.send_after(window, || GenerationMsg::Flush);
                }
            }
            GenerationMsg::Flush => {
                state.flush_scheduled = false;
                state.flush(&myself).await?;
            }
            GenerationMsg::Piece(Completion::Finished {
                finish_reason,
                usage,
            }) => {
                state.finish(&myself, finish_reason, usage).await?;
            }
            GenerationMsg::ProviderFailed(error) => {
                state.stop_stream();
                if !state.flush(&myself).await? {
                    return Ok(());
                }
                let can_resume = !state.published_any || state.provider.can_continue();
                if error.retryable && can_resume {
                    // Fail, so that the supervisor restarts the reply.
                    return Err(Box::new(error));
                }
                let reason = if error.retryable {
                    format!("{error} (this model cannot continue an interrupted reply)")
                } else {
                    error.message
                };
                let message_id = state.spec.message_id;
                state
                    .end(
                        &myself,
                        Event::Failed {
                            message_id,
                            error: reason,
                        },
                    )
                    .await?;
            }
            GenerationMsg::Cancel(reply) => {
                state.stop_stream();
                let message_id = state.spec.message_id;
                let result = match state.flush(&myself).await {
                    Ok(true) => state
                        .append(Event::Cancelled { message_id })
                        .await
                        .map_err(|e| match e {
                            EngineError::Conflict(_) | EngineError::NotFound => {
                                ApiError::conflict("the reply is no longer streaming")
                            }
                            other => other.into_api("message"),
                        }),
                    Ok(false) => Err(ApiError::conflict("the reply is no longer streaming")),
                    Err(error) => Err(ApiError::unavailable(error)),
                };
                metrics::counter!("chatstream_generations_cancelled_total").increment(1);
                let unavailable =
                    matches!(&result, Err(e) if e.code == crate::protocol::ErrorCode::Unavailable);
                let _ = reply.send(result);
                if unavailable {
                    // Nothing was recorded: the reply must not be left streaming
                    // with no generation, so the supervisor restarts it.
                    return Err("the log store is unavailable".into());
                }
                myself.stop(Some("cancelled".into()));
            }
        }
        Ok(())
    }
}

impl GenerationState {
    /// Appends the pending text. `Ok(false)` when the log refused it: the
    /// reply ended elsewhere and this actor is stopping. An unreachable log
    /// store is an error: the actor fails and its supervisor restarts the
    /// reply from what was published, so the unpublished text is generated
    /// again rather than lost.
    async fn flush(
        &mut self,
        myself: &ActorRef<GenerationMsg>,
    ) -> Result<bool, ActorProcessingErr> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        let event = Event::Delta {
            message_id: self.spec.message_id,
            text: std::mem::take(&mut self.pending),
        };
        match self.append(event).await {
            Ok(()) => {
                self.published_any = true;
                Ok(true)
            }
            Err(EngineError::Conflict(_) | EngineError::NotFound) => {
                self.stop_stream();
                myself.stop(Some("the reply ended elsewhere".into()));
                Ok(false)
            }
            Err(error) => Err(Box::new(error)),
        }
    }

    async fn finish(
        &mut self,
        myself: &ActorRef<GenerationMsg>,
        finish_reason: String,
        usage: Option<Usage>,
    ) -> Result<(), ActorProcessingErr> {
        if !self.flush(myself).await? {
            return Ok(());
        }
        self.end(
            myself,
            Event::Done {
                message_id: self.spec.message_id,
                finish_reason,
                usage,
            },
        )
        .await
    }

    /// Appends the reply's ending and stops.
    async fn end(
        &mut self,
        myself: &ActorRef<GenerationMsg>,
        event: Event,
    ) -> Result<(), ActorProcessingErr> {
        let outcome = match &event {
            Event::Done { .. } => "done",
            _ => "failed",
        };
        match self.append(event).await {
            Ok(()) | Err(EngineError::Conflict(_) | EngineError::NotFound) => {}
            Err(error) => return Err(Box::new(error)),
        }
        metrics::counter!("chatstream_generations_ended_total", "outcome" => outcome).increment(1);
        myself.stop(Some(outcome.into()));
        Ok(())
    }

    async fn append(&self, event: Event) -> Result<(), EngineError> {
        self.context
            .engine
            .append(self.spec.conversation_id, event)
            .await
            .map(|_| ())
    }

    fn stop_stream(&mut self) {
        if let Some(task) = self.stream_task.take() {
            task.abort();
        }
    }
}
