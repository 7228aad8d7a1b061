//! What the demo model reads in the question: its language, its topic and
//! whether it asks for code.

use super::code::{self, CodeLanguage};

/// The language a reply is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    English,
    Vietnamese,
}

/// The last question of a conversation, as the demo model understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub language: Language,
    /// Up to four words of the question that say what it is about, as
    /// written, with nothing around them that Markdown would interpret.
    pub topic: Vec<String>,
    /// The language of the code example it asks for, if it asks for one.
    pub code: Option<&'static CodeLanguage>,
}

const TOPIC_WORDS: usize = 4;

impl Question {
    pub fn read(text: &str) -> Question {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric() && c != '+' && c != '#')
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect();
        let language = if is_vietnamese(text, &words) {
            Language::Vietnamese
        } else {
            Language::English
        };
        let asks = asks_for_code(&words);
        let named = code::language_named(&words, asks);
        let code = match (named, asks) {
            (Some(language), _) => Some(language),
            (None, true) => Some(code::default_language()),
            (None, false) => None,
        };
        let topic = text
            .split_whitespace()
            .map(clean_word)
            .filter(|w| !w.is_empty())
            .filter(|w| {
                let lower = w.to_lowercase();
                !is_filler(&lower) && code::language_named(&[lower], true).is_none()
            })
            .take(TOPIC_WORDS)
            .collect();
        Question {
            language,
            topic,
            code,
        }
    }
}

/// A word of the question with only letters, digits and a few joining marks
/// (`node.js`, `c++`, `snake_case`, `don't`) left, so that it can be placed
/// in a heading, a bold run or a sentence without Markdown reading anything
/// into it.
fn clean_word(word: &str) -> String {
    let kept: String = word
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '\'' | '.' | '+' | '#'))
        .collect();
    kept.trim_matches(|c: char| !c.is_alphanumeric() && c != '+' && c != '#')
        .trim_start_matches(['+', '#'])
        .to_owned()
}

/// Letters only Vietnamese uses among the languages written in Latin script:
/// ă, đ, ơ, ư, and the tone marks hook above, dot below and tilde on vowels
/// other than ã/õ (shared with Portuguese). À, â, ê or ô alone are French too.
const VIETNAMESE_LETTERS: &str = "ăằắẳẵặđơờớởỡợưừứửữựảạẻẽẹỉĩịỏọủũụỳỷỹỵầấẩẫậềếểễệồốổỗộ";

/// Combining marks of decomposed (NFD) Vietnamese: hook above, horn, dot below.
const VIETNAMESE_MARKS: &[char] = &['\u{0309}', '\u{031b}', '\u{0323}'];

/// Vietnamese written without its marks, as people often type it: words that
/// are not English, two of which make a question Vietnamese.
const PLAIN_VIETNAMESE: &[&str] = &[
    "khong", "toi", "nhu", "nao", "duoc", "lam", "cua", "voi", "nhung", "gi", "vay", "sao", "giup",
    "minh", "cach", "cho", "la", "mot", "trong", "nay",
];

fn is_vietnamese(text: &str, words: &[String]) -> bool {
    let lower = text.to_lowercase();
    lower
        .chars()
        .any(|c| VIETNAMESE_LETTERS.contains(c) || VIETNAMESE_MARKS.contains(&c))
        || words
            .iter()
            .filter(|w| PLAIN_VIETNAMESE.contains(&w.as_str()))
            .count()
            >= 2
}

/// Words that ask for code, alone or as a pair of syllables (`ví dụ`).
const CODE_WORDS: &[&str] = &[
    "code",
    "coding",
    "example",
    "examples",
    "function",
    "functions",
    "snippet",
    "snippets",
    "sample",
    "program",
    "script",
    "implement",
    "implementation",
    "mã",
    "hàm",
    "vd",
];
const CODE_PAIRS: &[(&str, &str)] = &[
    ("ví", "dụ"),
    ("vi", "du"),
    ("đoạn", "mã"),
    ("lập", "trình"),
    ("chương", "trình"),
];

