//! What is sent upstream: the conversation trimmed to the model's budget, an
//! optional system prompt, the assistant prefill of a continuation, and each
//! upstream's own model name and parameters.

use super::wire::{ChatMessage, ChatRequest, StreamOptions};
use crate::protocol::Role;
use crate::providers::pool::UpstreamSettings;
use crate::providers::{ChatTurn, CompletionRequest};

/// The messages of one completion, shared by every upstream it is tried on.
#[derive(Debug, Clone)]
pub struct Prompt {
    messages: Vec<ChatMessage>,
    continuing: bool,
}

impl Prompt {
    /// `history_chars` bounds the characters of the whole prompt (system
    /// prompt and prefill included); the newest user message is always sent.
    pub fn new(
        request: &CompletionRequest,
        system_prompt: Option<&str>,
        history_chars: usize,
    ) -> Prompt {
        let fixed = system_prompt.map_or(0, chars) + chars(&request.continue_from);
        let history = trim_history(&request.history, history_chars.saturating_sub(fixed));
        let mut messages = Vec::with_capacity(history.len() + 2);
        if let Some(system) = system_prompt {
            messages.push(ChatMessage::new("system", system));
        }
        messages.extend(history.iter().map(|turn| {
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            ChatMessage::new(role, turn.content.clone())
        }));
        let continuing = !request.continue_from.is_empty();
        if continuing {
            // Prefill: the server continues this message instead of
            // starting a new one.
            messages.push(ChatMessage::new("assistant", request.continue_from.clone()));
        }
        Prompt {
            messages,
            continuing,
        }
    }

    pub fn continuing(&self) -> bool {
        self.continuing
    }

    /// The streaming request body for one upstream.
    pub fn body_for(&self, upstream: &UpstreamSettings) -> ChatRequest {
        let mut extra = upstream.params.clone();
        if self.continuing {
            extra.extend(upstream.continue_params.clone());
        }
        ChatRequest {
            model: upstream.model.clone(),
            messages: self.messages.clone(),
            stream: true,
            stream_options: Some(StreamOptions {
                include_usage: true,
            }),
            extra,
        }
    }
}

/// The newest part of `history` that fits in `budget` characters, dropping
/// the oldest messages first. The newest user message (and anything after
/// it) is kept whatever its size, and the result never starts with an
/// assistant message, which strict chat templates refuse.
pub fn trim_history(history: &[ChatTurn], budget: usize) -> &[ChatTurn] {
    let Some(newest_user) = history.iter().rposition(|t| t.role == Role::User) else {
        return &history[history.len()..];
    };
    let mut used: usize = history[newest_user..]
        .iter()
        .map(|t| chars(&t.content))
        .sum();
    let mut start = newest_user;
    while start > 0 {
        let size = chars(&history[start - 1].content);
        if used + size > budget {
            break;
        }
        used += size;
        start -= 1;
    }
    while history[start].role == Role::Assistant {
        start += 1;
    }
    &history[start..]
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turn(role: Role, content: &str) -> ChatTurn {
        ChatTurn {
            role,
            content: content.into(),
        }
    }

    fn upstream() -> UpstreamSettings {
        UpstreamSettings {
            name: "u".into(),
            base_url: "http://u/v1".into(),
            model: "upstream-name".into(),
            api_key: None,
            continue_prefill: true,
            max_concurrent: 1,
            params: json!({"temperature": 0.2}).as_object().unwrap().clone(),
            continue_params: json!({"continue_final_message": true})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    #[test]
    fn trimming_drops_the_oldest_and_keeps_the_newest_user_message() {
        let history = vec![
            turn(Role::User, "aaaa"),
            turn(Role::Assistant, "bbbb"),
            turn(Role::User, "cccc"),
            turn(Role::Assistant, "dddd"),
            turn(Role::User, "éééé"),
        ];
        assert_eq!(trim_history(&history, 100), &history[..]);
        assert_eq!(trim_history(&history, 20), &history[..]);
        // 19 characters leave out "aaaa"; then "bbbb" would lead: dropped too.
        assert_eq!(trim_history(&history, 19), &history[2..]);
        assert_eq!(trim_history(&history, 12), &history[2..]);
        assert_eq!(trim_history(&history, 11), &history[4..]);
        assert_eq!(trim_history(&history, 0), &history[4..]);
        assert!(trim_history(&[], 10).is_empty());
    }

    #[test]
    fn a_continuation_ends_with_the_prefill_and_counts_it() {
        let request = CompletionRequest {
            model: "m".into(),
            history: vec![turn(Role::User, "0123456789"), turn(Role::User, "hi")],
            continue_from: "Hello th".into(),
        };
        let prompt = Prompt::new(&request, Some("be brief"), 20);
        let body = prompt.body_for(&upstream());
        let roles: Vec<&str> = body.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant"],
            "the old message no longer fits"
        );
        assert_eq!(body.messages[2].text(), "Hello th");
        let body = serde_json::to_value(body).unwrap();
        assert_eq!(body["model"], "upstream-name");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["temperature"], 0.2);
        assert_eq!(body["continue_final_message"], true);
    }

    #[test]
    fn a_fresh_request_has_no_prefill_nor_continuation_parameters() {
        let request = CompletionRequest {
            model: "m".into(),
            history: vec![turn(Role::User, "hi")],
            continue_from: String::new(),
        };
        let prompt = Prompt::new(&request, None, 1000);
        assert!(!prompt.continuing());
        let body = serde_json::to_value(prompt.body_for(&upstream())).unwrap();
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert!(body.get("continue_final_message").is_none());
    }
}
