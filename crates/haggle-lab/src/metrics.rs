//! The metrics of one run (spec: experiments.md, Metrics): per deal, for the market, per brain
//! arm and per participant, computed from the scenario's ground truth and a [`RunRecord`] of
//! what happened in the market.
//!
//! For a deal on item *i* at price *p* with the seller's floor *r* and the buyer's valuation
//! *v*: seller surplus `p − r`, buyer surplus `v − p`, welfare `v − r`, seller share
//! `σ = (p − r)/(v − r)` (when `v > r`), Nash distance `|p − (r + v)/2|` (minor units, rounded
//! down), normalised advantage (seller `(p − r)/(ask − r)`, buyer `(v − p)/(v − opening)`), and
//! irrational when `p < r` or `p > v`.
//!
//! How the ground truth is matched to a deal:
//! - the item is the deal's `item_id`, else the listing's subject when the listing sells; its
//!   floor is the seller's `floor_price`; its type the item's `item_type`;
//! - the valuation comes from the buyer's want: the deal's `want_id`, else the listing's
//!   subject when the listing is a wanted ad, else the buyer's want of the item's type with
//!   quantity left and the highest `max_price`. Deals are matched to wants in order of time; a
//!   deal with no want left is **unwanted** and its valuation is 0 (the principal gains nothing:
//!   a duplicate or something it never asked for);
//! - only deals that stand count as trades: every status but `cancelled`, `declined` and
//!   `refunded`. The others are listed with `counted = false` and enter no total.
//!
//! Everything is derived from the inputs alone (no clock) and kept in `BTreeMap`s, so the
//! serialised [`Metrics`] are byte-identical for identical inputs.

use crate::efficiency::{self, Efficiency};
use crate::scenario::Scenario;
use haggle_agents::brain::Role;
use haggle_agents::profile::{Profile, SellItem, Want};
use haggle_api::haggle_core::ErrorCode;
use haggle_api::haggle_core::model::{DealStatus, Side, ThreadStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// What happened in a run

/// Everything the metrics need from one run, in the scenario's terms (participants by name).
/// Times are the market clock's milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Per participant name: its id in the market and the brain that represented it.
    pub participants: BTreeMap<String, ParticipantRecord>,
    pub listings: Vec<ListingRecord>,
    pub threads: Vec<ThreadRecord>,
    pub deals: Vec<DealRecord>,
    /// The market clock when the run started (ms).
    #[serde(default)]
    pub started_at: i64,
    /// Scheduler rounds run.
    #[serde(default)]
    pub rounds: u64,
    /// Simulated time the run covered (ms).
    #[serde(default)]
    pub simulated_ms: i64,
    /// Per participant name: refused commands by error code (e.g. `insufficient_funds`).
    #[serde(default)]
    pub refusals: BTreeMap<String, BTreeMap<String, u64>>,
    /// With misdescribers in the market: what misdescribed items cost (else absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<crate::trust::TrustMeasures>,
    /// Per participant driven from outside the simulation (`external`, `human`; issue 24): its
    /// turns, how many it ended and how many timed out (absent without such participants).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outside: BTreeMap<String, OutsideTurns>,
}

