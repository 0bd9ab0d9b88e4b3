//! The commands of the market: register and fund participants, set mandates, post and withdraw
//! listings, open threads, message, offer, accept, reject, withdraw, walk away, move the closing
//! time, and the clock sweep.
//! Each reads a [`Scene`] (the state the store loaded inside the command's transaction), checks the
//! rules of the spec, and appends changes and events to a [`Plan`]. A refusal leaves the plan unused.

use crate::error::{DomainError as E, Result};
use crate::event::*;
use crate::ledger::{Account, TransferKind};
use crate::model::*;
use crate::plan::{Change, Plan};
use std::collections::BTreeMap;

pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 4000;
pub const MAX_NAME: usize = 100;
pub const MAX_ATTRIBUTES: usize = 32;
/// What one party may add to one thread: messages and offers together. A thread therefore holds
/// at most twice this, so one party can never bury the other's words under its own.
pub const MAX_POSTS_PER_PARTY: u32 = 250;

/// The slice of market state one command needs, loaded by the store in the same transaction.
/// Commands update it as they go, so several can compose in one plan (open a thread with an offer).
#[derive(Debug, Clone)]
pub struct Scene {
    pub market: Market,
    pub now: Timestamp,
    /// The acting participant (an agent or principal acting for it); `None` for operators.
    pub actor: Option<Participant>,
    /// Whether the actor's agent or its principal (by hand) acts: a principal's pause stops
    /// its agent only.
    pub by: ActedBy,
    pub listing: Option<Listing>,
    pub thread: Option<Thread>,
    /// The thread's live offer (state `live`, possibly past its expiry).
    pub live_offer: Option<Offer>,
    /// The offer a command names (accept, reject, withdraw).
    pub offer: Option<Offer>,
    /// Every `live` offer on the listing, and every open thread on it (acceptance and withdrawal
    /// void them).
    pub listing_live_offers: Vec<Offer>,
    pub listing_open_threads: Vec<Thread>,
    /// The buyer of the thread (or of the thread the actor would open) and its money.
    pub buyer: Option<(Participant, Funds)>,
    /// The seller of the thread whose offer is accepted (its mandate's seller side is checked).
    pub seller: Option<Participant>,
    /// The deal a lifecycle command names, and the ratings already given on it.
    pub deal: Option<Deal>,
    pub ratings: Vec<Rating>,
    /// A buyer's own live offers, oldest first, with their listings' categories (a mandate
    /// change re-checks them).
    pub own_live_offers: Vec<(Offer, String)>,
    /// Messages and offers the actor has added to the scene's thread (bounded by
    /// [`MAX_POSTS_PER_PARTY`]); commands that post count on from it.
    pub party_posts: u32,
    /// Notes the actor has added to the scene's deal (bounded by `lifecycle::MAX_NOTES_PER_PARTY`).
    pub party_notes: u32,
    /// Listings the actor created in the last day and offers it made in the last hour, by the
    /// market's clock (the policy's rate limits; loaded only while the policy sets them).
    pub recent_listings: u32,
    pub recent_offers: u32,
    /// What an operator's suspension ends: the participant's active and held listings, the live
    /// offers it is buyer or seller of, and the open threads it is party to.
    pub party_listings: Vec<Listing>,
    pub party_live_offers: Vec<Offer>,
    pub party_open_threads: Vec<Thread>,
}

impl Scene {
    pub fn new(market: Market, now: Timestamp) -> Scene {
        Scene {
            market,
            now,
            actor: None,
            by: ActedBy::Agent,
            listing: None,
            thread: None,
            live_offer: None,
            offer: None,
            listing_live_offers: Vec::new(),
            listing_open_threads: Vec::new(),
            buyer: None,
            seller: None,
            deal: None,
            ratings: Vec::new(),
            own_live_offers: Vec::new(),
            party_posts: 0,
            party_notes: 0,
            recent_listings: 0,
            recent_offers: 0,
            party_listings: Vec::new(),
            party_live_offers: Vec::new(),
            party_open_threads: Vec::new(),
        }
    }

    /// Refuses one more post by the actor in its thread past [`MAX_POSTS_PER_PARTY`] (a command
    /// that posts counts `party_posts` on when it succeeds).
    fn check_posts(&self, refuse: fn(String) -> E) -> Result<()> {
        if self.party_posts >= MAX_POSTS_PER_PARTY {
            return Err(refuse(format!(
                "you have added {MAX_POSTS_PER_PARTY} messages and offers to this thread, as \
                 many as one party may: make your offer final, or walk away"
            )));
        }
        Ok(())
    }

    pub(crate) fn actor(&self) -> Result<&Participant> {
        self.actor
            .as_ref()
            .ok_or_else(|| E::forbidden("this action needs a participant's credential"))
    }

    /// The actor, refused if an operator suspended it (it may only settle the deals it agreed,
    /// see [`Scene::settler`]), froze its agent, or its principal paused it.
    pub(crate) fn trader(&self) -> Result<&Participant> {
        let a = self.actor()?;
        if let Some(why) = &a.suspension {
            return Err(E::participant_suspended(format!(
                "participant {} is suspended by an operator ({}): it can only settle the deals \
                 it already agreed",
                a.id, why.reason
            )));
        }
        self.settler()
    }

    /// The actor of a deal's lifecycle (handover, receipt, cancel, dispute, evidence, rating):
    /// refused if its agent is frozen or paused; a suspension does not stop agreed deals settling.
    pub(crate) fn settler(&self) -> Result<&Participant> {
        let a = self.actor()?;
        if a.mandate.frozen {
            return Err(E::agent_frozen(format!(
                "the agent of participant {} is frozen by an operator: it can read but not act",
                a.id
            )));
        }
        if self.by == ActedBy::Agent {
            if a.mandate.paused {
                return Err(E::agent_paused(format!(
                    "the agent of participant {} is paused by its principal: it can read but \
                     not act",
                    a.id
                )));
            }
            if a.mandate.trading_mode == TradingMode::Principal {
                return Err(E::agent_paused(format!(
                    "the principal of participant {} trades by hand (trading mode `principal`): \
                     its agent is paused and can read but not act",
                    a.id
                )));
            }
        }
        Ok(a)
    }

