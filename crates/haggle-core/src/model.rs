//! The market's objects as plain data: markets and their rules, participants and mandates, listings,
//! threads, messages, offers and deals. State enums carry the spec's state names verbatim.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Money in the market currency's minor units (cents). Never a float.
pub type Money = i64;
/// Milliseconds since the Unix epoch, read from the market's clock (real or simulated).
pub type Timestamp = i64;

pub type MarketId = i64;
/// Ids of objects inside a market are allocated from one per-market counter, so a replayed
/// simulation allocates the same ids.
pub type ParticipantId = i64;
pub type ListingId = i64;
pub type ThreadId = i64;
pub type MessageId = i64;
pub type OfferId = i64;
pub type DealId = i64;

/// Upper bound on any single price or budget: keeps every sum of amounts far from `i64` overflow.
pub const MAX_AMOUNT: Money = 1_000_000_000_000;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s),* } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$variant),)* _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// Real time, or a simulated clock that only a harness (operator) advances.
    ClockMode { Real => "real", Simulated => "simulated" }
);
string_enum!(
    /// `sell`: the owner sells. `buy`: a wanted ad, the owner buys.
    Side { Sell => "sell", Buy => "buy" }
);
string_enum!(
    /// `held`: waiting for an operator's review under the market policy, visible to its owner and
    /// operators only; `removed`: taken down by an operator (spec, trust.md: Market policy).
    ListingStatus { Active => "active", Sold => "sold", Withdrawn => "withdrawn", Expired => "expired", Held => "held", Removed => "removed" }
);
string_enum!(
    /// Who acted for a participant: its agent (through an agent token), or its principal trading
    /// by hand in the web UI (through its principal token). Events record it beside the actor.
    ActedBy { Agent => "agent", Principal => "principal" }
);

// `string_enum!` cannot mark a default variant.
#[allow(clippy::derivable_impls)]
impl Default for ActedBy {
    fn default() -> ActedBy {
        ActedBy::Agent
    }
}

impl ActedBy {
    /// The agent acted (the default, omitted from events so those stored before it chain unchanged).
    pub fn is_agent(&self) -> bool {
        *self == ActedBy::Agent
    }
}

string_enum!(
    /// How a participant trades (issue 19), set by its principal: its `agent` trades alone; its
    /// agent `propose`s each binding step (an offer, a counter, an acceptance) and the principal
    /// confirms or declines it in the web UI; or the `principal` trades by hand, its agent paused.
    TradingMode { Agent => "agent", Propose => "propose", Principal => "principal" }
);

// `string_enum!` cannot mark a default variant.
#[allow(clippy::derivable_impls)]
impl Default for TradingMode {
    fn default() -> TradingMode {
        TradingMode::Agent
    }
}

impl TradingMode {
    /// The agent trades alone (the default, omitted from mandates so older ones hash unchanged).
    pub fn is_agent(&self) -> bool {
        *self == TradingMode::Agent
    }
}

string_enum!(ThreadStatus { Open => "open", Agreed => "agreed", Broken => "broken", TimedOut => "timed_out", Void => "void" });
string_enum!(OfferState {
    Live => "live", Accepted => "accepted", Rejected => "rejected", Withdrawn => "withdrawn",
    Countered => "countered", Superseded => "superseded", Expired => "expired", Void => "void",
});
string_enum!(
    /// The deal lifecycle of the spec; states past `agreed` are driven by the deal-lifecycle rules.
    DealStatus {
        AwaitingApproval => "awaiting_approval", Agreed => "agreed", HandedOver => "handed_over",
        Completed => "completed", Cancelled => "cancelled", Declined => "declined", Disputed => "disputed",
        Refunded => "refunded", PartiallyRefunded => "partially_refunded",
    }
);

impl DealStatus {
    /// States in which the deal's escrow hold is still open (spec, Ledger invariants).
    pub fn hold_is_open(self) -> bool {
        matches!(
            self,
            DealStatus::AwaitingApproval
                | DealStatus::Agreed
                | DealStatus::HandedOver
                | DealStatus::Disputed
        )
    }

    /// States in which the deal counts as bought and sold, against the buyer's spend cap: all
    /// but the undone ones (cancelled, declined, refunded).
    pub fn is_spent(self) -> bool {
        !matches!(
            self,
            DealStatus::Cancelled | DealStatus::Declined | DealStatus::Refunded
        )
    }
}

