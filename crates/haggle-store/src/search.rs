//! The listing search contract in the databases' full-text terms: relevance (one Rust function
//! for SQLite and the shelves, the same score from PostgreSQL's weighted lexemes), the FTS5
//! query of SQLite, and the `tsvector`/`tsquery` texts of PostgreSQL, built from the words
//! `row::search_words` and `row::is_word_char` define so that no tokenizer decides what a word is.

use crate::row::{has_word, is_word_char};
use std::collections::BTreeMap;

/// A listing's relevance to a query's words (`row::search_words`): each word scores 2 when it
/// matches a word of the title and 1 when it matches a word of the description (as the search
/// matches it: whole, or the beginning of a word for `word*`); the category scores nothing.
/// Ties are broken by the newest listing first (highest id), by every store.
pub fn relevance(title: &str, description: &str, words: &[String]) -> i64 {
    let title = title.to_lowercase();
    let description = description.to_lowercase();
    words
        .iter()
        .map(|w| 2 * i64::from(has_word(&title, w)) + i64::from(has_word(&description, w)))
        .sum()
}

/// The FTS5 query matching every word (SQLite: the `ascii` tokenizer splits text exactly where
/// `is_word_char` does and keeps every non-ASCII byte in its word; the text is lower-cased by
/// Rust before it is indexed, the words too). A word has no `"`, so quoting needs no escapes.
pub fn fts5_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| match w.strip_suffix('*') {
            Some(stem) => format!("\"{stem}\"*"),
            None => format!("\"{w}\""),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A listing's rowid in SQLite's FTS5 table: its market's range (2^32 ids each) and its id;
/// `None` beyond the ranges (a market id ≥ 2^31 or a listing id ≥ 2^32).
pub fn fts5_rowid(market: i64, id: i64) -> Option<i64> {
    let in_range =
        (0..=i64::from(i32::MAX)).contains(&market) && (0..=i64::from(u32::MAX)).contains(&id);
    in_range.then_some((market << 32) + id)
}

/// The longest PostgreSQL lexeme kept whole, in bytes (PostgreSQL refuses lexemes over 2046).
/// A longer word (only a description holds one: a title has at most 200 characters, 800 bytes)
/// is kept as its first bytes up to here and a `*`, a character no word has.
pub const LEXEME_MAX: usize = 2000;

/// A word as PostgreSQL keeps it: itself, or cut at [`LEXEME_MAX`] (on a character boundary)
/// and marked with `*`. Whether it was cut.
fn lexeme(word: &str) -> (String, bool) {
    if word.len() <= LEXEME_MAX {
        return (word.to_string(), false);
    }
    let mut end = LEXEME_MAX;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}*", &word[..end]), true)
}

/// The words of lower-cased `text`.
fn words_of(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
}

/// A listing's PostgreSQL `tsvector`, as text for `::tsvector` (no parser, no dictionary: the
/// lexemes are the words themselves). Each lexeme has position 1 with weight A if it is a word
/// of the title, 2 with weight B if of the description, and 3 (weight D) if of `search_text`
/// (what a search matches; it holds the title's and description's words too).
pub fn tsvector(title: &str, description: &str, search_text: &str) -> String {
    let title = title.to_lowercase();
    let description = description.to_lowercase();
    let mut lexemes: BTreeMap<String, [bool; 3]> = BTreeMap::new();
    for (at, text) in [&title, &description, &search_text.to_string()]
        .into_iter()
        .enumerate()
    {
        for w in words_of(text) {
            lexemes.entry(lexeme(w).0).or_default()[at] = true;
        }
    }
    lexemes
        .into_iter()
        .map(|(lexeme, at)| {
            let positions: Vec<&str> = [(at[0], "1A"), (at[1], "2B"), (at[2], "3")]
                .into_iter()
                .filter_map(|(here, p)| here.then_some(p))
                .collect();
            format!("'{lexeme}':{}", positions.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where a query word must be found in a PostgreSQL `tsvector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Anywhere the search matches (title, description or category).
    Any,
    /// In the title.
    Title,
    /// In the description.
    Description,
}

/// One query word as a PostgreSQL `tsquery` text for `::tsquery`, and whether the lexeme was
/// cut ([`LEXEME_MAX`]): then the index finds candidates only and the word is also matched
/// against the text.
pub fn tsquery(word: &str, weight: Weight) -> (String, bool) {
    let (stem, prefix) = match word.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (word, false),
    };
    let (lexeme, cut) = lexeme(stem);
    // A cut stem names one lexeme exactly (a longer word is cut at the same place).
    let star = if prefix && !cut { "*" } else { "" };
    let label = match weight {
        Weight::Any => "",
        Weight::Title => "A",
        Weight::Description => "B",
    };
    let tail = if star.is_empty() && label.is_empty() {
        String::new()
    } else {
        format!(":{star}{label}")
    };
    (format!("'{lexeme}'{tail}"), cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::search_words;

    #[test]
    fn title_words_score_two_and_description_words_one() {
        let words = search_words("oak tab*");
        assert_eq!(relevance("Oak Table", "solid oak", &words), 2 + 2 + 1);
        assert_eq!(relevance("Chair", "goes with an oak table", &words), 2);
        assert_eq!(relevance("Comfortable chair", "", &words), 0);
    }

    #[test]
    fn fts5_queries_quote_words_and_star_prefixes() {
        assert_eq!(
            fts5_query(&search_words("Café tab* 42")),
            "\"café\" AND \"tab\"* AND \"42\""
        );
    }

    #[test]
    fn tsvectors_hold_each_word_once_with_where_it_is() {
        assert_eq!(
            tsvector("Oak e-Bike", "Oak, ÉCRAN", "oak e-bike oak, écran bikes"),
            "'bike':1A,3 'bikes':3 'e':1A,3 'oak':1A,2B,3 'écran':2B,3"
        );
    }

    #[test]
    fn tsqueries_star_prefixes_and_label_weights() {
        assert_eq!(tsquery("oak", Weight::Any), ("'oak'".into(), false));
        assert_eq!(tsquery("tab*", Weight::Title), ("'tab':*A".into(), false));
        assert_eq!(
            tsquery("tab", Weight::Description),
            ("'tab':B".into(), false)
        );
    }

    #[test]
    fn words_past_the_lexeme_limit_are_cut_alike_in_text_and_query() {
        let long = "é".repeat(1500);
        let cut = format!("{}*", "é".repeat(1000));
        assert_eq!(tsvector("", &long, &long), format!("'{cut}':2B,3"));
        assert_eq!(tsquery(&long, Weight::Any), (format!("'{cut}'"), true));
        assert_eq!(
            tsquery(&format!("{long}*"), Weight::Any),
            (format!("'{cut}'"), true)
        );
        let short = "é".repeat(10);
        assert_eq!(
            tsquery(&format!("{short}*"), Weight::Any),
            (format!("'{short}':*"), false)
        );
    }
}
