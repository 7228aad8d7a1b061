//! Node configuration. Every setting is a command-line flag, an environment
//! variable (the seed's names where it had them) and a key of the settings
//! file (`CONFIG_FILE`), in that order of precedence; the defaults serve one
//! node on localhost with the embedded engine.
//!
//! clap alone decides the precedence: a settings file's values become the
//! defaults of the arguments of the same names ([`SettingsFile::apply`]),
//! which an environment variable or a flag then overrides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgAction, Args, Command};

/// The `--help` headings, one per subsystem.
mod heading {
    pub const SERVER: &str = "Server";
    pub const CLUSTER: &str = "Cluster and Redis";
    pub const STORE: &str = "Durable store";
    pub const SECURITY: &str = "Identity and security";
    pub const LIMITS: &str = "Limits";
    pub const MODELS: &str = "Models and upstreams";
    pub const DEMO: &str = "Demo model";
    pub const LOGGING: &str = "Logging";
    pub const EXPORT: &str = "Events export";
}

/// Where a node listens unless told otherwise; `chatstream healthcheck`
/// reads the same setting to find it.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Every setting of a node: each field is a flag, an environment variable
/// and a key of the settings file.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the HTTP and WebSocket server listens on.
    #[arg(long, env = "BIND", default_value = DEFAULT_BIND, help_heading = heading::SERVER)]
    pub bind: String,

    /// This node's name in `welcome` frames, logs and `/admin/actors`
    /// (random when unset).
    #[arg(long, env = "NODE_ID", help_heading = heading::SERVER)]
    pub node_id: Option<String>,

    /// HTTP worker threads (each with its own single-threaded runtime).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 2, help_heading = heading::SERVER)]
    pub http_workers: usize,

    /// The built frontend to serve at `/` (`frontend/dist` when it exists);
    /// without one, a single-file page built into the binary is served.
    #[arg(long, env = "STATIC_DIR", help_heading = heading::SERVER)]
    pub static_dir: Option<std::path::PathBuf>,

    /// Interval the client must send a frame within, announced in `welcome`;
    /// silence for twice as long closes the connection with 4000.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 25_000, help_heading = heading::SERVER)]
    pub heartbeat_ms: u64,

    /// Redis for a cluster of nodes; unset runs the embedded memory engine.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, help_heading = heading::CLUSTER)]
    pub redis_url: Option<String>,

    /// Seed nodes of a Redis Cluster (comma-separated `redis://host:port`
    /// or `rediss://…`), in place of `REDIS_URL`: each conversation lives in
    /// one hash slot and its events travel through that slot's shard.
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true
    , help_heading = heading::CLUSTER)]
    pub redis_cluster_nodes: Vec<String>,

    /// PEM file of the certificate authority that signed Redis's TLS
    /// certificate (`rediss://`), when it is not one the system trusts.
    #[arg(long, env = "REDIS_TLS_CA_FILE", help_heading = heading::CLUSTER)]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,

    /// PEM files of this node's client certificate and key, for a Redis
    /// that asks clients for one (`tls-auth-clients yes`).
    #[arg(long, env = "REDIS_TLS_CERT_FILE", help_heading = heading::CLUSTER)]
    pub redis_tls_cert_file: Option<std::path::PathBuf>,

    /// The key of `REDIS_TLS_CERT_FILE`.
    #[arg(long, env = "REDIS_TLS_KEY_FILE", help_heading = heading::CLUSTER)]
    pub redis_tls_key_file: Option<std::path::PathBuf>,

    /// How long a conversation is kept in Redis after its last turn, in seconds.
    #[arg(long, env = "CONVERSATION_TTL_SECS", default_value_t = 7 * 24 * 3600, help_heading = heading::CLUSTER)]
    pub conversation_ttl_secs: u64,

    /// The durable store of conversations: `postgres://…` or `sqlite://PATH`.
    /// Unset, a node without `REDIS_URL` keeps history in SQLite at
    /// `DATA_DIR/chatstream.db`; a node with `REDIS_URL` runs without one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, help_heading = heading::STORE)]
    pub database_url: Option<String>,

    /// Where the embedded node keeps its SQLite database and its generated
    /// secrets (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data", help_heading = heading::STORE)]
    pub data_dir: std::path::PathBuf,

    /// HMAC secret of guest tokens; every node of a cluster needs the same one
    /// (random when unset, which only works for a single node).
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true, help_heading = heading::SECURITY)]
    pub auth_secret: Option<String>,

    /// Bearer token for `/admin/*` (generated and logged when unset).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, help_heading = heading::SECURITY)]
    pub admin_token: Option<String>,

    /// How long a guest token stays valid, in seconds.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600, help_heading = heading::SECURITY)]
    pub token_ttl_secs: u64,

    /// Whether `POST /api/auth/guest` issues guest identities.
    #[arg(long, env = "GUEST_ACCESS", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = heading::SECURITY)]
    pub guest_access: bool,

    /// A JWKS document on disk holding an identity provider's public keys;
    /// its RS256 and ES256 tokens are then accepted besides guest tokens.
    #[arg(long, env = "JWT_JWKS_FILE", help_heading = heading::SECURITY)]
    pub jwt_jwks_file: Option<std::path::PathBuf>,

    /// The identity provider's JWKS URL (fetched, cached, and fetched again
    /// when a token names an unknown key).
    #[arg(long, env = "JWT_JWKS_URL", help_heading = heading::SECURITY)]
    pub jwt_jwks_url: Option<String>,

    /// The `iss` that identity-provider tokens must carry.
    #[arg(long, env = "JWT_ISSUER", help_heading = heading::SECURITY)]
    pub jwt_issuer: Option<String>,

    /// The `aud` that identity-provider tokens must hold.
    #[arg(long, env = "JWT_AUDIENCE", help_heading = heading::SECURITY)]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on an identity-provider token's `exp`, in seconds
    /// (at most 60).
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30, help_heading = heading::SECURITY)]
    pub jwt_leeway_secs: u64,

    /// Peers whose `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` are believed (comma-separated addresses or CIDR
    /// ranges, e.g. the balancer's); from anyone else they are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', help_heading = heading::SECURITY)]
    pub trusted_proxies: Vec<String>,

    /// Origins besides the node's own allowed to open a WebSocket
    /// (comma-separated, e.g. `https://chat.example.com`).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',', help_heading = heading::SECURITY)]
    pub allowed_origins: Vec<String>,

    /// Largest client message in bytes, continuation frames joined.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 65_536, help_heading = heading::LIMITS)]
    pub max_frame_bytes: usize,

    /// Bytes queued for one socket before it counts as too slow (4001); a
    /// single frame larger than this still goes out when nothing waits
    /// before it.
    #[arg(long, env = "OUTBOX_BYTES", default_value_t = 4 * 1024 * 1024, help_heading = heading::LIMITS)]
    pub outbox_bytes: usize,

    /// Frames queued for one socket before it counts as too slow (4001).
    #[arg(long, env = "OUTBOX_FRAMES", default_value_t = 1024, help_heading = heading::LIMITS)]
    pub outbox_frames: usize,

    /// Client frames allowed per second on one connection (bursts of twice as many).
    #[arg(long, env = "FRAMES_PER_SECOND", default_value_t = 20, help_heading = heading::LIMITS)]
    pub frames_per_second: u32,

    /// Conversations one connection may follow at once.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = 100, help_heading = heading::LIMITS)]
    pub max_subscriptions: usize,

    /// WebSocket connections one user may hold open on this node; over it,
    /// the new one gets `rate_limited` and close 4029.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 32, help_heading = heading::LIMITS)]
    pub max_connections_per_user: usize,

    /// Replies one user may have streaming at once, across the cluster.
    #[arg(long, env = "MAX_GENERATIONS_PER_USER", default_value_t = 4, help_heading = heading::LIMITS)]
    pub max_generations_per_user: usize,

    /// Conversations one user may have at once (a delete frees a place).
    #[arg(long, env = "MAX_CONVERSATIONS_PER_USER", default_value_t = 10_000, help_heading = heading::LIMITS)]
    pub max_conversations_per_user: usize,

    /// Messages of one conversation, user and assistant together.
    #[arg(long, env = "MAX_MESSAGES_PER_CONVERSATION", default_value_t = 2_000, help_heading = heading::LIMITS)]
    pub max_messages_per_conversation: usize,

    /// Guest tokens one IP address may obtain per minute.
    #[arg(long, env = "GUEST_TOKENS_PER_MINUTE", default_value_t = 20, help_heading = heading::LIMITS)]
    pub guest_tokens_per_minute: u32,

    /// Requests per second one user may make under `/api/` (bursts of
    /// twice as many).
    #[arg(long, env = "API_REQUESTS_PER_SECOND", default_value_t = 20, help_heading = heading::LIMITS)]
    pub api_requests_per_second: u32,

    /// Log entries kept per conversation for resuming; older positions get a snapshot.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 10_000, help_heading = heading::LIMITS)]
    pub history_size: usize,

    /// The model used when a `send` names none.
    #[arg(long, env = "DEFAULT_MODEL", default_value = "demo", help_heading = heading::MODELS)]
    pub default_model: String,

    /// OpenAI-compatible base URLs (comma-separated, e.g.
    /// `http://w1:8090/v1,http://w2:8090/v1`) serving `DEFAULT_MODEL`, the
    /// seed's shorthand for one pool; `MODELS_CONFIG` configures more.
    #[arg(long, env = "AI_SERVICE_URLS", value_delimiter = ',', help_heading = heading::MODELS)]
    pub ai_service_urls: Vec<String>,

    /// Whether the `AI_SERVICE_URLS` servers continue a trailing assistant
    /// message (`chatstream ai-worker` and llama.cpp's server do), which lets
    /// a reply interrupted mid-stream resume on another one.
    #[arg(long, env = "AI_SERVICE_PREFILL", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = heading::MODELS)]
    pub ai_service_prefill: bool,

    /// TOML file of models and their upstreams (see docs/models.md).
    #[arg(long, env = "MODELS_CONFIG", help_heading = heading::MODELS)]
    pub models_config: Option<std::path::PathBuf>,

    /// Time to connect to a model upstream, in milliseconds.
    #[arg(long, env = "AI_CONNECT_TIMEOUT_MS", default_value_t = 5_000, help_heading = heading::MODELS)]
    pub ai_connect_timeout_ms: u64,

    /// Time from a model request to its first streamed event, in milliseconds.
    #[arg(long, env = "AI_FIRST_TOKEN_TIMEOUT_MS", default_value_t = 60_000, help_heading = heading::MODELS)]
    pub ai_first_token_timeout_ms: u64,

    /// Longest silence between two streamed events before the upstream
    /// counts as stalled, in milliseconds.
    #[arg(long, env = "AI_TOKEN_TIMEOUT_MS", default_value_t = 30_000, help_heading = heading::MODELS)]
    pub ai_token_timeout_ms: u64,

    /// Interval of the upstreams' health checks (`GET {base}/models`), in milliseconds.
    #[arg(long, env = "AI_HEALTH_INTERVAL_MS", default_value_t = 5_000, help_heading = heading::MODELS)]
    pub ai_health_interval_ms: u64,

    /// How long an upstream is skipped after a 429 or repeated failures, in milliseconds.
    #[arg(long, env = "AI_COOLDOWN_MS", default_value_t = 5_000, help_heading = heading::MODELS)]
    pub ai_cooldown_ms: u64,

    /// Failures in a row that put an upstream in cooldown.
    #[arg(long, env = "AI_ALLOWED_FAILURES", default_value_t = 3, help_heading = heading::MODELS)]
    pub ai_allowed_failures: u32,

    /// Characters of conversation history sent with each request; the
    /// oldest messages are dropped first.
    #[arg(long, env = "AI_HISTORY_CHARS", default_value_t = 24_000, help_heading = heading::MODELS)]
    pub ai_history_chars: usize,

    /// Concurrent requests per upstream, unless its configuration says otherwise.
    #[arg(long, env = "AI_MAX_CONCURRENT", default_value_t = 64, help_heading = heading::MODELS)]
    pub ai_max_concurrent: usize,

    /// Tokens arriving within this window are appended as one delta.
    #[arg(long, env = "COALESCE_MS", default_value_t = 5, help_heading = heading::MODELS)]
    pub coalesce_ms: u64,

    /// Restarts of a failing generation before its message ends `failed`.
    #[arg(long, env = "GENERATION_MAX_RESTARTS", default_value_t = 3, help_heading = heading::MODELS)]
    pub generation_max_restarts: u32,

    /// First restart delay of a failing generation; doubles with each restart.
    #[arg(long, env = "GENERATION_BACKOFF_MS", default_value_t = 200, help_heading = heading::MODELS)]
    pub generation_backoff_ms: u64,

    /// Pause of the demo model before each token, in milliseconds.
    #[arg(long, env = "DEMO_TOKEN_DELAY_MS", default_value_t = 40, help_heading = heading::DEMO)]
    pub demo_token_delay_ms: u64,

    /// Tokens in each demo reply.
    #[arg(long, env = "DEMO_REPLY_TOKENS", default_value_t = 120, help_heading = heading::DEMO)]
    pub demo_reply_tokens: usize,

    /// Kafka brokers (comma-separated `host:port`) to export conversation
    /// events to (docs/events.md); unset: no export, and no events are
    /// written to the store's outbox.
    #[arg(long, env = "KAFKA_BROKERS", value_delimiter = ',', help_heading = heading::EXPORT)]
    pub kafka_brokers: Vec<String>,

    /// The topic events are published to, keyed by conversation id.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "chatstream.events", help_heading = heading::EXPORT)]
    pub kafka_topic: String,

    /// SASL mechanism for the brokers: `PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512` (with `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`).
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum, ignore_case = true, help_heading = heading::EXPORT)]
    pub kafka_sasl_mechanism: Option<KafkaSaslMechanism>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME", help_heading = heading::EXPORT)]
    pub kafka_sasl_username: Option<String>,

    /// SASL password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true, help_heading = heading::EXPORT)]
    pub kafka_sasl_password: Option<String>,

    /// Connect to the brokers with TLS.
    #[arg(long, env = "KAFKA_TLS", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = heading::EXPORT)]
    pub kafka_tls: bool,

    /// PEM file of the certificate authority that signed the brokers' TLS
    /// certificates, when it is not one the system trusts (implies `KAFKA_TLS`).
    #[arg(long, env = "KAFKA_TLS_CA_FILE", help_heading = heading::EXPORT)]
    pub kafka_tls_ca_file: Option<std::path::PathBuf>,

    /// Put message text and conversation titles in events (off: events carry
    /// ids, model, usage and times only).
    #[arg(long, env = "KAFKA_INCLUDE_TEXT", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new(), help_heading = heading::EXPORT)]
    pub kafka_include_text: bool,

    /// How long a node holds the outbox rows it is publishing before another
    /// node may take them over (a node that died mid-batch), in milliseconds.
    #[arg(long, env = "KAFKA_CLAIM_LEASE_MS", default_value_t = 30_000, help_heading = heading::EXPORT)]
    pub kafka_claim_lease_ms: u64,

    #[command(flatten)]
    pub logging: Logging,
}

