//! One WebSocket of the load generator: it speaks the contract's frames,
//! keeps the heartbeat, and counts everything it receives in its `Tally`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::tally::Tally;
use crate::protocol::{ClientRequest, ServerFrame};

/// How long connecting (upgrade and `welcome`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a socket stopped delivering frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The run's deadline passed.
    Deadline,
    /// The server closed the socket (with this code, if it sent one).
    Closed(Option<u16>),
}

pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Send something at least this often (half the announced heartbeat).
    keepalive: Duration,
    last_sent: Instant,
    next_id: u64,
    pub tally: Tally,
}

/// Unix time in milliseconds, as `ts` carries it.
pub fn now_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_micros() as f64 / 1000.0)
}

impl Socket {
    /// Connects and waits for `welcome`.
    pub async fn connect(url: &str) -> anyhow::Result<Socket> {
        let (ws, _) = timeout(
            CONNECT_TIMEOUT,
            // No Nagle: frames are small and each one is waited for.
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .context("WebSocket connect timed out")?
        .context("WebSocket connect failed")?;
        let mut socket = Socket {
            ws,
            keepalive: Duration::from_secs(10),
            last_sent: Instant::now(),
            next_id: 0,
            tally: Tally::default(),
        };
        match socket.next(Instant::now() + CONNECT_TIMEOUT).await {
            Ok(ServerFrame::Welcome { heartbeat_ms, .. }) => {
                socket.keepalive = Duration::from_millis(heartbeat_ms.max(2) / 2);
                Ok(socket)
            }
            Ok(other) => bail!("the first frame is not welcome: {other:?}"),
            Err(stop) => bail!("no welcome: {stop:?}"),
        }
    }

    /// Sends a request with a fresh frame `id`, which it returns.
    pub async fn request(&mut self, request: &ClientRequest) -> anyhow::Result<String> {
        self.next_id += 1;
        let id = format!("l{}", self.next_id);
        let mut frame = serde_json::to_value(request)?;
        frame["id"] = serde_json::Value::String(id.clone());
        self.ws
            .send(WsMessage::text(frame.to_string()))
            .await
            .context("sending a frame")?;
        self.last_sent = Instant::now();
        Ok(id)
    }

    /// The next server frame, counted in the tally (events with their
    /// append→screen latency), or why none came before `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<ServerFrame, Stop> {
        loop {
            let message = tokio::select! {
                message = self.ws.next() => message,
                () = sleep_until(deadline.into()) => return Err(Stop::Deadline),
                () = sleep_until((self.last_sent + self.keepalive).into()) => {
                    // A WebSocket ping is a sign of life and not a frame the
                    // rate limit counts.
                    self.last_sent = Instant::now();
                    if self.ws.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return Err(Stop::Closed(None));
                    }
                    continue;
                }
            };
            let received_ms = now_millis();
            let text = match message {
                Some(Ok(WsMessage::Text(text))) => text,
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(Stop::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Stop::Closed(None)),
            };
            self.tally.frame(text.len());
            let frame: ServerFrame = match serde_json::from_str(&text) {
                Ok(frame) => frame,
                Err(error) => {
                    self.tally
                        .error(format!("unparsable frame ({error}): {text}"));
                    continue;
                }
            };
            if let ServerFrame::Event { seq, ts, event, .. } = &frame {
                self.tally.event(*seq, *ts, event, received_ms);
            }
            return Ok(frame);
        }
    }

    /// Closes politely, without waiting long for the server.
    pub async fn close(mut self) -> Tally {
        let _ = timeout(Duration::from_secs(1), self.ws.close(None)).await;
        self.tally
    }
}
