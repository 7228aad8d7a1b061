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

use super::outbox::{self, NewEvent, Outbox, OutboxOptions, OutboxRow, OutboxStats};
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
/// The advisory lock every outbox claim takes (class "cs" + 2, key 0), so
/// that claims run one at a time: a claim must see every earlier claim of a
/// conversation's rows committed, or two exporters could each take one of
/// its events and publish them out of order.
const CLAIM_LOCK: (i32, i32) = (0x6373_0002, 0);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// The durable store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Set when writes add events to the outbox.
    outbox: Option<OutboxOptions>,
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
            parent_id: row.try_get("parent_id").map_err(db_error)?,
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
        Ok(PostgresStore { pool, outbox: None })
    }

    /// This store, adding events to the outbox when `outbox` is given.
    pub fn with_outbox(mut self, outbox: Option<OutboxOptions>) -> PostgresStore {
        self.outbox = outbox;
        self
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
        let now = pg_time(Utc::now())?;
        for write in writes {
            // An error drops `tx`, which rolls the whole batch back.
            self.write(&mut tx, write, now).await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn add_event(
        tx: &mut Transaction<'static, Postgres>,
        event: NewEvent,
    ) -> StoreResult<()> {
        // DO NOTHING: the same change written again (a retried batch, or
        // the same write from another node) keeps its one event.
        sqlx::query(
            "INSERT INTO outbox (event_id, conversation_id, kind, created_at, payload) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id)
        .bind(event.conversation_id)
        .bind(event.kind.as_str())
        .bind(event.created_at)
        .bind(pg_text(&event.payload))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// The owner of a stored conversation.
    async fn owner(
        tx: &mut Transaction<'static, Postgres>,
        id: Uuid,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT owner FROM conversations WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_error)?;
        Ok(row.map(|(owner,)| owner))
    }

    async fn write(
        &self,
        tx: &mut Transaction<'static, Postgres>,
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
                         LEFT JOIN messages m ON m.id = $1 WHERE c.id = $2",
                    )
                    .bind(message.id)
                    .bind(message.conversation_id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_error)?,
                    _ => None,
                };
                let written = sqlx::query(
                    "INSERT INTO messages (id, conversation_id, position, role, content, status, \
                       model, error, finish_reason, prompt_tokens, completion_tokens, created_at, parent_id) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
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
                .bind(message.parent_id)
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
            StoreWrite::DeleteConversation(id) => {
                let owner = match self.outbox {
                    Some(_) => Self::owner(tx, *id).await?,
                    None => None,
                };
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
                if let Some(owner) = owner {
                    Self::add_event(tx, outbox::conversation_deleted(*id, &owner, now)).await?;
                }
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

    fn outbox(&self) -> Option<&dyn Outbox> {
        self.outbox.map(|_| self as &dyn Outbox)
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
                   finish_reason, prompt_tokens, completion_tokens, created_at, parent_id \
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

fn outbox_row_from(row: &PgRow) -> StoreResult<OutboxRow> {
    Ok(OutboxRow {
        seq: row.try_get("seq").map_err(db_error)?,
        event_id: row.try_get("event_id").map_err(db_error)?,
        conversation_id: row.try_get("conversation_id").map_err(db_error)?,
        kind: row.try_get("kind").map_err(db_error)?,
        created_at: row.try_get("created_at").map_err(db_error)?,
        payload: row.try_get("payload").map_err(db_error)?,
    })
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim(
        &self,
        claimer: &str,
        lease: Duration,
        limit: usize,
    ) -> StoreResult<Vec<OutboxRow>> {
        deadline(async {
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(CLAIM_LOCK.0)
                .bind(CLAIM_LOCK.1)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            // A statement of its own after the lock: under READ COMMITTED it
            // sees every claim committed before the lock was granted. Leases
            // are in the database's time, which every node shares.
            let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
            let rows = sqlx::query(
                "UPDATE outbox SET claimed_by = $1, \
                   claimed_until = now() + $2 * interval '1 millisecond' \
                 WHERE seq IN ( \
                   SELECT o.seq FROM outbox o \
                   WHERE (o.claimed_until IS NULL OR o.claimed_until < now()) \
                     AND NOT EXISTS (SELECT 1 FROM outbox p \
                       WHERE p.conversation_id = o.conversation_id AND p.seq < o.seq \
                         AND p.claimed_until >= now()) \
                   ORDER BY o.seq LIMIT $3) \
                 RETURNING seq, event_id, conversation_id, kind, created_at, payload",
            )
            .bind(claimer)
            .bind(lease_ms as f64)
            .bind(search_limit(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            let mut claimed = rows
                .iter()
                .map(outbox_row_from)
                .collect::<StoreResult<Vec<_>>>()?;
            claimed.sort_by_key(|row| row.seq);
            Ok(claimed)
        })
        .await
    }

    async fn published(&self, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        deadline(async {
            sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
                .bind(seqs)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn release(&self, claimer: &str, seqs: &[i64]) -> StoreResult<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        deadline(async {
            sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL \
                 WHERE seq = ANY($1) AND claimed_by = $2",
            )
            .bind(seqs)
            .bind(claimer)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> StoreResult<OutboxStats> {
        deadline(async {
            let (rows, oldest): (i64, Option<DateTime<Utc>>) =
                sqlx::query_as("SELECT count(*), min(created_at) FROM outbox")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error)?;
            Ok(OutboxStats {
                rows: to_u64(rows, "count")?,
                oldest,
            })
        })
        .await
    }
}
