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

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
pub fn like_pattern(word: &str) -> String {
    let mut p = String::from("%");
    for c in word.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}