/// The turns of one participant driven from outside the simulation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideTurns {
    pub turns: u64,
    /// Ended by the participant (`end_turn`).
    pub ended: u64,
    /// Not ended within the turn's time budget: the market went on without it.
    pub timed_out: u64,
    /// Commands the market applied in its turns (refusals included).
    pub commands: u64,
    /// Of those, the ones the market refused, by error code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refusals: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRecord {
    pub participant_id: i64,
    /// The brain's config name, e.g. `rule:boulware`.
    pub brain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingRecord {
    pub id: i64,
    /// The owner's participant name.
    pub owner: String,
    pub side: Side,
    /// The profile item (`item_id` attribute, side `sell`) or want (`want_id`, side `buy`).
    #[serde(default)]
    pub subject: Option<String>,
    /// Asking price (sell) or the price offered (buy).
    pub price: i64,
    pub posted_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadRecord {
    pub id: i64,
    pub listing_id: i64,
    pub buyer: String,
    pub seller: String,
    /// The thread's final status.
    pub status: ThreadStatus,
    /// The offers in the order they were made.
    #[serde(default)]
    pub offers: Vec<OfferRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRecord {
    /// Which side proposed it.
    pub proposer: Role,
    pub price: i64,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealRecord {
    pub id: i64,
    pub listing_id: i64,
    /// The deal's thread, when known (else matched by listing, buyer and seller).
    #[serde(default)]
    pub thread_id: Option<i64>,
    /// The seller's profile item sold.
    #[serde(default)]
    pub item_id: Option<String>,
    /// The buyer's profile want served, when known.
    #[serde(default)]
    pub want_id: Option<String>,
    pub seller: String,
    pub buyer: String,
    pub price: i64,
    pub status: DealStatus,
    pub created_at: i64,
    /// When the first offer in the deal's thread was made.
    #[serde(default)]
    pub first_offer_at: Option<i64>,
    /// Offers exchanged in the deal's thread.
    #[serde(default)]
    pub offers: u32,
}

/// Whether a deal in this status stands as a trade.
pub fn counts_as_trade(status: DealStatus) -> bool {
    haggle_api::haggle_core::figures::counts_as_trade(status)
}

// ---------------------------------------------------------------------------------------------
// The metrics

/// All metrics of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub scenario: String,
    pub currency: String,
    pub market: MarketMetrics,
    /// Every deal, counted or not, by deal id.
    pub deals: Vec<DealMetrics>,
    /// Per brain (arm).
    pub brains: BTreeMap<String, ArmMetrics>,
    /// Per participant name.
    pub participants: BTreeMap<String, ParticipantMetrics>,
    /// With misdescribers in the market: what misdescribed items cost (else absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<crate::trust::TrustMeasures>,
}

/// One deal, with the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealMetrics {
    pub deal_id: i64,
    pub listing_id: i64,
    pub item_id: Option<String>,
    pub item_type: Option<String>,
    pub want_id: Option<String>,
    pub seller: String,
    pub buyer: String,
    pub seller_brain: String,
    pub buyer_brain: String,
    pub status: DealStatus,
    /// Whether it stands as a trade (see [`counts_as_trade`]).
    pub counted: bool,
    pub price: i64,
    /// Seller's floor `r` (unknown when the item is unknown).
    pub floor: Option<i64>,
    /// Buyer's valuation `v` (0 when unwanted).
    pub valuation: i64,
    /// The listing's asking price (or the item's).
    pub ask: Option<i64>,
    /// The buyer's first offer in the thread (or the wanted ad's price).
    pub opening: Option<i64>,
    /// The item type's reference price, when the scenario has one.
    pub reference: Option<i64>,
    pub seller_surplus: Option<i64>,
    pub buyer_surplus: i64,
    pub welfare: Option<i64>,
    pub seller_share: Option<f64>,
    pub nash_distance: Option<i64>,
    pub seller_advantage: Option<f64>,
    pub buyer_advantage: Option<f64>,
    /// `p < r` or `p > v`.
    pub irrational: bool,
    /// No want of the buyer was left for it (valuation 0).
    pub unwanted: bool,
    /// The buyer already owned an item of this type.
    pub owned_type: bool,
    pub created_at: i64,
    pub offers: u32,
    /// From the first offer in its thread to the deal (ms).
    pub time_to_deal_ms: Option<i64>,
    /// From the listing's posting to the deal (ms).
    pub time_from_listing_ms: Option<i64>,
    /// The first offer on the listing is the buyer's (deals on items for sale only).
    pub first_offer_won: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketMetrics {
    pub participants: usize,
    pub listings: usize,
    pub sell_listings: usize,
    pub buy_listings: usize,
    pub threads: usize,
    /// Threads that ended in a deal (counted or not).
    pub threads_with_deal: usize,
    pub agreement_rate: Option<f64>,
    /// Threads where the buyer's valuation is at least the seller's floor.
    pub feasible_threads: usize,
    pub feasible_threads_with_deal: usize,
    pub agreement_rate_feasible: Option<f64>,
    /// Deals that stand, and the others.
    pub deals: usize,
    pub deals_not_counted: usize,
    pub gross_volume: i64,
    pub welfare: i64,
    pub seller_surplus: i64,
    pub buyer_surplus: i64,
    pub max_welfare: i64,
    pub max_welfare_exact: bool,
    pub max_welfare_upper_bound: i64,
    /// `welfare / max_welfare`.
    pub allocative_efficiency: Option<f64>,
    pub mean_seller_share: Option<f64>,
    pub mean_nash_distance: Option<i64>,
    pub irrational_deals: usize,
    pub below_floor_deals: usize,
    pub above_valuation_deals: usize,
    pub unwanted_deals: usize,
    pub owned_type_deals: usize,
    pub offers: u64,
    pub mean_offers_per_deal: Option<f64>,
    pub mean_time_to_deal_ms: Option<i64>,
    pub median_time_to_deal_ms: Option<i64>,
    pub rounds: u64,
    pub started_at: i64,
    pub simulated_ms: i64,
    /// Wanted units (Σ quantity), units met by counted deals, share.
    pub wants: u64,
    pub wants_met: u64,
    pub share_wants_met: Option<f64>,
    pub items: usize,
    pub items_sold: usize,
    pub share_items_sold: Option<f64>,
    /// Deals (on items for sale) won by the first offer the seller received on the listing.
    pub first_offer_deals: usize,
    pub first_offer_wins: usize,
    pub first_proposal_bias: Option<f64>,
    /// Mean of (buyer's first offer / ask) over deals, and its correlation with the price.
    pub mean_first_offer_to_ask: Option<f64>,
    pub first_offer_price_correlation: Option<f64>,
    pub median_price: Option<i64>,
    pub mean_price: Option<i64>,
    pub refusals: u64,
    pub refusals_by_code: BTreeMap<String, u64>,
    /// Sales attempted below a seller mandate's minimum, all refused (`below_seller_minimum`:
    /// listings, sellers' offers, acceptances). Omitted while 0, so results without it stay
    /// byte-identical; `below_floor_deals` counts the sales that went through below a floor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sales_refused_below_seller_minimum: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One brain (arm): its participants' results as seller and as buyer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmMetrics {
    pub participants: usize,
    pub deals_as_seller: usize,
    pub deals_as_buyer: usize,
    pub volume_sold: i64,
    pub volume_bought: i64,
    pub seller_surplus: i64,
    pub buyer_surplus: i64,
    /// Seller plus buyer surplus.
    pub surplus: i64,
    pub mean_seller_surplus: Option<i64>,
    pub mean_buyer_surplus: Option<i64>,
    /// Mean σ as seller, and mean 1 − σ as buyer.
    pub mean_share_as_seller: Option<f64>,
    pub mean_share_as_buyer: Option<f64>,
    /// Deals of this arm (either side) that were irrational for it (sold below floor / paid
    /// above valuation).
    pub irrational_deals: usize,
    pub refusals: u64,
}

/// One participant's settlement and results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantMetrics {
    pub participant_id: Option<i64>,
    pub brain: String,
    pub budget: i64,
    pub items: usize,
    pub items_sold: usize,
    pub revenue: i64,
    pub seller_surplus: i64,
    /// Wanted units, and units met.
    pub wants: u64,
    pub wants_met: u64,
    pub bought: usize,
    pub spent: i64,
    pub buyer_surplus: i64,
    /// Revenue − spent.
    pub net_cash: i64,
    /// Budget − spent + revenue.
    pub final_cash: i64,
    pub listings: usize,
    pub threads: usize,
    /// Deals irrational for this participant (sold below its floor / paid above its valuation).
    pub irrational_deals: usize,
    pub unwanted_deals: usize,
    pub refusals: BTreeMap<String, u64>,
}

/// The metrics of a run; computes the scenario's efficient welfare first (see
/// [`efficiency::max_welfare`]). To compare several runs of one scenario, compute it once and
/// use [`compute_with`].
pub fn compute(scenario: &Scenario, record: &RunRecord) -> Metrics {
    compute_with(scenario, record, &efficiency::max_welfare(scenario))
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| num / den)
}

