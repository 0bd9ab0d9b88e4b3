//! An in-memory market for the core's tests: it loads a [`Scene`] for a command the way a store
//! would, runs the command, and applies the resulting [`Plan`] (all of it, or nothing on a refusal).
#![allow(dead_code)]

use haggle_core::ledger::{self, Breach, Transfer};
use haggle_core::lifecycle::{self, Reputation, Ruling};
use haggle_core::negotiation::{self, Due, NewListing};
use haggle_core::settlement::{self, Settlement};
use haggle_core::*;
use std::collections::BTreeMap;

pub type Outcome<T> = Result<T, DomainError>;

/// Where the simulated clock starts.
pub const T0: Timestamp = 1_700_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Mem {
    pub market: Market,
    pub participants: BTreeMap<ParticipantId, Participant>,
    pub listings: BTreeMap<ListingId, Listing>,
    pub threads: BTreeMap<ThreadId, Thread>,
    pub offers: BTreeMap<OfferId, Offer>,
    pub void_reasons: BTreeMap<OfferId, VoidReason>,
    pub deals: BTreeMap<DealId, Deal>,
    pub transfers: Vec<Transfer>,
    /// Materialised balances, as a store keeps them next to the transfers.
    pub balances: BTreeMap<Account, Money>,
    pub messages: Vec<Message>,
    /// Deal notes (handover, cancel, dispute, evidence, resolution) in id order.
    pub notes: Vec<DealNote>,
    pub ratings: BTreeMap<i64, Rating>,
    pub events: Vec<Event>,
    pub next_id: i64,
    /// Held listings' moderation rows: the rules that held them and why.
    pub holds: BTreeMap<ListingId, (Vec<policy::PolicyRule>, String)>,
}

