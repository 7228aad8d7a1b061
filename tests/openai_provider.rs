//! The OpenAI-compatible provider against in-process upstreams that speak
//! the real wire format: HTTP/1.1 with a chunked SSE body, written by hand on
//! a raw TCP socket so that a test controls every byte, can cut the
//! connection mid-stream, and sees when the client hangs up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatstream::config::Settings;
use chatstream::node::Node;
use chatstream::protocol::{Role, Usage};
use chatstream::providers::openai::{ModelSettings, OpenAiProvider, Timeouts};
use chatstream::providers::pool::{PoolSettings, UpstreamSettings};
use chatstream::providers::{ChatTurn, Completion, CompletionRequest, Provider, ProviderError};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long any single wait may take before the test fails.
mod common;

use common::Guest;

const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A scriptable upstream.

/// One thing the upstream does on a connection.
#[derive(Debug, Clone)]
enum Step {
    /// `200` with a chunked `text/event-stream` body.
    Head,
    /// One HTTP chunk of the body.
    Chunk(String),
    /// The text as many HTTP chunks of at most this many bytes (splitting
    /// lines, events and UTF-8 characters).
    Split(String, usize),
    /// The chunked body's terminator.
    End,
    /// Send nothing more; wait for the client to hang up.
    Hold,
    /// Close the connection with the body unfinished.
    Cut,
    /// A whole non-streamed answer: status, extra header lines, body.
    Answer(u16, &'static str, String),
}

type Script = Vec<Step>;

#[derive(Debug, Clone)]
struct Recorded {
    authorization: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Log {
    requests: Vec<Recorded>,
    disconnects: usize,
}

struct Shared {
    /// Scripts for the next completion requests, in order; then `fallback`.
    scripts: Mutex<VecDeque<Script>>,
    fallback: Mutex<Script>,
    healthy: AtomicBool,
    log: Mutex<Log>,
    changed: Notify,
}

struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Upstream {
    async fn start(fallback: Script) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            scripts: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(fallback),
            healthy: AtomicBool::new(true),
            log: Mutex::new(Log::default()),
            changed: Notify::new(),
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, shared.clone()));
                }
            }
        });
        Upstream {
            addr,
            shared,
            accept,
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn then(&self, script: Script) -> &Upstream {
        self.shared.scripts.lock().unwrap().push_back(script);
        self
    }

    fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().requests.clone()
    }

    fn hits(&self) -> usize {
        self.shared.log.lock().unwrap().requests.len()
    }

    /// Waits until `condition` holds on the log, or fails the test.
    async fn wait_for(&self, what: &str, condition: impl Fn(&Log) -> bool) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if condition(&self.shared.log.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("the upstream never saw {what}");
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    socket.set_nodelay(true).unwrap();
    let Some((request_line, headers, body)) = read_request(&mut socket).await else {
        return;
    };
    if request_line.starts_with("GET ") && request_line.contains("/models ") {
        let answer = if shared.healthy.load(Ordering::SeqCst) {
            Step::Answer(200, "", r#"{"object":"list","data":[]}"#.into())
        } else {
            Step::Answer(503, "", r#"{"error":{"message":"warming up"}}"#.into())
        };
        let _ = play(&mut socket, &shared, answer).await;
        return;
    }
    assert!(
        request_line.starts_with("POST /v1/chat/completions "),
        "unexpected request {request_line}"
    );
    let authorization = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone());
    shared.log.lock().unwrap().requests.push(Recorded {
        authorization,
        body: serde_json::from_slice(&body).expect("a JSON body"),
    });
    shared.changed.notify_waiters();
    let script = shared
        .scripts
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| shared.fallback.lock().unwrap().clone());
    for step in script {
        if play(&mut socket, &shared, step).await.is_err() {
            return;
        }
    }
}

