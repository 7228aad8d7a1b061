//! The durable store of conversations: history that outlives every process and
//! every cache (contract 1.1, "Durable history").
//!
//! One trait, [`Store`], and two implementations through sqlx:
//! [`sqlite::SqliteStore`] (one file, the embedded default) and
//! [`postgres::PostgresStore`] (shared by any number of nodes). [`connect`]
//! picks one by URL scheme and applies its migrations
//! (`src/store/migrations/<backend>/*.sql`, embedded at build time by
//! `sqlx::migrate!`; a new migration file needs a rebuild of the crate, and an
//! applied migration must never be edited: its checksum is verified).
//!
//! The store is written behind the engine, in batches ([`Store::apply`]); its
//! rules make every batch safe to replay and to arrive late: writes are
//! idempotent, a message never moves back (a final status is never replaced by
//! a streaming checkpoint, a checkpoint never shrinks), and a deleted
//! conversation leaves a tombstone so that it never reappears.
//!
//! # Times
//!
//! Times are kept to the microsecond (PostgreSQL `timestamptz`, SQLite integer
//! microseconds since the Unix epoch): a time that went through the store comes
//! back exactly, to the microsecond; a sub-microsecond part is truncated. Use
//! [`store_precision`] to produce times that round-trip unchanged.
//!
//! # Search
//!
//! [`Store::search`] answers whole words, all of them required, best matches
//! first. A query's words are its runs of letters and digits (everything else
//! separates them, nothing is syntax), at most [`MAX_SEARCH_WORDS`] of them.
//!
//! Snippets mark each matched word as `[[word]]` ([`SNIPPET_OPEN`],
//! [`SNIPPET_CLOSE`], as the wire's `SearchResult` documents): plain text,
//! never HTML; a client that highlights must escape the snippet's text
//! itself. Text of the message that already holds `[[` or `]]` is not
//! escaped.
//!
//! The two backends differ in one way: SQLite's FTS5 (`unicode61
//! remove_diacritics 2`) ignores diacritics ("tieng viet" finds "tiếng
//! Việt"), PostgreSQL's `simple` configuration does not (only "tiếng việt"
//! finds it). Both ignore case (PostgreSQL folds non-ASCII letters as the
//! database's `LC_CTYPE` does; `C.UTF-8` and any UTF-8 locale fold them).

pub mod group_commit;
pub mod outbox;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::protocol::{Message, MessageStatus, Role, Usage, UserId};

pub use outbox::{Outbox, OutboxOptions, OutboxRow, OutboxStats};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What opens a matched word in a search snippet.
pub const SNIPPET_OPEN: &str = "[[";
/// What closes a matched word in a search snippet.
pub const SNIPPET_CLOSE: &str = "]]";
/// What stands for text left out at either end of a search snippet.
pub const SNIPPET_ELLIPSIS: &str = "…";

/// A conversation as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConversation {
    pub id: Uuid,
    pub owner: UserId,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message as the store keeps it: the wire `Message` plus its place in the
/// conversation and its ending's details.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub message: Message,
    /// The message's place in its conversation, 0-based; messages are read back
    /// ordered by it. At most `i64::MAX`.
    pub position: u64,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

/// One write of a batch given to [`Store::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    /// Insert or update. On update, title and `updated_at` are those of the
    /// later of the two (the one with the greater `updated_at`; the write on a
    /// tie), so a late write never reverts a newer title; `created_at` and
    /// `owner` never change. Skipped if the conversation was deleted
    /// (tombstone).
    Conversation(StoredConversation),
    /// Insert or update by message id. Skipped when its conversation is not in
    /// the store (deleted, or not yet written; callers write the conversation
    /// first in the same batch).
    ///
    /// A write never moves a message back: a write with status `streaming`
    /// does not replace a message already stored with a final status
    /// (complete/cancelled/failed), and a streaming write with shorter content
    /// (in bytes) than stored does not replace it (checkpoints only grow). A
    /// final-status write always replaces a streaming one, and replaces a final
    /// one too (the later ending write is the corrected truth).
    ///
    /// A replacing write updates every field but the message's id, its
    /// conversation and its `created_at`, which the first write fixes. A
    /// write that keeps the status and carries no `finish_reason` or `usage`
    /// keeps the stored ones: it is a rewrite of an ended reply from the
    /// engine, which does not keep them.
    Message(StoredMessage),
    /// Removes the conversation and its messages and leaves a tombstone so
    /// that later writes for it are skipped and it never reappears.
    DeleteConversation(Uuid),
}

