//! One in-flight reply: streams from the model provider into the log.
//!
//! The provider stream is driven by a task that forwards each piece to this
//! actor as a message, so no `handle` call outlives one append and a stop is
//! never stuck behind a long stream. The task is aborted on stop (dropping the
//! stream, and with it the upstream request). Pieces arriving within the
//! coalescing window are appended as one delta.
//!
//! Text is appended at a known byte offset, so a retried append whose answer
//! was lost is never applied twice, and an unreachable log store only delays
//! the text: it stays pending and is retried until the store answers.
//!
//! A retryable provider failure makes the actor fail; its supervisor restarts
//! it, and the new attempt reads the text already published and continues
//! after it. Any append that the log rejects means the reply was ended
//! elsewhere (a cancel, a delete): the actor stops quietly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::failure::{FailureKind, failed};
use super::timing::{ReplyTimings, UpstreamOutcome, UpstreamTimer};
use super::{GenerationSpec, record_cancel};
use crate::actors::NodeContext;
use crate::engine::{EngineError, LEASE_TTL, Snapshot, TextAppend};
use crate::protocol::{ApiError, Event, MessageStatus};
use crate::providers::{ChatTurn, Completion, CompletionRequest, Provider, ProviderError};

pub enum GenerationMsg {
    /// The next item of the provider stream.
    Piece(Completion),
    /// The provider stream failed.
    ProviderFailed(ProviderError),
    /// Append what is pending (the coalescing window closed, or a retry).
    Flush,
    /// Stop at once, keeping the text so far, and record `cancelled`.
    Cancel(RpcReplyPort<Result<(), ApiError>>),
    /// Tell the cluster this node still generates the reply.
    RenewLease,
    /// The log store lost its data: recreate the conversation from this
    /// generation's copy and go on.
    Rebuild,
    /// The node is stopping: publish what is pending, give up the lease so
    /// that another node continues the reply at once, and stop.
    Handoff,
}
/// How soon an append refused by an unreachable log store is retried.
const STORE_RETRY: Duration = Duration::from_millis(250);

pub struct GenerationArgs {
    pub spec: GenerationSpec,
    /// When the reply was started on this node (its first attempt).
    pub started: Instant,
    pub context: Arc<NodeContext>,
}

/// One reply's generation, with the span its work runs in: every log line
/// of the generation, the provider's included, carries the reply's ids.
/// Kept here rather than in the state so that a message borrows it while
/// its handler changes the state (ractor gives each actor its own value).
pub struct Generation {
    span: tracing::Span,
}

impl Generation {
    pub fn new(node_id: &str, spec: &GenerationSpec) -> Generation {
        Generation {
            span: crate::telemetry::generation_span(node_id, spec.message_id, spec.conversation_id),
        }
    }
}

pub struct GenerationState {
    spec: GenerationSpec,
    context: Arc<NodeContext>,
    provider: Arc<dyn Provider>,
    stream_task: Option<JoinHandle<()>>,
    lease_renewal: Option<JoinHandle<()>>,
    /// Text received but not yet appended.
    pending: String,
    /// The conversation as of this reply, its text being the reply's text in
    /// the log (whose length is where the next append goes): what this node
    /// rebuilds the conversation from if the log store loses its data. Read
    /// in `post_start`, before any message is handled.
    copy: Option<Snapshot>,
    /// The ending to record once all pending text is in.
    ending: Option<Event>,
    flush_scheduled: bool,
    timings: ReplyTimings,
}

