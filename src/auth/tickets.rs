//! Single-use WebSocket tickets: `POST /api/ws-ticket` trades a bearer token
//! for a ticket valid [`TICKET_TTL`], which `GET /ws/chat?ticket=` takes, so
//! that no long-lived token travels in a URL (where proxies log it).
//!
//! The engine keeps them, so that a ticket issued on one node opens a
//! socket on any node of a cluster, and only once across the cluster. It
//! stores the ticket's SHA-256 digest, never the ticket: whoever can read
//! the engine cannot use what it holds. A ticket is 256 random bits, so the
//! digest needs no salt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::engine::Engine;
use crate::protocol::{ApiError, ErrorCode, UserId};

/// How long a ticket opens a socket.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Random bytes in a ticket.
const TICKET_BYTES: usize = 32;

/// What `POST /api/ws-ticket` answers.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// What the engine stores for `ticket`.
pub fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

/// A new ticket for `user`, valid for `ttl`, kept in `engine`.
pub async fn issue(engine: &dyn Engine, user: &UserId, ttl: Duration) -> Result<Ticket, ApiError> {
    let bytes: [u8; TICKET_BYTES] = rand::random();
    let ticket = hex(&bytes);
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    engine
        .put_ticket(&digest(&ticket), user, ttl)
        .await
        .map_err(|e| e.into_api("ticket"))?;
    Ok(Ticket { ticket, expires_at })
}

/// The user a ticket was issued to, taking it so that it opens nothing
/// again. A used, expired or unknown ticket is refused like a bad token.
pub async fn redeem(engine: &dyn Engine, ticket: &str) -> Result<UserId, ApiError> {
    // Anything but a ticket's shape names no ticket: no need to ask.
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if ticket.len() != 2 * TICKET_BYTES || !ticket.bytes().all(lower_hex) {
        return Err(not_valid());
    }
    match engine.take_ticket(&digest(ticket)).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(not_valid()),
        Err(error) => {
            tracing::warn!(%error, "could not check a WebSocket ticket");
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the ticket cannot be checked right now; ask for a new one",
            ))
        }
    }
}

fn not_valid() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "the ticket is not valid: it was used, has expired or never existed",
    )
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_digest_to_sha256() {
        assert_eq!(
            hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