impl StoreWrite {
    /// The conversation this write concerns.
    pub fn conversation_id(&self) -> Uuid {
        match self {
            StoreWrite::Conversation(conversation) => conversation.id,
            StoreWrite::Message(message) => message.message.conversation_id,
            StoreWrite::DeleteConversation(id) => *id,
        }
    }
}

/// One page of an owner's conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationPage {
    pub conversations: Vec<StoredConversation>,
    /// The cursor of the next page (`before`), None on the last page.
    pub next: Option<String>,
}

/// One message found by [`Store::search`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub conversation_id: Uuid,
    pub conversation_title: Option<String>,
    pub message_id: Uuid,
    pub role: Role,
    /// A short extract of the message around the match (the whole message
    /// when it is short), each matched word wrapped in [`SNIPPET_OPEN`] …
    /// [`SNIPPET_CLOSE`] (`[[word]]`) as written in the message. Where text is
    /// left out, SQLite shows [`SNIPPET_ELLIPSIS`] at the cut ends; PostgreSQL
    /// (`ts_headline`) joins up to two fragments with ` … ` and marks no cut
    /// ends. Plain text: escape it before putting it in HTML.
    pub snippet: String,
    /// The message's `created_at`.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database does not answer (connection refused, pool timeout, I/O,
    /// database busy or shutting down): retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A listing cursor that this store did not issue.
    #[error("invalid cursor")]
    InvalidCursor,
    /// Anything else: a bug or a write the database refuses (retrying the same
    /// batch will fail again).
    #[error("database error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// "sqlite" or "postgres".
    fn name(&self) -> &'static str;

    /// Whether the database runs one write transaction at a time (SQLite),
    /// so that concurrent writers are better grouped into one.
    fn single_writer(&self) -> bool {
        false
    }

    /// Answers Ok when the database answers a query.
    async fn ping(&self) -> StoreResult<()>;

    /// The outbox of events (`outbox.rs`), when this store writes one (it
    /// was opened with [`OutboxOptions`]).
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }

    /// Applies the writes in order, in one transaction: all or nothing.
    /// Idempotent: applying the same batch again changes nothing. With an
    /// outbox, the events of what the batch changed are added in the same
    /// transaction (none for a write that changed nothing).
    async fn apply(&self, writes: &[StoreWrite]) -> StoreResult<()>;

    /// None when never stored or deleted.
    async fn conversation(&self, id: Uuid) -> StoreResult<Option<StoredConversation>>;

    /// The conversation's messages ordered by position (empty when it has none
    /// or does not exist).
    async fn messages(&self, conversation_id: Uuid) -> StoreResult<Vec<StoredMessage>>;

    /// The conversation a message belongs to.
    async fn message_conversation(&self, message_id: Uuid) -> StoreResult<Option<Uuid>>;

    /// The owner's conversations, most recently updated first (ties broken by
    /// id, descending, so that paging is exact), at most `limit` (0 is taken
    /// as 1), starting after the cursor `before` (an opaque string from a
    /// previous page's `next`); `next` is None on the last page. Each
    /// conversation appears exactly once across pages even when many share
    /// `updated_at`, as long as none is updated meanwhile.
    async fn list_conversations(
        &self,
        owner: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<ConversationPage>;

    /// How many conversations the owner has.
    async fn count_conversations(&self, owner: &UserId) -> StoreResult<u64>;

    /// Every reply stored as still streaming: (conversation id, message id),
    /// ordered by conversation then position.
    async fn streaming_replies(&self) -> StoreResult<Vec<(Uuid, Uuid)>>;

    /// Full-text search over the owner's messages only (never anyone
    /// else's), best matches first (ties: newest first), at most `limit`.
    ///
    /// The query is a list of words, all required, each matched whole and
    /// case-insensitively (see the module docs for diacritics); `snippet`
    /// marks matched words as `[[word]]`. Any user text is a valid query:
    /// quotes, operators, `*`, parentheses, SQL or FTS syntax never cause an
    /// error, only the words in them are searched. A query without any word
    /// (empty, whitespace, punctuation only) answers no hits.
    async fn search(
        &self,
        owner: &UserId,
        query: &str,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>>;
}

/// Connects by URL scheme: `sqlite://PATH` (file created if missing, parent
/// directory too; `sqlite:///abs/path.db` for an absolute path,
/// `sqlite::memory:` for a private in-memory database) or
/// `postgres://…`/`postgresql://…`; applies migrations.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    connect_with(url, None).await
}

