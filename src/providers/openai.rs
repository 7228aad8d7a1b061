//! The provider of models served over the OpenAI chat-completions streaming
//! API: OpenAI itself, vLLM, llama.cpp's server, Ollama's `/v1`, LiteLLM,
//! and `chatstream ai-worker`.
//!
//! Each model has an [`UpstreamPool`]. A completion is tried on one upstream
//! after another until one starts producing text: a failure before the
//! first text (a refused connection, a 429 or 5xx answer, a timeout, a cut
//! or malformed stream) is invisible to the user. Once text has been
//! yielded, a failure ends the stream with a (usually retryable) error: the
//! Generation supervisor then restarts the reply, and the new attempt asks
//! for a continuation of the text already published, which only upstreams
//! with `continue_prefill` are given.
//!
//! Everything happens inside the returned stream, so dropping it drops the
//! HTTP request at once and the upstream stops generating.

mod attempt;
pub mod request;
pub mod sse;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;

use super::pool::{Lease, PoolSettings, UpstreamPool, UpstreamSettings};
use super::{Completion, CompletionRequest, CompletionStream, Provider, ProviderError};
pub use attempt::Timeouts;
use attempt::{Attempt, AttemptFailure};
use request::Prompt;

/// How one model is asked.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Sent first in every request, when set.
    pub system_prompt: Option<String>,
    /// The prompt's character budget; older messages are dropped to fit.
    pub history_chars: usize,
    pub connect_timeout: Duration,
    pub timeouts: Timeouts,
}

/// A model served by a pool of OpenAI-compatible upstreams.
pub struct OpenAiProvider {
    shared: Arc<Shared>,
}

struct Shared {
    pool: UpstreamPool,
    client: reqwest::Client,
    settings: ModelSettings,
}

impl OpenAiProvider {
    /// Builds the model's pool (which starts health-checking at once: call
    /// inside a tokio runtime).
    pub fn new(
        model: &str,
        upstreams: Vec<UpstreamSettings>,
        pool: PoolSettings,
        settings: ModelSettings,
    ) -> Result<OpenAiProvider, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            // A POST that is redirected would be replayed as a GET.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(OpenAiProvider {
            shared: Arc::new(Shared {
                pool: UpstreamPool::new(model, upstreams, pool, client.clone()),
                client,
                settings,
            }),
        })
    }

    pub fn pool(&self) -> &UpstreamPool {
        &self.shared.pool
    }
}

impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn can_continue(&self) -> bool {
        self.shared.pool.can_continue()
    }

    fn complete(&self, request: CompletionRequest) -> CompletionStream {
        let settings = &self.shared.settings;
        let prompt = Prompt::new(
            &request,
            settings.system_prompt.as_deref(),
            settings.history_chars,
        );
        let failover = Failover {
            shared: self.shared.clone(),
            prompt,
            tried: Vec::new(),
            current: None,
            yielded_text: false,
            ended: false,
        };
        stream::unfold(failover, |mut failover| async move {
            let item = failover.next().await?;
            Some((item, failover))
        })
        .boxed()
    }
}

/// One completion's walk through the pool.
struct Failover {
    shared: Arc<Shared>,
    prompt: Prompt,
    /// Upstreams already tried for this completion.
    tried: Vec<usize>,
    current: Option<(Lease, Attempt)>,
    /// Past the first text, a failure can no longer be hidden.
    yielded_text: bool,
    ended: bool,
}

impl Failover {
    async fn next(&mut self) -> Option<Result<Completion, ProviderError>> {
        if self.ended {
            return None;
        }
        let mut last_failure: Option<AttemptFailure> = None;
        loop {
            if self.current.is_none() {
                match self.open(&mut last_failure).await {
                    Ok(current) => self.current = Some(current),
                    Err(error) => return self.end(Err(error)),
                }
            }
            let (lease, attempt) = self.current.as_mut().expect("an attempt is open");
            match attempt.next().await {
                Ok(Completion::Text(text)) => {
                    if !self.yielded_text {
                        lease.succeeded();
                        self.yielded_text = true;
                    }
                    return Some(Ok(Completion::Text(text)));
                }
                Ok(finished) => {
                    lease.succeeded();
                    self.current = None;
                    return self.end(Ok(finished));
                }
                Err(failure) => {
                    lease.failed(failure.failure);
                    let upstream = lease.upstream().name.clone();
                    self.current = None;
                    if self.yielded_text || !failure.try_elsewhere() {
                        tracing::warn!(model = %self.shared.pool.model(), %upstream, error = %failure.error, "upstream failed mid-reply");
                        return self.end(Err(failure.error));
                    }
                    tracing::info!(model = %self.shared.pool.model(), %upstream, error = %failure.error, "upstream failed before the first token; trying another");
                    last_failure = Some(failure);
                }
            }
        }
    }

    /// Starts a request on the next upstream not tried yet.
    async fn open(
        &mut self,
        last_failure: &mut Option<AttemptFailure>,
    ) -> Result<(Lease, Attempt), ProviderError> {
        let shared = &self.shared;
        loop {
            let lease = match shared
                .pool
                .acquire(self.prompt.continuing(), &self.tried)
                .await
            {
                Ok(lease) => lease,
                // Out of upstreams: the last real failure says more than
                // "none left".
                Err(none_left) => {
                    return Err(match last_failure.take() {
                        Some(failure) if self.tried.len() > 1 => ProviderError {
                            message: format!(
                                "{} upstreams failed; the last: {}",
                                self.tried.len(),
                                failure.error.message
                            ),
                            ..failure.error
                        },
                        Some(failure) => failure.error,
                        None => none_left,
                    });
                }
            };
            self.tried.push(lease.index());
            let body = self.prompt.body_for(lease.upstream());
            match Attempt::start(
                &shared.client,
                lease.upstream(),
                &body,
                shared.settings.timeouts,
            )
            .await
            {
                Ok(attempt) => return Ok((lease, attempt)),
                Err(failure) => {
                    lease.failed(failure.failure);
                    if !failure.try_elsewhere() {
                        return Err(failure.error);
                    }
                    tracing::info!(model = %shared.pool.model(), upstream = %lease.upstream().name, error = %failure.error, "upstream refused the request; trying another");
                    *last_failure = Some(failure);
                }
            }
        }
    }

    fn end(
        &mut self,
        item: Result<Completion, ProviderError>,
    ) -> Option<Result<Completion, ProviderError>> {
        self.ended = true;
        Some(item)
    }
}
