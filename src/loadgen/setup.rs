//! Getting one client ready before the clock starts: a guest identity, an
//! empty conversation, the sender's socket and its watchers' sockets, each
//! watcher already subscribed so that it receives every event from seq 1.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use uuid::Uuid;

use super::socket::Socket;
use super::target::Target;
use crate::auth::GuestToken;
use crate::protocol::{ClientRequest, ConversationDetail, ServerFrame, Since};

/// How long a subscription may take to be answered.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One conversation ready to be loaded.
pub struct Prepared {
    pub conversation_id: Uuid,
    pub sender: Socket,
    pub watchers: Vec<Socket>,
}

/// The sender's socket on `target`, its watchers' on `watching` (the same
/// node, or another).
pub async fn prepare(
    target: &Target,
    watching: &Target,
    http: &reqwest::Client,
    watchers: usize,
) -> anyhow::Result<Prepared> {
    let (guest, conversation) = guest_with_conversation(target, http).await?;
    let sender = Socket::connect(&target.websocket(&guest.token)).await?;
    let mut followers = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut watcher = Socket::connect(&watching.websocket(&guest.token)).await?;
        subscribe(&mut watcher, &conversation).await?;
        followers.push(watcher);
    }
    Ok(Prepared {
        conversation_id: conversation.id,
        sender,
        watchers: followers,
    })
}

/// A new guest on `target` with an empty conversation of its own.
pub async fn guest_with_conversation(
    target: &Target,
    http: &reqwest::Client,
) -> anyhow::Result<(GuestToken, ConversationDetail)> {
    let guest: GuestToken = http
        .post(target.http("/api/auth/guest"))
        .send()
        .await
        .context("POST /api/auth/guest")?
        .error_for_status()?
        .json()
        .await?;
    // Created empty first, so that subscribers can follow it before its
    // first event; the first `send` names it.
    let conversation: ConversationDetail = http
        .post(target.http("/api/conversations"))
        .bearer_auth(&guest.token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .context("POST /api/conversations")?
        .error_for_status()?
        .json()
        .await?;
    Ok((guest, conversation))
}

/// Subscribes from seq 0 of the conversation's epoch and waits for the answer.
pub async fn subscribe(
    socket: &mut Socket,
    conversation: &ConversationDetail,
) -> anyhow::Result<()> {
    let id = socket
        .request(&ClientRequest::Subscribe {
            conversation_id: conversation.id,
            since: Some(Since {
                epoch: conversation.epoch.clone(),
                seq: conversation.seq,
            }),
        })
        .await?;
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        match socket.next(deadline).await {
            Ok(ServerFrame::Subscribed { id: Some(got), .. }) if got == id => return Ok(()),
            Ok(ServerFrame::Error {
                id: Some(got),
                code,
                message,
                ..
            }) if got == id => bail!("subscribe refused: {code:?}: {message}"),
            Ok(_) => {}
            Err(stop) => bail!("no answer to subscribe: {stop:?}"),
        }
    }
}
