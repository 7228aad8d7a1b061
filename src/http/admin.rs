//! Operator endpoints: liveness, readiness, metrics and the live actor list.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{AppState, HttpError, bearer};
use crate::actors::supervisor::NODE_ACTORS;
use crate::protocol::{ApiError, ErrorCode};

/// How long readiness waits for the log store before calling it down.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(config: &mut web::ServiceConfig) {
    let resource = |path| web::resource(path).default_service(web::to(super::not_found));
    config
        .service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(resource("/admin/actors").route(web::get().to(actors)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Whether the node is ready (`chatstream_ready`), kept by every readiness
/// evaluation: `/readyz`'s and the node's periodic one. Process-wide, like
/// every metric: nodes sharing a process (tests) share it.
pub const READY: &str = "chatstream_ready";

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let Readiness { ready, body } = readiness(&state).await;
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// What `/readyz` answers: whether the node can serve, and why.
pub struct Readiness {
    pub ready: bool,
    pub body: serde_json::Value,
}

/// Evaluates readiness and sets `chatstream_ready` to match.
pub async fn readiness(state: &AppState) -> Readiness {
    let engine = &state.context.engine;
    let engine_up = async {
        matches!(
            tokio::time::timeout(READINESS_TIMEOUT, engine.ping()).await,
            Ok(Ok(()))
        )
    };
    let store_up = async {
        match state.context.store() {
            Some(store) => Some(matches!(
                tokio::time::timeout(READINESS_TIMEOUT, store.ping()).await,
                Ok(Ok(()))
            )),
            None => None,
        }
    };
    let (engine_up, store_up) = tokio::join!(engine_up, store_up);
    let state_name = |up: bool| if up { "up" } else { "down" };
    // The durable store is reported but readiness does not follow it: a
    // store outage must not stop streaming (the persister catches up when it
    // returns), and every node shares it, so a 503 would empty the balancer.
    let store = match (state.context.store(), store_up) {
        (Some(store), Some(up)) => json!({ store.name(): state_name(up) }),
        _ => json!({}),
    };
    // A stopping node answers 503 from the moment it starts draining, so
    // that balancers stop sending it new connections.
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    // A node-level actor that died and was not (or could not be) restarted
    // leaves the node unable to serve: out of the balancer with it.
    let live: std::collections::HashSet<String> = state
        .context
        .directory
        .list()
        .into_iter()
        .filter_map(|record| record.key)
        .collect();
    let persister = state.context.persistence.as_ref().map(|_| "persister");
    let actors: serde_json::Map<String, serde_json::Value> = NODE_ACTORS
        .into_iter()
        .chain(persister)
        .map(|name| (name.to_owned(), json!(state_name(live.contains(name)))))
        .collect();
    let actors_up = actors.values().all(|up| up == "up");
    let ready = engine_up && actors_up && !draining;
    let body = json!({
        "ready": ready,
        "draining": draining,
        "dependencies": { engine.name(): state_name(engine_up) },
        "actors": actors,
        "store": store,
    });
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    Readiness { ready, body }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

#[derive(Deserialize)]
struct ActorsQuery {
    #[serde(default)]
    scope: Option<String>,
}

async fn actors(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ActorsQuery>,
) -> Result<HttpResponse, HttpError> {
    match bearer(&request) {
        None => return Err(ApiError::new(ErrorCode::Unauthorized, "missing bearer token").into()),
        Some(token) if !state.admin_token.matches(token) => {
            return Err(ApiError::new(ErrorCode::Forbidden, "not the admin token").into());
        }
        Some(_) => {}
    }
    let node_id = &state.context.node_id;
    let actors = state.context.directory.list();
    match query.scope.as_deref() {
        None | Some("node") => {
            Ok(HttpResponse::Ok().json(json!({"node_id": node_id, "actors": actors})))
        }
        Some("cluster") => {
            let announced = state
                .context
                .engine
                .nodes()
                .await
                .map_err(|e| e.into_api("cluster"))?;
            // This node answers with its live list rather than its last announcement.
            let mut nodes = vec![json!({"node_id": node_id, "actors": actors})];
            nodes.extend(
                announced
                    .into_iter()
                    .filter(|n| &n.node_id != node_id)
                    .map(|n| json!({"node_id": n.node_id, "actors": n.actors})),
            );
            Ok(HttpResponse::Ok().json(json!({"node_id": node_id, "nodes": nodes})))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown scope {other:?}; use node or cluster"
        ))
        .into()),
    }
}

/// The bearer token of `/admin/*`, kept as its SHA-256 digest. A presented
/// token is hashed and the two digests compared in constant time: the time
/// taken depends neither on where they differ nor on the secret's length
/// (hashing costs time in the length of what the caller sent, which the
/// caller knows already).
pub struct AdminToken {
    digest: [u8; 32],
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the admin token.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_matches() {
        let token = AdminToken::new("the-admin-token-of-at-least-32-bytes");
        assert!(token.matches("the-admin-token-of-at-least-32-bytes"));
        for other in [
            "",
            "the-admin-token-of-at-least-32-byte",
            "the-admin-token-of-at-least-32-bytess",
            "The-admin-token-of-at-least-32-bytes",
        ] {
            assert!(!token.matches(other), "{other:?}");
        }
    }
}
