//! The layout of a demo reply: a Markdown document of exactly the configured
//! number of tokens.
//!
//! A token is one word with the whitespace before it (a space, a line break,
//! a blank line, a code line's indentation), so a reply of N tokens is N
//! whitespace-separated words and the UI counts what it would count on any
//! text. The document is planned for its budget rather than cut to it: a
//! heading, an opening paragraph, then each section that fits whole (a code
//! example when the question asks for one, a list, a table), then prose to
//! the last token. A block that does not fit is left out, so a reply of any
//! length is well-formed Markdown: never an unclosed code fence, never a
//! table without its rows.

use std::collections::VecDeque;

use super::code::{self, CodeLanguage, Identifier};
use super::phrases::Phrases;
use super::question::{Language, Question};
use super::rng::SplitMix64;

/// The reply to `question` in `tokens` tokens; `seed` picks among the
/// phrasings.
pub fn compose(question: &Question, seed: u64, tokens: usize) -> String {
    let mut writer = Writer::new(question, seed);
    let blocks = writer.reply(tokens);
    let text = blocks.join("\n\n");
    debug_assert_eq!(words(&text), tokens);
    text
}

/// `text` cut before every word, each piece keeping the whitespace that
/// leads to its word.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                tokens.push(text[start..i].to_owned());
                start = i;
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    if start < text.len() {
        tokens.push(text[start..].to_owned());
    }
    tokens
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Whether a sentence of `cost` words fits in `left`, never leaving exactly
/// one: a paragraph ends on a whole sentence, and the only one-word
/// sentences ("Sure.") read well alone, not after another.
fn fits(left: usize, cost: usize) -> bool {
    cost <= left && left - cost != 1
}

/// Whether `rest` tokens of prose can hold a sentence of `opening` words
/// and whole sentences after it.
fn room_for(rest: usize, opening: usize) -> bool {
    rest == opening || rest >= opening + 2
}

/// How many recent sentences a paragraph avoids repeating.
const RECENT: usize = 8;

struct Writer<'a> {
    phrases: &'static Phrases,
    question: &'a Question,
    rng: SplitMix64,
    /// The topic as a heading shows it.
    topic: String,
    /// The topic as a sentence shows it: in bold.
    topic_bold: String,
    recent: VecDeque<usize>,
    sections: usize,
}

