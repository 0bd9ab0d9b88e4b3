//! Rule-based brains (spec: agents.md, Brains): no LLM, deterministic given a seed, integer minor
//! units only.
//!
//! Every rule brain is one [`RuleBrain`]: the agent behaviour (listing, finding sellers and
//! buyers, answering offers, walking away, the deal lifecycle, ratings) is shared, and only the
//! price a brain proposes next — its [`Strategy`] — differs:
//!
//! | name | next price |
//! |---|---|
//! | `rule:boulware` | seller `a − (a − f)·t⁴`, buyer `o + (v − o)·t⁴` |
//! | `rule:linear` | the same with `t¹` |
//! | `rule:conceder` | the same with `t^¼` |
//! | `rule:tit-for-tat` | its last price moved by the other side's last concession, at least one tick |
//! | `rule:tit-for-tat-pure` | the same without the minimum tick and without the end-game acceptance (two of them deadlock) |
//! | `rule:micro` | one step (a tenth of its range) only after receiving as many distinct offers as it sent |
//! | `rule:split-difference` | the midpoint of its last and their last offer |
//! | `rule:taker` | the listed price: a seller asks its ask, a buyer pays the ask if it is within its maximum |
//!
//! with ask `a`, seller floor `f`, buyer maximum `v`, buyer opening `o` and the thread's elapsed
//! fraction `t` (`ThreadView::elapsed_ppm`). `t^e` is computed in parts per million with integer
//! arithmetic only ([`Exponent::pow_ppm`]). A tick is 1% of the brain's own range (|opening −
//! limit|), at least 1 minor unit.
//!
//! **Shared behaviour, per turn** (in this order):
//! 1. list every `view.unlisted` item at its asking price (once per item);
//! 2. deals: a seller hands over deals in `agreed`; a buyer confirms receipt of `handed_over`
//!    deals (or, when the inspection at handover found claims contradicted, disputes them
//!    `not_as_described`); finished deals are rated once (5 if completed, 2 if refunded or
//!    partially refunded);
//! 3. open threads: accept the other side's live offer if it is at least as good as the brain's own
//!    next offer; when the brain would end the thread this turn (its counter could no longer be
//!    accepted — the last offer of a capped thread, or `t = 1` — or its patience is spent) it
//!    takes any offer within its limit instead (except the taker, which trades at the listed
//!    price, and pure tit-for-tat, the textbook deadlock);
//!    otherwise, when it is the brain's move (the other side's offer is live, or no offer is),
//!    counter with its next price — even when that equals its last price, so a firm brain still
//!    moves the thread's offer-count clock and two Boulware agents do not stall; end the thread
//!    (a message saying so, [`ENDING_MESSAGE`], then a walk-away) when
//!    `ThreadState::turns` passes its patience — `style.patience`, but never less than the
//!    market's offer cap ([`patience_in`]) — when its counter could no longer be accepted, or
//!    when the cap is used up and no offer of its own awaits an answer (never left open); when
//!    its own offer is live it waits; a buyer walks away at once when the seller's record shows
//!    misdescribed items (`ThreadState::seller_record`);
//! 4. unmet wants: open threads on the cheapest `candidates` whose ask is at most 2·v and whose
//!    seller's record shows no misdescribed item (`Reputation::misdescribes`), with an
//!    opening offer `o` ([`BUYER_OPENING_PERCENT`] of min(ask, v)), at most
//!    [`MAX_THREADS_PER_WANT`] threads per want at a time, never offering more than
//!    `view.balance.available` (live buyer offers commit funds);
//! 5. buyer leads (others' wanted ads matching an unsold item): open a thread with an offer at
//!    the item's ask, one lead thread per item at a time;
//! 6. a want that has had no candidate for [`WANTED_AD_AFTER_TURNS`] of the brain's turns and
//!    no open thread gets one wanted ad at the opening price.
//!
//! **Never sell twice, never buy more than wanted**: offers bind, so a brain keeps live offers for
//! one item (or want) on at most as many different listings as it still has to sell (or buy):
//! one per item, `quantity − bought` per want. Offers within one listing are safe (the market
//! sells a listing once). When an acceptance uses up an item or want, the brain walks away from
//! its other threads for it in the same turn. Subjects already sold or met when the turn begins
//! are left to the runtime's housekeeping (it walks away and withdraws listings itself).
//!
//! If the market shows neither an offer cap nor a deadline for a thread, its `t` never moves; the
//! brains then use their own patience as the clock: `t = turns / patience`.
//!
//! Prices a brain proposes never cross its limit (seller: never below the floor; buyer: never
//! above `min(max_price, autonomy.per_deal_cap)`); this is asserted where actions are made.

use crate::brain::{Action, BoxFuture, Brain, Candidate, Role, ThreadState, View};
use crate::profile::{Profile, SellItem, Want};
use haggle_api::haggle_core::{
    Deal, DealStatus, DisputeGrounds, EventBody, ListingStatus, Offer, OfferState, ShippingStatus,
    Side,
};
use std::collections::{BTreeMap, BTreeSet};

/// One in parts per million: `t` and `t^e` are integers in `0..=PPM`.
pub const PPM: i64 = 1_000_000;
/// A buyer's opening offer `o`, in percent of min(ask, v).
pub const BUYER_OPENING_PERCENT: i64 = 60;
/// Concurrent threads per want.
pub const MAX_THREADS_PER_WANT: usize = 2;
/// Candidates whose ask exceeds this many times the buyer's maximum are not worth a thread.
pub const CANDIDATE_ASK_FACTOR: i64 = 2;
/// Turns without a candidate before a want gets a wanted ad.
pub const WANTED_AD_AFTER_TURNS: u64 = 3;
/// MiCRO concedes in this many equal steps from its opening to its limit.
pub const MICRO_STEPS: i64 = 10;
/// Rating of a completed deal, and of a refunded (or partially refunded) one.
pub const SCORE_COMPLETED: u8 = 5;
pub const SCORE_REFUNDED: u8 = 2;

/// The integer square root: the largest `r` with `r² <= n`.
pub fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Start above the root (2^ceil(bits/2)) and descend with Newton's method.
    let mut x = 1u128 << (128 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// The concession exponent `e` of a time-dependent strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exponent {
    /// `e = 4` (Boulware: holds firm, concedes late).
    Four,
    /// `e = 1` (linear).
    One,
    /// `e = 1/4` (Conceder: concedes early).
    Quarter,
}

impl Exponent {
    /// `t^e` in parts per million, for `t` in parts per million (clamped to `0..=PPM`), in integer
    /// arithmetic: `t⁴ = t·t·t·t / 10^18`, `t^¼ = isqrt(isqrt(t·10^6)·10^6)`.
    pub fn pow_ppm(self, t_ppm: i64) -> i64 {
        let t = t_ppm.clamp(0, PPM) as u128;
        let m = PPM as u128;
        let r = match self {
            Exponent::Four => t * t * t * t / (m * m * m),
            Exponent::One => t,
            Exponent::Quarter => isqrt(isqrt(t * m) * m),
        };
        r as i64
    }
}

/// `share` parts per million of `amount`, rounded down.
fn ppm_of(amount: i64, share_ppm: i64) -> i64 {
    (amount as i128 * share_ppm as i128 / PPM as i128) as i64
}

