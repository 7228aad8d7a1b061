//! A client's view of one reply kept through disconnections: it reconnects
//! and resumes with `since`, as a browser does, and fails the test on any
//! gap, repeat or reordering (`View`).

use std::time::{Duration, Instant};

use chatstream::protocol::MessageStatus;
use serde_json::{Value, json};

use super::{Client, Sent, View, demo_reply};

/// One user's view of one reply, kept through disconnections: it reconnects
/// through nginx and resumes with `since`.
pub struct Follower {
    pub url: String,
    pub conversation: String,
    pub reply_id: String,
    pub question: String,
    pub view: View,
    /// When each event arrived.
    pub arrivals: Vec<(Instant, u64)>,
    pub reconnects: usize,
}

impl Follower {
    /// Sends a question at `url` (a node, or nginx) and returns the follower
    /// and its socket.
    pub async fn start(url: &str, question: &str) -> (Follower, Client) {
        let mut client = Client::connect(url).await;
        let Sent {
            conversation,
            reply_id,
            ..
        } = client.send_turn(question).await;
        let follower = Follower {
            url: url.to_owned(),
            conversation,
            reply_id,
            question: question.to_owned(),
            view: View::default(),
            arrivals: Vec::new(),
            reconnects: 0,
        };
        (follower, client)
    }

    /// Subscribes to `leader`'s conversation at `url` (another node, say)
    /// and returns a follower of the same reply and its socket.
    pub async fn watch(url: &str, leader: &Follower) -> (Follower, Client) {
        let mut client = Client::connect(url).await;
        let subscribed = client
            .request(json!({"type": "subscribe", "conversation_id": leader.conversation}))
            .await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        let follower = Follower {
            url: url.to_owned(),
            conversation: leader.conversation.clone(),
            reply_id: leader.reply_id.clone(),
            question: leader.question.clone(),
            view: View::default(),
            arrivals: Vec::new(),
            reconnects: 0,
        };
        (follower, client)
    }

    pub fn ended(&self) -> bool {
        self.view
            .messages()
            .iter()
            .any(|m| m.id.to_string() == self.reply_id && m.status != MessageStatus::Streaming)
    }

    pub fn apply(&mut self, frame: &Value) {
        let before = self.view.seq;
        self.view.apply(&self.conversation, frame);
        if self.view.seq > before && frame["type"] == "event" {
            self.arrivals.push((Instant::now(), self.view.seq));
        }
    }

    /// Reads until the reply ended (or `until` holds), reconnecting as needed.
    pub async fn follow(
        &mut self,
        mut client: Client,
        until: impl Fn(&Follower) -> bool,
    ) -> Client {
        loop {
            if self.ended() || until(self) {
                return client;
            }
            match client.next().await {
                Ok(frame) => self.apply(&frame),
                Err(closed) => {
                    assert!(
                        matches!(
                            closed.code,
                            None | Some(1001) | Some(1006) | Some(1011) | Some(1012)
                        ),
                        "closed with {closed:?}"
                    );
                    client = self.reconnect().await;
                }
            }
        }
    }

    pub async fn reconnect(&mut self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut client) = Client::try_connect(&self.url).await {
                let since =
                    json!({"epoch": self.view.epoch.clone().unwrap(), "seq": self.view.seq});
                client
                    .send(json!({"type": "subscribe", "id": "resume", "conversation_id": self.conversation, "since": since}))
                    .await;
                self.reconnects += 1;
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "could not reconnect through nginx"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn assert_complete(&self, tokens: usize) {
        let reply = self
            .view
            .messages()
            .iter()
            .find(|m| m.id.to_string() == self.reply_id)
            .expect("the reply is in the transcript");
        assert_eq!(reply.status, MessageStatus::Complete, "{}", self.question);
        assert_eq!(
            reply.content,
            demo_reply(tokens, &self.question),
            "identical to an undisturbed reply"
        );
    }
}

/// Reads every follower until it has `events` events (or its reply ended).
pub async fn advance(followers: Vec<(Follower, Client)>, events: u64) -> Vec<(Follower, Client)> {
    let mut advanced = Vec::new();
    for (mut follower, client) in followers {
        let client = follower.follow(client, |f| f.view.seq >= events).await;
        advanced.push((follower, client));
    }
    advanced
}

/// Follows every reply to its end, concurrently.
pub async fn finish(followers: Vec<(Follower, Client)>) -> Vec<Follower> {
    let tasks: Vec<_> = followers
        .into_iter()
        .map(|(mut follower, client)| {
            tokio::spawn(async move {
                let client = follower.follow(client, |_| false).await;
                client.close().await;
                follower
            })
        })
        .collect();
    let mut finished = Vec::new();
    for task in tasks {
        finished.push(task.await.unwrap());
    }
    finished
}