/// [`connect`], writing the outbox of events when `outbox` is given.
pub async fn connect_with(
    url: &str,
    outbox: Option<OutboxOptions>,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(Arc::new(
                SqliteStore::open_in_memory().await?.with_outbox(outbox),
            ));
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            anyhow::bail!("DATABASE_URL `{url}` names no file: expected sqlite://PATH");
        }
        if path.contains('?') {
            anyhow::bail!("DATABASE_URL `{url}`: query parameters are not supported for SQLite");
        }
        return Ok(Arc::new(SqliteStore::open(path).await?.with_outbox(outbox)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(
            PostgresStore::connect(url).await?.with_outbox(outbox),
        ));
    }
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    anyhow::bail!(
        "unsupported database URL scheme `{scheme}`: expected sqlite://PATH or postgres://…"
    )
}

/// `time` as the store keeps it: truncated to the microsecond. A time passed
/// through this function comes back from the store unchanged.
pub fn store_precision(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

// ---------------------------------------------------------------------------
// Helpers shared by both backends.

pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| StoreError::Internal(format!("time out of range: {micros} µs")))
}

pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

pub(crate) fn parse_role(text: &str) -> StoreResult<Role> {
    match text {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(StoreError::Internal(format!(
            "unknown role `{other}` stored"
        ))),
    }
}

pub(crate) fn status_str(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Streaming => "streaming",
        MessageStatus::Complete => "complete",
        MessageStatus::Cancelled => "cancelled",
        MessageStatus::Failed => "failed",
    }
}

pub(crate) fn parse_status(text: &str) -> StoreResult<MessageStatus> {
    match text {
        "streaming" => Ok(MessageStatus::Streaming),
        "complete" => Ok(MessageStatus::Complete),
        "cancelled" => Ok(MessageStatus::Cancelled),
        "failed" => Ok(MessageStatus::Failed),
        other => Err(StoreError::Internal(format!(
            "unknown status `{other}` stored"
        ))),
    }
}

/// A count or position for a BIGINT column.
pub(crate) fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Internal(format!("{what} {value} is too large to store")))
}

pub(crate) fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Internal(format!("negative {what} stored")))
}

pub(crate) fn usage_from(
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
) -> StoreResult<Option<Usage>> {
    match (prompt_tokens, completion_tokens) {
        (Some(prompt), Some(completion)) => Ok(Some(Usage {
            prompt_tokens: to_u64(prompt, "prompt_tokens")?,
            completion_tokens: to_u64(completion, "completion_tokens")?,
        })),
        _ => Ok(None),
    }
}

pub(crate) fn usage_columns(usage: Option<Usage>) -> StoreResult<(Option<i64>, Option<i64>)> {
    match usage {
        Some(usage) => Ok((
            Some(to_i64(usage.prompt_tokens, "prompt_tokens")?),
            Some(to_i64(usage.completion_tokens, "completion_tokens")?),
        )),
        None => Ok((None, None)),
    }
}