impl Mem {
    pub fn new(rules: MarketRules) -> Mem {
        rules.validate().expect("valid rules");
        Mem {
            market: Market {
                id: 1,
                name: "test".into(),
                currency: "EUR".into(),
                clock_mode: ClockMode::Simulated,
                sim_now: T0,
                rules,
                created_at: T0,
            },
            participants: BTreeMap::new(),
            listings: BTreeMap::new(),
            threads: BTreeMap::new(),
            offers: BTreeMap::new(),
            void_reasons: BTreeMap::new(),
            deals: BTreeMap::new(),
            transfers: Vec::new(),
            balances: BTreeMap::new(),
            messages: Vec::new(),
            notes: Vec::new(),
            ratings: BTreeMap::new(),
            events: Vec::new(),
            next_id: 1,
            holds: BTreeMap::new(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.market.sim_now
    }

    pub fn advance(&mut self, ms: i64) {
        self.market.sim_now += ms;
    }

    // ----- loading --------------------------------------------------------------------------

    /// A buyer's money, computed as a store computes it inside the command's transaction.
    pub fn funds(&self, buyer: ParticipantId) -> Funds {
        let now = self.now();
        let deals = self.deals.values().filter(|d| d.buyer == buyer);
        Funds {
            cash: self.balance(Account::Available(buyer)),
            committed: self
                .offers
                .values()
                .filter(|o| o.buyer == buyer && o.commits_funds(now))
                .map(|o| o.price)
                .sum(),
            held: deals
                .clone()
                .filter(|d| d.status.hold_is_open())
                .map(|d| d.price)
                .sum(),
            spent: deals
                .filter(|d| {
                    !matches!(
                        d.status,
                        DealStatus::Cancelled | DealStatus::Declined | DealStatus::Refunded
                    )
                })
                .map(|d| d.price)
                .sum(),
        }
    }

    pub fn balance(&self, a: Account) -> Money {
        self.balances.get(&a).copied().unwrap_or(0)
    }

    pub fn live_offer_in(&self, thread: ThreadId) -> Option<Offer> {
        let mut live = self
            .offers
            .values()
            .filter(|o| o.thread_id == thread && o.state == OfferState::Live);
        let first = live.next().cloned();
        assert!(live.next().is_none(), "thread {thread} has two live offers");
        first
    }

    /// The scene for a command by `actor` naming a listing, a thread or an offer. Whatever is not
    /// named is derived as a store would: the offer's thread, the thread's listing, or (opening a
    /// thread) the actor's existing thread on the listing.
    pub fn scene(
        &self,
        actor: Option<ParticipantId>,
        listing: Option<ListingId>,
        thread: Option<ThreadId>,
        offer: Option<OfferId>,
    ) -> Scene {
        let mut s = Scene::new(self.market.clone(), self.now());
        s.actor = actor.map(|a| self.participants[&a].clone());
        s.offer = offer.and_then(|o| self.offers.get(&o).cloned());
        let thread = thread.or(s.offer.as_ref().map(|o| o.thread_id));
        s.thread = thread.and_then(|t| self.threads.get(&t).cloned());
        let listing = listing.or(s.thread.as_ref().map(|t| t.listing_id));
        s.listing = listing.and_then(|l| self.listings.get(&l).cloned());
        if s.thread.is_none()
            && let (Some(l), Some(a)) = (&s.listing, actor)
        {
            s.thread = self
                .threads
                .values()
                .find(|t| t.listing_id == l.id && t.counterparty == a)
                .cloned();
        }
        s.live_offer = s.thread.as_ref().and_then(|t| self.live_offer_in(t.id));
        if let Some(l) = &s.listing {
            s.listing_live_offers = self
                .offers
                .values()
                .filter(|o| o.listing_id == l.id && o.state == OfferState::Live)
                .cloned()
                .collect();
            s.listing_open_threads = self
                .threads
                .values()
                .filter(|t| t.listing_id == l.id && t.status == ThreadStatus::Open)
                .cloned()
                .collect();
            let counterparty = s.thread.as_ref().map(|t| t.counterparty).or(actor);
            if let Some(b) = counterparty.map(|c| l.buyer_with(c)) {
                s.buyer = Some((self.participants[&b].clone(), self.funds(b)));
            }
            if let Some(sl) = counterparty.map(|c| l.seller_with(c)) {
                s.seller = Some(self.participants[&sl].clone());
            }
        }
        // As the store counts them: the actor's messages and offers in its thread.
        if let (Some(t), Some(a)) = (&s.thread, actor) {
            let messages = self
                .messages
                .iter()
                .filter(|m| m.thread_id == t.id && m.author == a)
                .count();
            let offers = self
                .offers
                .values()
                .filter(|o| o.thread_id == t.id && o.proposer == a)
                .count();
            s.party_posts = (messages + offers) as u32;
        }
        // As the store counts them for the policy's rate limits, by the market's clock.
        if let Some(a) = actor {
            let now = self.now();
            s.recent_listings = self
                .listings
                .values()
                .filter(|l| l.owner == a && l.created_at > now - DAY_MS)
                .count() as u32;
            s.recent_offers = self
                .offers
                .values()
                .filter(|o| o.proposer == a && o.created_at > now - HOUR_MS)
                .count() as u32;
        }
        s
    }

    /// An operator's scene for suspending `p`: what the suspension ends, as the store loads it.
    pub fn suspension_scene(&self, p: ParticipantId) -> Scene {
        let mut s = self.scene(None, None, None, None);
        s.party_listings = self
            .listings
            .values()
            .filter(|l| {
                l.owner == p && matches!(l.status, ListingStatus::Active | ListingStatus::Held)
            })
            .cloned()
            .collect();
        s.party_live_offers = self
            .offers
            .values()
            .filter(|o| (o.buyer == p || o.seller == p) && o.state == OfferState::Live)
            .cloned()
            .collect();
        s.party_open_threads = self
            .threads
            .values()
            .filter(|t| t.is_party(p) && t.status == ThreadStatus::Open)
            .cloned()
            .collect();
        s
    }

    /// What the clock sweep finds due now (once the market closed: every live offer, open
    /// thread and active listing).
    pub fn due(&self) -> Due {
        let now = self.now();
        let closed = self.market.is_closed(now);
        Due {
            offers: self
                .offers
                .values()
                .filter(|o| o.state == OfferState::Live && (closed || o.expires_at <= now))
                .map(|o| (o.clone(), self.threads[&o.thread_id].clone()))
                .collect(),
            threads: self
                .threads
                .values()
                .filter(|t| {
                    t.status == ThreadStatus::Open
                        && (closed || t.deadline.is_some_and(|d| d <= now))
                })
                .map(|t| (t.clone(), self.live_offer_in(t.id)))
                .collect(),
            listings: if closed {
                self.listings
                    .values()
                    .filter(|l| l.status == ListingStatus::Active)
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
            deals_to_complete: self
                .deals
                .values()
                .filter(|d| {
                    d.status == DealStatus::HandedOver
                        && d.confirm_deadline.is_some_and(|x| x <= now)
                })
                .cloned()
                .collect(),
            approvals_expired: self
                .deals
                .values()
                .filter(|d| {
                    d.status == DealStatus::AwaitingApproval
                        && d.approval_deadline.is_some_and(|x| x <= now)
                })
                .map(|d| (d.clone(), self.listings[&d.listing_id].clone()))
                .collect(),
            deliveries: self
                .deals
                .values()
                .filter(|d| {
                    d.status == DealStatus::HandedOver && d.arrives_at.is_some_and(|x| x <= now)
                })
                .cloned()
                .collect(),
        }
    }

    /// The scene of a lifecycle command on `deal`, as the store loads it: the deal, its listing
    /// and the ratings already given on it. An unknown deal leaves `deal` empty (`not_found`).
    pub fn deal_scene(&self, actor: Option<ParticipantId>, deal: DealId) -> Scene {
        let mut s = Scene::new(self.market.clone(), self.now());
        s.actor = actor.map(|a| self.participants[&a].clone());
        s.deal = self.deals.get(&deal).cloned();
        if let Some(d) = &s.deal {
            s.listing = self.listings.get(&d.listing_id).cloned();
            s.ratings = self.ratings_on(deal);
        }
        s.party_notes = actor.map_or(0, |a| {
            self.notes_on(deal)
                .iter()
                .filter(|n| n.author == Some(a))
                .count() as u32
        });
        s
    }

    pub fn ratings_on(&self, deal: DealId) -> Vec<Rating> {
        self.ratings
            .values()
            .filter(|r| r.deal_id == deal)
            .cloned()
            .collect()
    }

    pub fn notes_on(&self, deal: DealId) -> Vec<&DealNote> {
        self.notes.iter().filter(|n| n.deal_id == deal).collect()
    }

    /// The ratings on `deal` anyone may read now (both sides rated, or the window closed).
    pub fn revealed_ratings(&self, deal: DealId) -> Vec<Rating> {
        let d = &self.deals[&deal];
        let on = self.ratings_on(deal);
        if lifecycle::rating_revealed(d, on.len(), &self.market.rules, self.now()) {
            on
        } else {
            Vec::new()
        }
    }

    /// A participant's reputation, computed as the store computes it.
    pub fn reputation(&self, p: ParticipantId) -> Reputation {
        let deals: Vec<Deal> = self
            .deals
            .values()
            .filter(|d| d.is_party(p))
            .cloned()
            .collect();
        let revealed: Vec<Rating> = deals
            .iter()
            .flat_map(|d| self.revealed_ratings(d.id))
            .filter(|r| r.ratee == p)
            .collect();
        lifecycle::reputation(p, &deals, &revealed)
    }

    /// The settlement report of the whole market.
    pub fn settlement(&self) -> Settlement {
        let people: Vec<Participant> = self.participants.values().cloned().collect();
        let deals: Vec<Deal> = self.deals.values().cloned().collect();
        settlement::settle(&self.market, &people, &deals, &self.transfers)
    }

    /// Escrow's ledger balance and the sum of the open holds it must equal.
    pub fn escrow_and_open_holds(&self) -> (Money, Money) {
        let open = self
            .deals
            .values()
            .filter(|d| d.status.hold_is_open())
            .map(|d| d.price)
            .sum();
        (self.balance(Account::Escrow), open)
    }

    // ----- running and applying -------------------------------------------------------------

    /// Runs one command against `scene` and applies its plan, or applies nothing if refused.
    pub fn run<T>(
        &mut self,
        mut scene: Scene,
        command: impl FnOnce(&mut Scene, &mut Plan) -> Outcome<T>,
    ) -> Outcome<T> {
        let mut plan = Plan::new(self.market.id, scene.now, self.next_id);
        let out = command(&mut scene, &mut plan)?;
        self.apply(plan);
        Ok(out)
    }

    /// Applies a plan as one transaction; a conflict a database would reject panics.
    pub fn apply(&mut self, plan: Plan) {
        assert_eq!(plan.market_id, self.market.id);
        assert!(plan.next_id >= self.next_id, "id counter went backwards");
        for c in plan.changes {
            self.apply_change(c);
        }
        for draft in plan.events {
            let prev = self
                .events
                .last()
                .map_or(GENESIS_HASH.to_string(), |e| e.hash.clone());
            let seq = self.events.len() as i64 + 1;
            self.events
                .push(Event::seal(self.market.id, seq, plan.now, &prev, draft));
        }
        self.next_id = plan.next_id;
    }

    fn apply_change(&mut self, c: Change) {
        fn insert<K: Ord + std::fmt::Debug, V>(m: &mut BTreeMap<K, V>, k: K, v: V) {
            assert!(!m.contains_key(&k), "duplicate key {k:?}");
            m.insert(k, v);
        }
        fn row<'a, K: Ord + std::fmt::Debug, V>(m: &'a mut BTreeMap<K, V>, k: &K) -> &'a mut V {
            m.get_mut(k)
                .unwrap_or_else(|| panic!("no row with key {k:?}"))
        }
        match c {
            Change::SetMarketRules(r) => self.market.rules = r,
            Change::InsertParticipant(p) => insert(&mut self.participants, p.id, p),
            Change::SetMandate {
                participant,
                mandate,
            } => row(&mut self.participants, &participant).mandate = mandate,
            Change::InsertListing(l) => insert(&mut self.listings, l.id, l),
            Change::SetListingStatus { listing, status } => {
                row(&mut self.listings, &listing).status = status
            }
            Change::InsertHold {
                listing,
                rules,
                reason,
            } => {
                assert!(
                    self.listings.contains_key(&listing),
                    "hold of unknown listing"
                );
                self.holds.insert(listing, (rules, reason));
            }
            Change::SetSuspension {
                participant,
                suspension,
            } => row(&mut self.participants, &participant).suspension = suspension,
            Change::SetListingFirstOffer { listing, at } => {
                row(&mut self.listings, &listing).first_offer_at = Some(at)
            }
            Change::InsertThread(t) => {
                assert!(
                    !self
                        .threads
                        .values()
                        .any(|x| x.listing_id == t.listing_id && x.counterparty == t.counterparty),
                    "thread is unique per (listing, counterparty)"
                );
                insert(&mut self.threads, t.id, t)
            }
            Change::UpdateThread {
                thread,
                status,
                offers_made,
                last_offer_by,
            } => {
                let t = row(&mut self.threads, &thread);
                t.status = status;
                t.offers_made = offers_made;
                t.last_offer_by = last_offer_by;
            }
            Change::InsertMessage(m) => self.messages.push(m),
            Change::InsertOffer(o) => insert(&mut self.offers, o.id, o),
            Change::SetOfferState {
                offer,
                state,
                reason,
            } => {
                row(&mut self.offers, &offer).state = state;
                if let Some(r) = reason {
                    self.void_reasons.insert(offer, r);
                }
            }
            Change::InsertDeal(d) => {
                assert!(
                    !self.deals.values().any(|x| x.listing_id == d.listing_id
                        && !matches!(x.status, DealStatus::Cancelled | DealStatus::Declined)),
                    "one non-cancelled deal per listing"
                );
                insert(&mut self.deals, d.id, d)
            }
            Change::SetDealStatus { deal, status } => row(&mut self.deals, &deal).status = status,
            Change::UpdateDeal(d) => {
                let old = row(&mut self.deals, &d.id);
                // Only the lifecycle fields change; what was agreed never does.
                assert_eq!(
                    (
                        old.listing_id,
                        old.buyer,
                        old.seller,
                        old.price,
                        &old.snapshot
                    ),
                    (d.listing_id, d.buyer, d.seller, d.price, &d.snapshot),
                    "an update changed what was agreed in deal {}",
                    d.id
                );
                *old = d;
            }
            Change::InsertDealNote(n) => {
                assert!(self.deals.contains_key(&n.deal_id), "note on unknown deal");
                self.notes.push(n);
            }
            Change::InsertRating(r) => {
                assert!(
                    !self
                        .ratings
                        .values()
                        .any(|x| x.deal_id == r.deal_id && x.rater == r.rater),
                    "rating is unique per (deal, rater)"
                );
                insert(&mut self.ratings, r.id, r)
            }
            Change::Transfer(t) => {
                assert!(
                    !self
                        .transfers
                        .iter()
                        .any(|x| x.idempotency_id == t.idempotency_id),
                    "transfer {} booked twice",
                    t.idempotency_id
                );
                *self.balances.entry(t.debit).or_default() -= t.amount;
                *self.balances.entry(t.credit).or_default() += t.amount;
                self.transfers.push(t);
            }
        }
    }

    // ----- commands -------------------------------------------------------------------------

    /// Registers a participant (operator) with a starting budget.
    pub fn register(&mut self, name: &str, mandate: Mandate, budget: Money) -> ParticipantId {
        let s = self.scene(None, None, None, None);
        self.run(s, |s, p| {
            negotiation::register_participant(s, p, name, mandate, budget)
        })
        .expect("register")
        .id
    }

    pub fn fund(&mut self, participant: ParticipantId, amount: Money) -> Outcome<()> {
        let s = self.scene(None, None, None, None);
        let p = self.participants[&participant].clone();
        self.run(s, |s, plan| negotiation::fund(s, plan, &p, amount))
    }

    /// An operator sets the mandate.
    pub fn set_mandate(&mut self, participant: ParticipantId, mandate: Mandate) -> Outcome<()> {
        self.set_mandate_by(participant, mandate, MandateAuthor::Operator)
    }

    pub fn set_mandate_by(
        &mut self,
        participant: ParticipantId,
        mandate: Mandate,
        author: MandateAuthor,
    ) -> Outcome<()> {
        let mut s = self.scene(None, None, None, None);
        let p = self.participants[&participant].clone();
        // As the store loads it: the buyer's funds and its own live, unexpired offers, oldest first.
        s.buyer = Some((p.clone(), self.funds(participant)));
        let now = self.now();
        s.own_live_offers = self
            .offers
            .values()
            .filter(|o| {
                o.buyer == participant
                    && o.proposer == participant
                    && o.state == OfferState::Live
                    && o.expires_at > now
            })
            .map(|o| (o.clone(), self.listings[&o.listing_id].category.clone()))
            .collect();
        s.own_live_offers.sort_by_key(|(o, _)| o.id);
        self.run(s, |s, plan| {
            negotiation::set_mandate(s, plan, &p, mandate, author)
        })
    }

    /// An operator replaces the market policy.
    pub fn set_policy(&mut self, policy: policy::MarketPolicy) -> Outcome<()> {
        let s = self.scene(None, None, None, None);
        self.run(s, |s, p| policy::set_policy(s, p, policy))
    }

    /// An operator approves a held listing.
    pub fn approve(&mut self, listing: ListingId) -> Outcome<Listing> {
        let s = self.scene(None, Some(listing), None, None);
        self.run(s, policy::approve_listing)
    }

    /// An operator removes a listing.
    pub fn remove(&mut self, listing: ListingId, reason: &str) -> Outcome<()> {
        let s = self.scene(None, Some(listing), None, None);
        self.run(s, |s, p| policy::remove_listing(s, p, reason))
    }

    pub fn suspend(&mut self, participant: ParticipantId, reason: &str) -> Outcome<()> {
        let s = self.suspension_scene(participant);
        let who = self.participants[&participant].clone();
        self.run(s, |s, p| policy::suspend(s, p, &who, reason))
    }

    pub fn reinstate(&mut self, participant: ParticipantId) -> Outcome<()> {
        let s = self.scene(None, None, None, None);
        let who = self.participants[&participant].clone();
        self.run(s, |s, p| policy::reinstate(s, p, &who))
    }

    pub fn post(&mut self, owner: ParticipantId, input: NewListing) -> Outcome<Listing> {
        let s = self.scene(Some(owner), None, None, None);
        self.run(s, |s, p| negotiation::create_listing(s, p, input))
    }

    /// Posts a sell ad (or, with `Side::Buy`, a wanted ad) and returns its id.
    pub fn list(
        &mut self,
        owner: ParticipantId,
        side: Side,
        category: &str,
        price: Money,
    ) -> ListingId {
        self.post(owner, new_listing(side, category, price))
            .expect("post listing")
            .id
    }

    pub fn withdraw_listing(&mut self, actor: ParticipantId, listing: ListingId) -> Outcome<()> {
        let s = self.scene(Some(actor), Some(listing), None, None);
        self.run(s, negotiation::withdraw_listing)
    }

    pub fn open(&mut self, actor: ParticipantId, listing: ListingId) -> Outcome<Thread> {
        let s = self.scene(Some(actor), Some(listing), None, None);
        self.run(s, negotiation::open_thread)
    }

    /// Opens a thread and makes an offer in it, in one plan.
    pub fn open_with_offer(
        &mut self,
        actor: ParticipantId,
        listing: ListingId,
        price: Money,
    ) -> Outcome<Offer> {
        let s = self.scene(Some(actor), Some(listing), None, None);
        self.run(s, |s, p| {
            negotiation::open_thread(s, p)?;
            negotiation::make_offer(s, p, price, None)
        })
    }

    pub fn message(
        &mut self,
        actor: ParticipantId,
        thread: ThreadId,
        body: &str,
    ) -> Outcome<Message> {
        let s = self.scene(Some(actor), None, Some(thread), None);
        self.run(s, |s, p| negotiation::post_message(s, p, body))
    }

    pub fn offer(
        &mut self,
        actor: ParticipantId,
        thread: ThreadId,
        price: Money,
    ) -> Outcome<Offer> {
        self.offer_for(actor, thread, price, None)
    }

    pub fn offer_for(
        &mut self,
        actor: ParticipantId,
        thread: ThreadId,
        price: Money,
        expires_in_ms: Option<i64>,
    ) -> Outcome<Offer> {
        let s = self.scene(Some(actor), None, Some(thread), None);
        self.run(s, |s, p| {
            negotiation::make_offer(s, p, price, expires_in_ms)
        })
    }

    pub fn accept(&mut self, actor: ParticipantId, offer: OfferId) -> Outcome<Deal> {
        let s = self.scene(Some(actor), None, None, Some(offer));
        self.run(s, negotiation::accept_offer)
    }

    pub fn reject(&mut self, actor: ParticipantId, offer: OfferId) -> Outcome<()> {
        let s = self.scene(Some(actor), None, None, Some(offer));
        self.run(s, negotiation::reject_offer)
    }

    pub fn withdraw(&mut self, actor: ParticipantId, offer: OfferId) -> Outcome<()> {
        let s = self.scene(Some(actor), None, None, Some(offer));
        self.run(s, negotiation::withdraw_offer)
    }

    pub fn walk_away(&mut self, actor: ParticipantId, thread: ThreadId) -> Outcome<()> {
        let s = self.scene(Some(actor), None, Some(thread), None);
        self.run(s, negotiation::walk_away)
    }

    /// The operator sets (or removes) the market's closing time.
    pub fn set_closing_time(&mut self, closes_at: Option<Timestamp>) -> Outcome<()> {
        let s = self.scene(None, None, None, None);
        self.run(s, |s, p| negotiation::set_closing_time(s, p, closes_at))
    }

    /// Runs the clock sweep; returns how many changes it applied.
    pub fn sweep(&mut self) -> usize {
        let s = self.scene(None, None, None, None);
        let due = self.due();
        let mut plan = Plan::new(self.market.id, s.now, self.next_id);
        negotiation::sweep(&s, &mut plan, &due);
        let n = plan.changes.len();
        self.apply(plan);
        n
    }

    // ----- deal lifecycle --------------------------------------------------------------------

    pub fn hand_over(
        &mut self,
        actor: ParticipantId,
        deal: DealId,
        note: Option<&str>,
    ) -> Outcome<Deal> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, |s, p| lifecycle::hand_over(s, p, note))
    }

    pub fn ship(
        &mut self,
        actor: ParticipantId,
        deal: DealId,
        carrier: &str,
        tracking: &str,
    ) -> Outcome<Deal> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, |s, p| lifecycle::ship(s, p, carrier, tracking))
    }

    pub fn confirm(&mut self, actor: ParticipantId, deal: DealId) -> Outcome<()> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, lifecycle::confirm_receipt)
    }

    /// Returns whether the deal is now cancelled (`false`: the request was recorded).
    pub fn cancel(
        &mut self,
        actor: ParticipantId,
        deal: DealId,
        reason: Option<&str>,
    ) -> Outcome<bool> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, |s, p| lifecycle::cancel(s, p, reason))
    }

    pub fn dispute(&mut self, actor: ParticipantId, deal: DealId, reason: &str) -> Outcome<()> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, |s, p| lifecycle::dispute(s, p, reason))
    }

    /// Evidence by a participant, or by an operator (`None`).
    pub fn evidence(
        &mut self,
        author: Option<ParticipantId>,
        deal: DealId,
        body: &str,
    ) -> Outcome<DealNote> {
        let s = self.deal_scene(author, deal);
        self.run(s, |s, p| lifecycle::add_evidence(s, p, body))
    }

    /// Resolution by an operator (`None`) or a participant (the arbiter, or anyone it refuses).
    pub fn resolve(
        &mut self,
        by: Option<ParticipantId>,
        deal: DealId,
        ruling: Ruling,
        note: &str,
    ) -> Outcome<()> {
        let s = self.deal_scene(by, deal);
        self.run(s, |s, p| lifecycle::resolve(s, p, ruling, note))
    }

    pub fn decide(&mut self, principal: ParticipantId, deal: DealId, approve: bool) -> Outcome<()> {
        let s = self.deal_scene(Some(principal), deal);
        self.run(s, |s, p| lifecycle::decide_approval(s, p, approve))
    }

    pub fn rate(
        &mut self,
        actor: ParticipantId,
        deal: DealId,
        score: u8,
        comment: &str,
    ) -> Outcome<Rating> {
        let s = self.deal_scene(Some(actor), deal);
        self.run(s, |s, p| lifecycle::rate(s, p, score, comment))
    }

    /// A deal on `listing` at `price`: the counterparty opens a thread with an offer, the
    /// listing's owner accepts it.
    pub fn deal_on(
        &mut self,
        counterparty: ParticipantId,
        listing: ListingId,
        price: Money,
    ) -> Deal {
        let owner = self.listings[&listing].owner;
        let o = self
            .open_with_offer(counterparty, listing, price)
            .expect("bid");
        self.accept(owner, o.id).expect("accept")
    }

    /// Runs `command` and asserts it is refused with `code` and left the market untouched.
    pub fn refuses<T: std::fmt::Debug>(
        &mut self,
        code: ErrorCode,
        command: impl FnOnce(&mut Mem) -> Outcome<T>,
    ) -> DomainError {
        let before = self.clone();
        let err = command(self).expect_err("the command should have been refused");
        assert_eq!(err.code, code, "refused with the wrong code: {err}");
        assert!(*self == before, "a refused command changed the market");
        err
    }

    // ----- checks ---------------------------------------------------------------------------

    pub fn ledger_breaches(&self) -> Vec<Breach> {
        let deals: Vec<Deal> = self.deals.values().cloned().collect();
        ledger::verify(&self.transfers, &deals, &self.balances)
    }

    pub fn chain_breaks(&self) -> Vec<String> {
        event::verify_chain(&self.events)
    }

    pub fn event_kinds(&self) -> Vec<&str> {
        self.events.iter().map(|e| e.kind()).collect()
    }
}

pub fn new_listing(side: Side, category: &str, price: Money) -> NewListing {
    NewListing {
        side,
        title: format!("{category} item"),
        description: "as described".into(),
        category: category.into(),
        condition: "used".into(),
        price,
        attributes: BTreeMap::from([("colour".to_string(), "blue".to_string())]),
        claims: Default::default(),
        true_state: None,
        fulfilment: Default::default(),
        true_transit: None,
    }
}
