//! One attempt: a single streaming request to a single upstream, read event
//! by event under two deadlines — the first event must come within the
//! first-token timeout, and every later one within the between-token timeout
//! of the previous (keep-alive comments do not count: a server that only
//! sends those has stalled).
//!
//! Every way it can go wrong becomes an [`AttemptFailure`]: the error the
//! user may see, and what it says about the upstream for the pool.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RETRY_AFTER};
use tokio::time::{Instant, timeout_at};

use super::sse::SseDecoder;
use super::wire::{ChatChunk, ChatRequest, ErrorBody, WireError};
use crate::protocol::Usage;
use crate::providers::pool::{Failure, UpstreamSettings};
use crate::providers::{Completion, ProviderError};

/// Error bodies are read up to this size: enough for any message, bounded
/// against a server that streams garbage.
const MAX_ERROR_BODY: usize = 8 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From sending the request to its first event.
    pub first_token: Duration,
    /// Between two events.
    pub between_tokens: Duration,
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub failure: Failure,
    pub error: ProviderError,
}

impl AttemptFailure {
    fn new(failure: Failure, retryable: bool, message: String) -> AttemptFailure {
        AttemptFailure {
            failure,
            error: ProviderError { message, retryable },
        }
    }

    /// Whether another upstream might take the same request.
    pub fn try_elsewhere(&self) -> bool {
        self.failure != Failure::Rejected
    }
}

/// A streaming response being read.
pub struct Attempt {
    upstream: String,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: SseDecoder,
    /// Events decoded but not yet applied.
    events: VecDeque<String>,
    deadline: Instant,
    timeouts: Timeouts,
    /// Set once the first event arrived: later deadlines are between tokens.
    started: bool,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Attempt {
    /// Sends the request and checks the answer's status.
    pub async fn start(
        client: &reqwest::Client,
        upstream: &UpstreamSettings,
        body: &ChatRequest,
        timeouts: Timeouts,
    ) -> Result<Attempt, AttemptFailure> {
        let deadline = Instant::now() + timeouts.first_token;
        let name = &upstream.name;
        let mut request = client
            .post(format!("{}/chat/completions", upstream.base_url))
            .header(ACCEPT, "text/event-stream")
            .json(body);
        if let Some(key) = &upstream.api_key {
            request = request.bearer_auth(key);
        }
        let response = match timeout_at(deadline, request.send()).await {
            Err(_) => return Err(first_token_timeout(name, timeouts.first_token)),
            Ok(Err(error)) => return Err(request_failure(name, &error)),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(error_answer(name, response, deadline).await);
        }
        Ok(Attempt {
            upstream: name.clone(),
            body: response.bytes_stream().boxed(),
            decoder: SseDecoder::new(),
            events: VecDeque::new(),
            deadline,
            timeouts,
            started: false,
            finish_reason: None,
            usage: None,
        })
    }

    /// The next text piece, or the end. Not to be called after `Finished`.
    pub async fn next(&mut self) -> Result<Completion, AttemptFailure> {
        loop {
            while let Some(data) = self.events.pop_front() {
                if let Some(item) = self.apply(&data)? {
                    return Ok(item);
                }
            }
            let piece = match timeout_at(self.deadline, self.body.next()).await {
                Err(_) if self.started => {
                    return self.ended(AttemptFailure::new(
                        Failure::Failed,
                        true,
                        format!(
                            "upstream {} stalled: no token for {} ms",
                            self.upstream,
                            self.timeouts.between_tokens.as_millis()
                        ),
                    ));
                }
                Err(_) => {
                    return Err(first_token_timeout(
                        &self.upstream,
                        self.timeouts.first_token,
                    ));
                }
                Ok(None) => {
                    return self.ended(AttemptFailure::new(
                        Failure::Failed,
                        true,
                        format!(
                            "upstream {} closed the stream before the reply was finished",
                            self.upstream
                        ),
                    ));
                }
                Ok(Some(Err(error))) => {
                    return self.ended(AttemptFailure::new(
                        Failure::Failed,
                        true,
                        format!(
                            "the stream from upstream {} broke: {}",
                            self.upstream,
                            describe(&error)
                        ),
                    ));
                }
                Ok(Some(Ok(piece))) => piece,
            };
            let events = self.decoder.feed(&piece).map_err(|error| {
                AttemptFailure::new(
                    Failure::Failed,
                    false,
                    format!(
                        "upstream {} sent a malformed stream: {error}",
                        self.upstream
                    ),
                )
            })?;
            self.events.extend(events);
        }
    }

    /// Applies one event: text to yield, the end, or nothing (role-only,
    /// usage and empty chunks).
    fn apply(&mut self, data: &str) -> Result<Option<Completion>, AttemptFailure> {
        self.started = true;
        self.deadline = Instant::now() + self.timeouts.between_tokens;
        if data.trim() == "[DONE]" {
            return Ok(Some(self.finished()));
        }
        let chunk: ChatChunk = serde_json::from_str(data).map_err(|error| {
            AttemptFailure::new(
                Failure::Failed,
                false,
                format!(
                    "upstream {} sent a malformed event ({error}): {}",
                    self.upstream,
                    excerpt(data)
                ),
            )
        })?;
        if let Some(error) = chunk.error {
            return Err(stream_error(&self.upstream, &error));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            });
        }
        let mut text = String::new();
        for choice in chunk.choices.unwrap_or_default() {
            // Only one reply was asked for; other indices would be other replies.
            if choice.index != 0 {
                continue;
            }
            if let Some(content) = choice.delta.and_then(|d| d.content) {
                text.push_str(&content);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(finish_reason(&reason));
            }
        }
        Ok((!text.is_empty()).then_some(Completion::Text(text)))
    }

    fn finished(&mut self) -> Completion {
        Completion::Finished {
            finish_reason: self
                .finish_reason
                .take()
                .unwrap_or_else(|| "stop".to_owned()),
            usage: self.usage.take(),
        }
    }

    /// The stream ended early. A reply whose finish reason already came only
    /// lost its usage and `[DONE]`: it is complete.
    fn ended(&mut self, failure: AttemptFailure) -> Result<Completion, AttemptFailure> {
        if self.finish_reason.is_some() {
            Ok(self.finished())
        } else {
            Err(failure)
        }
    }
}