/// The limit of a listing query: `limit` (at least 1) plus one row that tells
/// whether another page follows.
pub(crate) fn page_query_limit(limit: usize) -> (usize, i64) {
    let limit = limit.max(1);
    (
        limit,
        i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX),
    )
}

pub(crate) fn search_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Cuts a page of `limit + 1` rows to `limit` and makes its `next` cursor.
pub(crate) fn finish_page(
    mut conversations: Vec<StoredConversation>,
    limit: usize,
) -> ConversationPage {
    let next = if conversations.len() > limit {
        conversations.truncate(limit);
        conversations
            .last()
            .map(|last| encode_cursor(micros(last.updated_at), last.id))
    } else {
        None
    };
    ConversationPage {
        conversations,
        next,
    }
}

/// One page of a whole list of conversations, with the stores' cursors and
/// order (newest first, ties by id): the listing of a node without a store.
pub fn page_of(
    mut conversations: Vec<StoredConversation>,
    limit: usize,
    before: Option<&str>,
) -> StoreResult<ConversationPage> {
    let key = |c: &StoredConversation| (micros(c.updated_at), c.id);
    conversations.sort_by_key(|c| std::cmp::Reverse(key(c)));
    if let Some(cursor) = before {
        let after = decode_cursor(cursor)?;
        conversations.retain(|c| key(c) < (after.updated_at_micros, after.id));
    }
    let (limit, _) = page_query_limit(limit);
    conversations.truncate(limit + 1);
    Ok(finish_page(conversations, limit))
}

/// A position in a listing: the last conversation of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub updated_at_micros: i64,
    pub id: Uuid,
}

const CURSOR_VERSION: u8 = 1;

/// FNV-1a, 32 bits: the check that tells a garbled cursor.
fn cursor_check(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Encodes a cursor as 58 lowercase hex digits: a version byte, the
/// conversation's `updated_at` (µs, big-endian), its id, and a 4-byte check.
pub(crate) fn encode_cursor(updated_at_micros: i64, id: Uuid) -> String {
    let mut bytes = Vec::with_capacity(29);
    bytes.push(CURSOR_VERSION);
    bytes.extend_from_slice(&updated_at_micros.to_be_bytes());
    bytes.extend_from_slice(id.as_bytes());
    let check = cursor_check(&bytes);
    bytes.extend_from_slice(&check.to_be_bytes());
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn decode_cursor(text: &str) -> StoreResult<Cursor> {
    if text.len() != 58 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(StoreError::InvalidCursor);
    }
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| StoreError::InvalidCursor)?;
    let (payload, check) = bytes.split_at(25);
    if payload[0] != CURSOR_VERSION || check != cursor_check(payload).to_be_bytes() {
        return Err(StoreError::InvalidCursor);
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&payload[1..9]);
    let id = Uuid::from_slice(&payload[9..25]).map_err(|_| StoreError::InvalidCursor)?;
    Ok(Cursor {
        updated_at_micros: i64::from_be_bytes(micros),
        id,
    })
}

/// At most this many distinct words of a query are searched; the rest are
/// ignored (a query of thousands of words would cost the database dearly).
pub const MAX_SEARCH_WORDS: usize = 32;
/// A longer word is ignored: no index keeps one that long.
pub const MAX_SEARCH_WORD_CHARS: usize = 256;

/// Whether `c` belongs to a word: letters, digits, and the combining marks
/// and joiners that decomposed or complex scripts put inside words.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c,
            '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
            | '\u{200C}'
            | '\u{200D}')
}

/// The words of a search query: its runs of letters and digits (see
/// [`is_word_char`]), each once (ignoring case), the first
/// [`MAX_SEARCH_WORDS`] of them, none longer than [`MAX_SEARCH_WORD_CHARS`].
/// Quotes, operators and punctuation are separators, never syntax: each
/// backend searches for all of these words.
pub(crate) fn search_words(query: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    query
        .split(|c: char| !is_word_char(c))
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .filter(|word| word.chars().count() <= MAX_SEARCH_WORD_CHARS)
        .filter(|word| seen.insert(word.to_lowercase()))
        .take(MAX_SEARCH_WORDS)
        .map(str::to_owned)
        .collect()
}

