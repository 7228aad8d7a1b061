//! [`PostgresStore`]: the durable store in PostgreSQL, shared by any number of
//! nodes.
//!
//! Native `uuid` and `timestamptz` columns; search through a generated
//! `tsvector` column (`simple` configuration) with a GIN index,
//! `plainto_tsquery` (any input is safe) and `ts_headline` for snippets. A
//! small pool with a short acquire timeout, and a deadline on every operation,
//! so that an outage answers `Unavailable` within seconds instead of hanging.
//! Batches that touch the same conversation serialize on a transaction-level
//! advisory lock per conversation, so that a delete on one node and a late
//! write on another can never resurrect a conversation.
//!
//! Text columns cannot hold U+0000 in PostgreSQL: the store keeps it as U+FFFD
//! (the only way PostgreSQL changes stored text).

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    ConversationPage, SNIPPET_CLOSE, SNIPPET_ELLIPSIS, SNIPPET_OPEN, SearchHit, Store, StoreError,
    StoreResult, StoreWrite, StoredConversation, StoredMessage, decode_cursor, finish_page,
    from_micros, map_sqlx_error, micros, page_query_limit, parse_role, parse_status, role_str,
    search_limit, search_words, status_str, to_i64, to_u64, usage_columns, usage_from,
};
use crate::protocol::{Message, UserId};

/// How long an operation waits for a connection (new or pooled).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest any one operation may take before it answers `Unavailable`.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: u32 = 8;
/// The first key of the advisory locks this store takes (the second is the
/// conversation's): "cs" + 1, so as not to meet other users of advisory locks.
const LOCK_CLASS: i32 = 0x6373_0001;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// The durable store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// SQLSTATEs that mean the database cannot serve now: connection exceptions
/// (08), transaction rollbacks such as serialization failures and deadlocks
/// (40), insufficient resources (53), operator intervention such as a
/// shutdown (57), system errors (58).
fn unavailable_code(code: &str) -> bool {
    ["08", "40", "53", "57", "58"]
        .iter()
        .any(|class| code.starts_with(class))
}

fn db_error(error: sqlx::Error) -> StoreError {
    map_sqlx_error(error, unavailable_code)
}

/// Runs one operation under [`OPERATION_TIMEOUT`].
async fn deadline<T>(operation: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer within {} s",
                OPERATION_TIMEOUT.as_secs()
            )))
        })
}

/// A time as PostgreSQL keeps it (microseconds; sqlx would truncate the same
/// way, this makes it explicit).
fn pg_time(time: DateTime<Utc>) -> StoreResult<DateTime<Utc>> {
    from_micros(micros(time))
}

/// Text as PostgreSQL can keep it: U+0000 becomes U+FFFD.
fn pg_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

fn pg_opt_text(text: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    text.as_deref().map(pg_text)
}

