//! Black-box test harness: a real node on 127.0.0.1:0, real WebSocket and HTTP
//! clients speaking the wire contract, and a strict client-side view that
//! fails the test on any gap, repeat or reordering.

#![allow(dead_code)]

pub mod follower;
pub mod local_cluster;
pub mod node_process;
pub mod postgres;
pub mod redis_cluster;
pub mod redis_server;
pub mod tcp_proxy;

use std::collections::VecDeque;
use std::time::Duration;

use chatstream::config::Settings;
use chatstream::node::Node;
use chatstream::protocol::{Event, Message, Role, ServerFrame};
use chatstream::providers::{ChatTurn, DemoProvider};
use chatstream::transcript::Transcript;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);
pub const ADMIN_TOKEN: &str = "test-admin-token-of-at-least-32-bytes";
pub const AUTH_SECRET: &str = "test-auth-secret-of-at-least-32-bytes";

/// An HTTP client that never reuses a connection the node may be closing:
/// actix closes idle keep-alive connections after 5 s, and a request sent on
/// one at that moment fails ("connection closed before message completed").
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}

/// Settings for a fast test node on a free port.
pub fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".into();
    settings.redis_url = None;
    // Every test node keeps its durable store in a directory of its own.
    settings.data_dir = std::env::temp_dir()
        .join("chatstream-tests")
        .join(Uuid::new_v4().simple().to_string());
    settings.auth_secret = Some(AUTH_SECRET.into());
    settings.admin_token = Some(ADMIN_TOKEN.into());
    settings.demo_token_delay_ms = 4;
    settings.demo_reply_tokens = 30;
    settings.http_workers = 1;
    settings.coalesce_ms = 0;
    // Every test guest comes from 127.0.0.1 and many tests call the API in
    // quick loops: the request limits are tested at their edges on their
    // own (tests/limits.rs), not here.
    settings.guest_tokens_per_minute = 1_000_000;
    settings.api_requests_per_second = 1_000_000;
    settings
}

pub struct TestNode {
    pub node: Node,
    pub http: reqwest::Client,
}