    /// Refuses starting anything new once the market has closed (listings, threads, messages,
    /// offers, acceptances); ending and settling what exists stays allowed.
    pub(crate) fn open_market(&self) -> Result<()> {
        match self.market.rules.closes_at {
            Some(at) if self.market.is_closed(self.now) => Err(E::market_closed(format!(
                "market {} closed at {}: nothing new can be listed, offered or accepted; deals \
                 already agreed still settle",
                self.market.id,
                utc(at)
            ))),
            _ => Ok(()),
        }
    }

    fn listing(&self) -> Result<&Listing> {
        self.listing
            .as_ref()
            .ok_or_else(|| E::not_found("listing not found"))
    }

    fn thread(&self) -> Result<&Thread> {
        self.thread
            .as_ref()
            .ok_or_else(|| E::not_found("thread not found"))
    }

    pub(crate) fn thread_visibility(&self, t: &Thread) -> Visibility {
        if self.market.rules.public_negotiations {
            Visibility::Public
        } else {
            Visibility::Parties(vec![t.owner, t.counterparty])
        }
    }

    /// Refuses acting in a thread that is closed or past its deadline.
    fn open_thread_for(&self, actor: ParticipantId) -> Result<&Thread> {
        let t = self.thread()?;
        if !t.is_party(actor) {
            return Err(E::forbidden(format!(
                "participant {actor} is not a party to thread {}",
                t.id
            )));
        }
        if t.status != ThreadStatus::Open {
            return Err(E::thread_closed(format!("thread {} is {}", t.id, t.status)));
        }
        if t.deadline.is_some_and(|d| d <= self.now) {
            return Err(E::thread_closed(format!(
                "thread {} passed its deadline",
                t.id
            )));
        }
        Ok(t)
    }

    fn active_listing(&self) -> Result<&Listing> {
        let l = self.listing()?;
        if l.status != ListingStatus::Active {
            return Err(E::listing_unavailable(format!(
                "listing {} is {}",
                l.id, l.status
            )));
        }
        Ok(l)
    }
}

/// A character no text field takes: C0 controls other than tab, newline and carriage return,
/// DEL and the C1 controls. NUL in particular is refused by PostgreSQL and kept by SQLite, so both
/// databases behave alike only if it never reaches them.
pub fn is_refused_char(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Refuses a text holding a control character (see [`is_refused_char`]), naming the field.
pub fn check_plain_text(field: &str, s: &str) -> Result<()> {
    match s.chars().find(|c| is_refused_char(*c)) {
        Some(c) => Err(E::invalid_request(format!(
            "{field} holds the control character U+{:04X}; text takes no control characters \
             other than tab and line breaks",
            c as u32
        ))),
        None => Ok(()),
    }
}

pub(crate) fn check_text(field: &str, s: &str, max: usize, required: bool) -> Result<()> {
    check_plain_text(field, s)?;
    if required && s.trim().is_empty() {
        return Err(E::invalid_request(format!("{field} must not be empty")));
    }
    if s.chars().count() > max {
        return Err(E::invalid_request(format!(
            "{field} is longer than {max} characters"
        )));
    }
    Ok(())
}

pub fn check_price(field: &str, price: Money) -> Result<()> {
    if !(1..=MAX_AMOUNT).contains(&price) {
        return Err(E::invalid_price(format!(
            "{field} must be between 1 and {MAX_AMOUNT} minor units, got {price}"
        )));
    }
    Ok(())
}

/// Funded commitments and mandate (rule 3): may `buyer` commit `price` more, given `released`
/// (a commitment of its own this action ends, e.g. the live offer it supersedes or the offer
/// being accepted)?
pub fn check_commitment(
    buyer: &Participant,
    funds: &Funds,
    listing: &Listing,
    price: Money,
    released: Money,
    now: Timestamp,
) -> Result<()> {
    let m = &buyer.mandate;
    let committed = funds.committed - released;
    if m.expires_at.is_some_and(|x| x <= now) {
        return Err(E::mandate_exceeded(format!(
            "participant {}'s mandate has expired",
            buyer.id
        )));
    }
    if let Some(cap) = m.per_deal_cap
        && price > cap
    {
        return Err(E::mandate_exceeded(format!(
            "{price} is above the mandate's per-deal cap of {cap}"
        )));
    }
    if let Some(cats) = &m.categories
        && !cats.iter().any(|c| c == &listing.category)
    {
        return Err(E::mandate_exceeded(format!(
            "the mandate does not allow buying in category '{}'",
            listing.category
        )));
    }
    if let Some(cap) = m.spend_cap
        && funds.spent + committed + price > cap
    {
        return Err(E::mandate_exceeded(format!(
            "{price} would bring spending to {} against the mandate's cap of {cap}",
            funds.spent + committed + price
        )));
    }
    if committed + price > funds.cash {
        return Err(E::insufficient_funds(format!(
            "{price} is more than the {} available after {} committed to live offers",
            funds.cash - committed,
            committed
        )));
    }
    Ok(())
}

/// The seller side of `seller`'s mandate (spec: trust.md, Seller mandates) for a sale of `l` at
/// `price`: `Ok(false)` at or above its minimum, `Ok(true)` below it when the mandate says `ask`
/// (the sale waits for the principal's approval), refused `below_seller_minimum` when it says
/// `refuse`. The messages never tell the minimum's value: the agent is only told it exists.
pub fn check_seller_minimum(
    seller: &Participant,
    l: &Listing,
    price: Money,
    actor: ParticipantId,
) -> Result<bool> {
    match seller.mandate.seller_minimum(seller.id, l) {
        Some(min) if price < min => match seller.mandate.below_min {
            BelowMin::Ask => Ok(true),
            BelowMin::Refuse if actor == seller.id => Err(E::below_seller_minimum(format!(
                "{price} is below your principal's minimum for a sale of listing {}: the market \
                 refuses it (the minimum is private; ask for more, or ask your principal)",
                l.id
            ))),
            BelowMin::Refuse => Err(E::below_seller_minimum(format!(
                "the seller's mandate does not allow selling listing {} at {price}",
                l.id
            ))),
        },
        _ => Ok(false),
    }
}

/// A new participant with its mandate and optional starting budget (operator).
pub fn register_participant(
    s: &Scene,
    plan: &mut Plan,
    name: &str,
    mandate: Mandate,
    budget: Money,
) -> Result<Participant> {
    check_text("name", name, MAX_NAME, true)?;
    mandate.validate()?;
    let mandate = Mandate {
        has_minimum: false,
        ..mandate
    };
    if !(0..=MAX_AMOUNT).contains(&budget) {
        return Err(E::invalid_request(format!(
            "budget must be between 0 and {MAX_AMOUNT}"
        )));
    }
    let p = Participant {
        id: plan.alloc_id(),
        market_id: s.market.id,
        name: name.trim().to_string(),
        mandate,
        created_at: s.now,
        suspension: None,
    };
    plan.change(Change::InsertParticipant(p.clone()));
    plan.event(
        None,
        Visibility::Public,
        EventBody::ParticipantJoined(ParticipantJoined {
            participant_id: p.id,
            name: p.name.clone(),
        }),
    );
    if budget > 0 {
        fund_participant(plan, p.id, budget);
    }
    Ok(p)
}

/// Moves budget from `funding` to the participant (operator).
pub fn fund_participant(plan: &mut Plan, participant: ParticipantId, amount: Money) {
    let id = plan.next_id;
    plan.transfer(
        Account::Funding,
        Account::Available(participant),
        amount,
        TransferKind::Fund,
        None,
        format!("fund:{id}"),
    );
}

pub fn fund(s: &Scene, plan: &mut Plan, participant: &Participant, amount: Money) -> Result<()> {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        return Err(E::invalid_request(format!(
            "amount must be between 1 and {MAX_AMOUNT}"
        )));
    }
    debug_assert_eq!(participant.market_id, s.market.id);
    fund_participant(plan, participant.id, amount);
    Ok(())
}

