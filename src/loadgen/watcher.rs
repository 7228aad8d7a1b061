//! A client that only follows a conversation (another tab of the same user):
//! the fan-out side of the load. It reads until it has the sender's last
//! event, or the deadline passes.

use std::time::Instant;

use tokio::sync::watch;

use super::socket::{Socket, Stop};
use super::tally::Tally;

pub struct Watcher {
    pub socket: Socket,
    /// The conversation's last seq, once its sender is done.
    pub finished: watch::Receiver<Option<u64>>,
}

impl Watcher {
    pub async fn run(mut self, deadline: Instant) -> (Tally, Instant) {
        // Whether the sender can still say anything (it says its last seq once).
        let mut sender_talks = true;
        loop {
            let last = *self.finished.borrow_and_update();
            if last.is_some_and(|last| self.socket.tally.last_seq >= last) {
                break;
            }
            let frame = if sender_talks && last.is_none() {
                tokio::select! {
                    frame = self.socket.next(deadline) => frame,
                    changed = self.finished.changed() => {
                        sender_talks = changed.is_ok();
                        continue;
                    }
                }
            } else {
                self.socket.next(deadline).await
            };
            match frame {
                Ok(_) => {}
                Err(Stop::Deadline) => break,
                Err(Stop::Closed(code)) => {
                    self.socket
                        .tally
                        .error(format!("watcher socket closed (code {code:?})"));
                    break;
                }
            }
        }
        let finished_at = Instant::now();
        (self.socket.close().await, finished_at)
    }
}
