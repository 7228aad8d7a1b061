//! The demo model as the UI and the cluster see it: Markdown that renders
//! (headings, lists, tables, closed code fences with a language) in the
//! language of the question, while staying a pure function of the
//! conversation that continues from any prefix to the same text.

use std::time::{Duration, Instant};

use chatstream::protocol::Role;
use chatstream::providers::{ChatTurn, Completion, CompletionRequest, DemoProvider, Provider};
use futures_util::TryStreamExt;

const QUESTIONS: &[&str] = &[
    "How do actors stream tokens?",
    "Write a Rust function to reverse a string",
    "Show me a code example in Python",
    "Giải thích cơ chế failover là gì?",
    "Cho tôi ví dụ mã Python về sắp xếp danh sách",
    "",
];

fn ask(question: &str) -> Vec<ChatTurn> {
    vec![turn(Role::User, question)]
}

fn turn(role: Role, content: &str) -> ChatTurn {
    ChatTurn {
        role,
        content: content.to_owned(),
    }
}

fn reply(tokens: usize, history: &[ChatTurn]) -> String {
    DemoProvider::new(Duration::ZERO, tokens)
        .reply_tokens(history)
        .concat()
}

/// What the provider streams for `history` after `continue_from`: its text
/// pieces and the usage it reports.
async fn stream(
    provider: &DemoProvider,
    history: &[ChatTurn],
    continue_from: &str,
) -> (Vec<String>, u64) {
    let items: Vec<Completion> = provider
        .complete(CompletionRequest {
            model: "demo".into(),
            history: history.to_vec(),
            continue_from: continue_from.into(),
        })
        .try_collect()
        .await
        .expect("the demo model continues its own text");
    let mut pieces = Vec::new();
    let mut completion_tokens = None;
    for item in items {
        match item {
            Completion::Text(text) => pieces.push(text),
            Completion::Finished { usage, .. } => {
                completion_tokens = usage.map(|u| u.completion_tokens);
            }
        }
    }
    (
        pieces,
        completion_tokens.expect("the stream ends with its usage"),
    )
}

/// The code blocks of a Markdown text, as (info string, code), after
/// checking every fence is closed.
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, open.take()) {
            (Some(info), None) => open = Some((info.trim().to_owned(), Vec::new())),
            (Some(rest), Some((info, code))) => {
                assert_eq!(rest.trim(), "", "a closing fence has no info string");
                blocks.push((info, code.join("\n")));
            }
            (None, Some((info, mut code))) => {
                code.push(line);
                open = Some((info, code));
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code fence in:\n{text}");
    blocks
}

/// The tables of a Markdown text outside code, each as its rows of cells,
/// after checking each has a delimiter row and one column count.
fn tables(text: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut current: Vec<Vec<String>> = Vec::new();
    let mut in_code = false;
    for line in text.lines().chain([""]) {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('|') {
            let cells = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            current.push(cells);
        } else if !current.is_empty() {
            tables.push(std::mem::take(&mut current));
        }
    }
    for table in &tables {
        assert!(
            table.len() >= 3,
            "a header, a delimiter and rows: {table:?}"
        );
        assert!(
            table[1]
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|c| c == '-')),
            "the second row is the delimiter: {table:?}"
        );
        let columns = table[0].len();
        assert!(columns >= 2);
        for row in table {
            assert_eq!(
                row.len(),
                columns,
                "every row has the header's columns: {table:?}"
            );
            assert!(row.iter().all(|c| !c.is_empty()));
        }
    }
    tables
}

fn vietnamese_letters(text: &str) -> usize {
    const MARKED: &str = "àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ";
    text.to_lowercase()
        .chars()
        .filter(|c| MARKED.contains(*c))
        .count()
}