impl TestNode {
    pub async fn start(configure: impl FnOnce(&mut Settings)) -> TestNode {
        let mut settings = test_settings();
        configure(&mut settings);
        TestNode {
            node: Node::start(settings).await.expect("node starts"),
            http: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws/chat?token={token}", self.node.addr)
    }

    /// A new guest: (token, user id).
    pub async fn guest(&self) -> (String, Uuid) {
        let body: Value = self
            .http
            .post(self.url("/api/auth/guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = body["token"].as_str().unwrap().to_owned();
        let user = body["user_id"].as_str().unwrap().parse().unwrap();
        (token, user)
    }

    pub async fn connect(&self, token: &str) -> Client {
        Client::connect(&self.ws_url(token)).await
    }

    /// An HTTP call with a bearer token: (status, JSON body or Null).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn stop(self) {
        self.node.stop(1001).await;
    }
}

/// An acknowledged `send`: the ack and the ids every test reads from it.
pub struct Sent {
    pub ack: Value,
    pub conversation: String,
    pub reply_id: String,
}

/// A guest's HTTP session with one node: its token and the JSON API.
pub struct Guest {
    http: reqwest::Client,
    base: String,
    pub token: String,
}

impl Guest {
    pub async fn new(addr: std::net::SocketAddr) -> Guest {
        let http = http_client();
        let base = format!("http://{addr}");
        let guest: Value = http
            .post(format!("{base}/api/auth/guest"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Guest {
            http,
            base,
            token: guest["token"].as_str().unwrap().to_owned(),
        }
    }

    /// A call with this guest's token: (status, JSON body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A plain-text page of the node, such as `/metrics`.
    pub async fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The conversation's assistant reply once `condition` holds for it.
    pub async fn reply_when(
        &self,
        conversation_id: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let path = format!("/api/conversations/{conversation_id}");
            let reply = self.call(reqwest::Method::GET, &path, None).await.1["messages"][1].clone();
            if condition(&reply) {
                return reply;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reply never got there: {reply}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How a socket ended.
/// How an attempt to open a socket ended.
#[derive(Debug)]
pub enum Opening {
    /// The `welcome` frame.
    Welcomed(Value),
    /// Closed before any `welcome`: the frames sent and the close code.
    Refused(Vec<Value>, Option<u16>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: Option<u16>,
}

/// A WebSocket client that keeps frames it was not waiting for.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for another one, in arrival order.
    backlog: VecDeque<Value>,
    pub welcome: Value,
    next_id: u64,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Client::try_connect(url).await.expect("websocket connects")
    }

    /// Connects, or says why not (the node may be down).
    pub async fn try_connect(url: &str) -> Result<Client, String> {
        let (socket, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let mut client = Client {
            socket,
            backlog: VecDeque::new(),
            welcome: Value::Null,
            next_id: 0,
        };
        client.welcome = client
            .next()
            .await
            .map_err(|closed| format!("closed before welcome: {closed:?}"))?;
        if client.welcome["type"] != "welcome" {
            return Err(format!("first frame is not welcome: {}", client.welcome));
        }
        Ok(client)
    }

    /// Opens a socket and reads until it is welcomed (then closes it) or
    /// closed: for tests of who may open one.
    pub async fn open_or_refused(url: &str) -> Opening {
        let (mut socket, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("upgrades in time")
            .expect("the upgrade happens");
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("a frame or a close in time")
            {
                Some(Ok(WsMessage::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text).expect("frames are JSON");
                    if frame["type"] == "welcome" {
                        let _ = socket.close(None).await;
                        return Opening::Welcomed(frame);
                    }
                    frames.push(frame);
                }
                Some(Ok(WsMessage::Close(close))) => {
                    return Opening::Refused(frames, close.map(|c| u16::from(c.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Opening::Refused(frames, None),
            }
        }
    }

    /// Connects and returns the frames and close code a refused socket gives.
    pub async fn connect_refused(url: &str) -> (Vec<Value>, Closed) {
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade happens");
        let mut frames = Vec::new();
        loop {
            match tokio::time::timeout(DEADLINE, socket.next())
                .await
                .expect("closes in time")
            {
                Some(Ok(WsMessage::Text(text))) => {
                    frames.push(serde_json::from_str(&text).unwrap())
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return (
                        frames,
                        Closed {
                            code: frame.map(|f| u16::from(f.code)),
                        },
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, Closed { code: None }),
            }
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(WsMessage::text(text))
            .await
            .expect("frame sent");
    }

    pub async fn send_raw(&mut self, message: WsMessage) -> Result<(), tungstenite::Error> {
        self.socket.send(message).await
    }

    /// The next frame, from the backlog first.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        if let Some(frame) = self.backlog.pop_front() {
            return Ok(frame);
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Value, Closed> {
        loop {
            let message = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("a frame arrives before the deadline");
            match message {
                Some(Ok(WsMessage::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("frames are JSON"));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(Closed {
                        code: frame.map(|f| u16::from(f.code)),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Closed { code: None }),
            }
        }
    }

    /// Sends `frame` with a fresh `id` and returns the reply echoing it; other
    /// frames that arrive meanwhile stay in the backlog, in order.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await;
        let mut skipped = VecDeque::new();
        loop {
            let reply = self.read().await.expect("socket stays open for the reply");
            if reply["id"] == json!(id) {
                skipped.extend(self.backlog.drain(..));
                self.backlog = skipped;
                return reply;
            }
            skipped.push_back(reply);
        }
    }

    /// Forgets frames read while waiting for a reply.
    pub fn discard_backlog(&mut self) {
        self.backlog.clear();
    }

    /// Sends `content` (into a new conversation) and answers its ack.
    pub async fn send_turn(&mut self, content: &str) -> Sent {
        let ack = self
            .request(json!({"type": "send", "content": content}))
            .await;
        assert_eq!(ack["type"], "ack", "send is acknowledged: {ack}");
        Sent {
            conversation: ack["conversation_id"].as_str().unwrap().to_owned(),
            reply_id: ack["assistant_message_id"].as_str().unwrap().to_owned(),
            ack,
        }
    }

    /// Frames until (and including) the first matching `stop`.
    pub async fn until(&mut self, mut stop: impl FnMut(&Value) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await.expect("socket stays open");
            let done = stop(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Waits for the socket to close and returns its close code.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match self.read().await {
                Ok(_) => continue,
                Err(closed) => return closed,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub fn close_code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// True for the event that ends the assistant message `message_id`.
pub fn ends(frame: &Value, message_id: &str) -> bool {
    frame["type"] == "event"
        && frame["event"]["message_id"] == message_id
        && matches!(
            frame["event"]["kind"].as_str(),
            Some("done" | "cancelled" | "failed")
        )
}

/// A client's strict view of one conversation: applies frames as a careful
/// client would and fails on any gap, repeat or reordering.
#[derive(Debug, Default)]
pub struct View {
    pub epoch: Option<String>,
    pub seq: u64,
    pub transcript: Transcript,
    /// Every event seq applied, in order.
    pub applied: Vec<u64>,
}

impl View {
    /// Applies one server frame of this conversation (others are ignored).
    pub fn apply(&mut self, conversation_id: &str, frame: &Value) {
        if frame["conversation_id"] != conversation_id {
            return;
        }
        let parsed: ServerFrame =
            serde_json::from_value(frame.clone()).expect("frame matches the contract");
        match parsed {
            ServerFrame::Snapshot {
                epoch,
                seq,
                messages,
                branches,
                ..
            } => {
                self.epoch = Some(epoch);
                self.seq = seq;
                // The whole tree in log order: by `created_at`, the active
                // path first on a tie (docs/protocol.md, "Versions and
                // branches").
                let mut tree = messages;
                tree.extend(branches);
                tree.sort_by_key(|m| m.created_at);
                self.transcript = Transcript::from_messages(tree);
            }
            ServerFrame::Event {
                epoch, seq, event, ..
            } => {
                match &self.epoch {
                    Some(current) => assert_eq!(current, &epoch, "event of another epoch"),
                    None => self.epoch = Some(epoch),
                }
                assert_eq!(
                    seq,
                    self.seq + 1,
                    "events arrive once each, in seq order, with no gap"
                );
                self.seq = seq;
                self.applied.push(seq);
                self.transcript
                    .apply(&event)
                    .expect("every event applies to the state before it");
            }
            _ => {}
        }
    }

    pub fn apply_all(&mut self, conversation_id: &str, frames: &[Value]) {
        for frame in frames {
            self.apply(conversation_id, frame);
        }
    }

    pub fn messages(&self) -> &[Message] {
        self.transcript.messages()
    }
}

/// The text of every `delta` of `message_id` in `frames`, concatenated.
pub fn delta_text(frames: &[Value], message_id: &str) -> String {
    frames
        .iter()
        .filter(|f| {
            f["type"] == "event"
                && f["event"]["kind"] == "delta"
                && f["event"]["message_id"] == message_id
        })
        .map(|f| f["event"]["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The demo model's reply (with `tokens` tokens) to a conversation.
pub fn demo_conversation_reply(tokens: usize, history: &[(Role, &str)]) -> String {
    let history: Vec<ChatTurn> = history
        .iter()
        .map(|(role, content)| ChatTurn {
            role: *role,
            content: (*content).to_owned(),
        })
        .collect();
    DemoProvider::new(Duration::ZERO, tokens)
        .reply_tokens(&history)
        .concat()
}

/// The demo model's reply (with `tokens` tokens) to a single question.
pub fn demo_reply(tokens: usize, question: &str) -> String {
    demo_conversation_reply(tokens, &[(Role::User, question)])
}

/// True when a frame shows the reply ended: its ending event, or a snapshot
/// taken after it.
pub fn reply_over(frame: &Value, reply_id: &str) -> bool {
    ends(frame, reply_id)
        || (frame["type"] == "snapshot"
            && frame["messages"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["id"] == reply_id && m["status"] != "streaming")
            }))
}

/// Parses an event frame's event.
pub fn event_of(frame: &Value) -> Event {
    serde_json::from_value(frame["event"].clone()).unwrap()
}

/// Polls `condition` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when `text` reads as a sentence for people: none of the library
/// text, file paths or addresses that the contract keeps out of what users
/// see (`error.message`, HTTP error bodies). Answers what is wrong, if
/// anything.
pub fn library_text_in(text: &str) -> Option<&'static str> {
    const TELLTALES: &[&str] = &[
        "serde",
        "line 1",
        "column ",
        "jsonwebtoken",
        "JsonPayloadError",
        "tungstenite",
        "actix",
        "sqlx",
        "redis",
        "::",
        "Error {",
        "Error(",
        "ErrorKind",
        "InvalidSignature",
        "InvalidToken",
        "Base64",
        "recursion limit",
        "EOF",
        "://",
        ".rs",
        "/src/",
        "/work/",
        "/home/",
        "/tmp/",
        "/etc/",
        "/proc/",
        "127.0.0.1",
        "localhost",
    ];
    if text.trim().is_empty() {
        return Some("an empty message");
    }
    TELLTALES
        .iter()
        .find(|telltale| text.to_lowercase().contains(&telltale.to_lowercase()))
        .copied()
}

/// Tokens of a stand-in identity provider whose keys are the fixtures in
/// `tests/fixtures/` (`generate.sh` there made them), for every suite that
/// needs provider tokens.
pub mod idp {
    use std::path::{Path, PathBuf};

    use chatstream::config::Settings;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    pub const ISSUER: &str = "https://idp.example.test/";
    pub const AUDIENCE: &str = "chatstream-tests";

    pub fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A JWKS document holding the fixture keys `kids` (`rsa-1`, `rsa-2`,
    /// `ec-1`).
    pub fn jwks(kids: &[&str]) -> String {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| serde_json::from_slice(&fixture(&format!("jwk-{kid}.json"))).unwrap())
            .collect();
        json!({ "keys": keys }).to_string()
    }

    /// A JWKS file holding the fixture keys `kids`, in a directory of its own.
    pub fn jwks_file(kids: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir()
            .join("chatstream-tests")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        std::fs::write(&file, jwks(kids)).unwrap();
        file
    }

    /// Settings naming the provider's issuer and audience, with no keys yet.
    pub fn with_provider(settings: &mut Settings) {
        settings.jwt_issuer = Some(ISSUER.into());
        settings.jwt_audience = Some(AUDIENCE.into());
    }

    /// Settings that accept the provider's tokens signed with `kids`.
    pub fn trust(settings: &mut Settings, kids: &[&str]) {
        with_provider(settings);
        settings.jwt_jwks_file = Some(jwks_file(kids));
    }

    /// One of the provider's private keys, with its `kid` and algorithm.
    pub struct Key {
        pub kid: &'static str,
        pub alg: Algorithm,
        pub key: EncodingKey,
    }

    pub fn key(kid: &'static str) -> Key {
        let der = fixture(&format!("idp-{kid}.der"));
        match kid {
            "ec-1" => Key {
                kid,
                alg: Algorithm::ES256,
                key: EncodingKey::from_ec_der(&der),
            },
            _ => Key {
                kid,
                alg: Algorithm::RS256,
                key: EncodingKey::from_rsa_der(&der),
            },
        }
    }

    pub fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    /// What the provider would issue to `sub`: valid for ten minutes.
    pub fn claims(sub: &str) -> Value {
        json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600})
    }

    /// `claims` signed by `key`, the header naming its `kid` and algorithm.
    pub fn sign(key: &Key, claims: &Value) -> String {
        sign_as(key, key.alg, Some(key.kid), claims)
    }

    pub fn sign_as(key: &Key, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key.key).unwrap()
    }

    /// An HS256 token as a node issues to guests, signed with `secret`.
    pub fn hs256(secret: &[u8], claims: &Value) -> String {
        hs256_as(secret, None, claims)
    }

    /// An HS256 token signed with `secret`, its header naming `kid`: for
    /// HMAC keyed with what is public, such as the provider's public key.
    pub fn hs256_as(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// A token assembled by hand: for headers no signing library writes.
    pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes()),
            b64url(signature)
        )
    }

    /// The base64url alphabet (RFC 4648, section 5).
    const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// base64url without padding (RFC 7515).
    pub fn b64url(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// base64url (padded or not) to bytes.
    pub fn b64url_decode(text: &str) -> Vec<u8> {
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for byte in text.bytes().filter(|b| *b != b'=') {
            let value = B64URL.iter().position(|a| *a == byte).expect("base64url") as u32;
            bits = (bits << 6) | value;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        out
    }
}
