//! What one socket counted, merged into the run's totals at the end.
//!
//! Every socket owns its tally (no sharing, no lock on the receive path);
//! the run adds them up once every client has finished.

use serde::Serialize;

use super::histogram::Histogram;
use crate::protocol::Event;

/// Events received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub message: u64,
    pub delta: u64,
    pub done: u64,
    pub cancelled: u64,
    pub failed: u64,
}

impl EventCounts {
    pub fn total(&self) -> u64 {
        self.message + self.delta + self.done + self.cancelled + self.failed
    }

    fn count(&mut self, event: &Event) {
        match event {
            Event::Message { .. } => self.message += 1,
            Event::Delta { .. } => self.delta += 1,
            Event::Done { .. } => self.done += 1,
            Event::Cancelled { .. } => self.cancelled += 1,
            Event::Failed { .. } => self.failed += 1,
        }
    }

    fn add(&mut self, other: &EventCounts) {
        self.message += other.message;
        self.delta += other.delta;
        self.done += other.done;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
    }
}

/// The counters of one socket (or, merged, of a whole run).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// WebSocket text frames received, of any type.
    pub frames: u64,
    /// Their payload bytes.
    pub bytes: u64,
    pub events: EventCounts,
    /// Events whose seq was not the one after the previous event's, on a
    /// socket that follows one conversation: each is a lost, repeated or
    /// reordered event.
    pub gaps: u64,
    /// The newest seq received (one conversation per socket).
    pub last_seq: u64,
    /// Receive wall time minus the event's `ts`, in microseconds (negative
    /// values, which only clock granularity could cause, count as 0).
    pub append_to_screen: Histogram,
    /// The smallest receive-minus-`ts` seen, in milliseconds, unclamped.
    pub append_to_screen_min_ms: Option<f64>,
    /// From a `send` leaving to the first delta of its reply, in microseconds.
    pub send_to_first_delta: Histogram,
    /// Completed turns: `ack` and the reply's ending both received.
    pub turns: u64,
    /// Sends answered with an error other than `rate_limited`.
    pub turns_failed: u64,
    /// Sends answered `rate_limited` (and sent again).
    pub rate_limited: u64,
    /// Human-readable failures (socket closed, error frames), first few kept.
    pub errors: Vec<String>,
    pub error_count: u64,
}

/// At most this many error texts are kept per run.
const KEPT_ERRORS: usize = 10;

impl Tally {
    /// Counts one received text frame of `bytes` bytes.
    pub fn frame(&mut self, bytes: usize) {
        self.frames += 1;
        self.bytes += bytes as u64;
    }

    /// Counts one event received at `received_ms` (Unix milliseconds).
    pub fn event(&mut self, seq: u64, ts: f64, event: &Event, received_ms: f64) {
        self.events.count(event);
        if seq != self.last_seq + 1 {
            self.gaps += 1;
        }
        self.last_seq = self.last_seq.max(seq);
        let latency = received_ms - ts;
        self.append_to_screen_min_ms = Some(
            self.append_to_screen_min_ms
                .map_or(latency, |min| min.min(latency)),
        );
        self.append_to_screen
            .record((latency.max(0.0) * 1000.0).round() as u64);
    }

    pub fn error(&mut self, what: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(what.into());
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.events.add(&other.events);
        self.gaps += other.gaps;
        self.last_seq = self.last_seq.max(other.last_seq);
        self.append_to_screen.merge(&other.append_to_screen);
        self.append_to_screen_min_ms =
            match (self.append_to_screen_min_ms, other.append_to_screen_min_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        self.send_to_first_delta.merge(&other.send_to_first_delta);
        self.turns += other.turns;
        self.turns_failed += other.turns_failed;
        self.rate_limited += other.rate_limited;
        self.error_count += other.error_count;
        for error in &other.errors {
            if self.errors.len() < KEPT_ERRORS {
                self.errors.push(error.clone());
            }
        }
    }
}
