//! Node configuration: environment variables (the seed's names where it had
//! them) or command-line flags. The defaults serve one node on localhost with
//! the embedded engine.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address the HTTP and WebSocket server listens on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// This node's name in `welcome` frames, logs and `/admin/actors`
    /// (random when unset).
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,

    /// Redis for a cluster of nodes; unset runs the embedded memory engine.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Seed nodes of a Redis Cluster (comma-separated `redis://host:port`
    /// or `rediss://…`), in place of `REDIS_URL`: each conversation lives in
    /// one hash slot and its events travel through that slot's shard.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_delimiter = ',', hide_env_values = true)]
    pub redis_cluster_nodes: Vec<String>,

    /// PEM file of the certificate authority that signed Redis's TLS
    /// certificate (`rediss://`), when it is not one the system trusts.
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,

    /// PEM files of this node's client certificate and key, for a Redis
    /// that asks clients for one (`tls-auth-clients yes`).
    #[arg(long, env = "REDIS_TLS_CERT_FILE", requires = "redis_tls_key_file")]
    pub redis_tls_cert_file: Option<std::path::PathBuf>,

    /// The key of `REDIS_TLS_CERT_FILE`.
    #[arg(long, env = "REDIS_TLS_KEY_FILE", requires = "redis_tls_cert_file")]
    pub redis_tls_key_file: Option<std::path::PathBuf>,

    /// The durable store of conversations: `postgres://…` or `sqlite://PATH`.
    /// Unset, a node without `REDIS_URL` keeps history in SQLite at
    /// `DATA_DIR/chatstream.db`; a node with `REDIS_URL` runs without one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Where the embedded node keeps its SQLite database and its generated
    /// secrets (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: std::path::PathBuf,

    /// HMAC secret of guest tokens; every node of a cluster needs the same one
    /// (random when unset, which only works for a single node).
    #[arg(long, env = "AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Bearer token for `/admin/*` (generated and logged when unset).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// How long a guest token stays valid, in seconds.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub token_ttl_secs: u64,

    /// The model used when a `send` names none.
    #[arg(long, env = "DEFAULT_MODEL", default_value = "demo")]
    pub default_model: String,

    /// Pause of the demo model before each token, in milliseconds.
    #[arg(long, env = "DEMO_TOKEN_DELAY_MS", default_value_t = 40)]
    pub demo_token_delay_ms: u64,

    /// Tokens in each demo reply.
    #[arg(long, env = "DEMO_REPLY_TOKENS", default_value_t = 120)]
    pub demo_reply_tokens: usize,

    /// Interval the client must send a frame within, announced in `welcome`;
    /// silence for twice as long closes the connection with 4000.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 25_000)]
    pub heartbeat_ms: u64,

    /// Largest client message in bytes, continuation frames joined.
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 65_536)]
    pub max_frame_bytes: usize,

    /// Bytes queued for one socket before it counts as too slow (4001); a
    /// single frame larger than this still goes out when nothing waits
    /// before it.
    #[arg(long, env = "OUTBOX_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub outbox_bytes: usize,

    /// Frames queued for one socket before it counts as too slow (4001).
    #[arg(long, env = "OUTBOX_FRAMES", default_value_t = 1024)]
    pub outbox_frames: usize,

    /// Client frames allowed per second on one connection (bursts of twice as many).
    #[arg(long, env = "FRAMES_PER_SECOND", default_value_t = 20)]
    pub frames_per_second: u32,

    /// Conversations one connection may follow at once.
    #[arg(long, env = "MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,

    /// WebSocket connections one user may hold open on this node; over it,
    /// the new one gets `rate_limited` and close 4029.
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 32)]
    pub max_connections_per_user: usize,

    /// Replies one user may have streaming at once, across the cluster.
    #[arg(long, env = "MAX_GENERATIONS_PER_USER", default_value_t = 4)]
    pub max_generations_per_user: usize,

    /// Conversations one user may have at once (a delete frees a place).
    #[arg(long, env = "MAX_CONVERSATIONS_PER_USER", default_value_t = 10_000)]
    pub max_conversations_per_user: usize,

    /// Messages of one conversation, user and assistant together.
    #[arg(long, env = "MAX_MESSAGES_PER_CONVERSATION", default_value_t = 2_000)]
    pub max_messages_per_conversation: usize,

    /// Guest tokens one IP address may obtain per minute.
    #[arg(long, env = "GUEST_TOKENS_PER_MINUTE", default_value_t = 20)]
    pub guest_tokens_per_minute: u32,

    /// Requests per second one user may make under `/api/` (bursts of
    /// twice as many).
    #[arg(long, env = "API_REQUESTS_PER_SECOND", default_value_t = 20)]
    pub api_requests_per_second: u32,

    /// Peers whose `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` are believed (comma-separated addresses or CIDR
    /// ranges, e.g. the balancer's); from anyone else they are ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Origins besides the node's own allowed to open a WebSocket
    /// (comma-separated, e.g. `https://chat.example.com`).
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Whether `POST /api/auth/guest` issues guest identities.
    #[arg(long, env = "GUEST_ACCESS", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub guest_access: bool,

    /// A JWKS document on disk holding an identity provider's public keys;
    /// its RS256 and ES256 tokens are then accepted besides guest tokens.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<std::path::PathBuf>,

    /// The identity provider's JWKS URL (fetched, cached, and fetched again
    /// when a token names an unknown key).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// The `iss` that identity-provider tokens must carry.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` that identity-provider tokens must hold.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on an identity-provider token's `exp`, in seconds
    /// (at most 60).
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,

    /// Log entries kept per conversation for resuming; older positions get a snapshot.
    #[arg(long, env = "HISTORY_SIZE", default_value_t = 10_000)]
    pub history_size: usize,

    /// How long a conversation is kept in Redis after its last turn, in seconds.
    #[arg(long, env = "CONVERSATION_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub conversation_ttl_secs: u64,

    /// Tokens arriving within this window are appended as one delta.
    #[arg(long, env = "COALESCE_MS", default_value_t = 5)]
    pub coalesce_ms: u64,

    /// Restarts of a failing generation before its message ends `failed`.
    #[arg(long, env = "GENERATION_MAX_RESTARTS", default_value_t = 3)]
    pub generation_max_restarts: u32,

    /// First restart delay of a failing generation; doubles with each restart.
    #[arg(long, env = "GENERATION_BACKOFF_MS", default_value_t = 200)]
    pub generation_backoff_ms: u64,

    /// The built frontend to serve at `/` (`frontend/dist` when it exists);
    /// without one, a single-file page built into the binary is served.
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<std::path::PathBuf>,

    /// HTTP worker threads (each with its own single-threaded runtime).
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 2)]
    pub http_workers: usize,

    /// OpenAI-compatible base URLs (comma-separated, e.g.
    /// `http://w1:8090/v1,http://w2:8090/v1`) serving `DEFAULT_MODEL`, the
    /// seed's shorthand for one pool; `MODELS_CONFIG` configures more.
    #[arg(long, env = "AI_SERVICE_URLS", value_delimiter = ',')]
    pub ai_service_urls: Vec<String>,

    /// Whether the `AI_SERVICE_URLS` servers continue a trailing assistant
    /// message (`chatstream ai-worker` and llama.cpp's server do), which lets
    /// a reply interrupted mid-stream resume on another one.
    #[arg(long, env = "AI_SERVICE_PREFILL", default_value_t = false, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub ai_service_prefill: bool,

    /// TOML file of models and their upstreams (see docs/models.md).
    #[arg(long, env = "MODELS_CONFIG")]
    pub models_config: Option<std::path::PathBuf>,

    /// Time to connect to a model upstream, in milliseconds.
    #[arg(long, env = "AI_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub ai_connect_timeout_ms: u64,

    /// Time from a model request to its first streamed event, in milliseconds.
    #[arg(long, env = "AI_FIRST_TOKEN_TIMEOUT_MS", default_value_t = 60_000)]
    pub ai_first_token_timeout_ms: u64,

    /// Longest silence between two streamed events before the upstream
    /// counts as stalled, in milliseconds.
    #[arg(long, env = "AI_TOKEN_TIMEOUT_MS", default_value_t = 30_000)]
    pub ai_token_timeout_ms: u64,

    /// Interval of the upstreams' health checks (`GET {base}/models`), in milliseconds.
    #[arg(long, env = "AI_HEALTH_INTERVAL_MS", default_value_t = 5_000)]
    pub ai_health_interval_ms: u64,

    /// How long an upstream is skipped after a 429 or repeated failures, in milliseconds.
    #[arg(long, env = "AI_COOLDOWN_MS", default_value_t = 5_000)]
    pub ai_cooldown_ms: u64,

    /// Failures in a row that put an upstream in cooldown.
    #[arg(long, env = "AI_ALLOWED_FAILURES", default_value_t = 3)]
    pub ai_allowed_failures: u32,

    /// Characters of conversation history sent with each request; the
    /// oldest messages are dropped first.
    #[arg(long, env = "AI_HISTORY_CHARS", default_value_t = 24_000)]
    pub ai_history_chars: usize,

    /// Concurrent requests per upstream, unless its configuration says otherwise.
    #[arg(long, env = "AI_MAX_CONCURRENT", default_value_t = 64)]
    pub ai_max_concurrent: usize,
}

impl Settings {
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
