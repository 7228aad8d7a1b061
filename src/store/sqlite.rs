//! [`SqliteStore`]: the durable store in one SQLite file (the embedded
//! default).
//!
//! WAL journal, `synchronous=NORMAL` (a crash of the machine may lose the last
//! transactions, never corrupt the file; a crash of the process loses
//! nothing), foreign keys on, a busy timeout, a small pool: readers run in
//! parallel, writers one at a time (`BEGIN IMMEDIATE`). Ids are UUID text,
//! times integer microseconds. Search is FTS5 over an external-content table
//! kept in sync by triggers (`migrations/sqlite/0001_history.sql`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::outbox::{self, NewEvent, Outbox, OutboxOptions, OutboxRow, OutboxStats};
use super::{
    ConversationPage, SNIPPET_CLOSE, SNIPPET_ELLIPSIS, SNIPPET_OPEN, SearchHit, Store, StoreError,
    StoreResult, StoreWrite, StoredConversation, StoredMessage, decode_cursor, finish_page,
    from_micros, map_sqlx_error, micros, page_query_limit, parse_role, parse_status, role_str,
    search_limit, search_words, status_str, to_i64, to_u64, usage_columns, usage_from,
};
use crate::protocol::{Message, UserId};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in the pool: several readers; writes serialize anyway.
const MAX_CONNECTIONS: u32 = 4;
/// Tokens of context a search snippet shows (FTS5 `snippet()`, at most 64).
const SNIPPET_TOKENS: i64 = 16;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

/// The durable store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Set when writes add events to the outbox.
    outbox: Option<OutboxOptions>,
}

/// SQLite result codes (primary, the low byte of the extended code) that mean
/// the database cannot serve now: BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN,
/// PROTOCOL.
fn unavailable_code(code: &str) -> bool {
    code.parse::<i64>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15))
}

fn db_error(error: sqlx::Error) -> StoreError {
    map_sqlx_error(error, unavailable_code)
}

fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text)
        .map_err(|e| StoreError::Internal(format!("bad uuid `{text}` stored: {e}")))
}

fn parse_owner(text: &str) -> StoreResult<UserId> {
    UserId::parse(text).ok_or_else(|| StoreError::Internal(format!("bad owner `{text}` stored")))
}

fn conversation_from_row(row: &SqliteRow) -> StoreResult<StoredConversation> {
    Ok(StoredConversation {
        id: parse_uuid(row.try_get("id").map_err(db_error)?)?,
        owner: parse_owner(row.try_get("owner").map_err(db_error)?)?,
        title: row.try_get("title").map_err(db_error)?,
        created_at: from_micros(row.try_get("created_at").map_err(db_error)?)?,
        updated_at: from_micros(row.try_get("updated_at").map_err(db_error)?)?,
    })
}

