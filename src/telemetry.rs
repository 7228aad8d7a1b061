//! Logging: the process's subscriber (`LOG_FORMAT`, `RUST_LOG`) and the
//! spans that say which node, connection, conversation or reply a log line
//! is about.
//!
//! Each actor keeps its span in its state and runs its handlers inside it;
//! the span's parent is a span of the node, so a JSON line lists both
//! (`"spans": [{"name": "node", "node_id": …}, {"name": "connection", …}]`).
//! These spans are at ERROR level: a span below the filter's level is
//! disabled, and the warnings logged inside it would lose their ids.

use std::io::IsTerminal as _;

use tracing::Span;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

use crate::config::{LogFormat, Logging};

/// Installs the process's subscriber. Logs go to standard output, coloured
/// only when that is a terminal.
pub fn init(logging: &Logging) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&logging.log_filter)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match logging.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("installing the logger: {error}"))
}

/// The span of one node. `None` leaves `node_id` to be recorded once the
/// node has chosen one.
pub fn node_span(node_id: Option<&str>) -> Span {
    let span = tracing::error_span!(parent: None, "node", node_id = tracing::field::Empty);
    if let Some(node_id) = node_id {
        span.record("node_id", node_id);
    }
    span
}

/// The span of a `Connection` actor's work.
pub fn connection_span(node_id: &str, connection_id: Uuid) -> Span {
    tracing::error_span!(
        parent: &node_span(Some(node_id)),
        "connection",
        %connection_id
    )
}

/// The span of a `Conversation` actor's work.
pub fn conversation_span(node_id: &str, conversation_id: Uuid) -> Span {
    tracing::error_span!(
        parent: &node_span(Some(node_id)),
        "conversation",
        %conversation_id
    )
}

/// The span of a `Generation` actor's work: one reply.
pub fn generation_span(node_id: &str, message_id: Uuid, conversation_id: Uuid) -> Span {
    tracing::error_span!(
        parent: &node_span(Some(node_id)),
        "generation",
        %message_id,
        %conversation_id
    )
}