impl Actor for Generation {
    type Msg = GenerationMsg;
    type State = GenerationState;
    type Arguments = GenerationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GenerationMsg>,
        args: GenerationArgs,
    ) -> Result<GenerationState, ActorProcessingErr> {
        let GenerationArgs {
            spec,
            started,
            context,
        } = args;
        let provider = context
            .providers
            .get(&spec.model)
            .cloned()
            .ok_or_else(|| format!("model {:?} is not configured on this node", spec.model))?;
        let lease_renewal = Some(myself.send_interval(LEASE_TTL / 3, || GenerationMsg::RenewLease));
        Ok(GenerationState {
            timings: ReplyTimings::new(&spec.model, started),
            copy: None,
            spec,
            context,
            provider,
            stream_task: None,
            lease_renewal,
            pending: String::new(),
            ending: None,
            flush_scheduled: false,
        })
    }

    /// Reads the conversation and takes the lease here rather than in
    /// `pre_start`, which its supervisor waits for: spawning a reply never
    /// waits on the log store.
    async fn post_start(
        &self,
        myself: ActorRef<GenerationMsg>,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        in_span(&self.span, start(myself, state, &self.span)).await
    }

    async fn post_stop(
        &self,
        _: ActorRef<GenerationMsg>,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        state.stop_stream();
        if let Some(renewal) = state.lease_renewal.take() {
            renewal.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GenerationMsg>,
        message: GenerationMsg,
        state: &mut GenerationState,
    ) -> Result<(), ActorProcessingErr> {
        in_span(&self.span, handle_message(myself, message, state)).await
    }
}

/// Reads the reply, takes its lease and starts the provider's stream.
async fn start(
    myself: ActorRef<GenerationMsg>,
    state: &mut GenerationState,
    span: &tracing::Span,
) -> Result<(), ActorProcessingErr> {
    let (spec, context) = (&state.spec, &state.context);
    let snapshot = context.engine.snapshot(spec.conversation_id).await?;
    let position = snapshot
        .messages
        .iter()
        .position(|m| m.id == spec.message_id)
        .ok_or("the reply's message is not in its conversation")?;
    let reply = &snapshot.messages[position];
    // Another node may hold the reply (it adopted it while this attempt
    // waited out a backoff), or it ended (a cancel during the backoff):
    // then this attempt has nothing to do.
    let leased = reply.status == MessageStatus::Streaming
        && context
            .engine
            .renew_lease(
                spec.conversation_id,
                spec.message_id,
                &context.node_id,
                LEASE_TTL,
            )
            .await?;
    if !leased {
        myself.stop(Some("nothing to generate".into()));
        return Ok(());
    }
    let request = CompletionRequest {
        model: spec.model.clone(),
        // The model sees the reply's own branch: the path down to the
        // message it answers.
        history: crate::branches::path_to(&snapshot.messages[..position], reply.parent_id)
            .into_iter()
            .map(|m| ChatTurn {
                role: m.role,
                content: m.content.clone(),
            })
            .collect(),
        continue_from: reply.content.clone(),
    };
    state.timings.begin(&reply.content);
    let mut copy = snapshot;
    copy.messages.truncate(position + 1);
    state.copy = Some(copy);
    // Dropped with the task when it is aborted: the request then counts as
    // cancelled.
    let mut timer = UpstreamTimer::start(&state.spec.model);
    let mut stream = state.provider.complete(request);
    let task = async move {
        while let Some(item) = stream.next().await {
            // Observed before the actor hears of it, so the request's
            // duration is recorded before its reply's ending is.
            timer.observe(&item);
            let message = match item {
                Ok(piece) => GenerationMsg::Piece(piece),
                Err(error) => GenerationMsg::ProviderFailed(error),
            };
            if myself.cast(message).is_err() {
                return;
            }
        }
        // A stream that stops without finishing did not complete the reply.
        timer.end(UpstreamOutcome::Failed);
    };
    state.stream_task = Some(tokio::spawn(task.instrument(span.clone())));
    Ok(())
}

