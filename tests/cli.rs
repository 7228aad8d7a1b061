//! The `chatstream` binary as an operator runs it: `--help` grouped by
//! subsystem, settings before a subcommand refused, the precedence of flags,
//! environment variables and the settings file, `chatstream healthcheck`,
//! and `LOG_FORMAT=json`.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::node_process::NodeProcess;
use common::{Client, DEADLINE, Guest, ends};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_chatstream");

/// A directory of this test's own.
fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with an empty environment but `PATH` and `env`.
fn chatstream(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    command
}

/// Runs the binary to its end, which must come before the deadline (a
/// command that wrongly starts a server would otherwise hang the test).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = chatstream(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let pid = child.id();
    let (sender, output) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match output.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("the binary's output"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("`chatstream {}` did not finish", args.join(" "));
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server process (a node, or an AI worker) whose standard output and
/// error are read line by line as they come; a node runs a fast demo model
/// in a data directory of its own.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, both streams.
    seen: Vec<String>,
    data_dir: PathBuf,
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let data_dir = scratch_dir();
        let mut child = chatstream(args, env)
            .env("DATA_DIR", &data_dir)
            .env("STATIC_DIR", data_dir.join("no-frontend"))
            .env("DEMO_TOKEN_DELAY_MS", "2")
            .env("DEMO_REPLY_TOKENS", "10")
            .env("COALESCE_MS", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        Server {
            child,
            lines,
            seen: Vec::new(),
            data_dir,
        }
    }

    /// The first line, seen or to come, for which `wanted` holds.
    fn line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|line| wanted(line)) {
            return line.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} in the output:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Stops the node with SIGTERM, as an orchestrator does, and answers
    /// every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        // The streams end when the process does.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the node did not stop"),
            }
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The node id of a text-mode node's start-up line
/// (`chatstream <node id> serving on http://…`).
fn announced_node_id(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut node = Server::start(args, env);
    let line = node.line("start-up line", |line| line.contains(" serving on "));
    let node_id = line.split_whitespace().nth(1).unwrap().to_owned();
    let lines = node.stop();
    // Text logs are coloured only on a terminal, and a pipe is not one.
    for line in lines {
        assert!(!line.contains('\u{1b}'), "an ANSI escape: {line:?}");
    }
    node_id
}

#[test]
fn help_groups_the_settings_by_subsystem() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let output = run(args, &[]);
        assert!(output.status.success());
        let help = text(&output.stdout);
        let headings: Vec<&str> = help
            .lines()
            .filter(|line| !line.starts_with(' ') && line.ends_with(':'))
            .collect();
        for heading in [
            "Options:",
            "Server:",
            "Cluster and Redis:",
            "Durable store:",
            "Identity and security:",
            "Limits:",
            "Models and upstreams:",
            "Demo model:",
            "Logging:",
        ] {
            assert!(headings.contains(&heading), "{heading} in {headings:?}");
        }
        // Under the generic heading: the settings file, help and version only.
        let options: Vec<&str> = help
            .lines()
            .skip_while(|line| *line != "Options:")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter(|line| line.trim_start().starts_with('-'))
            .collect();
        assert!(
            options
                .iter()
                .all(|line| ["--config-file", "--help", "--version"]
                    .iter()
                    .any(|flag| line.contains(flag))),
            "{options:#?}"
        );
    }
}