/// How the process logs: every subcommand that runs a server has these.
#[derive(Debug, Clone, Args)]
pub struct Logging {
    /// `text`, for people, or `json`: one object per line with the fields of
    /// the spans it happened in (node, request, connection, conversation,
    /// message), for a log collector.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = heading::LOGGING)]
    pub log_format: LogFormat,

    /// Which logs are written: a `tracing` filter such as `info` or
    /// `warn,chatstream=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = log_filter, help_heading = heading::LOGGING)]
    pub log_filter: String,
}

/// The SASL mechanisms the Kafka client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaSaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A filter `tracing_subscriber` accepts, refused here so that a typo stops
/// the program with the setting's name instead of silently logging less.
fn log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|error| error.to_string())
}

/// Where settings come from besides flags and the environment.
#[derive(Debug, Clone, Args)]
pub struct ConfigFile {
    /// A TOML file of settings keyed by their names in snake_case
    /// (`redis_url = "redis://…"`); environment variables and flags override
    /// it.
    #[arg(long, env = "CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
}

/// A settings file: TOML whose keys are the ids of a command's arguments
/// (the settings' field names: `max_frame_bytes = 65536`, lists as arrays).
/// It is checked against those arguments when read, so that a misspelt key
/// or a wrong value stops the program instead of being ignored.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    /// Each key with its values as a command line spells them.
    values: Vec<(String, Vec<String>)>,
}

