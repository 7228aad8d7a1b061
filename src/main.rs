//! The `chatstream` command: a thin CLI over the library.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing::Instrument as _;

use chatstream::ai_worker::{AiWorker, WorkerSettings};
use chatstream::config::{ConfigFile, DEFAULT_BIND, LogFormat, Logging, Settings, SettingsFile};
use chatstream::loadgen::{self, LoadArgs};
use chatstream::node::Node;
use chatstream::telemetry;

#[derive(Parser)]
#[command(
    name = "chatstream",
    version,
    about = "Streaming AI chat, served by actor-based nodes",
    // Without it, node settings given before a subcommand (`chatstream
    // --bind X serve`) would be parsed and then ignored; clap refuses them,
    // naming the flag and the subcommand.
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

/// What a node runs with.
#[derive(Args)]
struct NodeArgs {
    #[command(flatten)]
    file: ConfigFile,
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
        node: NodeArgs,
    },
    /// Check the node on this machine (its `BIND`, through loopback when it
    /// listens on every interface): exit 0 when `/healthz` (or `/readyz`)
    /// answers 200 within 2 s, else 1, with one line saying why. For
    /// container health checks.
    Healthcheck(HealthcheckArgs),
    /// Serve the demo model over the OpenAI-compatible chat-completions API,
    /// as a separate AI service node for `AI_SERVICE_URLS`.
    AiWorker {
        #[command(flatten)]
        settings: WorkerSettings,
        #[command(flatten)]
        logging: Logging,
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Load a running node or cluster (loopback only) with WebSocket
    /// clients and report throughput and latency.
    Load {
        #[command(flatten)]
        args: LoadArgs,
        #[command(flatten)]
        logging: Logging,
    },
}

#[derive(Args)]
struct HealthcheckArgs {
    /// Check readiness (`/readyz`) instead of liveness (`/healthz`).
    #[arg(long)]
    ready: bool,
    /// The node's `BIND`.
    #[arg(long, env = "BIND", default_value = DEFAULT_BIND)]
    bind: String,
    /// The node's settings file, for its `bind`.
    #[command(flatten)]
    file: ConfigFile,
}

/// Whose settings a settings file holds.
enum FileOf {
    Node,
    Worker,
}

impl Cli {
    /// The log format of the command, which its failure is reported in.
    fn log_format(&self) -> LogFormat {
        match &self.command {
            None => self.node.settings.logging.log_format,
            Some(Command::Serve { node }) => node.settings.logging.log_format,
            Some(Command::AiWorker { logging, .. }) | Some(Command::Load { logging, .. }) => {
                logging.log_format
            }
            Some(Command::Healthcheck(_)) => LogFormat::Text,
        }
    }

    /// The settings file the command line or `CONFIG_FILE` names, and whose
    /// settings it holds.
    fn settings_file(&self) -> Option<(FileOf, &Path)> {
        let (of, file) = match &self.command {
            None => (FileOf::Node, &self.node.file),
            Some(Command::Serve { node }) => (FileOf::Node, &node.file),
            Some(Command::Healthcheck(args)) => (FileOf::Node, &args.file),
            Some(Command::AiWorker { file, .. }) => (FileOf::Worker, file),
            Some(Command::Load { .. }) => return None,
        };
        Some((of, file.config_file.as_deref()?))
    }

    /// Parses the command line. When it (or `CONFIG_FILE`) names a settings
    /// file, the file is checked against the settings it may hold and its
    /// values become the defaults of a second parse, so flags and
    /// environment variables still win.
    fn from_command_line() -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = std::env::args_os().collect();
        let cli = Cli::try_parse_from(&args).map_err(with_tip)?;
        let Some((of, path)) = cli.settings_file() else {
            return Ok(cli);
        };
        let mut command = Cli::command();
        let known = match of {
            FileOf::Node => Settings::arguments(),
            FileOf::Worker => {
                WorkerSettings::augment_args(Logging::augment_args(clap::Command::new("ai-worker")))
            }
        };
        let file = SettingsFile::read(path, &known)
            .map_err(|error| command.error(clap::error::ErrorKind::InvalidValue, error))?;
        command = match of {
            FileOf::Node => file
                .apply(command)
                .mut_subcommand("serve", |serve| file.apply(serve))
                .mut_subcommand("healthcheck", |check| file.apply(check)),
            FileOf::Worker => command.mut_subcommand("ai-worker", |worker| file.apply(worker)),
        };
        Cli::from_arg_matches(&command.try_get_matches_from(&args).map_err(with_tip)?)
    }
}

/// A setting given before a subcommand is refused by clap; this says where
/// it goes instead.
fn with_tip(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() == ErrorKind::ArgumentConflict
        && let Some(ContextValue::String(subcommand)) = error.get(ContextKind::InvalidSubcommand)
    {
        let tip = format!(
            "settings go after the subcommand (`chatstream {subcommand} --bind …`); without one, `chatstream --bind …` serves"
        );
        error.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    error
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::from_command_line().unwrap_or_else(|error| error.exit());
    let format = cli.log_format();
    match run(cli).await {
        Ok(code) => code,
        // A log collector reads only JSON lines (unless the logger itself
        // could not be installed).
        Err(error) if format == LogFormat::Json && tracing::dispatcher::has_been_set() => {
            tracing::error!(
                error = format!("{error:#}"),
                "chatstream stopped on an error"
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {error:?}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let node = match cli.command {
        None => cli.node,
        Some(Command::Serve { node }) => node,
        Some(Command::Healthcheck(args)) => {
            return Ok(
                match chatstream::healthcheck::check(&args.bind, args.ready).await {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::SUCCESS
                    }
                    Err(line) => {
                        eprintln!("{line}");
                        ExitCode::FAILURE
                    }
                },
            );
        }
        Some(Command::AiWorker {
            settings, logging, ..
        }) => {
            telemetry::init(&logging)?;
            let worker = AiWorker::start(settings.clone()).await?;
            if logging.log_format == LogFormat::Text {
                println!(
                    "chatstream ai-worker serving {} on http://{}/v1",
                    settings.model, worker.addr
                );
            }
            worker.run().await?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Load { args, logging }) => {
            telemetry::init(&logging)?;
            loadgen::main(args).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    let settings = node.settings;
    telemetry::init(&settings.logging)?;
    let format = settings.logging.log_format;
    let span = telemetry::node_span(settings.node_id.as_deref());
    let node = Node::start(settings).instrument(span.clone()).await?;
    span.record("node_id", node.node_id());
    if format == LogFormat::Text {
        println!(
            "chatstream {} serving on http://{}",
            node.node_id(),
            node.addr
        );
    }
    node.run_until_signal().instrument(span).await?;
    Ok(ExitCode::SUCCESS)
}
