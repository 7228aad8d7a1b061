//! chatstream: streams AI chat replies token by token to many users at once.
//!
//! # Layout
//!
//! - [`protocol`]: the wire contract's types, shared by server, tests and tools.
//! - [`transcript`]: the fold of events into messages, and the log's rules;
//!   [`branches`]: the tree those messages form, its active path.
//! - [`engine`]: the event log, materialized state and live bus behind one
//!   trait; [`engine::MemoryEngine`] is the embedded default.
//! - [`providers`]: model providers behind the `Provider` trait; `demo` built
//!   in, OpenAI-compatible upstream pools configured.
//! - [`ai_worker`]: `chatstream ai-worker`, the demo model served over the
//!   OpenAI-compatible API.
//! - [`actors`]: the supervision tree of a node (registry, connections,
//!   conversations, generations).
//! - [`http`]: actix-web routes, the WebSocket endpoint, admin endpoints.
//! - [`node`]: assembles and runs one node; [`config`] its settings;
//!   [`secrets`] its `AUTH_SECRET` and `ADMIN_TOKEN`, checked or generated.
//! - [`loadgen`]: `chatstream load`, a load generator for a running node.
//! - [`telemetry`]: the logger (`LOG_FORMAT`) and the spans naming the node,
//!   connection, conversation or reply of a log line; [`healthcheck`]:
//!   `chatstream healthcheck`, a node's probe for container images.
//!
//! Imports point down that list's reverse: `http` → `actors` → `engine`,
//! `providers` → `protocol`.

pub mod actors;
pub mod ai_worker;
pub mod auth;
pub mod branches;
pub mod config;
pub mod engine;
pub mod healthcheck;
pub mod http;
pub mod loadgen;
pub mod node;
pub mod protocol;
pub mod providers;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod transcript;
