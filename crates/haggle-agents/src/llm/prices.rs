//! What model calls cost: a price table per model in integer micro-dollars (µUSD) per million
//! tokens, so cost sums stay exact. Built-in defaults are public list prices at the time of
//! writing; a TOML file overrides or extends them (`--prices FILE`). A model on a local server
//! costs nothing; a model missing from the table has an unknown cost (tokens are still counted).

use super::Usage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// µUSD per million tokens of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: i64,
    pub output: i64,
    #[serde(default)]
    pub cache_read: i64,
    #[serde(default)]
    pub cache_write: i64,
}

impl Price {
    /// The cost of `u` in µUSD, rounded up.
    pub fn cost(&self, u: &Usage) -> i64 {
        let t = |n: u64| i128::from(n);
        let total = t(u.input_tokens) * i128::from(self.input)
            + t(u.output_tokens) * i128::from(self.output)
            + t(u.cache_read_tokens) * i128::from(self.cache_read)
            + t(u.cache_write_tokens) * i128::from(self.cache_write);
        i64::try_from((total + 999_999) / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// Prices by model name; a name matches its longest listed prefix (`claude-sonnet-4-5-20250929`
/// takes the price of `claude-sonnet-4-5`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTable {
    pub models: BTreeMap<String, Price>,
    /// Where the prices come from and when they were read (`built-in list prices as of …`, then
    /// each `--prices` file with its own `as_of`), so a run records which table priced it.
    #[serde(default)]
    pub source: String,
}

/// When the built-in list prices were copied from the providers' price pages (not refreshed
/// since: a `--prices` file with its own `as_of` overrides them).
pub const BUILT_IN_AS_OF: &str = "2025-11";

/// A `--prices` file: its models and the date its prices were read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, Price>,
}

const fn usd(input: i64, output: i64, cache_read: i64, cache_write: i64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// List prices (USD per million tokens: input / output / cache read / cache write), as µUSD.
const DEFAULTS: &[(&str, Price)] = &[
    (
        "claude-opus-4",
        usd(15_000_000, 75_000_000, 1_500_000, 18_750_000),
    ),
    (
        "claude-opus-4-5",
        usd(5_000_000, 25_000_000, 500_000, 6_250_000),
    ),
    (
        "claude-sonnet-4",
        usd(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-3-7-sonnet",
        usd(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-haiku-4-5",
        usd(1_000_000, 5_000_000, 100_000, 1_250_000),
    ),
    (
        "claude-3-5-haiku",
        usd(800_000, 4_000_000, 80_000, 1_000_000),
    ),
    ("gpt-4o", usd(2_500_000, 10_000_000, 1_250_000, 0)),
    ("gpt-4o-mini", usd(150_000, 600_000, 75_000, 0)),
    ("gpt-4.1", usd(2_000_000, 8_000_000, 500_000, 0)),
    ("gpt-4.1-mini", usd(400_000, 1_600_000, 100_000, 0)),
    ("gpt-4.1-nano", usd(100_000, 400_000, 25_000, 0)),
];

impl Default for PriceTable {
    fn default() -> PriceTable {
        PriceTable {
            models: DEFAULTS.iter().map(|(k, p)| (k.to_string(), *p)).collect(),
            source: format!("built-in list prices as of {BUILT_IN_AS_OF}"),
        }
    }
}

/// A price file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("price table: {0}")]
pub struct PriceError(pub String);

impl PriceTable {
    /// The defaults, overridden and extended by a TOML table (`as_of = "YYYY-MM-DD"`, optional,
    /// then `[models."NAME"] input = µUSD, output = µUSD, cache_read = µUSD, cache_write = µUSD`).
    pub fn with_toml(self, text: &str) -> Result<PriceTable, PriceError> {
        self.with_file(text, "a price file")
    }

    /// As [`PriceTable::with_toml`], naming the file in the table's source.
    pub fn with_file(mut self, text: &str, name: &str) -> Result<PriceTable, PriceError> {
        let extra: PriceFile = toml::from_str(text).map_err(|e| PriceError(e.to_string()))?;
        let as_of = extra.as_of.as_deref().unwrap_or("an undated file");
        self.source = format!("{} + {name} (as of {as_of})", self.source);
        for (name, p) in extra.models {
            if p.input < 0 || p.output < 0 || p.cache_read < 0 || p.cache_write < 0 {
                return Err(PriceError(format!(
                    "models.\"{name}\": prices must not be negative"
                )));
            }
            self.models.insert(name, p);
        }
        Ok(self)
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.models
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact_in_micro_dollars_and_rounds_up() {
        let p = PriceTable::default()
            .price("claude-sonnet-4-5-20250929")
            .unwrap();
        let u = Usage {
            input_tokens: 1_000,
            output_tokens: 200,
            cache_read_tokens: 10_000,
            cache_write_tokens: 2_000,
        };
        // 1000·3 + 200·15 + 10000·0.3 + 2000·3.75 = 3000 + 3000 + 3000 + 7500 µUSD.
        assert_eq!(p.cost(&u), 16_500);
        let one = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(
            PriceTable::default()
                .price("gpt-4o-mini")
                .unwrap()
                .cost(&one),
            1
        );
    }

    #[test]
    fn the_longest_prefix_wins_and_files_override() {
        let t = PriceTable::default();
        assert_eq!(t.price("gpt-4o-mini-2024").unwrap().input, 150_000);
        assert_eq!(t.price("gpt-4o-2024-08-06").unwrap().input, 2_500_000);
        assert_eq!(t.price("claude-opus-4-5-x").unwrap().input, 5_000_000);
        assert_eq!(t.price("claude-opus-4-1").unwrap().input, 15_000_000);
        assert!(t.price("gemma-3-270m").is_none());
        let t = t
            .with_toml("[models.\"gemma-3\"]\ninput = 1\noutput = 2\n")
            .unwrap();
        assert_eq!(t.price("gemma-3-270m").unwrap().output, 2);
        assert!(
            PriceTable::default()
                .with_toml("[models.x]\ninput = -1\noutput = 0\n")
                .is_err()
        );
    }
}