fn message_from_row(row: &SqliteRow) -> StoreResult<StoredMessage> {
    Ok(StoredMessage {
        message: Message {
            id: parse_uuid(row.try_get("id").map_err(db_error)?)?,
            conversation_id: parse_uuid(row.try_get("conversation_id").map_err(db_error)?)?,
            parent_id: row
                .try_get::<Option<String>, _>("parent_id")
                .map_err(db_error)?
                .as_deref()
                .map(parse_uuid)
                .transpose()?,
            role: parse_role(row.try_get("role").map_err(db_error)?)?,
            content: row.try_get("content").map_err(db_error)?,
            status: parse_status(row.try_get("status").map_err(db_error)?)?,
            model: row.try_get("model").map_err(db_error)?,
            created_at: from_micros(row.try_get("created_at").map_err(db_error)?)?,
            error: row.try_get("error").map_err(db_error)?,
        },
        position: to_u64(row.try_get("position").map_err(db_error)?, "position")?,
        finish_reason: row.try_get("finish_reason").map_err(db_error)?,
        usage: usage_from(
            row.try_get("prompt_tokens").map_err(db_error)?,
            row.try_get("completion_tokens").map_err(db_error)?,
        )?,
    })
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if missing) the database
    /// file at `path` and applies migrations.
    pub async fn open(path: impl AsRef<Path>) -> anyhow::Result<SqliteStore> {
        let path = path.as_ref();
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                anyhow::anyhow!("cannot create the directory {}: {e}", parent.display())
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let store = Self::open_with(options, MAX_CONNECTIONS)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the SQLite store {}: {e}", path.display()))?;
        Ok(store)
    }

    /// A private in-memory database (one connection; gone when dropped).
    pub async fn open_in_memory() -> anyhow::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        Self::open_with(options, 1).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<SqliteStore> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if max_connections == 1 {
            // An in-memory database lives as long as its one connection.
            pool = pool.idle_timeout(None).max_lifetime(None);
        }
        let pool = pool.connect_with(options).await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, outbox: None })
    }

    /// This store, adding events to the outbox when `outbox` is given.
    pub fn with_outbox(mut self, outbox: Option<OutboxOptions>) -> SqliteStore {
        self.outbox = outbox;
        self
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn add_event(tx: &mut Transaction<'static, Sqlite>, event: NewEvent) -> StoreResult<()> {
        // DO NOTHING: the same change written again (a retried batch) keeps
        // its one event.
        sqlx::query(
            "INSERT INTO outbox (event_id, conversation_id, kind, created_at, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id.to_string())
        .bind(event.conversation_id.to_string())
        .bind(event.kind.as_str())
        .bind(micros(event.created_at))
        .bind(event.payload)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// The owner of a stored conversation.
    async fn owner(tx: &mut Transaction<'static, Sqlite>, id: Uuid) -> StoreResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT owner FROM conversations WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
        Ok(row.map(|(owner,)| owner))
    }

    async fn write(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        write: &StoreWrite,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        match write {
            StoreWrite::Conversation(c) => {
                let existed = match self.outbox {
                    Some(_) => Self::owner(tx, c.id).await?.is_some(),
                    None => false,
                };
                let written = sqlx::query(
                    "INSERT INTO conversations (id, owner, title, created_at, updated_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5 \
                     WHERE NOT EXISTS (SELECT 1 FROM deleted_conversations WHERE id = ?1) \
                     ON CONFLICT (id) DO UPDATE SET \
                       title = CASE WHEN excluded.updated_at >= conversations.updated_at \
                               THEN excluded.title ELSE conversations.title END, \
                       updated_at = max(conversations.updated_at, excluded.updated_at)",
                )
                .bind(c.id.to_string())
                .bind(c.owner.as_str())
                .bind(c.title.as_deref())
                .bind(micros(c.created_at))
                .bind(micros(c.updated_at))
                .execute(&mut **tx)
                .await
                .map_err(db_error)?
                .rows_affected();
                if let Some(options) = self.outbox
                    && written > 0
                    && !existed
                {
                    Self::add_event(tx, outbox::conversation_created(c, options, now)).await?;
                }
            }
            StoreWrite::Message(m) => {
                let (prompt_tokens, completion_tokens) = usage_columns(m.usage)?;
                let message = &m.message;
                // What the store held: the owner (None when the conversation
                // is not stored, and the write is skipped) and the status.
                let before: Option<(String, Option<String>)> = match self.outbox {
                    Some(_) if outbox::may_add_event(m) => sqlx::query_as(
                        "SELECT c.owner, m.status FROM conversations c \
                         LEFT JOIN messages m ON m.id = ?1 WHERE c.id = ?2",
                    )
                    .bind(message.id.to_string())
                    .bind(message.conversation_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_error)?,
                    _ => None,
                };
                let written = sqlx::query(
                    "INSERT INTO messages (id, conversation_id, position, role, content, status, \
                       model, error, finish_reason, prompt_tokens, completion_tokens, created_at, parent_id) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 \
                     WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ?2) \
                     ON CONFLICT (id) DO UPDATE SET \
                       position = excluded.position, role = excluded.role, \
                       content = excluded.content, status = excluded.status, \
                       model = excluded.model, error = excluded.error, \
                       finish_reason = CASE WHEN excluded.status = messages.status \
                           THEN COALESCE(excluded.finish_reason, messages.finish_reason) ELSE excluded.finish_reason END, \
                       prompt_tokens = CASE WHEN excluded.status = messages.status \
                           THEN COALESCE(excluded.prompt_tokens, messages.prompt_tokens) ELSE excluded.prompt_tokens END, \
                       completion_tokens = CASE WHEN excluded.status = messages.status \
                           THEN COALESCE(excluded.completion_tokens, messages.completion_tokens) ELSE excluded.completion_tokens END \
                     WHERE excluded.status <> 'streaming' \
                       OR (messages.status = 'streaming' \
                           AND length(CAST(excluded.content AS BLOB)) \
                               >= length(CAST(messages.content AS BLOB)))",
                )
                .bind(message.id.to_string())
                .bind(message.conversation_id.to_string())
                .bind(to_i64(m.position, "position")?)
                .bind(role_str(message.role))
                .bind(message.content.as_str())
                .bind(status_str(message.status))
                .bind(message.model.as_deref())
                .bind(message.error.as_deref())
                .bind(m.finish_reason.as_deref())
                .bind(prompt_tokens)
                .bind(completion_tokens)
                .bind(micros(message.created_at))
                .bind(message.parent_id.map(|p| p.to_string()))
                .execute(&mut **tx)
                .await
                .map_err(db_error)?
                .rows_affected();
                if let (Some(options), Some((owner, status))) = (self.outbox, before)
                    && written > 0
                {
                    let previous = status.as_deref().map(parse_status).transpose()?;
                    if let Some(kind) = outbox::message_event_kind(m, previous) {
                        let event = outbox::message_event(kind, m, &owner, options, now);
                        Self::add_event(tx, event).await?;
                    }
                }
            }
            StoreWrite::DeleteConversation(conversation_id) => {
                let owner = match self.outbox {
                    Some(_) => Self::owner(tx, *conversation_id).await?,
                    None => None,
                };
                let id = conversation_id.to_string();
                sqlx::query(
                    "INSERT INTO deleted_conversations (id, deleted_at) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&id)
                .bind(micros(Utc::now()))
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                sqlx::query("DELETE FROM messages WHERE conversation_id = ?1")
                    .bind(&id)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                sqlx::query("DELETE FROM conversations WHERE id = ?1")
                    .bind(&id)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
                if let Some(owner) = owner {
                    let event = outbox::conversation_deleted(*conversation_id, &owner, now);
                    Self::add_event(tx, event).await?;
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn single_writer(&self) -> bool {
        true
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.outbox.map(|_| self as &dyn Outbox)
    }

    async fn apply(&self, writes: &[StoreWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        // IMMEDIATE: take the write lock first, so that two writers queue on
        // the busy timeout instead of one failing to upgrade a read lock.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let now = super::store_precision(Utc::now());
        for write in writes {
            // An error drops `tx`, which rolls the whole batch back.
            self.write(&mut tx, write, now).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn conversation(&self, id: Uuid) -> StoreResult<Option<StoredConversation>> {
        sqlx::query(
            "SELECT id, owner, title, created_at, updated_at FROM conversations WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    async fn messages(&self, conversation_id: Uuid) -> StoreResult<Vec<StoredMessage>> {
        sqlx::query(
            "SELECT id, conversation_id, position, role, content, status, model, error, \
               finish_reason, prompt_tokens, completion_tokens, created_at, parent_id \
             FROM messages WHERE conversation_id = ?1 ORDER BY position, id",
        )
        .bind(conversation_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn message_conversation(&self, message_id: Uuid) -> StoreResult<Option<Uuid>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT conversation_id FROM messages WHERE id = ?1")
                .bind(message_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        row.map(|(id,)| parse_uuid(&id)).transpose()
    }

    async fn list_conversations(
        &self,
        owner: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<ConversationPage> {
        let (limit, query_limit) = page_query_limit(limit);
        let rows = match before {
            None => sqlx::query(
                "SELECT id, owner, title, created_at, updated_at FROM conversations \
                 WHERE owner = ?1 ORDER BY updated_at DESC, id DESC LIMIT ?2",
            )
            .bind(owner.as_str())
            .bind(query_limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?,
            Some(cursor) => {
                let cursor = decode_cursor(cursor)?;
                sqlx::query(
                    "SELECT id, owner, title, created_at, updated_at FROM conversations \
                     WHERE owner = ?1 AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3)) \
                     ORDER BY updated_at DESC, id DESC LIMIT ?4",
                )
                .bind(owner.as_str())
                .bind(cursor.updated_at_micros)
                .bind(cursor.id.to_string())
                .bind(query_limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?
            }
        };
        let conversations = rows
            .iter()
            .map(conversation_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(finish_page(conversations, limit))
    }

    async fn count_conversations(&self, owner: &UserId) -> StoreResult<u64> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM conversations WHERE owner = ?1")
                .bind(owner.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        to_u64(count, "count")
    }

    async fn streaming_replies(&self) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT conversation_id, id FROM messages WHERE status = 'streaming' \
             ORDER BY conversation_id, position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|(conversation, message)| Ok((parse_uuid(conversation)?, parse_uuid(message)?)))
            .collect()
    }

    async fn search(
        &self,
        owner: &UserId,
        query: &str,
        limit: usize,
    ) -> StoreResult<Vec<SearchHit>> {
        let words = search_words(query);
        if words.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // Each word becomes an FTS5 string (quotes doubled): never syntax.
        // Strings side by side: AND.
        let fts_query = words
            .iter()
            .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" ");
        let rows = sqlx::query(
            "SELECT m.conversation_id, c.title, m.id, m.role, m.created_at, \
               snippet(messages_fts, 0, ?1, ?2, ?3, ?4) AS snippet \
             FROM messages_fts \
             JOIN messages m ON m.seq = messages_fts.rowid \
             JOIN conversations c ON c.id = m.conversation_id \
             WHERE messages_fts MATCH ?5 AND c.owner = ?6 \
             ORDER BY messages_fts.rank, m.created_at DESC, m.seq DESC \
             LIMIT ?7",
        )
        .bind(SNIPPET_OPEN)
        .bind(SNIPPET_CLOSE)
        .bind(SNIPPET_ELLIPSIS)
        .bind(SNIPPET_TOKENS)
        .bind(fts_query)
        .bind(owner.as_str())
        .bind(search_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(SearchHit {
                    conversation_id: parse_uuid(row.try_get("conversation_id").map_err(db_error)?)?,
                    conversation_title: row.try_get("title").map_err(db_error)?,
                    message_id: parse_uuid(row.try_get("id").map_err(db_error)?)?,
                    role: parse_role(row.try_get("role").map_err(db_error)?)?,
                    snippet: row.try_get("snippet").map_err(db_error)?,
                    created_at: from_micros(row.try_get("created_at").map_err(db_error)?)?,
                })
            })
            .collect()
    }
}

/// A list of seqs as the JSON array `json_each` reads (SQLite binds no
/// arrays).
fn seq_list(seqs: &[i64]) -> String {
    serde_json::to_string(seqs).expect("integers serialize")
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn claim(
        &self,
        claimer: &str,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<OutboxRow>> {
        // One statement, so one write transaction: claims never interleave.
        let now = micros(Utc::now());
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "UPDATE outbox SET claimed_by = ?1, claimed_until = ?2 \
             WHERE seq IN ( \
               SELECT o.seq FROM outbox o \
               WHERE (o.claimed_until IS NULL OR o.claimed_until < ?3) \
                 AND NOT EXISTS (SELECT 1 FROM outbox p \
                   WHERE p.conversation_id = o.conversation_id AND p.seq < o.seq \
                     AND p.claimed_until >= ?3) \
               ORDER BY o.seq LIMIT ?4) \
             RETURNING seq, event_id, conversation_id, kind, created_at, payload",
        )
        .bind(claimer)
        .bind(until)
        .bind(now)
        .bind(search_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(OutboxRow {
                    seq: row.try_get("seq").map_err(db_error)?,
                    event_id: parse_uuid(row.try_get("event_id").map_err(db_error)?)?,
                    conversation_id: parse_uuid(row.try_get("conversation_id").map_err(db_error)?)?,
                    kind: row.try_get("kind").map_err(db_error)?,
                    created_at: from_micros(row.try_get("created_at").map_err(db_error)?)?,
                    payload: row.try_get("payload").map_err(db_error)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|row| row.seq);
        Ok(claimed)
    }

    async fn published(&self, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?1))")
            .bind(seq_list(seqs))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn release(&self, claimer: &str, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL \
             WHERE seq IN (SELECT value FROM json_each(?1)) AND claimed_by = ?2",
        )
        .bind(seq_list(seqs))
        .bind(claimer)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn stats(&self) -> StoreResult<OutboxStats> {
        let (rows, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), min(created_at) FROM outbox")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(OutboxStats {
            rows: to_u64(rows, "count")?,
            oldest: oldest.map(from_micros).transpose()?,
        })
    }
}
