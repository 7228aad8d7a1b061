//! The Exporter actor: publishes the store's outbox of events to Kafka
//! (`KAFKA_BROKERS`; docs/events.md).
//!
//! It only reads and trims the outbox, so nothing it does, nor a Kafka
//! outage, reaches a reply's stream: while Kafka is down events wait in the
//! store, and the backlog shows in `chatstream_outbox_rows`.
//!
//! One round: claim up to [`BATCH`] rows for the lease (`KAFKA_CLAIM_LEASE_MS`,
//! so that another node's exporter takes them over if this node dies
//! mid-batch), publish them keyed by conversation, delete what the brokers
//! acknowledged and give back the rest. The next round starts at once after
//! a full batch, after [`POLL`] when the outbox was drained, and after a
//! backoff (doubling up to [`MAX_BACKOFF`]) when the store or Kafka failed.
//! At least once: a row published whose deletion failed, or whose
//! acknowledgement was lost, is published again, with the same event id.

pub mod kafka;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::NodeContext;
use crate::store::{Outbox, Store};
use kafka::{ExportConfig, Kafka};

/// Rows claimed and published in one round at most.
pub const BATCH: usize = 500;
/// The pause after a round that found the outbox drained: how late an event
/// may leave after it was written, when nothing else waits.
pub const POLL: Duration = Duration::from_millis(200);
/// The first pause after a failure; doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the backlog gauges are read from the store.
const STATS_EVERY: Duration = Duration::from_secs(2);

pub const OUTBOX_ROWS: &str = "chatstream_outbox_rows";
pub const OUTBOX_OLDEST_SECONDS: &str = "chatstream_outbox_oldest_seconds";
pub const OUTBOX_PUBLISHED: &str = "chatstream_outbox_published_total";
pub const OUTBOX_PUBLISH_ERRORS: &str = "chatstream_outbox_publish_errors_total";

pub struct ExporterArgs {
    pub context: Arc<NodeContext>,
    pub config: ExportConfig,
}

pub enum ExporterMsg {
    /// Run one round.
    Round,
}

pub struct Exporter;

pub struct ExporterState {
    store: Arc<dyn Store>,
    config: ExportConfig,
    /// The name its claims are made in: the node's id.
    claimer: String,
    /// Connected on first use, dropped after a failure (connected again at
    /// the next round).
    kafka: Option<Kafka>,
    failures: u32,
    stats_at: Option<Instant>,
    /// The next round's timer, aborted when the actor stops.
    next_round: Option<JoinHandle<Result<(), ractor::MessagingErr<ExporterMsg>>>>,
}

impl Actor for Exporter {
    type Msg = ExporterMsg;
    type State = ExporterState;
    type Arguments = ExporterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ExporterMsg>,
        args: ExporterArgs,
    ) -> Result<ExporterState, ActorProcessingErr> {
        let store = args
            .context
            .store()
            .cloned()
            .ok_or("the exporter needs a durable store")?;
        if store.outbox().is_none() {
            return Err("the durable store was opened without its outbox".into());
        }
        myself.send_message(ExporterMsg::Round)?;
        Ok(ExporterState {
            store,
            config: args.config,
            claimer: args.context.node_id.clone(),
            kafka: None,
            failures: 0,
            stats_at: None,
            next_round: None,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<ExporterMsg>,
        state: &mut ExporterState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.next_round.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ExporterMsg>,
        message: ExporterMsg,
        state: &mut ExporterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ExporterMsg::Round => {
                state.update_stats().await;
                let next = match state.round().await {
                    Ok(Round::Full) => Duration::ZERO,
                    Ok(Round::Drained) => POLL,
                    Err(error) => state.failed(&error),
                };
                if next.is_zero() {
                    myself.send_message(ExporterMsg::Round)?;
                } else {
                    state.next_round = Some(myself.send_after(next, || ExporterMsg::Round));
                }
            }
        }
        Ok(())
    }
}

/// What a round left.
enum Round {
    /// A full batch went out: more may wait.
    Full,
    /// Fewer rows than a batch (or none) were waiting.
    Drained,
}

impl ExporterState {
    fn outbox(&self) -> &dyn Outbox {
        self.store
            .outbox()
            .expect("checked in pre_start: the store writes an outbox")
    }

    async fn round(&mut self) -> Result<Round, String> {
        if self.kafka.is_none() {
            let client_id = format!("chatstream-{}", self.claimer);
            let kafka = Kafka::connect(&self.config, &client_id)
                .await
                .map_err(|error| format!("{error:#}"))?;
            self.kafka = Some(kafka);
        }
        let rows = self
            .outbox()
            .claim(&self.claimer, self.config.lease, BATCH)
            .await
            .map_err(|error| format!("claiming from the outbox: {error}"))?;
        if rows.is_empty() {
            self.recovered();
            return Ok(Round::Drained);
        }
        let full = rows.len() == BATCH;
        let deadline = self.config.publish_deadline();
        let kafka = self.kafka.as_mut().expect("connected above");
        let outcome = match tokio::time::timeout(deadline, kafka.publish(&rows)).await {
            Ok(outcome) => outcome,
            // Given up before the lease ends; some may have reached the
            // brokers and go out again (same ids).
            Err(_) => kafka::Outcome {
                published: Vec::new(),
                unpublished: rows.iter().map(|row| row.seq).collect(),
                error: Some(format!("no answer from the brokers within {deadline:?}")),
            },
        };
        metrics::counter!(OUTBOX_PUBLISHED).increment(outcome.published.len() as u64);
        // Deleted before the rest is given back: should the store fail now,
        // published rows come back after the lease and go out again.
        self.outbox()
            .published(&outcome.published)
            .await
            .map_err(|error| format!("removing published rows: {error}"))?;
        if let Some(error) = outcome.error {
            if let Err(release) = self
                .outbox()
                .release(&self.claimer, &outcome.unpublished)
                .await
            {
                tracing::debug!(%release, "could not give rows back; they return after the lease");
            }
            // A connection in an unknown state: start again from the brokers.
            self.kafka = None;
            return Err(error);
        }
        self.recovered();
        Ok(if full { Round::Full } else { Round::Drained })
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "publishing events to Kafka again");
        }
        self.failures = 0;
    }

    /// Counts a failure and answers the pause before the next round.
    fn failed(&mut self, error: &str) -> Duration {
        self.failures += 1;
        metrics::counter!(OUTBOX_PUBLISH_ERRORS).increment(1);
        if self.failures == 1 || self.failures.is_multiple_of(20) {
            tracing::warn!(%error, failures = self.failures, "could not publish events to Kafka; retrying");
        }
        (FIRST_BACKOFF * 2u32.saturating_pow(self.failures.saturating_sub(1).min(8)))
            .min(MAX_BACKOFF)
    }

    /// Reads the backlog for the gauges, at most every [`STATS_EVERY`].
    async fn update_stats(&mut self) {
        let now = Instant::now();
        if self
            .stats_at
            .is_some_and(|at| now.duration_since(at) < STATS_EVERY)
        {
            return;
        }
        self.stats_at = Some(now);
        match self.outbox().stats().await {
            Ok(stats) => {
                metrics::gauge!(OUTBOX_ROWS).set(stats.rows as f64);
                let oldest = stats.oldest.map_or(0.0, |oldest| {
                    (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1_000.0
                });
                metrics::gauge!(OUTBOX_OLDEST_SECONDS).set(oldest);
            }
            Err(error) => tracing::debug!(%error, "could not read the outbox's backlog"),
        }
    }
}
