//! The Failover actor: adopts replies whose node stopped renewing its lease.
//!
//! Every node runs one. Twice a second it asks the engine for streaming
//! replies whose lease lapsed (their node was killed, paused, cut off from
//! Redis, or handed them over while stopping), leases them to this node, and
//! has the local Generations supervisor continue each one from the text
//! already published. A cancelled reply has ended in the log, so it is never
//! adopted.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;

use super::NodeContext;
use super::generations::{GenerationSpec, GenerationsMsg};
use crate::engine::LEASE_TTL;

/// How often lapsed leases are looked for.
const SCAN_EVERY: Duration = Duration::from_millis(500);

pub enum FailoverMsg {
    Scan,
}

pub struct FailoverArgs {
    pub context: Arc<NodeContext>,
    pub generations: ActorRef<GenerationsMsg>,
}

pub struct Failover;

pub struct FailoverState {
    context: Arc<NodeContext>,
    generations: ActorRef<GenerationsMsg>,
    ticker: JoinHandle<()>,
}

impl Actor for Failover {
    type Msg = FailoverMsg;
    type State = FailoverState;
    type Arguments = FailoverArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<FailoverMsg>,
        args: FailoverArgs,
    ) -> Result<FailoverState, ActorProcessingErr> {
        Ok(FailoverState {
            context: args.context,
            generations: args.generations,
            ticker: myself.send_interval(SCAN_EVERY, || FailoverMsg::Scan),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<FailoverMsg>,
        state: &mut FailoverState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<FailoverMsg>,
        FailoverMsg::Scan: FailoverMsg,
        state: &mut FailoverState,
    ) -> Result<(), ActorProcessingErr> {
        let engine = &state.context.engine;
        let orphans = match engine
            .claim_orphans(&state.context.node_id, LEASE_TTL)
            .await
        {
            Ok(orphans) => orphans,
            Err(error) => {
                tracing::debug!(%error, "failover scan failed");
                return Ok(());
            }
        };
        for (conversation_id, message_id) in orphans {
            // One message, not the conversation: adoption costs the same
            // however long the conversation is.
            let model = match engine.message_at(conversation_id, message_id).await {
                Ok(found) => found.and_then(|(_, message)| message.model),
                Err(error) => {
                    tracing::warn!(%message_id, %error, "could not read an adopted reply");
                    continue;
                }
            };
            let model = model.unwrap_or_else(|| state.context.providers.default_model().to_owned());
            tracing::info!(%conversation_id, %message_id, "adopting a reply whose node stopped");
            metrics::counter!("chatstream_failover_adopted_total").increment(1);
            let _ = state
                .generations
                .cast(GenerationsMsg::Start(GenerationSpec {
                    conversation_id,
                    message_id,
                    model,
                }));
        }
        Ok(())
    }
}