/// The per-market rules of the spec. Durations are in milliseconds of the market clock.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketRules {
    /// Lifetime of an offer unless the offer names a shorter one.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub offer_ttl_ms: i64,
    /// Cap on offers (both sides together) in one thread; `None` = no cap.
    pub max_offers_per_thread: Option<u32>,
    /// Time limit of a thread from its opening; `None` = no limit.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub thread_time_limit_ms: Option<i64>,
    /// Private (default): a thread is visible to its two parties only.
    pub public_negotiations: bool,
    /// Observers may read private threads (a research market usually allows it).
    pub observers_see_private: bool,
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub confirmation_window_ms: i64,
    pub seller_may_cancel: bool,
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub approval_window_ms: i64,
    /// Research option: after offering, a party may only wait, message or withdraw.
    pub strict_alternation: bool,
    /// Research option: a seller may accept only this long after the listing's first offer.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 315_360_000_000_i64)
    )]
    pub collection_window_ms: Option<i64>,
    /// Ratings stay hidden until both sides rated or this long after the deal finished.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub rating_window_ms: i64,
    /// A participant who may resolve disputes it is not party to (operators always may).
    pub arbiter: Option<ParticipantId>,
    /// When the market closes, on its own clock (an extension of the spec); `None` = open-ended.
    /// From then on nothing new is traded (`market_closed`) while agreed deals still settle.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 0, maximum = 253_402_300_799_999_i64))]
    pub closes_at: Option<Timestamp>,
    /// What may be listed and how fast (spec, trust.md: Market policy). Omitted from JSON while
    /// empty, so rules stored and hashed before it existed read and chain unchanged.
    #[serde(skip_serializing_if = "crate::policy::MarketPolicy::is_empty")]
    pub policy: crate::policy::MarketPolicy,
    /// The payment provider behind the escrow (spec, trust.md: Payments); `None` = the ledger
    /// alone, as before. Omitted from JSON while `None`, so stored and hashed rules are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payments: Option<crate::payment::PaymentsConfig>,
    /// How long a seller of a shipped deal has from the agreement to ship it (spec trust.md,
    /// Shipping); `None` = `shipping::DEFAULT_SHIPPING_WINDOW_MS`. Omitted from JSON while
    /// `None`, so stored and hashed rules are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 315_360_000_000_i64)
    )]
    pub shipping_window_ms: Option<i64>,
}

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl Default for MarketRules {
    fn default() -> Self {
        MarketRules {
            offer_ttl_ms: DAY_MS,
            max_offers_per_thread: Some(20),
            thread_time_limit_ms: None,
            public_negotiations: false,
            observers_see_private: true,
            confirmation_window_ms: 3 * DAY_MS,
            seller_may_cancel: true,
            approval_window_ms: DAY_MS,
            strict_alternation: false,
            collection_window_ms: None,
            rating_window_ms: 7 * DAY_MS,
            arbiter: None,
            closes_at: None,
            policy: Default::default(),
            payments: None,
            shipping_window_ms: None,
        }
    }
}

impl MarketRules {
    /// How long a seller has to ship after the agreement.
    pub fn shipping_window(&self) -> i64 {
        self.shipping_window_ms
            .unwrap_or(crate::shipping::DEFAULT_SHIPPING_WINDOW_MS)
    }

    pub fn validate(&self) -> crate::error::Result<()> {
        use crate::error::DomainError as E;
        let positive = [
            ("offer_ttl_ms", Some(self.offer_ttl_ms)),
            ("confirmation_window_ms", Some(self.confirmation_window_ms)),
            ("approval_window_ms", Some(self.approval_window_ms)),
            ("thread_time_limit_ms", self.thread_time_limit_ms),
            ("rating_window_ms", Some(self.rating_window_ms)),
            ("shipping_window_ms", self.shipping_window_ms),
        ];
        for (name, v) in positive {
            if let Some(v) = v
                && !(1..=MAX_DURATION_MS).contains(&v)
            {
                return Err(E::invalid_request(format!(
                    "rules.{name} must be between 1 and {MAX_DURATION_MS} ms (10 years), got {v}"
                )));
            }
        }
        if let Some(v) = self.collection_window_ms
            && !(0..=MAX_DURATION_MS).contains(&v)
        {
            return Err(E::invalid_request(format!(
                "rules.collection_window_ms must be between 0 and {MAX_DURATION_MS} ms (10 years), got {v}"
            )));
        }
        if self.max_offers_per_thread == Some(0) {
            return Err(E::invalid_request(
                "rules.max_offers_per_thread must be at least 1",
            ));
        }
        check_closing_time("rules.closes_at", self.closes_at)?;
        self.policy.validate()?;
        Ok(())
    }

