//! The embedded engine: one node, everything in this process, nothing to install.
//!
//! One mutex guards all state; every operation is a short critical section with
//! no await inside, so an append, its materialization and its publication are
//! one atomic step, exactly as the Redis engine's Lua script makes them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    Appended, Branch, BusMessage, ConversationInfo, Engine, EngineError, EngineResult, History,
    Limits, MessageInfo, NodeAnnouncement, Snapshot, TextAppend, Turn, TurnRequest, new_epoch,
    title_from,
};
use crate::protocol::{Event, LogEntry, Message, MessageStatus, TurnAck, UserId, unix_millis};
use crate::transcript::Transcript;

/// The memory engine. Cheap to clone handles are not needed: it is shared as
/// `Arc<dyn Engine>`.
pub struct MemoryEngine {
    state: Mutex<State>,
    /// How many log entries each conversation keeps; older ones are trimmed
    /// and a client resuming from before them gets a snapshot.
    history_size: usize,
    limits: Limits,
    bus: mpsc::UnboundedSender<BusMessage>,
    bus_receiver: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
}

#[derive(Default)]
struct State {
    conversations: HashMap<Uuid, Conversation>,
    /// message id → conversation id, for cancels that name only the message.
    messages: HashMap<Uuid, Uuid>,
    /// (user, client_msg_id) → the turn it started.
    turns: HashMap<(UserId, Uuid), RememberedTurn>,
    watched: HashSet<Uuid>,
    /// Streaming replies: (conversation, message).
    in_flight: HashSet<(Uuid, Uuid)>,
    /// message id → (holder, until): who generates a reply.
    leases: HashMap<Uuid, (String, Instant)>,
    /// What this node announced, and until when it holds.
    announcement: Option<(NodeAnnouncement, Instant)>,
    /// WebSocket tickets by digest: (user, until).
    tickets: HashMap<[u8; 32], (UserId, Instant)>,
}

struct Conversation {
    info: ConversationInfo,
    epoch: Arc<str>,
    seq: u64,
    log: VecDeque<Arc<LogEntry>>,
    transcript: Transcript,
    client_msg_ids: Vec<(UserId, Uuid)>,
}

#[derive(Clone)]
struct RememberedTurn {
    /// `TurnRequest::fingerprint` of the first request.
    fingerprint: String,
    requested_conversation: Option<Uuid>,
    ack: TurnAck,
    user_seq: u64,
}

impl MemoryEngine {
    /// An engine with the contract's default `Limits`.
    pub fn new(history_size: usize) -> MemoryEngine {
        MemoryEngine::with_limits(history_size, Limits::default())
    }