/// Plays one step; an error ends the connection.
async fn play(socket: &mut TcpStream, shared: &Shared, step: Step) -> std::io::Result<()> {
    match step {
        Step::Head => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .await
        }
        Step::Chunk(text) => write_chunk(socket, text.as_bytes()).await,
        Step::Split(text, size) => {
            for piece in text.as_bytes().chunks(size) {
                write_chunk(socket, piece).await?;
            }
            Ok(())
        }
        Step::End => socket.write_all(b"0\r\n\r\n").await,
        Step::Hold => {
            let mut buffer = [0u8; 1024];
            while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
            shared.log.lock().unwrap().disconnects += 1;
            shared.changed.notify_waiters();
            Err(std::io::ErrorKind::ConnectionAborted.into())
        }
        Step::Cut => Err(std::io::ErrorKind::ConnectionAborted.into()),
        Step::Answer(status, extra_headers, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await
        }
    }
}

async fn write_chunk(socket: &mut TcpStream, piece: &[u8]) -> std::io::Result<()> {
    socket
        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
        .await?;
    socket.write_all(piece).await?;
    socket.write_all(b"\r\n").await?;
    socket.flush().await
}

type Headers = Vec<(String, String)>;

async fn read_request(socket: &mut TcpStream) -> Option<(String, Headers, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut piece = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&piece[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: Headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut piece).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&piece[..n]);
    }
    Some((request_line, headers, body))
}

// ---------------------------------------------------------------------------
// The SSE a server sends.

fn event(chunk: Value) -> String {
    format!("data: {chunk}\n\n")
}

fn role() -> String {
    event(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}),
    )
}

fn token(text: &str) -> String {
    event(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}),
    )
}

fn finish(reason: &str) -> String {
    event(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}),
    )
}

fn usage(prompt: u64, completion: u64) -> String {
    event(
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
        "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}),
    )
}

const DONE: &str = "data: [DONE]\n\n";

const REPLY: [&str; 3] = ["Hello", ", wor", "ld!"];

/// A complete, well-formed streamed reply: `Hello, world!`.
fn reply() -> Script {
    let mut script = vec![Step::Head, Step::Chunk(role())];
    script.extend(REPLY.iter().map(|t| Step::Chunk(token(t))));
    script.extend([
        Step::Chunk(finish("stop")),
        Step::Chunk(usage(7, 3)),
        Step::Chunk(DONE.into()),
        Step::End,
    ]);
    script
}

fn error_answer(status: u16, message: &str) -> Script {
    vec![Step::Answer(
        status,
        "",
        json!({"error": {"message": message, "type": "x"}}).to_string(),
    )]
}

// ---------------------------------------------------------------------------
// The provider under test.

struct Setup {
    pool: PoolSettings,
    model: ModelSettings,
    max_concurrent: usize,
}

fn provider(upstreams: &[(&Upstream, bool)], tune: impl FnOnce(&mut Setup)) -> OpenAiProvider {
    let urls: Vec<(String, bool)> = upstreams
        .iter()
        .map(|(u, prefill)| (u.base_url(), *prefill))
        .collect();
    provider_at(&urls, tune)
}

fn provider_at(upstreams: &[(String, bool)], tune: impl FnOnce(&mut Setup)) -> OpenAiProvider {
    let mut setup = Setup {
        pool: PoolSettings {
            // Once at the start, then out of the way unless a test wants it.
            health_interval: Duration::from_secs(3600),
            cooldown: Duration::from_secs(60),
            allowed_failures: 2,
            queue_timeout: DEADLINE,
        },
        model: ModelSettings {
            system_prompt: None,
            history_chars: 10_000,
            connect_timeout: Duration::from_secs(2),
            timeouts: Timeouts {
                first_token: Duration::from_secs(5),
                between_tokens: Duration::from_secs(5),
            },
        },
        max_concurrent: 4,
    };
    tune(&mut setup);
    let upstreams = upstreams
        .iter()
        .enumerate()
        .map(|(i, (base_url, continue_prefill))| UpstreamSettings {
            name: format!("u{i}"),
            base_url: base_url.clone(),
            model: "up-model".into(),
            api_key: Some("sk-test".into()),
            continue_prefill: *continue_prefill,
            max_concurrent: setup.max_concurrent,
            params: Default::default(),
            continue_params: Default::default(),
        })
        .collect();
    OpenAiProvider::new("test-model", upstreams, setup.pool, setup.model).unwrap()
}

