//! The wire contract, version 1: every frame and record a client sees.
//!
//! One module of serde types shared by the server, the tests and the tools, so
//! that nothing else in the crate spells a frame by hand. The contract itself is
//! documented in `docs/protocol.md`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest `content` of a `send`, in Unicode scalar values.
pub const MAX_CONTENT_CHARS: usize = 32_000;
/// Longest client frame `id`, in Unicode scalar values.
pub const MAX_FRAME_ID_CHARS: usize = 64;

/// Who a user is: a guest's UUID, or the `sub` of an identity provider's
/// token (1 to 256 characters). Cheap to clone, compared as a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(std::sync::Arc<str>);

/// Longest `sub` accepted as a user id, in Unicode scalar values.
pub const MAX_USER_ID_CHARS: usize = 256;

impl UserId {
    /// A new guest: a random UUID.
    pub fn new_guest() -> UserId {
        UserId::from(Uuid::new_v4())
    }

    /// A user id from an identity provider's `sub`, if it has 1 to 256
    /// characters.
    pub fn parse(sub: &str) -> Option<UserId> {
        let chars = sub.chars().count();
        (1..=MAX_USER_ID_CHARS)
            .contains(&chars)
            .then(|| UserId(sub.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Uuid> for UserId {
    fn from(guest: Uuid) -> UserId {
        UserId(guest.hyphenated().to_string().into())
    }
}

impl std::str::FromStr for UserId {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<UserId, Self::Err> {
        UserId::parse(text).ok_or("a user id has 1 to 256 characters")
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// Where a message is in its life. Only `Streaming` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Cancelled,
    Failed,
}

/// One message of a conversation, as snapshots and `message` events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// The message this one follows: a reply's user message, a user
    /// message's previous reply; `None` for a first message (and its edits).
    /// Messages with the same parent are versions of one another (contract
    /// 1.2, "Versions and branches").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Token counts reported with `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One entry of a conversation's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Message {
        message: Message,
    },
    Delta {
        message_id: Uuid,
        text: String,
    },
    Done {
        message_id: Uuid,
        finish_reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<Usage>,
    },
    Cancelled {
        message_id: Uuid,
    },
    Failed {
        message_id: Uuid,
        error: String,
    },
}

impl Event {
    /// The message this event concerns.
    pub fn message_id(&self) -> Uuid {
        match self {
            Event::Message { message } => message.id,
            Event::Delta { message_id, .. }
            | Event::Done { message_id, .. }
            | Event::Cancelled { message_id }
            | Event::Failed { message_id, .. } => *message_id,
        }
    }

    /// Whether this event ends a streaming message.
    pub fn is_ending(&self) -> bool {
        matches!(
            self,
            Event::Done { .. } | Event::Cancelled { .. } | Event::Failed { .. }
        )
    }
}

/// An event as stored in the log: numbered and timed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    /// Unix time in milliseconds when the event was appended.
    pub ts: f64,
    pub event: Event,
}

/// The position a client resumes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

/// Every error code of the contract, shared by WebSocket `error` frames and
/// HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    TooLarge,
    RateLimited,
    Conflict,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// An error as the contract reports it: a code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Names the node's log line that holds the detail of a failure the
    /// user cannot act on (an upstream's URL, a library's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
}

/// A new id for a failure's log line: short enough to read out to support.
pub fn new_error_id() -> String {
    let mut id = Uuid::new_v4().simple().to_string();
    id.truncate(12);
    id
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl fmt::Display) -> Self {
        ApiError {
            code,
            message: message.to_string(),
            error_id: None,
        }
    }

    /// A failure whose detail must not reach the user: they get `sentence`
    /// and an `error_id`; the detail is logged under the same id.
    pub fn logged(code: ErrorCode, sentence: &str, detail: impl fmt::Display) -> Self {
        let error_id = new_error_id();
        if code == ErrorCode::Internal {
            tracing::error!(%error_id, %detail, "{sentence}");
        } else {
            tracing::warn!(%error_id, %detail, "{sentence}");
        }
        ApiError {
            code,
            message: sentence.to_owned(),
            error_id: Some(error_id),
        }
    }
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn forbidden(what: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("{what} belongs to another user"),
        )
    }
    pub fn conflict(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

/// WebSocket close codes of the contract.
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame that is not UTF-8 (RFC 6455's "invalid frame payload data").
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const RESTART: u16 = 1012;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const TOO_SLOW: u16 = 4001;
    /// Over a per-user limit: connections, or a flood of frames.
    pub const OVER_LIMIT: u16 = 4029;
}

/// A client → server request, without its frame `id`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientRequest {
    Subscribe {
        conversation_id: Uuid,
        #[serde(default)]
        since: Option<Since>,
    },
    Unsubscribe {
        conversation_id: Uuid,
    },
    Send(SendRequest),
    Cancel {
        message_id: Uuid,
    },
    Regenerate(RegenerateRequest),
    Edit(EditRequest),
    Continue(RegenerateRequest),
    Ping,
}