/// The time-dependent seller price `a − (a − f)·t^e` (never below `f`).
pub fn seller_curve(ask: i64, floor: i64, t_ppm: i64, e: Exponent) -> i64 {
    let ask = ask.max(floor);
    ask - ppm_of(ask - floor, e.pow_ppm(t_ppm))
}

/// The time-dependent buyer price `o + (v − o)·t^e` (never above `v`).
pub fn buyer_curve(opening: i64, max: i64, t_ppm: i64, e: Exponent) -> i64 {
    let opening = opening.min(max);
    opening + ppm_of(max - opening, e.pow_ppm(t_ppm))
}

/// `percent`% of `amount`, rounded down.
pub fn percent_of(amount: i64, percent: i64) -> i64 {
    (amount as i128 * percent as i128 / 100) as i64
}

/// A buyer's opening `percent`% of min(ask, v) (of v when there is no ask), at least 1 minor unit
/// and never above v.
pub fn buyer_opening(ask: Option<i64>, max: i64, percent: i64) -> i64 {
    let base = ask.map_or(max, |a| a.min(max));
    percent_of(base, percent).max(1).min(max)
}

/// One negotiation from the brain's side: its limits and both sides' offers so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiation {
    pub role: Role,
    /// The brain's opening price: its ask `a` (seller) or its opening `o` (buyer).
    pub start: i64,
    /// The brain's private limit: the floor `f` (seller) or the maximum `v` (buyer).
    pub limit: i64,
    /// The listing's price (the ask of a sell listing, the budget of a wanted ad).
    pub listed: i64,
    /// The elapsed fraction `t` in parts per million.
    pub t_ppm: i64,
    /// The brain's own offers in this thread, oldest first.
    pub mine: Vec<i64>,
    /// The other side's offers, oldest first.
    pub theirs: Vec<i64>,
}

impl Negotiation {
    /// +1 when conceding raises the price (buyer), −1 when it lowers it (seller).
    pub fn toward_limit(&self) -> i64 {
        match self.role {
            Role::Seller => -1,
            Role::Buyer => 1,
        }
    }
    /// |opening − limit|: how far the brain may concede in all.
    pub fn range(&self) -> i64 {
        (self.start - self.limit).abs()
    }
    /// 1% of the range, at least 1 minor unit.
    pub fn tick(&self) -> i64 {
        (self.range() / 100).max(1)
    }
    /// `p` pulled back within the limit (and to at least 1 minor unit).
    pub fn clamp(&self, p: i64) -> i64 {
        match self.role {
            Role::Seller => p.max(self.limit),
            Role::Buyer => p.min(self.limit),
        }
        .max(1)
    }
    /// `from` moved `by` towards the limit, never past it.
    pub fn concede(&self, from: i64, by: i64) -> i64 {
        self.clamp(from + self.toward_limit() * by.max(0))
    }
    pub fn within_limit(&self, p: i64) -> bool {
        match self.role {
            Role::Seller => p >= self.limit,
            Role::Buyer => p <= self.limit && p > 0,
        }
    }
    /// Whether price `x` is at least as good as `y` for the brain.
    pub fn at_least_as_good(&self, x: i64, y: i64) -> bool {
        match self.role {
            Role::Seller => x >= y,
            Role::Buyer => x <= y,
        }
    }
    pub fn last_mine(&self) -> Option<i64> {
        self.mine.last().copied()
    }
    pub fn last_theirs(&self) -> Option<i64> {
        self.theirs.last().copied()
    }
    /// How far the other side moved towards the brain with its last offer (0 if it did not, or
    /// retreated, or has made fewer than two offers).
    pub fn their_last_concession(&self) -> i64 {
        match self.theirs.as_slice() {
            [.., prev, last] => ((last - prev) * -self.toward_limit()).max(0),
            _ => 0,
        }
    }
    /// The brain's next price from its strategy's proposal: within its limit, and never a step
    /// back from its own last offer.
    pub fn settle(&self, proposal: i64) -> i64 {
        let p = self.clamp(proposal);
        match (self.last_mine(), self.role) {
            (Some(l), Role::Seller) => p.min(l),
            (Some(l), Role::Buyer) => p.max(l),
            (None, _) => p,
        }
    }
}

/// What distinguishes one rule brain from another: the price it proposes next.
pub trait Strategy: Send {
    /// The brain's config name, e.g. `rule:boulware`.
    fn name(&self) -> String;
    /// The next price this brain would propose (the caller keeps it within the limit and never
    /// lets it step back).
    fn next_price(&self, n: &Negotiation) -> i64;
    /// A buyer's opening offer on a listing with ask `ask` (a wanted ad when `None`), for
    /// maximum `max`; `None` = not worth a thread.
    fn opening(&self, ask: Option<i64>, max: i64, _listing_id: i64) -> Option<i64> {
        Some(buyer_opening(ask, max, BUYER_OPENING_PERCENT))
    }
    /// Whether, about to end a thread, the brain takes any offer within its limit (every
    /// bargaining strategy: a deal within the limit beats none). A taker trades only at the
    /// listed price, by definition.
    fn settles_within_limit_at_the_end(&self) -> bool {
        true
    }
}

/// Time-dependent concession: `a − (a − f)·t^e` / `o + (v − o)·t^e`.
#[derive(Debug, Clone, Copy)]
pub struct TimeDependent {
    pub name: &'static str,
    pub e: Exponent,
}

impl TimeDependent {
    pub const BOULWARE: TimeDependent = TimeDependent {
        name: "rule:boulware",
        e: Exponent::Four,
    };
    pub const LINEAR: TimeDependent = TimeDependent {
        name: "rule:linear",
        e: Exponent::One,
    };
    pub const CONCEDER: TimeDependent = TimeDependent {
        name: "rule:conceder",
        e: Exponent::Quarter,
    };
}

impl Strategy for TimeDependent {
    fn name(&self) -> String {
        self.name.into()
    }
    fn next_price(&self, n: &Negotiation) -> i64 {
        match n.role {
            Role::Seller => seller_curve(n.start, n.limit, n.t_ppm, self.e),
            Role::Buyer => buyer_curve(n.start, n.limit, n.t_ppm, self.e),
        }
    }
}

/// Tit-for-tat: mirrors the other side's last concession; with `pure == false` it concedes at
/// least one tick each time.
#[derive(Debug, Clone, Copy)]
pub struct TitForTat {
    pub pure: bool,
}

impl Strategy for TitForTat {
    /// The pure variant is the textbook one, kept to show that two of them deadlock: it never
    /// takes an offer its own rule would not have reached.
    fn settles_within_limit_at_the_end(&self) -> bool {
        !self.pure
    }
    fn name(&self) -> String {
        if self.pure {
            "rule:tit-for-tat-pure"
        } else {
            "rule:tit-for-tat"
        }
        .into()
    }
    fn next_price(&self, n: &Negotiation) -> i64 {
        let Some(last) = n.last_mine() else {
            return n.start;
        };
        let mirrored = n.their_last_concession();
        let by = if self.pure {
            mirrored
        } else {
            mirrored.max(n.tick())
        };
        n.concede(last, by)
    }
}

/// MiCRO: concedes one step only after receiving as many distinct offers as it has sent.
#[derive(Debug, Clone, Copy)]
pub struct Micro;

fn distinct(prices: &[i64]) -> usize {
    prices.iter().collect::<BTreeSet<_>>().len()
}

