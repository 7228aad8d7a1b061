//! Builds and runs one node: the engine, the actor tree and the HTTP server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use ractor::Actor;
use tokio::task::JoinHandle;

use crate::actors::NodeContext;
use crate::actors::chat::Chat;
use crate::actors::connections::ConnectionsMsg;
use crate::actors::directory::ActorDirectory;
use crate::actors::generations::GenerationsMsg;
use crate::actors::generations::timing::{
    APPEND, TIME_BETWEEN_TOKENS, TIME_TO_FIRST_TOKEN, UPSTREAM_DURATION,
};
use crate::actors::persister::{Persistence, PersisterMsg};
use crate::actors::supervisor::{NodeActors, NodeMsg, NodeSupervisor};
use crate::auth::Auth;
use crate::config::Settings;
use crate::engine::durable::DurableEngine;
use crate::engine::redis::{RedisOptions, RedisTarget};
use crate::engine::{Engine, Limits, MemoryEngine, RedisEngine};
use crate::http::{self, AppState};
use crate::providers::Providers;

/// How long a stopping node waits for its generations to hand over.
const HANDOFF_DEADLINE: Duration = Duration::from_secs(3);
/// With a durable store, how long after Redis lost its data a conversation no
/// node has rebuilt answers `unavailable` before it is restored from the store.
const REBUILD_WINDOW_WITH_STORE: Duration = Duration::from_secs(3);
/// How long a stopping node waits for its last changes to reach the store.
const PERSIST_DEADLINE: Duration = Duration::from_secs(3);
/// How long a stopping node waits for its connections to close.
const SERVER_DEADLINE: Duration = Duration::from_secs(5);
/// How often a node evaluates its readiness for `chatstream_ready` (so the
/// gauge is current when nobody calls `/readyz`) and drains the recorder's
/// histogram samples (held until then, as no exporter task does it).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// A running node.
pub struct Node {
    /// The address the server listens on (useful when bound to port 0).
    pub addr: SocketAddr,
    pub state: web::Data<AppState>,
    server: ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    metrics_upkeep: JoinHandle<()>,
}

