//! What a sole-writer store remembers of each market besides its shelves: the market row, its
//! participants, its deals and threads by party (with each thread's messages and offers), the
//! ratings each participant received, each participant's cash and live bids, the seqs of the
//! events naming each participant and the newest events. Committed changes are applied here
//! after their commit, so the reads agents make on every turn (reputation, own deals and threads,
//! funds, "anything new for me?") and the scene every command loads need no SQL.
//!
//! Every answer must be the one the tables give; the conformance suite runs its behaviours
//! against a batched store to hold that.

use haggle_core::plan::Change;
use haggle_core::{
    Account, ClockMode, Deal, Event, Funds, Market, Message, Offer, OfferState, Participant,
    Rating, Thread, ThreadDetail, Visibility, lifecycle,
};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The newest events kept whole, for the parties' feeds (agents read their news within a round
/// or two; an older read goes to the table). 65,536 is ~1.8 rounds of a 10,000-participant
/// market; twice that cost ~60 MB of its 1 GiB without a measurable gain in speed.
const RECENT_EVENTS: usize = 1 << 16;

use crate::THREAD_WINDOW;

/// One market as its tables hold it, for the reads above.
pub struct MarketMemory {
    market: Market,
    participants: HashMap<i64, Participant>,
    deals: HashMap<i64, Deal>,
    deals_of: Parties,
    threads: HashMap<i64, Thread>,
    threads_of: Parties,
    /// Each thread's messages and offers, in id order.
    messages_in: HashMap<i64, Vec<Message>>,
    offers: HashMap<i64, Offer>,
    offers_in: HashMap<i64, Vec<i64>>,
    /// Ratings by ratee, in id order.
    ratings_of: HashMap<i64, Vec<Rating>>,
    /// Ratings given on each deal.
    ratings_on: HashMap<i64, usize>,
    /// The seqs of the events that name each participant as a party, ascending.
    events_of: HashMap<i64, Vec<i64>>,
    /// The market's newest events, consecutive by seq.
    recent: VecDeque<Event>,
    /// Each participant's `available` account balance.
    cash: HashMap<i64, i64>,
    /// Each buyer's live offers made as the buyer (the ones that commit their money).
    bids: HashMap<i64, BTreeSet<i64>>,
}

/// Each participant's row ids of one table, ascending (a row naming the same participant on both
/// sides would be listed twice, as the two branches of the SQL read list it).
#[derive(Default)]
struct Parties(HashMap<i64, Vec<i64>>);

impl Parties {
    fn add(&mut self, party: i64, id: i64) {
        let ids = self.0.entry(party).or_default();
        debug_assert!(
            ids.last().is_none_or(|&last| last <= id),
            "rows arrive in id order"
        );
        ids.push(id);
    }

    /// A party's ids above `after`, at most `limit`.
    fn page(&self, party: i64, after: i64, limit: usize) -> &[i64] {
        let ids = self.0.get(&party).map_or(&[][..], Vec::as_slice);
        let start = ids.partition_point(|&id| id <= after);
        &ids[start..ids.len().min(start.saturating_add(limit))]
    }

    fn all(&self, party: i64) -> &[i64] {
        self.page(party, i64::MIN, usize::MAX)
    }
}

impl MarketMemory {
    pub fn new(market: Market) -> MarketMemory {
        MarketMemory {
            market,
            participants: HashMap::new(),
            deals: HashMap::new(),
            deals_of: Parties::default(),
            threads: HashMap::new(),
            threads_of: Parties::default(),
            messages_in: HashMap::new(),
            offers: HashMap::new(),
            offers_in: HashMap::new(),
            ratings_of: HashMap::new(),
            ratings_on: HashMap::new(),
            events_of: HashMap::new(),
            recent: VecDeque::new(),
            cash: HashMap::new(),
            bids: HashMap::new(),
        }
    }

    /// Loading: an account's balance as the `accounts` table holds it.
    pub fn add_balance(&mut self, account: Account, balance: i64) {
        if let Account::Available(p) = account {
            self.cash.insert(p, balance);
        }
    }

