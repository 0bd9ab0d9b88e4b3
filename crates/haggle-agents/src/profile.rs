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
    /// Shipped instead of handed over in person, the buyer paying this shipping price on top of
    /// the agreed price; absent = in person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_price: Option<i64>,
    /// A simulated shipment's ground truth (from the scenario: delivery time or lost), sent with
    /// a shipped listing to a simulated market, which alone reads it, when the seller ships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_transit: Option<haggle_api::haggle_core::shipping::Transit>,
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

impl Profile {
    /// The mandate its principal registers the agent with: the autonomy's buyer limits, and as
    /// seller side (spec: trust.md, Seller mandates) each item's floor as its lowest price (by
    /// the `item_id` its listings carry) and the lowest floor as the minimum of any sale (an
    /// offer on a wanted ad names no item). Refused below them, never routed to approval.
    pub fn mandate(&self) -> haggle_api::haggle_core::Mandate {
        haggle_api::haggle_core::Mandate {
            approval_above: self.autonomy.approval_above,
            per_deal_cap: self.autonomy.per_deal_cap,
            min_sale: self.sell.iter().map(|i| i.floor_price).min(),
            min_price_by_item: self
                .sell
                .iter()
                .map(|i| (i.item_id.clone(), i.floor_price))
                .collect(),
            ..Default::default()
        }
    }
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

    /// Cuts every text longer than the market takes to its limit (a scenario that asks for it,
    /// `truncate_long_text`): what was cut, one line per field, for the caller to warn about.
    pub fn truncate_long_texts(&mut self) -> Vec<String> {
        let mut cut = Vec::new();
        let mut trim = |field: String, text: &mut String, max: usize| {
            let n = text.chars().count();
            if n > max {
                *text = text.chars().take(max).collect();
                cut.push(format!("{field}: cut from {n} to {max} characters"));
            }
        };
        for (i, s) in self.sell.iter_mut().enumerate() {
            trim(format!("sell[{i}].title"), &mut s.title, MAX_TITLE);
            trim(
                format!("sell[{i}].description"),
                &mut s.description,
                MAX_TEXT,
            );
        }
        for (i, w) in self.want.iter_mut().enumerate() {
            trim(
                format!("want[{i}].description"),
                &mut w.description,
                MAX_TEXT,
            );
        }
        cut
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
            for (name, text, max) in s.texts() {
                check_length(&f(name), text, max)?;
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
            for (name, text, max) in w.texts() {
                check_length(&f(name), text, max)?;
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

use haggle_api::haggle_core::negotiation::{MAX_NAME, MAX_TEXT, MAX_TITLE};

/// The longest `item_type` a want may have: its wanted ad's title is `Wanted: <item_type>`.
const MAX_WANTED_TYPE: usize = MAX_TITLE - "Wanted: ".len();

impl SellItem {
    /// The texts the market will be sent for this item, with the market's limit on each.
    fn texts(&self) -> [(&'static str, &str, usize); 4] {
        [
            ("title", &self.title, MAX_TITLE),
            ("description", &self.description, MAX_TEXT),
            ("category", &self.category, MAX_NAME),
            ("condition", &self.condition, MAX_NAME),
        ]
    }
}

impl Want {
    /// The texts the market will be sent for this want, with the market's limit on each.
    fn texts(&self) -> [(&'static str, &str, usize); 3] {
        [
            ("item_type", &self.item_type, MAX_WANTED_TYPE),
            ("description", &self.description, MAX_TEXT),
            ("category", &self.category, MAX_NAME),
        ]
    }
}

/// A text the market would refuse as too long is refused here, naming the field, so an item is
/// never silently left unlisted.
fn check_length(field: &str, text: &str, max: usize) -> Result<(), ProfileError> {
    let n = text.chars().count();
    if n > max {
        return Err(err(
            field,
            format!(
                "is {n} characters long; the market takes at most {max} (a scenario may set truncate_long_text = true to cut it with a warning)"
            ),
        ));
    }
    Ok(())
}
