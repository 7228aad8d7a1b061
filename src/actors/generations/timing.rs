//! The latencies a reader of a streaming reply feels, as Prometheus
//! histograms: how long until the first text, how long between pieces, how
//! long each append to the log takes, and how long the model took.
//!
//! Every series a token touches is labelled once per generation and kept as
//! a `metrics::Histogram` handle, so that a token costs a few atomic
//! operations, not a registry lookup. The node configures the buckets
//! (`node.rs`), which is what makes these histograms rather than summaries.

use std::time::Instant;

use metrics::Histogram;

use crate::providers::{Completion, ProviderError};

/// From the start of a fresh reply to its first text in the log, by `model`.
pub const TIME_TO_FIRST_TOKEN: &str = "chatstream_time_to_first_token_seconds";
/// Between two successive text appends of one reply, by `model`.
pub const TIME_BETWEEN_TOKENS: &str = "chatstream_time_between_tokens_seconds";
/// One engine call appending a reply's text or its ending.
pub const APPEND: &str = "chatstream_append_seconds";
/// One completion request to a model, from sending it to its end, by `model`
/// and `outcome`.
pub const UPSTREAM_DURATION: &str = "chatstream_upstream_duration_seconds";

/// How an upstream request ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// The model finished its reply.
    Done,
    /// The model's stream failed.
    Failed,
    /// The request was dropped before its end: a cancel, a handoff, a lost
    /// lease, a reply ended elsewhere.
    Cancelled,
}

impl UpstreamOutcome {
    fn label(self) -> &'static str {
        match self {
            UpstreamOutcome::Done => "done",
            UpstreamOutcome::Failed => "failed",
            UpstreamOutcome::Cancelled => "cancelled",
        }
    }
}

/// One generation attempt's histograms, and what they measure from.
pub struct ReplyTimings {
    /// Where the time to first token runs from, until it is observed.
    first_text_from: Option<Instant>,
    /// When this attempt last appended text.
    last_text_at: Option<Instant>,
    time_to_first_token: Histogram,
    time_between_tokens: Histogram,
    append: Histogram,
}

impl ReplyTimings {
    /// The timings of an attempt at a reply of `model` whose first attempt
    /// started at `started`.
    pub fn new(model: &str, started: Instant) -> ReplyTimings {
        ReplyTimings {
            first_text_from: Some(started),
            last_text_at: None,
            time_to_first_token: metrics::histogram!(TIME_TO_FIRST_TOKEN, "model" => model.to_owned()),
            time_between_tokens: metrics::histogram!(TIME_BETWEEN_TOKENS, "model" => model.to_owned()),
            append: metrics::histogram!(APPEND),
        }
    }

    /// The attempt begins with `published`, the reply's text in the log.
    /// The time to first token is only a fresh reply's: one that already
    /// has text (a restart after its first token, a reply resumed by
    /// failover or after a node restart) continues, and its first piece
    /// says nothing about how long a reader waited. A reply adopted from a
    /// node that stopped before its first token has no text either, and is
    /// timed from its adoption here: the Failover actor starts a reply as a
    /// turn does, so the two look alike, and the window is one lease.
    pub fn begin(&mut self, published: &str) {
        if !published.is_empty() {
            self.first_text_from = None;
        }
    }

    /// An engine append call that started at `started` returned now.
    /// Returns now, for `text_appended`.
    pub fn append_returned(&self, started: Instant) -> Instant {
        let now = Instant::now();
        self.append.record(now.duration_since(started));
        now
    }

    /// The log took a piece of text at `at`.
    pub fn text_appended(&mut self, at: Instant) {
        if let Some(from) = self.first_text_from.take() {
            self.time_to_first_token.record(at.duration_since(from));
        }
        if let Some(last) = self.last_text_at.replace(at) {
            self.time_between_tokens.record(at.duration_since(last));
        }
    }
}

/// Times one completion request from the moment it is made to its end,
/// observed once: at the stream's last item, or as `cancelled` when the
/// stream is dropped before it.
pub struct UpstreamTimer {
    model: String,
    started: Instant,
    ended: bool,
}

impl UpstreamTimer {
    pub fn start(model: &str) -> UpstreamTimer {
        UpstreamTimer {
            model: model.to_owned(),
            started: Instant::now(),
            ended: false,
        }
    }

    /// Observes the request's end, the first time only.
    pub fn end(&mut self, outcome: UpstreamOutcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let model = std::mem::take(&mut self.model);
        metrics::histogram!(UPSTREAM_DURATION, "model" => model, "outcome" => outcome.label())
            .record(self.started.elapsed());
    }

    /// Observes the end an item of the stream marks, if it marks one.
    pub fn observe(&mut self, item: &Result<Completion, ProviderError>) {
        match item {
            Ok(Completion::Text(_)) => {}
            Ok(Completion::Finished { .. }) => self.end(UpstreamOutcome::Done),
            Err(_) => self.end(UpstreamOutcome::Failed),
        }
    }
}

impl Drop for UpstreamTimer {
    fn drop(&mut self) {
        self.end(UpstreamOutcome::Cancelled);
    }
}
