//! Test support: builders for the brain's `View` and a tiny two-party negotiation simulator (one
//! sell listing, one thread, no market) that alternates `decide()` calls of a seller and a buyer
//! and applies their actions the way the market's negotiation rules would.
#![allow(dead_code)]

use haggle_agents::brain::{Action, Brain, Candidate, Role, ThreadState, View};
use haggle_agents::profile::Profile;
use haggle_api::haggle_core::lifecycle::Reputation;
use haggle_api::haggle_core::{
    Deal, DealStatus, Listing, ListingSnapshot, ListingStatus, Offer, OfferState, Side, Thread,
    ThreadStatus,
};
use haggle_api::{Balance, ListingView, ThreadDetail, ThreadView};
use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

pub const SELLER: i64 = 1;
pub const BUYER: i64 = 2;
pub const LISTING: i64 = 100;
pub const THREAD: i64 = 200;
pub const ITEM: &str = "bike";
pub const WANT: &str = "want-bike";
pub const FAR_FUTURE: i64 = i64::MAX / 2;

/// Runs a brain's future to completion (rule brains never wait on anything).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the brain's future never completed");
}

pub fn decide(brain: &mut dyn Brain, profile: &Profile, view: &View) -> Vec<Action> {
    block_on(brain.decide(profile, view))
}

pub fn seller_profile(ask: i64, floor: i64) -> Profile {
    Profile::from_toml(&format!(
        r#"
        name = "seller"
        budget = 0
        [[sell]]
        item_id = "{ITEM}"
        item_type = "road bike"
        title = "Steel road bike"
        description = "Lugged frame."
        category = "bikes"
        asking_price = {ask}
        floor_price = {floor}
        "#
    ))
    .unwrap()
}

pub fn buyer_profile(max: i64, budget: i64) -> Profile {
    Profile::from_toml(&format!(
        r#"
        name = "buyer"
        budget = {budget}
        [[want]]
        want_id = "{WANT}"
        item_type = "road bike"
        description = "A road bike"
        category = "bikes"
        max_price = {max}
        "#
    ))
    .unwrap()
}

pub fn listing(id: i64, owner: i64, side: Side, price: i64, attr: Option<(&str, &str)>) -> Listing {
    let mut attributes = BTreeMap::new();
    if let Some((k, v)) = attr {
        attributes.insert(k.to_string(), v.to_string());
    }
    Listing {
        id,
        market_id: 1,
        owner,
        side,
        title: format!("listing {id}"),
        description: String::new(),
        category: "bikes".into(),
        condition: String::new(),
        price,
        attributes,
        status: ListingStatus::Active,
        created_at: 0,
        first_offer_at: None,
        claims: Default::default(),
        true_state: None,
        fulfilment: Default::default(),
        true_transit: None,
    }
}

pub fn listing_view(l: &Listing) -> ListingView {
    ListingView {
        listing: l.clone(),
        owner_reputation: Reputation {
            participant_id: l.owner,
            ..Reputation::default()
        },
    }
}

pub fn candidate(want_or_item: &str, l: &Listing) -> Candidate {
    Candidate {
        want_id: want_or_item.to_string(),
        listing: listing_view(l),
    }
}

pub fn balance(available: i64) -> Balance {
    Balance {
        available,
        held_in_escrow: 0,
        committed_to_offers: 0,
        held: 0,
        total: available,
    }
}

pub fn empty_view(me: i64, available: i64) -> View {
    View {
        now: 1_000,
        round: 0,
        me,
        balance: balance(available),
        my_listings: Vec::new(),
        unlisted: Vec::new(),
        unmet_wants: Vec::new(),
        threads: Vec::new(),
        deals: Vec::new(),
        candidates: Vec::new(),
        buyer_leads: Vec::new(),
        new_events: Vec::new(),
    }
}