    pub fn market(&self) -> &Market {
        &self.market
    }

    pub fn participant(&self, id: i64) -> Option<&Participant> {
        self.participants.get(&id)
    }

    /// Loading and inserting: rows in id order.
    pub fn add_participant(&mut self, p: Participant) {
        self.participants.insert(p.id, p);
    }

    pub fn add_deal(&mut self, d: Deal) {
        for party in [d.buyer, d.seller] {
            self.deals_of.add(party, d.id);
        }
        self.deals.insert(d.id, d);
    }

    pub fn add_message(&mut self, msg: Message) {
        self.messages_in.entry(msg.thread_id).or_default().push(msg);
    }

    pub fn add_offer(&mut self, o: Offer) {
        if o.state == OfferState::Live && o.proposer == o.buyer {
            self.bids.entry(o.buyer).or_default().insert(o.id);
        }
        self.offers_in.entry(o.thread_id).or_default().push(o.id);
        self.offers.insert(o.id, o);
    }

    pub fn add_thread(&mut self, t: Thread) {
        for party in [t.owner, t.counterparty] {
            self.threads_of.add(party, t.id);
        }
        self.threads.insert(t.id, t);
    }

    pub fn add_rating(&mut self, r: Rating) {
        *self.ratings_on.entry(r.deal_id).or_default() += 1;
        self.ratings_of.entry(r.ratee).or_default().push(r);
    }

    /// Loading and committing: event `seq` names `party` (events arrive in seq order).
    pub fn saw_event(&mut self, party: i64, seq: i64) {
        let seqs = self.events_of.entry(party).or_default();
        debug_assert!(
            seqs.last().is_none_or(|&last| last <= seq),
            "events arrive in seq order"
        );
        // An event naming the same participant twice is one event of their feed.
        if seqs.last() != Some(&seq) {
            seqs.push(seq);
        }
    }

    /// Whether [`MarketMemory::apply`] does anything with this change. Exhaustive on purpose: a
    /// new kind of change must be placed here (and in `apply`) or the build fails.
    pub fn follows(change: &Change) -> bool {
        match change {
            Change::SetMarketRules(_)
            | Change::InsertParticipant(_)
            | Change::SetMandate { .. }
            | Change::SetSuspension { .. }
            | Change::InsertDeal(_)
            | Change::UpdateDeal(_)
            | Change::SetDealStatus { .. }
            | Change::InsertRating(_)
            | Change::InsertOffer(_)
            | Change::InsertThread(_)
            | Change::InsertMessage(_)
            | Change::UpdateThread { .. }
            | Change::SetOfferState { .. }
            | Change::Transfer(_) => true,
            // Listings live on the shelves; holds and deal notes are read from their tables.
            Change::InsertListing(_)
            | Change::SetListingStatus { .. }
            | Change::SetListingFirstOffer { .. }
            | Change::InsertHold { .. }
            | Change::InsertDealNote(_) => false,
        }
    }