fn mean_f(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Integer mean, rounded half away from zero.
fn mean_i(xs: &[i64]) -> Option<i64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as i128;
    let sum: i128 = xs.iter().map(|&x| i128::from(x)).sum();
    let q = if sum >= 0 {
        (2 * sum + n) / (2 * n)
    } else {
        -((-2 * sum + n) / (2 * n))
    };
    Some(q as i64)
}

/// The market's one median (`haggle_core::figures::median`), also the web summary's.
fn median_i(xs: &[i64]) -> Option<i64> {
    haggle_api::haggle_core::figures::median(xs)
}

fn correlation(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    let den = (sxx * syy).sqrt();
    (den > 0.0).then(|| sxy / den)
}

/// The metrics of a run given the scenario's efficiency benchmark, in the steps the module's
/// doc names: each deal matched to its item and the buyer's want in time order
/// ([`deal_metrics`]), the threads' agreement and feasibility ([`thread_counts`]), the market's
/// totals over counted deals ([`market_metrics`]), then per brain ([`arm_metrics`]) and per
/// participant ([`participant_metrics`]).
pub fn compute_with(scenario: &Scenario, record: &RunRecord, eff: &Efficiency) -> Metrics {
    let run = RunIndex::new(record);
    let mut open_units = open_wants(scenario);
    let deals = deal_metrics(scenario, &run, &mut open_units);
    let counted: Vec<&DealMetrics> = deals.iter().filter(|d| d.counted).collect();
    let sold_items: BTreeSet<&str> = counted
        .iter()
        .filter_map(|d| d.item_id.as_deref())
        .filter(|id| scenario.item(id).is_some())
        .collect();
    let tally = Tally {
        deals: deals.len(),
        counted: &counted,
        open_units: &open_units,
        sold_items: &sold_items,
    };
    let market = market_metrics(scenario, &run, eff, &tally);
    let brains = arm_metrics(record, &counted);
    let participants = participant_metrics(scenario, &run, &tally);
    Metrics {
        scenario: scenario.name.clone(),
        currency: scenario.currency.clone(),
        market,
        deals,
        brains,
        participants,
        trust: record.trust.clone(),
    }
}