    /// The rules of a market being created with its clock reading `now`: a closing time must
    /// lie ahead, or the market would be born closed.
    pub fn validate_new(&self, now: Timestamp) -> crate::error::Result<()> {
        self.validate()?;
        if let Some(at) = self.closes_at
            && at <= now
        {
            return Err(crate::error::DomainError::invalid_request(format!(
                "rules.closes_at ({}) must be after the market's clock at creation ({})",
                utc(at),
                utc(now)
            )));
        }
        Ok(())
    }
}

/// Latest instant accepted (9999-12-31), so time arithmetic never overflows.
pub const MAX_TIMESTAMP: Timestamp = 253_402_300_799_999;

/// Longest duration a rule may set (ten years of 365 days; the OpenAPI schemas state the same
/// `maximum`): with instants bounded by [`MAX_TIMESTAMP`], an instant plus a duration stays far
/// inside `i64`.
pub const MAX_DURATION_MS: i64 = 3650 * DAY_MS;

/// `at` moved on by `by` ms: saturating, though the bounds above keep it from ever saturating
/// (an overflow must never wrap a deadline into the past).
pub fn later(at: Timestamp, by: i64) -> Timestamp {
    at.saturating_add(by)
}

/// An instant must be plausible (ms since the epoch, up to year 9999).
pub fn check_closing_time(field: &str, at: Option<Timestamp>) -> crate::error::Result<()> {
    if let Some(at) = at
        && !(0..=MAX_TIMESTAMP).contains(&at)
    {
        return Err(crate::error::DomainError::invalid_request(format!(
            "{field} must be between 0 and {MAX_TIMESTAMP} ms since the epoch, got {at}"
        )));
    }
    Ok(())
}

/// `2024-05-01 14:03 UTC` from ms since the epoch: how messages and pages state a time.
pub fn utc(ms: Timestamp) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Reads `2026-01-12 09:00` (or `2026-01-12T09:00`, optionally with seconds and a trailing
/// `UTC` or `Z`) as a UTC time: what `utc` writes and a `datetime-local` field sends.
pub fn parse_utc(input: &str) -> Option<Timestamp> {
    let s = input.trim();
    let s = s
        .strip_suffix("UTC")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s)
        .trim();
    let (date, clock) = s.split_once(['T', ' '])?;
    let num = |t: &str, len: usize| {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<i64>().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let mut c = clock.trim().split(':');
    let (h, mi) = (num(c.next()?, 2)?, num(c.next()?, 2)?);
    let sec = match c.next() {
        Some(x) => num(x, 2)?,
        None => 0,
    };
    if d.next().is_some() || c.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&mo) || da < 1 || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, da as u32);
    // Reject 2026-02-31 and the like: the date must come back as written.
    if civil_from_days(days) != (y, mo as u32, da as u32) {
        return None;
    }
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}

/// Reads a duration such as `7d`, `12h`, `30m`, `90s` or `2d4h` as milliseconds.
pub fn parse_duration(input: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for ch in input.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            'd' => DAY_MS,
            'h' => HOUR_MS,
            'm' => 60_000,
            's' => 1000,
            _ => return None,
        };
        let n: i64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// A civil date to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    pub id: MarketId,
    pub name: String,
    /// ISO 4217 code; amounts are in its minor units.
    pub currency: String,
    pub clock_mode: ClockMode,
    /// The simulated clock's reading (only meaningful in simulated mode).
    pub sim_now: Timestamp,
    pub rules: MarketRules,
    pub created_at: Timestamp,
}