/// Replaces a participant's mandate (its principal or an operator).
pub fn set_mandate(
    s: &Scene,
    plan: &mut Plan,
    participant: &Participant,
    mut mandate: Mandate,
    author: MandateAuthor,
) -> Result<()> {
    mandate.validate()?;
    // `has_minimum` only describes the agent's view; the stored mandate holds the values.
    mandate.has_minimum = false;
    // The trading mode has its own command (and event); a mandate keeps it.
    mandate.trading_mode = participant.mandate.trading_mode;
    if author == MandateAuthor::Principal && mandate.frozen != participant.mandate.frozen {
        return Err(E::forbidden(if participant.mandate.frozen {
            "an operator froze this agent: only an operator lifts the freeze (a principal may \
             pause and resume its agent)"
        } else {
            "only an operator freezes an agent; a principal pauses its own (paused: true)"
        }));
    }
    // The participant's live offers were funded under the old mandate; those the new one would
    // not allow are voided now, so an acceptance never fails for lack of authority (rule 3).
    let spent = s
        .buyer
        .as_ref()
        .filter(|(b, _)| b.id == participant.id)
        .map_or(0, |(_, f)| f.spent);
    let mut kept = 0;
    for (o, category) in &s.own_live_offers {
        let allowed = mandate.per_deal_cap.is_none_or(|cap| o.price <= cap)
            && mandate
                .categories
                .as_ref()
                .is_none_or(|cs| cs.iter().any(|c| c == category))
            && mandate.expires_at.is_none_or(|x| o.expires_at <= x)
            && mandate
                .spend_cap
                .is_none_or(|cap| spent + kept + o.price <= cap);
        if allowed {
            kept += o.price;
        } else {
            plan.change(Change::SetOfferState {
                offer: o.id,
                state: OfferState::Void,
                reason: Some(VoidReason::MandateChanged),
            });
            plan.event(
                None,
                Visibility::Parties(vec![o.buyer, o.seller]),
                EventBody::OfferVoided(OfferVoided {
                    offer_id: o.id,
                    thread_id: o.thread_id,
                    reason: VoidReason::MandateChanged,
                }),
            );
        }
    }
    plan.change(Change::SetMandate {
        participant: participant.id,
        mandate: mandate.clone(),
    });
    plan.event(
        None,
        Visibility::Parties(vec![participant.id]),
        // The agent reads its party's events: the seller side's values stay out of them.
        EventBody::MandateChanged(MandateChanged {
            participant_id: participant.id,
            mandate: mandate.agent_view(),
            by: author,
        }),
    );
    Ok(())
}

/// The principal sets how its participant trades (issue 19): `agent`, `propose` or `principal`
/// (its agent paused). Setting the mode it has changes nothing and records nothing.
pub fn set_trading_mode(
    plan: &mut Plan,
    participant: &Participant,
    mode: TradingMode,
) -> Result<()> {
    if participant.mandate.trading_mode == mode {
        return Ok(());
    }
    let mandate = Mandate {
        trading_mode: mode,
        ..participant.mandate.clone()
    };
    plan.change(Change::SetMandate {
        participant: participant.id,
        mandate,
    });
    plan.event(
        Some(participant.id),
        Visibility::Parties(vec![participant.id]),
        EventBody::TradingModeChanged(TradingModeChanged {
            participant_id: participant.id,
            mode,
        }),
    );
    Ok(())
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewListing {
    pub side: Side,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub condition: String,
    pub price: Money,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The seller's claims: `condition`, `working`, `included`, free `details`.
    #[serde(default, skip_serializing_if = "crate::claims::Claims::is_empty")]
    pub claims: crate::claims::Claims,
    /// A simulated item's ground truth, accepted only by a simulated market and never shown:
    /// inspection at handover compares the claims with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_state: Option<crate::claims::Claims>,
    /// How the goods change hands: `in_person` (default) or `{"shipping": {"shipping_price": N}}`.
    #[serde(
        default,
        skip_serializing_if = "crate::shipping::Fulfilment::is_in_person"
    )]
    pub fulfilment: crate::shipping::Fulfilment,
    /// A simulated shipment's ground truth (delivery time, or lost), accepted only by a simulated
    /// market on a shipped listing and never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub true_transit: Option<crate::shipping::Transit>,
}

