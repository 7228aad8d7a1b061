//! The outgoing side of one socket, as the Connection actor sees it.
//!
//! A bounded queue of frames plus a close signal that jumps the queue. The
//! HTTP layer drains it into the real WebSocket; tests drain it directly, so
//! the Connection actor is testable without actix. A full queue means the
//! client reads too slowly: the Connection closes it (4001) rather than buffer
//! without limit.

use tokio::sync::{mpsc, oneshot};

use crate::actors::Frame;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxError {
    /// The client is not keeping up.
    Full,
    /// The socket is gone.
    Closed,
}

/// A close code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

pub struct Outbox {
    frames: mpsc::Sender<Frame>,
    close: std::sync::Mutex<Option<oneshot::Sender<Close>>>,
}

/// The draining end: frames in order, and the close signal.
pub struct OutboxReceiver {
    pub frames: mpsc::Receiver<Frame>,
    pub close: oneshot::Receiver<Close>,
}

impl Outbox {
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (frames, frames_rx) = mpsc::channel(capacity.max(1));
        let (close, close_rx) = oneshot::channel();
        (
            Outbox {
                frames,
                close: std::sync::Mutex::new(Some(close)),
            },
            OutboxReceiver {
                frames: frames_rx,
                close: close_rx,
            },
        )
    }

    pub fn push(&self, frame: Frame) -> Result<(), OutboxError> {
        self.frames.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => OutboxError::Full,
            mpsc::error::TrySendError::Closed(_) => OutboxError::Closed,
        })
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.close
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none()
    }

    /// Closes the socket with `code`; only the first close counts.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        let sender = self
            .close
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(Close {
                code,
                reason: reason.into(),
            });
        }
    }
}