impl Strategy for Micro {
    fn name(&self) -> String {
        "rule:micro".into()
    }
    fn next_price(&self, n: &Negotiation) -> i64 {
        let Some(last) = n.last_mine() else {
            return n.start;
        };
        if distinct(&n.theirs) >= distinct(&n.mine) {
            n.concede(last, (n.range() / MICRO_STEPS).max(1))
        } else {
            last
        }
    }
}

/// Split the difference: the midpoint between its last and their last offer, rounded towards
/// theirs (so two of them converge to agreement).
#[derive(Debug, Clone, Copy)]
pub struct SplitDifference;

impl Strategy for SplitDifference {
    fn name(&self) -> String {
        "rule:split-difference".into()
    }
    fn next_price(&self, n: &Negotiation) -> i64 {
        match (n.last_mine(), n.last_theirs()) {
            (None, _) => n.start,
            (Some(mine), None) => mine,
            // Integer division truncates towards zero, i.e. towards `theirs`.
            (Some(mine), Some(theirs)) => theirs + (mine - theirs) / 2,
        }
    }
}

/// The price taker: a seller asks its ask (and accepts anything at least that); a buyer pays the
/// listed price if it is within its maximum, and does not bargain on anything else.
#[derive(Debug, Clone, Copy)]
pub struct Taker;

impl Strategy for Taker {
    fn name(&self) -> String {
        "rule:taker".into()
    }
    fn next_price(&self, n: &Negotiation) -> i64 {
        n.start
    }
    fn opening(&self, ask: Option<i64>, max: i64, _listing_id: i64) -> Option<i64> {
        match ask {
            Some(a) => (a <= max && a > 0).then_some(a),
            None => Some(max),
        }
    }
    fn settles_within_limit_at_the_end(&self) -> bool {
        false
    }
}

/// Odd behaviours of the adversaries, on top of a strategy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// A seller that never hands over what it sold.
    pub never_ships: bool,
    /// Text sent as a message with every thread it opens and every offer it makes.
    pub injection: Option<String>,
    /// Offers in every thread every turn (even when its own offer is live, never walking away),
    /// and once more in a thread after it closed (which the market refuses).
    pub spam: bool,
}

/// How long a buyer waits for a handover before cancelling (the demo market's confirmation
/// window; the market refuses an earlier lone cancellation, which costs only the refusal).
const HANDOVER_PATIENCE_MS: i64 = 48 * 3_600_000;
/// The carrier a rule seller names when it ships.
const SHIPPING_CARRIER: &str = "Haggle Post";

#[derive(Debug, Default)]
struct Memory {
    turns: u64,
    listed: BTreeSet<String>,
    /// Listings it opened a thread on (never reopened).
    tried: BTreeSet<i64>,
    /// Want → the brain's turn on which it last had a candidate or an open thread.
    last_seen_candidate: BTreeMap<String, u64>,
    wanted_posted: BTreeSet<String>,
    handed_over: BTreeSet<i64>,
    confirmed: BTreeSet<i64>,
    cancelled: BTreeSet<i64>,
    rated: BTreeSet<i64>,
    /// Thread → (role, item or want) as last seen.
    subjects: BTreeMap<i64, (Role, String)>,
    /// Spammer: thread → (role, limit, its last price) and threads it has finished with.
    spam_last: BTreeMap<i64, (Role, i64, i64)>,
    spam_done: BTreeSet<i64>,
}

/// A rule-based brain: shared agent behaviour around one [`Strategy`].
pub struct RuleBrain {
    name: String,
    strategy: Box<dyn Strategy>,
    quirks: Quirks,
    seed: u64,
    mem: Memory,
}

/// An item (selling) or want (buying) of the profile: what the brain negotiates about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Subject {
    selling: bool,
    id: String,
}

impl Subject {
    fn new(role: Role, id: &str) -> Subject {
        Subject {
            selling: role == Role::Seller,
            id: id.to_string(),
        }
    }
}

/// One open thread as this turn sees it.
struct Open<'v> {
    ts: &'v ThreadState,
    thread_id: i64,
    listing_id: i64,
    key: Subject,
    neg: Negotiation,
    live_theirs: Option<&'v Offer>,
    live_mine: Option<&'v Offer>,
    /// The brain's counter could not be accepted any more (last offer of a capped thread, or
    /// `t = 1`).
    last_chance: bool,
    /// The brain would end the thread this turn (its last chance, or its patience is spent):
    /// any offer within its limit is then better than none.
    ending: bool,
}

/// The words a brain leaves when it ends a thread in which no agreement is possible, so the
/// other side knows it is over (no number in it: nothing private can leak).
pub const ENDING_MESSAGE: &str = "We are too far apart to agree here, so I am ending this negotiation. Thank you for your offers.";

/// Ends a thread explicitly: the message, then the walk-away.
fn end_thread(acts: &mut Vec<Action>, thread_id: i64) {
    acts.push(Action::Message {
        thread_id,
        body: ENDING_MESSAGE.into(),
    });
    acts.push(Action::WalkAway { thread_id });
}

/// The brain's patience in a thread, in its own turns: its style's, but never less than the
/// market's offer cap for the thread, so it does not give up long before the market would.
pub fn patience_in(ts: &ThreadState, patience: u32) -> u32 {
    match ts.thread.offers_remaining {
        Some(left) => patience.max(left.saturating_add(ts.thread.detail.thread.offers_made)),
        None => patience,
    }
}

fn assert_within(role: Role, limit: i64, price: i64, what: &str) {
    match role {
        Role::Seller => assert!(
            price >= limit,
            "{what}: seller price {price} below its floor {limit}"
        ),
        Role::Buyer => {
            assert!(
                price <= limit && price > 0,
                "{what}: buyer price {price} above its maximum {limit}"
            )
        }
    }
}

/// The most a buyer may pay for a want: its maximum, capped by the mandate's per-deal cap.
pub fn buyer_limit(profile: &Profile, want: &Want) -> i64 {
    match profile.autonomy.per_deal_cap {
        Some(cap) => want.max_price.min(cap),
        None => want.max_price,
    }
}

/// Deals that count as bought or sold (not undone).
fn counts(d: &Deal) -> bool {
    !matches!(
        d.status,
        DealStatus::Cancelled | DealStatus::Declined | DealStatus::Refunded
    )
}

/// The elapsed fraction the brain bargains with: the market's `t`, or `turns / patience` when the
/// market shows neither an offer cap nor a deadline for the thread.
pub fn effective_t(ts: &ThreadState, patience: u32) -> i64 {
    let tv = &ts.thread;
    if tv.offers_remaining.is_none() && tv.detail.thread.deadline.is_none() {
        (ts.turns as i64 * PPM / patience.max(1) as i64).min(PPM)
    } else {
        (tv.elapsed_ppm as i64).min(PPM)
    }
}

