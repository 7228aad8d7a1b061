//! The node's list of live actors, as `GET /admin/actors` shows it.
//!
//! Only supervisors write here: they add a child when they spawn it and remove
//! it when they learn it ended, which they do even when it was killed. So the
//! list never keeps an actor that is gone.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use ractor::{ActorCell, ActorId};
use serde::Serialize;

/// What an actor is, as the admin endpoint names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Supervisor,
    Registry,
    Connection,
    Conversation,
    Generation,
    /// Adopts replies whose node stopped (one per node).
    Failover,
    /// Writes conversations to the durable store (one per node that has one).
    Persister,
    /// Publishes the store's outbox of events to Kafka (one per node with
    /// `KAFKA_BROKERS`).
    Exporter,
}

/// One live actor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorRecord {
    pub id: String,
    pub kind: ActorKind,
    /// The connection, conversation or assistant message id it serves, or the
    /// supervisor's name.
    pub key: Option<String>,
    pub parent: Option<String>,
    pub started_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct ActorDirectory {
    actors: Mutex<HashMap<ActorId, ActorRecord>>,
}

impl ActorDirectory {
    pub fn add(
        &self,
        actor: &ActorCell,
        kind: ActorKind,
        key: impl ToString,
        parent: Option<&ActorCell>,
    ) {
        let record = ActorRecord {
            id: actor.get_id().to_string(),
            kind,
            key: Some(key.to_string()),
            parent: parent.map(|p| p.get_id().to_string()),
            started_at: Utc::now(),
        };
        self.lock().insert(actor.get_id(), record);
    }

    pub fn remove(&self, actor: &ActorCell) {
        self.lock().remove(&actor.get_id());
    }

    /// Every live actor, oldest first.
    pub fn list(&self) -> Vec<ActorRecord> {
        let mut list: Vec<_> = self.lock().values().cloned().collect();
        list.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        list
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, ActorRecord>> {
        self.actors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