    /// Applies one committed change as the tables took it. False when it names a row this
    /// memory does not hold: the caller forgets the market and reads it again.
    pub fn apply(&mut self, change: &Change) -> bool {
        let m = self.market.id;
        match change {
            Change::SetMarketRules(r) => self.market.rules = r.clone(),
            Change::InsertParticipant(p) => self.add_participant(Participant {
                market_id: m,
                ..p.clone()
            }),
            Change::SetMandate {
                participant,
                mandate,
            } => match self.participants.get_mut(participant) {
                Some(p) => p.mandate = mandate.clone(),
                None => return false,
            },
            Change::SetSuspension {
                participant,
                suspension,
            } => match self.participants.get_mut(participant) {
                Some(p) => p.suspension = suspension.clone(),
                None => return false,
            },
            // An inserted deal has only the columns its insert names; the rest start empty.
            Change::InsertDeal(d) => self.add_deal(Deal {
                market_id: m,
                handover_note: None,
                handed_over_at: None,
                confirm_deadline: None,
                cancel_requested_by: None,
                finished_at: None,
                resolution: None,
                inspection: None,
                dispute: None,
                payment: None,
                arrives_at: None,
                ..d.clone()
            }),
            Change::UpdateDeal(d) => match self.deals.get_mut(&d.id) {
                Some(kept) => {
                    kept.status = d.status;
                    kept.approval_deadline = d.approval_deadline;
                    kept.approval_from = d.approval_from;
                    kept.handover_note = d.handover_note.clone();
                    kept.handed_over_at = d.handed_over_at;
                    kept.confirm_deadline = d.confirm_deadline;
                    kept.cancel_requested_by = d.cancel_requested_by;
                    kept.finished_at = d.finished_at;
                    kept.resolution = d.resolution.clone();
                    kept.inspection = d.inspection.clone();
                    kept.dispute = d.dispute.clone();
                    kept.shipping = d.shipping.clone();
                    kept.arrives_at = d.arrives_at;
                }
                None => return false,
            },
            Change::SetDealStatus { deal, status } => match self.deals.get_mut(deal) {
                Some(kept) => kept.status = *status,
                None => return false,
            },
            Change::InsertRating(r) => self.add_rating(Rating {
                market_id: m,
                ..r.clone()
            }),
            Change::InsertThread(t) => self.add_thread(Thread {
                market_id: m,
                ..t.clone()
            }),
            Change::UpdateThread {
                thread,
                status,
                offers_made,
                last_offer_by,
            } => match self.threads.get_mut(thread) {
                Some(t) => {
                    t.status = *status;
                    t.offers_made = *offers_made;
                    t.last_offer_by = *last_offer_by;
                }
                None => return false,
            },
            Change::InsertMessage(msg) => self.add_message(Message {
                market_id: m,
                ..msg.clone()
            }),
            Change::InsertOffer(o) => self.add_offer(Offer {
                market_id: m,
                ..o.clone()
            }),
            // The table changes only a live offer's state.
            Change::SetOfferState { offer, state, .. } => {
                let Some(o) = self.offers.get_mut(offer) else {
                    return false;
                };
                if o.state == OfferState::Live && *state != OfferState::Live {
                    o.state = *state;
                    if let Some(b) = self.bids.get_mut(&o.buyer) {
                        b.remove(offer);
                    }
                }
            }
            Change::Transfer(t) => {
                for (account, delta) in [(t.debit, -t.amount), (t.credit, t.amount)] {
                    if let Account::Available(p) = account {
                        *self.cash.entry(p).or_default() += delta;
                    }
                }
            }
            Change::InsertListing(_)
            | Change::SetListingStatus { .. }
            | Change::SetListingFirstOffer { .. }
            | Change::InsertHold { .. }
            | Change::InsertDealNote(_) => debug_assert!(!MarketMemory::follows(change)),
        }
        true
    }

    /// What a command's commit wrote besides its changes: its events, and the simulated clock
    /// moved to the command's time.
    pub fn committed(&mut self, events: &[Event], now: i64) {
        if self.market.clock_mode == ClockMode::Simulated {
            self.market.sim_now = now;
        }
        for e in events {
            if let Visibility::Parties(ps) = &e.visibility {
                for &p in ps {
                    self.saw_event(p, e.seq);
                }
            }
            if self.recent.back().is_some_and(|last| last.seq + 1 != e.seq) {
                // Not the next event: keep only what is consecutive from here.
                self.recent.clear();
            }
            if self.recent.len() == RECENT_EVENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(e.clone());
        }
    }

    /// The events naming `party` after seq `after`, at most `limit`; `None` when some of them
    /// are older than the events kept whole (the table has them).
    pub fn events_of(&self, party: i64, after: i64, limit: usize) -> Option<Vec<Event>> {
        let seqs = self.events_of.get(&party).map_or(&[][..], Vec::as_slice);
        let start = seqs.partition_point(|&s| s <= after);
        let page = &seqs[start..seqs.len().min(start.saturating_add(limit))];
        let oldest = self.recent.front().map_or(i64::MAX, |e| e.seq);
        page.iter()
            .map(|&seq| {
                let e = self.recent.get(usize::try_from(seq - oldest).ok()?)?;
                debug_assert_eq!(e.seq, seq);
                (e.seq == seq).then(|| e.clone())
            })
            .collect()
    }