impl<'a> Writer<'a> {
    fn new(question: &'a Question, seed: u64) -> Writer<'a> {
        let phrases = Phrases::of(question.language);
        let topic = question.topic.join(" ");
        let topic_bold = if topic.is_empty() {
            phrases.no_topic.to_owned()
        } else {
            format!("**{topic}**")
        };
        let mut rng = SplitMix64(seed);
        let sections = rng.below(phrases.section_headings.len());
        Writer {
            phrases,
            question,
            rng,
            topic,
            topic_bold,
            recent: VecDeque::new(),
            sections,
        }
    }

    fn reply(&mut self, tokens: usize) -> Vec<String> {
        let heading = self.heading();
        let opening = *self.rng.pick(self.phrases.openings);
        let opening = self.with_topic(opening);
        let (h, o) = (words(&heading), words(&opening));
        if tokens < h + o {
            // Too short for a heading: one paragraph, opening with the topic
            // when it has room for it.
            return vec![self.paragraph(Some(&opening), tokens)];
        }
        let mut left = tokens - h;
        let code = match self.question.code {
            Some(language) => self.code_section(language, &mut left, o),
            None => Vec::new(),
        };
        let list = self.list_section(&mut left, o);
        let table = self.table_section(&mut left, o);
        let (intro, closing) = self.split_prose(left, o);
        let mut blocks = vec![heading];
        if intro > 0 {
            blocks.push(self.paragraph(Some(&opening), intro));
        }
        blocks.extend(code);
        blocks.extend(list);
        blocks.extend(table);
        blocks.extend(self.prose(closing));
        blocks
    }

    fn heading(&mut self) -> String {
        if self.topic.is_empty() {
            (*self.rng.pick(self.phrases.plain_headings)).to_owned()
        } else {
            let template = *self.rng.pick(self.phrases.headings);
            template
                .replace("{Topic}", &capitalized(&self.topic))
                .replace("{topic}", &self.topic)
        }
    }

    fn with_topic(&self, template: &str) -> String {
        template.replace("{topic}", &self.topic_bold)
    }

    /// The tokens of the opening paragraph and of the closing prose, from
    /// the `left` the sections did not take.
    fn split_prose(&mut self, left: usize, opening: usize) -> (usize, usize) {
        if left <= opening + 12 {
            return (left, 0);
        }
        let rest = left - opening;
        // The opening paragraph gets its sentence and maybe one more; the
        // rest goes after the sections.
        let mut extra = [0, 0, 7, 9, 11, 12][self.rng.below(6)];
        if rest - extra == 1 {
            extra += 1;
        }
        (opening + extra, rest - extra)
    }

    /// A heading, a lead-in sentence and a fenced block, or as much of that
    /// as fits: a shorter example, then the block alone, else nothing. The
    /// fence is closed within the block, so it always is in the reply.
    fn code_section(
        &mut self,
        language: &CodeLanguage,
        left: &mut usize,
        opening: usize,
    ) -> Vec<String> {
        let vietnamese = self.question.language == Language::Vietnamese;
        let names = Identifier::from_words(&self.question.topic);
        let example = self.rng.pick(language.examples).render(&names, vietnamese);
        let short = code::fill(language.short, &names, "");
        let fence = |code: &str| format!("```{}\n{code}\n```", language.tag);
        let lead = self
            .rng
            .pick(self.phrases.code_leads)
            .replace("{lang}", language.name);
        let heading = self.phrases.code_heading.to_owned();
        let variants = vec![
            vec![heading, lead.clone(), fence(&example)],
            vec![lead.clone(), fence(&example)],
            vec![lead, fence(&short)],
            vec![fence(&short)],
        ];
        // The example is what was asked for: when no variant leaves room
        // for the opening sentence, one may take it.
        let chosen = self.first_fitting(variants.clone(), left, |rest| room_for(rest, opening));
        if chosen.is_empty() {
            self.first_fitting(variants, left, |_| true)
        } else {
            chosen
        }
    }

    /// A heading and two to four bullet points (two or three alone when
    /// room is short), leaving room for the `opening` sentence.
    fn list_section(&mut self, left: &mut usize, opening: usize) -> Vec<String> {
        let heading = (*self.rng.pick(self.phrases.list_headings)).to_owned();
        let items: Vec<&str> = self
            .phrases
            .list_items
            .iter()
            .copied()
            .filter(|item| !self.topic.is_empty() || !item.contains("{topic}"))
            .collect();
        let chosen: Vec<String> = self
            .rng
            .sample(items.len(), 4)
            .into_iter()
            .map(|i| format!("- {}", self.with_topic(items[i])))
            .collect();
        // Without its heading when that is all that keeps a short reply
        // from showing a list.
        let variants = (2..=4)
            .rev()
            .map(|n| vec![heading.clone(), chosen[..n].join("\n")])
            .chain((2..=3).rev().map(|n| vec![chosen[..n].join("\n")]))
            .collect();
        self.first_fitting(variants, left, |rest| room_for(rest, opening))
    }

    /// A heading and a two-column table of two to four rows, leaving room
    /// for the `opening` sentence.
    fn table_section(&mut self, left: &mut usize, opening: usize) -> Vec<String> {
        let heading = (*self.rng.pick(self.phrases.table_headings)).to_owned();
        let row = |cells: &[&str; 2]| format!("| {} | {} |", cells[0], cells[1]);
        let header = format!("{}\n|---|---|", row(&self.phrases.table_header));
        let rows: Vec<String> = self
            .rng
            .sample(self.phrases.table_rows.len(), 4)
            .into_iter()
            .map(|i| row(&self.phrases.table_rows[i]))
            .collect();
        let variants = (2..=4)
            .rev()
            .map(|n| {
                vec![
                    heading.clone(),
                    format!("{header}\n{}", rows[..n].join("\n")),
                ]
            })
            .collect();
        self.first_fitting(variants, left, |rest| room_for(rest, opening))
    }

    /// The first of `variants` (each a list of blocks) that fits in `left`
    /// leaving a rest `accept` takes, taken out of `left`; nothing when none
    /// does.
    fn first_fitting(
        &mut self,
        variants: Vec<Vec<String>>,
        left: &mut usize,
        accept: impl Fn(usize) -> bool,
    ) -> Vec<String> {
        for blocks in variants {
            let cost: usize = blocks.iter().map(|b| words(b)).sum();
            if cost <= *left && accept(*left - cost) {
                *left -= cost;
                return blocks;
            }
        }
        Vec::new()
    }

    /// Paragraphs of `budget` tokens in all, with a section heading now and
    /// then when there are many.
    fn prose(&mut self, budget: usize) -> Vec<String> {
        let mut blocks = Vec::new();
        let mut left = budget;
        let mut paragraphs = 0;
        while left > 0 {
            if paragraphs > 0 && paragraphs % 3 == 0 {
                let headings = self.phrases.section_headings;
                let heading = headings[self.sections % headings.len()];
                if left >= words(heading) + 12 {
                    self.sections += 1;
                    left -= words(heading);
                    blocks.push(heading.to_owned());
                }
            }
            let mut size = if left <= 60 {
                left
            } else {
                30 + self.rng.below(21)
            };
            if left - size < 8 {
                size = left;
            }
            blocks.push(self.paragraph(None, size));
            left -= size;
            paragraphs += 1;
        }
        blocks
    }

    /// Whole sentences of `budget` tokens in all, starting with `opening`
    /// when it leaves a length the other sentences can fill.
    fn paragraph(&mut self, opening: Option<&str>, budget: usize) -> String {
        let mut sentences = Vec::new();
        let mut left = budget;
        if let Some(opening) = opening
            && fits(left, words(opening))
        {
            sentences.push(opening.to_owned());
            left -= words(opening);
        }
        while left > 0 {
            if left <= 6 {
                sentences.push(self.short_sentence(left));
                break;
            }
            match self.sentence(left) {
                Some(sentence) => {
                    left -= words(sentence);
                    sentences.push(sentence.to_owned());
                }
                None => {
                    let length = (left - 2).min(6);
                    sentences.push(self.short_sentence(length));
                    left -= length;
                }
            }
        }
        sentences.join(" ")
    }

    /// A sentence of general advice that fits in `left`, not one of the
    /// last few used when another fits.
    fn sentence(&mut self, left: usize) -> Option<&'static str> {
        let all = self.phrases.sentences;
        let fitting: Vec<usize> = (0..all.len())
            .filter(|&i| fits(left, words(all[i])))
            .collect();
        let fresh: Vec<usize> = fitting
            .iter()
            .copied()
            .filter(|i| !self.recent.contains(i))
            .collect();
        let pool = if fresh.is_empty() { fitting } else { fresh };
        if pool.is_empty() {
            return None;
        }
        let chosen = pool[self.rng.below(pool.len())];
        self.recent.push_back(chosen);
        if self.recent.len() > RECENT.min(all.len() / 2) {
            self.recent.pop_front();
        }
        Some(all[chosen])
    }