impl RuleBrain {
    pub fn new(strategy: Box<dyn Strategy>, quirks: Quirks, seed: u64) -> RuleBrain {
        RuleBrain {
            name: strategy.name(),
            strategy,
            quirks,
            seed,
            mem: Memory::default(),
        }
    }
    /// The same brain under another config name (for adversaries built on a rule strategy).
    pub fn named(mut self, name: impl Into<String>) -> RuleBrain {
        self.name = name.into();
        self
    }
    pub fn boulware(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(TimeDependent::BOULWARE), Quirks::default(), seed)
    }
    pub fn linear(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(TimeDependent::LINEAR), Quirks::default(), seed)
    }
    pub fn conceder(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(TimeDependent::CONCEDER), Quirks::default(), seed)
    }
    pub fn tit_for_tat(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(TitForTat { pure: false }), Quirks::default(), seed)
    }
    pub fn tit_for_tat_pure(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(TitForTat { pure: true }), Quirks::default(), seed)
    }
    pub fn micro(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(Micro), Quirks::default(), seed)
    }
    pub fn split_difference(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(SplitDifference), Quirks::default(), seed)
    }
    pub fn taker(seed: u64) -> RuleBrain {
        RuleBrain::new(Box::new(Taker), Quirks::default(), seed)
    }

    /// The seed this brain was made with (rule strategies are deterministic without it; the
    /// adversaries derive their choices from it).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next price in a negotiation: the strategy's proposal, within the limit, never a step
    /// back.
    pub fn next_price(&self, n: &Negotiation) -> i64 {
        n.settle(self.strategy.next_price(n))
    }

    /// Whether the brain accepts `price` offered by the other side: at least as good as its own
    /// next offer. On its last chance (its counter would close the thread unanswerable) that
    /// next offer is the one it would make at `t = 1`: a time-dependent brain's limit, the
    /// taker's ask, the others' usual next price.
    pub fn acceptable(&self, n: &Negotiation, price: i64, last_chance: bool) -> bool {
        if !n.within_limit(price) {
            return false;
        }
        // About to end the thread: a deal within the limit beats none, whatever the strategy
        // would have asked next (tit-for-tat, micro and split-difference stop short of their
        // limit).
        if last_chance && self.strategy.settles_within_limit_at_the_end() {
            return true;
        }
        let next = if last_chance {
            self.next_price(&Negotiation {
                t_ppm: PPM,
                ..n.clone()
            })
        } else {
            self.next_price(n)
        };
        n.at_least_as_good(price, next)
    }

    fn terms(
        &self,
        profile: &Profile,
        view: &View,
        ts: &ThreadState,
        mine: &[i64],
    ) -> Option<Negotiation> {
        let subject = ts.subject.as_ref()?;
        let listing = &ts.listing;
        let (start, limit) = match ts.role {
            Role::Seller => {
                let item = profile.sell.iter().find(|i| &i.item_id == subject)?;
                (item.asking_price.max(item.floor_price), item.floor_price)
            }
            Role::Buyer => {
                let want = profile.want.iter().find(|w| &w.want_id == subject)?;
                let v = buyer_limit(profile, want);
                let start = match mine.first() {
                    Some(first) => *first,
                    // My own wanted ad: it already says what I offer.
                    None if listing.side == Side::Buy && listing.owner == view.me => listing.price,
                    None => self
                        .strategy
                        .opening(Some(listing.price), v, listing.id)
                        .unwrap_or_else(|| {
                            buyer_opening(Some(listing.price), v, BUYER_OPENING_PERCENT)
                        }),
                };
                (start.min(v).max(1), v)
            }
        };
        Some(Negotiation {
            role: ts.role,
            start,
            limit,
            listed: listing.price,
            t_ppm: effective_t(ts, profile.style.patience),
            mine: mine.to_vec(),
            theirs: Vec::new(),
        })
    }

    /// Decides one turn (the synchronous core of [`Brain::decide`]), in the six steps of the
    /// module's documentation.
    pub fn turn(&mut self, profile: &Profile, view: &View) -> Vec<Action> {
        self.remember(view);
        let mut t = self.start_turn(profile, view);
        self.list_unlisted(&mut t);
        self.tend_deals(&mut t);
        let open = self.open_threads(&mut t);
        let mut still = self.answer_threads(&mut t, &open);
        self.pursue_wants(&mut t, &mut still);
        self.offer_to_leads(&mut t, &mut still);
        self.mem.turns += 1;
        t.acts
    }

    /// Notes each thread's subject and the deals this brain has rated (from its events).
    fn remember(&mut self, view: &View) {
        for ts in &view.threads {
            if let Some(s) = &ts.subject {
                self.mem
                    .subjects
                    .insert(ts.thread.detail.thread.id, (ts.role, s.clone()));
            }
        }
        for e in &view.new_events {
            if let EventBody::DealRated(p) = &e.body
                && e.actor == Some(view.me)
            {
                self.mem.rated.insert(p.deal_id);
            }
        }
    }

    /// The turn's starting point: what is sold or bought already, and all cash available.
    fn start_turn<'v>(&self, profile: &'v Profile, view: &'v View) -> Turn<'v> {
        let me = view.me;
        // What is sold or bought already.
        let subject_of = |d: &Deal, role: Role, attr: &str| -> Option<String> {
            match self.mem.subjects.get(&d.thread_id) {
                Some((r, s)) if *r == role => Some(s.clone()),
                _ => d.snapshot.attributes.get(attr).cloned(),
            }
        };
        let mut sold: BTreeSet<String> = view
            .deals
            .iter()
            .filter(|d| d.seller == me && counts(d))
            .filter_map(|d| subject_of(d, Role::Seller, "item_id"))
            .collect();
        sold.extend(
            view.my_listings
                .iter()
                .filter(|l| l.side == Side::Sell && l.status == ListingStatus::Sold)
                .filter_map(|l| l.attributes.get("item_id").cloned()),
        );
        let mut bought: BTreeMap<String, u32> = BTreeMap::new();
        for d in view.deals.iter().filter(|d| d.buyer == me && counts(d)) {
            if let Some(w) = subject_of(d, Role::Buyer, "want_id") {
                *bought.entry(w).or_default() += 1;
            }
        }
        Turn {
            profile,
            view,
            me,
            acts: Vec::new(),
            available: view.balance.available,
            sold,
            bought,
            left: BTreeMap::new(),
            exposure: BTreeMap::new(),
        }
    }

    /// Step 1: List what is not listed yet.
    fn list_unlisted(&mut self, t: &mut Turn) {
        for item_id in &t.view.unlisted {
            if t.sold.contains(item_id) || self.mem.listed.contains(item_id) {
                continue;
            }
            if let Some(item) = t.profile.sell.iter().find(|i| &i.item_id == item_id) {
                self.mem.listed.insert(item_id.clone());
                t.acts.push(Action::ListItem {
                    item_id: item_id.clone(),
                    price: item.asking_price,
                });
            }
        }
    }

    /// Step 2: Deals: hand over or ship, confirm or dispute, cancel a deal never handed over
    /// (or shipped), rate.
    fn tend_deals(&mut self, t: &mut Turn) {
        let (view, me) = (t.view, t.me);
        let acts = &mut t.acts;
        let mut deals: Vec<&Deal> = view.deals.iter().filter(|d| d.is_party(me)).collect();
        deals.sort_by_key(|d| d.id);
        for d in deals {
            if d.seller == me
                && d.status == DealStatus::Agreed
                && !self.quirks.never_ships
                && self.mem.handed_over.insert(d.id)
            {
                acts.push(match d.shipping {
                    // Shipped promptly, on its first turn after the agreement.
                    Some(_) => Action::Ship {
                        deal_id: d.id,
                        carrier: SHIPPING_CARRIER.into(),
                        tracking: format!("HP{:08}", d.id),
                    },
                    None => Action::HandOver {
                        deal_id: d.id,
                        note: Some("Handed over as described.".into()),
                    },
                });
            }
            if d.buyer == me {
                self.settle_as_buyer(d, view.now, acts);
            }
            if d.is_finished() && self.mem.rated.insert(d.id) {
                let (score, comment) = if d.status == DealStatus::Completed {
                    (SCORE_COMPLETED, "Smooth deal, thank you.")
                } else {
                    (SCORE_REFUNDED, "The deal was refunded.")
                };
                acts.push(Action::Rate {
                    deal_id: d.id,
                    score,
                    comment: comment.into(),
                });
            }
        }
    }

    /// The buyer's side of a deal: confirm what arrived as described (a shipped deal once its
    /// carrier delivered it), dispute what did not (`not_as_described`, or a parcel still not
    /// delivered in the last quarter of the confirmation window: `not_received`), and cancel
    /// a deal the seller never handed over or shipped.
    fn settle_as_buyer(&mut self, d: &Deal, now: i64, acts: &mut Vec<Action>) {
        let waiting = d
            .shipping
            .as_ref()
            .is_some_and(|s| s.status == ShippingStatus::Shipped);
        if d.status == DealStatus::HandedOver && waiting {
            let (from, until) = (
                d.handed_over_at.unwrap_or(now),
                d.confirm_deadline.unwrap_or(now),
            );
            if now >= until - (until - from) / 4 && self.mem.confirmed.insert(d.id) {
                acts.push(Action::Dispute {
                    deal_id: d.id,
                    reason: "The parcel has not arrived.".into(),
                    grounds: DisputeGrounds::NotReceived,
                    claims: Vec::new(),
                });
            }
        } else if d.status == DealStatus::HandedOver && self.mem.confirmed.insert(d.id) {
            // The inspection at handover found claims contradicted: dispute them instead.
            match d.inspection.as_ref().filter(|i| !i.matched()) {
                Some(i) => acts.push(Action::Dispute {
                    deal_id: d.id,
                    reason: format!("Not as described: {}.", i.mismatched.join(", ")),
                    grounds: DisputeGrounds::NotAsDescribed,
                    claims: i.mismatched.clone(),
                }),
                None => acts.push(Action::ConfirmReceipt { deal_id: d.id }),
            }
        }
        // A seller who never hands over: once the market lets the buyer cancel alone (the
        // confirmation window after agreement, or a shipped deal's shipping deadline), the buyer
        // takes its money back.
        let late = match &d.shipping {
            Some(s) => now >= s.ship_by,
            None => now >= d.created_at + HANDOVER_PATIENCE_MS,
        };
        if d.status == DealStatus::Agreed && late && self.mem.cancelled.insert(d.id) {
            acts.push(Action::CancelDeal { deal_id: d.id });
        }
    }

    /// Step 3: Open threads as this turn sees them (a buyer leaves a seller whose record shows
    /// misdescribed items), with the listings each subject has live offers on.
    fn open_threads<'v>(&self, t: &mut Turn<'v>) -> Vec<Open<'v>> {
        let (view, me) = (t.view, t.me);
        let mut open: Vec<Open> = Vec::new();
        let mut threads: Vec<&ThreadState> = view.threads.iter().collect();
        threads.sort_by_key(|t| t.thread.detail.thread.id);
        for ts in threads {
            let th = &ts.thread.detail.thread;
            if !th.is_party(me) || th.status != haggle_api::haggle_core::ThreadStatus::Open {
                continue;
            }
            // A seller whose record now shows misdescribed items: the buyer leaves.
            if ts.role == Role::Buyer && ts.seller_record.as_ref().is_some_and(|r| r.misdescribes())
            {
                t.acts.push(Action::WalkAway { thread_id: th.id });
                continue;
            }
            open.extend(self.open_thread(t, ts));
        }
        // Listings per subject on which the brain has a live offer.
        for o in &open {
            if o.live_mine.is_some() {
                t.exposure
                    .entry(o.key.clone())
                    .or_default()
                    .insert(o.listing_id);
            }
        }
        for o in &open {
            t.left_for(&o.key);
        }
        open
    }

    /// One open thread: its offers, the brain's terms, and whether this is its last chance.
    fn open_thread<'v>(&self, t: &Turn<'v>, ts: &'v ThreadState) -> Option<Open<'v>> {
        let (profile, view, me) = (t.profile, t.view, t.me);
        let th = &ts.thread.detail.thread;
        let mut offers: Vec<&Offer> = ts
            .thread
            .detail
            .offers
            .iter()
            .filter(|o| o.thread_id == th.id)
            .collect();
        offers.sort_by_key(|o| o.id);
        let mine: Vec<i64> = offers
            .iter()
            .filter(|o| o.proposer == me)
            .map(|o| o.price)
            .collect();
        let mut neg = self.terms(profile, view, ts, &mine)?;
        neg.theirs = offers
            .iter()
            .filter(|o| o.proposer != me)
            .map(|o| o.price)
            .collect();
        let i_am = |o: &Offer| match ts.role {
            Role::Buyer => o.buyer == me,
            Role::Seller => o.seller == me,
        };
        let live = |o: &&&Offer| o.state == OfferState::Live && o.expires_at > view.now && i_am(o);
        let live_theirs = offers
            .iter()
            .filter(live)
            .filter(|o| o.proposer != me)
            .max_by_key(|o| o.id)
            .copied();
        let live_mine = offers
            .iter()
            .filter(live)
            .filter(|o| o.proposer == me)
            .max_by_key(|o| o.id)
            .copied();
        let last_chance = ts.thread.offers_remaining.is_some_and(|r| r <= 1) || neg.t_ppm >= PPM;
        let ending = last_chance || ts.turns > patience_in(ts, profile.style.patience);
        Some(Open {
            ts,
            thread_id: th.id,
            listing_id: ts.listing.id,
            key: Subject::new(ts.role, ts.subject.as_deref().unwrap_or_default()),
            neg,
            live_theirs,
            live_mine,
            last_chance,
            ending,
        })
    }

    /// 3a and 3b: acceptances (best offers first), then counters, waits and walk-aways; returns
    /// what stays open for steps 4 and 5.
    fn answer_threads(&mut self, t: &mut Turn, open: &[Open]) -> StillOpen {
        let mut order: Vec<usize> = (0..open.len()).collect();
        order.sort_by_key(|&i| {
            let o = &open[i];
            // Lowest first for a buyer, highest first for a seller.
            let p = o
                .live_theirs
                .map_or(i64::MAX, |x| x.price * o.neg.toward_limit());
            (p, o.thread_id)
        });
        let (accepted, accepted_on) = self.accept_offers(t, open, &order);
        self.counter_offers(t, open, &order, &accepted, &accepted_on);
        if self.quirks.spam {
            self.spam_closed_threads(t, open);
        }
        still_open(t, open, &accepted)
    }

    /// Step 3a: Acceptances, best offers first.
    fn accept_offers(
        &self,
        t: &mut Turn,
        open: &[Open],
        order: &[usize],
    ) -> (BTreeSet<usize>, BTreeMap<Subject, BTreeSet<i64>>) {
        let me = t.me;
        let mut accepted: BTreeSet<usize> = BTreeSet::new();
        let mut accepted_on: BTreeMap<Subject, BTreeSet<i64>> = BTreeMap::new();
        for &i in order {
            let o = &open[i];
            let Some(offer) = o.live_theirs else { continue };
            if t.left[&o.key] == 0 || !self.acceptable(&o.neg, offer.price, o.ending) {
                continue;
            }
            if o.neg.role == Role::Buyer && offer.price > t.available {
                continue;
            }
            assert_within(o.neg.role, o.neg.limit, offer.price, "accept");
            assert!(offer.proposer != me && offer.state == OfferState::Live);
            if o.neg.role == Role::Buyer {
                t.available -= offer.price;
            }
            t.acts.push(Action::Accept { offer_id: offer.id });
            accepted.insert(i);
            *t.left.get_mut(&o.key).expect("subject") -= 1;
            accepted_on
                .entry(o.key.clone())
                .or_default()
                .insert(o.listing_id);
            if let Some(s) = t.exposure.get_mut(&o.key) {
                s.remove(&o.listing_id);
            }
        }
        (accepted, accepted_on)
    }

    /// Step 3b: Counters, waits and walk-aways.
    fn counter_offers(
        &mut self,
        t: &mut Turn,
        open: &[Open],
        order: &[usize],
        accepted: &BTreeSet<usize>,
        accepted_on: &BTreeMap<Subject, BTreeSet<i64>>,
    ) {
        let profile = t.profile;
        for &i in order {
            if accepted.contains(&i) {
                continue;
            }
            let o = &open[i];
            let tid = o.thread_id;
            if t.left[&o.key] == 0 {
                // Used up by an acceptance this turn: leave the other threads (those on the same
                // listing the market voids itself). Subjects used up before this turn are the
                // runtime's housekeeping.
                if let Some(on) = accepted_on.get(&o.key)
                    && !on.contains(&o.listing_id)
                {
                    t.acts.push(Action::WalkAway { thread_id: tid });
                    if let Some(s) = t.exposure.get_mut(&o.key) {
                        s.remove(&o.listing_id);
                    }
                }
                continue;
            }
            let spam = self.quirks.spam;
            if o.ts.thread.offers_remaining == Some(0) {
                self.cap_used_up(t, o);
                continue;
            }
            if !spam && o.ts.turns > patience_in(o.ts, profile.style.patience) {
                end_thread(&mut t.acts, tid);
                continue;
            }
            let my_move = o.live_theirs.is_some() || o.live_mine.is_none();
            if !spam && !my_move {
                continue;
            }
            if !spam && o.last_chance {
                end_thread(&mut t.acts, tid);
                continue;
            }
            if !spam && t.exposed_elsewhere(&o.key, o.listing_id) >= t.left[&o.key] {
                continue;
            }
            self.counter(t, o);
        }
    }

    /// The cap is used up and the other side's last offer (if any) was out of range: unless its
    /// own offer still waits for an answer, the brain ends the thread rather than leave it open.
    /// Only the spammer tries once more (and is refused).
    fn cap_used_up(&mut self, t: &mut Turn, o: &Open) {
        let (spam, tid) = (self.quirks.spam, o.thread_id);
        if !spam && o.live_mine.is_none() {
            end_thread(&mut t.acts, tid);
            return;
        }
        if spam && self.mem.spam_done.insert(tid) {
            let price = self.next_price(&o.neg);
            let freed = o.live_mine.map_or(0, |m| m.price);
            if o.neg.role == Role::Buyer && price - freed > t.available {
                return;
            }
            assert_within(o.neg.role, o.neg.limit, price, "offer");
            t.acts.push(Action::Offer {
                thread_id: tid,
                price,
            });
        }
    }

    /// Counters with the brain's next price, if its cash allows.
    fn counter(&mut self, t: &mut Turn, o: &Open) {
        let tid = o.thread_id;
        let price = self.next_price(&o.neg);
        if o.neg.role == Role::Buyer {
            // Replacing its own live offer frees what that one committed.
            let freed = o.live_mine.map_or(0, |m| m.price);
            if price - freed > t.available {
                return;
            }
            t.available -= price - freed;
        }
        assert_within(o.neg.role, o.neg.limit, price, "offer");
        if let Some(text) = &self.quirks.injection {
            t.acts.push(Action::Message {
                thread_id: tid,
                body: text.clone(),
            });
        }
        t.acts.push(Action::Offer {
            thread_id: tid,
            price,
        });
        t.exposure
            .entry(o.key.clone())
            .or_default()
            .insert(o.listing_id);
        if self.quirks.spam {
            self.mem
                .spam_last
                .insert(tid, (o.neg.role, o.neg.limit, price));
        }
    }

    /// The spammer offers once more in each thread that closed since: the market refuses it.
    fn spam_closed_threads(&mut self, t: &mut Turn, open: &[Open]) {
        let open_ids: BTreeSet<i64> = open.iter().map(|o| o.thread_id).collect();
        let gone: Vec<(i64, (Role, i64, i64))> = self
            .mem
            .spam_last
            .iter()
            .filter(|(id, _)| !open_ids.contains(id) && !self.mem.spam_done.contains(id))
            .map(|(id, v)| (*id, *v))
            .collect();
        for (tid, (role, limit, price)) in gone {
            assert_within(role, limit, price, "offer");
            self.mem.spam_done.insert(tid);
            if role == Role::Buyer && price > t.available {
                continue;
            }
            t.acts.push(Action::Offer {
                thread_id: tid,
                price,
            });
        }
    }

    /// Step 4: Unmet wants: open threads on the cheapest candidates (and 6, a wanted ad when none
    /// has shown up for a while).
    fn pursue_wants(&mut self, t: &mut Turn, still: &mut StillOpen) {
        let (profile, view) = (t.profile, t.view);
        let mut wants: Vec<&Want> = profile
            .want
            .iter()
            .filter(|w| view.unmet_wants.contains(&w.want_id))
            .collect();
        wants.sort_by(|a, b| (a.priority, &a.want_id).cmp(&(b.priority, &b.want_id)));
        for w in wants {
            let key = Subject::new(Role::Buyer, &w.want_id);
            let v = buyer_limit(profile, w);
            let cap_left = t.left_for(&key);
            let cands = self.candidates(t, w, v, still);
            let threads_now = still.open_count.get(&key).copied().unwrap_or(0);
            if !cands.is_empty() || threads_now > 0 {
                self.mem
                    .last_seen_candidate
                    .insert(w.want_id.clone(), self.mem.turns);
            }
            if cap_left == 0 {
                continue;
            }
            let mut threads_now = threads_now;
            for c in cands {
                let l = &c.listing.listing;
                if threads_now >= MAX_THREADS_PER_WANT
                    || t.exposed_elsewhere(&key, l.id) >= cap_left
                {
                    break;
                }
                let Some(o) = self.strategy.opening(Some(l.price), v, l.id) else {
                    continue;
                };
                let o = o.min(v);
                if o > t.available || o <= 0 {
                    continue;
                }
                assert_within(Role::Buyer, v, o, "opening offer");
                t.available -= o;
                self.mem.tried.insert(l.id);
                let message =
                    self.quirks.injection.clone().unwrap_or_else(|| {
                        "Hello, is this still available? Here is my offer.".into()
                    });
                t.acts.push(Action::OpenThread {
                    listing_id: l.id,
                    message: Some(message),
                    price: Some(o),
                });
                t.exposure.entry(key.clone()).or_default().insert(l.id);
                threads_now += 1;
            }
            *still.open_count.entry(key.clone()).or_default() = threads_now;
            self.post_wanted_ad(t, w, v, threads_now);
        }
    }

    /// The listings a want may open threads on, cheapest first.
    fn candidates<'v>(
        &self,
        t: &Turn<'v>,
        w: &Want,
        v: i64,
        still: &StillOpen,
    ) -> Vec<&'v Candidate> {
        let me = t.me;
        let mut cands: Vec<&Candidate> = t
            .view
            .candidates
            .iter()
            .filter(|c| {
                let l = &c.listing.listing;
                c.want_id == w.want_id
                    && l.side == Side::Sell
                    && l.owner != me
                    && l.status == ListingStatus::Active
                    && l.price <= v.saturating_mul(CANDIDATE_ASK_FACTOR)
                    // A seller whose record shows misdescribed items is avoided.
                    && !c.listing.owner_reputation.misdescribes()
                    && !self.mem.tried.contains(&l.id)
                    && !still.open_listings.contains(&l.id)
            })
            .collect();
        cands.sort_by_key(|c| (c.listing.listing.price, c.listing.listing.id));
        cands
    }

    /// Step 6: No candidate for a while: post a wanted ad, once.
    fn post_wanted_ad(&mut self, t: &mut Turn, w: &Want, v: i64, threads_now: usize) {
        let since = self
            .mem
            .last_seen_candidate
            .get(&w.want_id)
            .copied()
            .unwrap_or(0);
        let has_ad = t.view.my_listings.iter().any(|l| {
            l.side == Side::Buy
                && l.status == ListingStatus::Active
                && l.attributes.get("want_id") == Some(&w.want_id)
        });
        if threads_now == 0
            && self.mem.turns >= since + WANTED_AD_AFTER_TURNS
            && !has_ad
            && !self.mem.wanted_posted.contains(&w.want_id)
            && let Some(price) = self.strategy.opening(None, v, 0)
        {
            let price = price.min(v);
            assert_within(Role::Buyer, v, price, "wanted ad");
            self.mem.wanted_posted.insert(w.want_id.clone());
            t.acts.push(Action::PostWanted {
                want_id: w.want_id.clone(),
                price,
            });
        }
    }

    /// Step 5: Buyer leads: offer my item at its ask, one lead thread per item at a time.
    fn offer_to_leads(&mut self, t: &mut Turn, still: &mut StillOpen) {
        let (profile, view, me) = (t.profile, t.view, t.me);
        let mut leads: Vec<&Candidate> = view.buyer_leads.iter().collect();
        leads.sort_by_key(|c| (-c.listing.listing.price, c.listing.listing.id));
        for c in leads {
            let l = &c.listing.listing;
            let Some(item) = profile.sell.iter().find(|i| i.item_id == c.want_id) else {
                continue;
            };
            let key = Subject::new(Role::Seller, &item.item_id);
            let cap_left = t.left_for(&key);
            if cap_left == 0
                || l.side != Side::Buy
                || l.owner == me
                || l.status != ListingStatus::Active
                || self.mem.tried.contains(&l.id)
                || still.open_listings.contains(&l.id)
                || still.lead_threads.get(&item.item_id).copied().unwrap_or(0) > 0
                || t.exposed_elsewhere(&key, l.id) >= cap_left
            {
                continue;
            }
            let price = lead_price(item);
            assert_within(Role::Seller, item.floor_price, price, "lead offer");
            self.mem.tried.insert(l.id);
            let message = self
                .quirks
                .injection
                .clone()
                .unwrap_or_else(|| format!("I have this for you: {}.", item.title));
            t.acts.push(Action::OpenThread {
                listing_id: l.id,
                message: Some(message),
                price: Some(price),
            });
            t.exposure.entry(key).or_default().insert(l.id);
            *still.lead_threads.entry(item.item_id.clone()).or_default() += 1;
        }
    }
}