    /// A buyer's money at market time `now`, as the store sums it from its tables.
    pub fn funds(&self, p: i64, now: i64) -> Funds {
        let mut f = Funds {
            cash: self.cash.get(&p).copied().unwrap_or(0),
            committed: self
                .bids
                .get(&p)
                .into_iter()
                .flatten()
                .map(|id| &self.offers[id])
                .filter(|o| o.expires_at > now)
                .map(|o| o.price)
                .sum(),
            ..Funds::default()
        };
        for d in self
            .deals_of
            .all(p)
            .iter()
            .map(|id| &self.deals[id])
            .filter(|d| d.buyer == p)
        {
            let (held, spent) = d.buyer_share();
            f.held += held;
            f.spent += spent;
        }
        f
    }

    /// A party's deals with id above `after`, ascending, at most `limit`.
    pub fn deals_of(&self, party: i64, after: i64, limit: usize) -> Vec<Deal> {
        self.deals_of
            .page(party, after, limit)
            .iter()
            .map(|id| self.deals[id].clone())
            .collect()
    }

    pub fn thread(&self, id: i64) -> Option<&Thread> {
        self.threads.get(&id)
    }

    /// `counterparty`'s thread on `listing` (there is at most one).
    pub fn thread_on(&self, listing: i64, counterparty: i64) -> Option<Thread> {
        self.threads_of
            .all(counterparty)
            .iter()
            .map(|id| &self.threads[id])
            .find(|t| t.listing_id == listing && t.counterparty == counterparty)
            .cloned()
    }

    /// A thread with its newest `THREAD_WINDOW` messages and offers (oldest first), as the store
    /// reads it.
    pub fn thread_detail(&self, id: i64) -> Option<ThreadDetail> {
        let thread = self.threads.get(&id)?.clone();
        let all = self.messages_in.get(&id).map_or(&[][..], Vec::as_slice);
        let messages = all[all.len().saturating_sub(THREAD_WINDOW)..].to_vec();
        let ids = self.offers_in.get(&id).map_or(&[][..], Vec::as_slice);
        let offers = ids[ids.len().saturating_sub(THREAD_WINDOW)..]
            .iter()
            .map(|o| self.offers[o].clone())
            .collect();
        Some(ThreadDetail {
            thread,
            messages,
            offers,
        })
    }