    /// A sentence of exactly `length` words (1 to 6).
    fn short_sentence(&mut self, length: usize) -> String {
        let pool: Vec<&str> = self
            .phrases
            .short_sentences
            .iter()
            .copied()
            .filter(|s| words(s) == length)
            .collect();
        (*self.rng.pick(&pool)).to_owned()
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(question: &str, tokens: usize) -> String {
        compose(&Question::read(question), 7, tokens)
    }

    #[test]
    fn tokens_are_words_with_the_whitespace_before_them() {
        let text = "## Title\n\n```rust\nfn main() {\n    go();\n}\n```";
        let tokens = tokenize(text);
        assert_eq!(
            tokens,
            [
                "##",
                " Title",
                "\n\n```rust",
                "\nfn",
                " main()",
                " {",
                "\n    go();",
                "\n}",
                "\n```"
            ]
        );
        assert_eq!(tokens.concat(), text);
        assert!(tokenize("").is_empty());
    }

    #[test]
    fn every_length_is_met_exactly() {
        for question in ["What is a log?", "Cho tôi ví dụ mã Python", "", "code"] {
            for tokens in (1..=300).chain([1_000, 5_000]) {
                let text = reply(question, tokens);
                assert_eq!(words(&text), tokens, "{question:?} in {tokens}");
                assert_eq!(tokenize(&text).len(), tokens);
                assert_eq!(text.trim(), text);
            }
        }
    }

    #[test]
    fn a_long_reply_has_every_kind_of_block_and_a_short_one_stays_plain() {
        let text = reply("Show me a Rust example of parsing numbers", 160);
        assert!(text.starts_with("## "), "{text}");
        assert!(text.contains("\n\n```rust\n"), "{text}");
        assert!(text.contains("\n\n- "), "{text}");
        assert!(text.contains("\n|---|---|\n"), "{text}");
        assert!(text.contains("**parsing numbers**"), "{text}");

        let text = reply("Tell me about streaming replies", 4);
        assert!(!text.contains('#') && !text.contains('|'), "{text}");
    }

    #[test]
    fn paragraphs_end_on_whole_sentences() {
        for tokens in [2, 9, 30, 120, 400] {
            for block in reply("How do supervisors restart actors?", tokens).split("\n\n") {
                let first = block.chars().next().unwrap();
                if first.is_alphabetic() || block.starts_with("**") {
                    assert!(
                        block.ends_with(['.', '!', ':']),
                        "{tokens}: {block:?} ends mid-sentence"
                    );
                }
            }
        }
    }
}