/// How a sqlx error reads to callers: `unavailable` tells whether a database
/// error (by its code) means the database cannot serve now.
pub(crate) fn map_sqlx_error(error: sqlx::Error, unavailable: impl Fn(&str) -> bool) -> StoreError {
    use sqlx::Error as E;
    match error {
        E::Io(_)
        | E::Tls(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Protocol(_) => StoreError::Unavailable(error.to_string()),
        E::Database(ref db) if db.code().is_some_and(|code| unavailable(&code)) => {
            StoreError::Unavailable(error.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_list_pages_each_conversation_once_newest_first() {
        let owner = UserId::new_guest();
        let list: Vec<StoredConversation> = (0..25)
            .map(|i| {
                // Five share each update time: ties are broken by id.
                let at = DateTime::from_timestamp_micros(1_780_000_000_000_000 + i / 5).unwrap();
                StoredConversation {
                    id: Uuid::new_v4(),
                    owner: owner.clone(),
                    title: None,
                    created_at: at,
                    updated_at: at,
                }
            })
            .collect();
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = page_of(list.clone(), 4, before.as_deref()).unwrap();
            assert!(page.conversations.len() <= 4);
            seen.extend(page.conversations);
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let mut expected = list.clone();
        expected.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));
        assert_eq!(seen, expected);
        assert_eq!(
            page_of(list, 4, Some("garbage")).unwrap_err(),
            StoreError::InvalidCursor
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = Uuid::new_v4();
        for micros in [0, 1, -1, i64::MAX, i64::MIN, 1_780_000_000_123_456] {
            let cursor = encode_cursor(micros, id);
            assert_eq!(
                decode_cursor(&cursor),
                Ok(Cursor {
                    updated_at_micros: micros,
                    id
                })
            );
            let mut flipped = cursor.clone().into_bytes();
            flipped[20] = if flipped[20] == b'0' { b'1' } else { b'0' };
            let flipped = String::from_utf8(flipped).unwrap();
            assert_eq!(decode_cursor(&flipped), Err(StoreError::InvalidCursor));
            assert_eq!(decode_cursor(&cursor[..56]), Err(StoreError::InvalidCursor));
            assert_eq!(
                decode_cursor(&cursor.to_uppercase()),
                Err(StoreError::InvalidCursor)
            );
        }
        for garbage in ["", "x", "null", "ééé", &"0".repeat(58)] {
            assert_eq!(decode_cursor(garbage), Err(StoreError::InvalidCursor));
        }
    }

    #[test]
    fn search_words_keep_only_pieces_with_words() {
        assert_eq!(
            search_words("  \"hello\"  * NEAR(fox ')( tiếng\u{0}việt -- a-b Hello"),
            vec!["hello", "NEAR", "fox", "tiếng", "việt", "a", "b"]
        );
        // Decomposed diacritics stay inside their word.
        assert_eq!(
            search_words("vie\u{0302}\u{0323}t"),
            vec!["vie\u{0302}\u{0323}t"]
        );
        assert!(search_words("\t \n").is_empty());
        assert!(search_words("\" * )( -- ' 😀").is_empty());
        assert_eq!(search_words(&"fox ".repeat(5_000)), vec!["fox"]);
        let many: String = (0..1_000).map(|i| format!("w{i} ")).collect();
        assert_eq!(search_words(&many).len(), MAX_SEARCH_WORDS);
        assert!(search_words(&"x".repeat(MAX_SEARCH_WORD_CHARS + 1)).is_empty());
    }

    #[test]
    fn store_precision_truncates_to_microseconds() {
        let time = DateTime::from_timestamp(1_780_000_000, 123_456_789).unwrap();
        let stored = store_precision(time);
        assert_eq!(stored.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(from_micros(micros(time)).unwrap(), stored);
    }
}