/// Why a settings file was refused: every problem found, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("settings file {}: {}", path.display(), problems.join("; "))]
pub struct SettingsFileError {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl SettingsFile {
    /// Reads the file at `path` and checks each key against the arguments of
    /// `settings` and each value against that argument's parser.
    pub fn read(path: &Path, settings: &Command) -> Result<SettingsFile, SettingsFileError> {
        let refuse = |problems: Vec<String>| SettingsFileError {
            path: path.to_owned(),
            problems,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| refuse(vec![format!("cannot be read: {error}")]))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|error| refuse(vec![error.to_string()]))?;
        let arguments: Vec<&Arg> = settings
            .get_arguments()
            .filter(|arg| {
                !matches!(
                    arg.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                )
            })
            .collect();
        let mut values = Vec::new();
        let mut problems = Vec::new();
        for (key, value) in &table {
            let Some(arg) = arguments.iter().find(|arg| arg.get_id() == key.as_str()) else {
                problems.push(unknown_key(key, &arguments));
                continue;
            };
            match command_line_values(arg, value) {
                Ok(spelt) => values.push((key.clone(), spelt)),
                Err(problem) => problems.push(format!("`{key}`: {problem}")),
            }
        }
        if problems.is_empty() {
            Ok(SettingsFile { values })
        } else {
            Err(refuse(problems))
        }
    }