fn asks_for_code(words: &[String]) -> bool {
    words.iter().any(|w| CODE_WORDS.contains(&w.as_str()))
        || words
            .windows(2)
            .any(|p| CODE_PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// Words that say nothing about the topic: English function words, the
/// common syllables of Vietnamese questions, and the words that ask for code.
fn is_filler(lower: &str) -> bool {
    const ENGLISH: &[&str] = &[
        "a", "an", "the", "and", "or", "but", "is", "are", "was", "were", "be", "been", "do",
        "does", "did", "how", "what", "why", "when", "where", "which", "who", "can", "could",
        "would", "should", "will", "may", "might", "must", "i", "me", "my", "you", "your", "we",
        "us", "our", "it", "its", "it's", "this", "that", "these", "those", "to", "of", "in", "on",
        "at", "for", "from", "by", "with", "about", "into", "as", "please", "tell", "show", "give",
        "explain", "describe", "write", "make", "let", "need", "want", "some", "any", "more",
        "much", "many", "very", "so", "there", "here", "then", "than", "also", "just", "like",
        "get", "use", "using", "have", "has", "had", "not", "no", "yes", "if", "up", "out", "over",
        "while", "go", "hi", "hello", "thanks", "i'm", "what's", "how's", "again", "next",
        "happened", "happens",
    ];
    const VIETNAMESE: &[&str] = &[
        "cho", "tôi", "mình", "bạn", "em", "anh", "chị", "là", "gì", "của", "và", "với", "một",
        "các", "những", "có", "không", "như", "thế", "nào", "làm", "sao", "hãy", "giúp", "về",
        "ví", "dụ", "đoạn", "viết", "bằng", "trong", "được", "này", "đó", "thì", "mà", "nhé", "ạ",
        "vậy", "đi", "nên", "cần", "muốn", "hỏi", "giải", "thích", "cách", "để", "khi", "nếu",
        "hay", "hoặc", "rồi", "lại", "ra", "vào", "cũng", "rất", "nhiều", "ở", "từ", "sử", "dụng",
        "lập", "trình", "chương", "xin", "chào", "ơi", "nhỉ", "đâu", "ai",
    ];
    ENGLISH.contains(&lower) || VIETNAMESE.contains(&lower) || CODE_WORDS.contains(&lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_is_told_by_its_letters_or_its_plain_words() {
        for text in [
            "Cho tôi ví dụ mã Python",
            "Giải thích actor là gì?",
            "đ",
            "cho toi vi du ma python",
            // Decomposed: "ư" + dot below.
            "nhu\u{031b}\u{0323}ng",
        ] {
            assert_eq!(
                Question::read(text).language,
                Language::Vietnamese,
                "{text}"
            );
        }
        for text in [
            "How do actors work?",
            "Un café à côté, s'il vous plaît",
            "São Paulo",
            "",
        ] {
            assert_eq!(Question::read(text).language, Language::English, "{text}");
        }
    }

    #[test]
    fn code_is_asked_for_by_words_or_by_a_language_name() {
        let tag = |text: &str| Question::read(text).code.map(|c| c.tag);
        assert_eq!(tag("Show me a code example"), Some("rust"));
        assert_eq!(tag("a snippet in Python please"), Some("python"));
        assert_eq!(tag("How does rust handle lifetimes?"), Some("rust"));
        assert_eq!(tag("write a go function"), Some("go"));
        assert_eq!(tag("Cho tôi ví dụ mã Python"), Some("python"));
        assert_eq!(tag("viết hàm sắp xếp"), Some("rust"));
        assert_eq!(tag("đoạn mã JavaScript"), Some("javascript"));
        assert_eq!(tag("Please go on for a while"), None);
        assert_eq!(tag("Tell me about streaming replies"), None);
    }

    #[test]
    fn the_topic_keeps_the_telling_words_without_markup() {
        let topic = |text: &str| Question::read(text).topic.join(" ");
        assert_eq!(
            topic("How do **actors** `stream` tokens?"),
            "actors stream tokens"
        );
        assert_eq!(
            topic("Give me a Python example of sorting a list"),
            "sorting list"
        );
        assert_eq!(
            topic("Cho tôi ví dụ mã Python về sắp xếp danh sách"),
            "sắp xếp danh sách"
        );
        assert_eq!(topic("a|b <tag> [link](x) ```"), "ab tag linkx");
        assert_eq!(topic("node.js or c++?"), "");
        assert_eq!(topic("?!"), "");
    }
}