async fn handle_message(
    myself: ActorRef<GenerationMsg>,
    message: GenerationMsg,
    state: &mut GenerationState,
) -> Result<(), ActorProcessingErr> {
    match message {
        GenerationMsg::Piece(Completion::Text(text)) => {
            state.pending.push_str(&text);
            let window = state.context.settings.coalesce();
            if window.is_zero() {
                state.flush(&myself).await;
            } else {
                state.schedule_flush(&myself, window);
            }
        }
        GenerationMsg::Flush => {
            state.flush_scheduled = false;
            state.flush(&myself).await;
        }
        GenerationMsg::Piece(Completion::Finished {
            finish_reason,
            usage,
        }) => {
            state.ending = Some(Event::Done {
                message_id: state.spec.message_id,
                finish_reason,
                usage,
            });
            state.flush(&myself).await;
        }
        GenerationMsg::ProviderFailed(error) => {
            state.stop_stream();
            let can_resume = state.published().is_empty() && state.pending.is_empty()
                || state.provider.can_continue();
            if error.retryable && can_resume {
                // Whatever is pending is generated again by the next
                // attempt, which continues from the published text.
                return Err(Box::new(error));
            }
            let kind = if error.retryable {
                FailureKind::CannotContinue
            } else {
                FailureKind::Refused
            };
            state.ending = Some(failed(state.spec.message_id, kind, &error));
            state.flush(&myself).await;
        }
        GenerationMsg::Cancel(reply) => {
            state.stop_stream();
            let message_id = state.spec.message_id;
            state.ending = Some(Event::Cancelled { message_id });
            let result = match state.flush(&myself).await {
                Flushed::Ended => Ok(()),
                // This node lost the reply to another (its lease lapsed);
                // the cancel is recorded directly and reaches that node.
                Flushed::EndedElsewhere => {
                    record_cancel(
                        state.context.engine.as_ref(),
                        state.spec.conversation_id,
                        message_id,
                    )
                    .await
                }
                // Recorded as soon as the store answers; not acknowledged yet.
                Flushed::Deferred => {
                    Err(ApiError::unavailable("the log store is unavailable, retry"))
                }
            };
            metrics::counter!("chatstream_generations_cancelled_total").increment(1);
            let _ = reply.send(result);
        }
        GenerationMsg::RenewLease => {
            let context = &state.context;
            let (conversation_id, message_id) = (state.spec.conversation_id, state.spec.message_id);
            match context
                .engine
                .renew_lease(conversation_id, message_id, &context.node_id, LEASE_TTL)
                .await
            {
                Ok(true) => {}
                // Another node took the reply over (this one was cut off
                // too long), or it ended: stop writing to it.
                Ok(false) => state.stop(&myself, "the lease is lost"),
                Err(error) => tracing::warn!(%message_id, %error, "lease renewal failed"),
            }
        }
        GenerationMsg::Rebuild => {
            let (conversation_id, message_id) = (state.spec.conversation_id, state.spec.message_id);
            let context = state.context.clone();
            let Some(copy) = &state.copy else {
                return Ok(());
            };
            let rebuilt = context.engine.rebuild(copy, Some(&context.node_id)).await;
            match rebuilt {
                Ok(epoch) => {
                    tracing::info!(%message_id, %epoch, "reply's conversation rebuilt");
                    // Another node may have rebuilt it first, unleased.
                    let _ = context
                        .engine
                        .renew_lease(conversation_id, message_id, &context.node_id, LEASE_TTL)
                        .await;
                }
                Err(error) => {
                    tracing::warn!(%message_id, %error, "rebuild failed, retrying");
                    myself.send_after(STORE_RETRY, || GenerationMsg::Rebuild);
                }
            }
        }
        GenerationMsg::Handoff => {
            state.stop_stream();
            let context = state.context.clone();
            let (conversation_id, message_id) = (state.spec.conversation_id, state.spec.message_id);
            if matches!(state.flush(&myself).await, Flushed::Deferred) {
                if let Err(error) = context
                    .engine
                    .release_lease(conversation_id, message_id, &context.node_id)
                    .await
                {
                    tracing::warn!(%message_id, %error, "lease not released; it lapses instead");
                }
                state.stop(&myself, "handed off");
            }
        }
    }
    Ok(())
}

/// Runs `work` in `span`, entered on each poll. Borrows the span where
/// `Instrument` would take a clone: this wraps every message, a token's
/// included.
async fn in_span<T>(span: &tracing::Span, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| span.in_scope(|| work.as_mut().poll(cx))).await
}

/// What a flush achieved.
enum Flushed {
    /// Everything pending is in the log, the ending too: the actor stops.
    Ended,
    /// The log refused the reply's text: it was ended elsewhere (a cancel, a
    /// delete); the actor stops.
    EndedElsewhere,
    /// Some is still pending: text still streaming, or a retry is scheduled.
    Deferred,
}

impl GenerationState {
    fn published(&self) -> &str {
        self.copy
            .as_ref()
            .and_then(|c| c.messages.last())
            .map_or("", |reply| reply.content.as_str())
    }