/// Checks a set of claims: sizes, names and every text in it.
fn check_claims(field: &str, c: &crate::claims::Claims) -> Result<()> {
    c.validate(field)?;
    for part in &c.included {
        check_text("included part", part, MAX_NAME, true)?;
    }
    for (k, v) in &c.details {
        check_text("claim name", k, MAX_NAME, true)?;
        check_text("claim value", v, MAX_TITLE, false)?;
    }
    Ok(())
}

pub fn create_listing(s: &mut Scene, plan: &mut Plan, input: NewListing) -> Result<Listing> {
    let owner = s.trader()?.clone();
    s.open_market()?;
    check_text("title", &input.title, MAX_TITLE, true)?;
    check_text("description", &input.description, MAX_TEXT, false)?;
    check_text("category", &input.category, MAX_NAME, true)?;
    check_text("condition", &input.condition, MAX_NAME, false)?;
    check_price("price", input.price)?;
    if input.attributes.len() > MAX_ATTRIBUTES {
        return Err(E::invalid_request(format!(
            "at most {MAX_ATTRIBUTES} attributes"
        )));
    }
    for (k, v) in &input.attributes {
        check_text("attribute name", k, MAX_NAME, true)?;
        check_text("attribute value", v, MAX_TITLE, false)?;
    }
    check_claims("claims", &input.claims)?;
    input.fulfilment.validate()?;
    if let Some(t) = &input.true_transit {
        if s.market.clock_mode != ClockMode::Simulated || input.fulfilment.is_in_person() {
            return Err(E::invalid_request(
                "true_transit is a simulated shipment's ground truth: only a simulated market takes it, on a shipped listing",
            ));
        }
        t.validate()?;
    }
    if let Some(t) = &input.true_state {
        if s.market.clock_mode != ClockMode::Simulated {
            return Err(E::invalid_request(
                "true_state is a simulation's ground truth: only a simulated market takes it",
            ));
        }
        check_claims("true_state", t)?;
    }
    // Market policy: a refusing rule refuses; a holding rule posts the listing for review.
    let held = crate::policy::screen_listing(&s.market.rules.policy, &input, s.recent_listings)?;
    let l = Listing {
        id: plan.alloc_id(),
        market_id: s.market.id,
        owner: owner.id,
        side: input.side,
        title: input.title.trim().to_string(),
        description: input.description,
        category: input.category.trim().to_lowercase(),
        condition: input.condition,
        price: input.price,
        attributes: input.attributes,
        status: if held.is_some() {
            ListingStatus::Held
        } else {
            ListingStatus::Active
        },
        created_at: s.now,
        first_offer_at: None,
        claims: input.claims,
        true_state: input.true_state,
        fulfilment: input.fulfilment,
        true_transit: input.true_transit,
    };
    // A sell listing below its seller minimum: refused, or (`ask`) posted, its sale then
    // waiting for the principal's approval.
    if l.side == Side::Sell {
        check_seller_minimum(&owner, &l, l.price, owner.id)?;
    }
    let owner = owner.id;
    plan.change(Change::InsertListing(l.clone()));
    match held {
        // Seen by its owner and operators only until an operator approves or removes it.
        Some(hold) => {
            plan.change(Change::InsertHold {
                listing: l.id,
                rules: hold.rules.clone(),
                reason: hold.reason.clone(),
            });
            plan.event(
                Some(owner),
                Visibility::Parties(vec![owner]),
                EventBody::ListingHeld(ListingHeld {
                    listing: l.clone(),
                    rules: hold.rules.clone(),
                    reason: hold.reason.clone(),
                }),
            );
        }
        None => plan.event(
            Some(owner),
            Visibility::Public,
            EventBody::ListingPosted(ListingPosted { listing: l.clone() }),
        ),
    }
    s.recent_listings = s.recent_listings.saturating_add(1);
    s.listing = Some(l.clone());
    Ok(l)
}

/// Voids every live offer and open thread on the scene's listing except `keep` (one winner).
pub(crate) fn void_others(s: &Scene, plan: &mut Plan, keep: Option<ThreadId>, reason: VoidReason) {
    for o in s
        .listing_live_offers
        .iter()
        .filter(|o| Some(o.thread_id) != keep)
    {
        plan.change(Change::SetOfferState {
            offer: o.id,
            state: OfferState::Void,
            reason: Some(reason),
        });
        plan.event(
            None,
            Visibility::Parties(vec![o.buyer, o.seller]),
            EventBody::OfferVoided(OfferVoided {
                offer_id: o.id,
                thread_id: o.thread_id,
                reason,
            }),
        );
    }
    for t in s.listing_open_threads.iter().filter(|t| Some(t.id) != keep) {
        plan.change(Change::UpdateThread {
            thread: t.id,
            status: ThreadStatus::Void,
            offers_made: t.offers_made,
            last_offer_by: t.last_offer_by,
        });
        plan.event(
            None,
            s.thread_visibility(t),
            EventBody::ThreadClosed(ThreadClosed {
                thread_id: t.id,
                status: ThreadStatus::Void,
                reason: reason.as_str().to_string(),
            }),
        );
    }
}

pub fn withdraw_listing(s: &mut Scene, plan: &mut Plan) -> Result<()> {
    let actor = s.trader()?.id;
    let l = s.listing()?;
    if l.owner != actor {
        return Err(E::forbidden(format!(
            "listing {} belongs to participant {}",
            l.id, l.owner
        )));
    }
    if l.status != ListingStatus::Active {
        return Err(E::invalid_transition(format!(
            "listing {} is {}, only active listings can be withdrawn",
            l.id, l.status
        )));
    }
    let id = l.id;
    void_others(s, plan, None, VoidReason::ListingWithdrawn);
    plan.change(Change::SetListingStatus {
        listing: id,
        status: ListingStatus::Withdrawn,
    });
    plan.event(
        Some(actor),
        Visibility::Public,
        EventBody::ListingWithdrawn(ListingWithdrawn {
            listing_id: id,
            reason: None,
        }),
    );
    if let Some(l) = s.listing.as_mut() {
        l.status = ListingStatus::Withdrawn;
    }
    Ok(())
}