#[test]
fn settings_before_a_subcommand_are_refused_not_dropped() {
    for (args, subcommand, flag) in [
        (&["--bind", "127.0.0.1:1", "serve"][..], "serve", "--bind"),
        (
            &["--config-file", "x.toml", "serve"],
            "serve",
            "--config-file",
        ),
        (&["--node-id", "n1", "ai-worker"], "ai-worker", "--node-id"),
    ] {
        let output = run(args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let error = text(&output.stderr);
        assert!(
            error.contains(&format!("'{subcommand}'")) && error.contains(flag),
            "{error}"
        );
        assert!(
            error.contains(&format!("chatstream {subcommand} --bind")),
            "says where settings go: {error}"
        );
    }
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = scratch_dir();
    let config = dir.join("chatstream.toml");
    std::fs::write(
        &config,
        "node_id = \"from-file\"\nbind = \"127.0.0.1:0\"\nlog_filter = \"info\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    assert_eq!(
        announced_node_id(&["serve"], &[("CONFIG_FILE", config)]),
        "from-file"
    );
    assert_eq!(
        announced_node_id(&["--config-file", config], &[("NODE_ID", "from-env")]),
        "from-env"
    );
    assert_eq!(
        announced_node_id(
            &["serve", "--config-file", config, "--node-id", "from-flag"],
            &[("NODE_ID", "from-env")]
        ),
        "from-flag"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_node_with_a_wrong_settings_file_does_not_start() {
    let dir = scratch_dir();
    let config = dir.join("chatstream.toml");
    std::fs::write(
        &config,
        "bind = \"127.0.0.1:0\"\nredis = \"redis://127.0.0.1:6379\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let data_dir = dir.join("data");
    let data_dir = data_dir.to_str().unwrap();
    for args in [&["serve"][..], &[]] {
        let output = run(args, &[("CONFIG_FILE", config), ("DATA_DIR", data_dir)]);
        assert_eq!(output.status.code(), Some(2));
        let error = text(&output.stderr);
        assert!(
            error.contains(config) && error.contains("unknown setting `redis`"),
            "{error}"
        );
        assert!(
            !std::path::Path::new(data_dir).exists(),
            "the node never started"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_ai_worker_reads_a_settings_file_of_its_own() {
    let dir = scratch_dir();
    let config = dir.join("ai-worker.toml");
    std::fs::write(&config, "bind = \"127.0.0.1:0\"\nmodel = \"from-file\"\n").unwrap();
    let config = config.to_str().unwrap();
    let mut worker = Server::start(&["ai-worker"], &[("CONFIG_FILE", config)]);
    worker.line("start-up line", |line| {
        line.starts_with("chatstream ai-worker serving from-file on http://127.0.0.1:")
    });
    drop(worker);

    // A node's setting is not one of the worker's.
    std::fs::write(config, "redis_url = \"redis://127.0.0.1:6379\"\n").unwrap();
    let output = run(&["ai-worker", "--config-file", config], &[]);
    assert_eq!(output.status.code(), Some(2));
    let error = text(&output.stderr);
    assert!(
        error.contains(config) && error.contains("unknown setting `redis_url`"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_reports_a_running_node() {
    let node = NodeProcess::start(&[]).await;
    let port = node.addr.rsplit_once(':').unwrap().1.to_owned();
    // A node listening on every interface is checked through loopback.
    let every_interface = format!("0.0.0.0:{port}");
    let output = run(&["healthcheck"], &[("BIND", &every_interface)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("alive: http://127.0.0.1:{port}/healthz answered 200 OK\n")
    );

    let output = run(&["healthcheck", "--ready", "--bind", &node.addr], &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!("ready: http://{}/readyz answered 200 OK\n", node.addr)
    );

    // The node's settings file tells it where the node is.
    let dir = scratch_dir();
    let config = dir.join("chatstream.toml");
    std::fs::write(&config, format!("bind = \"{}\"\n", node.addr)).unwrap();
    let output = run(
        &["healthcheck"],
        &[("CONFIG_FILE", config.to_str().unwrap())],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

/// A healthcheck that fails: exit code 1 and one line on standard error
/// naming the URL.
fn assert_unhealthy(output: &Output, url: &str) -> String {
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let error = text(&output.stderr);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(error.contains(url), "{error}");
    error
}

#[test]
fn healthcheck_fails_on_a_closed_port() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let bind = format!("127.0.0.1:{port}");
    let error = assert_unhealthy(
        &run(&["healthcheck", "--bind", &bind], &[]),
        &format!("http://{bind}/healthz"),
    );
    assert!(error.starts_with("not alive: "), "{error}");
}

#[test]
fn healthcheck_fails_on_another_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut request = [0; 1024];
        let _ = socket.read(&mut request);
        let _ = socket.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    });
    let error = assert_unhealthy(
        &run(&["healthcheck", "--ready", "--bind", &bind], &[]),
        &format!("http://{bind}/readyz"),
    );
    assert!(error.contains("503"), "{error}");
}

#[test]
fn healthcheck_gives_up_after_two_seconds() {
    // Accepts (the kernel does, from the backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = listener.local_addr().unwrap().to_string();
    let started = Instant::now();
    let error = assert_unhealthy(
        &run(&["healthcheck", "--bind", &bind], &[]),
        &format!("http://{bind}/healthz"),
    );
    let took = started.elapsed();
    assert!(error.contains("no answer within 2 s"), "{error}");
    assert!(
        took >= Duration::from_secs(2) && took < DEADLINE,
        "took {took:?}"
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_span_fields_and_no_credentials() {
    let mut node = Server::start(
        &["serve"],
        &[
            ("BIND", "127.0.0.1:0"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info,chatstream=debug"),
        ],
    );
    let started = node.line("\"node started\" line", |line| {
        line.contains("\"node started\"")
    });
    let started: Value = serde_json::from_str(&started).unwrap();
    let addr = started["fields"]["addr"].as_str().unwrap().to_owned();
    let guest = Guest::new(addr.parse().unwrap()).await;
    let token = guest.token.clone();
    // The token in the query too: the request's span must not show it.
    let (status, _) = guest
        .call(
            reqwest::Method::GET,
            &format!("/api/conversations?token={token}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (_, ticket) = guest
        .call(reqwest::Method::POST, "/api/ws-ticket", None)
        .await;
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();

    let mut socket = Client::connect(&format!("ws://{addr}/ws/chat?ticket={ticket}")).await;
    let connection_id = socket.welcome["connection_id"].as_str().unwrap().to_owned();
    let node_id = socket.welcome["node_id"].as_str().unwrap().to_owned();
    let sent = socket.send_turn("hello").await;
    socket.until(|frame| ends(frame, &sent.reply_id)).await;
    socket.close().await;
    let other = Client::connect(&format!("ws://{addr}/ws/chat?token={token}")).await;
    other.close().await;
    let lines = node.stop();

    let mut events = Vec::new();
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "an ANSI escape: {line:?}");
        assert!(!line.contains(&token), "the token is logged: {line}");
        assert!(!line.contains(&ticket), "the ticket is logged: {line}");
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        events.push(event);
    }
    let find = |what: &str, wanted: &dyn Fn(&Value) -> bool| -> Value {
        events
            .iter()
            .find(|event| wanted(event))
            .unwrap_or_else(|| panic!("no {what} among:\n{}", lines.join("\n")))
            .clone()
    };

    let listed = find("line of the listing request", &|event| {
        event["fields"]["message"] == "request answered"
            && event["span"]["http.route"] == "/api/conversations"
    });
    let span = &listed["span"];
    assert_eq!(span["name"], "HTTP request");
    assert_eq!(span["http.method"], "GET");
    assert_eq!(span["http.target"], "/api/conversations");
    assert_eq!(span["http.status_code"], 200);
    assert_eq!(span["http.client_ip"], "127.0.0.1");
    assert!(
        span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{listed}"
    );

    let upgrade = find("line of the socket's upgrade", &|event| {
        event["fields"]["message"] == "request answered"
            && event["span"]["connection_id"] == connection_id.as_str()
    });
    assert_eq!(upgrade["span"]["http.target"], "/ws/chat");
    assert_eq!(upgrade["span"]["http.status_code"], 101);

    let opened = find("line of the connection's actor", &|event| {
        event["span"]["name"] == "connection"
            && event["span"]["connection_id"] == connection_id.as_str()
    });
    assert_eq!(opened["spans"][0]["name"], "node");
    assert_eq!(opened["spans"][0]["node_id"], node_id.as_str());

    let followed = find("line of the conversation's actor", &|event| {
        event["span"]["name"] == "conversation"
            && event["span"]["conversation_id"] == sent.conversation.as_str()
    });
    assert_eq!(followed["spans"][0]["node_id"], node_id.as_str());
}
