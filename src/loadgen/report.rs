//! The figures of one run: counts, rates over the measured window, latency
//! percentiles; as JSON or as a table for people.

use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Percentiles;
use super::tally::{EventCounts, Tally};

/// What was asked of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    pub target: String,
    pub clients: usize,
    pub messages_per_client: usize,
    pub watchers_per_conversation: usize,
    /// WebSockets open during the run: clients × (1 + watchers).
    pub connections: usize,
    pub duration_limit_secs: f64,
}

/// Per second of the measured window.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    pub turns: f64,
    /// Distinct events appended to the logs (each conversation's last seq).
    pub appended_events: f64,
    /// Events received, every socket counted (fan-out included).
    pub events: f64,
    pub deltas: f64,
    /// WebSocket text frames received, of any type.
    pub frames: f64,
    pub bytes: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub shape: Shape,
    /// From the first `send` to the last socket done.
    pub elapsed_secs: f64,
    /// Whether the duration limit cut the run short.
    pub stopped_by_deadline: bool,
    pub turns: u64,
    pub turns_failed: u64,
    pub rate_limited: u64,
    /// Sum over conversations of their last seq.
    pub events_appended: u64,
    /// What every socket should have received: each conversation's events
    /// once per socket that follows it.
    pub events_expected: u64,
    pub events_received: u64,
    pub events_by_kind: EventCounts,
    /// Events out of sequence (lost, repeated, reordered); 0 in a sound run.
    pub gaps: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub rates: Rates,
    /// Receive wall time minus the event's `ts` (append time), every event
    /// on every socket.
    pub append_to_screen_ms: Percentiles,
    /// The smallest append→screen difference before clamping at 0; a
    /// negative value would mean the clocks disagree.
    pub append_to_screen_min_raw_ms: Option<f64>,
    /// From a `send` leaving the client to its reply's first delta.
    pub send_to_first_delta_ms: Percentiles,
    pub error_count: u64,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(
        shape: Shape,
        total: &Tally,
        events_appended: u64,
        events_expected: u64,
        elapsed_secs: f64,
        stopped_by_deadline: bool,
    ) -> Report {
        let per_second = |n: u64| {
            if elapsed_secs > 0.0 {
                n as f64 / elapsed_secs
            } else {
                0.0
            }
        };
        Report {
            shape,
            elapsed_secs,
            stopped_by_deadline,
            turns: total.turns,
            turns_failed: total.turns_failed,
            rate_limited: total.rate_limited,
            events_appended,
            events_expected,
            events_received: total.events.total(),
            events_by_kind: total.events,
            gaps: total.gaps,
            frames_received: total.frames,
            bytes_received: total.bytes,
            rates: Rates {
                turns: per_second(total.turns),
                appended_events: per_second(events_appended),
                events: per_second(total.events.total()),
                deltas: per_second(total.events.delta),
                frames: per_second(total.frames),
                bytes: per_second(total.bytes),
            },
            append_to_screen_ms: total.append_to_screen.summary(),
            append_to_screen_min_raw_ms: total.append_to_screen_min_ms,
            send_to_first_delta_ms: total.send_to_first_delta.summary(),
            error_count: total.error_count,
            errors: total.errors.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The report as a table for a terminal.
    pub fn to_table(&self) -> String {
        let s = &self.shape;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "chatstream load → {}: {} clients × {} messages, {} watchers each ({} sockets)",
            s.target, s.clients, s.messages_per_client, s.watchers_per_conversation, s.connections
        );
        let _ = writeln!(
            out,
            "elapsed {:.2} s{}",
            self.elapsed_secs,
            if self.stopped_by_deadline {
                format!(" (stopped by the {} s limit)", s.duration_limit_secs)
            } else {
                String::new()
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<22} {:>14} {:>14}", "", "total", "per second");
        let row = |out: &mut String, name: &str, total: u64, rate: f64| {
            let _ = writeln!(out, "{name:<22} {total:>14} {rate:>14.1}");
        };
        let r = &self.rates;
        row(&mut out, "turns", self.turns, r.turns);
        row(
            &mut out,
            "events appended",
            self.events_appended,
            r.appended_events,
        );
        row(&mut out, "events received", self.events_received, r.events);
        row(
            &mut out,
            "  of which deltas",
            self.events_by_kind.delta,
            r.deltas,
        );
        row(&mut out, "frames received", self.frames_received, r.frames);
        row(&mut out, "bytes received", self.bytes_received, r.bytes);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p95", "p99", "max", "mean"
        );
        for (name, p) in [
            ("append → screen", &self.append_to_screen_ms),
            ("send → first delta", &self.send_to_first_delta_ms),
        ] {
            let _ = writeln!(
                out,
                "{name:<22} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                p.count, p.p50, p.p95, p.p99, p.max, p.mean
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "checks: events received {} of {} expected, {} out of sequence, {} turns refused, {} rate-limited sends, {} errors",
            self.events_received,
            self.events_expected,
            self.gaps,
            self.turns_failed,
            self.rate_limited,
            self.error_count
        );
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }
}