impl Node {
    /// Starts a node with the engine its settings choose.
    pub async fn start(mut settings: Settings) -> anyhow::Result<Node> {
        settings.check()?;
        let node_id = settings.node_id.get_or_insert_with(random_node_id).clone();
        let store_url = store_url(&settings);
        let limits = Limits {
            max_messages_per_conversation: settings.max_messages_per_conversation,
            max_generations_per_user: settings.max_generations_per_user,
        };
        let engine: Arc<dyn Engine> = match redis_target(&settings)? {
            None => Arc::new(MemoryEngine::with_limits(settings.history_size, limits)),
            Some(target) => {
                let mut options = RedisOptions::new(
                    settings.history_size,
                    Duration::from_secs(settings.conversation_ttl_secs),
                );
                options.limits = limits;
                if store_url.is_some() {
                    // Nodes rebuild what they hold within a second of a
                    // loss (the fence); after that, the store restores the
                    // rest rather than have clients wait.
                    options.rebuild_window = REBUILD_WINDOW_WITH_STORE;
                }
                let shown: Vec<String> = target.urls.iter().map(|u| without_password(u)).collect();
                Arc::new(
                    RedisEngine::connect_to(&target, &node_id, options)
                        .await
                        .with_context(|| format!("connecting to Redis at {}", shown.join(",")))?,
                )
            }
        };
        let providers = default_providers(&settings)?;
        let Some(url) = store_url else {
            if crate::actors::exporter::kafka::ExportConfig::from_settings(&settings)?.is_some() {
                anyhow::bail!(
                    "KAFKA_BROKERS needs a durable store (DATABASE_URL, or DATA_DIR without Redis): events leave through its outbox"
                );
            }
            tracing::warn!(
                "DATABASE_URL is not set: running without a durable store; conversations live only in Redis"
            );
            return Node::start_with(settings, engine, None, providers).await;
        };
        // Events go to the outbox only on a node that exports them: a node
        // without KAFKA_BROKERS writes none (docs/events.md).
        let outbox =
            crate::actors::exporter::kafka::ExportConfig::from_settings(&settings)?.map(|_| {
                crate::store::OutboxOptions {
                    include_text: settings.kafka_include_text,
                }
            });
        let store = crate::store::connect_with(&url, outbox)
            .await
            .with_context(|| format!("opening the durable store at {}", without_password(&url)))?;
        let (durable, journal) = DurableEngine::new(engine.clone(), store.clone());
        let durable = Arc::new(durable);
        let persistence = Arc::new(Persistence {
            store,
            engine,
            journal: Mutex::new(Some(journal)),
        });
        let node =
            Node::start_with(settings, durable.clone(), Some(persistence), providers).await?;
        match durable.resume_streaming().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(conversations = n, "resuming replies that were streaming"),
            Err(error) => tracing::warn!(%error, "could not look for replies to resume"),
        }
        Ok(node)
    }

    /// Starts a node on the given engine (with its durable store, if any)
    /// and models.
    pub async fn start_with(
        settings: Settings,
        engine: Arc<dyn Engine>,
        persistence: Option<Arc<Persistence>>,
        providers: Providers,
    ) -> anyhow::Result<Node> {
        let node_id = settings.node_id.clone().unwrap_or_else(random_node_id);
        let crate::secrets::Secrets {
            auth_secret,
            admin_token,
        } = crate::secrets::Secrets::resolve(&settings)?;
        // Checked before anything starts, so that a misconfiguration stops
        // the node with a message naming the variable.
        let auth = Auth::from_settings(&settings, auth_secret.as_bytes())?;
        let trusted_proxies = http::peer::TrustedProxies::parse(&settings.trusted_proxies)?;
        let allowed_origins = http::peer::AllowedOrigins::parse(&settings.allowed_origins)?;
        let context = Arc::new(NodeContext {
            node_id: node_id.clone(),
            providers,
            engine,
            directory: ActorDirectory::default(),
            settings: settings.clone(),
            persistence,
        });
        let (root, _) = Actor::spawn(None, NodeSupervisor, context.clone())
            .await
            .context("starting the actor tree")?;
        let actors: NodeActors = ractor::call_t!(
            root,
            NodeMsg::Actors,
            crate::actors::CALL_TIMEOUT.as_millis() as u64
        )
        .context("reading the actor tree")?;
        let state = web::Data::new(AppState {
            auth,
            admin_token: http::admin::AdminToken::new(&admin_token),
            trusted_proxies,
            allowed_origins,
            limits: {
                let limits = http::limits::RequestLimits::new(&settings);
                limits.spawn_forgetting();
                limits
            },
            chat: Chat::new(context.clone(), actors.generations.clone()),
            actors,
            context,
            metrics: metrics_handle(),
            draining: AtomicBool::new(false),
        });
        let app_state = state.clone();
        let static_dir = settings.frontend_dir();
        if let Some(dir) = &static_dir {
            tracing::info!(dir = %dir.display(), "serving the built frontend");
        }
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    http::headers::security_headers,
                ))
                .app_data(app_state.clone())
                .configure(|config| http::routes(config, static_dir.as_deref()))
        })
        // Tokens are small frames sent as they come: without TCP_NODELAY,
        // Nagle's algorithm holds one back until the previous is acknowledged.
        .tcp_nodelay(true)
        .workers(settings.http_workers.max(1))
        .disable_signals()
        .shutdown_timeout(5)
        .bind(&settings.bind)
        .with_context(|| format!("binding {}", settings.bind))?;
        let addr = *server.addrs().first().context("no bound address")?;
        let server = server.run();
        let handle = server.handle();
        let server_task = tokio::spawn(server);
        let metrics_upkeep = spawn_metrics_upkeep(state.clone());
        tracing::info!(%node_id, %addr, engine = state.context.engine.name(), "node started");
        Ok(Node {
            addr,
            state,
            server: handle,
            server_task,
            metrics_upkeep,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.state.context.node_id
    }

    /// Stops the node gracefully: readiness turns 503 so the balancer moves
    /// away, every reply generated here is handed over to the other nodes
    /// (pending text published, lease released, so one adopts it at once),
    /// every socket is closed with `close_code` (1012 restarting, 1001 going
    /// away) so clients resume elsewhere, then the server and the actor tree
    /// stop. Bounded: each step has a deadline.
    pub async fn stop(self, close_code: u16) {
        let actors = &self.state.actors;
        self.state.draining.store(true, Ordering::Relaxed);
        // Stopped before the gauge is set, so that an evaluation begun
        // before the drain cannot set it back to 1.
        self.metrics_upkeep.abort();
        let _ = self.metrics_upkeep.await;
        metrics::gauge!(http::admin::READY).set(0.0);
        if let Ok(generations) = ractor::call_t!(
            actors.generations,
            GenerationsMsg::Handoff,
            crate::actors::CALL_TIMEOUT.as_millis() as u64
        ) {
            for generation in generations {
                let _ = generation.wait(Some(HANDOFF_DEADLINE)).await;
            }
        }
        let _ = actors
            .connections
            .cast(ConnectionsMsg::CloseAll { code: close_code });
        // The Persister now running: it may have been restarted since start.
        let persister = ractor::call_t!(
            actors.root,
            NodeMsg::Actors,
            crate::actors::CALL_TIMEOUT.as_millis() as u64
        )
        .ok()
        .and_then(|current| current.persister);
        if let Some(persister) = &persister {
            let drained = persister
                .call(PersisterMsg::Drain, Some(PERSIST_DEADLINE))
                .await;
            if !matches!(drained, Ok(ractor::rpc::CallResult::Success(true))) {
                tracing::warn!("stopping before every change reached the durable store");
            }
        }
        let _ = tokio::time::timeout(SERVER_DEADLINE, self.server.stop(true)).await;
        self.server_task.abort();
        let _ = ractor::call_t!(
            actors.root,
            NodeMsg::Stopping,
            crate::actors::CALL_TIMEOUT.as_millis() as u64
        );
        actors
            .root
            .stop_children_and_wait(None, Some(Duration::from_secs(2)))
            .await;
        actors.root.stop(None);
    }

    /// Runs until SIGTERM (a restart: sockets close with 1012) or SIGINT
    /// (sockets close with 1001), then stops gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let code = wait_for_signal().await;
        let started = std::time::Instant::now();
        tracing::info!(close_code = code, "stopping");
        self.stop(code).await;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
        Ok(())
    }
}

