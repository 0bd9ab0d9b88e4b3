//! Decoding helpers shared by both backends: JSON columns and the text enums of the schema, with a
//! `Corrupt` error (never a panic) when stored data does not parse.

use crate::StoreError;

pub fn json<T: serde::de::DeserializeOwned>(col: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

pub fn parsed<T>(col: &str, s: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(s).ok_or_else(|| StoreError::Corrupt(format!("column {col}: unknown value '{s}'")))
}

/// Lower-cased text the listing search matches words against.
pub fn search_text(title: &str, description: &str, category: &str) -> String {
    format!("{title} {description} {category}").to_lowercase()
}

/// A word character of listing search: an ASCII letter or digit, or any non-ASCII character
/// (accented letters, other scripts). Every other ASCII character separates words. The same
/// rule on every store: SQLite and the shelves call [`has_word`], PostgreSQL translates the
/// separators to spaces (see `dialect::postgres::KEYWORD_MATCH`).
pub fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii()
}

/// At most this many words of a query are matched.
pub const MAX_SEARCH_WORDS: usize = 16;

/// A query's search words: its runs of word characters, lower-cased, the first
/// [`MAX_SEARCH_WORDS`]. A run written with a `*` right after it (`tab*`) matches the beginning
/// of a word and keeps its `*`; every other run matches whole words only.
pub fn search_words(q: &str) -> Vec<String> {
    let q = q.to_lowercase();
    let mut words = Vec::new();
    let mut word = String::new();
    for c in q.chars().chain(std::iter::once(' ')) {
        if is_word_char(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            if c == '*' {
                word.push('*');
            }
            words.push(std::mem::take(&mut word));
        }
    }
    words.truncate(MAX_SEARCH_WORDS);
    words
}

/// Whether lower-cased `text` has `word` (one of [`search_words`]) as a whole word, or as the
/// beginning of a word when `word` ends in `*`.
pub fn has_word(text: &str, word: &str) -> bool {
    let (stem, prefix) = match word.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (word, false),
    };
    has_word_by(text, &memchr::memmem::Finder::new(stem.as_bytes()), prefix)
}

/// [`has_word`] with the word's searcher built once by the caller (`finder` finds the word
/// without its `*`; `prefix` when it had one): a search tries one word on many texts.
pub fn has_word_by(text: &str, finder: &memchr::memmem::Finder<'_>, prefix: bool) -> bool {
    let len = finder.needle().len();
    if len == 0 {
        return true;
    }
    // The stem starts and ends with whole characters, so every match lies on character boundaries.
    finder.find_iter(text.as_bytes()).any(|start| {
        let end = start + len;
        let starts_word = !text[..start].chars().next_back().is_some_and(is_word_char);
        let ends_word = prefix || !text[end..].chars().next().is_some_and(is_word_char);
        starts_word && ends_word
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_are_runs_of_word_characters_with_an_optional_star() {
        assert_eq!(
            search_words("  Red  e-BIKE, tab* 100% _ed"),
            ["red", "e", "bike", "tab*", "100", "ed"]
        );
        assert_eq!(search_words("café*"), ["café*"]);
        assert!(search_words("*** -- %").is_empty());
        assert_eq!(search_words(&"w ".repeat(40)).len(), MAX_SEARCH_WORDS);
    }

    #[test]
    fn whole_words_match_and_words_inside_words_do_not() {
        assert!(has_word("a comfortable table", "table"));
        assert!(!has_word("comfortable", "table"));
        assert!(!has_word("fruitvale", "tv"));
        assert!(has_word("fruitvale, tv!", "tv"));
        assert!(has_word("e-bike,", "bike"));
        assert!(!has_word("motorbike bikes", "bike"));
        assert!(has_word("café crème", "café"));
        assert!(!has_word("cafés", "café"));
    }

    #[test]
    fn a_starred_word_matches_the_beginning_of_words() {
        assert!(has_word("tables", "tab*"));
        assert!(has_word("tab", "tab*"));
        assert!(!has_word("comfortable", "tab*"));
        assert!(has_word("comfortable table", "tab*"));
    }
}