/// Opens (or returns the existing) thread between the actor and the listing's owner.
pub fn open_thread(s: &mut Scene, plan: &mut Plan) -> Result<Thread> {
    let actor = s.trader()?.id;
    s.open_market()?;
    if let Some(t) = &s.thread {
        s.open_thread_for(actor)?;
        return Ok(t.clone());
    }
    let l = s.active_listing()?;
    if l.owner == actor {
        return Err(E::invalid_request(
            "you cannot open a thread on your own listing; the counterparty opens it",
        ));
    }
    let t = Thread {
        id: plan.alloc_id(),
        market_id: s.market.id,
        listing_id: l.id,
        owner: l.owner,
        counterparty: actor,
        status: ThreadStatus::Open,
        offers_made: 0,
        last_offer_by: None,
        created_at: s.now,
        deadline: s.market.rules.thread_time_limit_ms.map(|d| later(s.now, d)),
    };
    plan.change(Change::InsertThread(t.clone()));
    plan.event(
        Some(actor),
        s.thread_visibility(&t),
        EventBody::ThreadOpened(ThreadOpened { thread: t.clone() }),
    );
    s.thread = Some(t.clone());
    Ok(t)
}

pub fn post_message(s: &mut Scene, plan: &mut Plan, body: &str) -> Result<Message> {
    let actor = s.trader()?.id;
    s.open_market()?;
    check_text("body", body, MAX_TEXT, true)?;
    let t = s.open_thread_for(actor)?;
    s.check_posts(E::too_many_messages)?;
    let m = Message {
        id: plan.alloc_id(),
        market_id: s.market.id,
        thread_id: t.id,
        author: actor,
        body: body.to_string(),
        created_at: s.now,
    };
    plan.change(Change::InsertMessage(m.clone()));
    plan.event(
        Some(actor),
        s.thread_visibility(t),
        EventBody::MessagePosted(MessagePosted {
            message: m.clone(),
            listing_id: t.listing_id,
        }),
    );
    s.party_posts += 1;
    Ok(m)
}

/// Makes an offer in the scene's thread; a live offer it replaces becomes `superseded` (own) or
/// `countered` (the other side's), or `expired` if it had already run out.
pub fn make_offer(
    s: &mut Scene,
    plan: &mut Plan,
    price: Money,
    expires_in_ms: Option<i64>,
) -> Result<Offer> {
    let actor = s.trader()?.id;
    s.open_market()?;
    check_price("price", price)?;
    crate::policy::check_offer_rate(&s.market.rules.policy, s.recent_offers)?;
    let rules = &s.market.rules;
    let ttl = offer_ttl(rules, expires_in_ms)?;
    let l = s.active_listing()?;
    let t = s.open_thread_for(actor)?;
    if let Some(cap) = rules.max_offers_per_thread
        && t.offers_made >= cap
    {
        return Err(E::too_many_offers(format!(
            "thread {} has used all {cap} offers",
            t.id
        )));
    }
    s.check_posts(E::too_many_offers)?;
    let live = s
        .live_offer
        .as_ref()
        .filter(|o| o.state == OfferState::Live);
    if rules.strict_alternation && t.last_offer_by == Some(actor) {
        return Err(E::invalid_transition(
            "strict alternation: wait for the other side to act before offering again",
        ));
    }
    let (buyer, seller) = check_offer_authority(s, l, t, actor, price, live)?;
    let vis = s.thread_visibility(t);
    if let Some(o) = live {
        replace_live_offer(s, plan, o, t.id, actor, vis.clone());
    }
    let offer = Offer {
        id: plan.alloc_id(),
        market_id: s.market.id,
        thread_id: t.id,
        listing_id: l.id,
        proposer: actor,
        buyer,
        seller,
        price,
        state: OfferState::Live,
        created_at: s.now,
        // A buyer's offer never outlives its mandate, so an acceptance never fails for lack of
        // authority (rule 3): past the mandate's expiry the offer has expired instead.
        expires_at: match s
            .actor
            .as_ref()
            .and_then(|a| a.mandate.expires_at)
            .filter(|_| actor == buyer)
        {
            Some(until) => later(s.now, ttl).min(until),
            None => later(s.now, ttl),
        },
    };
    let offers_made = t.offers_made + 1;
    plan.change(Change::InsertOffer(offer.clone()));
    plan.change(Change::UpdateThread {
        thread: t.id,
        status: ThreadStatus::Open,
        offers_made,
        last_offer_by: Some(actor),
    });
    if l.first_offer_at.is_none() {
        plan.change(Change::SetListingFirstOffer {
            listing: l.id,
            at: s.now,
        });
    }
    plan.event(
        Some(actor),
        vis,
        EventBody::OfferMade(OfferMade {
            offer: offer.clone(),
            offers_made,
        }),
    );
    let released = live
        .filter(|o| o.commits_funds(s.now))
        .map_or(0, |o| o.price);
    note_offer_in_scene(s, &offer, released, offers_made);
    Ok(offer)
}

/// An offer's lifetime: the market's offer TTL, or a shorter one the offer names.
fn offer_ttl(rules: &MarketRules, expires_in_ms: Option<i64>) -> Result<i64> {
    match expires_in_ms {
        None => Ok(rules.offer_ttl_ms),
        Some(v) if v > 0 && v <= rules.offer_ttl_ms => Ok(v),
        Some(v) => Err(E::invalid_request(format!(
            "expires_in_ms must be between 1 and {}, got {v}",
            rules.offer_ttl_ms
        ))),
    }
}

/// Whether the actor may offer `price` in `t` on `l`: a buyer's funds and mandate must cover it
/// (with the listing's shipping price, which the deal adds), a seller's minimum must allow it.
/// Returns the thread's buyer and seller.
fn check_offer_authority(
    s: &Scene,
    l: &Listing,
    t: &Thread,
    actor: ParticipantId,
    price: Money,
    live: Option<&Offer>,
) -> Result<(ParticipantId, ParticipantId)> {
    let buyer = l.buyer_with(t.counterparty);
    let seller = l.seller_with(t.counterparty);
    if actor == buyer {
        let (bp, funds) = s
            .buyer
            .as_ref()
            .filter(|(b, _)| b.id == buyer)
            .ok_or_else(|| E::not_found("buyer not loaded"))?;
        let released = live
            .filter(|o| o.commits_funds(s.now))
            .map_or(0, |o| o.price);
        let total = price + l.fulfilment.shipping_price();
        check_commitment(bp, funds, l, total, released, s.now)?;
    }
    if actor == seller {
        check_seller_minimum(s.actor()?, l, price, actor)?;
    }
    Ok((buyer, seller))
}

