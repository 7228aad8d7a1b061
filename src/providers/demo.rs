//! The built-in `demo` model: readable prose with no network.
//!
//! Its reply is a pure function of the conversation's text (the ordered roles
//! and contents, without ids or times) and of its configuration, so the same
//! history always yields the same reply token by token. That is what makes a
//! resumed or restarted reply checkable against an undisturbed one.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;

use super::{ChatTurn, Completion, CompletionRequest, CompletionStream, Provider, ProviderError};
use crate::protocol::{Role, Usage};

const OPENINGS: &[&str] = &[
    "Good question about {topic}.",
    "Let me think about {topic} for a moment.",
    "Here is how I would approach {topic}.",
    "There are a few sides to {topic}.",
];

const SENTENCES: &[&str] = &[
    "The simplest answer is usually the one that survives contact with real users.",
    "It helps to write down what must never happen before deciding what should.",
    "Most systems fail at their edges, where one component hands work to another.",
    "A small experiment often teaches more than a long debate.",
    "Numbers measured on the real thing beat estimates made on a whiteboard.",
    "Every piece of state should have exactly one owner that is allowed to change it.",
    "When something is slow, measure first and guess second.",
    "Clear names save more time than clever code ever will.",
    "Retries are only safe when the work they repeat is idempotent.",
    "A good default lets a newcomer succeed before reading any documentation.",
    "Ordering is easy to promise and hard to keep across a network.",
    "The log is the truth, and everything else is a view of it.",
    "Backpressure is a feature: it tells the fast side to wait for the slow one.",
    "Tests that can never fail are worse than no tests at all.",
    "Keep the hot path short, and move everything else out of its way.",
    "If a failure can happen, plan what the user sees when it does.",
    "Sequence numbers turn guessing about duplicates into a simple comparison.",
    "A supervisor that restarts what failed keeps one fault from becoming many.",
    "Cancelling work early is the cheapest way to save compute.",
    "Documentation that drifts from the code is a bug in both.",
];

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
        let mut rng = SplitMix64(fnv1a(history));
        let topic = history
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| topic_of(&t.content))
            .unwrap_or_else(|| "this".to_owned());
        let opening = OPENINGS[rng.below(OPENINGS.len())].replace("{topic}", &topic);
        let mut words: Vec<String> = opening.split(' ').map(str::to_owned).collect();
        // Whole sentences until the token budget is met; the text is cut to it.
        while words.len() < self.reply_tokens {
            let sentence = SENTENCES[rng.below(SENTENCES.len())];
            words.extend(sentence.split(' ').map(str::to_owned));
        }
        words.truncate(self.reply_tokens);
        words
            .into_iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { w } else { format!(" {w}") })
            .collect()
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

/// The first words of the question, without the Markdown or punctuation
/// around them (`**bold**` reads as `bold`).
fn topic_of(content: &str) -> String {
    let words: Vec<&str> = content
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .take(6)
        .collect();
    if words.is_empty() {
        "this".to_owned()
    } else {
        format!("\"{}\"", words.join(" "))
    }
}

fn history_words(history: &[ChatTurn]) -> u64 {
    history
        .iter()
        .map(|t| t.content.split_whitespace().count() as u64)
        .sum()
}

/// FNV-1a over the conversation's text: stable across builds and platforms,
/// unlike the standard library's hasher.
fn fnv1a(history: &[ChatTurn]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for turn in history {
        feed(match turn.role {
            Role::User => b"user\0",
            Role::Assistant => b"assistant\0",
        });
        feed(turn.content.as_bytes());
        feed(b"\0");
    }
    hash
}

/// A tiny, stable pseudo-random sequence.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
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
    fn the_topic_is_quoted_without_markup() {
        assert_eq!(
            topic_of("Why does **this** `work`?"),
            "\"Why does this work\""
        );
        assert_eq!(topic_of("?!"), "this");
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
