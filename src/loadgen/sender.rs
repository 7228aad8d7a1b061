//! The client that talks: `send`s its messages one after another, each once
//! the previous reply has ended, and times each reply's first delta.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::socket::{Socket, Stop};
use super::tally::Tally;
use crate::protocol::{ClientRequest, ErrorCode, Event, SendRequest, ServerFrame};

/// How long to wait before sending a frame the server rate-limited again.
const RATE_LIMIT_BACKOFF: Duration = Duration::from_millis(50);

enum Turn {
    Completed,
    Refused,
}

pub struct Sender {
    pub socket: Socket,
    pub conversation_id: Uuid,
    pub content: String,
    pub messages: usize,
    /// Told the conversation's last seq once the sender is done, so that its
    /// watchers know when they have everything.
    pub finished: watch::Sender<Option<u64>>,
}

impl Sender {
    /// Runs every turn, or as many as fit before `deadline`.
    pub async fn run(mut self, deadline: Instant) -> (Tally, Instant) {
        for _ in 0..self.messages {
            match self.turn(deadline).await {
                Ok(Turn::Completed) => self.socket.tally.turns += 1,
                // Whatever refused it would refuse the next one too.
                Ok(Turn::Refused) => break,
                Err(Stop::Deadline) => break,
                Err(Stop::Closed(code)) => {
                    self.socket
                        .tally
                        .error(format!("sender socket closed (code {code:?})"));
                    break;
                }
            }
        }
        let finished_at = Instant::now();
        let _ = self.finished.send(Some(self.socket.tally.last_seq));
        (self.socket.close().await, finished_at)
    }

    /// One turn: `send`, then frames until both its `ack` and its reply's
    /// ending arrived (in either order, as the contract allows).
    async fn turn(&mut self, deadline: Instant) -> Result<Turn, Stop> {
        let request = ClientRequest::Send(SendRequest {
            conversation_id: Some(self.conversation_id),
            content: self.content.clone(),
            client_msg_id: Some(Uuid::new_v4()),
            model: None,
            parent_id: None,
        });
        let (mut id, mut sent_at) = self.send(&request).await?;
        let (mut acked, mut ended, mut first_delta) = (false, false, false);
        while !(acked && ended) {
            match self.socket.next(deadline).await? {
                ServerFrame::Ack { id: Some(got), .. } if got == id => acked = true,
                ServerFrame::Error {
                    id: got,
                    code: ErrorCode::RateLimited,
                    ..
                } if got.is_none() || got.as_ref() == Some(&id) => {
                    // Not acted on (a frame refused by the connection's rate
                    // limit is not even read, so its answer has no id): send
                    // it again, with the same client_msg_id, so that it can
                    // never start a second turn.
                    self.socket.tally.rate_limited += 1;
                    let resume = Instant::now() + RATE_LIMIT_BACKOFF;
                    if resume >= deadline {
                        return Err(Stop::Deadline);
                    }
                    tokio::time::sleep_until(resume.into()).await;
                    (id, sent_at) = self.send(&request).await?;
                }
                ServerFrame::Error {
                    id: Some(got),
                    code,
                    message,
                    ..
                } if got == id => {
                    self.socket.tally.turns_failed += 1;
                    self.socket
                        .tally
                        .error(format!("send refused: {code:?}: {message}"));
                    // Nothing of this turn will come; do not wait for it.
                    return Ok(Turn::Refused);
                }
                ServerFrame::Event { event, .. } => match event {
                    Event::Delta { .. } if !first_delta => {
                        first_delta = true;
                        let micros = sent_at.elapsed().as_micros() as u64;
                        self.socket.tally.send_to_first_delta.record(micros);
                    }
                    event if event.is_ending() => ended = true,
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(Turn::Completed)
    }

    async fn send(&mut self, request: &ClientRequest) -> Result<(String, Instant), Stop> {
        let sent_at = Instant::now();
        match self.socket.request(request).await {
            Ok(id) => Ok((id, sent_at)),
            Err(_) => Err(Stop::Closed(None)),
        }
    }
}