/// The run's record with its listings and threads looked up by id.
struct RunIndex<'a> {
    record: &'a RunRecord,
    listings: BTreeMap<i64, &'a ListingRecord>,
    threads_by_listing: BTreeMap<i64, Vec<&'a ThreadRecord>>,
}

impl<'a> RunIndex<'a> {
    fn new(record: &'a RunRecord) -> RunIndex<'a> {
        RunIndex {
            record,
            listings: record.listings.iter().map(|l| (l.id, l)).collect(),
            threads_by_listing: record.threads.iter().fold(BTreeMap::new(), |mut m, t| {
                m.entry(t.listing_id).or_insert_with(Vec::new).push(t);
                m
            }),
        }
    }

    fn brain_of(&self, name: &str) -> String {
        self.record
            .participants
            .get(name)
            .map_or_else(|| "unknown".to_string(), |p| p.brain.clone())
    }

    /// The deal's thread: by id, else the listing's thread between the deal's two parties.
    fn thread_of_deal(&self, d: &DealRecord) -> Option<&'a ThreadRecord> {
        let threads = &self.record.threads;
        match d.thread_id {
            Some(id) => threads.iter().find(|t| t.id == id),
            None => threads.iter().find(|t| {
                t.listing_id == d.listing_id && t.buyer == d.buyer && t.seller == d.seller
            }),
        }
    }
}

/// Units of each (buyer, want) still open.
type OpenUnits = BTreeMap<(String, String), u32>;

/// Every want's units, all open before the first deal.
fn open_wants(scenario: &Scenario) -> OpenUnits {
    let mut open_units = OpenUnits::new();
    for p in &scenario.profiles {
        for w in &p.want {
            open_units.insert((p.name.clone(), w.want_id.clone()), w.quantity);
        }
    }
    open_units
}

/// Every deal's metrics, by deal id. Deals are matched in time order: wants are used up in
/// that order (counted deals take a unit from `open_units`).
fn deal_metrics(
    scenario: &Scenario,
    run: &RunIndex,
    open_units: &mut OpenUnits,
) -> Vec<DealMetrics> {
    let mut order: Vec<&DealRecord> = run.record.deals.iter().collect();
    order.sort_by_key(|d| (d.created_at, d.id));
    let mut deals: Vec<DealMetrics> = order
        .into_iter()
        .map(|d| deal_metric(scenario, run, d, open_units))
        .collect();
    deals.sort_by_key(|d| d.deal_id);
    deals
}

/// The ground truth a deal is matched to: its item (and so the floor and type) and the buyer's
/// want (and so the valuation; 0 and no want when unwanted).
struct Matched<'a> {
    item_id: Option<String>,
    item: Option<&'a SellItem>,
    item_type: Option<String>,
    want_id: Option<String>,
    valuation: i64,
    owned_type: bool,
}

/// The item is the deal's `item_id`, else the listing's subject when the listing sells; the
/// want is the deal's `want_id`, else the wanted ad's subject, else the buyer's want of the
/// item's type with units left and the highest `max_price`.
fn match_deal<'a>(
    scenario: &'a Scenario,
    d: &DealRecord,
    listing: Option<&ListingRecord>,
    counted: bool,
    open_units: &mut OpenUnits,
) -> Matched<'a> {
    let subject = |side: Side| {
        listing
            .filter(|l| l.side == side)
            .and_then(|l| l.subject.clone())
    };
    let item_id = d.item_id.clone().or_else(|| subject(Side::Sell));
    let item = item_id
        .as_deref()
        .and_then(|id| scenario.item(id))
        .map(|(_, s)| s);
    let item_type = item.map(|s| s.item_type.clone());
    let buyer_profile = scenario.profile(&d.buyer);
    let explicit_want = d.want_id.clone().or_else(|| subject(Side::Buy));
    let want = buyer_profile.and_then(|bp| {
        take_want(
            bp,
            explicit_want.as_ref(),
            item_type.as_ref(),
            counted,
            open_units,
        )
    });
    let owned_type = match (&item_type, buyer_profile) {
        (Some(t), Some(bp)) => bp.owns.contains(t),
        _ => false,
    };
    Matched {
        item_id,
        item,
        // Without a known item, the type of the want it met.
        item_type: item_type.or_else(|| {
            let w = want?;
            buyer_profile?
                .want
                .iter()
                .find(|x| x.want_id == w.want_id)
                .map(|x| x.item_type.clone())
        }),
        want_id: want.map(|w| w.want_id.clone()),
        valuation: want.map_or(0, |w| w.max_price),
        owned_type,
    }
}

