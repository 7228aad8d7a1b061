//! The `chatstream` command: a thin CLI over the library.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chatstream::ai_worker::{AiWorker, WorkerSettings};
use chatstream::config::Settings;
use chatstream::loadgen::{self, LoadArgs};
use chatstream::node::Node;

#[derive(Parser)]
#[command(
    name = "chatstream",
    version,
    about = "Streaming AI chat, served by actor-based nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

// Parsed once at start-up: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the chat UI, the WebSocket and the HTTP API (the default).
    Serve {
        #[command(flatten)]
        settings: Settings,
    },
    /// Serve the demo model over the OpenAI-compatible chat-completions API,
    /// as a separate AI service node for `AI_SERVICE_URLS`.
    AiWorker {
        #[command(flatten)]
        settings: WorkerSettings,
    },
    /// Load a running node or cluster (loopback only) with WebSocket
    /// clients and report throughput and latency.
    Load {
        #[command(flatten)]
        args: LoadArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let settings = match cli.command {
        Some(Command::Serve { settings }) => settings,
        Some(Command::AiWorker { settings }) => {
            let worker = AiWorker::start(settings.clone()).await?;
            println!(
                "chatstream ai-worker serving {} on http://{}/v1",
                settings.model, worker.addr
            );
            return worker.run().await;
        }
        Some(Command::Load { args }) => return loadgen::main(args).await,
        None => cli.settings,
    };
    let node = Node::start(settings).await?;
    println!(
        "chatstream {} serving on http://{}",
        node.node_id(),
        node.addr
    );
    node.run_until_signal().await
}