/// The demo model, plus the models the configuration adds (`AI_SERVICE_URLS`,
/// `MODELS_CONFIG`), with API keys from the environment.
pub fn default_providers(settings: &Settings) -> anyhow::Result<Providers> {
    crate::providers::catalog::providers(settings, &|name| std::env::var(name).ok())
}

/// The durable store a node keeps history in: `DATABASE_URL`, else SQLite in
/// `DATA_DIR` for the embedded node; none for a Redis node without one.
fn store_url(settings: &Settings) -> Option<String> {
    match (&settings.database_url, settings.uses_redis()) {
        (Some(url), _) => Some(url.clone()),
        (None, false) => Some(format!(
            "sqlite://{}",
            settings.data_dir.join("chatstream.db").display()
        )),
        (None, true) => None,
    }
}

/// The Redis a node shares with others (`REDIS_URL`, or a cluster's
/// `REDIS_CLUSTER_NODES`), with the TLS files it trusts and presents; none
/// for the embedded engine.
fn redis_target(settings: &Settings) -> anyhow::Result<Option<RedisTarget>> {
    let mut target = match (&settings.redis_url, settings.redis_cluster_nodes.as_slice()) {
        (None, []) => return Ok(None),
        (Some(_), [_, ..]) => anyhow::bail!(
            "REDIS_URL and REDIS_CLUSTER_NODES are both set: set REDIS_URL for one Redis server, or REDIS_CLUSTER_NODES for a Redis Cluster"
        ),
        (Some(url), []) => RedisTarget::single(url),
        (None, seeds) => RedisTarget::cluster(seeds),
    };
    let read = |variable: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {variable} ({})", path.display()))
    };
    if let Some(path) = &settings.redis_tls_ca_file {
        target.tls_ca = Some(read("REDIS_TLS_CA_FILE", path)?);
    }
    if let (Some(cert), Some(key)) = (&settings.redis_tls_cert_file, &settings.redis_tls_key_file) {
        target.tls_client = Some((
            read("REDIS_TLS_CERT_FILE", cert)?,
            read("REDIS_TLS_KEY_FILE", key)?,
        ));
    }
    Ok(Some(target))
}

