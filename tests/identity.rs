//! Identity, black-box against real nodes: the secret-length rule, generated
//! secrets kept in `DATA_DIR` across restarts, `POST /api/auth/refresh`; an
//! external identity provider's RS256 and ES256 tokens (its JWKS from a file
//! or from a URL served here), guests switched off, single-use WebSocket
//! tickets (on one node and across two nodes on one redis-server), the
//! `Origin` check of upgrades, and the admin token.
//!
//! The provider's keys are throwaway fixtures committed in `tests/fixtures/`
//! (`generate.sh` there made them with `openssl genpkey`), so that the
//! tests need no openssl when they run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatstream::auth::{jwks, tickets};
use chatstream::config::Settings;
use chatstream::node::Node;
use chatstream::protocol::UserId;
use common::idp::{
    self, AUDIENCE, ISSUER, b64url, claims, fixture, jwks, jwks_file, now, raw_token, sign,
    sign_as, with_provider,
};
use common::redis_server::RedisServer;
use common::*;
use futures_util::StreamExt;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

// ---- an external identity provider ----

/// A node that accepts the provider's tokens, with its keys `kids` in a file.
async fn provider_node(kids: &[&str], configure: impl FnOnce(&mut Settings)) -> TestNode {
    TestNode::start(|s| {
        idp::trust(s, kids);
        configure(s);
    })
    .await
}

fn ws(node: &TestNode, query: &str) -> String {
    format!("ws://{}/ws/chat?{query}", node.node.addr)
}

/// How an attempt to open a socket ended.
#[derive(Debug, PartialEq)]
enum Opened {
    /// `welcome`, for this user id.
    As(String),
    /// Closed before any `welcome`: the frames sent and the close code.
    Refused(Vec<Value>, Option<u16>),
}

async fn open(url: &str) -> Opened {
    match Client::open_or_refused(url).await {
        Opening::Welcomed(welcome) => Opened::As(welcome["user_id"].as_str().unwrap().to_owned()),
        Opening::Refused(frames, code) => Opened::Refused(frames, code),
    }
}

/// Asserts the contract's refusal of a socket: no `welcome`, at most one
/// `error` `unauthorized`, close 1008.
fn assert_refused(opened: Opened, what: &str) {
    match opened {
        Opened::As(user) => panic!("{what}: the socket opened as {user}"),
        Opened::Refused(frames, code) => {
            assert!(frames.len() <= 1, "{what}: {frames:?}");
            for frame in &frames {
                assert_eq!(frame["type"], "error", "{what}");
                assert_eq!(frame["code"], "unauthorized", "{what}");
            }
            assert_eq!(code, Some(1008), "{what}");
        }
    }
}

/// Asserts that `token` is refused over HTTP (401 `unauthorized`, a
/// sentence) and on the socket; answers the HTTP message.
async fn assert_token_refused(node: &TestNode, token: &str, what: &str) -> String {
    let (status, body) = node
        .api(Method::GET, "/api/conversations", Some(token), None)
        .await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("the ") && !message.contains("Error") && !message.contains("::"),
        "{what}: a sentence for people, not library text: {message}"
    );
    assert_refused(open(&ws(node, &format!("token={token}"))).await, what);
    message
}