    fn reply_mut(&mut self) -> &mut crate::protocol::Message {
        self.copy
            .as_mut()
            .and_then(|c| c.messages.last_mut())
            .expect("read in post_start, the reply last")
    }

    /// Appends the pending text, then the ending once there is one and no
    /// text is left.
    async fn flush(&mut self, myself: &ActorRef<GenerationMsg>) -> Flushed {
        let engine = self.context.engine.clone();
        let (conversation_id, message_id) = (self.spec.conversation_id, self.spec.message_id);
        while !self.pending.is_empty() {
            let text = self.pending.clone();
            let started = Instant::now();
            let appended = engine
                .append_text(
                    conversation_id,
                    message_id,
                    self.published().len(),
                    text,
                    &self.context.node_id,
                )
                .await;
            let returned = self.timings.append_returned(started);
            match appended {
                Ok(TextAppend::Appended(_) | TextAppend::AlreadyApplied) => {
                    self.timings.text_appended(returned);
                    let text = std::mem::take(&mut self.pending);
                    self.reply_mut().content.push_str(&text);
                }
                Err(EngineError::Conflict(_)) if self.reconcile().await => continue,
                Err(EngineError::Conflict(_) | EngineError::NotFound) => {
                    self.stop(myself, "the reply ended elsewhere");
                    return Flushed::EndedElsewhere;
                }
                Err(error) => return self.retry_later(myself, error),
            }
        }
        let Some(ending) = self.ending.clone() else {
            return Flushed::Deferred;
        };
        let outcome = match &ending {
            Event::Done { .. } => "done",
            Event::Cancelled { .. } => "cancelled",
            _ => "failed",
        };
        let started = Instant::now();
        let ended = engine
            .end_reply(conversation_id, ending, &self.context.node_id)
            .await;
        self.timings.append_returned(started);
        match ended {
            Ok(_) => {
                metrics::counter!("chatstream_generations_ended_total", "outcome" => outcome)
                    .increment(1);
                self.stop(myself, outcome);
                Flushed::Ended
            }
            Err(EngineError::Conflict(_) | EngineError::NotFound) => {
                self.stop(myself, "the reply ended elsewhere");
                Flushed::EndedElsewhere
            }
            Err(error) => self.retry_later(myself, error),
        }
    }

    /// After a refused append: if the log holds less of this reply than
    /// this generation published (the log was rebuilt from an older copy),
    /// takes the log's text as published and queues the rest again. False
    /// when the reply is no longer this generation's to write.
    async fn reconcile(&mut self) -> bool {
        let engine = self.context.engine.clone();
        let (conversation_id, message_id) = (self.spec.conversation_id, self.spec.message_id);
        let Ok(Some((_, logged))) = engine.message_at(conversation_id, message_id).await else {
            return false;
        };
        let published = self.published();
        if logged.status != MessageStatus::Streaming
            || logged.content.len() >= published.len()
            || !published.starts_with(logged.content.as_str())
        {
            return false;
        }
        let leased = engine
            .renew_lease(
                conversation_id,
                message_id,
                &self.context.node_id,
                LEASE_TTL,
            )
            .await;
        if !matches!(leased, Ok(true)) {
            return false;
        }
        let unlogged = published[logged.content.len()..].to_owned();
        self.pending.insert_str(0, &unlogged);
        let kept = logged.content.len();
        self.reply_mut().content.truncate(kept);
        true
    }

    fn retry_later(&mut self, myself: &ActorRef<GenerationMsg>, error: EngineError) -> Flushed {
        tracing::warn!(message_id = %self.spec.message_id, %error, "append failed, retrying");
        metrics::counter!("chatstream_append_retries_total").increment(1);
        self.schedule_flush(myself, STORE_RETRY);
        Flushed::Deferred
    }

    fn schedule_flush(&mut self, myself: &ActorRef<GenerationMsg>, after: Duration) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            myself.send_after(after, || GenerationMsg::Flush);
        }
    }

    fn stop(&mut self, myself: &ActorRef<GenerationMsg>, reason: &str) {
        self.stop_stream();
        myself.stop(Some(reason.into()));
    }

    fn stop_stream(&mut self) {
        if let Some(task) = self.stream_task.take() {
            task.abort();
        }
    }
}