/// The second key of a conversation's advisory lock.
fn lock_key(id: Uuid) -> i32 {
    let bytes = id.as_bytes();
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

fn conversation_from_row(row: &PgRow) -> StoreResult<StoredConversation> {
    Ok(StoredConversation {
        id: row.try_get("id").map_err(db_error)?,
        owner: {
            let owner: &str = row.try_get("owner").map_err(db_error)?;
            UserId::parse(owner)
                .ok_or_else(|| StoreError::Internal(format!("bad owner `{owner}` stored")))?
        },
        title: row.try_get("title").map_err(db_error)?,
        created_at: row.try_get("created_at").map_err(db_error)?,
        updated_at: row.try_get("updated_at").map_err(db_error)?,
    })
}

fn message_from_row(row: &PgRow) -> StoreResult<StoredMessage> {
    Ok(StoredMessage {
        message: Message {
            id: row.try_get("id").map_err(db_error)?,
            conversation_id: row.try_get("conversation_id").map_err(db_error)?,
            role: parse_role(row.try_get("role").map_err(db_error)?)?,
            content: row.try_get("content").map_err(db_error)?,
            status: parse_status(row.try_get("status").map_err(db_error)?)?,
            model: row.try_get("model").map_err(db_error)?,
            created_at: row.try_get("created_at").map_err(db_error)?,
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

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<PostgresStore> {
        let store = Self::connect_lazy(url)?;
        let migrate = async {
            MIGRATOR
                .run(&store.pool)
                .await
                .map_err(|e| anyhow::anyhow!("cannot prepare the PostgreSQL store: {e}"))
        };
        tokio::time::timeout(OPERATION_TIMEOUT, migrate)
            .await
            .map_err(|_| anyhow::anyhow!("PostgreSQL did not answer within 30 s"))??;
        Ok(store)
    }

    /// A store on `url` that connects on first use and applies no migrations
    /// (for a database already migrated, and for tests of outages).
    pub fn connect_lazy(url: &str) -> anyhow::Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("bad PostgreSQL URL: {e}"))?
            .application_name("chatstream");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A query on a dead connection fails as Unavailable and is
            // retried anyway: a ping before every acquire only adds a round
            // trip to each write.
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options);
        Ok(PostgresStore { pool })
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply_batch(&self, writes: &[StoreWrite]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Lock every conversation of the batch, in key order (one statement,
        // so concurrent batches cannot deadlock on these locks).
        let mut keys: Vec<i32> = writes
            .iter()
            .map(|write| lock_key(write.conversation_id()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, k) \
             FROM (SELECT k FROM unnest($2::int4[]) AS k ORDER BY k) AS keys",
        )
        .bind(LOCK_CLASS)
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        for write in writes {
            // An error drops `tx`, which rolls the whole batch back.
            Self::write(&mut tx, write).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn write(tx: &mut Transaction<'static, Postgres>, write: &StoreWrite) -> StoreResult<()> {
        match write {
            StoreWrite::Conversation(c) => {
                sqlx::query(
                    "INSERT INTO conversations (id, owner, title, created_at, updated_at) \
                     SELECT $1, $2, $3, $4, $5 \
                     WHERE NOT EXISTS (SELECT 1 FROM deleted_conversations WHERE id = $1) \
                     ON CONFLICT (id) DO UPDATE SET \
                       title = CASE WHEN EXCLUDED.updated_at >= conversations.updated_at \
                               THEN EXCLUDED.title ELSE conversations.title END, \
                       updated_at = GREATEST(conversations.updated_at, EXCLUDED.updated_at)",
                )
                .bind(c.id)
                .bind(c.owner.as_str())
                .bind(pg_opt_text(&c.title))
                .bind(pg_time(c.created_at)?)
                .bind(pg_time(c.updated_at)?)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
            }
            StoreWrite::Message(m) => {
                let (prompt_tokens, completion_tokens) = usage_columns(m.usage)?;
                let message = &m.message;
                sqlx::query(
                    "INSERT INTO messages (id, conversation_id, position, role, content, status, \
                       model, error, finish_reason, prompt_tokens, completion_tokens, created_at) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
                     WHERE EXISTS (SELECT 1 FROM conversations WHERE id = $2) \
                     ON CONFLICT (id) DO UPDATE SET \
                       position = EXCLUDED.position, role = EXCLUDED.role, \
                       content = EXCLUDED.content, status = EXCLUDED.status, \
                       model = EXCLUDED.model, error = EXCLUDED.error, \
                       finish_reason = CASE WHEN EXCLUDED.status = messages.status \
                           THEN COALESCE(EXCLUDED.finish_reason, messages.finish_reason) ELSE EXCLUDED.finish_reason END, \
                       prompt_tokens = CASE WHEN EXCLUDED.status = messages.status \
                           THEN COALESCE(EXCLUDED.prompt_tokens, messages.prompt_tokens) ELSE EXCLUDED.prompt_tokens END, \
                       completion_tokens = CASE WHEN EXCLUDED.status = messages.status \
                           THEN COALESCE(EXCLUDED.completion_tokens, messages.completion_tokens) ELSE EXCLUDED.completion_tokens END \
                     WHERE EXCLUDED.status <> 'streaming' \
                       OR (messages.status = 'streaming' \
                           AND octet_length(EXCLUDED.content) >= octet_length(messages.content))",
                )
                .bind(message.id)
                .bind(message.conversation_id)
                .bind(to_i64(m.position, "position")?)
                .bind(role_str(message.role))
                .bind(pg_text(&message.content))
                .bind(status_str(message.status))
                .bind(pg_opt_text(&message.model))
                .bind(pg_opt_text(&message.error))
                .bind(pg_opt_text(&m.finish_reason))
                .bind(prompt_tokens)
                .bind(completion_tokens)
                .bind(pg_time(message.created_at)?)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
            }
            StoreWrite::DeleteConversation(id) => {
                sqlx::query(
                    "INSERT INTO deleted_conversations (id, deleted_at) VALUES ($1, now()) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                // The messages go with it (ON DELETE CASCADE).
                sqlx::query("DELETE FROM conversations WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        deadline(async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn apply(&self, writes: &[StoreWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        deadline(self.apply_batch(writes)).await
    }

    async fn conversation(&self, id: Uuid) -> StoreResult<Option<StoredConversation>> {
        deadline(async {
            sqlx::query(
                "SELECT id, owner, title, created_at, updated_at FROM conversations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(conversation_from_row)
            .transpose()
        })
        .await
    }

    async fn messages(&self, conversation_id: Uuid) -> StoreResult<Vec<StoredMessage>> {
        deadline(async {
            sqlx::query(
                "SELECT id, conversation_id, position, role, content, status, model, error, \
                   finish_reason, prompt_tokens, completion_tokens, created_at \
                 FROM messages WHERE conversation_id = $1 ORDER BY position, id",
            )
            .bind(conversation_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .iter()
            .map(message_from_row)
            .collect()
        })
        .await
    }

    async fn message_conversation(&self, message_id: Uuid) -> StoreResult<Option<Uuid>> {
        deadline(async {
            let row: Option<(Uuid,)> =
                sqlx::query_as("SELECT conversation_id FROM messages WHERE id = $1")
                    .bind(message_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
            Ok(row.map(|(id,)| id))
        })
        .await
    }

    async fn list_conversations(
        &self,
        owner: &UserId,
        limit: usize,
        before: Option<&str>,
    ) -> StoreResult<ConversationPage> {
        let (limit, query_limit) = page_query_limit(limit);
        let cursor = before.map(decode_cursor).transpose()?;
        deadline(async {
            let rows = match cursor {
                None => sqlx::query(
                    "SELECT id, owner, title, created_at, updated_at FROM conversations \
                     WHERE owner = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
                )
                .bind(owner.as_str())
                .bind(query_limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?,
                Some(cursor) => sqlx::query(
                    "SELECT id, owner, title, created_at, updated_at FROM conversations \
                     WHERE owner = $1 AND (updated_at, id) < ($2, $3) \
                     ORDER BY updated_at DESC, id DESC LIMIT $4",
                )
                .bind(owner.as_str())
                .bind(from_micros(cursor.updated_at_micros).map_err(|_| StoreError::InvalidCursor)?)
                .bind(cursor.id)
                .bind(query_limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?,
            };
            let conversations = rows
                .iter()
                .map(conversation_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(finish_page(conversations, limit))
        })
        .await
    }

    async fn count_conversations(&self, owner: &UserId) -> StoreResult<u64> {
        deadline(async {
            let (count,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM conversations WHERE owner = $1")
                    .bind(owner.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error)?;
            to_u64(count, "count")
        })
        .await
    }

    async fn streaming_replies(&self) -> StoreResult<Vec<(Uuid, Uuid)>> {
        deadline(async {
            sqlx::query_as(
                "SELECT conversation_id, id FROM messages WHERE status = 'streaming' \
                 ORDER BY conversation_id, position",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
        })
        .await
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
        // plainto_tsquery takes any text (punctuation and operators are not
        // syntax for it) and ANDs its words.
        let text = words.join(" ");
        let options = format!(
            "StartSel=\"{SNIPPET_OPEN}\", StopSel=\"{SNIPPET_CLOSE}\", \
             FragmentDelimiter=\" {SNIPPET_ELLIPSIS} \", MaxFragments=2, \
             MaxWords=16, MinWords=6, ShortWord=0"
        );
        deadline(async {
            let rows = sqlx::query(
                "SELECT hit.conversation_id, hit.title, hit.id, hit.role, hit.created_at, \
                   ts_headline('simple', hit.content, q, $4) AS snippet \
                 FROM ( \
                   SELECT m.conversation_id, c.title, m.id, m.role, m.created_at, m.content, \
                     ts_rank_cd(m.search, q) AS rank \
                   FROM messages m \
                   JOIN conversations c ON c.id = m.conversation_id, \
                     plainto_tsquery('simple', $2) AS q \
                   WHERE c.owner = $1 AND m.search @@ q \
                   ORDER BY rank DESC, m.created_at DESC, m.id DESC \
                   LIMIT $3 \
                 ) AS hit, plainto_tsquery('simple', $2) AS q \
                 ORDER BY hit.rank DESC, hit.created_at DESC, hit.id DESC",
            )
            .bind(owner.as_str())
            .bind(text)
            .bind(search_limit(limit))
            .bind(options)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            rows.iter()
                .map(|row| {
                    Ok(SearchHit {
                        conversation_id: row.try_get("conversation_id").map_err(db_error)?,
                        conversation_title: row.try_get("title").map_err(db_error)?,
                        message_id: row.try_get("id").map_err(db_error)?,
                        role: parse_role(row.try_get("role").map_err(db_error)?)?,
                        snippet: row.try_get("snippet").map_err(db_error)?,
                        created_at: row.try_get("created_at").map_err(db_error)?,
                    })
                })
                .collect()
        })
        .await
    }
}