    /// `command` with the file's values as the defaults of its arguments of
    /// the same ids (keys it lacks are left out), so that an environment
    /// variable or a flag still wins over the file.
    pub fn apply(&self, mut command: Command) -> Command {
        for (id, values) in &self.values {
            if !command
                .get_arguments()
                .any(|arg| arg.get_id() == id.as_str())
            {
                continue;
            }
            command = command.mut_arg(id, |arg| {
                // A secret's value must not show in `--help` as its default.
                let secret = arg.is_hide_env_values_set();
                let arg = arg.default_values(values.clone());
                if secret {
                    arg.hide_default_value(true)
                } else {
                    arg
                }
            });
        }
        command
    }
}

/// The problem with a key no argument has, with the likely intended one when
/// the key is a flag's or an environment variable's spelling of it.
fn unknown_key(key: &str, arguments: &[&Arg]) -> String {
    let normalised = key.trim_start_matches('-').to_lowercase().replace('-', "_");
    match arguments
        .iter()
        .find(|arg| arg.get_id() == normalised.as_str())
    {
        Some(arg) => format!("unknown setting `{key}` (did you mean `{}`?)", arg.get_id()),
        None => format!(
            "unknown setting `{key}` (keys are the flags of `--help` in snake_case: `--redis-url` is `redis_url`)"
        ),
    }
}

