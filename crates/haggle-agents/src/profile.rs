//! The profile: what a principal wants to sell and buy, at what prices, and how its agent should
//! bargain (spec: agents.md, Profile). Versioned, read from TOML or JSON, validated with errors
//! that name the field.

use serde::{Deserialize, Serialize};

pub const PROFILE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Format version; currently 1.
    #[serde(default = "default_version")]
    pub version: u32,
    pub name: String,
    /// Budget in minor units.
    pub budget: i64,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub sell: Vec<SellItem>,
    #[serde(default)]
    pub want: Vec<Want>,
    /// Item types the principal already owns (so the agent does not buy a duplicate).
    #[serde(default)]
    pub owns: Vec<String>,
    #[serde(default)]
    pub style: Style,
    #[serde(default)]
    pub autonomy: Autonomy,
}

fn default_version() -> u32 {
    PROFILE_VERSION
}

fn default_currency() -> String {
    "USD".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellItem {
    /// Stable across runs, so the same item can be compared between runs.
    pub item_id: String,
    /// The kind of thing (e.g. "road bike"), shared by items a want can match.
    pub item_type: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub condition: String,
    pub asking_price: i64,
    /// Lowest acceptable price: private, never sent to the market.
    pub floor_price: i64,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// What the listing claims about the item (condition, working, included parts, details).
    #[serde(
        default,
        skip_serializing_if = "haggle_api::haggle_core::Claims::is_empty"
    )]
    pub claims: haggle_api::haggle_core::Claims,
    /// A simulated item's ground truth (from the scenario): sent with the listing to a simulated
    /// market, which alone reads it, at inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_state: Option<haggle_api::haggle_core::Claims>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub want_id: String,
    /// The kind of thing wanted (matches `SellItem::item_type`).
    pub item_type: String,
    pub description: String,
    pub category: String,
    /// Words a matching listing's title or description contains (used to search).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Most the principal would pay: private; this is the buyer's valuation.
    pub max_price: i64,
    /// 1 = most wanted.
    #[serde(default = "one")]
    pub priority: u32,
    #[serde(default = "one")]
    pub quantity: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Style {
    /// Free text: "polite", "hard bargainer", "speaks like an exasperated cowboy".
    #[serde(default)]
    pub persona: String,
    /// How many of the agent's turns it keeps negotiating one thread before walking away.
    #[serde(default = "default_patience")]
    pub patience: u32,
    /// Whether the agent may reveal its limits (floor, maximum, budget).
    #[serde(default)]
    pub may_reveal_limits: bool,
}

fn default_patience() -> u32 {
    12
}

impl Default for Style {
    fn default() -> Style {
        Style {
            persona: String::new(),
            patience: default_patience(),
            may_reveal_limits: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autonomy {
    /// Deals above this need the principal's approval (becomes the mandate's threshold).
    #[serde(default)]
    pub approval_above: Option<i64>,
    /// Per-deal cap for the mandate (default: none).
    #[serde(default)]
    pub per_deal_cap: Option<i64>,
}

/// A profile that does not make sense, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProfileError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ProfileError {
    ProfileError {
        field: field.into(),
        message: message.into(),
    }
}

impl Profile {
    pub fn from_toml(text: &str) -> Result<Profile, ProfileError> {
        let p: Profile = toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("bytes {}..{}", s.start, s.end))
                .unwrap_or_else(|| "profile".into());
            err(field, e.message().to_string())
        })?;
        p.validate()?;
        Ok(p)
    }

    pub fn from_json(text: &str) -> Result<Profile, ProfileError> {
        let p: Profile = serde_json::from_str(text).map_err(|e| {
            err(
                format!("line {}, column {}", e.line(), e.column()),
                e.to_string(),
            )
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Checks every field that the types alone cannot.
    pub fn validate(&self) -> Result<(), ProfileError> {
        const MAX: i64 = 1_000_000_000_000;
        if self.version != PROFILE_VERSION {
            return Err(err(
                "version",
                format!(
                    "unsupported profile version {} (this Haggle reads {PROFILE_VERSION})",
                    self.version
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty"));
        }
        if !(0..=MAX).contains(&self.budget) {
            return Err(err("budget", "must be between 0 and 10^12 minor units"));
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, s) in self.sell.iter().enumerate() {
            let f = |name: &str| format!("sell[{i}].{name}");
            if s.item_id.trim().is_empty() || !ids.insert(s.item_id.clone()) {
                return Err(err(
                    f("item_id"),
                    format!("must be non-empty and unique, got '{}'", s.item_id),
                ));
            }
            if s.title.trim().is_empty() {
                return Err(err(f("title"), "must not be empty"));
            }
            if s.category.trim().is_empty() {
                return Err(err(f("category"), "must not be empty"));
            }
            if !(1..=MAX).contains(&s.floor_price) {
                return Err(err(f("floor_price"), "must be at least 1 minor unit"));
            }
            if s.asking_price < s.floor_price || s.asking_price > MAX {
                return Err(err(
                    f("asking_price"),
                    format!("must be at least the floor price ({})", s.floor_price),
                ));
            }
        }
        let mut want_ids = std::collections::BTreeSet::new();
        for (i, w) in self.want.iter().enumerate() {
            let f = |name: &str| format!("want[{i}].{name}");
            if w.want_id.trim().is_empty() || !want_ids.insert(w.want_id.clone()) {
                return Err(err(
                    f("want_id"),
                    format!("must be non-empty and unique, got '{}'", w.want_id),
                ));
            }
            if w.category.trim().is_empty() {
                return Err(err(f("category"), "must not be empty"));
            }
            if !(1..=MAX).contains(&w.max_price) {
                return Err(err(f("max_price"), "must be at least 1 minor unit"));
            }
            if w.quantity == 0 || w.quantity > 100 {
                return Err(err(f("quantity"), "must be 1 to 100"));
            }
        }
        Ok(())
    }
}
