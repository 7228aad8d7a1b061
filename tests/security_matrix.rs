//! The security matrix: every client frame over the WebSocket and every HTTP
//! route, called by every kind of caller, against the contract's answer
//! (`Identity`, `Exact rules`, `Identity, origins and limits (contract 1.1)`).
//!
//! One table, `MATRIX`: a line per operation, a column per caller, each
//! cell the answer the contract gives. The table runs in three scenarios:
//!
//! - `guest-owned`: a guest owns the resources; the other callers are a
//!   second guest, an identity provider's user, and bad credentials (none,
//!   garbage, a token claiming the owner's id signed with another key, an
//!   expired one, both as guests are issued);
//! - `provider-owned`: the identity provider's user owns them; the others
//!   are a second provider user, a guest, and bad provider credentials;
//! - `guests-off`: `GUEST_ACCESS=false`; the owner is a guest whose token
//!   was issued (by a node with the same `AUTH_SECRET`) before, which stays
//!   valid; issuing a new guest is refused.
//!
//! Each case gets fresh resources: a conversation of the owner whose first
//! message (and so its title) holds a marker no other conversation has.
//! Nothing any caller other than the owner receives, in any answer (HTTP
//! body, every WebSocket frame up to a closing `ping`), may contain it; the
//! owner's reads must (so the check can see a leak). A refused change must
//! leave the owner's conversation as it was. Every failing case is collected
//! and reported together, each named `scenario › operation × caller`.

mod common;

use std::fmt;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

// ---- the table ----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    WsSubscribe,
    WsUnsubscribe,
    WsSendExisting,
    WsSendNew,
    WsCancel,
    WsPing,
    ListConversations,
    CreateConversation,
    GetConversation,
    DeleteConversation,
    ChatExisting,
    ChatNew,
    Cancel,
    Models,
    Search,
    Refresh,
    WsTicket,
    AdminActors,
    GuestIssuance,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Owner,
    /// Another user of the owner's kind (guest or provider user).
    Other,
    /// A user of the other kind: a provider user facing a guest's
    /// resources, or a guest facing a provider user's.
    OtherKind,
    NoToken,
    Garbage,
    /// The owner's user id, signed with a key the node does not trust.
    ForgedSignature,
    /// The owner's user id, properly signed, expired.
    Expired,
}

const CALLERS: [Caller; 7] = [
    Caller::Owner,
    Caller::Other,
    Caller::OtherKind,
    Caller::NoToken,
    Caller::Garbage,
    Caller::ForgedSignature,
    Caller::Expired,
];