pub fn offer(
    id: i64,
    thread: &Thread,
    listing: &Listing,
    proposer: i64,
    price: i64,
    state: OfferState,
) -> Offer {
    let buyer = listing.buyer_with(thread.counterparty);
    let seller = listing.seller_with(thread.counterparty);
    Offer {
        id,
        market_id: 1,
        thread_id: thread.id,
        listing_id: listing.id,
        proposer,
        buyer,
        seller,
        price,
        state,
        created_at: 0,
        expires_at: FAR_FUTURE,
    }
}

pub fn thread(id: i64, l: &Listing, counterparty: i64, offers_made: u32) -> Thread {
    Thread {
        id,
        market_id: 1,
        listing_id: l.id,
        owner: l.owner,
        counterparty,
        status: ThreadStatus::Open,
        offers_made,
        last_offer_by: None,
        created_at: 0,
        deadline: None,
    }
}

/// A thread as its party sees it, with a cap of `cap` offers (`None`: no cap).
pub fn thread_state(
    t: &Thread,
    l: &Listing,
    offers: Vec<Offer>,
    cap: Option<u32>,
    role: Role,
    subject: &str,
    turns: u32,
) -> ThreadState {
    let live = offers.iter().find(|o| o.state == OfferState::Live);
    let detail = ThreadDetail {
        thread: t.clone(),
        messages: Vec::new(),
        offers: offers.clone(),
    };
    let rules = haggle_api::haggle_core::MarketRules {
        max_offers_per_thread: cap,
        ..Default::default()
    };
    ThreadState {
        thread: ThreadView {
            summary: haggle_api::haggle_core::ThreadSummary::of(&detail, &rules, None, 0),
            offers_remaining: cap.map(|c| c.saturating_sub(t.offers_made)),
            live_offer_expires_at: live.map(|o| o.expires_at),
            elapsed_ppm: cap.map_or(0, |c| {
                (t.offers_made as u64 * 1_000_000 / c as u64).min(1_000_000) as u32
            }),
            detail,
        },
        listing: l.clone(),
        role,
        subject: Some(subject.to_string()),
        turns,
        seller_record: None,
    }
}

pub fn deal(id: i64, buyer: i64, seller: i64, price: i64, status: DealStatus) -> Deal {
    let l = listing(LISTING, seller, Side::Sell, price, Some(("item_id", ITEM)));
    Deal {
        id,
        market_id: 1,
        listing_id: l.id,
        thread_id: THREAD,
        offer_id: 1,
        buyer,
        seller,
        price,
        status,
        snapshot: ListingSnapshot {
            side: l.side,
            title: l.title.clone(),
            description: l.description.clone(),
            category: l.category.clone(),
            condition: l.condition.clone(),
            price,
            attributes: l.attributes.clone(),
            claims: Default::default(),
            fulfilment: Default::default(),
        },
        created_at: 0,
        approval_deadline: None,
        approval_from: Default::default(),
        handover_note: None,
        handed_over_at: None,
        confirm_deadline: None,
        cancel_requested_by: None,
        finished_at: None,
        resolution: None,
        inspection: None,
        dispute: None,
        payment: None,
        shipping: None,
        arrives_at: None,
    }
}

/// What happened in one simulated negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The agreed price, if any.
    pub price: Option<i64>,
    /// The thread's final status (`None` if no thread was opened).
    pub status: Option<ThreadStatus>,
    /// Every offer made, as (proposer, price), in order.
    pub offers: Vec<(i64, i64)>,
    /// Refused actions: (who, error code).
    pub refusals: Vec<(i64, String)>,
    /// Each turn: who, and the actions decided.
    pub transcript: Vec<(i64, Vec<Action>)>,
}

impl Outcome {
    pub fn offers_by(&self, who: i64) -> Vec<i64> {
        self.offers
            .iter()
            .filter(|(p, _)| *p == who)
            .map(|(_, x)| *x)
            .collect()
    }
}