/// A new offer ends the thread's live one: superseded (the actor's own), countered (the other
/// side's) or, past its expiry, expired.
fn replace_live_offer(
    s: &Scene,
    plan: &mut Plan,
    o: &Offer,
    thread: ThreadId,
    actor: ParticipantId,
    vis: Visibility,
) {
    let state = if o.expires_at <= s.now {
        OfferState::Expired
    } else if o.proposer == actor {
        OfferState::Superseded
    } else {
        OfferState::Countered
    };
    plan.change(Change::SetOfferState {
        offer: o.id,
        state,
        reason: None,
    });
    plan.event(
        Some(actor),
        vis,
        EventBody::offer_replaced(
            state,
            OfferRef {
                offer_id: o.id,
                thread_id: thread,
            },
        ),
    );
}

/// Keeps the scene current for a command composed after this offer: the buyer's committed
/// funds (less `released`, the live offer it replaced), the thread, the listing, the counts.
fn note_offer_in_scene(s: &mut Scene, offer: &Offer, released: Money, offers_made: u32) {
    if let Some(funds) = s
        .buyer
        .as_mut()
        .filter(|_| offer.proposer == offer.buyer)
        .map(|b| &mut b.1)
    {
        funds.committed += offer.price - released;
    }
    if let Some(t) = s.thread.as_mut() {
        t.offers_made = offers_made;
        t.last_offer_by = Some(offer.proposer);
    }
    if let Some(l) = s.listing.as_mut() {
        l.first_offer_at.get_or_insert(s.now);
    }
    s.live_offer = Some(offer.clone());
    s.party_posts += 1;
    s.recent_offers = s.recent_offers.saturating_add(1);
}

/// Looks up the named offer, refusing an outsider (`forbidden`) or a closed offer (`offer_not_live`).
fn live_offer_of_party(s: &Scene, actor: ParticipantId) -> Result<&Offer> {
    let o = s
        .offer
        .as_ref()
        .ok_or_else(|| E::not_found("offer not found"))?;
    if o.buyer != actor && o.seller != actor {
        return Err(E::forbidden(format!(
            "participant {actor} is not a party to offer {}",
            o.id
        )));
    }
    if o.state != OfferState::Live {
        return Err(E::offer_not_live(format!("offer {} is {}", o.id, o.state)));
    }
    Ok(o)
}

/// The named offer, if the actor is the party who may answer (accept or reject) it.
fn answerable_offer(s: &Scene, actor: ParticipantId) -> Result<&Offer> {
    let o = live_offer_of_party(s, actor)?;
    if o.proposer == actor {
        return Err(E::not_your_offer(format!(
            "offer {} is your own; only the other side can accept or reject it",
            o.id
        )));
    }
    Ok(o)
}

/// Accepts a live offer: creates the deal, takes the escrow hold, voids every other live offer and
/// open thread on the listing, and marks the listing sold — all in this one plan.
pub fn accept_offer(s: &mut Scene, plan: &mut Plan) -> Result<Deal> {
    let actor = s.trader()?.id;
    s.open_market()?;
    let (l, o, t) = acceptable_offer(s, actor)?;
    let approval_from = check_acceptance_authority(s, l, o, t, actor)?;
    let deal = new_deal(s, plan, l, o, t, approval_from);
    let vis = s.thread_visibility(t);
    plan.change(Change::SetOfferState {
        offer: o.id,
        state: OfferState::Accepted,
        reason: None,
    });
    plan.event(
        Some(actor),
        vis,
        EventBody::OfferAccepted(OfferRef {
            offer_id: o.id,
            thread_id: t.id,
        }),
    );
    plan.change(Change::UpdateThread {
        thread: t.id,
        status: ThreadStatus::Agreed,
        offers_made: t.offers_made,
        last_offer_by: t.last_offer_by,
    });
    void_others(s, plan, Some(t.id), VoidReason::ListingSold);
    plan.change(Change::SetListingStatus {
        listing: l.id,
        status: ListingStatus::Sold,
    });
    plan.change(Change::InsertDeal(deal.clone()));
    plan.event(
        Some(actor),
        Visibility::Parties(vec![deal.buyer, deal.seller]),
        EventBody::DealCreated(DealCreated { deal: deal.clone() }),
    );
    plan.event(
        Some(actor),
        Visibility::Public,
        EventBody::ListingSold(ListingSold {
            listing_id: l.id,
            deal_id: deal.id,
            price: deal.price,
            title: l.title.clone(),
        }),
    );
    plan.transfer(
        Account::Available(deal.buyer),
        Account::Escrow,
        deal.price,
        TransferKind::Hold,
        Some(deal.id),
        format!("hold:deal:{}", deal.id),
    );
    if let Some(l) = s.listing.as_mut() {
        l.status = ListingStatus::Sold;
    }
    Ok(deal)
}

/// The listing, offer and thread of an acceptance, once the actor may accept the offer now: a
/// party, not its proposer, on an active listing, before the offer expires and (for a seller)
/// after the collection window.
fn acceptable_offer(s: &Scene, actor: ParticipantId) -> Result<(&Listing, &Offer, &Thread)> {
    let l = s.listing()?;
    if let Some(o) = &s.offer
        && o.buyer != actor
        && o.seller != actor
    {
        return Err(E::forbidden(format!(
            "participant {actor} is not a party to offer {}",
            o.id
        )));
    }
    if l.status != ListingStatus::Active {
        return Err(E::listing_unavailable(format!(
            "listing {} is {}",
            l.id, l.status
        )));
    }
    // Rule 5 holds whether or not a sweep has already marked the offer `expired` (advancing a
    // simulated clock sweeps at once, so otherwise `offer_expired` could never be seen there).
    if let Some(o) = &s.offer
        && o.state == OfferState::Expired
    {
        return Err(E::offer_expired(format!("offer {} expired", o.id)));
    }
    let o = answerable_offer(s, actor)?;
    if o.expires_at <= s.now {
        return Err(E::offer_expired(format!("offer {} expired", o.id)));
    }
    let t = s.open_thread_for(actor)?;
    if actor == o.seller
        && let (Some(window), Some(first)) = (s.market.rules.collection_window_ms, l.first_offer_at)
        && s.now < first + window
    {
        return Err(E::invalid_transition(format!(
            "the collection window is open until {}: offers cannot be accepted yet",
            first + window
        )));
    }
    Ok((l, o, t))
}