    pub fn with_limits(history_size: usize, limits: Limits) -> MemoryEngine {
        let (bus, receiver) = mpsc::unbounded_channel();
        MemoryEngine {
            state: Mutex::new(State::default()),
            history_size: history_size.max(1),
            limits,
            bus,
            bus_receiver: Mutex::new(Some(receiver)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied append
        // (appends mutate only after every check), so the state stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an already checked event and publishes it, under the lock.
    fn append_locked(
        &self,
        state: &mut State,
        conversation_id: Uuid,
        event: Event,
    ) -> EngineResult<Appended> {
        let watched = state.watched.contains(&conversation_id);
        let conversation = state
            .conversations
            .get_mut(&conversation_id)
            .ok_or(EngineError::NotFound)?;
        conversation
            .transcript
            .apply(&event)
            .map_err(|rejection| EngineError::Conflict(rejection.to_string()))?;
        match &event {
            Event::Message { message } => {
                state.messages.insert(message.id, conversation_id);
                if message.status == MessageStatus::Streaming {
                    state.in_flight.insert((conversation_id, message.id));
                }
            }
            ending if ending.is_ending() => {
                let message_id = ending.message_id();
                state.in_flight.remove(&(conversation_id, message_id));
                state.leases.remove(&message_id);
            }
            _ => {}
        }
        let now = super::now();
        conversation.seq += 1;
        conversation.info.updated_at = now;
        let entry = Arc::new(LogEntry {
            seq: conversation.seq,
            ts: unix_millis(now),
            event,
        });
        conversation.log.push_back(entry.clone());
        while conversation.log.len() > self.history_size {
            conversation.log.pop_front();
        }
        let epoch = conversation.epoch.clone();
        if watched {
            let _ = self.bus.send(BusMessage::Published {
                conversation_id,
                epoch: epoch.clone(),
                entry: entry.clone(),
            });
        }
        Ok(Appended { epoch, entry })
    }
}

impl State {
    /// Replies streaming for `user` now. Derived from `in_flight` rather
    /// than counted apart, so that no path that ends or forgets a reply can
    /// leave the count behind.
    fn generations_of(&self, user: &UserId) -> usize {
        self.in_flight
            .iter()
            .filter(|(conversation_id, _)| {
                self.conversations
                    .get(conversation_id)
                    .is_some_and(|c| &c.info.owner == user)
            })
            .count()
    }

    /// Refuses a writer other than the live lease's holder.
    fn check_holder(&self, message_id: Uuid, holder: &str) -> EngineResult<()> {
        match self.leases.get(&message_id) {
            Some((current, until)) if current != holder && Instant::now() < *until => Err(
                EngineError::Conflict(format!("reply {message_id} is generated by {current}")),
            ),
            _ => Ok(()),
        }
    }
}

fn new_conversation(owner: UserId, title: Option<String>) -> Conversation {
    let now = super::now();
    Conversation {
        info: ConversationInfo {
            id: Uuid::new_v4(),
            owner,
            title,
            created_at: now,
            updated_at: now,
        },
        epoch: new_epoch().into(),
        seq: 0,
        log: VecDeque::new(),
        transcript: Transcript::default(),
        client_msg_ids: Vec::new(),
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> EngineResult<()> {
        Ok(())
    }

    async fn create_conversation(
        &self,
        owner: UserId,
        title: Option<String>,
    ) -> EngineResult<ConversationInfo> {
        let conversation = new_conversation(owner, title);
        let info = conversation.info.clone();
        self.lock().conversations.insert(info.id, conversation);
        Ok(info)
    }

    async fn conversation(&self, id: Uuid) -> EngineResult<Option<ConversationInfo>> {
        Ok(self.lock().conversations.get(&id).map(|c| c.info.clone()))
    }

    async fn list_conversations(&self, owner: &UserId) -> EngineResult<Vec<ConversationInfo>> {
        let mut list: Vec<_> = self
            .lock()
            .conversations
            .values()
            .filter(|c| &c.info.owner == owner)
            .map(|c| c.info.clone())
            .collect();
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(list)
    }

    async fn rename_conversation(&self, id: Uuid, title: String) -> EngineResult<ConversationInfo> {
        let mut state = self.lock();
        let conversation = state
            .conversations
            .get_mut(&id)
            .ok_or(EngineError::NotFound)?;
        conversation.info.title = Some(title);
        conversation.info.updated_at = super::now();
        Ok(conversation.info.clone())
    }

    async fn delete_conversation(&self, id: Uuid) -> EngineResult<()> {
        let mut state = self.lock();
        let conversation = state
            .conversations
            .remove(&id)
            .ok_or(EngineError::NotFound)?;
        for message in conversation.transcript.messages() {
            state.messages.remove(&message.id);
            state.leases.remove(&message.id);
        }
        // Its streaming reply no longer streams anywhere: failover must not
        // adopt it.
        state
            .in_flight
            .retain(|(conversation_id, _)| *conversation_id != id);
        for key in &conversation.client_msg_ids {
            state.turns.remove(key);
        }
        if state.watched.contains(&id) {
            let _ = self.bus.send(BusMessage::Deleted {
                conversation_id: id,
            });
        }
        Ok(())
    }

    async fn start_turn(&self, request: TurnRequest) -> EngineResult<Turn> {
        let mut state = self.lock();
        if let Some(client_msg_id) = request.client_msg_id
            && let Some(first) = state.turns.get(&(request.user.clone(), client_msg_id))
        {
            if first.fingerprint != request.fingerprint()
                || request.conversation_id.is_some_and(|id| {
                    Some(id) != first.requested_conversation && id != first.ack.conversation_id
                })
            {
                return Err(EngineError::Conflict(
                    "client_msg_id was already used for a different message".into(),
                ));
            }
            let epoch = state
                .conversations
                .get(&first.ack.conversation_id)
                .map(|c| c.epoch.clone())
                .ok_or(EngineError::NotFound)?;
            return Ok(Turn {
                ack: first.ack,
                epoch,
                user_seq: first.user_seq,
                started: false,
            });
        }
        // Every check comes before the first change: a refused turn
        // appends nothing.
        let (messages, newest) = match request.conversation_id {
            Some(id) => {
                let conversation = state.conversations.get(&id).ok_or(EngineError::NotFound)?;
                if conversation.info.owner != request.user {
                    return Err(EngineError::Forbidden);
                }
                let transcript = &conversation.transcript;
                if transcript.streaming_reply().is_some() {
                    return Err(EngineError::Conflict(
                        "a reply is still streaming in this conversation".into(),
                    ));
                }
                let parent = match &request.branch {
                    Branch::Newest | Branch::After(None) => None,
                    Branch::After(Some(parent)) => Some(*parent),
                    Branch::Reply { to, .. } => Some(*to),
                };
                if parent.is_some_and(|id| transcript.message(id).is_none()) {
                    return Err(EngineError::Conflict(
                        "the message to follow is not in this conversation".into(),
                    ));
                }
                (
                    transcript.messages().len(),
                    transcript.messages().last().map(|m| m.id),
                )
            }
            None => (0, None),
        };
        let (user_message, reply) = request.messages(Uuid::nil(), newest);
        let appended = 1 + usize::from(user_message.is_some());
        if messages + appended > self.limits.max_messages_per_conversation {
            return Err(EngineError::ConversationFull {
                limit: self.limits.max_messages_per_conversation,
            });
        }
        if state.generations_of(&request.user) >= self.limits.max_generations_per_user {
            return Err(EngineError::TooManyGenerations {
                limit: self.limits.max_generations_per_user,
            });
        }
        let conversation_id = match request.conversation_id {
            Some(id) => id,
            None => {
                let conversation =
                    new_conversation(request.user.clone(), Some(title_from(&request.content)));
                let id = conversation.info.id;
                state.conversations.insert(id, conversation);
                id
            }
        };
        let user_message = user_message.map(|m| Message {
            conversation_id,
            ..m
        });
        let reply = Message {
            conversation_id,
            ..reply
        };
        let ack = TurnAck {
            conversation_id,
            user_message_id: user_message
                .as_ref()
                .map_or(reply.parent_id.unwrap_or_default(), |m| m.id),
            assistant_message_id: reply.id,
        };
        let reply_id = reply.id;
        let mut first = None;
        for message in user_message.into_iter().chain([reply]) {
            let appended =
                self.append_locked(&mut state, conversation_id, Event::Message { message })?;
            first.get_or_insert(appended);
        }
        let first = first.expect("a turn appends at least its reply");
        if let Branch::Reply { prefix, .. } = &request.branch
            && !prefix.is_empty()
        {
            let delta = Event::Delta {
                message_id: reply_id,
                text: prefix.clone(),
            };
            self.append_locked(&mut state, conversation_id, delta)?;
        }
        if let Some(client_msg_id) = request.client_msg_id {
            let key = (request.user.clone(), client_msg_id);
            state.turns.insert(
                key.clone(),
                RememberedTurn {
                    fingerprint: request.fingerprint(),
                    requested_conversation: request.conversation_id,
                    ack,
                    user_seq: first.entry.seq,
                },
            );
            if let Some(conversation) = state.conversations.get_mut(&conversation_id) {
                conversation.client_msg_ids.push(key);
            }
        }
        Ok(Turn {
            ack,
            epoch: first.epoch,
            user_seq: first.entry.seq,
            started: true,
        })
    }

    async fn append(&self, conversation_id: Uuid, event: Event) -> EngineResult<Appended> {
        let mut state = self.lock();
        self.append_locked(&mut state, conversation_id, event)
    }

    async fn append_text(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        offset: usize,
        text: String,
        holder: &str,
    ) -> EngineResult<TextAppend> {
        let mut state = self.lock();
        state.check_holder(message_id, holder)?;
        let conversation = state
            .conversations
            .get(&conversation_id)
            .ok_or(EngineError::NotFound)?;
        let content = conversation
            .transcript
            .message(message_id)
            .map(|m| m.content.as_str())
            .ok_or(EngineError::NotFound)?;
        if content.len() != offset {
            let already = content.len() == offset + text.len() && content.ends_with(text.as_str());
            return if already {
                Ok(TextAppend::AlreadyApplied)
            } else {
                Err(EngineError::Conflict(format!(
                    "the reply has {} bytes, not {offset}",
                    content.len()
                )))
            };
        }
        let event = Event::Delta { message_id, text };
        self.append_locked(&mut state, conversation_id, event)
            .map(TextAppend::Appended)
    }

    async fn end_reply(
        &self,
        conversation_id: Uuid,
        ending: Event,
        holder: &str,
    ) -> EngineResult<Appended> {
        let mut state = self.lock();
        state.check_holder(ending.message_id(), holder)?;
        self.append_locked(&mut state, conversation_id, ending)
    }

    async fn read(&self, conversation_id: Uuid, after_seq: u64) -> EngineResult<History> {
        let state = self.lock();
        let conversation = state
            .conversations
            .get(&conversation_id)
            .ok_or(EngineError::NotFound)?;
        let oldest_kept = conversation
            .log
            .front()
            .map_or(conversation.seq + 1, |e| e.seq);
        let entries = if after_seq >= conversation.seq {
            Some(Vec::new())
        } else if after_seq + 1 < oldest_kept {
            None
        } else {
            let skip = (after_seq + 1 - oldest_kept) as usize;
            Some(conversation.log.iter().skip(skip).cloned().collect())
        };
        Ok(History {
            epoch: conversation.epoch.clone(),
            head: conversation.seq,
            entries,
        })
    }

    async fn snapshot(&self, conversation_id: Uuid) -> EngineResult<Snapshot> {
        let state = self.lock();
        let conversation = state
            .conversations
            .get(&conversation_id)
            .ok_or(EngineError::NotFound)?;
        Ok(Snapshot {
            info: conversation.info.clone(),
            epoch: conversation.epoch.clone(),
            seq: conversation.seq,
            messages: conversation.transcript.messages().to_vec(),
        })
    }

    async fn rebuild(&self, copy: &Snapshot, holder: Option<&str>) -> EngineResult<Arc<str>> {
        let mut state = self.lock();
        if let Some(conversation) = state.conversations.get(&copy.info.id) {
            return Ok(conversation.epoch.clone());
        }
        let mut conversation = new_conversation(copy.info.owner.clone(), copy.info.title.clone());
        conversation.info = copy.info.clone();
        let epoch = conversation.epoch.clone();
        state.conversations.insert(copy.info.id, conversation);
        for message in &copy.messages {
            let event = Event::Message {
                message: message.clone(),
            };
            self.append_locked(&mut state, copy.info.id, event)?;
            if let (Some(holder), MessageStatus::Streaming) = (holder, message.status) {
                let until = Instant::now() + super::LEASE_TTL;
                state.leases.insert(message.id, (holder.to_owned(), until));
            }
        }
        Ok(epoch)
    }

    async fn message(&self, message_id: Uuid) -> EngineResult<Option<MessageInfo>> {
        let state = self.lock();
        let Some(conversation) = state
            .messages
            .get(&message_id)
            .and_then(|id| state.conversations.get(id))
        else {
            return Ok(None);
        };
        Ok(conversation
            .transcript
            .message(message_id)
            .map(|m| MessageInfo {
                conversation_id: conversation.info.id,
                owner: conversation.info.owner.clone(),
                role: m.role,
                status: m.status,
            }))
    }

    async fn message_at(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
    ) -> EngineResult<Option<(u64, Message)>> {
        let state = self.lock();
        let conversation = state
            .conversations
            .get(&conversation_id)
            .ok_or(EngineError::NotFound)?;
        Ok(conversation
            .transcript
            .messages()
            .iter()
            .enumerate()
            .find(|(_, m)| m.id == message_id)
            .map(|(position, m)| (position as u64, m.clone())))
    }

    async fn watch(&self, conversation_id: Uuid) -> EngineResult<()> {
        self.lock().watched.insert(conversation_id);
        Ok(())
    }

    async fn unwatch(&self, conversation_id: Uuid) -> EngineResult<()> {
        self.lock().watched.remove(&conversation_id);
        Ok(())
    }

    async fn renew_lease(
        &self,
        conversation_id: Uuid,
        message_id: Uuid,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<bool> {
        let mut state = self.lock();
        if !state.in_flight.contains(&(conversation_id, message_id)) {
            return Ok(false);
        }
        if state.check_holder(message_id, holder).is_err() {
            return Ok(false);
        }
        state
            .leases
            .insert(message_id, (holder.to_owned(), Instant::now() + ttl));
        Ok(true)
    }

    async fn release_lease(&self, _: Uuid, message_id: Uuid, holder: &str) -> EngineResult<()> {
        let mut state = self.lock();
        if state
            .leases
            .get(&message_id)
            .is_some_and(|(current, _)| current == holder)
        {
            state.leases.remove(&message_id);
        }
        Ok(())
    }

    async fn claim_orphans(&self, holder: &str, ttl: Duration) -> EngineResult<Vec<(Uuid, Uuid)>> {
        let mut state = self.lock();
        let now = Instant::now();
        let orphans: Vec<(Uuid, Uuid)> = state
            .in_flight
            .iter()
            .filter(|(_, message_id)| {
                state
                    .leases
                    .get(message_id)
                    .is_none_or(|(_, until)| *until <= now)
            })
            .copied()
            .collect();
        for (_, message_id) in &orphans {
            state
                .leases
                .insert(*message_id, (holder.to_owned(), now + ttl));
        }
        Ok(orphans)
    }

    async fn stop_remote_generation(&self, _: Uuid, _: Uuid) -> EngineResult<()> {
        // One node: every generation is local and was stopped directly.
        Ok(())
    }

    async fn announce_node(
        &self,
        announcement: NodeAnnouncement,
        ttl: Duration,
    ) -> EngineResult<()> {
        self.lock().announcement = Some((announcement, Instant::now() + ttl));
        Ok(())
    }

    async fn nodes(&self) -> EngineResult<Vec<NodeAnnouncement>> {
        let state = self.lock();
        Ok(state
            .announcement
            .iter()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(announcement, _)| announcement.clone())
            .collect())
    }

    fn take_bus(&self) -> Option<mpsc::UnboundedReceiver<BusMessage>> {
        self.bus_receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    async fn put_ticket(
        &self,
        digest: &[u8; 32],
        user: &UserId,
        ttl: Duration,
    ) -> EngineResult<()> {
        let now = Instant::now();
        let mut state = self.lock();
        // Expired tickets go here, so that the map holds at most the tickets
        // of the last `ttl`.
        state.tickets.retain(|_, (_, until)| now < *until);
        state.tickets.insert(*digest, (user.clone(), now + ttl));
        Ok(())
    }

    async fn take_ticket(&self, digest: &[u8; 32]) -> EngineResult<Option<UserId>> {
        let taken = self.lock().tickets.remove(digest);
        Ok(taken
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(user, _)| user))
    }
}
