//! The fold of a conversation's events into its messages.
//!
//! Both engines keep the materialized state with this one function, and it is
//! also where the log's rules live: an event is only accepted when it applies
//! (text goes to a streaming assistant message, the first ending wins, a new
//! turn waits for the previous reply). Checking and applying in one place means
//! the log can never hold an event the snapshot would disagree with.

use uuid::Uuid;

use crate::protocol::{Event, Message, MessageStatus, Role};

/// Why an event does not apply to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("message {0} does not exist in this conversation")]
    UnknownMessage(Uuid),
    #[error("message {0} is no longer streaming")]
    NotStreaming(Uuid),
    #[error("message {0} already exists")]
    Duplicate(Uuid),
    #[error("a reply is still streaming in this conversation")]
    ReplyStreaming,
}

/// The messages of one conversation, in the order of their `message` events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    messages: Vec<Message>,
}

impl Transcript {
    pub fn from_messages(messages: Vec<Message>) -> Transcript {
        Transcript { messages }
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn message(&self, id: Uuid) -> Option<&Message> {
        self.messages.iter().rev().find(|m| m.id == id)
    }

    /// The assistant message still streaming, if any.
    pub fn streaming_reply(&self) -> Option<&Message> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant && m.status == MessageStatus::Streaming)
    }

    /// Checks that `event` applies, without changing anything.
    fn check(&self, event: &Event) -> Result<(), Rejection> {
        match event {
            Event::Message { message } => {
                if self.message(message.id).is_some() {
                    return Err(Rejection::Duplicate(message.id));
                }
                if message.role == Role::User && self.streaming_reply().is_some() {
                    return Err(Rejection::ReplyStreaming);
                }
                Ok(())
            }
            Event::Delta { message_id, .. }
            | Event::Done { message_id, .. }
            | Event::Cancelled { message_id }
            | Event::Failed { message_id, .. } => match self.message(*message_id) {
                None => Err(Rejection::UnknownMessage(*message_id)),
                Some(m) if m.role != Role::Assistant || m.status != MessageStatus::Streaming => {
                    Err(Rejection::NotStreaming(*message_id))
                }
                Some(_) => Ok(()),
            },
        }
    }

    /// Applies `event` if it is allowed.
    pub fn apply(&mut self, event: &Event) -> Result<(), Rejection> {
        self.check(event)?;
        match event {
            Event::Message { message } => self.messages.push(message.clone()),
            Event::Delta { message_id, text } => {
                self.message_mut(*message_id).content.push_str(text)
            }
            Event::Done { message_id, .. } => {
                self.message_mut(*message_id).status = MessageStatus::Complete
            }
            Event::Cancelled { message_id } => {
                self.message_mut(*message_id).status = MessageStatus::Cancelled
            }
            Event::Failed { message_id, error } => {
                let message = self.message_mut(*message_id);
                message.status = MessageStatus::Failed;
                message.error = Some(error.clone());
            }
        }
        Ok(())
    }

    fn message_mut(&mut self, id: Uuid) -> &mut Message {
        self.messages
            .iter_mut()
            .rev()
            .find(|m| m.id == id)
            .expect("checked before")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn message(role: Role, status: MessageStatus) -> Message {
        Message {
            id: Uuid::new_v4(),
            conversation_id: Uuid::nil(),
            parent_id: None,
            role,
            content: if role == Role::User {
                "hi".into()
            } else {
                String::new()
            },
            status,
            model: None,
            created_at: Utc::now(),
            error: None,
        }
    }

    #[test]
    fn folds_a_turn_and_enforces_the_rules() {
        let mut t = Transcript::default();
        let user = message(Role::User, MessageStatus::Complete);
        let reply = message(Role::Assistant, MessageStatus::Streaming);
        t.apply(&Event::Message {
            message: user.clone(),
        })
        .unwrap();
        t.apply(&Event::Message {
            message: reply.clone(),
        })
        .unwrap();
        let next = message(Role::User, MessageStatus::Complete);
        assert_eq!(
            t.apply(&Event::Message {
                message: next.clone()
            }),
            Err(Rejection::ReplyStreaming)
        );
        for text in ["Hel", "lo"] {
            t.apply(&Event::Delta {
                message_id: reply.id,
                text: text.into(),
            })
            .unwrap();
        }
        assert_eq!(
            t.apply(&Event::Delta {
                message_id: user.id,
                text: "x".into()
            }),
            Err(Rejection::NotStreaming(user.id))
        );
        t.apply(&Event::Cancelled {
            message_id: reply.id,
        })
        .unwrap();
        assert_eq!(
            t.apply(&Event::Done {
                message_id: reply.id,
                finish_reason: "stop".into(),
                usage: None
            }),
            Err(Rejection::NotStreaming(reply.id))
        );
        let kept = t.message(reply.id).unwrap();
        assert_eq!(kept.content, "Hello");
        assert_eq!(kept.status, MessageStatus::Cancelled);
        t.apply(&Event::Message { message: next }).unwrap();
        assert_eq!(t.messages().len(), 3);
    }
}
