//! The code examples the demo model shows, one small set per programming
//! language. Each is ordinary, runnable-looking code; its names are made
//! from the question's topic (`{snake}`, `{pascal}`) and its comment is in
//! the language of the question (`{comment}`).

/// A programming language the demo model can write an example in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLanguage {
    /// The fence's info string, which the UI uses for highlighting.
    pub tag: &'static str,
    /// The name a sentence uses.
    pub name: &'static str,
    /// Lower-case words in a question that name the language.
    names: &'static [&'static str],
    /// Names too common as ordinary words ("go", "c") to count on their own:
    /// they pick the language only when the question asks for code anyway.
    weak_names: &'static [&'static str],
    /// Full examples, one of which a reply with room shows.
    pub examples: &'static [Snippet],
    /// A few lines, for a reply too short for an example.
    pub short: &'static str,
}

/// One example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snippet {
    pub code: &'static str,
    pub comment_en: &'static str,
    pub comment_vi: &'static str,
}

impl Snippet {
    /// The code with its names and comment filled in.
    pub fn render(&self, names: &Identifier, vietnamese: bool) -> String {
        let comment = if vietnamese {
            self.comment_vi
        } else {
            self.comment_en
        };
        fill(self.code, names, comment)
    }
}

/// A template's names and comment filled in.
pub fn fill(code: &str, names: &Identifier, comment: &str) -> String {
    code.replace("{snake}", &names.snake)
        .replace("{pascal}", &names.pascal)
        .replace("{comment}", comment)
}

/// A name made from the topic's words, in the cases languages use. Templates
/// always add a prefix or suffix of their own, so a topic word that happens
/// to be a keyword ("type", "self") never stands alone as a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    pub snake: String,
    pub pascal: String,
}

impl Identifier {
    /// From up to the last two topic words, folded to ASCII (Vietnamese
    /// letters lose their marks: `danh sách` gives `danh_sach`).
    pub fn from_words(words: &[String]) -> Identifier {
        let parts: Vec<String> = words
            .iter()
            .map(|w| fold_ascii(w))
            .filter(|w| !w.is_empty())
            .collect();
        let parts = if parts.is_empty() {
            vec!["items".to_owned()]
        } else {
            parts[parts.len().saturating_sub(2)..].to_vec()
        };
        Identifier {
            snake: parts.join("_"),
            pascal: parts
                .iter()
                .map(|p| {
                    let mut chars = p.chars();
                    chars
                        .next()
                        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                        .unwrap_or_default()
                })
                .collect(),
        }
    }
}

/// Lower-case ASCII letters and digits of `word`, with Vietnamese letters
/// reduced to their base letter; anything else is dropped.
fn fold_ascii(word: &str) -> String {
    const GROUPS: &[(char, &str)] = &[
        ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
        ('e', "èéẻẽẹêềếểễệ"),
        ('i', "ìíỉĩị"),
        ('o', "òóỏõọôồốổỗộơờớởỡợ"),
        ('u', "ùúủũụưừứửữự"),
        ('y', "ỳýỷỹỵ"),
        ('d', "đ"),
    ];
    word.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| {
            if c.is_ascii_alphanumeric() {
                Some(c)
            } else {
                GROUPS
                    .iter()
                    .find(|(_, marked)| marked.contains(c))
                    .map(|(base, _)| *base)
            }
        })
        .collect()
}

/// The language of a question's example: the first language it names, else
/// Rust. `asks_for_code` lets the weak names count.
pub fn language_named(words: &[String], asks_for_code: bool) -> Option<&'static CodeLanguage> {
    words.iter().find_map(|word| {
        LANGUAGES.iter().find(|l| {
            l.names.contains(&word.as_str())
                || (asks_for_code && l.weak_names.contains(&word.as_str()))
        })
    })
}

pub fn default_language() -> &'static CodeLanguage {
    &LANGUAGES[0]
}

