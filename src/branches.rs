//! The tree a conversation's messages form (contract 1.2, "Versions and
//! branches").
//!
//! Every message names the one it follows (`parent_id`); messages with the
//! same parent are versions of one another: regenerated replies, edited
//! questions. The log stays one list in the order of its `message` events;
//! the tree is read from it. The **active path** is the chain from the
//! newest message up to a first message: what a client that knows nothing
//! of branches shows, and what the model sees of the conversation.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::protocol::Message;

/// The chain of messages from a first message down to `last`, inclusive,
/// following `parent_id`; empty when `last` is `None` or not among
/// `messages`. A parent that is missing ends the chain (it cannot happen in
/// a log the engine checked).
pub fn path_to(messages: &[Message], last: Option<Uuid>) -> Vec<&Message> {
    let positions: HashMap<Uuid, usize> = messages
        .iter()
        .enumerate()
        .map(|(position, m)| (m.id, position))
        .collect();
    let mut path = Vec::new();
    let mut next = last.and_then(|id| positions.get(&id).copied());
    while let Some(position) = next {
        let message = &messages[position];
        path.push(message);
        // Parents come before their children in the log; a parent that
        // does not (impossible in a log the engine checked) ends the chain,
        // so even a corrupt cycle ends.
        next = message
            .parent_id
            .and_then(|id| positions.get(&id).copied())
            .filter(|&parent| parent < position);
    }
    path.reverse();
    path
}

/// The newest message, where the active path ends.
pub fn newest(messages: &[Message]) -> Option<Uuid> {
    messages.last().map(|m| m.id)
}

/// Splits `messages` into the active path (first message first) and every
/// other message, each in log order.
pub fn split_active(messages: Vec<Message>) -> (Vec<Message>, Vec<Message>) {
    let on_path: HashSet<Uuid> = path_to(&messages, newest(&messages))
        .into_iter()
        .map(|m| m.id)
        .collect();
    messages.into_iter().partition(|m| on_path.contains(&m.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MessageStatus, Role};

    fn message(role: Role, parent: Option<&Message>) -> Message {
        Message {
            id: Uuid::new_v4(),
            conversation_id: Uuid::nil(),
            parent_id: parent.map(|p| p.id),
            role,
            content: String::new(),
            status: MessageStatus::Complete,
            model: None,
            created_at: chrono::Utc::now(),
            error: None,
        }
    }

    fn ids(messages: &[Message]) -> Vec<Uuid> {
        messages.iter().map(|m| m.id).collect()
    }

    #[test]
    fn a_linear_conversation_is_all_path() {
        let q1 = message(Role::User, None);
        let a1 = message(Role::Assistant, Some(&q1));
        let q2 = message(Role::User, Some(&a1));
        let a2 = message(Role::Assistant, Some(&q2));
        let all = vec![q1, a1, q2, a2];
        let (path, branches) = split_active(all.clone());
        assert_eq!(ids(&path), ids(&all));
        assert!(branches.is_empty());
    }

    #[test]
    fn a_regenerated_reply_and_an_edit_each_make_a_branch() {
        let q1 = message(Role::User, None);
        let a1 = message(Role::Assistant, Some(&q1));
        let a1b = message(Role::Assistant, Some(&q1));
        let q2 = message(Role::User, Some(&a1b));
        let a2 = message(Role::Assistant, Some(&q2));
        // An edit of the first question: a second first message.
        let q1b = message(Role::User, None);
        let a1c = message(Role::Assistant, Some(&q1b));
        let all = vec![
            q1.clone(),
            a1.clone(),
            a1b.clone(),
            q2.clone(),
            a2.clone(),
            q1b.clone(),
            a1c.clone(),
        ];
        let (path, branches) = split_active(all.clone());
        assert_eq!(ids(&path), vec![q1b.id, a1c.id]);
        assert_eq!(ids(&branches), vec![q1.id, a1.id, a1b.id, q2.id, a2.id]);
        let model_sees: Vec<Uuid> = path_to(&all, Some(q2.id)).iter().map(|m| m.id).collect();
        assert_eq!(model_sees, vec![q1.id, a1b.id, q2.id]);
    }

    #[test]
    fn a_missing_or_absent_end_gives_an_empty_path() {
        let q1 = message(Role::User, None);
        assert!(path_to(std::slice::from_ref(&q1), None).is_empty());
        assert!(path_to(&[q1], Some(Uuid::new_v4())).is_empty());
    }
}
