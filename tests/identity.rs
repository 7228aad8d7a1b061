//! Identity that lasts: the secret-length rule, generated secrets kept in
//! `DATA_DIR` across restarts, and `POST /api/auth/refresh`; black-box
//! against real nodes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatstream::config::Settings;
use chatstream::node::Node;
use common::*;
use reqwest::Method;
use serde_json::Value;

/// A data directory no other test uses.
fn fresh_data_dir() -> PathBuf {
    std::env::temp_dir()
        .join("chatstream-tests")
        .join(uuid::Uuid::new_v4().simple().to_string())
}

/// Test settings that leave both secrets unset, on `data_dir`.
fn without_secrets(data_dir: &Path) -> Settings {
    let mut settings = test_settings();
    settings.auth_secret = None;
    settings.admin_token = None;
    settings.data_dir = data_dir.to_owned();
    settings
}

async fn start(settings: Settings) -> TestNode {
    TestNode {
        node: Node::start(settings).await.expect("node starts"),
        http: common::http_client(),
    }
}

/// `POST /api/auth/refresh` with `token`, if any: (status, body).
async fn refresh(node: &TestNode, token: Option<&str>) -> (u16, Value) {
    node.api(Method::POST, "/api/auth/refresh", token, None)
        .await
}

fn expiry(body: &Value) -> chrono::DateTime<chrono::Utc> {
    body["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_and_empty_secrets_are_refused_naming_the_variable() {
    let short = "x".repeat(31);
    for (variable, value) in [
        ("AUTH_SECRET", ""),
        ("AUTH_SECRET", short.as_str()),
        ("ADMIN_TOKEN", ""),
        ("ADMIN_TOKEN", short.as_str()),
    ] {
        let data_dir = fresh_data_dir();
        let mut settings = without_secrets(&data_dir);
        match variable {
            "AUTH_SECRET" => settings.auth_secret = Some(value.to_owned()),
            _ => settings.admin_token = Some(value.to_owned()),
        }
        let error = match Node::start(settings).await {
            Ok(node) => {
                node.stop(1001).await;
                panic!("a node started with a short {variable}");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(variable), "{variable} not named in: {error}");
        assert!(
            !error.contains(&short),
            "the secret is not repeated: {error}"
        );
        assert!(
            !data_dir.join("auth_secret").exists() && !data_dir.join("admin_token").exists(),
            "a refused start generates no secret"
        );
    }
    // Exactly 32 bytes is enough.
    let node = start({
        let mut settings = without_secrets(&fresh_data_dir());
        settings.auth_secret = Some("a".repeat(32));
        settings.admin_token = Some("b".repeat(32));
        settings
    })
    .await;
    let (status, _) = node
        .api(Method::GET, "/admin/actors", Some(&"b".repeat(32)), None)
        .await;
    assert_eq!(status, 200);
    node.stop().await;
}

/// `chatstream serve` with `variable` set to `value` and nothing else that
/// matters: its exit status and what it wrote to stderr.
fn serve_with(variable: &str, value: &str) -> (std::process::ExitStatus, String) {
    let data_dir = fresh_data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstream"))
        .arg("serve")
        .env_clear()
        .env("BIND", "127.0.0.1:0")
        .env("DATA_DIR", &data_dir)
        .env("RUST_LOG", "warn")
        .env(variable, value)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning chatstream serve");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatstream serve kept running with {variable}={value:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = std::fs::remove_dir_all(data_dir);
    (status, stderr)
}

#[test]
fn serve_exits_non_zero_naming_the_variable() {
    for (variable, value) in [
        ("AUTH_SECRET", ""),
        ("AUTH_SECRET", "too-short"),
        ("ADMIN_TOKEN", ""),
        ("ADMIN_TOKEN", "too-short"),
    ] {
        let (status, stderr) = serve_with(variable, value);
        assert!(!status.success(), "{variable}={value:?} was accepted");
        assert!(
            stderr.contains(variable),
            "{variable}={value:?}: the variable is not named in {stderr:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_secrets_are_kept_in_the_data_dir_across_restarts() {
    let data_dir = fresh_data_dir();
    let node = start(without_secrets(&data_dir)).await;
    let (token, user) = node.guest().await;
    let admin_file = data_dir.join("admin_token");
    let admin_token = std::fs::read_to_string(&admin_file).expect("the admin token is kept");
    assert!(admin_token.trim().len() >= 32);
    for file in ["auth_secret", "admin_token"] {
        let path = data_dir.join(file);
        assert!(
            std::fs::read_to_string(&path).unwrap().trim().len() >= 32,
            "{}",
            path.display()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{} is private", path.display());
        }
    }
    let (status, _) = node
        .api(Method::GET, "/admin/actors", Some(admin_token.trim()), None)
        .await;
    assert_eq!(status, 200, "the kept admin token opens /admin/actors");
    node.stop().await;

    // The next node on the same DATA_DIR signs and checks with the same secrets.
    let node = start(without_secrets(&data_dir)).await;
    let (status, _) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(status, 200, "a token issued before the restart is accepted");
    let client = node.connect(&token).await;
    assert_eq!(client.welcome["user_id"], user.to_string());
    let (status, _) = node
        .api(Method::GET, "/admin/actors", Some(admin_token.trim()), None)
        .await;
    assert_eq!(status, 200, "the admin token survives the restart");
    assert_eq!(
        std::fs::read_to_string(&admin_file).unwrap(),
        admin_token,
        "nothing was regenerated"
    );
    let (status, renewed) = refresh(&node, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(renewed["user_id"], user.to_string());
    node.stop().await;

    // A node given its secrets ignores the kept ones: old tokens are refused.
    let node = TestNode::start(|s| s.data_dir = data_dir.clone()).await;
    let (status, _) = node
        .api(Method::GET, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(status, 401);
    node.stop().await;
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_secret_file_is_an_error_naming_it() {
    for (file, content) in [("auth_secret", "short"), ("admin_token", "")] {
        let data_dir = fresh_data_dir();
        std::fs::create_dir_all(&data_dir).unwrap();
        let path = data_dir.join(file);
        std::fs::write(&path, content).unwrap();
        let error = match Node::start(without_secrets(&data_dir)).await {
            Ok(node) => {
                node.stop(1001).await;
                panic!("a node started with a corrupt {file}");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains(&path.display().to_string()),
            "{} not named in: {error}",
            path.display()
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            content,
            "not replaced"
        );
        let _ = std::fs::remove_dir_all(data_dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_renews_the_token_of_the_same_user() {
    let node = TestNode::start(|_| {}).await;
    let (status, guest) = node.api(Method::POST, "/api/auth/guest", None, None).await;
    assert_eq!(status, 200);
    let token = guest["token"].as_str().unwrap().to_owned();
    let (status, created) = node
        .api(Method::POST, "/api/conversations", Some(&token), None)
        .await;
    assert_eq!(status, 201);

    let (status, renewed) = refresh(&node, Some(&token)).await;
    assert_eq!(status, 200);
    let mut keys: Vec<_> = renewed.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["expires_at", "token", "user_id"],
        "the guest answer's shape"
    );
    assert_eq!(renewed["user_id"], guest["user_id"]);
    assert!(expiry(&renewed) >= expiry(&guest), "expiry not earlier");
    let new_token = renewed["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token, "a new token");

    // Both tokens work, for the same user and the same conversations.
    for token in [&token, &new_token] {
        let (status, list) = node
            .api(Method::GET, "/api/conversations", Some(token), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(list["conversations"][0]["id"], created["id"]);
    }
    let client = node.connect(&new_token).await;
    assert_eq!(client.welcome["user_id"], guest["user_id"]);

    // A renewed token renews too.
    let (status, again) = refresh(&node, Some(&new_token)).await;
    assert_eq!(status, 200);
    assert_eq!(again["user_id"], guest["user_id"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_a_valid_token_is_refused() {
    let node = TestNode::start(|_| {}).await;
    let (status, body) = refresh(&node, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (token, _) = node.guest().await;
    // The first character of the signature, changed.
    let at = token.rfind('.').unwrap() + 1;
    let first = if token[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{first}{}", &token[..at], &token[at + 1..]);
    for bad in ["not-a-token", "a.b.c", tampered.as_str()] {
        let (status, body) = refresh(&node, Some(bad)).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(body["error"]["code"], "unauthorized");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("InvalidSignature") && !message.contains("Error"),
            "a sentence for people, not library text: {message}"
        );
    }
    node.stop().await;

    // A token from a node with another secret is refused.
    let other =
        TestNode::start(|s| s.auth_secret = Some("another-secret-of-at-least-32-bytes".into()))
            .await;
    let (status, _) = refresh(&other, Some(&token)).await;
    assert_eq!(status, 401);
    // Only POST renews.
    let (status, _) = other
        .api(Method::GET, "/api/auth/refresh", Some(&token), None)
        .await;
    assert_eq!(status, 404);
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_cannot_be_renewed() {
    let node = TestNode::start(|s| s.token_ttl_secs = 1).await;
    let (status, guest) = node.api(Method::POST, "/api/auth/guest", None, None).await;
    assert_eq!(status, 200);
    let token = guest["token"].as_str().unwrap().to_owned();
    // Renewals succeed until the token expires, then the same call is refused.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let (status, body) = refresh(&node, Some(&token)).await;
        if status == 401 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        chrono::Utc::now() >= expiry(&guest),
        "refused only once expired"
    );
    assert_eq!(refused["error"]["code"], "unauthorized");
    assert_eq!(refused["error"]["message"], "the token has expired");
    node.stop().await;
}
