//! `chatstream ai-worker`: its OpenAI-compatible API (in process), and three
//! worker processes behind one model of a full node, one of them killed
//! mid-reply.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chatstream::ai_worker::{AiWorker, WorkerSettings};
use chatstream::config::Settings;
use chatstream::node::Node;
use chatstream::protocol::Role;
use chatstream::providers::openai::{ModelSettings, OpenAiProvider, Timeouts};
use chatstream::providers::pool::{PoolSettings, UpstreamSettings};
use chatstream::providers::{ChatTurn, Completion, CompletionRequest, DemoProvider, Provider};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// How long any single wait may take before the test fails.
mod common;

use common::Guest;

const DEADLINE: Duration = Duration::from_secs(10);

fn user(content: &str) -> Vec<ChatTurn> {
    vec![ChatTurn {
        role: Role::User,
        content: content.into(),
    }]
}

/// The reply an undisturbed demo model gives to `content`.
fn demo_reply(delay_ms: u64, tokens: usize, content: &str) -> String {
    DemoProvider::new(Duration::from_millis(delay_ms), tokens)
        .reply_tokens(&user(content))
        .concat()
}

// ---------------------------------------------------------------------------
// The API, in process.

fn provider_for(worker: &AiWorker) -> OpenAiProvider {
    OpenAiProvider::new(
        "demo",
        vec![UpstreamSettings {
            name: "worker".into(),
            base_url: format!("http://{}/v1", worker.addr),
            model: "demo".into(),
            api_key: None,
            continue_prefill: true,
            max_concurrent: 4,
            params: Default::default(),
            continue_params: Default::default(),
        }],
        PoolSettings {
            health_interval: Duration::from_secs(3600),
            cooldown: Duration::from_secs(5),
            allowed_failures: 3,
            queue_timeout: DEADLINE,
        },
        ModelSettings {
            system_prompt: Some("You are a demo.".into()),
            history_chars: 10_000,
            connect_timeout: Duration::from_secs(2),
            timeouts: Timeouts {
                first_token: Duration::from_secs(5),
                between_tokens: Duration::from_secs(5),
            },
        },
    )
    .unwrap()
}