    fn offers_in(&self, thread: i64) -> impl Iterator<Item = &Offer> {
        self.offers_in
            .get(&thread)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|id| &self.offers[id])
    }

    /// The messages and offers `author` has added to `thread`.
    pub fn posts_by(&self, thread: i64, author: i64) -> u32 {
        let messages = self
            .messages_in
            .get(&thread)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|m| m.author == author)
            .count();
        let offers = self
            .offers_in(thread)
            .filter(|o| o.proposer == author)
            .count();
        u32::try_from(messages + offers).unwrap_or(u32::MAX)
    }

    /// A thread's live offers (the rules allow at most one).
    pub fn live_offers_in(&self, thread: i64) -> Vec<Offer> {
        self.offers_in(thread)
            .filter(|o| o.state == OfferState::Live)
            .cloned()
            .collect()
    }

    pub fn deal(&self, id: i64) -> Option<&Deal> {
        self.deals.get(&id)
    }

    /// A party's threads with id above `after`, ascending, at most `limit`.
    pub fn threads_of(&self, party: i64, after: i64, limit: usize) -> Vec<Thread> {
        self.threads_of
            .page(party, after, limit)
            .iter()
            .map(|id| self.threads[id].clone())
            .collect()
    }

    /// A participant's reputation at `real_now`, as the store reads it from its tables: the
    /// first 10,000 deals, and the ratings received on them that are revealed by then.
    pub fn reputation(&self, participant: i64, real_now: i64) -> lifecycle::Reputation {
        // Borrowed, not cloned: agents read a counterparty's reputation on most turns.
        let deals: Vec<&Deal> = self
            .deals_of
            .page(
                participant,
                0,
                haggle_core::limits::STORE_READ_ROWS as usize,
            )
            .iter()
            .map(|id| &self.deals[id])
            .collect();
        if deals.is_empty() {
            return lifecycle::reputation(participant, &deals, &[]);
        }
        let now = self.market.now(real_now);
        let revealed: Vec<Rating> = self
            .ratings_of
            .get(&participant)
            .into_iter()
            .flatten()
            .filter(|r| {
                deals.iter().find(|d| d.id == r.deal_id).is_some_and(|d| {
                    let n = self.ratings_on.get(&d.id).copied().unwrap_or(0);
                    lifecycle::rating_revealed(d, n, &self.market.rules, now)
                })
            })
            .cloned()
            .collect();
        lifecycle::reputation(participant, &deals, &revealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haggle_core::{DealStatus, MarketRules, Resolution};

    fn market() -> Market {
        Market {
            id: 1,
            name: "m".into(),
            currency: "USD".into(),
            clock_mode: ClockMode::Real,
            sim_now: 0,
            rules: MarketRules::default(),
            created_at: 0,
        }
    }

    fn deal(id: i64, buyer: i64, seller: i64) -> Deal {
        serde_json::from_value(serde_json::json!({
            "id": id, "market_id": 1, "listing_id": 100 + id, "thread_id": 200 + id,
            "offer_id": 300 + id, "buyer": buyer, "seller": seller, "price": 1000,
            "status": "completed", "created_at": 0, "approval_deadline": null,
            "snapshot": {"title": "t", "description": "d", "category": "c", "condition": "good",
                         "price": 1000, "side": "sell", "attributes": {}},
            "handover_note": "stale", "finished_at": 5
        }))
        .expect("a deal")
    }

    #[test]
    fn an_inserted_deal_keeps_only_the_columns_its_insert_writes() {
        let mut m = MarketMemory::new(market());
        assert!(m.apply(&Change::InsertDeal(deal(1, 10, 20))));
        let d = &m.deals_of(10, 0, 10)[0];
        assert_eq!(d.handover_note, None);
        assert_eq!(d.finished_at, None);
        assert_eq!(m.deals_of(20, 0, 10).len(), 1);
    }

    #[test]
    fn deals_of_a_party_page_by_id() {
        let mut m = MarketMemory::new(market());
        for id in 1..=5 {
            m.apply(&Change::InsertDeal(deal(id, 10, 20 + id)));
        }
        let ids = |v: Vec<Deal>| v.iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(m.deals_of(10, 2, 2)), vec![3, 4]);
        assert_eq!(ids(m.deals_of(23, 0, 10)), vec![3]);
        assert!(m.deals_of(99, 0, 10).is_empty());
    }

    #[test]
    fn changes_to_rows_it_does_not_hold_are_refused() {
        let mut m = MarketMemory::new(market());
        assert!(!m.apply(&Change::SetDealStatus {
            deal: 7,
            status: DealStatus::Completed
        }));
        assert!(!m.apply(&Change::UpdateDeal(deal(7, 1, 2))));
    }

    #[test]
    fn a_rating_counts_once_both_parties_rated_or_the_window_passed() {
        let mut m = MarketMemory::new(market());
        let mut d = deal(1, 10, 20);
        m.apply(&Change::InsertDeal(d.clone()));
        d.finished_at = Some(1_000);
        d.resolution = Some(Resolution {
            to_buyer: 0,
            to_seller: 1000,
            by: None,
            note: "completed".into(),
        });
        assert!(m.apply(&Change::UpdateDeal(d)));
        let rating = |id, rater, ratee, score| Rating {
            id,
            market_id: 1,
            deal_id: 1,
            rater,
            ratee,
            score,
            comment: String::new(),
            created_at: 0,
        };
        m.apply(&Change::InsertRating(rating(2, 10, 20, 4)));
        let window = m.market().rules.rating_window_ms;
        assert_eq!(m.reputation(20, 1_000).ratings, 0, "one rating is hidden");
        assert_eq!(
            m.reputation(20, 1_000 + window).ratings,
            1,
            "until the window ends"
        );
        m.apply(&Change::InsertRating(rating(3, 20, 10, 5)));
        let r = m.reputation(20, 1_000);
        assert_eq!((r.ratings, r.average_x100), (1, Some(400)));
        assert_eq!(r.completed_deals, 1);
    }

    fn event(seq: i64, visibility: Visibility) -> Event {
        Event {
            market_id: 1,
            seq,
            at: 0,
            actor: None,
            by: haggle_core::model::ActedBy::Agent,
            visibility,
            body: haggle_core::EventBody::ListingApproved(haggle_core::event::ListingOnly {
                listing_id: seq,
            }),
            prev_hash: String::new(),
            hash: String::new(),
            stored: Default::default(),
        }
    }

    #[test]
    fn a_partys_feed_is_its_events_in_order_while_they_are_kept() {
        let mut m = MarketMemory::new(market());
        m.saw_event(10, 1);
        let events: Vec<Event> = (2..=5)
            .map(|seq| match seq {
                3 => event(seq, Visibility::Public),
                4 => event(seq, Visibility::Parties(vec![10, 10])),
                _ => event(seq, Visibility::Parties(vec![10, 20])),
            })
            .collect();
        m.committed(&events, 0);
        let seqs = |v: Option<Vec<Event>>| v.map(|v| v.iter().map(|e| e.seq).collect::<Vec<_>>());
        assert_eq!(
            seqs(m.events_of(10, 1, 10)),
            Some(vec![2, 4, 5]),
            "once each"
        );
        assert_eq!(seqs(m.events_of(10, 2, 1)), Some(vec![4]));
        assert_eq!(seqs(m.events_of(20, 0, 10)), Some(vec![2, 5]));
        assert_eq!(seqs(m.events_of(10, 5, 10)), Some(vec![]));
        assert_eq!(m.events_of(10, 0, 10), None, "seq 1 was not kept whole");
        assert_eq!(seqs(m.events_of(11, 0, 10)), Some(vec![]));
    }

    #[test]
    fn funds_follow_transfers_bids_and_deals() {
        use haggle_core::{Offer, Transfer, TransferKind};
        let mut m = MarketMemory::new(market());
        m.apply(&Change::Transfer(Transfer {
            id: 1,
            market_id: 1,
            debit: Account::Funding,
            credit: Account::Available(10),
            amount: 10_000,
            kind: TransferKind::Fund,
            deal_id: None,
            at: 0,
            idempotency_id: "fund:10".into(),
        }));
        let bid = |id, proposer, price| -> Offer {
            serde_json::from_value(serde_json::json!({
                "id": id, "market_id": 1, "thread_id": 5, "listing_id": 6, "proposer": proposer,
                "buyer": 10, "seller": 20, "price": price, "state": "live", "created_at": 0,
                "expires_at": 100
            }))
            .expect("an offer")
        };
        m.apply(&Change::InsertOffer(bid(2, 10, 3_000)));
        m.apply(&Change::InsertOffer(bid(3, 20, 9_000)));
        assert_eq!(
            m.funds(10, 99).committed,
            3_000,
            "only the buyer's own bids"
        );
        assert_eq!(
            m.funds(10, 100).committed,
            0,
            "an expired bid commits nothing"
        );
        m.apply(&Change::SetOfferState {
            offer: 2,
            state: OfferState::Accepted,
            reason: None,
        });
        let mut d = deal(4, 10, 20);
        d.price = 2_500;
        m.apply(&Change::InsertDeal(d.clone()));
        m.apply(&Change::SetDealStatus {
            deal: 4,
            status: DealStatus::Agreed,
        });
        let f = m.funds(10, 0);
        assert_eq!(
            (f.cash, f.committed, f.held, f.spent),
            (10_000, 0, 2_500, 2_500)
        );
        m.apply(&Change::SetDealStatus {
            deal: 4,
            status: DealStatus::Refunded,
        });
        let f = m.funds(10, 0);
        assert_eq!((f.held, f.spent), (0, 0));
        assert_eq!(
            m.funds(20, 0),
            Funds::default(),
            "the seller's deal is not their spending"
        );
    }
}