/// One seller (owning one active sell listing) and one buyer; the buyer moves first.
pub struct Sim {
    pub cap: u32,
    /// The market closes a thread (`timed_out`) when its last offer is made; `false` keeps it
    /// open so further offers get `too_many_offers`.
    pub close_at_cap: bool,
    pub seller: Profile,
    pub buyer: Profile,
    pub listing: Listing,
    pub thread: Option<Thread>,
    pub offers: Vec<Offer>,
    next_offer: i64,
    turns_on_thread: BTreeMap<i64, u32>,
    pub price: Option<i64>,
    pub out: Outcome,
}

impl Sim {
    pub fn new(seller: Profile, buyer: Profile, cap: u32) -> Sim {
        let item = &seller.sell[0];
        let listing = listing(
            LISTING,
            SELLER,
            Side::Sell,
            item.asking_price,
            Some(("item_id", &item.item_id)),
        );
        Sim {
            cap,
            close_at_cap: true,
            seller,
            buyer,
            listing,
            thread: None,
            offers: Vec::new(),
            next_offer: 1,
            turns_on_thread: BTreeMap::new(),
            price: None,
            out: Outcome {
                price: None,
                status: None,
                offers: Vec::new(),
                refusals: Vec::new(),
                transcript: Vec::new(),
            },
        }
    }

    fn live_buyer_offers(&self) -> i64 {
        self.offers
            .iter()
            .filter(|o| o.state == OfferState::Live && o.proposer == BUYER)
            .map(|o| o.price)
            .sum()
    }

    pub fn view_for(&self, who: i64) -> View {
        let mut v = empty_view(who, 0);
        if who == BUYER {
            v.balance =
                balance(self.buyer.budget - self.live_buyer_offers() - self.price.unwrap_or(0));
            if self.price.is_none() {
                v.unmet_wants = vec![WANT.into()];
            }
            if self.thread.is_none() {
                v.candidates = vec![candidate(WANT, &self.listing)];
            }
        } else {
            v.my_listings = vec![self.listing.clone()];
        }
        if let Some(t) = self
            .thread
            .as_ref()
            .filter(|t| t.status == ThreadStatus::Open)
        {
            let (role, subject) = if who == BUYER {
                (Role::Buyer, WANT)
            } else {
                (Role::Seller, ITEM)
            };
            let turns = self.turns_on_thread.get(&who).copied().unwrap_or(0);
            v.threads = vec![thread_state(
                t,
                &self.listing,
                self.offers.clone(),
                Some(self.cap),
                role,
                subject,
                turns,
            )];
        }
        v
    }

    fn refuse(&mut self, who: i64, code: &str) {
        self.out.refusals.push((who, code.to_string()));
    }

    fn close(&mut self, status: ThreadStatus) {
        if let Some(t) = self.thread.as_mut() {
            t.status = status;
        }
        for o in &mut self.offers {
            if o.state == OfferState::Live {
                o.state = OfferState::Void;
            }
        }
    }

    fn make_offer(&mut self, who: i64, price: i64) {
        let Some(t) = self.thread.clone() else {
            return self.refuse(who, "not_found");
        };
        if t.status != ThreadStatus::Open {
            return self.refuse(who, "thread_closed");
        }
        if t.offers_made >= self.cap {
            return self.refuse(who, "too_many_offers");
        }
        if who == BUYER {
            let own: i64 = self
                .offers
                .iter()
                .filter(|o| o.state == OfferState::Live && o.proposer == BUYER)
                .map(|o| o.price)
                .sum();
            let available = self.buyer.budget - self.live_buyer_offers();
            if price - own > available {
                return self.refuse(who, "insufficient_funds");
            }
        }
        for o in &mut self.offers {
            if o.state == OfferState::Live {
                o.state = if o.proposer == who {
                    OfferState::Superseded
                } else {
                    OfferState::Countered
                };
            }
        }
        let id = self.next_offer;
        self.next_offer += 1;
        self.offers
            .push(offer(id, &t, &self.listing, who, price, OfferState::Live));
        self.out.offers.push((who, price));
        let t = self.thread.as_mut().unwrap();
        t.offers_made += 1;
        t.last_offer_by = Some(who);
        if t.offers_made >= self.cap && self.close_at_cap {
            self.close(ThreadStatus::TimedOut);
        }
    }