/// What an agent may do with its principal's money. Enforced on every action.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mandate {
    /// Cap on everything the agent spends (open and finished deals plus live offers).
    pub spend_cap: Option<Money>,
    pub per_deal_cap: Option<Money>,
    /// If set, the agent may buy only in these categories.
    pub categories: Option<Vec<String>>,
    pub expires_at: Option<Timestamp>,
    /// Deals above this price wait for the principal's approval.
    pub approval_above: Option<Money>,
    /// Frozen by an operator: the agent can read but not act, and only an operator lifts it.
    pub frozen: bool,
    /// Paused by its own principal: the agent can read but not act until the principal resumes
    /// it. Separate from `frozen` (spec: trust.md). Omitted from JSON while false, so mandates
    /// stored and hashed before it existed read and chain unchanged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Seller side (spec: trust.md, Seller mandates), private to the principal and operators:
    /// the lowest price of any sale, whatever the listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_sale: Option<Money>,
    /// The lowest price of one of the participant's own sell listings, by listing id (set by the
    /// principal once the listing exists).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub min_price_by_listing: BTreeMap<ListingId, Money>,
    /// The lowest price of a profile item, by the `item_id` attribute its listings carry (set
    /// from the profile's floor prices at registration, before any listing exists).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub min_price_by_item: BTreeMap<String, Money>,
    /// What the market does with a price below a seller minimum.
    #[serde(skip_serializing_if = "BelowMin::is_refuse")]
    pub below_min: BelowMin,
    /// How the participant trades; changed only by its principal's `trading_mode` command
    /// (a mandate set through the API keeps the current one).
    #[serde(skip_serializing_if = "TradingMode::is_agent")]
    pub trading_mode: TradingMode,
    /// Set only in the agent's view of its mandate ([`Mandate::agent_view`]): a seller minimum
    /// exists, its value withheld. Ignored when a mandate is set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub has_minimum: bool,
}

string_enum!(
    /// A seller mandate's answer to a price below its minimum: `refuse` it
    /// (`below_seller_minimum`), or `ask`: the sale waits for the seller's principal's approval.
    BelowMin { Refuse => "refuse", Ask => "ask" }
);

// `string_enum!` cannot mark a default variant.
#[allow(clippy::derivable_impls)]
impl Default for BelowMin {
    fn default() -> BelowMin {
        BelowMin::Refuse
    }
}

impl BelowMin {
    fn is_refuse(&self) -> bool {
        *self == BelowMin::Refuse
    }
}

/// At most this many per-listing or per-item minimums in one mandate.
pub const MAX_SELLER_MINIMUMS: usize = 1000;

/// Who changes a mandate: its participant's principal, or an operator. Only an operator freezes
/// an agent or lifts a freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MandateAuthor {
    Principal,
    Operator,
}

impl Mandate {
    pub fn validate(&self) -> crate::error::Result<()> {
        check_closing_time("mandate.expires_at", self.expires_at)?;
        for (name, v) in [
            ("spend_cap", self.spend_cap),
            ("per_deal_cap", self.per_deal_cap),
            ("approval_above", self.approval_above),
        ] {
            if let Some(v) = v
                && !(0..=MAX_AMOUNT).contains(&v)
            {
                return Err(crate::error::DomainError::invalid_request(format!(
                    "mandate.{name} must be between 0 and {MAX_AMOUNT}"
                )));
            }
        }
        self.validate_seller_side()
    }

    fn validate_seller_side(&self) -> crate::error::Result<()> {
        use crate::error::DomainError as E;
        if let Some(v) = self.min_sale
            && !(0..=MAX_AMOUNT).contains(&v)
        {
            return Err(E::invalid_request(format!(
                "mandate.min_sale must be between 0 and {MAX_AMOUNT}"
            )));
        }
        for (name, len) in [
            ("min_price_by_listing", self.min_price_by_listing.len()),
            ("min_price_by_item", self.min_price_by_item.len()),
        ] {
            if len > MAX_SELLER_MINIMUMS {
                return Err(E::invalid_request(format!(
                    "mandate.{name} holds at most {MAX_SELLER_MINIMUMS} entries, got {len}"
                )));
            }
        }
        for (l, v) in &self.min_price_by_listing {
            if !(0..=MAX_AMOUNT).contains(v) {
                return Err(E::invalid_request(format!(
                    "mandate.min_price_by_listing[{l}] must be between 0 and {MAX_AMOUNT}"
                )));
            }
        }
        for (item, v) in &self.min_price_by_item {
            crate::negotiation::check_text("mandate.min_price_by_item key", item, 100, true)?;
            if !(0..=MAX_AMOUNT).contains(v) {
                return Err(E::invalid_request(format!(
                    "mandate.min_price_by_item[{item}] must be between 0 and {MAX_AMOUNT}"
                )));
            }
        }
        Ok(())
    }

    /// Whether the seller side sets any minimum.
    pub fn has_seller_minimum(&self) -> bool {
        self.min_sale.is_some()
            || !self.min_price_by_listing.is_empty()
            || !self.min_price_by_item.is_empty()
    }