/// Asserts that `token` is accepted over HTTP and opens a socket as `sub`.
async fn assert_token_accepted(node: &TestNode, token: &str, sub: &str, what: &str) {
    let (status, body) = node
        .api(Method::GET, "/api/conversations", Some(token), None)
        .await;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(
        open(&ws(node, &format!("token={token}"))).await,
        Opened::As(sub.to_owned()),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_signed_with_rs256_and_es256_are_accepted() {
    let node = provider_node(&["rsa-1", "ec-1"], |_| {}).await;
    let rsa = idp::key("rsa-1");
    let ec = idp::key("ec-1");
    assert_token_accepted(
        &node,
        &sign(&rsa, &claims("auth0|alice")),
        "auth0|alice",
        "RS256",
    )
    .await;
    assert_token_accepted(
        &node,
        &sign(&ec, &claims("bob@example.com")),
        "bob@example.com",
        "ES256",
    )
    .await;

    let mut array = claims("carol");
    array["aud"] = json!(["another-app", AUDIENCE]);
    assert_token_accepted(&node, &sign(&rsa, &array), "carol", "aud as an array").await;

    let longest = "é".repeat(256);
    assert_token_accepted(
        &node,
        &sign(&ec, &claims(&longest)),
        &longest,
        "sub of 256 characters",
    )
    .await;

    // The provider's user owns what it creates; a guest cannot see it.
    let alice = sign(&rsa, &claims("auth0|alice"));
    let (status, created) = node
        .api(Method::POST, "/api/conversations", Some(&alice), None)
        .await;
    assert_eq!(status, 201);
    let (status, listed) = node
        .api(Method::GET, "/api/conversations", Some(&alice), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["conversations"][0]["id"], created["id"]);
    let (guest, _) = node.guest().await;
    let path = format!("/api/conversations/{}", created["id"].as_str().unwrap());
    let (status, _) = node.api(Method::GET, &path, Some(&guest), None).await;
    assert_eq!(status, 403);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_has_at_most_sixty_seconds_of_leeway() {
    let rsa = idp::key("rsa-1");
    let expired_since = |seconds: i64| {
        let mut claims = claims("dave");
        claims["exp"] = json!(now() - seconds);
        sign(&rsa, &claims)
    };
    // JWT_LEEWAY_SECS as configured when under a minute.
    let node = provider_node(&["rsa-1"], |s| s.jwt_leeway_secs = 30).await;
    assert_token_accepted(&node, &expired_since(10), "dave", "within the leeway").await;
    let message = assert_token_refused(&node, &expired_since(45), "beyond the leeway").await;
    assert_eq!(message, "the token has expired");
    node.stop().await;
    // More is cut to a minute.
    let node = provider_node(&["rsa-1"], |s| s.jwt_leeway_secs = 3600).await;
    assert_token_accepted(&node, &expired_since(40), "dave", "within a minute").await;
    let message = assert_token_refused(&node, &expired_since(90), "beyond a minute").await;
    assert_eq!(message, "the token has expired");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_failing_any_check_are_refused() {
    let node = provider_node(&["rsa-1", "ec-1"], |s| s.jwt_leeway_secs = 30).await;
    let rsa = idp::key("rsa-1");
    let ec = idp::key("ec-1");
    let other_rsa = idp::key("rsa-2");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims("mallory");
        change(&mut claims);
        claims
    };
    let good = claims("mallory");
    let good_token = sign(&rsa, &good);
    let tampered = {
        let parts: Vec<&str> = good_token.split('.').collect();
        let forged = b64url(
            with(&|c| c["sub"] = json!("auth0|alice"))
                .to_string()
                .as_bytes(),
        );
        format!("{}.{forged}.{}", parts[0], parts[2])
    };
    let public_pem = fixture("idp-rsa-1.pub.pem");
    let public_jwk = fixture("jwk-rsa-1.json");
    let hmac_with = |secret: &[u8]| idp::hs256_as(secret, Some("rsa-1"), &good);
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong iss",
            sign(&rsa, &with(&|c| c["iss"] = json!("https://other.example/"))),
        ),
        (
            "no iss",
            sign(
                &rsa,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
            ),
        ),
        (
            "wrong aud",
            sign(&rsa, &with(&|c| c["aud"] = json!("another-app"))),
        ),
        (
            "aud array without ours",
            sign(&rsa, &with(&|c| c["aud"] = json!(["a", "b"]))),
        ),
        (
            "no aud",
            sign(
                &rsa,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
            ),
        ),
        (
            "expired beyond the leeway",
            sign(&rsa, &with(&|c| c["exp"] = json!(now() - 120))),
        ),
        (
            "no exp",
            sign(
                &ec,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
            ),
        ),
        (
            "not valid yet",
            sign(&rsa, &with(&|c| c["nbf"] = json!(now() + 600))),
        ),
        (
            "no sub",
            sign(
                &rsa,
                &with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
            ),
        ),
        ("empty sub", sign(&rsa, &with(&|c| c["sub"] = json!("")))),
        (
            "sub of 257 characters",
            sign(&rsa, &with(&|c| c["sub"] = json!("é".repeat(257)))),
        ),
        (
            "sub not a string",
            sign(&rsa, &with(&|c| c["sub"] = json!(42))),
        ),
        (
            "unknown kid",
            sign_as(&rsa, Algorithm::RS256, Some("rsa-9"), &good),
        ),
        ("no kid", sign_as(&rsa, Algorithm::RS256, None, &good)),
        ("a key the JWKS does not hold", sign(&other_rsa, &good)),
        (
            "another key under a known kid",
            sign_as(&other_rsa, Algorithm::RS256, Some("rsa-1"), &good),
        ),
        (
            "ES256 under the RSA key's kid",
            sign_as(&ec, Algorithm::ES256, Some("rsa-1"), &good),
        ),
        (
            "RS384 with the provider's key",
            sign_as(&rsa, Algorithm::RS384, Some("rsa-1"), &good),
        ),
        (
            "PS256 with the provider's key",
            sign_as(&rsa, Algorithm::PS256, Some("rsa-1"), &good),
        ),
        (
            "alg none",
            raw_token(
                &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
                &good,
                b"",
            ),
        ),
        (
            "alg none, no kid",
            raw_token(&json!({"alg": "none", "typ": "JWT"}), &good, b""),
        ),
        (
            "HS256 signed with the public key's PEM",
            hmac_with(&public_pem),
        ),
        (
            "HS256 signed with the public key's JWK",
            hmac_with(&public_jwk),
        ),
        ("tampered payload", tampered),
    ];
    for (what, token) in &cases {
        let message = assert_token_refused(&node, token, what).await;
        let expected = if what.starts_with("expired") {
            "the token has expired"
        } else {
            "the token is not valid"
        };
        assert_eq!(message, expected, "{what}");
    }
    // The same claims, properly signed, pass: each refusal was for its flaw.
    assert_token_accepted(&node, &good_token, "mallory", "the untouched token").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_an_identity_provider_refuses_its_tokens() {
    let node = TestNode::start(|_| {}).await;
    let token = sign(&idp::key("rsa-1"), &claims("auth0|alice"));
    let message = assert_token_refused(&node, &token, "RS256 without JWKS").await;
    assert_eq!(message, "the token is not valid");
    node.stop().await;
}

/// The error a node's start ends with, given these settings.
async fn start_error(configure: impl FnOnce(&mut Settings)) -> String {
    let mut settings = test_settings();
    configure(&mut settings);
    match Node::start(settings).await {
        Ok(node) => {
            node.stop(1001).await;
            panic!("the node started");
        }
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_identity_provider_stops_the_node_naming_the_variable() {
    let file = jwks_file(&["rsa-1"]);
    let empty = jwks_file(&[]);
    let oct = {
        let path = fresh_data_dir().with_extension("json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
        )
        .unwrap();
        path
    };
    let url = "https://idp.example.test/jwks.json".to_owned();
    type Configure = Box<dyn FnOnce(&mut Settings)>;
    let cases: Vec<(&[&str], Configure)> = vec![
        (&["JWT_JWKS_FILE", "JWT_JWKS_URL"], {
            let (file, url) = (file.clone(), url.clone());
            Box::new(move |s| {
                with_provider(s);
                s.jwt_jwks_file = Some(file);
                s.jwt_jwks_url = Some(url);
            })
        }),
        (&["JWT_ISSUER"], {
            let file = file.clone();
            Box::new(move |s| {
                with_provider(s);
                s.jwt_issuer = None;
                s.jwt_jwks_file = Some(file);
            })
        }),
        (&["JWT_AUDIENCE"], {
            let url = url.clone();
            Box::new(move |s| {
                with_provider(s);
                s.jwt_audience = Some(" ".into());
                s.jwt_jwks_url = Some(url);
            })
        }),
        (&["JWT_ISSUER"], Box::new(with_provider)),
        (
            &["JWT_JWKS_FILE"],
            Box::new(|s| {
                with_provider(s);
                s.jwt_jwks_file = Some("/nonexistent/jwks.json".into());
            }),
        ),
        (&["JWT_JWKS_FILE"], {
            let empty = empty.clone();
            Box::new(move |s| {
                with_provider(s);
                s.jwt_jwks_file = Some(empty);
            })
        }),
        (&["JWT_JWKS_FILE"], {
            let oct = oct.clone();
            Box::new(move |s| {
                with_provider(s);
                s.jwt_jwks_file = Some(oct);
            })
        }),
        (
            &["JWT_JWKS_URL"],
            Box::new(|s| {
                with_provider(s);
                s.jwt_jwks_url = Some("ftp://idp.example.test/jwks.json".into());
            }),
        ),
        (
            &["TRUSTED_PROXIES"],
            Box::new(|s| s.trusted_proxies = vec!["10.0.0.0/8".into(), "proxy.local".into()]),
        ),
        (
            &["ALLOWED_ORIGINS"],
            Box::new(|s| s.allowed_origins = vec!["chat.example.com".into()]),
        ),
    ];
    for (variables, configure) in cases {
        let error = start_error(configure).await;
        for variable in variables {
            assert!(error.contains(variable), "{variable} not named in: {error}");
        }
    }
}

#[test]
fn serve_exits_non_zero_on_identity_settings_naming_the_variable() {
    for (variable, value, named) in [
        ("JWT_ISSUER", ISSUER, "JWT_ISSUER"),
        ("JWT_JWKS_FILE", "/nonexistent/jwks.json", "JWT_JWKS_FILE"),
        ("TRUSTED_PROXIES", "not-an-address", "TRUSTED_PROXIES"),
    ] {
        let (status, stderr) = serve_with(variable, value);
        assert!(!status.success(), "{variable}={value:?} was accepted");
        assert!(
            stderr.contains(named),
            "{variable}={value:?}: {named} is not named in {stderr:?}"
        );
    }
}

// ---- keys from a URL ----

/// A stand-in identity provider: serves its JWKS over HTTP on 127.0.0.1 and
/// counts the fetches.
struct JwksServer {
    port: u16,
    fetches: Arc<AtomicUsize>,
    document: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(kids: &[&str]) -> JwksServer {
        JwksServer::start_on(0, kids).await
    }

    async fn start_on(port: u16, kids: &[&str]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let fetches = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(Mutex::new(jwks(kids)));
        let task = tokio::spawn({
            let (fetches, document) = (fetches.clone(), document.clone());
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(answer(socket, fetches.clone(), document.clone()));
                }
            }
        });
        JwksServer {
            port,
            fetches,
            document,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    /// Serves a JWKS holding `kids` from now on.
    fn publish(&self, kids: &[&str]) {
        *self.document.lock().unwrap() = jwks(kids);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP exchange: any request is answered with the current document.
/// The fetch is counted before the answer leaves, so a token accepted
/// thanks to it is never seen before its count.
async fn answer(
    mut socket: tokio::net::TcpStream,
    fetches: Arc<AtomicUsize>,
    document: Arc<Mutex<String>>,
) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    fetches.fetch_add(1, Ordering::SeqCst);
    let body = document.lock().unwrap().clone();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn url_node(url: String) -> TestNode {
    TestNode::start(|s| {
        with_provider(s);
        s.jwt_jwks_url = Some(url);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_url_are_fetched_once_and_kept() {
    let idp = JwksServer::start(&["rsa-1", "ec-1"]).await;
    let node = url_node(idp.url()).await;
    for round in 0..5 {
        for key in [idp::key("rsa-1"), idp::key("ec-1")] {
            let sub = format!("user-{round}");
            assert_token_accepted(&node, &sign(&key, &claims(&sub)), &sub, key.kid).await;
        }
    }
    assert_eq!(idp.fetches(), 1, "one fetch serves every token");

    // Made-up kids cost one more fetch, however many come, and no more
    // than one per cooldown (a slow machine may take longer than one for
    // these twenty requests).
    let rsa = idp::key("rsa-1");
    let started = Instant::now();
    for n in 0..20 {
        let token = sign_as(
            &rsa,
            Algorithm::RS256,
            Some(&format!("junk-{n}")),
            &claims("x"),
        );
        let (status, _) = node
            .api(Method::GET, "/api/conversations", Some(&token), None)
            .await;
        assert_eq!(status, 401);
    }
    let cooldowns = started.elapsed().as_secs_f64() / jwks::FETCH_COOLDOWN.as_secs_f64();
    let refetches = idp.fetches() - 1;
    assert!(
        refetches >= 1 && refetches as f64 <= 1.0 + cooldowns.floor(),
        "unknown kids do not hammer the provider: {refetches} fetches in {cooldowns:.2} cooldowns"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_fetches_the_keys_again_after_a_rotation() {
    let idp = JwksServer::start(&["rsa-1"]).await;
    let node = url_node(idp.url()).await;
    let (old, new) = (idp::key("rsa-1"), idp::key("rsa-2"));
    assert_token_accepted(&node, &sign(&old, &claims("erin")), "erin", "before").await;
    assert_eq!(idp.fetches(), 1);

    // The provider rotates: rsa-2 replaces rsa-1.
    idp.publish(&["rsa-2"]);
    assert_token_accepted(&node, &sign(&old, &claims("erin")), "erin", "still cached").await;
    assert_eq!(idp.fetches(), 1, "a known kid fetches nothing");
    assert_token_accepted(&node, &sign(&new, &claims("erin")), "erin", "the new key").await;
    assert_eq!(idp.fetches(), 2, "the new kid fetched the keys once");
    assert_token_accepted(
        &node,
        &sign(&new, &claims("frank")),
        "frank",
        "cached again",
    )
    .await;
    assert_eq!(idp.fetches(), 2);

    // The withdrawn key is gone with the document that no longer holds it.
    let message = assert_token_refused(&node, &sign(&old, &claims("erin")), "withdrawn").await;
    assert_eq!(message, "the token is not valid");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_starts_while_the_identity_provider_is_down() {
    // A port nobody listens on, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = url_node(format!("http://127.0.0.1:{port}/.well-known/jwks.json")).await;
    let token = sign(&idp::key("rsa-1"), &claims("grace"));
    let message = assert_token_refused(&node, &token, "the provider is down").await;
    assert_eq!(
        message,
        "the token cannot be checked right now; try again shortly"
    );
    // Guests are unaffected.
    let (guest, user) = node.guest().await;
    assert_token_accepted(&node, &guest, &user.to_string(), "a guest").await;

    let idp = JwksServer::start_on(port, &["rsa-1"]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, _) = node
            .api(Method::GET, "/api/conversations", Some(&token), None)
            .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 401);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider's token never became valid"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        idp.fetches(),
        1,
        "retries are spaced out: one fetch once it answered"
    );
    assert_token_accepted(&node, &token, "grace", "after the outage").await;
    node.stop().await;
}

// ---- guests switched off, and renewals ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_switched_off_keep_their_tokens_but_no_new_ones_are_issued() {
    // A guest of the cluster while guests were allowed.
    let before = TestNode::start(|_| {}).await;
    let (old_token, old_user) = before.guest().await;
    before.stop().await;

    let node = provider_node(&["rsa-1"], |s| s.guest_access = false).await;
    let (status, body) = node.api(Method::POST, "/api/auth/guest", None, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("guest access is switched off"),
        "{message}"
    );

    assert_token_accepted(
        &node,
        &old_token,
        &old_user.to_string(),
        "an old guest token",
    )
    .await;
    let (status, renewed) = refresh(&node, Some(&old_token)).await;
    assert_eq!(status, 200, "guests renew while switched off");
    assert_eq!(renewed["user_id"], old_user.to_string());

    // The provider's users sign in as usual.
    let token = sign(&idp::key("rsa-1"), &claims("heidi"));
    assert_token_accepted(&node, &token, "heidi", "a provider token").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_token_renews_into_a_node_token_ending_with_it() {
    let node = provider_node(&["ec-1"], |_| {}).await;
    let mut provider_claims = claims("ivan");
    let end = now() + 600;
    provider_claims["exp"] = json!(end);
    let token = sign(&idp::key("ec-1"), &provider_claims);

    let (status, renewed) = refresh(&node, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(renewed["user_id"], "ivan");
    assert_eq!(
        expiry(&renewed).timestamp(),
        end,
        "no longer than the provider granted"
    );
    let node_token = renewed["token"].as_str().unwrap().to_owned();
    assert_ne!(node_token, token);
    assert_token_accepted(&node, &node_token, "ivan", "the renewed token").await;

    // Renewing the renewal keeps the end.
    let (status, again) = refresh(&node, Some(&node_token)).await;
    assert_eq!(status, 200);
    assert_eq!(again["user_id"], "ivan");
    assert_eq!(expiry(&again).timestamp(), end);
    node.stop().await;
}

// ---- WebSocket tickets ----

/// `POST /api/ws-ticket` with `token`: the ticket.
async fn ticket(node: &TestNode, token: &str) -> String {
    let (status, body) = node
        .api(Method::POST, "/api/ws-ticket", Some(token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["ticket"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_one_socket_once() {
    let node = TestNode::start(|_| {}).await;
    let (token, user) = node.guest().await;
    let user = user.to_string();

    let (status, body) = node.api(Method::POST, "/api/ws-ticket", None, None).await;
    assert_eq!(status, 401, "a ticket needs a token");
    assert_eq!(body["error"]["code"], "unauthorized");

    let issued_at = chrono::Utc::now();
    let (status, body) = node
        .api(Method::POST, "/api/ws-ticket", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["expires_at", "ticket"]);
    let valid_for = expiry(&body) - issued_at;
    assert!(
        valid_for > chrono::Duration::seconds(25) && valid_for <= chrono::Duration::seconds(31),
        "valid for 30 seconds: {valid_for}"
    );
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    assert_ne!(ticket, token);

    assert_eq!(
        open(&ws(&node, &format!("ticket={ticket}"))).await,
        Opened::As(user.clone())
    );
    assert_refused(
        open(&ws(&node, &format!("ticket={ticket}"))).await,
        "second use",
    );
    // A used ticket is refused also next to a valid token: the ticket counts.
    assert_refused(
        open(&ws(&node, &format!("ticket={ticket}&token={token}"))).await,
        "used ticket with a token",
    );
    for (what, unknown) in [
        ("unknown", "0".repeat(64)),
        ("not a ticket", "abc".to_owned()),
        ("empty", String::new()),
        ("upper case", ticket.to_uppercase()),
    ] {
        assert_refused(open(&ws(&node, &format!("ticket={unknown}"))).await, what);
    }
    // Every ticket is new.
    let (first, second) = (
        ticket_of(&node, &token).await,
        ticket_of(&node, &token).await,
    );
    assert_ne!(first, second);
    assert_eq!(
        open(&ws(&node, &format!("ticket={second}"))).await,
        Opened::As(user.clone())
    );
    assert_eq!(
        open(&ws(&node, &format!("ticket={first}"))).await,
        Opened::As(user)
    );
    node.stop().await;
}

async fn ticket_of(node: &TestNode, token: &str) -> String {
    ticket(node, token).await
}

/// Keeps `ticket` for `user` in `node`'s engine for `ttl`, as
/// `POST /api/ws-ticket` would with a shorter lifetime; answers when it
/// expires at the latest.
async fn put_ticket(
    node: &TestNode,
    ticket: &str,
    user: &str,
    ttl: Duration,
) -> tokio::time::Instant {
    node.node
        .state
        .context
        .engine
        .put_ticket(&tickets::digest(ticket), &UserId::parse(user).unwrap(), ttl)
        .await
        .unwrap();
    tokio::time::Instant::now() + ttl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused() {
    let node = TestNode::start(|_| {}).await;
    let (_, user) = node.guest().await;
    let user = user.to_string();
    // The same way in, with a lifetime a test can wait out.
    let lasting = tickets::hex(&[7; 32]);
    put_ticket(&node, &lasting, &user, Duration::from_secs(30)).await;
    assert_eq!(
        open(&ws(&node, &format!("ticket={lasting}"))).await,
        Opened::As(user.clone())
    );

    let brief = tickets::hex(&[9; 32]);
    let expired_by = put_ticket(&node, &brief, &user, Duration::from_millis(200)).await;
    tokio::time::sleep_until(expired_by).await;
    assert_refused(
        open(&ws(&node, &format!("ticket={brief}"))).await,
        "expired",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_issued_on_one_node_opens_a_socket_on_another_once() {
    let redis = RedisServer::start();
    let a = TestNode::start(|s| s.redis_url = Some(redis.url())).await;
    let b = TestNode::start(|s| s.redis_url = Some(redis.url())).await;
    let (token, user) = a.guest().await;
    let user = user.to_string();

    let issued_on_a = ticket(&a, &token).await;
    assert_eq!(
        open(&ws(&b, &format!("ticket={issued_on_a}"))).await,
        Opened::As(user.clone())
    );
    assert_refused(
        open(&ws(&a, &format!("ticket={issued_on_a}"))).await,
        "used, on A",
    );
    assert_refused(
        open(&ws(&b, &format!("ticket={issued_on_a}"))).await,
        "used, on B",
    );

    let issued_on_b = ticket(&b, &token).await;
    assert_eq!(
        open(&ws(&a, &format!("ticket={issued_on_b}"))).await,
        Opened::As(user.clone())
    );
    assert_refused(
        open(&ws(&b, &format!("ticket={issued_on_b}"))).await,
        "used on A",
    );

    // Two nodes racing for one ticket: exactly one opens.
    let raced = ticket(&a, &token).await;
    let (url_a, url_b) = (
        ws(&a, &format!("ticket={raced}")),
        ws(&b, &format!("ticket={raced}")),
    );
    let (on_a, on_b) = tokio::join!(open(&url_a), open(&url_b));
    let opened = [&on_a, &on_b]
        .iter()
        .filter(|o| matches!(o, Opened::As(_)))
        .count();
    assert_eq!(opened, 1, "{on_a:?} {on_b:?}");

    // Redis forgets an expired ticket.
    let brief = tickets::hex(&[5; 32]);
    let expired_by = put_ticket(&a, &brief, &user, Duration::from_millis(200)).await;
    // Redis compares expiry in whole milliseconds.
    tokio::time::sleep_until(expired_by + Duration::from_millis(2)).await;
    assert_refused(
        open(&ws(&b, &format!("ticket={brief}"))).await,
        "expired in Redis",
    );
    a.stop().await;
    b.stop().await;
}

// ---- Origin ----

/// Upgrades with these extra headers: the user the socket opened as, or the
/// HTTP status and body of a refused upgrade.
async fn upgrade_with(
    node: &TestNode,
    token: &str,
    headers: &[(&str, &str)],
) -> Result<String, (u16, Value)> {
    let mut request = ws(node, &format!("token={token}"))
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("answers in time")
    {
        Ok((mut socket, _)) => {
            let frame = tokio::time::timeout(DEADLINE, socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
            assert_eq!(frame["type"], "welcome");
            let _ = socket.close(None).await;
            Ok(frame["user_id"].as_str().unwrap().to_owned())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("the upgrade failed otherwise: {other}"),
    }
}

fn assert_origin_refused(answer: Result<String, (u16, Value)>, what: &str) {
    match answer {
        Ok(user) => panic!("{what}: upgraded as {user}"),
        Err((status, body)) => {
            assert_eq!(status, 403, "{what}");
            assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_a_foreign_origin_is_refused() {
    let node =
        TestNode::start(|s| s.allowed_origins = vec!["https://chat.example.com".into()]).await;
    let (token, user) = node.guest().await;
    let user = user.to_string();
    let own = format!("http://{}", node.node.addr);
    let upgrade = |headers: Vec<(&'static str, String)>| {
        let (node, token) = (&node, token.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            upgrade_with(node, &token, &headers).await
        }
    };
    assert_eq!(
        upgrade(vec![]).await,
        Ok(user.clone()),
        "no Origin: not a browser"
    );
    assert_eq!(
        upgrade(vec![("Origin", own.clone())]).await,
        Ok(user.clone()),
        "its own origin"
    );
    assert_eq!(
        upgrade(vec![("Origin", "https://chat.example.com".into())]).await,
        Ok(user.clone()),
        "an allowed origin"
    );
    for origin in [
        "https://evil.example",
        "null",
        "https://chat.example.com.evil.example",
        &format!("https://{}", node.node.addr),
        &format!("http://localhost:{}", node.node.addr.port()),
    ] {
        assert_origin_refused(upgrade(vec![("Origin", origin.to_owned())]).await, origin);
    }
    // X-Forwarded-* from a peer not in TRUSTED_PROXIES are ignored.
    let forwarded = |origin: &str| {
        vec![
            ("Origin", origin.to_owned()),
            ("X-Forwarded-Proto", "https".to_owned()),
            ("X-Forwarded-Host", "chat.example.org".to_owned()),
        ]
    };
    assert_origin_refused(
        upgrade(forwarded("https://chat.example.org")).await,
        "untrusted forwarded headers",
    );
    assert_eq!(upgrade(forwarded(&own)).await, Ok(user.clone()));

    // A refused upgrade spends no ticket.
    let ticket = ticket(&node, &token).await;
    let mut request = ws(&node, &format!("ticket={ticket}"))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    assert_eq!(
        open(&ws(&node, &format!("ticket={ticket}"))).await,
        Opened::As(user)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_origin_is_the_nodes_own() {
    let node = TestNode::start(|s| s.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let (token, user) = node.guest().await;
    let user = user.to_string();
    let own = format!("http://{}", node.node.addr);
    let forwarded = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "chat.example.org"),
    ];
    let with = |origin: &'static str| {
        let mut headers = forwarded.to_vec();
        headers.push(("Origin", origin));
        headers
    };
    assert_eq!(
        upgrade_with(&node, &token, &with("https://chat.example.org")).await,
        Ok(user.clone())
    );
    let own_origin: &'static str = Box::leak(own.clone().into_boxed_str());
    assert_origin_refused(
        upgrade_with(&node, &token, &with(own_origin)).await,
        "behind the proxy, the node's address is not the page's origin",
    );
    assert_origin_refused(
        upgrade_with(&node, &token, &with("http://chat.example.org")).await,
        "the forwarded scheme counts",
    );
    // A trusted peer that forwards nothing: its Host.
    assert_eq!(
        upgrade_with(&node, &token, &[("Origin", own.as_str())]).await,
        Ok(user)
    );
    node.stop().await;
}

// ---- the admin token ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_token_opens_admin_actors() {
    let node = TestNode::start(|_| {}).await;
    let (status, body) = node.api(Method::GET, "/admin/actors", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let mut same_length = ADMIN_TOKEN.to_owned();
    same_length.replace_range(0..1, "X");
    let shorter = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let longer = format!("{ADMIN_TOKEN}x");
    let (guest, _) = node.guest().await;
    for wrong in [
        "x",
        shorter,
        longer.as_str(),
        same_length.as_str(),
        guest.as_str(),
    ] {
        let (status, body) = node
            .api(Method::GET, "/admin/actors", Some(wrong), None)
            .await;
        assert_eq!(status, 403, "{wrong}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) = node
        .api(Method::GET, "/admin/actors", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, 200);
    assert!(body["actors"].is_array());
    node.stop().await;
}