/// The buyer's want a deal meets, taking one of its open units when the deal counts (a deal
/// that does not count takes the first candidate, open or not).
fn take_want<'a>(
    bp: &'a Profile,
    explicit_want: Option<&String>,
    item_type: Option<&String>,
    counted: bool,
    open_units: &mut OpenUnits,
) -> Option<&'a Want> {
    let candidates: Vec<&Want> = match explicit_want {
        Some(id) => bp.want.iter().filter(|w| &w.want_id == id).collect(),
        None => {
            let mut ws: Vec<_> = bp
                .want
                .iter()
                .filter(|w| Some(&w.item_type) == item_type)
                .collect();
            ws.sort_by(|a, b| {
                b.max_price
                    .cmp(&a.max_price)
                    .then(a.want_id.cmp(&b.want_id))
            });
            ws
        }
    };
    for w in candidates {
        let key = (bp.name.clone(), w.want_id.clone());
        let left = open_units.get(&key).copied().unwrap_or(0);
        if left > 0 || !counted {
            if counted {
                open_units.insert(key, left - 1);
            }
            return Some(w);
        }
    }
    None
}

/// One deal's metrics (see the module's doc for the figures).
fn deal_metric(
    scenario: &Scenario,
    run: &RunIndex,
    d: &DealRecord,
    open_units: &mut OpenUnits,
) -> DealMetrics {
    let listing = run.listings.get(&d.listing_id).copied();
    let counted = counts_as_trade(d.status);
    let m = match_deal(scenario, d, listing, counted, open_units);
    let (p, floor, valuation) = (d.price, m.item.map(|s| s.floor_price), m.valuation);
    let thread = run.thread_of_deal(d);
    let sells = listing.filter(|l| l.side == Side::Sell);
    let ask = sells
        .map(|l| l.price)
        .or_else(|| m.item.map(|s| s.asking_price));
    let opening = opening(thread, listing);
    let first_offer_at = d
        .first_offer_at
        .or_else(|| thread.and_then(|t| t.offers.first().map(|o| o.at)));
    DealMetrics {
        deal_id: d.id,
        listing_id: d.listing_id,
        reference: m
            .item_type
            .as_ref()
            .and_then(|t| scenario.reference_prices.get(t).copied()),
        item_id: m.item_id,
        item_type: m.item_type,
        want_id: m.want_id.clone(),
        seller: d.seller.clone(),
        buyer: d.buyer.clone(),
        seller_brain: run.brain_of(&d.seller),
        buyer_brain: run.brain_of(&d.buyer),
        status: d.status,
        counted,
        price: p,
        floor,
        valuation,
        ask,
        opening,
        seller_surplus: floor.map(|r| p - r),
        buyer_surplus: valuation - p,
        welfare: floor.map(|r| valuation - r),
        seller_share: floor
            .and_then(|r| (valuation > r).then(|| (p - r) as f64 / (valuation - r) as f64)),
        nash_distance: floor.map(|r| (2 * p - r - valuation).abs() / 2),
        seller_advantage: match (floor, ask) {
            (Some(r), Some(a)) if a > r => Some((p - r) as f64 / (a - r) as f64),
            _ => None,
        },
        buyer_advantage: match opening {
            Some(o) if valuation > o => Some((valuation - p) as f64 / (valuation - o) as f64),
            _ => None,
        },
        irrational: floor.is_some_and(|r| p < r) || p > valuation,
        unwanted: m.want_id.is_none(),
        owned_type: m.owned_type,
        created_at: d.created_at,
        offers: d.offers,
        time_to_deal_ms: first_offer_at.map(|t| d.created_at - t),
        time_from_listing_ms: listing.map(|l| d.created_at - l.posted_at),
        first_offer_won: sells.and_then(|l| first_offer_won(run, l, &d.buyer)),
    }
}

/// The buyer's first offer in the thread, else the wanted ad's price.
fn opening(thread: Option<&ThreadRecord>, listing: Option<&ListingRecord>) -> Option<i64> {
    thread
        .and_then(|t| {
            t.offers
                .iter()
                .find(|o| o.proposer == Role::Buyer)
                .map(|o| o.price)
        })
        .or_else(|| listing.filter(|l| l.side == Side::Buy).map(|l| l.price))
}

/// First-proposal bias: whether the earliest buyer offer on the listing, over all its threads,
/// is the deal's buyer's.
fn first_offer_won(run: &RunIndex, listing: &ListingRecord, buyer: &str) -> Option<bool> {
    let threads = run.threads_by_listing.get(&listing.id)?;
    threads
        .iter()
        .flat_map(|t| {
            t.offers
                .iter()
                .enumerate()
                .filter(|(_, o)| o.proposer == Role::Buyer)
                .map(move |(k, o)| ((o.at, t.id, k), &t.buyer))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, b)| *b == buyer)
}

/// What the market, arm and participant totals are taken over: the deals (how many in all),
/// the counted ones, the wants' units left open and the scenario's items sold.
struct Tally<'a, 'b> {
    deals: usize,
    counted: &'b [&'a DealMetrics],
    open_units: &'b OpenUnits,
    sold_items: &'b BTreeSet<&'a str>,
}

