//! The outgoing side of one socket, as the Connection actor sees it.
//!
//! A queue of frames bounded in count and in bytes, plus a close signal that
//! jumps the queue. The HTTP layer drains it into the real WebSocket; tests
//! drain it directly, so the Connection actor is testable without actix. A
//! full queue means the client reads too slowly: the Connection closes it
//! (4001) rather than buffer without limit. Counting bytes matters because
//! one snapshot of a long conversation can weigh megabytes: a client that
//! stops reading and subscribes again and again must not pin one per frame
//! slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// Bytes queued and not yet taken by the receiver.
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    close: std::sync::Mutex<Option<oneshot::Sender<Close>>>,
}

/// The draining end: frames in order, and the close signal.
pub struct OutboxReceiver {
    pub frames: QueuedFrames,
    pub close: oneshot::Receiver<Close>,
}

/// The frames of an outbox, in order; taking one frees its bytes.
pub struct QueuedFrames {
    frames: mpsc::Receiver<Frame>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Outbox {
    /// An outbox holding at most `max_frames` frames and `max_bytes` bytes;
    /// a single frame larger than `max_bytes` is still accepted when nothing
    /// waits before it, so that no answer is too large to send at all.
    pub fn channel(max_frames: usize, max_bytes: usize) -> (Arc<Outbox>, OutboxReceiver) {
        let (frames, frames_rx) = mpsc::channel(max_frames.max(1));
        let (close, close_rx) = oneshot::channel();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        (
            Arc::new(Outbox {
                frames,
                queued_bytes: queued_bytes.clone(),
                max_bytes,
                close: std::sync::Mutex::new(Some(close)),
            }),
            OutboxReceiver {
                frames: QueuedFrames {
                    frames: frames_rx,
                    queued_bytes,
                },
                close: close_rx,
            },
        )
    }

    pub fn push(&self, frame: Frame) -> Result<(), OutboxError> {
        let size = frame.len();
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before + size > self.max_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(OutboxError::Full);
        }
        self.frames.try_send(frame).map_err(|e| {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => OutboxError::Full,
                mpsc::error::TrySendError::Closed(_) => OutboxError::Closed,
            }
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

impl QueuedFrames {
    /// The next frame, waiting for one; `None` once the outbox is dropped.
    pub async fn recv(&mut self) -> Option<Frame> {
        let frame = self.frames.recv().await?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }

    /// Whether the outbox was dropped.
    pub fn is_closed(&self) -> bool {
        self.frames.is_closed()
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Frame> {
        let frame = self.frames.try_recv().ok()?;
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: usize) -> Frame {
        Frame::from("x".repeat(bytes))
    }

    #[tokio::test]
    async fn bounded_in_bytes_as_well_as_frames() {
        let (outbox, mut receiver) = Outbox::channel(100, 1_000);
        outbox.push(frame(600)).unwrap();
        assert_eq!(outbox.push(frame(600)), Err(OutboxError::Full));
        outbox.push(frame(400)).unwrap();
        assert_eq!(outbox.push(frame(1)), Err(OutboxError::Full));
        // Taking a frame frees its bytes.
        assert_eq!(receiver.frames.recv().await.unwrap().len(), 600);
        outbox.push(frame(600)).unwrap();
        assert_eq!(receiver.frames.try_recv().unwrap().len(), 400);
        assert_eq!(receiver.frames.try_recv().unwrap().len(), 600);
        assert!(receiver.frames.try_recv().is_none());
    }

    #[test]
    fn one_frame_larger_than_the_bound_goes_out_alone() {
        let (outbox, mut receiver) = Outbox::channel(100, 1_000);
        outbox.push(frame(5_000)).unwrap();
        assert_eq!(outbox.push(frame(1)), Err(OutboxError::Full));
        assert_eq!(receiver.frames.try_recv().unwrap().len(), 5_000);
        outbox.push(frame(1)).unwrap();
    }

    #[test]
    fn bounded_in_frames() {
        let (outbox, _receiver) = Outbox::channel(2, 1_000_000);
        outbox.push(frame(1)).unwrap();
        outbox.push(frame(1)).unwrap();
        assert_eq!(outbox.push(frame(1)), Err(OutboxError::Full));
    }
}