/// A `send` frame's fields, also the body of `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SendRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The message the new user message follows (contract 1.2); absent, the
    /// conversation's newest message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
}

impl SendRequest {
    /// Checks the content's length rules.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_content(&self.content)
    }
}

/// A `regenerate` or `continue` frame's fields, also the body of
/// `POST /api/regenerate` and `POST /api/continue`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RegenerateRequest {
    pub message_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// An `edit` frame's fields, also the body of `POST /api/edit`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct EditRequest {
    pub message_id: Uuid,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The length rules of a user message's `content`.
pub fn validate_content(content: &str) -> Result<(), ApiError> {
    let chars = content.chars().count();
    if chars == 0 {
        return Err(ApiError::bad_request("content must not be empty"));
    }
    if chars > MAX_CONTENT_CHARS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("content has {chars} characters, at most {MAX_CONTENT_CHARS} are allowed"),
        ));
    }
    Ok(())
}

/// One parsed client frame: its optional `id` and its request.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub id: Option<String>,
    pub request: ClientRequest,
}

/// Why a client frame could not be parsed; carries the `id` to echo when the
/// frame had a valid one.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub id: Option<String>,
    pub error: ApiError,
}

impl ClientFrame {
    /// Parses a text frame, checking the `id` before anything else so that a
    /// bad request can still be matched to its frame when possible.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let fail = |id: Option<String>, message: String| FrameError {
            id,
            error: ApiError::bad_request(message),
        };
        let mut value: Value =
            serde_json::from_str(text).map_err(|e| fail(None, describe_json_error(&e)))?;
        let Some(object) = value.as_object_mut() else {
            return Err(fail(None, "a frame must be a JSON object".into()));
        };
        let id = match object.remove("id") {
            None => None,
            Some(Value::String(id)) if id.chars().count() <= MAX_FRAME_ID_CHARS => Some(id),
            Some(_) => {
                return Err(fail(
                    None,
                    format!("id must be a string of at most {MAX_FRAME_ID_CHARS} characters"),
                ));
            }
        };
        match object.get("type") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(fail(id, "type must be a string".into())),
            None => return Err(fail(id, "missing field `type`".into())),
        }
        let request =
            serde_json::from_value(value).map_err(|e| fail(id.clone(), describe_json_error(&e)))?;
        Ok(ClientFrame { id, request })
    }
}

/// What is wrong with a JSON message, as a sentence for people: the
/// library's own text (positions, Rust type names) stays out of it, the
/// protocol's field and type names stay in.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => "The message is not valid JSON.".into(),
        Category::Data => {
            let text = error.to_string();
            let quoted = |prefix: &str| {
                let rest = text.strip_prefix(prefix)?;
                let name = rest.split('`').next()?;
                (!name.is_empty() && name.len() <= 64).then(|| name.to_owned())
            };
            if let Some(field) = quoted("missing field `") {
                format!("The field `{field}` is missing.")
            } else if let Some(kind) = quoted("unknown variant `") {
                format!("`{kind}` is not a known type.")
            } else {
                "A field has the wrong type or an invalid value.".into()
            }
        }
    }
}

/// A server → client frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Welcome {
        node_id: String,
        connection_id: Uuid,
        user_id: UserId,
        protocol: u32,
        heartbeat_ms: u64,
    },
    Subscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: Uuid,
        epoch: String,
        seq: u64,
        recovered: bool,
    },
    Snapshot {
        conversation_id: Uuid,
        epoch: String,
        seq: u64,
        /// The active path (contract 1.2): what a client that knows nothing
        /// of branches shows.
        messages: Vec<Message>,
        /// Every other message, in the order of their `message` events.
        #[serde(default)]
        branches: Vec<Message>,
    },
    Event {
        conversation_id: Uuid,
        epoch: String,
        seq: u64,
        ts: f64,
        event: Event,
    },
    Unsubscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: Uuid,
    },
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(flatten)]
        ack: Ack,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_id: Option<String>,
    },
}

impl ServerFrame {
    /// The `event` frame of a log entry.
    pub fn event(conversation_id: Uuid, epoch: &str, entry: &LogEntry) -> ServerFrame {
        ServerFrame::Event {
            conversation_id,
            epoch: epoch.to_owned(),
            seq: entry.seq,
            ts: entry.ts,
            event: entry.event.clone(),
        }
    }

    pub fn error(id: Option<String>, error: ApiError) -> ServerFrame {
        ServerFrame::Error {
            id,
            code: error.code,
            message: error.message,
            error_id: error.error_id,
        }
    }

    /// Serializes the frame to its JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// The body of an `ack`: what was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ack {
    Sent(TurnAck),
    Cancelled { message_id: Uuid },
}

/// The ids a `send` created (or, for a resend, created the first time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnAck {
    pub conversation_id: Uuid,
    pub user_message_id: Uuid,
    pub assistant_message_id: Uuid,
}