/// What one turn knows and has decided so far: its actions, the cash its offers have not
/// committed yet, and per subject how many more may be sold or bought and on which listings
/// the brain has live offers.
struct Turn<'v> {
    profile: &'v Profile,
    view: &'v View,
    me: i64,
    acts: Vec<Action>,
    available: i64,
    sold: BTreeSet<String>,
    bought: BTreeMap<String, u32>,
    left: BTreeMap<Subject, usize>,
    exposure: BTreeMap<Subject, BTreeSet<i64>>,
}

impl Turn<'_> {
    /// How many more of a subject the brain may still sell or buy.
    fn capacity(&self, key: &Subject) -> usize {
        if key.selling {
            return usize::from(!self.sold.contains(&key.id));
        }
        if !self.view.unmet_wants.contains(&key.id) {
            return 0;
        }
        let q = self
            .profile
            .want
            .iter()
            .find(|w| w.want_id == key.id)
            .map_or(1, |w| w.quantity);
        q.saturating_sub(self.bought.get(&key.id).copied().unwrap_or(0))
            .max(1) as usize
    }

    /// What is left of a subject this turn (its capacity when first asked).
    fn left_for(&mut self, key: &Subject) -> usize {
        if let Some(n) = self.left.get(key) {
            return *n;
        }
        let n = self.capacity(key);
        self.left.insert(key.clone(), n);
        n
    }

    /// Listings other than `listing` on which the brain has a live offer for `key`.
    fn exposed_elsewhere(&self, key: &Subject, listing: i64) -> usize {
        self.exposure
            .get(key)
            .map_or(0, |s| s.iter().filter(|l| **l != listing).count())
    }
}

