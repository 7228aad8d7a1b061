//! The actor tree of one node.
//!
//! ```text
//! NodeSupervisor                     supervisor.rs
//! ├── Registry                       registry.rs
//! ├── Connections                    connections/mod.rs
//! │   └── Connection{connection_id}  connections/connection.rs
//! ├── Conversations                  conversations/mod.rs
//! │   └── Conversation{id}           conversations/conversation.rs
//! ├── Generations                    generations/mod.rs
//! │   └── Generation{message_id}     generations/generation.rs
//! ├── Failover                       failover.rs
//! ├── Persister                      persister.rs (with a durable store)
//! └── Exporter                       exporter/ (with KAFKA_BROKERS)
//! ```
//!
//! Actors are spawned only by their supervisors, on the main runtime. The
//! operations every transport shares (send, cancel, delete) are in `chat.rs`.

pub mod chat;
pub mod connections;
pub mod conversations;
pub mod directory;
pub mod exporter;
pub mod failover;
pub mod generations;
pub mod persister;
pub mod registry;
pub mod supervisor;

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Engine;
use crate::providers::Providers;
use crate::store::Store;
use directory::ActorDirectory;
use persister::Persistence;

/// What every actor of a node shares.
pub struct NodeContext {
    pub node_id: String,
    pub settings: Settings,
    pub engine: Arc<dyn Engine>,
    pub providers: Providers,
    pub directory: ActorDirectory,
    /// The durable store and its persister's journal, when the node has one.
    pub persistence: Option<Arc<Persistence>>,
}

impl NodeContext {
    /// The durable store, when the node has one.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.persistence.as_ref().map(|p| &p.store)
    }
}

/// The longest any actor waits for another's answer: a stuck or dead actor
/// then costs its caller an `unavailable`, never a hung request or mailbox.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A frame serialized once and shared by every socket it goes to.
pub type Frame = bytestring::ByteString;
