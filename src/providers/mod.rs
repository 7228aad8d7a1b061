//! Model providers: where reply text comes from.
//!
//! A provider turns a conversation into a stream of text pieces. The generation
//! actor drives the stream and drops it to stop the upstream at once, so a
//! provider must stop all work when its stream is dropped.

pub mod catalog;
pub mod demo;
pub mod openai;
pub mod pool;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::BoxStream;

use crate::protocol::{Role, Usage};

pub use demo::DemoProvider;

/// One message of the history a provider is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    pub role: Role,
    pub content: String,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub model: String,
    /// The conversation before the reply, oldest first.
    pub history: Vec<ChatTurn>,
    /// Reply text already published by an earlier attempt: the provider
    /// continues after it and never repeats it.
    pub continue_from: String,
}

/// One item of a provider's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Text(String),
    Finished {
        finish_reason: String,
        usage: Option<Usage>,
    },
}

/// Why a provider could not produce (the rest of) a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

pub type CompletionStream = BoxStream<'static, Result<Completion, ProviderError>>;

/// A source of replies for one or more models.
pub trait Provider: Send + Sync + 'static {
    /// The provider's kind, as `GET /api/models` lists it.
    fn kind(&self) -> &'static str;

    /// Whether a reply interrupted after its first token can be continued
    /// from the text already published.
    fn can_continue(&self) -> bool;

    /// Starts generating. Dropping the stream stops the work.
    fn complete(&self, request: CompletionRequest) -> CompletionStream;
}

/// The models this node serves, by id.
#[derive(Clone)]
pub struct Providers {
    models: BTreeMap<String, Arc<dyn Provider>>,
    default_model: String,
}

impl Providers {
    pub fn new(default_model: impl Into<String>) -> Providers {
        Providers {
            models: BTreeMap::new(),
            default_model: default_model.into(),
        }
    }

    pub fn with(mut self, model: impl Into<String>, provider: Arc<dyn Provider>) -> Providers {
        self.models.insert(model.into(), provider);
        self
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    pub fn get(&self, model: &str) -> Option<&Arc<dyn Provider>> {
        self.models.get(model)
    }

    /// (model id, provider kind) of every model, sorted by id.
    pub fn list(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.models.iter().map(|(id, p)| (id.as_str(), p.kind()))
    }
}
