//! `chatstream ai-worker`: the demo model served over the OpenAI-compatible
//! chat-completions API, so that a deployment (and the tests) can run
//! separate AI service nodes, as the seed did, and point `AI_SERVICE_URLS`
//! at them.
//!
//! - `POST /v1/chat/completions`, streamed (SSE, with the usage chunk when
//!   `stream_options.include_usage` asks) or not. A trailing assistant
//!   message is a prefill: the reply continues after it, which is how a
//!   node resumes a reply another worker was serving when it died.
//! - `GET /v1/models`, which the nodes' health checks call.
//! - `GET /health`: liveness, with the requests served and in flight.
//!
//! The reply is [`DemoProvider`]'s, a pure function of the conversation, so
//! every worker with the same settings gives the same one. A client that
//! disconnects drops the response stream, which stops the generation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::protocol::Role;
use crate::providers::openai::wire::{
    ChatChunk, ChatCompletion, ChatMessage, ChatRequest, ChunkChoice, CompletionChoice, Delta,
    ErrorBody, ModelCard, ModelList, WireError, WireUsage,
};
use crate::providers::{ChatTurn, Completion, CompletionRequest, DemoProvider, Provider};

#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    /// Address the worker listens on.
    #[arg(long, env = "AI_WORKER_BIND", default_value = "127.0.0.1:8090")]
    pub bind: String,

    /// The model id it serves (requests naming another get 404).
    #[arg(long, env = "AI_WORKER_MODEL", default_value = "demo")]
    pub model: String,

    /// Pause of the demo model before each token, in milliseconds.
    #[arg(long, env = "DEMO_TOKEN_DELAY_MS", default_value_t = 40)]
    pub demo_token_delay_ms: u64,

    /// Tokens in each demo reply.
    #[arg(long, env = "DEMO_REPLY_TOKENS", default_value_t = 120)]
    pub demo_reply_tokens: usize,

    /// HTTP worker threads.
    #[arg(long, env = "AI_WORKER_HTTP_WORKERS", default_value_t = 2)]
    pub http_workers: usize,
}

/// A running worker.
pub struct AiWorker {
    /// The address it listens on (useful when bound to port 0).
    pub addr: SocketAddr,
    server: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

struct WorkerState {
    model: String,
    demo: DemoProvider,
    requests_total: AtomicU64,
    in_flight: AtomicUsize,
}

impl AiWorker {
    pub async fn start(settings: WorkerSettings) -> anyhow::Result<AiWorker> {
        let state = web::Data::new(WorkerState {
            model: settings.model.clone(),
            demo: DemoProvider::new(
                Duration::from_millis(settings.demo_token_delay_ms),
                settings.demo_reply_tokens,
            ),
            requests_total: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let server =
            HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .app_data(web::JsonConfig::default().limit(4 << 20).error_handler(
                        |error, _| {
                            let answer = openai_error(StatusCode::BAD_REQUEST, &error.to_string());
                            actix_web::error::InternalError::from_response(error, answer).into()
                        },
                    ))
                    .route("/v1/chat/completions", web::post().to(completions))
                    .route("/v1/models", web::get().to(models))
                    .route("/health", web::get().to(health))
            })
            .workers(settings.http_workers.max(1))
            .bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = *server.addrs().first().context("no bound address")?;
        let server = server.run();
        let handle = server.handle();
        Ok(AiWorker {
            addr,
            server: handle,
            task: tokio::spawn(server),
        })
    }