fn request(continue_from: &str) -> CompletionRequest {
    CompletionRequest {
        model: "test-model".into(),
        history: vec![
            ChatTurn {
                role: Role::User,
                content: "hi".into(),
            },
            ChatTurn {
                role: Role::Assistant,
                content: "Hello.".into(),
            },
            ChatTurn {
                role: Role::User,
                content: "greet the world".into(),
            },
        ],
        continue_from: continue_from.into(),
    }
}

#[derive(Debug, Default)]
struct Outcome {
    pieces: Vec<String>,
    finished: Option<(String, Option<Usage>)>,
    error: Option<ProviderError>,
}

impl Outcome {
    fn text(&self) -> String {
        self.pieces.concat()
    }

    fn completed(&self) -> bool {
        self.finished.is_some() && self.error.is_none()
    }
}

async fn run(provider: &OpenAiProvider, continue_from: &str) -> Outcome {
    let mut stream = provider.complete(request(continue_from));
    let mut outcome = Outcome::default();
    tokio::time::timeout(DEADLINE, async {
        while let Some(item) = stream.next().await {
            assert!(
                outcome.finished.is_none() && outcome.error.is_none(),
                "nothing follows the end"
            );
            match item {
                Ok(Completion::Text(text)) => outcome.pieces.push(text),
                Ok(Completion::Finished {
                    finish_reason,
                    usage,
                }) => outcome.finished = Some((finish_reason, usage)),
                Err(error) => outcome.error = Some(error),
            }
        }
    })
    .await
    .expect("the stream ends in time");
    outcome
}

/// Waits until the pool's view of upstream `index` satisfies `condition`.
async fn wait_for_status(
    provider: &OpenAiProvider,
    index: usize,
    what: &str,
    condition: impl Fn(&chatstream::providers::pool::UpstreamStatus) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !condition(&provider.pool().status()[index]) {
        assert!(
            Instant::now() < deadline,
            "upstream {index} never became {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Streams.

#[tokio::test]
async fn streams_text_then_the_finish_reason_and_usage() {
    let upstream = Upstream::start(reply()).await;
    let provider = provider(&[(&upstream, false)], |_| {});
    let outcome = run(&provider, "").await;
    assert_eq!(outcome.pieces, REPLY);
    assert_eq!(
        outcome.finished,
        Some((
            "stop".into(),
            Some(Usage {
                prompt_tokens: 7,
                completion_tokens: 3
            })
        ))
    );
    let sent = &upstream.requests()[0];
    assert_eq!(sent.authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(sent.body["model"], "up-model");
    assert_eq!(sent.body["stream"], true);
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent.body["messages"],
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "greet the world"},
        ])
    );
}

#[tokio::test]
async fn keep_alives_null_choices_and_a_missing_usage_chunk_are_tolerated() {
    let upstream = Upstream::start(reply()).await;
    upstream.then(vec![
        Step::Head,
        Step::Chunk(": keep-alive\n\n".into()),
        Step::Chunk(role()),
        Step::Chunk(event(json!({"choices": null}))),
        Step::Chunk(": ping\n\nevent: message\nid: 4\n".into()),
        Step::Chunk(token("Hi")),
        Step::Chunk(event(json!({"choices": []}))),
        Step::Chunk(event(json!({"choices": [{"index": 0, "delta": null}]}))),
        Step::Chunk(token(" there")),
        Step::Chunk(": keep-alive\r\n\r\n".into()),
        Step::Chunk(finish("length")),
        Step::Chunk(DONE.into()),
        Step::End,
    ]);
    // A server that ends the body after the finish reason, without [DONE].
    upstream.then(vec![
        Step::Head,
        Step::Chunk(token("Bye")),
        Step::Chunk(finish("eos")),
        Step::End,
    ]);
    let provider = provider(&[(&upstream, false)], |_| {});
    let outcome = run(&provider, "").await;
    assert_eq!(outcome.text(), "Hi there");
    assert_eq!(outcome.finished, Some(("length".into(), None)));
    let outcome = run(&provider, "").await;
    assert_eq!(outcome.text(), "Bye");
    assert_eq!(outcome.finished, Some(("stop".into(), None)));
}