#[test]
fn the_same_conversation_always_gets_the_same_reply() {
    let demo = DemoProvider::new(Duration::ZERO, 120);
    for question in QUESTIONS {
        let first = demo.reply_tokens(&ask(question));
        assert_eq!(first, demo.reply_tokens(&ask(question)), "{question:?}");
    }
    let a = reply(120, &ask("How do actors stream tokens?"));
    let b = reply(120, &ask("How do supervisors restart actors?"));
    assert_ne!(a, b, "different questions, different replies");

    // The whole conversation is the input, not only its last question.
    let mut history = ask("How do actors stream tokens?");
    history.push(turn(Role::Assistant, &a));
    history.push(turn(Role::User, "How do actors stream tokens?"));
    assert_ne!(reply(120, &history), a);
    assert_eq!(reply(120, &history), reply(120, &history));
}

#[test]
fn a_reply_has_exactly_the_configured_number_of_tokens_each_one_word() {
    for question in QUESTIONS {
        for tokens in [1, 2, 3, 7, 20, 25, 30, 40, 75, 120, 150, 400, 4_000] {
            let pieces = DemoProvider::new(Duration::ZERO, tokens).reply_tokens(&ask(question));
            assert_eq!(pieces.len(), tokens, "{question:?}");
            let text = pieces.concat();
            // What a UI or a test counts on the text: whitespace-separated words.
            assert_eq!(text.split_whitespace().count(), tokens, "{question:?}");
            assert_eq!(text.trim(), text);
            for piece in &pieces {
                assert_eq!(piece.split_whitespace().count(), 1, "{piece:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_reply_continues_from_any_prefix_to_the_same_text() {
    for question in [
        "Write a Rust function to reverse a string",
        "Cho tôi ví dụ mã Python về sắp xếp danh sách",
    ] {
        let demo = DemoProvider::new(Duration::ZERO, 120);
        let history = ask(question);
        let tokens = demo.reply_tokens(&history);
        let full = tokens.concat();
        let (pieces, usage) = stream(&demo, &history, "").await;
        assert_eq!(pieces, tokens, "one piece per token");
        assert_eq!(usage, 120);

        // Every byte offset a reply can be cut at (UTF-8 boundaries: the
        // Vietnamese text has letters of two and three bytes).
        for cut in (0..=full.len()).filter(|&i| full.is_char_boundary(i)) {
            let (rest, _) = stream(&demo, &history, &full[..cut]).await;
            assert_eq!(
                format!("{}{}", &full[..cut], rest.concat()),
                full,
                "cut at {cut}"
            );
        }

        // Cut on a token boundary, the rest streams as the same tokens,
        // so a resumed reply keeps the pace of an undisturbed one.
        for n in 0..=tokens.len() {
            let (rest, _) = stream(&demo, &history, &tokens[..n].concat()).await;
            assert_eq!(rest, tokens[n..], "after {n} tokens");
        }

        let refused = demo
            .complete(CompletionRequest {
                model: "demo".into(),
                history: history.clone(),
                continue_from: "Not this model's reply".into(),
            })
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(!refused.retryable);
    }
}

#[tokio::test]
async fn a_reply_is_paced_one_token_per_pause() {
    let demo = DemoProvider::new(Duration::from_millis(25), 8);
    let history = ask("How do actors stream tokens?");
    let started = Instant::now();
    let (pieces, _) = stream(&demo, &history, "").await;
    assert_eq!(pieces.len(), 8);
    assert!(started.elapsed() >= Duration::from_millis(8 * 25));

    // Continued after 6 tokens, only the last 2 are waited for.
    let prefix = demo.reply_tokens(&history)[..6].concat();
    let started = Instant::now();
    let (rest, _) = stream(&demo, &history, &prefix).await;
    assert_eq!(rest.len(), 2);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2 * 25));
    assert!(elapsed < Duration::from_millis(6 * 25), "{elapsed:?}");
}

#[test]
fn an_english_question_for_code_gets_a_closed_fenced_block_with_its_language() {
    let text = reply(120, &ask("Write a Rust function to reverse a string"));
    assert!(text.starts_with("## "), "a heading first:\n{text}");
    assert!(
        text.contains("reverse string"),
        "the topic is named:\n{text}"
    );
    let blocks = code_blocks(&text);
    assert_eq!(blocks.len(), 1, "{text}");
    assert_eq!(blocks[0].0, "rust");
    assert!(
        blocks[0].1.contains("fn "),
        "plausible Rust:\n{}",
        blocks[0].1
    );
    assert!(blocks[0].1.contains("reverse_string") || blocks[0].1.contains("ReverseString"));

    for (question, tag) in [
        ("Show me a code example", "rust"),
        ("Give me a JavaScript snippet for debouncing", "javascript"),
        ("write a go function that sums numbers", "go"),
        ("An example in TypeScript, please", "typescript"),
        ("SQL to find the top customers", "sql"),
    ] {
        let text = reply(120, &ask(question));
        let blocks = code_blocks(&text);
        assert_eq!(blocks.len(), 1, "{question}:\n{text}");
        assert_eq!(blocks[0].0, tag, "{question}");
    }

    // Without a word asking for code, no code.
    let text = reply(120, &ask("Tell me about streaming replies"));
    assert!(code_blocks(&text).is_empty(), "{text}");
    assert_eq!(vietnamese_letters(&text), 0, "English:\n{text}");
}

#[test]
fn an_english_reply_with_room_has_a_heading_a_list_and_a_table() {
    let text = reply(120, &ask("How do actors stream tokens?"));
    assert!(text.starts_with("## "), "{text}");
    assert!(text.contains("**actors stream tokens**"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("- ")), "a list:\n{text}");
    assert_eq!(tables(&text).len(), 1, "a table:\n{text}");
}

#[test]
fn a_vietnamese_question_gets_a_vietnamese_reply() {
    let text = reply(120, &ask("Giải thích cơ chế failover là gì?"));
    assert!(
        vietnamese_letters(&text) > 40,
        "Vietnamese, with its diacritics:\n{text}"
    );
    assert!(text.contains("failover"), "the topic is named:\n{text}");
    assert!(code_blocks(&text).is_empty(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("- ")), "a list:\n{text}");
    for table in tables(&text) {
        assert!(vietnamese_letters(&table.concat().concat()) > 0);
    }

    let text = reply(120, &ask("cho tôi ví dụ mã Python"));
    assert!(vietnamese_letters(&text) > 20, "{text}");
    let blocks = code_blocks(&text);
    assert_eq!(blocks.len(), 1, "{text}");
    assert_eq!(blocks[0].0, "python");
    assert!(blocks[0].1.contains("def "), "{}", blocks[0].1);

    // Vietnamese typed without its marks is still answered in Vietnamese.
    assert!(vietnamese_letters(&reply(60, &ask("cho toi hoi cach lam nhu the nao"))) > 10);
}

#[test]
fn the_language_follows_the_last_question() {
    let mut history = ask("Giải thích cơ chế failover là gì?");
    let answer = reply(60, &history);
    history.push(turn(Role::Assistant, &answer));
    history.push(turn(Role::User, "And in English?"));
    let text = reply(60, &history);
    assert_eq!(vietnamese_letters(&text), 0, "{text}");
}

#[test]
fn a_reply_of_any_length_is_well_formed_markdown() {
    for question in QUESTIONS {
        for tokens in 1..=200 {
            let text = reply(tokens, &ask(question));
            // Checked by the helpers: every fence closed, every table whole.
            let blocks = code_blocks(&text);
            tables(&text);
            for (info, code) in &blocks {
                assert!(!info.is_empty(), "{question:?} in {tokens}: a language tag");
                assert!(!code.trim().is_empty());
            }
            if question.contains("function") || question.contains("ví dụ") {
                // A block appears once the reply has room for a few lines.
                assert!(blocks.len() <= 1, "{question:?} in {tokens}:\n{text}");
                if tokens >= 20 {
                    assert_eq!(blocks.len(), 1, "{question:?} in {tokens}:\n{text}");
                }
            }
        }
    }
}

#[test]
fn short_replies_as_the_tests_configure_them_read_well() {
    for tokens in [20, 25, 30, 40] {
        for question in QUESTIONS {
            let text = reply(tokens, &ask(question));
            assert!(text.starts_with("## "), "{question:?} in {tokens}:\n{text}");
            assert!(
                text.ends_with(['.', '!', ':', '`', '|']),
                "{question:?} in {tokens} ends mid-sentence:\n{text}"
            );
        }
    }
}