    /// Runs until the server stops (SIGINT or SIGTERM: actix handles them).
    pub async fn run(self) -> anyhow::Result<()> {
        self.task.await??;
        Ok(())
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
        let _ = self.task.await;
    }
}

/// Counts a request in flight for as long as its response lives.
struct InFlight(web::Data<WorkerState>);

impl InFlight {
    fn new(state: web::Data<WorkerState>) -> InFlight {
        state.requests_total.fetch_add(1, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn completions(state: web::Data<WorkerState>, body: web::Json<ChatRequest>) -> HttpResponse {
    let request = body.into_inner();
    if request.model != state.model {
        return openai_error(
            StatusCode::NOT_FOUND,
            &format!(
                "the model {:?} does not exist; this worker serves {:?}",
                request.model, state.model
            ),
        );
    }
    let completion = match completion_request(&request) {
        Ok(completion) => completion,
        Err(message) => return openai_error(StatusCode::BAD_REQUEST, &message),
    };
    let guard = InFlight::new(state.clone());
    let mut pieces = state.demo.complete(completion);
    // The first piece decides the status: a continuation that is not a
    // prefix of this model's reply is the client's error.
    let first = match pieces.next().await {
        Some(Ok(first)) => first,
        Some(Err(error)) => return openai_error(StatusCode::BAD_REQUEST, &error.message),
        None => {
            return openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the model produced nothing",
            );
        }
    };
    let pieces = stream::iter([Ok(first)]).chain(pieces);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp().max(0) as u64;
    if !request.stream {
        return match pieces.try_collect::<Vec<_>>().await {
            Ok(items) => {
                HttpResponse::Ok().json(whole_completion(&state.model, id, created, items))
            }
            Err(error) => openai_error(StatusCode::INTERNAL_SERVER_ERROR, &error.message),
        };
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let model = state.model.clone();
    let chunk = move |choices: Option<Vec<ChunkChoice>>, usage: Option<WireUsage>| ChatChunk {
        id: Some(id.clone()),
        object: Some("chat.completion.chunk".into()),
        created: Some(created),
        model: Some(model.clone()),
        choices,
        usage,
        error: None,
    };
    let role = chunk(Some(vec![choice(Some("assistant"), None, None)]), None);
    let events = pieces.flat_map(move |item| {
        let chunks = match item {
            Ok(Completion::Text(text)) => {
                vec![chunk(Some(vec![choice(None, Some(text), None)]), None)]
            }
            Ok(Completion::Finished {
                finish_reason,
                usage,
            }) => {
                let mut chunks = vec![chunk(
                    Some(vec![choice(None, None, Some(finish_reason))]),
                    None,
                )];
                if include_usage {
                    chunks.push(chunk(Some(Vec::new()), usage.map(wire_usage)));
                }
                chunks
            }
            Err(error) => vec![ChatChunk {
                error: Some(WireError {
                    message: error.message,
                    kind: Some("server_error".into()),
                    code: None,
                }),
                ..ChatChunk::default()
            }],
        };
        stream::iter(
            chunks
                .into_iter()
                .map(|c| sse_event(&serde_json::to_string(&c).expect("chunks serialize"))),
        )
    });
    let body = stream::iter([sse_event(
        &serde_json::to_string(&role).expect("chunks serialize"),
    )])
    .chain(events)
    .chain(stream::iter([sse_event("[DONE]")]))
    // The guard lives as long as the body: until the stream ends or the
    // client disconnects.
    .map(move |event| {
        let _ = &guard;
        Ok::<Bytes, actix_web::Error>(event)
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}

/// The demo's request: system messages dropped (the demo has no use for
/// them), a trailing assistant message taken as the text to continue.
fn completion_request(request: &ChatRequest) -> Result<CompletionRequest, String> {
    let mut history = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        let role = match message.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" | "developer" => continue,
            other => return Err(format!("messages with role {other:?} are not supported")),
        };
        history.push(ChatTurn {
            role,
            content: message.text(),
        });
    }
    let continue_from = match history.last() {
        Some(turn) if turn.role == Role::Assistant => {
            history.pop().map(|t| t.content).unwrap_or_default()
        }
        Some(_) => String::new(),
        None => return Err("messages must hold at least one user or assistant message".into()),
    };
    Ok(CompletionRequest {
        model: request.model.clone(),
        history,
        continue_from,
    })
}

fn whole_completion(
    model: &str,
    id: String,
    created: u64,
    items: Vec<Completion>,
) -> ChatCompletion {
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for item in items {
        match item {
            Completion::Text(piece) => text.push_str(&piece),
            Completion::Finished {
                finish_reason,
                usage: u,
            } => {
                finish = Some(finish_reason);
                usage = u.map(wire_usage);
            }
        }
    }
    ChatCompletion {
        id,
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![CompletionChoice {
            index: 0,
            message: ChatMessage::new("assistant", text),
            finish_reason: finish,
        }],
        usage,
    }
}

fn choice(
    role: Option<&str>,
    content: Option<String>,
    finish_reason: Option<String>,
) -> ChunkChoice {
    ChunkChoice {
        index: 0,
        delta: Some(Delta {
            role: role.map(str::to_owned),
            content,
        }),
        finish_reason,
    }
}

fn wire_usage(usage: crate::protocol::Usage) -> WireUsage {
    WireUsage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.prompt_tokens + usage.completion_tokens,
    }
}

fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn openai_error(status: StatusCode, message: &str) -> HttpResponse {
    let kind = if status.is_server_error() {
        "server_error"
    } else {
        "invalid_request_error"
    };
    HttpResponse::build(status).json(ErrorBody {
        error: WireError {
            message: message.to_owned(),
            kind: Some(kind.into()),
            code: (status == StatusCode::NOT_FOUND).then(|| json!("model_not_found")),
        },
    })
}

async fn models(state: web::Data<WorkerState>) -> HttpResponse {
    HttpResponse::Ok().json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: state.model.clone(),
            object: "model".into(),
            created: 0,
            owned_by: "chatstream".into(),
        }],
    })
}

async fn health(state: web::Data<WorkerState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "model": state.model,
        "requests_total": state.requests_total.load(Ordering::Relaxed),
        "in_flight": state.in_flight.load(Ordering::Relaxed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(messages: &[(&str, &str)]) -> ChatRequest {
        ChatRequest {
            model: "demo".into(),
            messages: messages
                .iter()
                .map(|(r, c)| ChatMessage::new(r, *c))
                .collect(),
            stream: true,
            stream_options: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn a_trailing_assistant_message_is_the_text_to_continue() {
        let plain = completion_request(&request(&[("system", "s"), ("user", "hi")])).unwrap();
        assert_eq!(plain.history.len(), 1);
        assert!(plain.continue_from.is_empty());
        let prefill =
            completion_request(&request(&[("user", "hi"), ("assistant", "Good q")])).unwrap();
        assert_eq!(prefill.history, plain.history);
        assert_eq!(prefill.continue_from, "Good q");
        assert!(completion_request(&request(&[("tool", "x")])).is_err());
        assert!(completion_request(&request(&[("system", "only")])).is_err());
    }
}