/// A conversation's listing entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: Uuid,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/conversations`: one page of the caller's conversations, most
/// recently updated first; `next` is the cursor of the following page (`null`
/// on the last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationListing {
    pub conversations: Vec<ConversationSummary>,
    pub next: Option<String>,
}

/// One message found by `GET /api/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    pub conversation_id: Uuid,
    pub conversation_title: Option<String>,
    pub message_id: Uuid,
    pub role: Role,
    /// An extract around the match, the matched words between `[[` and `]]`.
    pub snippet: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/conversations/{id}`: the whole conversation at one seq.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationDetail {
    pub id: Uuid,
    pub title: Option<String>,
    pub epoch: String,
    pub seq: u64,
    /// The active path, as in `snapshot`.
    pub messages: Vec<Message>,
    /// The messages off the active path, as in `snapshot`.
    #[serde(default)]
    pub branches: Vec<Message>,
}

/// Unix time in milliseconds, with fractions, as `ts` carries it.
pub fn unix_millis(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(text: &str) -> (Option<String>, ErrorCode) {
        let e = ClientFrame::parse(text).unwrap_err();
        (e.id, e.error.code)
    }

    #[test]
    fn parses_each_request_type() {
        let id = Uuid::new_v4();
        let f = ClientFrame::parse(&format!(
            r#"{{"type":"subscribe","id":"a","conversation_id":"{id}","since":{{"epoch":"e","seq":3}}}}"#
        ))
        .unwrap();
        assert_eq!(f.id.as_deref(), Some("a"));
        assert_eq!(
            f.request,
            ClientRequest::Subscribe {
                conversation_id: id,
                since: Some(Since {
                    epoch: "e".into(),
                    seq: 3
                })
            }
        );
        let f = ClientFrame::parse(r#"{"type":"send","content":"hi"}"#).unwrap();
        assert!(
            matches!(f.request, ClientRequest::Send(SendRequest { ref content, .. }) if content == "hi")
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#).unwrap().request,
            ClientRequest::Ping
        );
    }

    #[test]
    fn bad_frames_are_bad_requests_keeping_a_valid_id() {
        assert_eq!(code_of("{nope"), (None, ErrorCode::BadRequest));
        assert_eq!(code_of("[1,2]"), (None, ErrorCode::BadRequest));
        assert_eq!(
            code_of(r#"{"id":"x","type":"dance"}"#),
            (Some("x".into()), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"id":"x","type":"subscribe"}"#),
            (Some("x".into()), ErrorCode::BadRequest)
        );
        assert_eq!(
            code_of(r#"{"id":"x","type":"cancel","message_id":"not-a-uuid"}"#),
            (Some("x".into()), ErrorCode::BadRequest)
        );
        for id in ["7", "null", "[]"] {
            assert_eq!(
                code_of(&format!(r#"{{"id":{id},"type":"ping"}}"#)),
                (None, ErrorCode::BadRequest)
            );
        }
        let long = "é".repeat(65);
        assert_eq!(
            code_of(&format!(r#"{{"id":"{long}","type":"ping"}}"#)),
            (None, ErrorCode::BadRequest)
        );
        let ok = "é".repeat(64);
        assert!(ClientFrame::parse(&format!(r#"{{"id":"{ok}","type":"ping"}}"#)).is_ok());
        assert_eq!(
            code_of(
                r#"{"type":"subscribe","conversation_id":"8c1f3b4e-7d1e-4a43-9a57-3f1e3c9b2a10","since":{"epoch":"e"}}"#
            ),
            (None, ErrorCode::BadRequest)
        );
    }

    #[test]
    fn content_length_counts_scalar_values() {
        let request = |content: String| SendRequest {
            conversation_id: None,
            content,
            client_msg_id: None,
            model: None,
            parent_id: None,
        };
        assert_eq!(
            request(String::new()).validate().unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert!(request("ü".repeat(MAX_CONTENT_CHARS)).validate().is_ok());
        assert_eq!(
            request("a".repeat(MAX_CONTENT_CHARS + 1))
                .validate()
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn frames_serialize_as_the_contract_spells_them() {
        let conversation_id = Uuid::nil();
        let message_id = Uuid::nil();
        let frame = ServerFrame::Ack {
            id: Some("1".into()),
            ack: Ack::Cancelled { message_id },
        };
        let v: Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(v["type"], "ack");
        assert_eq!(v["id"], "1");
        assert_eq!(v["message_id"], message_id.to_string());
        let frame = ServerFrame::event(
            conversation_id,
            "ep",
            &LogEntry {
                seq: 4,
                ts: 1.5,
                event: Event::Delta {
                    message_id,
                    text: "hi".into(),
                },
            },
        );
        let v: Value = serde_json::from_str(&frame.to_text()).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 4);
        assert_eq!(v["event"]["kind"], "delta");
        assert_eq!(v["event"]["text"], "hi");
        let back: ServerFrame = serde_json::from_value(v).unwrap();
        assert_eq!(back, frame);
    }
}