/// The buyer's funds and mandate must cover the deal's price (the offer plus any shipping), the
/// seller's minimum must allow the offer's; returns whose principal must approve, if anyone's.
fn check_acceptance_authority(
    s: &Scene,
    l: &Listing,
    o: &Offer,
    t: &Thread,
    actor: ParticipantId,
) -> Result<Option<Approver>> {
    let (buyer, funds) = s
        .buyer
        .as_ref()
        .filter(|(b, _)| b.id == o.buyer)
        .ok_or_else(|| E::not_found("buyer not loaded"))?;
    // This acceptance ends the accepted offer and (voiding the listing's other threads) every other
    // live offer the buyer has on the listing: none of them still counts against the new hold.
    let released: Money = s
        .listing_live_offers
        .iter()
        .filter(|x| x.thread_id != t.id && x.buyer == o.buyer && x.commits_funds(s.now))
        .map(|x| x.price)
        .sum::<Money>()
        + if o.commits_funds(s.now) { o.price } else { 0 };
    let total = o.price + l.fulfilment.shipping_price();
    check_commitment(buyer, funds, l, total, released, s.now)?;
    let seller = if actor == o.seller {
        s.actor()?
    } else {
        s.seller
            .as_ref()
            .filter(|p| p.id == o.seller)
            .ok_or_else(|| E::not_found("seller not loaded"))?
    };
    let seller_asks = check_seller_minimum(seller, l, o.price, actor)?;
    let buyer_asks = buyer.mandate.approval_above.is_some_and(|x| total > x);
    Ok(match (buyer_asks, seller_asks) {
        (true, true) => Some(Approver::Both),
        (false, true) => Some(Approver::Seller),
        (true, false) => Some(Approver::Buyer),
        (false, false) => None,
    })
}

/// The deal an acceptance creates: agreed, or awaiting `approval_from`'s approval; a shipped
/// listing's deal adds its shipping price to the offer's and starts the shipping window.
fn new_deal(
    s: &Scene,
    plan: &mut Plan,
    l: &Listing,
    o: &Offer,
    t: &Thread,
    approval_from: Option<Approver>,
) -> Deal {
    let awaiting = approval_from.is_some();
    let shipping = match l.fulfilment {
        crate::shipping::Fulfilment::InPerson => None,
        crate::shipping::Fulfilment::Shipping { shipping_price } => {
            Some(crate::shipping::Shipping::agreed(
                shipping_price,
                s.now,
                s.market.rules.shipping_window(),
            ))
        }
    };
    Deal {
        id: plan.alloc_id(),
        market_id: s.market.id,
        listing_id: l.id,
        thread_id: t.id,
        offer_id: o.id,
        buyer: o.buyer,
        seller: o.seller,
        price: o.price + l.fulfilment.shipping_price(),
        status: if awaiting {
            DealStatus::AwaitingApproval
        } else {
            DealStatus::Agreed
        },
        snapshot: l.snapshot(),
        created_at: s.now,
        approval_deadline: awaiting.then_some(later(s.now, s.market.rules.approval_window_ms)),
        approval_from: approval_from.unwrap_or_default(),
        handover_note: None,
        handed_over_at: None,
        confirm_deadline: None,
        cancel_requested_by: None,
        finished_at: None,
        resolution: None,
        inspection: None,
        dispute: None,
        payment: None,
        shipping,
        arrives_at: None,
    }
}

/// Ends a thread whose offers are used up without a deal (rule 7).
fn time_out_if_capped(
    s: &Scene,
    plan: &mut Plan,
    t: &Thread,
    last_offer_by: Option<ParticipantId>,
) {
    let capped = s
        .market
        .rules
        .max_offers_per_thread
        .is_some_and(|cap| t.offers_made >= cap);
    let status = if capped {
        ThreadStatus::TimedOut
    } else {
        ThreadStatus::Open
    };
    plan.change(Change::UpdateThread {
        thread: t.id,
        status,
        offers_made: t.offers_made,
        last_offer_by,
    });
    if capped {
        plan.event(
            None,
            s.thread_visibility(t),
            EventBody::ThreadClosed(ThreadClosed {
                thread_id: t.id,
                status,
                reason: "offer_cap_reached".into(),
            }),
        );
    }
}

pub fn reject_offer(s: &mut Scene, plan: &mut Plan) -> Result<()> {
    let actor = s.trader()?.id;
    let o = answerable_offer(s, actor)?;
    let t = s.open_thread_for(actor)?;
    plan.change(Change::SetOfferState {
        offer: o.id,
        state: OfferState::Rejected,
        reason: None,
    });
    plan.event(
        Some(actor),
        s.thread_visibility(t),
        EventBody::OfferRejected(OfferRef {
            offer_id: o.id,
            thread_id: t.id,
        }),
    );
    // Rejecting is the other side acting, so strict alternation lets the proposer offer again.
    time_out_if_capped(s, plan, t, None);
    Ok(())
}

pub fn withdraw_offer(s: &mut Scene, plan: &mut Plan) -> Result<()> {
    let actor = s.trader()?.id;
    let o = live_offer_of_party(s, actor)?;
    if o.proposer != actor {
        return Err(E::not_your_offer(format!(
            "offer {} was made by the other side; reject it instead",
            o.id
        )));
    }
    let t = s.open_thread_for(actor)?;
    plan.change(Change::SetOfferState {
        offer: o.id,
        state: OfferState::Withdrawn,
        reason: None,
    });
    plan.event(
        Some(actor),
        s.thread_visibility(t),
        EventBody::OfferWithdrawn(OfferRef {
            offer_id: o.id,
            thread_id: t.id,
        }),
    );
    time_out_if_capped(s, plan, t, t.last_offer_by);
    Ok(())
}

