//! The incoming side of one socket, as its read loop feeds it.
//!
//! Every frame meets the connection's rate limit before anything else: a
//! refused frame is neither parsed nor queued, only answered with a
//! `rate_limited` error (and a client that keeps flooding is closed with
//! 4029). Admitted frames reach the Connection through a bounded queue: when
//! it is full, the read loop stops reading the socket until the Connection
//! catches up, so a fast client pushes back on its own TCP stream instead of
//! filling the node's memory.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ractor::ActorRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::connection::ConnectionMsg;
use super::outbox::Outbox;
use crate::actors::Frame;
use crate::protocol::{ApiError, ErrorCode, ServerFrame, close_code};

/// Frames read and not yet handled by the Connection.
const QUEUED_FRAMES: usize = 8;

/// Refused frames within `FLOOD_WINDOW`, in bursts, after which the client is
/// closed: one that keeps sending well past its allowance is not slowing
/// down. Counted over a window rather than in a row, because a flooder gets
/// a frame through whenever its bucket refills.
const FLOOD_BURSTS: u32 = 4;
const FLOOD_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// A place in the read queue, freed when the Connection has handled the frame.
pub type ReadSlot = Option<OwnedSemaphorePermit>;

/// The Connection is gone; the read loop stops.
#[derive(Debug)]
pub struct Gone;

pub struct Inbox {
    connection: ActorRef<ConnectionMsg>,
    outbox: Arc<Outbox>,
    limiter: DefaultDirectRateLimiter,
    queue: Arc<Semaphore>,
    /// Frames refused since `window_start`.
    refused: u32,
    window_start: std::time::Instant,
    /// `refused` at which the client is closed with 4029.
    flood_limit: u32,
    /// The answer to a refused frame, serialized once.
    refusal: Frame,
}

impl Inbox {
    /// An inbox admitting `per_second` frames a second, in bursts of twice
    /// as many.
    pub fn new(connection: ActorRef<ConnectionMsg>, outbox: Arc<Outbox>, per_second: u32) -> Inbox {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = per_second.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
        let refusal = ServerFrame::error(
            None,
            ApiError::new(
                ErrorCode::RateLimited,
                "Too many messages at once; this one was not read. Slow down and send it again.",
            ),
        );
        Inbox {
            connection,
            outbox,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            queue: Arc::new(Semaphore::new(QUEUED_FRAMES)),
            refused: 0,
            window_start: std::time::Instant::now(),
            flood_limit: burst.get().saturating_mul(FLOOD_BURSTS),
            refusal: Frame::from(refusal.to_text()),
        }
    }

    /// A text frame: queued for the Connection if the rate limit admits it
    /// (waiting for a place in the queue), else answered `rate_limited`.
    pub async fn text(&mut self, text: &str) -> Result<(), Gone> {
        if !self.admit()? {
            return Ok(());
        }
        let slot = self.slot().await?;
        self.connection
            .cast(ConnectionMsg::Text {
                text: text.to_owned(),
                slot,
            })
            .map_err(|_| Gone)
    }

    /// A binary frame (not part of the protocol): limited like text.
    pub async fn binary(&mut self) -> Result<(), Gone> {
        if !self.admit()? {
            return Ok(());
        }
        let slot = self.slot().await?;
        self.connection
            .cast(ConnectionMsg::Binary { slot })
            .map_err(|_| Gone)
    }

    /// A ping or pong below the protocol: a sign of life, and limited too
    /// (the read loop answers pings, so a ping flood would cost the node).
    /// False when it must be ignored.
    pub fn control(&mut self) -> Result<bool, Gone> {
        let admitted = self.limiter.check().is_ok();
        if admitted {
            self.connection
                .cast(ConnectionMsg::Activity)
                .map_err(|_| Gone)?;
        }
        Ok(admitted)
    }

    /// The read loop saw a protocol violation: the Connection closes the
    /// socket with `code`.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.connection.cast(ConnectionMsg::Close {
            code,
            reason: reason.into(),
        });
    }

    /// The client closed the socket.
    pub fn client_gone(&self) {
        let _ = self.connection.cast(ConnectionMsg::ClientGone);
    }

    fn admit(&mut self) -> Result<bool, Gone> {
        if self.limiter.check().is_ok() {
            return Ok(true);
        }
        metrics::counter!("chatstream_frames_refused_total").increment(1);
        if self.window_start.elapsed() > FLOOD_WINDOW {
            self.window_start = std::time::Instant::now();
            self.refused = 0;
        }
        self.refused += 1;
        // An answer per refused frame, while the outbox takes it: a client
        // that floods and does not read is closed as too slow.
        let _ = self.outbox.push(self.refusal.clone());
        if self.refused >= self.flood_limit {
            self.outbox
                .close(close_code::OVER_LIMIT, "too many frames, reconnect later");
            let _ = self.connection.cast(ConnectionMsg::ClientGone);
            return Err(Gone);
        }
        Ok(false)
    }

    async fn slot(&self) -> Result<ReadSlot, Gone> {
        self.queue
            .clone()
            .acquire_owned()
            .await
            .map(Some)
            .map_err(|_| Gone)
    }
}