/// A TOML value as the values a command line would give `arg`, each checked
/// by the argument's own parser.
fn command_line_values(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let list = matches!(arg.get_action(), ArgAction::Append);
    let values = match value {
        toml::Value::Array(items) if list => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .ok_or("expected an array of strings")?,
        toml::Value::Array(_) => return Err("takes one value, not an array".into()),
        toml::Value::Table(_) => return Err("expected a value, not a table".into()),
        // A list may also be one string, comma-separated like its
        // environment variable.
        other => vec![scalar(other).ok_or("expected a value")?],
    };
    let mut probe = Arg::new("value")
        .long("value")
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone());
    if let Some(delimiter) = arg.get_value_delimiter() {
        probe = probe.value_delimiter(delimiter);
    }
    let probe = Command::new("settings-file")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(probe);
    for value in &values {
        if let Err(error) = probe
            .clone()
            .try_get_matches_from([format!("--value={value}")])
        {
            return Err(refusal(&error));
        }
    }
    Ok(values)
}

/// A TOML scalar as command-line text.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// What a parser said about a value, without clap's mention of the probe's
/// made-up flag. The value itself is not repeated: it may be a secret.
fn refusal(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(cause) = std::error::Error::source(error) {
        return cause.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    error.kind().to_string()
}

impl Settings {
    /// The node settings as the arguments of a command: what a settings
    /// file's keys are checked against.
    pub fn arguments() -> Command {
        Settings::augment_args(Command::new("chatstream"))
    }

    /// Checks what each setting cannot check alone, whichever source each
    /// came from.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.redis_tls_cert_file.is_some() != self.redis_tls_key_file.is_some() {
            anyhow::bail!(
                "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both or neither"
            );
        }
        Ok(())
    }

    /// The defaults, as a node started with no configuration gets them.
    pub fn defaults() -> Settings {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        Only::parse_from(["chatstream"]).settings
    }

    /// The frontend directory to serve, if any.
    pub fn frontend_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self
            .static_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("frontend/dist"));
        dir.join("index.html").is_file().then_some(dir)
    }

    /// Whether the node shares Redis (one server or a cluster) with others,
    /// rather than running the embedded engine.
    pub fn uses_redis(&self) -> bool {
        self.redis_url.is_some() || !self.redis_cluster_nodes.is_empty()
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn coalesce(&self) -> Duration {
        Duration::from_millis(self.coalesce_ms)
    }

    pub fn generation_backoff(&self, restart: u32) -> Duration {
        Duration::from_millis(
            self.generation_backoff_ms
                .saturating_mul(1 << restart.min(10)),
        )
    }
}