/// Threads that ended in a deal; threads whose pair is feasible (the buyer's valuation is at
/// least the seller's floor), and those of them with a deal.
struct ThreadCounts {
    with_deal: usize,
    feasible: usize,
    feasible_with_deal: usize,
}

fn thread_counts(scenario: &Scenario, run: &RunIndex) -> ThreadCounts {
    let deal_threads: BTreeSet<i64> = run
        .record
        .deals
        .iter()
        .filter_map(|d| run.thread_of_deal(d).map(|t| t.id))
        .collect();
    let mut c = ThreadCounts {
        with_deal: 0,
        feasible: 0,
        feasible_with_deal: 0,
    };
    for t in &run.record.threads {
        let with_deal = deal_threads.contains(&t.id) || t.status == ThreadStatus::Agreed;
        c.with_deal += usize::from(with_deal);
        let Some(l) = run.listings.get(&t.listing_id) else {
            continue;
        };
        if let (Some(r), Some(v)) = floor_and_valuation(scenario, l, t)
            && v >= r
        {
            c.feasible += 1;
            c.feasible_with_deal += usize::from(with_deal);
        }
    }
    c
}

/// The floor `r` and valuation `v` of a thread's pair: on an item for sale, the item's floor
/// and the buyer's highest want of its type (0 without one); on a wanted ad, the seller's
/// lowest floor of the want's type and the want's `max_price`.
fn floor_and_valuation(
    scenario: &Scenario,
    l: &ListingRecord,
    t: &ThreadRecord,
) -> (Option<i64>, Option<i64>) {
    match l.side {
        Side::Sell => {
            let item = l
                .subject
                .as_deref()
                .and_then(|id| scenario.item(id))
                .map(|(_, s)| s);
            let r = item.map(|s| s.floor_price);
            let v = item.and_then(|s| {
                scenario.profile(&t.buyer).map(|bp| {
                    bp.want
                        .iter()
                        .filter(|w| w.item_type == s.item_type)
                        .map(|w| w.max_price)
                        .max()
                        .unwrap_or(0)
                })
            });
            (r, v)
        }
        Side::Buy => {
            let want = l.subject.as_deref().and_then(|id| {
                scenario
                    .profile(&t.buyer)?
                    .want
                    .iter()
                    .find(|w| w.want_id == id)
            });
            let r = want.and_then(|w| {
                scenario
                    .profile(&t.seller)?
                    .sell
                    .iter()
                    .filter(|s| s.item_type == w.item_type)
                    .map(|s| s.floor_price)
                    .min()
            });
            (r, want.map(|w| w.max_price))
        }
    }
}

/// The market's figures over counted deals that take more than a sum: prices, shares, Nash
/// distances, times to deal, the first-proposal bias and the anchoring of first offers.
struct DealTotals {
    welfare: i64,
    seller_surplus: i64,
    buyer_surplus: i64,
    prices: Vec<i64>,
    shares: Vec<f64>,
    nash: Vec<i64>,
    times: Vec<i64>,
    offers: Vec<f64>,
    first_offer_deals: usize,
    first_offer_wins: usize,
    /// (buyer's first offer, price) and first offer / ask.
    anchors: Vec<(f64, f64)>,
    anchor_ratios: Vec<f64>,
}

fn deal_totals(counted: &[&DealMetrics]) -> DealTotals {
    let first_offer: Vec<&&DealMetrics> = counted
        .iter()
        .filter(|d| d.first_offer_won.is_some())
        .collect();
    DealTotals {
        welfare: counted.iter().filter_map(|d| d.welfare).sum(),
        seller_surplus: counted.iter().filter_map(|d| d.seller_surplus).sum(),
        buyer_surplus: counted.iter().map(|d| d.buyer_surplus).sum(),
        prices: counted.iter().map(|d| d.price).collect(),
        shares: counted.iter().filter_map(|d| d.seller_share).collect(),
        nash: counted.iter().filter_map(|d| d.nash_distance).collect(),
        times: counted.iter().filter_map(|d| d.time_to_deal_ms).collect(),
        offers: counted.iter().map(|d| f64::from(d.offers)).collect(),
        first_offer_deals: first_offer.len(),
        first_offer_wins: first_offer
            .iter()
            .filter(|d| d.first_offer_won == Some(true))
            .count(),
        anchors: counted
            .iter()
            .filter_map(|d| Some((d.opening? as f64, d.price as f64)))
            .collect(),
        anchor_ratios: counted
            .iter()
            .filter_map(|d| match (d.opening, d.ask) {
                (Some(o), Some(a)) if a > 0 => Some(o as f64 / a as f64),
                _ => None,
            })
            .collect(),
    }
}