/// The threads still open after step 3 (not accepted, not walked away from): per subject, the
/// lead threads per item, and the listings they are on.
struct StillOpen {
    open_count: BTreeMap<Subject, usize>,
    lead_threads: BTreeMap<String, usize>,
    open_listings: BTreeSet<i64>,
}

fn still_open(t: &Turn, open: &[Open], accepted: &BTreeSet<usize>) -> StillOpen {
    let walked: BTreeSet<i64> = t
        .acts
        .iter()
        .filter_map(|a| match a {
            Action::WalkAway { thread_id } => Some(*thread_id),
            _ => None,
        })
        .collect();
    let mut still = StillOpen {
        open_count: BTreeMap::new(),
        lead_threads: BTreeMap::new(),
        open_listings: BTreeSet::new(),
    };
    for (i, o) in open.iter().enumerate() {
        still.open_listings.insert(o.listing_id);
        if accepted.contains(&i) || walked.contains(&o.thread_id) {
            continue;
        }
        *still.open_count.entry(o.key.clone()).or_default() += 1;
        if o.key.selling && o.ts.listing.side == Side::Buy {
            *still.lead_threads.entry(o.key.id.clone()).or_default() += 1;
        }
    }
    still
}

fn lead_price(item: &SellItem) -> i64 {
    item.asking_price.max(item.floor_price)
}

