//! The text a reply is made of, one set per language the model writes.
//!
//! `{topic}` is replaced by the question's topic (in bold in sentences),
//! `{Topic}` by the same with a capital, and `{lang}` by the name of a
//! programming language. A sentence's words are its tokens, so the banks
//! are measured in words: `short_sentences` has one of every length from 1
//! to 6, which lets a paragraph end exactly on its budget with a whole
//! sentence.

use super::english;
use super::question::Language;
use super::vietnamese;

pub struct Phrases {
    /// The topic when the question has none to offer ("this").
    pub no_topic: &'static str,
    /// Titles naming the topic.
    pub headings: &'static [&'static str],
    /// Titles for a question without a topic.
    pub plain_headings: &'static [&'static str],
    /// First sentences, each naming the topic.
    pub openings: &'static [&'static str],
    /// General advice, a sentence each, of at least 7 words.
    pub sentences: &'static [&'static str],
    /// Sentences of 1 to 6 words, to end a paragraph on its exact length.
    pub short_sentences: &'static [&'static str],
    pub code_heading: &'static str,
    /// The sentence before a code block, naming its language.
    pub code_leads: &'static [&'static str],
    pub list_headings: &'static [&'static str],
    /// Bullet points; some name the topic.
    pub list_items: &'static [&'static str],
    pub table_headings: &'static [&'static str],
    pub table_header: [&'static str; 2],
    /// Rows of the table; no cell holds a `|`.
    pub table_rows: &'static [[&'static str; 2]],
    /// Titles of the further sections of a long reply.
    pub section_headings: &'static [&'static str],
}

impl Phrases {
    pub fn of(language: Language) -> &'static Phrases {
        match language {
            Language::English => &english::PHRASES,
            Language::Vietnamese => &vietnamese::PHRASES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn every_language_can_end_a_paragraph_on_any_length() {
        for language in [Language::English, Language::Vietnamese] {
            let phrases = Phrases::of(language);
            for length in 1..=6 {
                assert!(
                    phrases.short_sentences.iter().any(|s| words(s) == length),
                    "{language:?}: no short sentence of {length} words"
                );
            }
            assert!(phrases.short_sentences.iter().all(|s| words(s) <= 6));
            assert!(phrases.sentences.iter().all(|s| words(s) >= 7));
            assert!(phrases.openings.iter().all(|s| s.contains("{topic}")));
            assert!(phrases.headings.iter().all(|s| s.contains("opic}")));
            assert!(phrases.code_leads.iter().all(|s| s.contains("{lang}")));
            let cells = phrases
                .table_rows
                .iter()
                .flatten()
                .chain(&phrases.table_header);
            for cell in cells {
                assert!(!cell.contains('|') && !cell.is_empty());
            }
            for heading in phrases
                .headings
                .iter()
                .chain(phrases.plain_headings)
                .chain(phrases.list_headings)
                .chain(phrases.table_headings)
                .chain(phrases.section_headings)
                .chain([&phrases.code_heading])
            {
                assert!(heading.starts_with("## ") || heading.starts_with("### "));
            }
        }
    }
}
