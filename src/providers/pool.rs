//! Upstream pools: the servers that serve one model, and which of them to ask.
//!
//! Requests go round-robin to the usable upstreams. An upstream stops being
//! usable in three ways, the way LiteLLM's router does it:
//!
//! - **down**: a connection to it was refused, or the active health check
//!   (`GET {base}/models` every `health_interval`, in a background task the
//!   pool owns) found it not answering; only a later successful health check
//!   brings it back, so a dead server is skipped rather than retried;
//! - **cooling down**: it answered 429, or failed `allowed_failures` times in
//!   a row; it is skipped for `cooldown` (or the 429's `Retry-After`), then
//!   one more failure puts it back at once (a half-open breaker). When every
//!   live upstream is cooling down they are used anyway: a pool of one must
//!   not refuse all work for a transient error;
//! - **full**: `max_concurrent` requests are in flight; a request then waits
//!   for the first free slot on any usable upstream, up to `queue_timeout`.
//!
//! A [`Lease`] is one request's slot on one upstream; the caller reports how
//! the request went through it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{join_all, select_all};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ProviderError;

/// One server of a model, as configured.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// How logs, metrics and errors name it (its base URL unless configured).
    pub name: String,
    /// The OpenAI-compatible API root, e.g. `http://localhost:11434/v1`,
    /// without a trailing slash.
    pub base_url: String,
    /// The model's name on this server.
    pub model: String,
    pub api_key: Option<String>,
    /// Whether the server continues a trailing assistant message (prefill),
    /// which is what resuming an interrupted reply needs.
    pub continue_prefill: bool,
    pub max_concurrent: usize,
    /// Extra body parameters of every request (`temperature`, `max_tokens`…).
    pub params: Map<String, Value>,
    /// Extra body parameters of continuation requests only (vLLM needs
    /// `continue_final_message`/`add_generation_prompt` there).
    pub continue_params: Map<String, Value>,
}

/// How a pool watches its upstreams.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub health_interval: Duration,
    pub cooldown: Duration,
    /// Failures in a row that put an upstream in cooldown.
    pub allowed_failures: u32,
    /// How long a request waits for a slot when every usable upstream is full.
    pub queue_timeout: Duration,
}

/// How a request through a [`Lease`] failed, as far as the pool cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made: down until a health check finds it back.
    Unreachable,
    /// 429: cool down at once, for `retry_after` when the server said.
    RateLimited { retry_after: Option<Duration> },
    /// Any other fault of the upstream: an error answer, a timeout, a broken
    /// or malformed stream.
    Failed,
    /// The request itself was refused (400, 413, 422): no fault of the
    /// upstream, and no other upstream would take it either.
    Rejected,
}

/// A cooldown never lasts longer than this, whatever `Retry-After` says.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// The upstreams of one model.
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
    health_task: JoinHandle<()>,
}

struct PoolInner {
    model: String,
    upstreams: Vec<Upstream>,
    settings: PoolSettings,
    /// Round-robin position.
    next: AtomicUsize,
}

struct Upstream {
    settings: UpstreamSettings,
    slots: Arc<Semaphore>,
    health: Mutex<Health>,
}

#[derive(Debug)]
struct Health {
    alive: bool,
    failures: u32,
    cooldown_until: Option<Instant>,
}

/// An upstream's state, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStatus {
    pub name: String,
    pub alive: bool,
    pub cooling_down: bool,
    pub in_flight: usize,
}