    pub fn apply(&mut self, who: i64, actions: &[Action]) {
        for a in actions {
            match a {
                Action::OpenThread {
                    listing_id, price, ..
                } => {
                    if who != BUYER || *listing_id != LISTING || self.thread.is_some() {
                        self.refuse(who, "invalid_request");
                        continue;
                    }
                    self.thread = Some(thread(THREAD, &self.listing, BUYER, 0));
                    if let Some(p) = price {
                        self.make_offer(who, *p);
                    }
                }
                Action::Offer { thread_id, price } => {
                    if *thread_id != THREAD {
                        self.refuse(who, "not_found");
                    } else {
                        self.make_offer(who, *price);
                    }
                }
                Action::Accept { offer_id } => {
                    let open = self
                        .thread
                        .as_ref()
                        .is_some_and(|t| t.status == ThreadStatus::Open);
                    let Some(o) = self.offers.iter_mut().find(|o| o.id == *offer_id) else {
                        self.refuse(who, "not_found");
                        continue;
                    };
                    if !open || o.state != OfferState::Live || o.proposer == who {
                        self.refuse(who, "offer_not_live");
                        continue;
                    }
                    o.state = OfferState::Accepted;
                    self.price = Some(o.price);
                    self.out.price = Some(o.price);
                    self.thread.as_mut().unwrap().status = ThreadStatus::Agreed;
                }
                Action::WalkAway { thread_id } => {
                    let open = self
                        .thread
                        .as_ref()
                        .is_some_and(|t| t.status == ThreadStatus::Open && t.id == *thread_id);
                    if open {
                        self.close(ThreadStatus::Broken);
                    } else {
                        self.refuse(who, "thread_closed");
                    }
                }
                Action::Message { .. } | Action::ListItem { .. } | Action::PostWanted { .. } => {}
                other => panic!("unexpected action in a negotiation: {other:?}"),
            }
        }
    }

    /// Alternates turns (buyer first) until the thread ends, then gives each side `after` more
    /// turns; at most `max_turns` turns before that.
    pub fn run(
        &mut self,
        seller: &mut dyn Brain,
        buyer: &mut dyn Brain,
        max_turns: usize,
        after: usize,
    ) -> Outcome {
        let mut turn = 0;
        let mut left_after: Option<usize> = None;
        loop {
            match left_after.as_mut() {
                Some(0) => break,
                Some(n) => *n -= 1,
                None if turn >= max_turns => break,
                None => {}
            }
            let who = if turn % 2 == 0 { BUYER } else { SELLER };
            let view = self.view_for(who);
            let actions = if who == BUYER {
                decide(buyer, &self.buyer, &view)
            } else {
                decide(seller, &self.seller, &view)
            };
            if !view.threads.is_empty() {
                *self.turns_on_thread.entry(who).or_default() += 1;
            }
            self.apply(who, &actions);
            self.out.transcript.push((who, actions));
            if left_after.is_none()
                && self
                    .thread
                    .as_ref()
                    .is_some_and(|t| t.status != ThreadStatus::Open)
            {
                left_after = Some(2 * after);
            }
            turn += 1;
        }
        self.out.status = self.thread.as_ref().map(|t| t.status);
        self.out.clone()
    }
}

/// Runs one negotiation between two named brains.
pub fn negotiate(
    seller_brain: &str,
    buyer_brain: &str,
    seed: u64,
    (ask, floor, max): (i64, i64, i64),
    cap: u32,
) -> Outcome {
    let mut s = haggle_agents::registry::brain_from_name(seller_brain, seed).unwrap();
    let mut b =
        haggle_agents::registry::brain_from_name(buyer_brain, seed.wrapping_add(1)).unwrap();
    let mut sim = Sim::new(
        seller_profile(ask, floor),
        buyer_profile(max, 10 * max),
        cap,
    );
    sim.run(s.as_mut(), b.as_mut(), 4 * cap as usize + 8, 0)
}