pub static LANGUAGES: &[CodeLanguage] = &[
    CodeLanguage {
        tag: "rust",
        name: "Rust",
        names: &["rust"],
        weak_names: &[],
        examples: &[
            Snippet {
                code: "use std::collections::HashMap;

/// {comment}
fn count_{snake}(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

fn main() {
    let counts = count_{snake}(\"one two two three three three\");
    println!(\"{counts:?}\");
}",
                comment_en: "Counts how often each word appears.",
                comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
            },
            Snippet {
                code: "#[derive(Debug, Default)]
struct {pascal}List {
    items: Vec<String>,
}

impl {pascal}List {
    /// {comment}
    fn add(&mut self, item: impl Into<String>) -> usize {
        self.items.push(item.into());
        self.items.len()
    }
}

fn main() {
    let mut list = {pascal}List::default();
    list.add(\"first\");
    println!(\"{} items: {list:?}\", list.add(\"second\"));
}",
                comment_en: "Adds an item and returns the new length.",
                comment_vi: "Thêm một phần tử và trả về độ dài mới.",
            },
        ],
        short: "fn total_{snake}(items: &[i64]) -> i64 {
    items.iter().sum()
}",
    },
    CodeLanguage {
        tag: "python",
        name: "Python",
        names: &["python", "py", "python3"],
        weak_names: &[],
        examples: &[Snippet {
            code: "from collections import Counter


def count_{snake}(text: str) -> Counter:
    \"\"\"{comment}\"\"\"
    return Counter(text.lower().split())


if __name__ == \"__main__\":
    print(count_{snake}(\"one two two three three three\"))",
            comment_en: "Count how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "def total_{snake}(items):
    return sum(items)",
    },
    CodeLanguage {
        tag: "javascript",
        name: "JavaScript",
        names: &["javascript", "js", "node", "nodejs", "node.js"],
        weak_names: &[],
        examples: &[Snippet {
            code: "/** {comment} */
function count{pascal}(text) {
  const counts = new Map();
  for (const word of text.toLowerCase().split(/\\s+/)) {
    counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}

console.log(count{pascal}('one two two three three three'));",
            comment_en: "Counts how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "const total{pascal} = (items) => items.reduce((sum, x) => sum + x, 0);",
    },
    CodeLanguage {
        tag: "typescript",
        name: "TypeScript",
        names: &["typescript", "ts"],
        weak_names: &[],
        examples: &[Snippet {
            code: "/** {comment} */
export function count{pascal}(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const word of text.toLowerCase().split(/\\s+/)) {
    counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  return counts;
}",
            comment_en: "Counts how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "export const total{pascal} = (items: number[]): number =>
  items.reduce((sum, x) => sum + x, 0);",
    },
    CodeLanguage {
        tag: "go",
        name: "Go",
        names: &["golang"],
        weak_names: &["go"],
        examples: &[Snippet {
            code: "package main

import (
\t\"fmt\"
\t\"strings\"
)

// {comment}
func count{pascal}(text string) map[string]int {
\tcounts := make(map[string]int)
\tfor _, word := range strings.Fields(text) {
\t\tcounts[word]++
\t}
\treturn counts
}

func main() {
\tfmt.Println(count{pascal}(\"one two two three three three\"))
}",
            comment_en: "Counts how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "func total{pascal}(items []int) (sum int) {
\tfor _, x := range items {
\t\tsum += x
\t}
\treturn
}",
    },
    CodeLanguage {
        tag: "java",
        name: "Java",
        names: &["java"],
        weak_names: &[],
        examples: &[Snippet {
            code: "import java.util.HashMap;
import java.util.Map;

public class {pascal}Counter {
    /** {comment} */
    static Map<String, Integer> count(String text) {
        Map<String, Integer> counts = new HashMap<>();
        for (String word : text.split(\"\\\\s+\")) {
            counts.merge(word, 1, Integer::sum);
        }
        return counts;
    }

    public static void main(String[] args) {
        System.out.println(count(\"one two two three three three\"));
    }
}",
            comment_en: "Counts how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "static int total{pascal}(int[] items) {
    return java.util.Arrays.stream(items).sum();
}",
    },
    CodeLanguage {
        tag: "c",
        name: "C",
        names: &[],
        weak_names: &["c"],
        examples: &[Snippet {
            code: "#include <stdio.h>

/* {comment} */
static int count_{snake}(const char *text) {
    int words = 0, inside = 0;
    for (; *text; text++) {
        if (*text == ' ') {
            inside = 0;
        } else if (!inside) {
            inside = 1;
            words++;
        }
    }
    return words;
}

int main(void) {
    printf(\"%d\\n\", count_{snake}(\"one two two three\"));
    return 0;
}",
            comment_en: "Counts the words of a string.",
            comment_vi: "Đếm số từ trong một chuỗi.",
        }],
        short: "int total_{snake}(const int *items, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) sum += items[i];
    return sum;
}",
    },
    CodeLanguage {
        tag: "cpp",
        name: "C++",
        names: &["c++", "cpp"],
        weak_names: &[],
        examples: &[Snippet {
            code: "#include <iostream>
#include <map>
#include <sstream>
#include <string>

// {comment}
std::map<std::string, int> count_{snake}(const std::string& text) {
    std::map<std::string, int> counts;
    std::istringstream words(text);
    for (std::string word; words >> word;) {
        ++counts[word];
    }
    return counts;
}

int main() {
    for (const auto& [word, n] : count_{snake}(\"one two two three\")) {
        std::cout << word << \": \" << n << '\\n';
    }
}",
            comment_en: "Counts how often each word appears.",
            comment_vi: "Đếm số lần xuất hiện của mỗi từ.",
        }],
        short: "#include <numeric>
#include <vector>

int total_{snake}(const std::vector<int>& items) {
    return std::accumulate(items.begin(), items.end(), 0);
}",
    },
    CodeLanguage {
        tag: "sql",
        name: "SQL",
        names: &["sql", "postgres", "postgresql", "sqlite", "mysql"],
        weak_names: &[],
        examples: &[Snippet {
            code: "-- {comment}
SELECT word, COUNT(*) AS uses
FROM {snake}_words
GROUP BY word
ORDER BY uses DESC
LIMIT 10;",
            comment_en: "The ten most frequent words.",
            comment_vi: "Mười từ xuất hiện nhiều nhất.",
        }],
        short: "SELECT COUNT(*) FROM {snake}_items;",
    },
    CodeLanguage {
        tag: "bash",
        name: "Bash",
        names: &["bash", "shell", "sh"],
        weak_names: &[],
        examples: &[Snippet {
            code: "#!/usr/bin/env bash
set -euo pipefail

# {comment}
count_{snake}() {
  tr -s '[:space:]' '\\n' < \"$1\" | sort | uniq -c | sort -rn | head -n 10
}

count_{snake} \"${1:-notes.txt}\"",
            comment_en: "The ten most frequent words of a file.",
            comment_vi: "Mười từ xuất hiện nhiều nhất trong một tệp.",
        }],
        short: "wc -w \"${1:-notes.txt}\"",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn names_are_ascii_identifiers_made_from_the_last_topic_words() {
        let id = Identifier::from_words(&words("actors stream tokens"));
        assert_eq!(id.snake, "stream_tokens");
        assert_eq!(id.pascal, "StreamTokens");
        let id = Identifier::from_words(&words("sắp xếp danh sách"));
        assert_eq!(id.snake, "danh_sach");
        assert_eq!(Identifier::from_words(&words("Đường đi")).pascal, "DuongDi");
        assert_eq!(Identifier::from_words(&words("日本")).snake, "items");
    }

    #[test]
    fn a_weak_name_counts_only_when_code_is_asked_for() {
        let question = words("please go on for a while");
        assert_eq!(language_named(&question, false), None);
        assert_eq!(language_named(&question, true).unwrap().tag, "go");
        assert_eq!(
            language_named(&words("a c++ example"), false).unwrap().tag,
            "cpp"
        );
    }

    #[test]
    fn every_language_has_examples_longer_than_its_short_one_without_fences() {
        let names = Identifier::from_words(&words("some topic"));
        for language in LANGUAGES {
            assert!(!language.examples.is_empty(), "{}", language.tag);
            let short = fill(language.short, &names, "");
            for example in language.examples {
                for vietnamese in [false, true] {
                    let code = example.render(&names, vietnamese);
                    for placeholder in ["{snake}", "{pascal}", "{comment}"] {
                        assert!(!code.contains(placeholder), "{}", language.tag);
                    }
                    assert!(!code.contains("```"), "{}", language.tag);
                    assert_eq!(code.trim(), code);
                    assert!(
                        code.split_whitespace().count() > short.split_whitespace().count() + 10,
                        "{}",
                        language.tag
                    );
                }
            }
            assert!(!short.contains("```") && !short.contains("{snake}"));
            assert_eq!(short.trim(), short);
        }
    }
}