/// A database or Redis URL fit for logs: any credentials are masked.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn random_node_id() -> String {
    format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// Recorded by the Redis engine around each call of its script, by `op`.
const REDIS_SCRIPT: &str = "chatstream_redis_script_seconds";

/// Buckets (seconds) of the time to first token: a few milliseconds for the
/// demo model, seconds for a large model with a long prompt.
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets (seconds) of the time between tokens: half a millisecond for
/// tokens that come together, up to a model that stalls.
const TOKEN_GAP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets (seconds) of one call to the log store: tens of microseconds in
/// memory, a round trip to Redis, up to a store that does not answer.
const STORE_CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Buckets (seconds) of a whole request to a model: a short reply to a
/// long one from a slow model.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every histogram the node records, with its buckets.
const HISTOGRAMS: &[(&str, &[f64])] = &[
    (TIME_TO_FIRST_TOKEN, FIRST_TOKEN_BUCKETS),
    (TIME_BETWEEN_TOKENS, TOKEN_GAP_BUCKETS),
    (APPEND, STORE_CALL_BUCKETS),
    (REDIS_SCRIPT, STORE_CALL_BUCKETS),
    (UPSTREAM_DURATION, UPSTREAM_BUCKETS),
];

/// The recorder's configuration: the latencies are exported as Prometheus
/// histograms (cumulative buckets that sum over nodes), not as the
/// per-process summaries the exporter renders by default.
fn prometheus_builder() -> PrometheusBuilder {
    HISTOGRAMS
        .iter()
        .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
            builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                .expect("every bucket list has buckets")
        })
}

/// The process-wide Prometheus recorder (metrics are global; several nodes in
/// one test process share it).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = prometheus_builder()
                .install_recorder()
                .unwrap_or_else(|_| prometheus_builder().build_recorder().handle());
            describe_metrics();
            handle
        })
        .clone()
}

/// The help lines and units `/metrics` shows.
fn describe_metrics() {
    metrics::describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "From the start of a fresh reply to its first text in the log"
    );
    metrics::describe_histogram!(
        TIME_BETWEEN_TOKENS,
        Unit::Seconds,
        "Between two successive text appends of one reply"
    );
    metrics::describe_histogram!(
        APPEND,
        Unit::Seconds,
        "One engine call appending a reply's text or its ending"
    );
    metrics::describe_histogram!(
        REDIS_SCRIPT,
        Unit::Seconds,
        "One call of the Redis engine's script"
    );
    metrics::describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "One request to a model, from sending it to its end"
    );
    metrics::describe_gauge!(
        http::admin::READY,
        "1 while the node's /readyz answers 200, else 0"
    );
}

/// Keeps `chatstream_ready` current and the recorder's memory bounded, every
/// `METRICS_UPKEEP`, until the node stops.
fn spawn_metrics_upkeep(state: web::Data<AppState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(METRICS_UPKEEP);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            state.metrics.run_upkeep();
            http::admin::readiness(&state).await;
        }
    })
}

/// Waits for SIGTERM or SIGINT and answers the close code it calls for.
async fn wait_for_signal() -> u16 {
    use crate::protocol::close_code::{GOING_AWAY, RESTART};
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => GOING_AWAY,
            _ = term.recv() => RESTART,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        let _ = RESTART;
        GOING_AWAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_latency_is_a_histogram_with_its_buckets() {
        let recorder = prometheus_builder().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            for (name, _) in HISTOGRAMS {
                metrics::histogram!(*name).record(0.003);
            }
        });
        let text = recorder.handle().render();
        for (name, buckets) in HISTOGRAMS {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name} is a histogram:\n{text}"
            );
            let bucket = format!("{name}_bucket{{le=\"");
            let bounds: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix(bucket.as_str()))
                .map(|rest| rest.split('"').next().unwrap())
                .collect();
            let (last, finite) = bounds.split_last().expect("buckets");
            assert_eq!(*last, "+Inf", "{name}");
            let finite: Vec<f64> = finite.iter().map(|b| b.parse().unwrap()).collect();
            assert_eq!(&finite, buckets, "{name}");
            assert!(
                text.contains(&format!("{name}_count 1\n")),
                "{name}:\n{text}"
            );
        }
    }
}