    /// The lowest price this participant, as the seller `seller`, may sell `listing` at: the
    /// highest of `min_sale` and, on its own sell listing, the listing's and its item's minimum.
    pub fn seller_minimum(&self, seller: ParticipantId, listing: &Listing) -> Option<Money> {
        let own = listing.side == Side::Sell && listing.owner == seller;
        let by_listing = own
            .then(|| self.min_price_by_listing.get(&listing.id).copied())
            .flatten();
        let by_item = own
            .then(|| {
                listing
                    .attributes
                    .get("item_id")
                    .and_then(|i| self.min_price_by_item.get(i.trim()).copied())
            })
            .flatten();
        [self.min_sale, by_listing, by_item]
            .into_iter()
            .flatten()
            .max()
    }

    /// What the agent may see: the seller side's values are withheld, `has_minimum` says
    /// whether there are any (the principal's and operators' views show the values).
    pub fn agent_view(&self) -> Mandate {
        Mandate {
            has_minimum: self.has_seller_minimum(),
            min_sale: None,
            min_price_by_listing: BTreeMap::new(),
            min_price_by_item: BTreeMap::new(),
            ..self.clone()
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub id: ParticipantId,
    pub market_id: MarketId,
    pub name: String,
    pub mandate: Mandate,
    pub created_at: Timestamp,
    /// Set while an operator has suspended the participant: its agent tokens are refused, and it
    /// can do nothing but settle the deals it had agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspension: Option<Suspension>,
}

/// Why and when an operator suspended a participant (shown to it and its principal).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: String,
    pub at: Timestamp,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub id: ListingId,
    pub market_id: MarketId,
    pub owner: ParticipantId,
    pub side: Side,
    pub title: String,
    pub description: String,
    pub category: String,
    pub condition: String,
    /// Asking price (sell) or budget (buy).
    pub price: Money,
    pub attributes: BTreeMap<String, String>,
    pub status: ListingStatus,
    pub created_at: Timestamp,
    pub first_offer_at: Option<Timestamp>,
    /// The seller's claims about the item (absent on old listings and wanted ads).
    #[serde(default, skip_serializing_if = "crate::claims::Claims::is_empty")]
    pub claims: crate::claims::Claims,
    /// A simulated item's ground truth: never serialized, so no view, event or agent sees it; the
    /// store keeps it in its own column and the core reads it only at inspection.
    #[serde(skip)]
    pub true_state: Option<crate::claims::Claims>,
    /// How the goods change hands: in person (default, omitted) or shipped at a price.
    #[serde(
        default,
        skip_serializing_if = "crate::shipping::Fulfilment::is_in_person"
    )]
    pub fulfilment: crate::shipping::Fulfilment,
    /// A simulated shipment's ground truth, like `true_state`: never serialized; the store keeps
    /// it in its own column and the core reads it only when the seller ships.
    #[serde(skip)]
    pub true_transit: Option<crate::shipping::Transit>,
}

impl Listing {
    /// The buyer in a thread between this listing's owner and `counterparty`.
    pub fn buyer_with(&self, counterparty: ParticipantId) -> ParticipantId {
        match self.side {
            Side::Sell => counterparty,
            Side::Buy => self.owner,
        }
    }
    pub fn seller_with(&self, counterparty: ParticipantId) -> ParticipantId {
        match self.side {
            Side::Sell => self.owner,
            Side::Buy => counterparty,
        }
    }
    pub fn snapshot(&self) -> ListingSnapshot {
        ListingSnapshot {
            side: self.side,
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.clone(),
            condition: self.condition.clone(),
            price: self.price,
            attributes: self.attributes.clone(),
            claims: self.claims.clone(),
            fulfilment: self.fulfilment,
        }
    }
}

/// What was bought, frozen at acceptance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingSnapshot {
    pub side: Side,
    pub title: String,
    pub description: String,
    pub category: String,
    pub condition: String,
    pub price: Money,
    pub attributes: BTreeMap<String, String>,
    /// The seller's claims as they stood at acceptance.
    #[serde(default, skip_serializing_if = "crate::claims::Claims::is_empty")]
    pub claims: crate::claims::Claims,
    /// How the goods change hands, as the listing stated it at acceptance.
    #[serde(
        default,
        skip_serializing_if = "crate::shipping::Fulfilment::is_in_person"
    )]
    pub fulfilment: crate::shipping::Fulfilment,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub id: ThreadId,
    pub market_id: MarketId,
    pub listing_id: ListingId,
    /// The listing's owner.
    pub owner: ParticipantId,
    pub counterparty: ParticipantId,
    pub status: ThreadStatus,
    /// Offers made in this thread by both sides.
    pub offers_made: u32,
    pub last_offer_by: Option<ParticipantId>,
    pub created_at: Timestamp,
    pub deadline: Option<Timestamp>,
}