impl UpstreamPool {
    /// Builds the pool and starts its health checks, which end when the pool
    /// is dropped. Needs a tokio runtime.
    pub fn new(
        model: impl Into<String>,
        upstreams: Vec<UpstreamSettings>,
        settings: PoolSettings,
        client: reqwest::Client,
    ) -> UpstreamPool {
        let inner = Arc::new(PoolInner {
            model: model.into(),
            upstreams: upstreams
                .into_iter()
                .map(|settings| Upstream {
                    slots: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
                    settings,
                    // Usable from the start: the first health check runs at
                    // once, and a refused connection marks it down sooner.
                    health: Mutex::new(Health {
                        alive: true,
                        failures: 0,
                        cooldown_until: None,
                    }),
                })
                .collect(),
            settings,
            next: AtomicUsize::new(0),
        });
        let health_task = tokio::spawn(check_health(inner.clone(), client));
        UpstreamPool { inner, health_task }
    }

    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// Whether some upstream can continue an interrupted reply.
    pub fn can_continue(&self) -> bool {
        self.inner
            .upstreams
            .iter()
            .any(|u| u.settings.continue_prefill)
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        let now = Instant::now();
        self.inner
            .upstreams
            .iter()
            .map(|u| {
                let health = u.health();
                UpstreamStatus {
                    name: u.settings.name.clone(),
                    alive: health.alive,
                    cooling_down: health.cooling_down(now),
                    in_flight: u.settings.max_concurrent.max(1) - u.slots.available_permits(),
                }
            })
            .collect()
    }

    /// A slot on the next usable upstream, skipping the indices in `tried`
    /// and, when `continuing`, the upstreams that cannot continue a reply.
    pub async fn acquire(&self, continuing: bool, tried: &[usize]) -> Result<Lease, ProviderError> {
        let inner = &self.inner;
        let count = inner.upstreams.len();
        let start = inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (mut ready, mut cooling) = (Vec::new(), Vec::new());
        for i in (0..count).map(|k| (start + k) % count) {
            let upstream = &inner.upstreams[i];
            if tried.contains(&i) || (continuing && !upstream.settings.continue_prefill) {
                continue;
            }
            let health = upstream.health();
            if !health.alive {
                continue;
            }
            if health.cooling_down(now) {
                cooling.push(i);
            } else {
                ready.push(i);
            }
        }
        let candidates = if ready.is_empty() { cooling } else { ready };
        if candidates.is_empty() {
            return Err(self.none_usable(continuing));
        }
        for &i in &candidates {
            if let Ok(slot) = inner.upstreams[i].slots.clone().try_acquire_owned() {
                return Ok(Lease::new(inner.clone(), i, slot));
            }
        }
        // Every candidate is full: take the first slot that frees up.
        let waits = candidates.iter().map(|&i| {
            let slots = inner.upstreams[i].slots.clone();
            async move { (i, slots.acquire_owned().await) }.boxed()
        });
        match tokio::time::timeout(inner.settings.queue_timeout, select_all(waits)).await {
            Ok(((i, Ok(slot)), _, _)) => Ok(Lease::new(inner.clone(), i, slot)),
            // The semaphores are never closed; a timeout is the only real case.
            Ok(((_, Err(_)), _, _)) | Err(_) => Err(ProviderError {
                message: format!(
                    "every upstream of model {:?} is at its concurrency limit",
                    inner.model
                ),
                retryable: true,
            }),
        }
    }

    fn none_usable(&self, continuing: bool) -> ProviderError {
        let model = &self.inner.model;
        if continuing && !self.can_continue() {
            return ProviderError {
                message: format!(
                    "no upstream of model {model:?} can continue an interrupted reply"
                ),
                retryable: false,
            };
        }
        ProviderError {
            message: format!("no upstream of model {model:?} is reachable"),
            retryable: true,
        }
    }
}

impl Drop for UpstreamPool {
    fn drop(&mut self) {
        self.health_task.abort();
    }
}

impl Upstream {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().expect("health lock")
    }
}

impl Health {
    fn cooling_down(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|until| now < until)
    }
}

/// One request's slot on one upstream; the slot frees when it is dropped.
pub struct Lease {
    pool: Arc<PoolInner>,
    index: usize,
    _slot: OwnedSemaphorePermit,
}

impl Lease {
    fn new(pool: Arc<PoolInner>, index: usize, slot: OwnedSemaphorePermit) -> Lease {
        let lease = Lease {
            pool,
            index,
            _slot: slot,
        };
        let labels = lease.labels();
        metrics::counter!("chatstream_upstream_requests_total", &labels).increment(1);
        metrics::gauge!("chatstream_upstream_in_flight", &labels).increment(1.0);
        lease
    }