async fn complete(
    provider: &OpenAiProvider,
    content: &str,
    continue_from: &str,
) -> (String, Completion) {
    let mut stream = provider.complete(CompletionRequest {
        model: "demo".into(),
        history: user(content),
        continue_from: continue_from.into(),
    });
    let mut text = String::new();
    loop {
        match tokio::time::timeout(DEADLINE, stream.next()).await.unwrap() {
            Some(Ok(Completion::Text(piece))) => text.push_str(&piece),
            Some(Ok(finished)) => return (text, finished),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn health(http: &reqwest::Client, addr: SocketAddr) -> Option<Value> {
    let response = http
        .get(format!("http://{addr}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_speaks_the_openai_api_with_prefill_continuation() {
    let worker = AiWorker::start(WorkerSettings {
        bind: "127.0.0.1:0".into(),
        model: "demo".into(),
        demo_token_delay_ms: 0,
        demo_reply_tokens: 25,
        http_workers: 1,
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1", worker.addr);
    let expected = demo_reply(0, 25, "what is a worker?");

    let models: Value = http
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "demo");

    // Not streamed.
    let whole: Value = http
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "what is a worker?"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["choices"][0]["message"]["content"], expected.as_str());
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    assert_eq!(whole["usage"]["completion_tokens"], 25);

    // Streamed, through the provider: same text, with usage.
    let provider = provider_for(&worker);
    let (text, finished) = complete(&provider, "what is a worker?", "").await;
    assert_eq!(text, expected);
    assert!(
        matches!(finished, Completion::Finished { ref finish_reason, usage: Some(_) } if finish_reason == "stop")
    );

    // Prefill: the rest, exactly.
    let cut = expected
        .char_indices()
        .nth(expected.chars().count() / 3)
        .unwrap()
        .0;
    let (rest, _) = complete(&provider, "what is a worker?", &expected[..cut]).await;
    assert_eq!(format!("{}{rest}", &expected[..cut]), expected);

    // Errors in OpenAI's shape.
    let wrong_model = http
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_model.status().as_u16(), 404);
    let body: Value = wrong_model.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o")
    );
    let bad_prefill = http
        .post(format!("{base}/chat/completions"))
        .json(&json!({"model": "demo", "stream": true, "messages": [
            {"role": "user", "content": "what is a worker?"},
            {"role": "assistant", "content": "Not what the demo says"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_prefill.status().as_u16(), 400);
    let malformed = http
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"]["message"].is_string());

    let status = health(&http, worker.addr).await.unwrap();
    assert_eq!(status["status"], "ok");
    assert_eq!(status["in_flight"], 0);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_stream_stops_the_workers_generation() {
    let worker = AiWorker::start(WorkerSettings {
        bind: "127.0.0.1:0".into(),
        model: "demo".into(),
        demo_token_delay_ms: 50,
        demo_reply_tokens: 200,
        http_workers: 1,
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let provider = provider_for(&worker);
    let mut stream = provider.complete(CompletionRequest {
        model: "demo".into(),
        history: user("a long one"),
        continue_from: String::new(),
    });
    let first = tokio::time::timeout(DEADLINE, stream.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(Completion::Text(_)))));
    assert_eq!(health(&http, worker.addr).await.unwrap()["in_flight"], 1);
    drop(stream);
    let deadline = Instant::now() + DEADLINE;
    while health(&http, worker.addr).await.unwrap()["in_flight"] != 0 {
        assert!(Instant::now() < deadline, "the worker kept generating");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.stop().await;
}

// ---------------------------------------------------------------------------
// Three worker processes behind one model.

const TOKEN_DELAY_MS: u64 = 20;
const REPLY_TOKENS: usize = 30;

/// A `chatstream ai-worker` process, killed when dropped.
struct WorkerProcess {
    child: Child,
    addr: SocketAddr,
}

impl WorkerProcess {
    fn spawn(bind: &str) -> WorkerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatstream"))
            .args(["ai-worker", "--bind", bind])
            .env("DEMO_TOKEN_DELAY_MS", TOKEN_DELAY_MS.to_string())
            .env("DEMO_REPLY_TOKENS", REPLY_TOKENS.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning chatstream ai-worker");
        // The worker prints its address once it listens.
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let mut process = WorkerProcess {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = receiver.recv_timeout(DEADLINE).expect("the worker starts");
        process.addr = line
            .trim()
            .rsplit_once("http://")
            .and_then(|(_, url)| url.strip_suffix("/v1"))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected worker banner {line:?}"));
        process
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// SIGKILL: no goodbye to its clients.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A guest of the node, with what these tests ask of it.
struct Chat(Guest);

impl Chat {
    async fn new(node: &Node) -> Chat {
        Chat(Guest::new(node.addr).await)
    }

    /// Sends `content` in a new conversation; its id.
    async fn send(&self, content: &str) -> String {
        let (_, accepted) = self
            .0
            .call(
                reqwest::Method::POST,
                "/api/chat",
                Some(json!({"content": content})),
            )
            .await;
        accepted["conversation_id"]
            .as_str()
            .expect("accepted")
            .to_owned()
    }

    async fn reply(&self, conversation_id: &str) -> Value {
        let path = format!("/api/conversations/{conversation_id}");
        self.0.call(reqwest::Method::GET, &path, None).await.1["messages"][1].clone()
    }

    async fn reply_when(&self, conversation_id: &str, condition: impl Fn(&Value) -> bool) -> Value {
        self.0.reply_when(conversation_id, condition).await
    }

    /// Sends `content` and waits for the whole reply.
    async fn exchange(&self, content: &str) -> Value {
        let conversation_id = self.send(content).await;
        self.reply_when(&conversation_id, |m| m["status"] != "streaming")
            .await
    }

    /// A metric of the node for one upstream (0 when not yet recorded).
    async fn upstream_metric(&self, name: &str, upstream: &str) -> f64 {
        let text = self.0.text("/metrics").await;
        let label = format!("upstream=\"{upstream}\"");
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(&label))
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    async fn upstream_metric_becomes(&self, name: &str, upstream: &str, value: f64) {
        let deadline = Instant::now() + DEADLINE;
        while self.upstream_metric(name, upstream).await != value {
            assert!(
                Instant::now() < deadline,
                "{name} of {upstream} never became {value}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_complete(reply: &Value, content: &str) {
    assert_eq!(reply["status"], "complete", "{reply}");
    assert_eq!(
        reply["content"].as_str().unwrap(),
        demo_reply(TOKEN_DELAY_MS, REPLY_TOKENS, content),
        "the reply to {content:?} differs from an undisturbed demo reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_survive_a_kill_mid_reply_and_a_dead_one_is_skipped_until_healthy() {
    let started = Instant::now();
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| WorkerProcess::spawn("127.0.0.1:0"))
        .collect();
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
    settings.default_model = "demo".into();
    settings.ai_service_urls = workers.iter().map(WorkerProcess::base_url).collect();
    settings.ai_service_prefill = true;
    settings.ai_health_interval_ms = 100;
    settings.generation_backoff_ms = 50;
    let node = Node::start(settings).await.unwrap();
    let chat = Chat::new(&node).await;
    let http = reqwest::Client::new();

    // Undisturbed.
    let question = "How does failover work?";
    assert_complete(&chat.exchange(question).await, question);

    // The same question again; kill whichever worker serves it mid-reply.
    let full = demo_reply(TOKEN_DELAY_MS, REPLY_TOKENS, question);
    let conversation_id = chat.send(question).await;
    let at_kill = chat
        .reply_when(&conversation_id, |m| {
            m["content"].as_str().unwrap().len() >= full.len() / 4
        })
        .await;
    let mut serving = None;
    for (i, worker) in workers.iter().enumerate() {
        if health(&http, worker.addr).await.unwrap()["in_flight"] == 1 {
            serving = Some(i);
        }
    }
    let serving = serving.expect("one worker serves the reply");
    let killed_url = workers[serving].base_url();
    let killed_addr = workers[serving].addr;
    workers[serving].kill();
    let killed = Instant::now();
    assert!(
        at_kill["content"].as_str().unwrap().len() < full.len(),
        "the reply was still streaming when its worker died"
    );
    let cut = chat.reply(&conversation_id).await["content"]
        .as_str()
        .unwrap()
        .len();
    chat.reply_when(&conversation_id, |m| {
        m["content"].as_str().unwrap().len() > cut || m["status"] != "streaming"
    })
    .await;
    println!(
        "the reply resumed on another worker {:?} after the kill",
        killed.elapsed()
    );
    let reply = chat
        .reply_when(&conversation_id, |m| m["status"] != "streaming")
        .await;
    assert_complete(&reply, question);
    assert!(
        chat.upstream_metric("chatstream_upstream_failures_total", &killed_url)
            .await
            >= 1.0,
        "the killed worker's failure was seen"
    );

    // The dead worker is skipped.
    chat.upstream_metric_becomes("chatstream_upstream_healthy", &killed_url, 0.0)
        .await;
    let asked_before = chat
        .upstream_metric("chatstream_upstream_requests_total", &killed_url)
        .await;
    for i in 0..4 {
        let question = format!("Question {i} while a worker is down");
        assert_complete(&chat.exchange(&question).await, &question);
    }
    assert_eq!(
        chat.upstream_metric("chatstream_upstream_requests_total", &killed_url)
            .await,
        asked_before,
        "nothing was sent to the dead worker"
    );

    // Back on the same address: healthy again, and used again.
    workers[serving] = WorkerProcess::spawn(&killed_addr.to_string());
    chat.upstream_metric_becomes("chatstream_upstream_healthy", &killed_url, 1.0)
        .await;
    for i in 0..3 {
        let question = format!("Question {i} after the worker came back");
        assert_complete(&chat.exchange(&question).await, &question);
    }
    assert!(
        chat.upstream_metric("chatstream_upstream_requests_total", &killed_url)
            .await
            > asked_before,
        "round-robin reaches the revived worker"
    );
    assert!(
        health(&http, killed_addr).await.unwrap()["requests_total"]
            .as_u64()
            .unwrap()
            >= 1
    );

    node.stop(1001).await;
    println!("three-worker scenario took {:?}", started.elapsed());
}