impl Thread {
    pub fn is_party(&self, p: ParticipantId) -> bool {
        self.owner == p || self.counterparty == p
    }
    pub fn other_party(&self, p: ParticipantId) -> ParticipantId {
        if p == self.owner {
            self.counterparty
        } else {
            self.owner
        }
    }
    /// The elapsed fraction `t` in [0, 1] of the spec (rule 6), in parts per million so it stays
    /// an integer: the larger of offers used / cap and elapsed / time limit.
    pub fn elapsed_ppm(&self, rules: &MarketRules, now: Timestamp) -> u32 {
        let by_offers = rules
            .max_offers_per_thread
            .map(|cap| (self.offers_made as u64 * 1_000_000 / cap as u64).min(1_000_000))
            .unwrap_or(0);
        let by_time = match (rules.thread_time_limit_ms, self.deadline) {
            (Some(limit), Some(_)) => {
                let elapsed = (now - self.created_at).clamp(0, limit) as u64;
                elapsed * 1_000_000 / limit as u64
            }
            _ => 0,
        };
        by_offers.max(by_time) as u32
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub market_id: MarketId,
    pub thread_id: ThreadId,
    pub author: ParticipantId,
    pub body: String,
    pub created_at: Timestamp,
}

string_enum!(
    /// Why an offer became `void`.
    VoidReason { ListingSold => "listing_sold", ListingWithdrawn => "listing_withdrawn", WalkedAway => "walked_away", ThreadTimedOut => "thread_timed_out", MandateChanged => "mandate_changed", ListingRemoved => "listing_removed", ParticipantSuspended => "participant_suspended" }
);

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub market_id: MarketId,
    pub thread_id: ThreadId,
    pub listing_id: ListingId,
    pub proposer: ParticipantId,
    pub buyer: ParticipantId,
    pub seller: ParticipantId,
    pub price: Money,
    pub state: OfferState,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Offer {
    /// A buyer-side live offer commits the buyer's funds (funded commitments, rule 3).
    pub fn commits_funds(&self, now: Timestamp) -> bool {
        self.state == OfferState::Live && self.proposer == self.buyer && self.expires_at > now
    }
    pub fn recipient(&self) -> ParticipantId {
        if self.proposer == self.buyer {
            self.seller
        } else {
            self.buyer
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    pub id: DealId,
    pub market_id: MarketId,
    pub listing_id: ListingId,
    pub thread_id: ThreadId,
    pub offer_id: OfferId,
    pub buyer: ParticipantId,
    pub seller: ParticipantId,
    /// What the buyer pays and the escrow holds: the accepted offer's price plus, on a shipped
    /// deal, the listing's shipping price (`shipping.shipping_price`).
    pub price: Money,
    pub status: DealStatus,
    pub snapshot: ListingSnapshot,
    pub created_at: Timestamp,
    /// When the principal's approval times out (awaiting_approval only).
    pub approval_deadline: Option<Timestamp>,
    /// Whose principal must still approve while the deal awaits approval: the buyer's (above its
    /// `approval_above`; omitted), the seller's (below its seller minimum with `below_min: ask`),
    /// or both.
    #[serde(default, skip_serializing_if = "Approver::is_buyer")]
    pub approval_from: Approver,
    /// The seller's note at handover ("left it at reception", a tracking number).
    #[serde(default)]
    pub handover_note: Option<String>,
    #[serde(default)]
    pub handed_over_at: Option<Timestamp>,
    /// Until when the buyer may dispute; after it the deal completes by itself.
    #[serde(default)]
    pub confirm_deadline: Option<Timestamp>,
    /// A party that asked to cancel before handover (mutual cancellation needs both).
    #[serde(default)]
    pub cancel_requested_by: Option<ParticipantId>,
    /// When the deal reached a final state.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// How a dispute was resolved (or the final split of the hold).
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// What the buyer found at handover (simulation) or its principal reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspection: Option<crate::claims::Inspection>,
    /// The grounds of the buyer's dispute, once opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<crate::claims::Dispute>,
    /// The payment with the market's provider (markets with a provider only): filled in by the
    /// service from the provider-confirmed record, never part of market state or the event log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<crate::payment::PaymentView>,
    /// A shipped deal's shipping (its price is part of `price`); absent when handed over in person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<crate::shipping::Shipping>,
    /// When a simulated carrier delivers a shipped deal (from the listing's `true_transit`; `None`
    /// when lost, not simulated or already delivered). Never serialized, like `true_state`: no
    /// party knows it before the sweep reports the delivery.
    #[serde(skip)]
    pub arrives_at: Option<Timestamp>,
}

string_enum!(
    /// Whose principal's approval a deal awaits.
    Approver { Buyer => "buyer", Seller => "seller", Both => "both" }
);

// `string_enum!` cannot mark a default variant.
#[allow(clippy::derivable_impls)]
impl Default for Approver {
    fn default() -> Approver {
        Approver::Buyer
    }
}

impl Approver {
    fn is_buyer(&self) -> bool {
        *self == Approver::Buyer
    }
}

impl Deal {
    /// What this deal counts in its buyer's funds: its price as held while its hold is open,
    /// and as spent unless it was undone (`DealStatus::hold_is_open`, `is_spent`).
    pub fn buyer_share(&self) -> (Money, Money) {
        let counted = |yes: bool| if yes { self.price } else { 0 };
        (
            counted(self.status.hold_is_open()),
            counted(self.status.is_spent()),
        )
    }

    pub fn is_party(&self, p: ParticipantId) -> bool {
        self.buyer == p || self.seller == p
    }
    /// Whether the deal waits for `p`'s principal's approval.
    pub fn awaits_approval_of(&self, p: ParticipantId) -> bool {
        self.status == DealStatus::AwaitingApproval
            && match self.approval_from {
                Approver::Buyer => self.buyer == p,
                Approver::Seller => self.seller == p,
                Approver::Both => self.is_party(p),
            }
    }
    /// Finished deals can be rated.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status,
            DealStatus::Completed | DealStatus::Refunded | DealStatus::PartiallyRefunded
        )
    }
}

/// The split of a deal's escrow hold when it closes: always sums exactly to the price.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub to_buyer: Money,
    pub to_seller: Money,
    /// Who decided: `None` for an operator, or the arbiter participant.
    pub by: Option<ParticipantId>,
    pub note: String,
}

