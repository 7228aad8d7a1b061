//! The built-in `demo` model: a Markdown reply with no network.
//!
//! Its reply is a pure function of the conversation's text (the ordered roles
//! and contents, without ids or times) and of its configuration, so the same
//! history always yields the same reply token by token. That is what makes a
//! resumed or restarted reply checkable against an undisturbed one.
//!
//! The reply answers the last question in its language (English or
//! Vietnamese), names its topic, and shows what the UI renders: headings, a
//! list, a table, and a fenced code block in the programming language asked
//! for when the question asks for code. Its parts:
//!
//! - `question`: the language, topic and code request read in the question;
//! - `markdown`: the document planned for exactly `reply_tokens` tokens, and
//!   what a token is (a word with the whitespace before it);
//! - `phrases`, `english`, `vietnamese`: the text it is written with;
//! - `code`: the code examples, per programming language;
//! - `rng`: the hash of the conversation that picks among the phrasings.

mod code;
mod english;
mod markdown;
mod phrases;
mod question;
mod rng;
mod vietnamese;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;

use super::{ChatTurn, Completion, CompletionRequest, CompletionStream, Provider, ProviderError};
use crate::protocol::{Role, Usage};
use question::Question;

/// The deterministic demo model.
#[derive(Debug, Clone)]
pub struct DemoProvider {
    /// Pause before each token, to look like a model thinking.
    pub token_delay: Duration,
    /// How many tokens each reply has.
    pub reply_tokens: usize,
}

impl DemoProvider {
    pub fn new(token_delay: Duration, reply_tokens: usize) -> DemoProvider {
        DemoProvider {
            token_delay,
            reply_tokens: reply_tokens.max(1),
        }
    }

    /// The whole reply to `history`, as the tokens it streams.
    pub fn reply_tokens(&self, history: &[ChatTurn]) -> Vec<String> {
        let question = history
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map_or("", |t| t.content.as_str());
        let text = markdown::compose(
            &Question::read(question),
            rng::fnv1a(history),
            self.reply_tokens,
        );
        markdown::tokenize(&text)
    }
}

impl Provider for DemoProvider {
    fn kind(&self) -> &'static str {
        "demo"
    }

    fn can_continue(&self) -> bool {
        true
    }

    fn complete(&self, request: CompletionRequest) -> CompletionStream {
        let tokens = self.reply_tokens(&request.history);
        let full: String = tokens.concat();
        let Some(rest) = full.strip_prefix(request.continue_from.as_str()) else {
            let error = ProviderError {
                message: "the text to continue is not a prefix of this model's reply".into(),
                retryable: false,
            };
            return stream::iter([Err(error)]).boxed();
        };
        // Re-split what remains on the original token boundaries, so a resumed
        // reply streams at the same pace with the same pieces.
        let mut pieces = Vec::new();
        let mut offset = request.continue_from.len();
        let mut start = 0;
        for token in &tokens {
            let end = start + token.len();
            if end > offset {
                pieces.push(full[offset.max(start)..end].to_owned());
                offset = end;
            }
            start = end;
        }
        debug_assert_eq!(pieces.concat(), rest);
        let usage = Usage {
            prompt_tokens: history_words(&request.history),
            completion_tokens: tokens.len() as u64,
        };
        let delay = self.token_delay;
        let texts = stream::iter(pieces).then(move |piece| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(Completion::Text(piece))
        });
        let finished = stream::iter([Ok(Completion::Finished {
            finish_reason: "stop".into(),
            usage: Some(usage),
        })]);
        texts.chain(finished).boxed()
    }
}

fn history_words(history: &[ChatTurn]) -> u64 {
    history
        .iter()
        .map(|t| t.content.split_whitespace().count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    fn history(text: &str) -> Vec<ChatTurn> {
        vec![ChatTurn {
            role: Role::User,
            content: text.into(),
        }]
    }

    async fn collect(
        provider: &DemoProvider,
        history: Vec<ChatTurn>,
        continue_from: &str,
    ) -> String {
        let items: Vec<Completion> = provider
            .complete(CompletionRequest {
                model: "demo".into(),
                history,
                continue_from: continue_from.into(),
            })
            .try_collect()
            .await
            .unwrap();
        assert!(matches!(items.last(), Some(Completion::Finished { .. })));
        items
            .into_iter()
            .filter_map(|c| match c {
                Completion::Text(t) => Some(t),
                Completion::Finished { .. } => None,
            })
            .collect()
    }

    #[test]
    fn same_history_same_reply_and_length_follows_configuration() {
        let demo = DemoProvider::new(Duration::ZERO, 25);
        let a = demo.reply_tokens(&history("how do actors work?"));
        assert_eq!(a, demo.reply_tokens(&history("how do actors work?")));
        assert_eq!(a.len(), 25);
        assert_ne!(a, demo.reply_tokens(&history("something else entirely")));
        let mut longer = history("how do actors work?");
        longer.push(ChatTurn {
            role: Role::Assistant,
            content: a.concat(),
        });
        longer.push(ChatTurn {
            role: Role::User,
            content: "how do actors work?".into(),
        });
        assert_ne!(a, demo.reply_tokens(&longer), "the whole history matters");
    }

    #[tokio::test]
    async fn continuation_yields_exactly_the_rest() {
        let demo = DemoProvider::new(Duration::ZERO, 40);
        let full = collect(&demo, history("tell me about logs"), "").await;
        assert_eq!(
            full,
            demo.reply_tokens(&history("tell me about logs")).concat()
        );
        for cut in [0, 1, 7, full.len() / 2, full.len() - 1, full.len()] {
            if !full.is_char_boundary(cut) {
                continue;
            }
            let rest = collect(&demo, history("tell me about logs"), &full[..cut]).await;
            assert_eq!(format!("{}{rest}", &full[..cut]), full, "cut at {cut}");
        }
        let error = demo
            .complete(CompletionRequest {
                model: "demo".into(),
                history: history("tell me about logs"),
                continue_from: "not the reply".into(),
            })
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(!error.retryable);
    }
}