pub fn walk_away(s: &mut Scene, plan: &mut Plan) -> Result<()> {
    let actor = s.trader()?.id;
    let t = s.open_thread_for(actor)?;
    if let Some(o) = s
        .live_offer
        .as_ref()
        .filter(|o| o.state == OfferState::Live)
    {
        plan.change(Change::SetOfferState {
            offer: o.id,
            state: OfferState::Void,
            reason: Some(VoidReason::WalkedAway),
        });
        plan.event(
            Some(actor),
            s.thread_visibility(t),
            EventBody::OfferVoided(OfferVoided {
                offer_id: o.id,
                thread_id: t.id,
                reason: VoidReason::WalkedAway,
            }),
        );
    }
    plan.change(Change::UpdateThread {
        thread: t.id,
        status: ThreadStatus::Broken,
        offers_made: t.offers_made,
        last_offer_by: t.last_offer_by,
    });
    plan.event(
        Some(actor),
        s.thread_visibility(t),
        EventBody::ThreadClosed(ThreadClosed {
            thread_id: t.id,
            status: ThreadStatus::Broken,
            reason: "walked_away".into(),
        }),
    );
    Ok(())
}

/// The operator sets, moves or removes the market's closing time (an extension of the spec).
/// A time already past closes the market at the next sweep. Moving it later reopens trading, but
/// listings that expired at the earlier close stay expired (their owners post them again).
pub fn set_closing_time(
    s: &mut Scene,
    plan: &mut Plan,
    closes_at: Option<Timestamp>,
) -> Result<()> {
    if s.actor.is_some() {
        return Err(E::forbidden(
            "only an operator sets the market's closing time",
        ));
    }
    check_closing_time("closes_at", closes_at)?;
    let previous = s.market.rules.closes_at;
    let mut rules = s.market.rules.clone();
    rules.closes_at = closes_at;
    plan.change(Change::SetMarketRules(rules.clone()));
    plan.event(
        None,
        Visibility::Public,
        EventBody::MarketClosingSet(MarketClosingSet {
            closes_at,
            previous,
        }),
    );
    s.market.rules = rules;
    Ok(())
}

/// What the clock sweep found due: live offers past expiry (with their threads) and open threads
/// past their deadline (with their live offer). Once the market has closed, every live offer,
/// every open thread and every active listing is due (the store loads them bounded per pass).
#[derive(Debug, Clone, Default)]
pub struct Due {
    pub offers: Vec<(Offer, Thread)>,
    pub threads: Vec<(Thread, Option<Offer>)>,
    /// Handed-over deals whose confirmation window passed without a dispute.
    pub deals_to_complete: Vec<Deal>,
    /// Deals awaiting approval past their approval deadline, with their listings.
    pub approvals_expired: Vec<(Deal, Listing)>,
    /// Shipped deals a simulated carrier delivers by now (`Deal::arrives_at`).
    pub deliveries: Vec<Deal>,
    /// Active listings of a closed market.
    pub listings: Vec<Listing>,
}

/// Applies the market clock: expires offers, times out threads, and once the market has closed
/// ends every negotiation and expires every active listing (an offer's expiry frees the buyer's
/// committed funds; no money moves). Idempotent: running it twice at the same time changes
/// nothing the second time.
pub fn sweep(s: &Scene, plan: &mut Plan, due: &Due) {
    let market_closed = s.market.is_closed(s.now);
    let mut closed = std::collections::BTreeSet::new();
    let mut ended = std::collections::BTreeSet::new();
    for (t, live) in &due.threads {
        let past_deadline = t.deadline.is_some_and(|d| d <= s.now);
        if t.status != ThreadStatus::Open || !(past_deadline || market_closed) {
            continue;
        }
        if let Some(o) = live.as_ref().filter(|o| o.state == OfferState::Live) {
            if past_deadline {
                plan.change(Change::SetOfferState {
                    offer: o.id,
                    state: OfferState::Void,
                    reason: Some(VoidReason::ThreadTimedOut),
                });
            } else {
                let reason = (o.expires_at > s.now).then_some("market_closed");
                expire_offer(s, plan, o, t, reason);
            }
            ended.insert(o.id);
        }
        plan.change(Change::UpdateThread {
            thread: t.id,
            status: ThreadStatus::TimedOut,
            offers_made: t.offers_made,
            last_offer_by: t.last_offer_by,
        });
        let reason = if past_deadline {
            "deadline_passed"
        } else {
            "market_closed"
        };
        plan.event(
            None,
            s.thread_visibility(t),
            EventBody::ThreadClosed(ThreadClosed {
                thread_id: t.id,
                status: ThreadStatus::TimedOut,
                reason: reason.to_string(),
            }),
        );
        closed.insert(t.id);
    }
    for (o, t) in &due.offers {
        let past_expiry = o.expires_at <= s.now;
        if o.state != OfferState::Live
            || !(past_expiry || market_closed)
            || ended.contains(&o.id)
            || closed.contains(&t.id)
        {
            continue;
        }
        expire_offer(s, plan, o, t, (!past_expiry).then_some("market_closed"));
        // A closed market's threads all time out (this pass or the next).
        if t.status == ThreadStatus::Open && !market_closed {
            time_out_if_capped(s, plan, t, t.last_offer_by);
        }
    }
    if market_closed {
        for l in due
            .listings
            .iter()
            .filter(|l| l.status == ListingStatus::Active)
        {
            plan.change(Change::SetListingStatus {
                listing: l.id,
                status: ListingStatus::Expired,
            });
            plan.event(
                None,
                Visibility::Public,
                EventBody::ListingExpired(ListingExpired {
                    listing_id: l.id,
                    deal_id: None,
                    title: Some(l.title.clone()),
                    reason: "market_closed".into(),
                }),
            );
        }
    }
    crate::lifecycle::sweep_deals(s, plan, due);
}

/// Marks a live offer `expired`: past its own expiry (`reason` none) or at the market's close.
fn expire_offer(s: &Scene, plan: &mut Plan, o: &Offer, t: &Thread, reason: Option<&str>) {
    plan.change(Change::SetOfferState {
        offer: o.id,
        state: OfferState::Expired,
        reason: None,
    });
    let payload = OfferExpired {
        offer_id: o.id,
        thread_id: t.id,
        reason: reason.map(str::to_string),
    };
    plan.event(
        None,
        s.thread_visibility(t),
        EventBody::OfferExpired(payload),
    );
}