/// Wanted units (Σ quantity), and units met (no longer open).
fn wanted_units(scenario: &Scenario, open_units: &OpenUnits) -> (u64, u64) {
    let wants: u64 = scenario
        .profiles
        .iter()
        .flat_map(|p| p.want.iter().map(|w| u64::from(w.quantity)))
        .sum();
    let open: u64 = open_units.values().map(|&u| u64::from(u)).sum();
    (wants, wants - open)
}

/// Refusals summed over participants, by error code.
fn refusals_by_code(record: &RunRecord) -> BTreeMap<String, u64> {
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    for codes in record.refusals.values() {
        for (code, n) in codes {
            *by_code.entry(code.clone()).or_default() += n;
        }
    }
    by_code
}

/// The market's totals over counted deals (and its threads, wants and items).
fn market_metrics(
    scenario: &Scenario,
    run: &RunIndex,
    eff: &Efficiency,
    tally: &Tally,
) -> MarketMetrics {
    let (record, counted) = (run.record, tally.counted);
    let threads = thread_counts(scenario, run);
    let t = deal_totals(counted);
    let listings_on = |side: Side| record.listings.iter().filter(|l| l.side == side).count();
    let (wants, wants_met) = wanted_units(scenario, tally.open_units);
    let (items, items_sold) = (scenario.item_count(), tally.sold_items.len());
    let refusals_by_code = refusals_by_code(record);
    let below_minimum = refusals_by_code.get(ErrorCode::BelowSellerMinimum.as_str());
    MarketMetrics {
        participants: scenario.profiles.len(),
        listings: record.listings.len(),
        sell_listings: listings_on(Side::Sell),
        buy_listings: listings_on(Side::Buy),
        threads: record.threads.len(),
        threads_with_deal: threads.with_deal,
        agreement_rate: ratio(threads.with_deal as f64, record.threads.len() as f64),
        feasible_threads: threads.feasible,
        feasible_threads_with_deal: threads.feasible_with_deal,
        agreement_rate_feasible: ratio(threads.feasible_with_deal as f64, threads.feasible as f64),
        deals: counted.len(),
        deals_not_counted: tally.deals - counted.len(),
        gross_volume: t.prices.iter().sum(),
        welfare: t.welfare,
        seller_surplus: t.seller_surplus,
        buyer_surplus: t.buyer_surplus,
        max_welfare: eff.max_welfare,
        max_welfare_exact: eff.exact,
        max_welfare_upper_bound: eff.upper_bound,
        allocative_efficiency: ratio(t.welfare as f64, eff.max_welfare as f64),
        mean_seller_share: mean_f(&t.shares),
        mean_nash_distance: mean_i(&t.nash),
        irrational_deals: counted.iter().filter(|d| d.irrational).count(),
        below_floor_deals: counted.iter().filter(|d| below_floor(d)).count(),
        above_valuation_deals: counted.iter().filter(|d| d.price > d.valuation).count(),
        unwanted_deals: counted.iter().filter(|d| d.unwanted).count(),
        owned_type_deals: counted.iter().filter(|d| d.owned_type).count(),
        offers: record.threads.iter().map(|t| t.offers.len() as u64).sum(),
        mean_offers_per_deal: mean_f(&t.offers),
        mean_time_to_deal_ms: mean_i(&t.times),
        median_time_to_deal_ms: median_i(&t.times),
        rounds: record.rounds,
        started_at: record.started_at,
        simulated_ms: record.simulated_ms,
        wants,
        wants_met,
        share_wants_met: ratio(wants_met as f64, wants as f64),
        items,
        items_sold,
        share_items_sold: ratio(items_sold as f64, items as f64),
        first_offer_deals: t.first_offer_deals,
        first_offer_wins: t.first_offer_wins,
        first_proposal_bias: ratio(t.first_offer_wins as f64, t.first_offer_deals as f64),
        mean_first_offer_to_ask: mean_f(&t.anchor_ratios),
        first_offer_price_correlation: correlation(&t.anchors),
        median_price: median_i(&t.prices),
        mean_price: mean_i(&t.prices),
        refusals: refusals_by_code.values().sum(),
        sales_refused_below_seller_minimum: below_minimum.copied().unwrap_or(0),
        refusals_by_code,
    }
}

/// Sold below the seller's floor.
fn below_floor(d: &DealMetrics) -> bool {
    d.floor.is_some_and(|r| d.price < r)
}

/// Deals irrational for one side: sold below its floor, or paid above its valuation.
fn irrational_for(sold: &[&&DealMetrics], bought: &[&&DealMetrics]) -> usize {
    sold.iter().filter(|d| below_floor(d)).count()
        + bought.iter().filter(|d| d.price > d.valuation).count()
}