#[tokio::test]
async fn events_split_across_chunks_are_reassembled() {
    let body = [
        role(),
        token("naïve "),
        token("café ☕"),
        finish("stop"),
        usage(1, 2),
        DONE.into(),
    ]
    .concat();
    let upstream = Upstream::start(reply()).await;
    for size in [1, 2, 3, 7, 64] {
        upstream.then(vec![Step::Head, Step::Split(body.clone(), size), Step::End]);
    }
    let provider = provider(&[(&upstream, false)], |_| {});
    for size in [1, 2, 3, 7, 64] {
        let outcome = run(&provider, "").await;
        assert!(outcome.completed(), "pieces of {size}: {outcome:?}");
        assert_eq!(outcome.text(), "naïve café ☕", "pieces of {size}");
        assert_eq!(outcome.finished.unwrap().1.unwrap().completion_tokens, 2);
    }
}

#[tokio::test]
async fn a_malformed_event_is_a_clear_error() {
    let upstream = Upstream::start(vec![
        Step::Head,
        Step::Chunk(token("Hel")),
        Step::Chunk("data: {\"choices\": [oops\n\n".into()),
        Step::End,
    ])
    .await;
    let provider = provider(&[(&upstream, false)], |_| {});
    let outcome = run(&provider, "").await;
    assert_eq!(outcome.text(), "Hel");
    let error = outcome.error.expect("an error");
    assert!(!error.retryable);
    assert!(error.message.contains("malformed event"), "{error}");
    assert!(error.message.contains("oops"), "{error}");
}

#[tokio::test]
async fn an_error_event_inside_the_stream_is_reported() {
    let upstream = Upstream::start(vec![
        Step::Head,
        Step::Chunk(token("Hel")),
        Step::Chunk(event(
            json!({"error": {"message": "GPU fell off", "code": 500}}),
        )),
        Step::End,
    ])
    .await;
    let provider = provider(&[(&upstream, false)], |_| {});
    let outcome = run(&provider, "").await;
    let error = outcome.error.expect("an error");
    assert!(error.retryable);
    assert!(error.message.contains("GPU fell off"), "{error}");
}

// ---------------------------------------------------------------------------
// Timeouts.

#[tokio::test]
async fn a_stall_fires_the_between_token_timeout() {
    let upstream = Upstream::start(vec![
        Step::Head,
        Step::Chunk(token("Hel")),
        // Comments do not count as progress.
        Step::Chunk(": keep-alive\n\n".into()),
        Step::Hold,
    ])
    .await;
    let provider = provider(&[(&upstream, false)], |s| {
        s.model.timeouts.between_tokens = Duration::from_millis(300)
    });
    let started = Instant::now();
    let outcome = run(&provider, "").await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.text(), "Hel");
    let error = outcome.error.expect("an error");
    assert!(error.retryable);
    assert!(error.message.contains("stalled"), "{error}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The stalled request was dropped.
    upstream
        .wait_for("the disconnect", |log| log.disconnects == 1)
        .await;
}

#[tokio::test]
async fn a_silent_upstream_fires_the_first_token_timeout_and_another_one_answers() {
    let silent = Upstream::start(vec![Step::Head, Step::Hold]).await;
    let good = Upstream::start(reply()).await;
    let provider = provider(&[(&silent, false), (&good, false)], |s| {
        s.model.timeouts.first_token = Duration::from_millis(300)
    });
    let outcome = run(&provider, "").await;
    assert!(outcome.completed(), "{outcome:?}");
    assert_eq!(outcome.text(), REPLY.concat());
    assert_eq!((silent.hits(), good.hits()), (1, 1));
    silent
        .wait_for("the disconnect", |log| log.disconnects == 1)
        .await;
}

// ---------------------------------------------------------------------------
// Error answers, failover before the first token, cooldown.