/// The contract's answer in one cell.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// WebSocket: a reply of this `type`.
    Reply(&'static str),
    /// WebSocket: an `error` with this code, the connection open.
    WsError(&'static str),
    /// WebSocket: upgraded, no `welcome`, at most one `error`
    /// `unauthorized`, closed with 1008.
    Refused,
    /// HTTP: this status, and this `error.code` when given.
    Http(u16, Option<&'static str>),
    /// `POST /api/auth/guest`: 200, or 403 `forbidden` with guests off.
    GuestIssuance,
}

use Want::{GuestIssuance as GUEST, Refused as REFUSED, Reply, WsError};

const H200: Want = Want::Http(200, None);
const H201: Want = Want::Http(201, None);
const H202: Want = Want::Http(202, None);
const H204: Want = Want::Http(204, None);
const H401: Want = Want::Http(401, Some("unauthorized"));
const H403: Want = Want::Http(403, Some("forbidden"));
const FORBIDDEN: Want = WsError("forbidden");

#[rustfmt::skip]
const MATRIX: &[(Op, [Want; 7])] = &[
    //                              owner                   other user              user of the other kind  no token  garbage   forged sig  expired
    (Op::WsSubscribe,              [Reply("subscribed"),   FORBIDDEN,              FORBIDDEN,              REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    // Unsubscribing from a conversation not followed answers `unsubscribed`.
    (Op::WsUnsubscribe,            [Reply("unsubscribed"), Reply("unsubscribed"),  Reply("unsubscribed"),  REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    (Op::WsSendExisting,           [Reply("ack"),          FORBIDDEN,              FORBIDDEN,              REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    (Op::WsSendNew,                [Reply("ack"),          Reply("ack"),           Reply("ack"),           REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    (Op::WsCancel,                 [Reply("ack"),          FORBIDDEN,              FORBIDDEN,              REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    (Op::WsPing,                   [Reply("pong"),         Reply("pong"),          Reply("pong"),          REFUSED,  REFUSED,  REFUSED,    REFUSED]),
    (Op::ListConversations,        [H200,                  H200,                   H200,                   H401,     H401,     H401,       H401]),
    (Op::CreateConversation,       [H201,                  H201,                   H201,                   H401,     H401,     H401,       H401]),
    (Op::GetConversation,          [H200,                  H403,                   H403,                   H401,     H401,     H401,       H401]),
    (Op::DeleteConversation,       [H204,                  H403,                   H403,                   H401,     H401,     H401,       H401]),
    (Op::ChatExisting,             [H202,                  H403,                   H403,                   H401,     H401,     H401,       H401]),
    (Op::ChatNew,                  [H202,                  H202,                   H202,                   H401,     H401,     H401,       H401]),
    (Op::Cancel,                   [H202,                  H403,                   H403,                   H401,     H401,     H401,       H401]),
    (Op::Models,                   [H200,                  H200,                   H200,                   H401,     H401,     H401,       H401]),
    (Op::Search,                   [H200,                  H200,                   H200,                   H401,     H401,     H401,       H401]),
    (Op::Refresh,                  [H200,                  H200,                   H200,                   H401,     H401,     H401,       H401]),
    (Op::WsTicket,                 [H200,                  H200,                   H200,                   H401,     H401,     H401,       H401]),
    // Any bearer token but ADMIN_TOKEN: 403; none: 401.
    (Op::AdminActors,              [H403,                  H403,                   H403,                   H401,     H403,     H403,       H403]),
    // Needs no token, looks at none.
    (Op::GuestIssuance,            [GUEST,                 GUEST,                  GUEST,                  GUEST,    GUEST,    GUEST,      GUEST]),
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::WsSubscribe => "WS subscribe",
            Op::WsUnsubscribe => "WS unsubscribe",
            Op::WsSendExisting => "WS send (into the conversation)",
            Op::WsSendNew => "WS send (new conversation)",
            Op::WsCancel => "WS cancel",
            Op::WsPing => "WS ping",
            Op::ListConversations => "GET /api/conversations",
            Op::CreateConversation => "POST /api/conversations",
            Op::GetConversation => "GET /api/conversations/{id}",
            Op::DeleteConversation => "DELETE /api/conversations/{id}",
            Op::ChatExisting => "POST /api/chat (into the conversation)",
            Op::ChatNew => "POST /api/chat (new conversation)",
            Op::Cancel => "POST /api/cancel",
            Op::Models => "GET /api/models",
            Op::Search => "GET /api/search",
            Op::Refresh => "POST /api/auth/refresh",
            Op::WsTicket => "POST /api/ws-ticket",
            Op::AdminActors => "GET /admin/actors",
            Op::GuestIssuance => "POST /api/auth/guest",
        }
    }

    fn is_ws(self) -> bool {
        matches!(
            self,
            Op::WsSubscribe
                | Op::WsUnsubscribe
                | Op::WsSendExisting
                | Op::WsSendNew
                | Op::WsCancel
                | Op::WsPing
        )
    }

    /// Whether the owner's reply must still be streaming when the case
    /// runs (to cancel it, or to see live events leak); otherwise it ended,
    /// so that a send into the conversation is allowed.
    fn needs_streaming(self) -> bool {
        matches!(self, Op::WsSubscribe | Op::WsCancel | Op::Cancel)
    }

    /// The owner's answer shows the conversation's content: the marker
    /// must be in it (which shows the leak check can see a leak).
    fn owner_reads_content(self) -> bool {
        matches!(
            self,
            Op::WsSubscribe | Op::ListConversations | Op::GetConversation | Op::Search
        )
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Caller::Owner => "the owner",
            Caller::Other => "another user",
            Caller::OtherKind => "a user of the other kind",
            Caller::NoToken => "no token",
            Caller::Garbage => "a garbage token",
            Caller::ForgedSignature => "the owner's id, forged signature",
            Caller::Expired => "the owner's id, expired",
        })
    }
}

// ---- scenarios ----

/// A secret the nodes do not know, for forged guest tokens.
const FOREIGN_SECRET: &[u8] = b"a-secret-no-test-node-knows-of-32-bytes";

/// Settings of every matrix node: the identity provider trusted, and the
/// per-user limits out of the way (they are tested at their edges in
/// tests/limits.rs; the matrix opens hundreds of sockets and replies).
fn matrix_settings(settings: &mut chatstream::config::Settings) {
    idp::trust(settings, &["rsa-1", "ec-1"]);
    settings.max_connections_per_user = 10_000;
    settings.max_generations_per_user = 10_000;
    settings.frames_per_second = 100_000;
    // Long replies, so that a reply is still streaming when a case needs
    // it; every case cancels what it started.
    settings.demo_token_delay_ms = 5;
    settings.demo_reply_tokens = 4_000;
}

fn guest_claims(sub: &str, exp: i64) -> Value {
    json!({"sub": sub, "iat": idp::now() - 60, "exp": exp})
}

/// The credentials of every caller, by `Caller` index.
struct Callers {
    tokens: [Option<String>; 7],
}

impl Callers {
    fn token(&self, caller: Caller) -> Option<&str> {
        self.tokens[CALLERS.iter().position(|c| *c == caller).unwrap()].as_deref()
    }
}

/// Guest tokens for the owner and another guest, issued by `node`, plus
/// the bad credentials of a guest owner.
async fn guest_callers(issuer: &TestNode, provider_user: &str) -> Callers {
    let (owner, owner_id) = issuer.guest().await;
    let (other, _) = issuer.guest().await;
    let owner_id = owner_id.to_string();
    Callers {
        tokens: [
            Some(owner),
            Some(other),
            Some(idp::sign(&idp::key("rsa-1"), &idp::claims(provider_user))),
            None,
            Some("not-a-token".into()),
            Some(idp::hs256(
                FOREIGN_SECRET,
                &guest_claims(&owner_id, idp::now() + 600),
            )),
            Some(idp::hs256(
                AUTH_SECRET.as_bytes(),
                &guest_claims(&owner_id, idp::now() - 3600),
            )),
        ],
    }
}

/// The provider's users as owner and other, a guest of `node`, plus the
/// bad credentials of a provider user.
async fn provider_callers(node: &TestNode) -> Callers {
    let owner = "auth0|matrix-owner";
    let (guest, _) = node.guest().await;
    let mut expired = idp::claims(owner);
    expired["exp"] = json!(idp::now() - 3600);
    Callers {
        tokens: [
            Some(idp::sign(&idp::key("rsa-1"), &idp::claims(owner))),
            Some(idp::sign(
                &idp::key("ec-1"),
                &idp::claims("auth0|matrix-other"),
            )),
            Some(guest),
            None,
            Some("eyJhbGciOiJSUzI1NiJ9.garbage.garbage".into()),
            // Signed with a key the JWKS does not hold, under a kid it does.
            Some(idp::sign_as(
                &idp::key("rsa-2"),
                jsonwebtoken::Algorithm::RS256,
                Some("rsa-1"),
                &idp::claims(owner),
            )),
            Some(idp::sign(&idp::key("rsa-1"), &expired)),
        ],
    }
}

struct Scenario {
    name: &'static str,
    node: TestNode,
    guest_access: bool,
    callers: Callers,
    /// The owner's socket that makes each case's conversation.
    control: Client,
}

/// The owner's conversation for one case.
struct Fixture {
    marker: String,
    conversation: String,
    reply: String,
}

impl Scenario {
    async fn new(
        name: &'static str,
        node: TestNode,
        guest_access: bool,
        callers: Callers,
    ) -> Scenario {
        let owner = callers.token(Caller::Owner).unwrap();
        let control = node.connect(owner).await;
        Scenario {
            name,
            node,
            guest_access,
            callers,
            control,
        }
    }

    async fn fixture(&mut self, streaming: bool) -> Fixture {
        let marker = format!("Zq{}", &uuid::Uuid::new_v4().simple().to_string()[..14]);
        let sent = self
            .control
            .send_turn(&format!("Secret plan {marker} for the launch"))
            .await;
        if !streaming {
            let ack = self
                .control
                .request(json!({"type": "cancel", "message_id": sent.reply_id}))
                .await;
            assert_eq!(
                ack["type"], "ack",
                "{}: the fixture's cancel: {ack}",
                self.name
            );
            self.control.until(|f| ends(f, &sent.reply_id)).await;
        }
        let left = self
            .control
            .request(json!({"type": "unsubscribe", "conversation_id": sent.conversation}))
            .await;
        assert_eq!(left["type"], "unsubscribed", "{}: {left}", self.name);
        self.control.discard_backlog();
        Fixture {
            marker,
            conversation: sent.conversation,
            reply: sent.reply_id,
        }
    }

    /// Stops what a case left streaming: the fixture's reply, and replies
    /// the case started (as their sender).
    async fn clean_up(&mut self, fixture: &Fixture, started: &[(Option<String>, String)]) {
        let _ = self
            .control
            .request(json!({"type": "cancel", "message_id": fixture.reply}))
            .await;
        self.control.discard_backlog();
        for (token, reply) in started {
            let _ = self
                .node
                .api(
                    Method::POST,
                    "/api/cancel",
                    token.as_deref(),
                    Some(json!({ "message_id": reply })),
                )
                .await;
        }
    }

    /// The owner's view of the fixture: (status of `GET`, message count,
    /// the reply's status).
    async fn owner_view(&self, fixture: &Fixture) -> (u16, usize, Value) {
        let (status, body) = self
            .node
            .api(
                Method::GET,
                &format!("/api/conversations/{}", fixture.conversation),
                self.callers.token(Caller::Owner),
                None,
            )
            .await;
        let messages = body["messages"].as_array().map_or(0, Vec::len);
        (status, messages, body["messages"][1]["status"].clone())
    }
}

// ---- one case ----

/// What a caller got.
#[derive(Debug)]
enum Got {
    /// The first reply to the frame, the socket open.
    Reply(Value),
    /// The socket opened with no `welcome`: frames, close code.
    Refused(Vec<Value>, Option<u16>),
    /// The socket was expected to be refused but opened as this user.
    Welcomed(Value),
    /// The socket was expected to open but did not.
    NotOpened(String),
    /// HTTP status and JSON body (Null if not JSON).
    Http(u16, Value),
}

/// An answer: what it was, and everything the caller received as text.
struct Answer {
    got: Got,
    raw: String,
    /// Replies the case started: (the sender's token, assistant message id).
    started: Vec<(Option<String>, String)>,
}

async fn perform(s: &Scenario, op: Op, caller: Caller, want: Want, fx: &Fixture) -> Answer {
    let token = s.callers.token(caller).map(str::to_owned);
    if op.is_ws() {
        ws_perform(s, op, token, want, fx).await
    } else {
        http_perform(s, op, token, fx).await
    }
}

fn ws_frame(op: Op, fx: &Fixture) -> Value {
    match op {
        Op::WsSubscribe => json!({"type": "subscribe", "conversation_id": fx.conversation}),
        Op::WsUnsubscribe => json!({"type": "unsubscribe", "conversation_id": fx.conversation}),
        Op::WsSendExisting => {
            json!({"type": "send", "conversation_id": fx.conversation, "content": "may I join?"})
        }
        Op::WsSendNew => json!({"type": "send", "content": "a conversation of my own"}),
        Op::WsCancel => json!({"type": "cancel", "message_id": fx.reply}),
        Op::WsPing => json!({"type": "ping"}),
        _ => unreachable!("not a frame: {op:?}"),
    }
}

async fn ws_perform(
    s: &Scenario,
    op: Op,
    token: Option<String>,
    want: Want,
    fx: &Fixture,
) -> Answer {
    let url = match &token {
        Some(token) => s.node.ws_url(token),
        None => format!("ws://{}/ws/chat", s.node.node.addr),
    };
    if want == Want::Refused {
        let (frames, closed, welcome) = refusal(&url).await;
        let raw = frames
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let got = match welcome {
            Some(welcome) => Got::Welcomed(welcome),
            None => Got::Refused(frames, closed),
        };
        return Answer {
            got,
            raw,
            started: Vec::new(),
        };
    }
    let mut client = match Client::try_connect(&url).await {
        Ok(client) => client,
        Err(why) => {
            return Answer {
                got: Got::NotOpened(why),
                raw: String::new(),
                started: Vec::new(),
            };
        }
    };
    let reply = client.request(ws_frame(op, fx)).await;
    let mut started = Vec::new();
    if reply["type"] == "ack"
        && let Some(id) = reply["assistant_message_id"].as_str()
    {
        started.push((token.clone(), id.to_owned()));
    }
    // Everything else this socket got, up to the answer of a last ping:
    // a subscription made by mistake shows here (its `subscribed` and
    // snapshot precede the pong).
    client
        .send(json!({"type": "ping", "id": "end-of-case"}))
        .await;
    let rest = client.until(|f| f["id"] == "end-of-case").await;
    let raw = std::iter::once(&client.welcome)
        .chain(std::iter::once(&reply))
        .chain(rest.iter())
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    client.close().await;
    Answer {
        got: Got::Reply(reply),
        raw,
        started,
    }
}

/// Opens a socket that should be refused: its frames and close code, or
/// the `welcome` if it opened after all.
async fn refusal(url: &str) -> (Vec<Value>, Option<u16>, Option<Value>) {
    match Client::open_or_refused(url).await {
        Opening::Welcomed(welcome) => (Vec::new(), None, Some(welcome)),
        Opening::Refused(frames, code) => (frames, code, None),
    }
}

async fn http_perform(s: &Scenario, op: Op, token: Option<String>, fx: &Fixture) -> Answer {
    let conversation = format!("/api/conversations/{}", fx.conversation);
    let search = format!("/api/search?q={}", fx.marker);
    let (method, path, body): (Method, &str, Option<Value>) = match op {
        Op::ListConversations => (Method::GET, "/api/conversations", None),
        Op::CreateConversation => (
            Method::POST,
            "/api/conversations",
            Some(json!({"title": "a conversation of my own"})),
        ),
        Op::GetConversation => (Method::GET, &conversation, None),
        Op::DeleteConversation => (Method::DELETE, &conversation, None),
        Op::ChatExisting => (
            Method::POST,
            "/api/chat",
            Some(json!({"conversation_id": fx.conversation, "content": "may I join?"})),
        ),
        Op::ChatNew => (
            Method::POST,
            "/api/chat",
            Some(json!({"content": "a conversation of my own"})),
        ),
        Op::Cancel => (
            Method::POST,
            "/api/cancel",
            Some(json!({"message_id": fx.reply})),
        ),
        Op::Models => (Method::GET, "/api/models", None),
        Op::Search => (Method::GET, &search, None),
        Op::Refresh => (Method::POST, "/api/auth/refresh", None),
        Op::WsTicket => (Method::POST, "/api/ws-ticket", None),
        Op::AdminActors => (Method::GET, "/admin/actors", None),
        Op::GuestIssuance => (Method::POST, "/api/auth/guest", None),
        _ => unreachable!("not a route: {op:?}"),
    };
    let mut request = s.node.http.request(method, s.node.url(path));
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status().as_u16();
    let raw = response.text().await.expect("a body");
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let mut started = Vec::new();
    if status == 202
        && matches!(op, Op::ChatExisting | Op::ChatNew)
        && let Some(id) = body["message_id"].as_str()
    {
        started.push((token.clone(), id.to_owned()));
    }
    Answer {
        got: Got::Http(status, body),
        raw,
        started,
    }
}

/// What is wrong with `answer` for the cell `want`, if anything.
fn judge(
    s: &Scenario,
    op: Op,
    caller: Caller,
    want: Want,
    fx: &Fixture,
    answer: &Answer,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let want = match want {
        Want::GuestIssuance if s.guest_access => H200,
        Want::GuestIssuance => H403,
        other => other,
    };
    let human = |message: &Value, wrong: &mut Vec<String>| match message.as_str() {
        Some(text) => {
            if let Some(telltale) = library_text_in(text) {
                wrong.push(format!(
                    "the message {text:?} is not for people ({telltale})"
                ));
            }
        }
        None => wrong.push("an error without a message".into()),
    };
    match (&answer.got, want) {
        (Got::Reply(reply), Want::Reply(kind)) => {
            if reply["type"] != kind {
                wrong.push(format!("expected `{kind}`, got {reply}"));
            }
        }
        (Got::Reply(reply), Want::WsError(code)) => {
            if reply["type"] != "error" || reply["code"] != code {
                wrong.push(format!("expected error `{code}`, got {reply}"));
            } else {
                human(&reply["message"], &mut wrong);
            }
        }
        (Got::Refused(frames, closed), Want::Refused) => {
            if *closed != Some(1008) {
                wrong.push(format!("expected close 1008, got {closed:?}"));
            }
            if frames.len() > 1
                || frames
                    .iter()
                    .any(|f| f["type"] != "error" || f["code"] != "unauthorized")
            {
                wrong.push(format!(
                    "expected at most one error `unauthorized` before the close, got {frames:?}"
                ));
            }
            for frame in frames {
                human(&frame["message"], &mut wrong);
            }
        }
        (Got::Welcomed(welcome), Want::Refused) => {
            wrong.push(format!(
                "expected a refused socket (1008), it opened: {welcome}"
            ));
        }
        (Got::NotOpened(why), _) => wrong.push(format!("expected a socket, got: {why}")),
        (Got::Http(status, body), Want::Http(expected, code)) => {
            if *status != expected {
                wrong.push(format!("expected {expected}, got {status} {body}"));
            } else if let Some(code) = code
                && body["error"]["code"] != code
            {
                wrong.push(format!("expected `{code}`, got {body}"));
            }
            if *status >= 400 {
                human(&body["error"]["message"], &mut wrong);
            }
        }
        (got, want) => wrong.push(format!("expected {want:?}, got {got:?}")),
    }
    let owner = caller == Caller::Owner;
    if owner && op.owner_reads_content() && !answer.raw.contains(&fx.marker) {
        wrong.push(format!(
            "the owner's answer lacks the conversation's content ({}): {:.300}",
            fx.marker, answer.raw
        ));
    }
    if !owner && answer.raw.contains(&fx.marker) {
        wrong.push(format!(
            "the owner's content ({}) reached {caller}: {:.500}",
            fx.marker, answer.raw
        ));
    }
    wrong
}

/// For a refused change: the owner's conversation is as it was.
async fn unchanged(s: &Scenario, op: Op, fx: &Fixture) -> Option<String> {
    let (status, messages, reply_status) = s.owner_view(fx).await;
    let broken = match op {
        Op::DeleteConversation => status != 200,
        Op::WsSendExisting | Op::ChatExisting => status != 200 || messages != 2,
        Op::WsCancel | Op::Cancel => status != 200 || reply_status != "streaming",
        _ => false,
    };
    broken.then(|| {
        format!(
            "the refused call changed the owner's conversation: GET {status}, {messages} messages, reply {reply_status}"
        )
    })
}

/// Runs every cell of `MATRIX` in `s`; answers the failing cases.
async fn run(s: &mut Scenario) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut rows = 0;
    for (op, wants) in MATRIX {
        for (caller, want) in CALLERS.iter().zip(wants) {
            rows += 1;
            let fx = s.fixture(op.needs_streaming()).await;
            let answer = perform(s, *op, *caller, *want, &fx).await;
            let mut wrong = judge(s, *op, *caller, *want, &fx, &answer);
            if *caller != Caller::Owner
                && let Some(changed) = unchanged(s, *op, &fx).await
            {
                wrong.push(changed);
            }
            s.clean_up(&fx, &answer.started).await;
            for what in wrong {
                failures.push(format!("{} › {} × {caller}: {what}", s.name, op.name()));
            }
        }
    }
    // The operator: ADMIN_TOKEN opens /admin/actors, which names actors,
    // not content.
    let fx = s.fixture(true).await;
    let response = s
        .node
        .http
        .get(s.node.url("/admin/actors"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let raw = response.text().await.unwrap();
    rows += 1;
    if status != 200 || raw.contains(&fx.marker) {
        failures.push(format!(
            "{} › GET /admin/actors × ADMIN_TOKEN: expected 200 without content, got {status} {raw:.300}",
            s.name
        ));
    }
    s.clean_up(&fx, &[]).await;
    (rows, failures)
}

fn report(name: &str, rows: usize, failures: &[String]) {
    assert_eq!(
        rows,
        MATRIX.len() * CALLERS.len() + 1,
        "{name}: every cell ran"
    );
    assert!(
        failures.is_empty(),
        "{} of {rows} cases of `{name}` differ from the contract:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---- the scenarios ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_owned_resources_answer_every_caller_as_the_contract_says() {
    let node = TestNode::start(matrix_settings).await;
    let callers = guest_callers(&node, "auth0|matrix-provider-user").await;
    let mut scenario = Scenario::new("guest-owned", node, true, callers).await;
    let (rows, failures) = run(&mut scenario).await;
    scenario.node.stop().await;
    report("guest-owned", rows, &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_owned_resources_answer_every_caller_as_the_contract_says() {
    let node = TestNode::start(matrix_settings).await;
    let callers = provider_callers(&node).await;
    let mut scenario = Scenario::new("provider-owned", node, true, callers).await;
    let (rows, failures) = run(&mut scenario).await;
    scenario.node.stop().await;
    report("provider-owned", rows, &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_guests_off_issued_guest_tokens_still_work_and_no_new_guest_is_made() {
    // The guests' tokens come from a node that still issues them, with the
    // same AUTH_SECRET: tokens issued before guests were switched off.
    let issuer = TestNode::start(|_| {}).await;
    let callers = guest_callers(&issuer, "auth0|matrix-provider-user").await;
    issuer.stop().await;
    let node = TestNode::start(|s| {
        matrix_settings(s);
        s.guest_access = false;
    })
    .await;
    let mut scenario = Scenario::new("guests-off", node, false, callers).await;
    let (rows, failures) = run(&mut scenario).await;
    scenario.node.stop().await;
    report("guests-off", rows, &failures);
}