impl Brain for RuleBrain {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn decide<'a>(
        &'a mut self,
        profile: &'a Profile,
        view: &'a View,
    ) -> BoxFuture<'a, Vec<Action>> {
        let actions = self.turn(profile, view);
        Box::pin(std::future::ready(actions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(
        role: Role,
        start: i64,
        limit: i64,
        t_ppm: i64,
        mine: &[i64],
        theirs: &[i64],
    ) -> Negotiation {
        Negotiation {
            role,
            start,
            limit,
            listed: start,
            t_ppm,
            mine: mine.to_vec(),
            theirs: theirs.to_vec(),
        }
    }

    #[test]
    fn isqrt_is_the_floor_root() {
        for n in 0u128..2000 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "isqrt({n}) = {r}");
        }
        for n in [10u128.pow(12), 10u128.pow(24), u64::MAX as u128, u128::MAX] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1).checked_mul(r + 1).is_none_or(|s| s > n));
        }
    }

    #[test]
    fn powers_in_ppm() {
        assert_eq!(Exponent::Four.pow_ppm(500_000), 62_500);
        assert_eq!(Exponent::One.pow_ppm(500_000), 500_000);
        // 0.5^0.25 = 0.8408964..., the two floored roots give one part per million less.
        assert_eq!(Exponent::Quarter.pow_ppm(500_000), 840_895);
        for e in [Exponent::Four, Exponent::One, Exponent::Quarter] {
            assert_eq!(e.pow_ppm(0), 0);
            assert_eq!(e.pow_ppm(PPM), PPM);
            assert_eq!(e.pow_ppm(2 * PPM), PPM, "t is clamped to 1");
            let mut prev = 0;
            for t in (0..=PPM).step_by(10_000) {
                let p = e.pow_ppm(t);
                assert!(p >= prev && p <= PPM);
                prev = p;
            }
        }
        // Boulware below linear below Conceder inside (0, 1).
        for t in (10_000..PPM).step_by(10_000) {
            assert!(Exponent::Four.pow_ppm(t) < Exponent::One.pow_ppm(t));
            assert!(Exponent::One.pow_ppm(t) < Exponent::Quarter.pow_ppm(t));
        }
    }

    #[test]
    fn curves_run_from_opening_to_limit() {
        for e in [Exponent::Four, Exponent::One, Exponent::Quarter] {
            assert_eq!(seller_curve(1_000, 600, 0, e), 1_000);
            assert_eq!(seller_curve(1_000, 600, PPM, e), 600);
            assert_eq!(buyer_curve(600, 1_000, 0, e), 600);
            assert_eq!(buyer_curve(600, 1_000, PPM, e), 1_000);
            // Money near the largest amount does not overflow.
            let max = 1_000_000_000_000;
            assert_eq!(seller_curve(max, 1, PPM, e), 1);
            assert!(buyer_curve(1, max, 999_999, e) <= max);
        }
        assert_eq!(seller_curve(1_000, 600, 500_000, Exponent::One), 800);
        assert_eq!(buyer_curve(600, 1_000, 500_000, Exponent::Four), 625);
    }

    #[test]
    fn openings() {
        assert_eq!(buyer_opening(Some(1_200), 1_000, 60), 600);
        assert_eq!(buyer_opening(Some(800), 1_000, 60), 480);
        assert_eq!(buyer_opening(None, 1_000, 60), 600);
        assert_eq!(buyer_opening(Some(1), 1, 60), 1, "at least one minor unit");
        assert_eq!(Taker.opening(Some(900), 1_000, 1), Some(900));
        assert_eq!(Taker.opening(Some(1_100), 1_000, 1), None);
    }

    #[test]
    fn tit_for_tat_mirrors_with_a_minimum_tick() {
        // Seller range 1000 → 600: tick 4.
        let n = neg(Role::Seller, 1_000, 600, 0, &[1_000], &[500, 550]);
        assert_eq!(n.their_last_concession(), 50);
        assert_eq!(TitForTat { pure: false }.next_price(&n), 950);
        assert_eq!(TitForTat { pure: true }.next_price(&n), 950);
        let n = neg(Role::Seller, 1_000, 600, 0, &[1_000], &[500]);
        assert_eq!(TitForTat { pure: false }.next_price(&n), 996);
        assert_eq!(TitForTat { pure: true }.next_price(&n), 1_000);
        // A retreat is no concession.
        let n = neg(Role::Buyer, 500, 900, 0, &[500], &[1_000, 1_100]);
        assert_eq!(n.their_last_concession(), 0);
        assert_eq!(TitForTat { pure: false }.next_price(&n), 504);
        // Never past the limit.
        let n = neg(Role::Buyer, 500, 900, 0, &[880], &[1_000, 700]);
        assert_eq!(TitForTat { pure: true }.next_price(&n), 900);
    }

    #[test]
    fn micro_concedes_only_after_as_many_distinct_offers() {
        let s = Micro;
        assert_eq!(
            s.next_price(&neg(Role::Seller, 1_000, 600, 0, &[], &[])),
            1_000
        );
        assert_eq!(
            s.next_price(&neg(Role::Seller, 1_000, 600, 0, &[1_000], &[500])),
            960
        );
        assert_eq!(
            s.next_price(&neg(
                Role::Seller,
                1_000,
                600,
                0,
                &[1_000, 960],
                &[500, 500]
            )),
            960
        );
        assert_eq!(
            s.next_price(&neg(
                Role::Seller,
                1_000,
                600,
                0,
                &[1_000, 960],
                &[500, 510]
            )),
            920
        );
    }

    #[test]
    fn split_difference_rounds_towards_them() {
        let s = SplitDifference;
        assert_eq!(
            s.next_price(&neg(Role::Seller, 1_000, 600, 0, &[1_000], &[700])),
            850
        );
        assert_eq!(
            s.next_price(&neg(Role::Seller, 1_000, 600, 0, &[751], &[750])),
            750
        );
        assert_eq!(
            s.next_price(&neg(Role::Buyer, 500, 900, 0, &[749], &[750])),
            750
        );
        let n = neg(Role::Seller, 1_000, 600, 0, &[700], &[100]);
        assert_eq!(n.settle(s.next_price(&n)), 600, "clamped at the floor");
    }

    #[test]
    fn settle_never_steps_back() {
        let n = neg(Role::Seller, 1_000, 600, 0, &[800], &[]);
        assert_eq!(n.settle(900), 800);
        assert_eq!(n.settle(500), 600);
        let n = neg(Role::Buyer, 500, 900, 0, &[700], &[]);
        assert_eq!(n.settle(600), 700);
        assert_eq!(n.settle(950), 900);
    }

    #[test]
    fn about_to_end_a_thread_every_bargainer_takes_an_offer_within_its_limit() {
        // Tit-for-tat's and split-difference's next prices stop short of the floor; on the last
        // chance they still take 601 (above the floor 600) rather than walk away.
        let n = neg(Role::Seller, 1_000, 600, 500_000, &[950, 900], &[650, 601]);
        for b in [
            RuleBrain::tit_for_tat(0),
            RuleBrain::split_difference(0),
            RuleBrain::micro(0),
        ] {
            assert!(!b.acceptable(&n, 601, false), "{}: not yet", b.name());
            assert!(b.acceptable(&n, 601, true), "{}: at the end", b.name());
            assert!(
                !b.acceptable(&n, 599, true),
                "{}: never below the floor",
                b.name()
            );
        }
    }

    #[test]
    fn acceptance_is_against_the_next_offer() {
        let b = RuleBrain::linear(0);
        // Linear seller at t = 0.5: next 800.
        let n = neg(Role::Seller, 1_000, 600, 500_000, &[1_000], &[700]);
        assert!(b.acceptable(&n, 800, false));
        assert!(!b.acceptable(&n, 799, false));
        assert!(
            b.acceptable(&n, 600, true),
            "last chance: its offer at t = 1, the floor"
        );
        assert!(!b.acceptable(&n, 599, true));
        assert!(
            !RuleBrain::taker(0).acceptable(&n, 999, true),
            "the taker's ask stays its ask"
        );
        assert!(RuleBrain::taker(0).acceptable(&n, 1_000, true));
        let n = neg(Role::Buyer, 600, 1_000, 500_000, &[600], &[900]);
        assert!(b.acceptable(&n, 800, false));
        assert!(!b.acceptable(&n, 801, false));
        assert!(!b.acceptable(&n, 1_001, true));
    }
}