#[tokio::test]
async fn a_429_is_retried_on_another_upstream_and_cools_the_first_down() {
    let limited = Upstream::start(vec![Step::Answer(
        429,
        "Retry-After: 30\r\n",
        json!({"error": {"message": "slow down"}}).to_string(),
    )])
    .await;
    let good = Upstream::start(reply()).await;
    let provider = provider(&[(&limited, false), (&good, false)], |_| {});
    for _ in 0..4 {
        let outcome = run(&provider, "").await;
        assert!(outcome.completed(), "{outcome:?}");
        assert_eq!(outcome.text(), REPLY.concat());
    }
    assert_eq!(limited.hits(), 1, "in cooldown after its first 429");
    assert_eq!(good.hits(), 4);
    assert!(provider.pool().status()[0].cooling_down);
}

#[tokio::test]
async fn a_500_is_retried_on_another_upstream_and_repeated_ones_cool_it_down() {
    let broken = Upstream::start(error_answer(500, "internal")).await;
    let good = Upstream::start(reply()).await;
    let provider = provider(&[(&broken, false), (&good, false)], |_| {});
    for _ in 0..6 {
        let outcome = run(&provider, "").await;
        assert!(outcome.completed(), "{outcome:?}");
        assert_eq!(outcome.text(), REPLY.concat());
    }
    assert_eq!(broken.hits(), 2, "allowed_failures = 2, then cooldown");
    assert_eq!(good.hits(), 6);
    let status = provider.pool().status();
    assert!(status[0].cooling_down && status[0].alive);
    assert!(!status[1].cooling_down);
}

#[tokio::test]
async fn when_every_upstream_fails_the_last_error_is_reported_as_retryable() {
    let a = Upstream::start(error_answer(502, "bad gateway")).await;
    let b = Upstream::start(error_answer(503, "overloaded")).await;
    let provider = provider(&[(&a, false), (&b, false)], |_| {});
    let outcome = run(&provider, "").await;
    let error = outcome.error.expect("an error");
    assert!(error.retryable);
    assert!(error.message.contains("2 upstreams failed"), "{error}");
    assert!(error.message.contains("503"), "{error}");
    assert!(error.message.contains("overloaded"), "{error}");
    assert!(outcome.pieces.is_empty());
}