/// Per brain (arm): every brain of a participant or of a counted deal's side.
fn arm_metrics(record: &RunRecord, counted: &[&DealMetrics]) -> BTreeMap<String, ArmMetrics> {
    let mut brain_names: BTreeSet<String> = record
        .participants
        .values()
        .map(|p| p.brain.clone())
        .collect();
    for d in counted {
        brain_names.insert(d.seller_brain.clone());
        brain_names.insert(d.buyer_brain.clone());
    }
    brain_names
        .into_iter()
        .map(|brain| {
            let arm = arm_metric(record, counted, &brain);
            (brain, arm)
        })
        .collect()
}

fn arm_metric(record: &RunRecord, counted: &[&DealMetrics], brain: &str) -> ArmMetrics {
    let as_seller: Vec<&&DealMetrics> =
        counted.iter().filter(|d| d.seller_brain == brain).collect();
    let as_buyer: Vec<&&DealMetrics> = counted.iter().filter(|d| d.buyer_brain == brain).collect();
    let ss: Vec<i64> = as_seller.iter().filter_map(|d| d.seller_surplus).collect();
    let bs: Vec<i64> = as_buyer.iter().map(|d| d.buyer_surplus).collect();
    let seller_surplus: i64 = ss.iter().sum();
    let buyer_surplus: i64 = bs.iter().sum();
    let members: Vec<&String> = record
        .participants
        .iter()
        .filter(|(_, p)| p.brain == brain)
        .map(|(n, _)| n)
        .collect();
    ArmMetrics {
        participants: members.len(),
        deals_as_seller: as_seller.len(),
        deals_as_buyer: as_buyer.len(),
        volume_sold: as_seller.iter().map(|d| d.price).sum(),
        volume_bought: as_buyer.iter().map(|d| d.price).sum(),
        seller_surplus,
        buyer_surplus,
        surplus: seller_surplus + buyer_surplus,
        mean_seller_surplus: mean_i(&ss),
        mean_buyer_surplus: mean_i(&bs),
        mean_share_as_seller: mean_f(
            &as_seller
                .iter()
                .filter_map(|d| d.seller_share)
                .collect::<Vec<_>>(),
        ),
        mean_share_as_buyer: mean_f(
            &as_buyer
                .iter()
                .filter_map(|d| d.seller_share.map(|s| 1.0 - s))
                .collect::<Vec<_>>(),
        ),
        irrational_deals: irrational_for(&as_seller, &as_buyer),
        refusals: members
            .iter()
            .filter_map(|n| record.refusals.get(*n))
            .flat_map(|m| m.values())
            .sum(),
    }
}

/// Per participant of the scenario: its settlement and results.
fn participant_metrics(
    scenario: &Scenario,
    run: &RunIndex,
    tally: &Tally,
) -> BTreeMap<String, ParticipantMetrics> {
    scenario
        .profiles
        .iter()
        .map(|p| (p.name.clone(), participant_metric(p, run, tally)))
        .collect()
}

fn participant_metric(p: &Profile, run: &RunIndex, tally: &Tally) -> ParticipantMetrics {
    let record = run.record;
    let sold: Vec<&&DealMetrics> = tally
        .counted
        .iter()
        .filter(|d| d.seller == p.name)
        .collect();
    let bought: Vec<&&DealMetrics> = tally.counted.iter().filter(|d| d.buyer == p.name).collect();
    let revenue: i64 = sold.iter().map(|d| d.price).sum();
    let spent: i64 = bought.iter().map(|d| d.price).sum();
    let wants: u64 = p.want.iter().map(|w| u64::from(w.quantity)).sum();
    let left: u64 = p
        .want
        .iter()
        .map(|w| {
            let key = (p.name.clone(), w.want_id.clone());
            u64::from(tally.open_units.get(&key).copied().unwrap_or(0))
        })
        .sum();
    let own_items: BTreeSet<&str> = p.sell.iter().map(|s| s.item_id.as_str()).collect();
    ParticipantMetrics {
        participant_id: record.participants.get(&p.name).map(|r| r.participant_id),
        brain: run.brain_of(&p.name),
        budget: p.budget,
        items: p.sell.len(),
        items_sold: tally
            .sold_items
            .iter()
            .filter(|id| own_items.contains(*id))
            .count(),
        revenue,
        seller_surplus: sold.iter().filter_map(|d| d.seller_surplus).sum(),
        wants,
        wants_met: wants - left,
        bought: bought.len(),
        spent,
        buyer_surplus: bought.iter().map(|d| d.buyer_surplus).sum(),
        net_cash: revenue - spent,
        final_cash: p.budget - spent + revenue,
        listings: record.listings.iter().filter(|l| l.owner == p.name).count(),
        threads: record
            .threads
            .iter()
            .filter(|t| t.buyer == p.name || t.seller == p.name)
            .count(),
        irrational_deals: irrational_for(&sold, &bought),
        unwanted_deals: bought.iter().filter(|d| d.unwanted).count(),
        refusals: record.refusals.get(&p.name).cloned().unwrap_or_default(),
    }
}