    /// The upstream's position in the pool (what `acquire` skips when tried).
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn upstream(&self) -> &UpstreamSettings {
        &self.pool.upstreams[self.index].settings
    }

    /// The upstream answered: its run of failures ends.
    pub fn succeeded(&self) {
        self.pool.upstreams[self.index].health().failures = 0;
    }

    pub fn failed(&self, failure: Failure) {
        let upstream = &self.pool.upstreams[self.index];
        let settings = &self.pool.settings;
        let now = Instant::now();
        let mut health = upstream.health();
        let cooldown = match failure {
            Failure::Rejected => return,
            Failure::Unreachable => {
                if health.alive {
                    tracing::warn!(model = %self.pool.model, upstream = %upstream.settings.name, "upstream unreachable: skipped until a health check finds it back");
                }
                health.alive = false;
                metrics::gauge!("chatstream_upstream_healthy", &self.labels()).set(0.0);
                None
            }
            Failure::RateLimited { retry_after } => {
                Some(retry_after.unwrap_or(settings.cooldown).min(MAX_COOLDOWN))
            }
            Failure::Failed => {
                health.failures += 1;
                (health.failures >= settings.allowed_failures.max(1)).then_some(settings.cooldown)
            }
        };
        let kind = match failure {
            Failure::Unreachable => "unreachable",
            Failure::RateLimited { .. } => "rate_limited",
            _ => "failed",
        };
        let mut labels = self.labels();
        labels.push(("kind", kind.to_owned()));
        metrics::counter!("chatstream_upstream_failures_total", &labels).increment(1);
        if let Some(cooldown) = cooldown {
            tracing::warn!(model = %self.pool.model, upstream = %upstream.settings.name, ?cooldown, "upstream cooling down");
            metrics::counter!("chatstream_upstream_cooldowns_total", &self.labels()).increment(1);
            health.cooldown_until = Some(now + cooldown);
        }
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        upstream_labels(&self.pool.model, &self.pool.upstreams[self.index].settings)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        metrics::gauge!("chatstream_upstream_in_flight", &self.labels()).decrement(1.0);
    }
}

fn upstream_labels(model: &str, upstream: &UpstreamSettings) -> Vec<(&'static str, String)> {
    vec![
        ("model", model.to_owned()),
        ("upstream", upstream.name.clone()),
    ]
}

/// The active health checks: every upstream, every `health_interval`.
async fn check_health(pool: Arc<PoolInner>, client: reqwest::Client) {
    let interval = pool.settings.health_interval.max(Duration::from_millis(10));
    // A check never outlives the next one, nor waits long on a hung server.
    let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        join_all(pool.upstreams.iter().map(|upstream| async {
            let alive = probe(&client, &upstream.settings, timeout).await;
            let was_alive = std::mem::replace(&mut upstream.health().alive, alive);
            let name = &upstream.settings.name;
            match (was_alive, alive) {
                (false, true) => tracing::info!(model = %pool.model, upstream = %name, "upstream healthy again"),
                (true, false) => tracing::warn!(model = %pool.model, upstream = %name, "upstream failed its health check"),
                _ => {}
            }
            // Set on every check, not only on changes, so that the gauge
            // exists as soon as a metrics recorder does.
            metrics::gauge!("chatstream_upstream_healthy", &upstream_labels(&pool.model, &upstream.settings))
                .set(if alive { 1.0 } else { 0.0 });
        }))
        .await;
    }
}

/// Whether the upstream answers `GET {base}/models`. Any answer below 500
/// counts: the server is up, and a refused key shows in requests instead.
async fn probe(client: &reqwest::Client, upstream: &UpstreamSettings, timeout: Duration) -> bool {
    let mut request = client
        .get(format!("{}/models", upstream.base_url))
        .timeout(timeout);
    if let Some(key) = &upstream.api_key {
        request = request.bearer_auth(key);
    }
    matches!(request.send().await, Ok(response) if !response.status().is_server_error())
}