#[tokio::test]
async fn client_errors_are_not_retryable_and_a_bad_request_goes_nowhere_else() {
    // 400: the request itself is wrong; no other upstream is asked.
    let bad = Upstream::start(error_answer(400, "context too long")).await;
    let good = Upstream::start(reply()).await;
    let provider_400 = provider(&[(&bad, false), (&good, false)], |_| {});
    let error = run(&provider_400, "").await.error.expect("an error");
    assert!(!error.retryable);
    assert!(
        error.message.contains("400") && error.message.contains("context too long"),
        "{error}"
    );
    assert_eq!(good.hits(), 0);

    // 401: this upstream's key; another upstream may take the request.
    let unauthorized = Upstream::start(error_answer(401, "bad key")).await;
    let provider_401 = provider(&[(&unauthorized, false), (&good, false)], |_| {});
    assert!(run(&provider_401, "").await.completed());

    // 404 alone: a clear, final error.
    let missing = Upstream::start(vec![Step::Answer(404, "", "no such model".into())]).await;
    let provider_404 = provider(&[(&missing, false)], |_| {});
    let error = run(&provider_404, "").await.error.expect("an error");
    assert!(!error.retryable);
    assert!(
        error.message.contains("404") && error.message.contains("no such model"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_skipped_invisibly_and_marks_the_upstream_down() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let good = Upstream::start(reply()).await;
    let provider = provider_at(
        &[
            (format!("http://{dead}/v1"), false),
            (good.base_url(), false),
        ],
        |s| s.pool.allowed_failures = 3,
    );
    for _ in 0..3 {
        let outcome = run(&provider, "").await;
        assert!(outcome.completed(), "{outcome:?}");
    }
    assert_eq!(good.hits(), 3);
    assert!(!provider.pool().status()[0].alive);
}

// ---------------------------------------------------------------------------
// Failures after the first token, and cancellation.

#[tokio::test]
async fn a_connection_cut_mid_stream_is_a_retryable_error() {
    let upstream = Upstream::start(vec![
        Step::Head,
        Step::Chunk(token("Hel")),
        Step::Chunk(token("lo")),
        Step::Cut,
    ])
    .await;
    let provider = provider(&[(&upstream, true)], |_| {});
    let outcome = run(&provider, "").await;
    assert_eq!(outcome.text(), "Hello");
    let error = outcome.error.expect("an error");
    assert!(error.retryable, "{error}");
}

#[tokio::test]
async fn a_connection_cut_before_the_first_token_is_retried_invisibly() {
    let flaky = Upstream::start(vec![Step::Head, Step::Chunk(role()), Step::Cut]).await;
    let good = Upstream::start(reply()).await;
    let provider = provider(&[(&flaky, false), (&good, false)], |_| {});
    let outcome = run(&provider, "").await;
    assert!(outcome.completed(), "{outcome:?}");
    assert_eq!(outcome.text(), REPLY.concat());
    assert_eq!((flaky.hits(), good.hits()), (1, 1));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_request_at_once() {
    let upstream = Upstream::start(vec![Step::Head, Step::Chunk(token("Hel")), Step::Hold]).await;
    let provider = provider(&[(&upstream, false)], |_| {});
    let mut stream = provider.complete(request(""));
    let first = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap();
    assert_eq!(first, Some(Ok(Completion::Text("Hel".into()))));
    let dropped = Instant::now();
    drop(stream);
    upstream
        .wait_for("the disconnect", |log| log.disconnects == 1)
        .await;
    let elapsed = dropped.elapsed();
    println!("upstream saw the disconnect {elapsed:?} after the drop");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(provider.pool().status()[0].in_flight, 0);
}

// ---------------------------------------------------------------------------
// Continuation, concurrency, health checks.

#[tokio::test]
async fn a_continuation_prefills_and_goes_only_to_upstreams_that_can_continue() {
    let plain = Upstream::start(reply()).await;
    let prefill = Upstream::start(reply()).await;
    let mixed = provider(&[(&plain, false), (&prefill, true)], |_| {});
    assert!(mixed.can_continue());
    for _ in 0..3 {
        assert!(run(&mixed, "Hello, wo").await.completed());
    }
    assert_eq!((plain.hits(), prefill.hits()), (0, 3));
    let messages = &prefill.requests()[0].body["messages"];
    assert_eq!(
        messages.as_array().unwrap().last().unwrap(),
        &json!({"role": "assistant", "content": "Hello, wo"})
    );

    let plain_only = provider(&[(&plain, false)], |_| {});
    assert!(!plain_only.can_continue());
    let error = run(&plain_only, "Hello, wo").await.error.expect("an error");
    assert!(!error.retryable);
    assert!(error.message.contains("continue"), "{error}");
    assert_eq!(plain.hits(), 0, "nothing was asked upstream");
}

#[tokio::test]
async fn the_concurrency_cap_queues_requests_until_a_slot_frees() {
    let upstream = Upstream::start(reply()).await;
    upstream.then(vec![Step::Head, Step::Chunk(token("Hel")), Step::Hold]);
    let provider = Arc::new(provider(&[(&upstream, false)], |s| s.max_concurrent = 1));
    let mut first = provider.complete(request(""));
    assert!(matches!(
        tokio::time::timeout(DEADLINE, first.next()).await.unwrap(),
        Some(Ok(Completion::Text(_)))
    ));
    let second = tokio::spawn({
        let provider = provider.clone();
        async move { run(&provider, "").await }
    });
    // The second request must not reach the upstream while the first holds
    // the only slot: give it a fair chance to (wrongly) get through.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.hits(), 1);
    assert_eq!(provider.pool().status()[0].in_flight, 1);
    drop(first);
    let outcome = tokio::time::timeout(DEADLINE, second)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.completed(), "{outcome:?}");
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn health_checks_take_an_upstream_out_and_bring_it_back() {
    let flapping = Upstream::start(reply()).await;
    let steady = Upstream::start(reply()).await;
    let provider = provider(&[(&flapping, false), (&steady, false)], |s| {
        s.pool.health_interval = Duration::from_millis(50)
    });
    flapping.set_healthy(false);
    wait_for_status(&provider, 0, "down", |s| !s.alive).await;
    for _ in 0..4 {
        assert!(run(&provider, "").await.completed());
    }
    assert_eq!((flapping.hits(), steady.hits()), (0, 4));
    flapping.set_healthy(true);
    wait_for_status(&provider, 0, "alive", |s| s.alive).await;
    for _ in 0..2 {
        assert!(run(&provider, "").await.completed());
    }
    assert_eq!(flapping.hits(), 1, "round-robin again");
}

// ---------------------------------------------------------------------------
// Through a whole node.

fn node_settings(upstream: &Upstream, prefill: bool) -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".into();
    settings.redis_url = None;
    settings.data_dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    settings.auth_secret = Some("test-auth-secret-of-at-least-32-bytes".into());
    settings.admin_token = Some("test-admin-token-of-at-least-32-bytes".into());
    // The test polls the API quicker than people do.
    settings.api_requests_per_second = 1_000_000;
    settings.http_workers = 1;
    settings.coalesce_ms = 0;
    settings.default_model = "test-model".into();
    settings.ai_service_urls = vec![upstream.base_url()];
    settings.ai_service_prefill = prefill;
    settings.generation_backoff_ms = 50;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_the_node_closes_the_upstream_request() {
    let upstream = Upstream::start(vec![Step::Head, Step::Chunk(token("Hel")), Step::Hold]).await;
    let node = Node::start(node_settings(&upstream, false)).await.unwrap();
    let api = Guest::new(node.addr).await;

    let (status, models) = api.call(reqwest::Method::GET, "/api/models", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        models["models"],
        json!([{"id": "demo", "provider": "demo"}, {"id": "test-model", "provider": "openai"}])
    );
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/chat",
            Some(json!({"content": "hi", "model": "no-such-model"})),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_request"))
    );

    let (status, sent) = api
        .call(
            reqwest::Method::POST,
            "/api/chat",
            Some(json!({"content": "hi"})),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let conversation_id = sent["conversation_id"].as_str().unwrap();
    api.reply_when(conversation_id, |m| m["content"] == "Hel")
        .await;
    let cancelled = Instant::now();
    let (status, _) = api
        .call(
            reqwest::Method::POST,
            "/api/cancel",
            Some(json!({"message_id": sent["message_id"]})),
        )
        .await;
    assert_eq!(status, 202);
    upstream
        .wait_for("the disconnect", |log| log.disconnects == 1)
        .await;
    println!(
        "upstream saw the disconnect {:?} after the cancel",
        cancelled.elapsed()
    );
    let reply = api
        .reply_when(conversation_id, |m| m["status"] != "streaming")
        .await;
    assert_eq!(
        (reply["status"].as_str(), reply["content"].as_str()),
        (Some("cancelled"), Some("Hel"))
    );
    node.stop(1001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_mid_stream_on_an_upstream_that_cannot_continue_fails_with_its_text_kept() {
    let upstream = Upstream::start(vec![
        Step::Head,
        Step::Chunk(token("Hel")),
        Step::Chunk(token("lo")),
        Step::Cut,
    ])
    .await;
    let node = Node::start(node_settings(&upstream, false)).await.unwrap();
    let api = Guest::new(node.addr).await;
    let (status, sent) = api
        .call(
            reqwest::Method::POST,
            "/api/chat",
            Some(json!({"content": "hi"})),
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let reply = api
        .reply_when(sent["conversation_id"].as_str().unwrap(), |m| {
            m["status"] != "streaming"
        })
        .await;
    assert_eq!(reply["status"], "failed");
    assert_eq!(reply["content"], "Hello");
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains("cannot continue"), "{error}");
    assert_eq!(upstream.hits(), 1, "never asked to continue");
    node.stop(1001).await;
}