/// The contract's finish reasons from the names servers use.
fn finish_reason(reason: &str) -> String {
    match reason {
        "stop" | "eos" | "end_turn" | "stop_sequence" => "stop",
        "length" | "max_tokens" => "length",
        "tool_calls" | "function_call" => "tool_calls",
        other => other,
    }
    .to_owned()
}

fn first_token_timeout(upstream: &str, timeout: Duration) -> AttemptFailure {
    AttemptFailure::new(
        Failure::Failed,
        true,
        format!(
            "upstream {upstream} sent nothing within {} ms",
            timeout.as_millis()
        ),
    )
}

fn request_failure(upstream: &str, error: &reqwest::Error) -> AttemptFailure {
    let failure = if error.is_connect() {
        Failure::Unreachable
    } else {
        Failure::Failed
    };
    AttemptFailure::new(
        failure,
        true,
        format!("request to upstream {upstream} failed: {}", describe(error)),
    )
}

/// An error answer (any status but 2xx), with the message of its body.
async fn error_answer(
    upstream: &str,
    response: reqwest::Response,
    deadline: Instant,
) -> AttemptFailure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = read_bounded(response, deadline).await;
    let detail = serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| excerpt(&String::from_utf8_lossy(&body)));
    let (failure, retryable) = match status {
        StatusCode::TOO_MANY_REQUESTS => (Failure::RateLimited { retry_after }, true),
        StatusCode::REQUEST_TIMEOUT => (Failure::Failed, true),
        s if s.is_server_error() => (Failure::Failed, true),
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => (Failure::Rejected, false),
        // 401, 403, 404…: this upstream's configuration, maybe not another's.
        _ => (Failure::Failed, false),
    };
    let mut message = format!("upstream {upstream} answered {status}");
    if !detail.is_empty() {
        message = format!("{message}: {detail}");
    }
    AttemptFailure::new(failure, retryable, message)
}

async fn read_bounded(response: reqwest::Response, deadline: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(piece))) => body.extend_from_slice(&piece),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// An error event inside a stream that had started well.
fn stream_error(upstream: &str, error: &WireError) -> AttemptFailure {
    let code = error.code.as_ref().and_then(|c| match c {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    // Only a client error code says that trying again is pointless.
    let retryable = !matches!(code, Some(400..=499)) || code == Some(429);
    AttemptFailure::new(
        Failure::Failed,
        retryable,
        format!("upstream {upstream} reported an error: {}", error.message),
    )
}

/// An error with its chain of causes, which reqwest keeps out of `Display`.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
