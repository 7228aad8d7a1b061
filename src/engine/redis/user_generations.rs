//! The per-user count of streaming replies on Redis (`generations.lua`):
//! reserved before a turn, in the user's own slot, and given back when the
//! reply ends. A count whose removal was lost (a node died between a reply's
//! ending and the removal, or the conversation vanished) is found when the
//! user reaches the limit: each counted reply is then checked in its
//! conversation, and those that no longer stream stop counting.

use std::time::Duration;

use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::link::Link;
use super::{map_error, meta_keys};
use crate::engine::{EngineError, EngineResult};
use crate::protocol::UserId;

/// How long a user's set outlives their last reservation.
const SET_TTL: Duration = Duration::from_secs(24 * 3600);

fn key(user: &UserId) -> String {
    format!("cs:user:{user}:generations")
}

fn member(conversation_id: Uuid, message_id: Uuid) -> String {
    format!("{conversation_id}:{message_id}")
}

pub struct UserGenerations {
    script: Script,
    /// How long a reservation counts before it may be judged: a reply
    /// reserved for a turn that is still being recorded does not stream
    /// yet, and must not be taken for a lost one.
    grace: Duration,
}

impl UserGenerations {
    pub fn new(grace: Duration) -> UserGenerations {
        UserGenerations {
            script: Script::new(include_str!("generations.lua")),
            grace,
        }
    }

    /// Counts the reply toward its user's limit, or answers
    /// `TooManyGenerations` when `limit` replies of theirs still stream.
    pub async fn reserve(
        &self,
        link: &mut Link,
        user: &UserId,
        conversation_id: Uuid,
        message_id: Uuid,
        limit: usize,
    ) -> EngineResult<()> {
        // Twice at most: once more after dropping counts whose replies ended.
        for _ in 0..2 {
            let answer: Vec<String> = self
                .script
                .key(key(user))
                .arg("reserve")
                .arg(member(conversation_id, message_id))
                .arg(limit)
                .arg(SET_TTL.as_secs())
                .invoke_async(link)
                .await
                .map_err(map_error)?;
            let [outcome, rest @ ..] = answer.as_slice() else {
                return Err(EngineError::Internal("short reply".into()));
            };
            if outcome == "ok" {
                return Ok(());
            }
            if !self.drop_ended(link, user, rest).await? {
                break;
            }
        }
        Err(EngineError::TooManyGenerations { limit })
    }

    /// Checks the counted replies (`now`, then member and score pairs)
    /// reserved longer ago than the grace, and drops those no longer
    /// streaming; answers whether it dropped any.
    async fn drop_ended(
        &self,
        link: &mut Link,
        user: &UserId,
        counted: &[String],
    ) -> EngineResult<bool> {
        let [now, pairs @ ..] = counted else {
            return Ok(false);
        };
        let now: i64 = now.parse().unwrap_or(0);
        let grace = self.grace.as_millis() as i64;
        let mut ended = Vec::new();
        for pair in pairs.chunks_exact(2) {
            let reserved: i64 = pair[1].parse().unwrap_or(now);
            if now - reserved < grace {
                continue;
            }
            let Some((conversation, message)) = pair[0]
                .split_once(':')
                .and_then(|(c, m)| Some((c.parse::<Uuid>().ok()?, m)))
            else {
                ended.push(pair[0].clone());
                continue;
            };
            let [meta, ..] = meta_keys(conversation);
            let streaming: Option<String> =
                link.hget(meta, "streaming").await.map_err(map_error)?;
            if streaming.as_deref() != Some(message) {
                ended.push(pair[0].clone());
            }
        }
        if ended.is_empty() {
            return Ok(false);
        }
        let _: () = link.zrem(key(user), &ended).await.map_err(map_error)?;
        Ok(true)
    }

    /// Gives back a reservation (its turn was refused, or its reply ended).
    pub async fn release(
        &self,
        link: &mut Link,
        user: &UserId,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<()> {
        link.zrem(key(user), member(conversation_id, message_id))
            .await
            .map_err(map_error)
    }

    /// Counts a reply again without a limit: a streaming reply restored in
    /// a rebuilt conversation.
    pub fn recount(
        user: &UserId,
        conversation_id: Uuid,
        message_id: Uuid,
        now_ms: i64,
    ) -> redis::Cmd {
        redis::cmd("ZADD")
            .arg(key(user))
            .arg(now_ms)
            .arg(member(conversation_id, message_id))
            .to_owned()
    }
}