/// A note on a deal: the handover note, dispute reasons and evidence, the resolution's reasons.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealNote {
    pub id: i64,
    pub market_id: MarketId,
    pub deal_id: DealId,
    /// `None` for an operator.
    pub author: Option<ParticipantId>,
    /// `handover`, `dispute`, `evidence`, `resolution` or `cancel`.
    pub kind: String,
    pub body: String,
    pub created_at: Timestamp,
}

/// One side's rating of the other after a finished deal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub id: i64,
    pub market_id: MarketId,
    pub deal_id: DealId,
    pub rater: ParticipantId,
    pub ratee: ParticipantId,
    /// 1 to 5.
    pub score: u8,
    pub comment: String,
    pub created_at: Timestamp,
}

/// A buyer's money as the rules need it, read inside the same transaction as the action.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funds {
    /// The ledger balance of the buyer's `available` account (escrow holds already moved out).
    pub cash: Money,
    /// Sum of the buyer's live, unexpired buyer-side offers.
    pub committed: Money,
    /// Sum of the buyer's escrow holds of open deals.
    pub held: Money,
    /// What counts against the mandate's spend cap: open and finished deals (not cancelled,
    /// declined or refunded).
    pub spent: Money,
}

impl Market {
    /// The market's clock: the simulated reading, or the real time the adapter read.
    pub fn now(&self, real_now: Timestamp) -> Timestamp {
        match self.clock_mode {
            ClockMode::Real => real_now,
            ClockMode::Simulated => self.sim_now,
        }
    }

    /// Whether the market has closed by its clock reading `now`.
    pub fn is_closed(&self, now: Timestamp) -> bool {
        self.rules.closes_at.is_some_and(|at| now >= at)
    }

    /// How long until the market closes: `None` when open-ended, 0 once closed.
    pub fn time_left(&self, now: Timestamp) -> Option<i64> {
        self.rules.closes_at.map(|at| at.saturating_sub(now).max(0))
    }
}
