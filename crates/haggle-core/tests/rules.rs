//! The market rules of `shared/spec/market.md`, one behaviour per test, run against an in-memory
//! market. Every refusal is checked for its code and for leaving the market unchanged.

mod support;

use haggle_core::event::verify_chain;
use haggle_core::negotiation::{MAX_POSTS_PER_PARTY, MAX_TEXT};
use haggle_core::*;
use support::{Mem, T0, new_listing};

/// A seller with a sell ad, two funded buyers.
struct Fx {
    m: Mem,
    seller: ParticipantId,
    buyer: ParticipantId,
    rival: ParticipantId,
    listing: ListingId,
}

fn fx_with(rules: MarketRules, buyer_mandate: Mandate) -> Fx {
    let mut m = Mem::new(rules);
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", buyer_mandate, 10_000);
    let rival = m.register("rival", Mandate::default(), 10_000);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
    }
}

fn fx() -> Fx {
    fx_with(MarketRules::default(), Mandate::default())
}

fn rules(f: impl FnOnce(&mut MarketRules)) -> MarketRules {
    let mut r = MarketRules::default();
    f(&mut r);
    r
}

fn sound(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
}

// ----- offers --------------------------------------------------------------------------------

#[test]
fn offer_supersedes_own_live_offer() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    let first = m.open_with_offer(buyer, listing, 3_000).unwrap();
    let second = m.offer(buyer, first.thread_id, 3_500).unwrap();
    assert_eq!(m.offers[&first.id].state, OfferState::Superseded);
    assert_eq!(m.offers[&second.id].state, OfferState::Live);
    assert_eq!(m.threads[&first.thread_id].offers_made, 2);
    // Only the newest offer commits funds.
    assert_eq!(m.funds(buyer).committed, 3_500);
    assert!(m.event_kinds().contains(&"offer_superseded"));
    sound(&m);
}

#[test]
fn counter_marks_other_sides_offer_countered() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    let counter = m.offer(seller, bid.thread_id, 4_500).unwrap();
    assert_eq!(m.offers[&bid.id].state, OfferState::Countered);
    assert_eq!(m.offers[&counter.id].state, OfferState::Live);
    assert_eq!(counter.buyer, buyer);
    assert_eq!(counter.seller, seller);
    // The countered bid no longer commits the buyer's money; a seller's offer never does.
    assert_eq!(m.funds(buyer).committed, 0);
    assert!(m.event_kinds().contains(&"offer_countered"));
}

#[test]
fn new_offer_after_expiry_marks_old_offer_expired() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.advance(DAY_MS);
    m.offer(seller, bid.thread_id, 4_000).unwrap();
    assert_eq!(m.offers[&bid.id].state, OfferState::Expired);
}

#[test]
fn offer_price_out_of_range_is_invalid_price() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    for price in [0, -1, MAX_AMOUNT + 1] {
        m.refuses(ErrorCode::InvalidPrice, |m| m.offer(buyer, t.id, price));
    }
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.offer_for(buyer, t.id, 100, Some(DAY_MS + 1))
    });
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.offer_for(buyer, t.id, 100, Some(0))
    });
}

#[test]
fn offer_with_shorter_lifetime_expires_sooner() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    let o = m.offer_for(buyer, t.id, 1_000, Some(HOUR_MS)).unwrap();
    assert_eq!(o.expires_at, T0 + HOUR_MS);
}

#[test]
fn only_recipient_can_accept() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.refuses(ErrorCode::NotYourOffer, |m| m.accept(buyer, bid.id));
    m.refuses(ErrorCode::NotYourOffer, |m| m.reject(buyer, bid.id));
}

#[test]
fn only_proposer_can_withdraw() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.refuses(ErrorCode::NotYourOffer, |m| m.withdraw(seller, bid.id));
    m.withdraw(buyer, bid.id).unwrap();
    assert_eq!(m.offers[&bid.id].state, OfferState::Withdrawn);
    assert_eq!(m.funds(buyer).committed, 0);
}

#[test]
fn outsider_cannot_answer_an_offer() {
    let Fx {
        mut m,
        buyer,
        rival,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.refuses(ErrorCode::Forbidden, |m| m.accept(rival, bid.id));
    m.refuses(ErrorCode::Forbidden, |m| m.reject(rival, bid.id));
    m.refuses(ErrorCode::Forbidden, |m| m.withdraw(rival, bid.id));
    m.refuses(ErrorCode::Forbidden, |m| m.offer(rival, bid.thread_id, 10));
    m.refuses(ErrorCode::Forbidden, |m| m.walk_away(rival, bid.thread_id));
}

#[test]
fn reject_ends_offer_and_keeps_thread_open() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.reject(seller, bid.id).unwrap();
    assert_eq!(m.offers[&bid.id].state, OfferState::Rejected);
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::Open);
    assert_eq!(m.funds(buyer).committed, 0);
    m.refuses(ErrorCode::OfferNotLive, |m| m.reject(seller, bid.id));
}

#[test]
fn messages_never_bind() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    m.message(buyer, t.id, "I'd pay 9000 for it").unwrap();
    m.message(seller, t.id, "deal!").unwrap();
    assert_eq!(m.messages.len(), 2);
    assert!(m.offers.is_empty());
    assert_eq!(m.funds(buyer).committed, 0);
    m.refuses(ErrorCode::InvalidRequest, |m| m.message(buyer, t.id, "  "));
    let long = "x".repeat(MAX_TEXT + 1);
    m.refuses(ErrorCode::InvalidRequest, |m| m.message(buyer, t.id, &long));
}

// ----- acceptance ----------------------------------------------------------------------------

#[test]
fn accept_creates_deal_and_holds_price_in_escrow() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 4_000).unwrap();
    let deal = m.accept(seller, bid.id).unwrap();
    assert_eq!(deal.status, DealStatus::Agreed);
    assert_eq!(
        (deal.buyer, deal.seller, deal.price),
        (buyer, seller, 4_000)
    );
    assert_eq!(deal.offer_id, bid.id);
    assert_eq!(deal.snapshot, m.listings[&listing].snapshot());
    assert_eq!(deal.approval_deadline, None);
    assert_eq!(m.deals.len(), 1);
    assert_eq!(m.offers[&bid.id].state, OfferState::Accepted);
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::Agreed);
    assert_eq!(m.listings[&listing].status, ListingStatus::Sold);
    assert_eq!(m.balance(Account::Available(buyer)), 6_000);
    assert_eq!(m.balance(Account::Escrow), 4_000);
    assert_eq!(
        m.funds(buyer),
        Funds {
            cash: 6_000,
            committed: 0,
            held: 4_000,
            spent: 4_000
        }
    );
    let hold = m.transfers.last().unwrap();
    assert_eq!(hold.kind, TransferKind::Hold);
    assert_eq!(hold.deal_id, Some(deal.id));
    for kind in [
        "offer_accepted",
        "deal_created",
        "listing_sold",
        "transfer_booked",
    ] {
        assert!(m.event_kinds().contains(&kind), "no {kind} event");
    }
    sound(&m);
}

#[test]
fn buyer_can_accept_sellers_offer() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    let ask = m.offer(seller, t.id, 4_800).unwrap();
    let deal = m.accept(buyer, ask.id).unwrap();
    assert_eq!(
        (deal.buyer, deal.seller, deal.price),
        (buyer, seller, 4_800)
    );
    assert_eq!(m.balance(Account::Available(buyer)), 5_200);
    sound(&m);
}

#[test]
fn buyer_accepting_sellers_offer_beyond_funds_is_insufficient_funds() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    let ask = m.offer(seller, t.id, 10_001).unwrap();
    m.refuses(ErrorCode::InsufficientFunds, |m| m.accept(buyer, ask.id));
}

#[test]
fn acceptance_voids_other_live_offers_on_listing() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        listing,
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 4_000).unwrap();
    let rival_bid = m.open_with_offer(rival, listing, 3_000).unwrap();
    m.accept(seller, bid.id).unwrap();
    assert_eq!(m.offers[&rival_bid.id].state, OfferState::Void);
    assert_eq!(m.void_reasons[&rival_bid.id], VoidReason::ListingSold);
    assert_eq!(m.threads[&rival_bid.thread_id].status, ThreadStatus::Void);
    assert_eq!(m.funds(rival).committed, 0);
    // The rival is told.
    let told = m.events.iter().any(|e| {
        matches!(&e.body, EventBody::OfferVoided(p) if p.offer_id == rival_bid.id)
            && e.visibility.includes(rival)
    });
    assert!(told, "the rival was not notified");
    sound(&m);
}

#[test]
fn second_acceptance_on_sold_listing_gets_listing_unavailable() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        listing,
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 4_000).unwrap();
    let rival_bid = m.open_with_offer(rival, listing, 3_000).unwrap();
    m.accept(seller, bid.id).unwrap();
    m.refuses(ErrorCode::ListingUnavailable, |m| {
        m.accept(seller, rival_bid.id)
    });
    // The sale voided the rival's bid.
    assert_eq!(m.offers[&rival_bid.id].state, OfferState::Void);
    assert_eq!(m.deals.len(), 1);
}

#[test]
fn stale_offer_id_gets_offer_not_live() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    // The buyer raises its bid a moment before the seller accepts the old one.
    let raised = m.offer(buyer, bid.thread_id, 3_200).unwrap();
    m.refuses(ErrorCode::OfferNotLive, |m| m.accept(seller, bid.id));
    // Likewise the seller's ask that the seller replaced a moment before the buyer accepts it.
    let ask = m.offer(seller, bid.thread_id, 4_000).unwrap();
    assert_eq!(m.offers[&raised.id].state, OfferState::Countered);
    let lower = m.offer(seller, bid.thread_id, 3_900).unwrap();
    m.refuses(ErrorCode::OfferNotLive, |m| m.accept(buyer, ask.id));
    assert_eq!(m.offers[&lower.id].state, OfferState::Live);
}

#[test]
fn unknown_offer_is_not_found() {
    let Fx { mut m, seller, .. } = fx();
    m.refuses(ErrorCode::NotFound, |m| m.accept(seller, 9_999));
}

#[test]
fn expired_offer_cannot_be_accepted() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.advance(DAY_MS);
    m.refuses(ErrorCode::OfferExpired, |m| m.accept(seller, bid.id));
    assert_eq!(
        m.funds(buyer).committed,
        0,
        "an expired offer commits nothing"
    );
}

#[test]
fn acceptance_never_fails_for_lack_of_funds() {
    let mut m = Mem::new(MarketRules::default());
    let s = m.register("s", Mandate::default(), 0);
    let b = m.register("b", Mandate::default(), 10_000);
    let l1 = m.list(s, Side::Sell, "books", 6_000);
    let l2 = m.list(s, Side::Sell, "books", 4_000);
    let o1 = m.open_with_offer(b, l1, 6_000).unwrap();
    let o2 = m.open_with_offer(b, l2, 4_000).unwrap();
    m.accept(s, o2.id).unwrap();
    m.accept(s, o1.id).unwrap();
    assert_eq!(m.balance(Account::Available(b)), 0);
    assert_eq!(m.balance(Account::Escrow), 10_000);
    sound(&m);
}

// ----- offer cap and deadlines -----------------------------------------------------------------

#[test]
fn offer_cap_gives_too_many_offers() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        rules(|r| r.max_offers_per_thread = Some(3)),
        Mandate::default(),
    );
    let o = m.open_with_offer(buyer, listing, 1_000).unwrap();
    m.offer(seller, o.thread_id, 4_000).unwrap();
    m.offer(buyer, o.thread_id, 2_000).unwrap();
    m.refuses(ErrorCode::TooManyOffers, |m| {
        m.offer(seller, o.thread_id, 3_000)
    });
    m.refuses(ErrorCode::TooManyOffers, |m| {
        m.offer(buyer, o.thread_id, 3_000)
    });
}

#[test]
fn capped_thread_times_out_after_rejection() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        rules(|r| r.max_offers_per_thread = Some(2)),
        Mandate::default(),
    );
    let o = m.open_with_offer(buyer, listing, 1_000).unwrap();
    let last = m.offer(buyer, o.thread_id, 2_000).unwrap();
    assert_eq!(m.threads[&o.thread_id].status, ThreadStatus::Open);
    m.reject(seller, last.id).unwrap();
    assert_eq!(m.threads[&o.thread_id].status, ThreadStatus::TimedOut);
    m.refuses(ErrorCode::ThreadClosed, |m| {
        m.message(buyer, o.thread_id, "hi")
    });
}

#[test]
fn capped_thread_times_out_when_last_offer_is_withdrawn_or_expires() {
    let mut m = Mem::new(rules(|r| r.max_offers_per_thread = Some(1)));
    let s = m.register("s", Mandate::default(), 0);
    let b = m.register("b", Mandate::default(), 10_000);
    let l1 = m.list(s, Side::Sell, "books", 100);
    let l2 = m.list(s, Side::Sell, "books", 100);
    let o1 = m.open_with_offer(b, l1, 100).unwrap();
    m.withdraw(b, o1.id).unwrap();
    assert_eq!(m.threads[&o1.thread_id].status, ThreadStatus::TimedOut);
    let o2 = m.open_with_offer(b, l2, 100).unwrap();
    m.advance(DAY_MS);
    m.sweep();
    assert_eq!(m.offers[&o2.id].state, OfferState::Expired);
    assert_eq!(m.threads[&o2.thread_id].status, ThreadStatus::TimedOut);
    sound(&m);
}

#[test]
fn thread_past_deadline_gets_thread_closed() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        rules(|r| r.thread_time_limit_ms = Some(HOUR_MS)),
        Mandate::default(),
    );
    let ask = {
        let t = m.open(buyer, listing).unwrap();
        assert_eq!(t.deadline, Some(T0 + HOUR_MS));
        m.offer(seller, t.id, 4_000).unwrap()
    };
    m.advance(HOUR_MS);
    m.refuses(ErrorCode::ThreadClosed, |m| {
        m.offer(buyer, ask.thread_id, 3_000)
    });
    m.refuses(ErrorCode::ThreadClosed, |m| m.accept(buyer, ask.id));
    m.refuses(ErrorCode::ThreadClosed, |m| {
        m.message(buyer, ask.thread_id, "hi")
    });
}

#[test]
fn sweep_expires_offers_and_times_out_threads_past_deadline() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        listing,
    } = fx_with(
        rules(|r| {
            r.thread_time_limit_ms = Some(2 * HOUR_MS);
            r.offer_ttl_ms = HOUR_MS;
        }),
        Mandate::default(),
    );
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.advance(HOUR_MS);
    let rival_bid = m.open_with_offer(rival, listing, 3_500).unwrap();
    assert_eq!(m.sweep(), 2, "expire the bid, keep its thread open");
    assert_eq!(m.offers[&bid.id].state, OfferState::Expired);
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::Open);
    assert_eq!(m.offers[&rival_bid.id].state, OfferState::Live);

    m.advance(HOUR_MS);
    m.sweep();
    // The first thread reached its deadline; the rival's bid expired, its thread still has time.
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::TimedOut);
    assert_eq!(m.offers[&rival_bid.id].state, OfferState::Expired);
    assert_eq!(m.threads[&rival_bid.thread_id].status, ThreadStatus::Open);
    m.refuses(ErrorCode::ThreadClosed, |m| {
        m.offer(seller, bid.thread_id, 1)
    });
    sound(&m);
}

#[test]
fn sweep_voids_live_offer_of_thread_past_deadline() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx_with(
        rules(|r| r.thread_time_limit_ms = Some(HOUR_MS)),
        Mandate::default(),
    );
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.advance(HOUR_MS);
    m.sweep();
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::TimedOut);
    assert_eq!(m.offers[&bid.id].state, OfferState::Void);
    assert_eq!(m.void_reasons[&bid.id], VoidReason::ThreadTimedOut);
    assert_eq!(m.funds(buyer).committed, 0);
}

#[test]
fn sweep_is_idempotent() {
    let Fx {
        mut m,
        buyer,
        rival,
        listing,
        ..
    } = fx_with(
        rules(|r| r.thread_time_limit_ms = Some(HOUR_MS)),
        Mandate::default(),
    );
    m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.open_with_offer(rival, listing, 3_000).unwrap();
    m.advance(DAY_MS);
    assert!(m.sweep() > 0);
    let after_first = m.clone();
    assert_eq!(m.sweep(), 0);
    assert!(m == after_first, "a second sweep changed the market");
}

#[test]
fn thread_elapsed_ppm() {
    let r = rules(|r| {
        r.max_offers_per_thread = Some(4);
        r.thread_time_limit_ms = Some(10 * HOUR_MS);
    });
    let mut t = Thread {
        id: 1,
        market_id: 1,
        listing_id: 1,
        owner: 1,
        counterparty: 2,
        status: ThreadStatus::Open,
        offers_made: 0,
        last_offer_by: None,
        created_at: T0,
        deadline: Some(T0 + 10 * HOUR_MS),
    };
    assert_eq!(t.elapsed_ppm(&r, T0), 0);
    assert_eq!(t.elapsed_ppm(&r, T0 + 3 * HOUR_MS), 300_000);
    t.offers_made = 2;
    assert_eq!(t.elapsed_ppm(&r, T0 + 3 * HOUR_MS), 500_000);
    assert_eq!(t.elapsed_ppm(&r, T0 + 8 * HOUR_MS), 800_000);
    assert_eq!(t.elapsed_ppm(&r, T0 + 20 * HOUR_MS), 1_000_000);
    assert_eq!(
        t.elapsed_ppm(&r, T0 - HOUR_MS),
        500_000,
        "clock skew clamps"
    );
    t.offers_made = 4;
    assert_eq!(t.elapsed_ppm(&r, T0), 1_000_000);
    let unlimited = rules(|r| {
        r.max_offers_per_thread = None;
        r.thread_time_limit_ms = None;
    });
    t.deadline = None;
    assert_eq!(t.elapsed_ppm(&unlimited, T0 + 20 * HOUR_MS), 0);
}

// ----- funded commitments and mandates ---------------------------------------------------------

#[test]
fn buyer_offer_beyond_funds_is_insufficient_funds() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.open_with_offer(buyer, listing, 10_001)
    });
    m.open_with_offer(buyer, listing, 10_000).unwrap();
}

#[test]
fn live_offers_together_cannot_exceed_cash() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let other = m.list(seller, Side::Sell, "books", 5_000);
    let bid = m.open_with_offer(buyer, listing, 6_000).unwrap();
    let t2 = m.open(buyer, other).unwrap();
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.offer(buyer, t2.id, 4_001)
    });
    m.offer(buyer, t2.id, 4_000).unwrap();
    // Raising its own bid releases the bid it supersedes; the total still counts.
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.offer(buyer, bid.thread_id, 6_001)
    });
    m.offer(buyer, bid.thread_id, 5_000).unwrap();
    assert_eq!(m.funds(buyer).committed, 9_000);
}

#[test]
fn expired_offer_no_longer_commits_funds() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let other = m.list(seller, Side::Sell, "books", 5_000);
    m.open_with_offer(buyer, listing, 10_000).unwrap();
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.open_with_offer(buyer, other, 1)
    });
    m.advance(DAY_MS);
    m.open_with_offer(buyer, other, 10_000).unwrap();
}

#[test]
fn escrow_hold_counts_against_cash() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let other = m.list(seller, Side::Sell, "books", 5_000);
    let bid = m.open_with_offer(buyer, listing, 7_000).unwrap();
    m.accept(seller, bid.id).unwrap();
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.open_with_offer(buyer, other, 3_001)
    });
    m.fund(buyer, 1).unwrap();
    m.open_with_offer(buyer, other, 3_001).unwrap();
}

#[test]
fn mandate_per_deal_cap_gives_mandate_exceeded() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            per_deal_cap: Some(2_000),
            ..Mandate::default()
        },
    );
    m.refuses(ErrorCode::MandateExceeded, |m| {
        m.open_with_offer(buyer, listing, 2_001)
    });
    // Nor can the buyer take a seller's offer above the cap.
    let t = m.open(buyer, listing).unwrap();
    let ask = m.offer(seller, t.id, 2_500).unwrap();
    m.refuses(ErrorCode::MandateExceeded, |m| m.accept(buyer, ask.id));
    m.offer(buyer, t.id, 2_000).unwrap();
}

#[test]
fn mandate_spend_cap_counts_deals_and_live_offers() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            spend_cap: Some(5_000),
            ..Mandate::default()
        },
    );
    let l2 = m.list(seller, Side::Sell, "books", 1_000);
    let l3 = m.list(seller, Side::Sell, "books", 1_000);
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.accept(seller, bid.id).unwrap();
    m.open_with_offer(buyer, l2, 1_500).unwrap();
    let err = m.refuses(ErrorCode::MandateExceeded, |m| {
        m.open_with_offer(buyer, l3, 501)
    });
    assert!(err.message.contains("5000"), "{}", err.message);
    m.open_with_offer(buyer, l3, 500).unwrap();
}

#[test]
fn lowering_the_mandate_voids_live_offers_it_no_longer_allows() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(MarketRules::default(), Mandate::default());
    let l2 = m.list(seller, Side::Sell, "books", 1_000);
    let first = m.open_with_offer(buyer, listing, 3_000).unwrap();
    let second = m.open_with_offer(buyer, l2, 2_000).unwrap();
    // The new cap still covers the older offer, not both.
    m.set_mandate(
        buyer,
        Mandate {
            spend_cap: Some(4_000),
            ..Mandate::default()
        },
    )
    .unwrap();
    assert_eq!(m.offers[&first.id].state, OfferState::Live);
    assert_eq!(m.offers[&second.id].state, OfferState::Void);
    assert!(m.funds(buyer).committed <= 4_000);
    // So the seller's acceptance of what is still live never fails for authority.
    m.accept(seller, first.id).unwrap();
    m.refuses(ErrorCode::OfferNotLive, |m| m.accept(seller, second.id));
}

#[test]
fn mandate_categories_give_mandate_exceeded() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            categories: Some(vec!["tools".into()]),
            ..Mandate::default()
        },
    );
    m.refuses(ErrorCode::MandateExceeded, |m| {
        m.open_with_offer(buyer, listing, 100)
    });
    // Categories are matched after the listing's category is normalised to lower case.
    let tools = m.list(seller, Side::Sell, " Tools ", 100);
    assert_eq!(m.listings[&tools].category, "tools");
    m.open_with_offer(buyer, tools, 100).unwrap();
}

#[test]
fn expired_mandate_gives_mandate_exceeded() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            expires_at: Some(T0 + HOUR_MS),
            ..Mandate::default()
        },
    );
    let bid = m.open_with_offer(buyer, listing, 100).unwrap();
    m.advance(HOUR_MS);
    m.refuses(ErrorCode::MandateExceeded, |m| {
        m.offer(buyer, bid.thread_id, 200)
    });
    // The bid never outlived the mandate: it expired with it, so acceptance is `offer_expired`
    // and never a failure of authority (rule 3).
    assert_eq!(bid.expires_at, T0 + HOUR_MS);
    m.refuses(ErrorCode::OfferExpired, |m| m.accept(seller, bid.id));
}

#[test]
fn approval_threshold_creates_awaiting_approval_deal_with_hold() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            approval_above: Some(1_000),
            ..Mandate::default()
        },
    );
    let bid = m.open_with_offer(buyer, listing, 1_001).unwrap();
    let deal = m.accept(seller, bid.id).unwrap();
    assert_eq!(deal.status, DealStatus::AwaitingApproval);
    assert_eq!(deal.approval_deadline, Some(T0 + DAY_MS));
    assert_eq!(m.balance(Account::Escrow), 1_001);
    assert_eq!(m.funds(buyer).held, 1_001);
    assert_eq!(m.listings[&listing].status, ListingStatus::Sold);
    sound(&m);
}

#[test]
fn deal_at_approval_threshold_needs_no_approval() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        MarketRules::default(),
        Mandate {
            approval_above: Some(1_000),
            ..Mandate::default()
        },
    );
    let bid = m.open_with_offer(buyer, listing, 1_000).unwrap();
    assert_eq!(m.accept(seller, bid.id).unwrap().status, DealStatus::Agreed);
}

#[test]
fn frozen_agent_gets_agent_frozen() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let ask = {
        let t = m.open(buyer, listing).unwrap();
        m.offer(seller, t.id, 4_000).unwrap()
    };
    let bid_thread = ask.thread_id;
    m.set_mandate(
        buyer,
        Mandate {
            frozen: true,
            ..Mandate::default()
        },
    )
    .unwrap();
    m.refuses(ErrorCode::AgentFrozen, |m| {
        m.offer(buyer, bid_thread, 3_000)
    });
    m.refuses(ErrorCode::AgentFrozen, |m| m.accept(buyer, ask.id));
    m.refuses(ErrorCode::AgentFrozen, |m| {
        m.message(buyer, bid_thread, "hi")
    });
    m.refuses(ErrorCode::AgentFrozen, |m| m.walk_away(buyer, bid_thread));
    m.refuses(ErrorCode::AgentFrozen, |m| {
        m.post(buyer, new_listing(Side::Sell, "books", 10))
    });
    // Reading is not acting: the frozen buyer's thread is still there for the seller.
    m.message(seller, bid_thread, "still interested?").unwrap();
}

/// Issue 15: a principal's `PUT .../mandate` cleared an operator's freeze. The principal's own
/// pause is a separate flag; only an operator lifts a freeze.
#[test]
fn only_an_operator_lifts_a_freeze_and_a_principal_pauses_apart() {
    let Fx {
        mut m,
        seller,
        listing,
        buyer,
        ..
    } = fx();
    let frozen = Mandate {
        frozen: true,
        ..Mandate::default()
    };
    m.set_mandate_by(buyer, frozen.clone(), MandateAuthor::Operator)
        .unwrap();
    // The principal can neither lift the freeze nor freeze again after it is lifted...
    m.refuses(ErrorCode::Forbidden, |m| {
        m.set_mandate_by(buyer, Mandate::default(), MandateAuthor::Principal)
    });
    m.refuses(ErrorCode::AgentFrozen, |m| m.open(buyer, listing));
    // ...but may change its limits while the freeze stays.
    let capped = Mandate {
        spend_cap: Some(5_000),
        ..frozen
    };
    m.set_mandate_by(buyer, capped, MandateAuthor::Principal)
        .unwrap();
    m.refuses(ErrorCode::AgentFrozen, |m| m.open(buyer, listing));
    m.set_mandate_by(buyer, Mandate::default(), MandateAuthor::Operator)
        .unwrap();
    m.refuses(ErrorCode::Forbidden, |m| {
        let frozen = Mandate {
            frozen: true,
            ..Mandate::default()
        };
        m.set_mandate_by(buyer, frozen, MandateAuthor::Principal)
    });
    // The principal's own pause: refused with its own code, lifted by the principal.
    let paused = Mandate {
        paused: true,
        ..Mandate::default()
    };
    m.set_mandate_by(buyer, paused, MandateAuthor::Principal)
        .unwrap();
    m.refuses(ErrorCode::AgentPaused, |m| m.open(buyer, listing));
    m.set_mandate_by(buyer, Mandate::default(), MandateAuthor::Principal)
        .unwrap();
    let t = m.open(buyer, listing).unwrap();
    m.message(seller, t.id, "welcome back").unwrap();
}

/// Issue 15: a spammer's thousand messages buried the owner's reply. One party adds at most
/// MAX_POSTS_PER_PARTY messages and offers to a thread; the other party is not affected.
#[test]
fn each_party_posts_at_most_max_posts_per_party_to_a_thread() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let t = m.open(buyer, listing).unwrap();
    m.offer(buyer, t.id, 3_000).unwrap();
    for i in 1..MAX_POSTS_PER_PARTY {
        m.message(buyer, t.id, &format!("still there? {i}"))
            .unwrap();
    }
    m.refuses(ErrorCode::TooManyMessages, |m| {
        m.message(buyer, t.id, "hello?")
    });
    m.refuses(ErrorCode::TooManyOffers, |m| m.offer(buyer, t.id, 3_100));
    let reply = m.message(seller, t.id, "please stop").unwrap();
    assert_eq!(reply.author, seller);
    let counter = m.offer(seller, t.id, 3_500).unwrap();
    // The buyer can still end it: accept the counter.
    assert_eq!(m.accept(buyer, counter.id).unwrap().price, 3_500);
}

#[test]
fn invalid_mandate_is_invalid_request() {
    let Fx { mut m, buyer, .. } = fx();
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.set_mandate(
            buyer,
            Mandate {
                spend_cap: Some(-1),
                ..Mandate::default()
            },
        )
    });
}

// ----- threads and listings --------------------------------------------------------------------

#[test]
fn walk_away_breaks_thread_and_voids_live_offer() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.walk_away(seller, bid.thread_id).unwrap();
    assert_eq!(m.threads[&bid.thread_id].status, ThreadStatus::Broken);
    assert_eq!(m.offers[&bid.id].state, OfferState::Void);
    assert_eq!(m.void_reasons[&bid.id], VoidReason::WalkedAway);
    assert_eq!(m.funds(buyer).committed, 0);
    assert_eq!(m.listings[&listing].status, ListingStatus::Active);
    sound(&m);
}

#[test]
fn acting_in_closed_thread_gets_thread_closed() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.walk_away(buyer, bid.thread_id).unwrap();
    let t = bid.thread_id;
    m.refuses(ErrorCode::ThreadClosed, |m| m.offer(buyer, t, 3_000));
    m.refuses(ErrorCode::ThreadClosed, |m| m.offer(seller, t, 3_000));
    m.refuses(ErrorCode::ThreadClosed, |m| m.message(seller, t, "wait"));
    m.refuses(ErrorCode::ThreadClosed, |m| m.walk_away(seller, t));
    // Opening "again" finds the same, closed thread.
    m.refuses(ErrorCode::ThreadClosed, |m| m.open(buyer, listing));
}

#[test]
fn opening_twice_returns_the_same_thread() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    let a = m.open(buyer, listing).unwrap();
    let before = m.clone();
    let b = m.open(buyer, listing).unwrap();
    assert_eq!(a, b);
    assert!(m == before);
}

#[test]
fn owner_cannot_open_thread_on_own_listing() {
    let Fx {
        mut m,
        seller,
        listing,
        ..
    } = fx();
    m.refuses(ErrorCode::InvalidRequest, |m| m.open(seller, listing));
}

#[test]
fn withdraw_listing_voids_threads_and_offers() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        listing,
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    let quiet = m.open(rival, listing).unwrap();
    m.withdraw_listing(seller, listing).unwrap();
    assert_eq!(m.listings[&listing].status, ListingStatus::Withdrawn);
    assert_eq!(m.offers[&bid.id].state, OfferState::Void);
    assert_eq!(m.void_reasons[&bid.id], VoidReason::ListingWithdrawn);
    for t in [bid.thread_id, quiet.id] {
        assert_eq!(m.threads[&t].status, ThreadStatus::Void);
    }
    assert_eq!(m.funds(buyer).committed, 0);
    m.refuses(ErrorCode::ListingUnavailable, |m| {
        m.offer(buyer, bid.thread_id, 1)
    });
    m.refuses(ErrorCode::InvalidTransition, |m| {
        m.withdraw_listing(seller, listing)
    });
    let l2 = m.list(seller, Side::Sell, "books", 1);
    m.withdraw_listing(seller, l2).unwrap();
    m.refuses(ErrorCode::ListingUnavailable, |m| m.open(rival, l2));
    sound(&m);
}

#[test]
fn only_owner_can_withdraw_listing() {
    let Fx {
        mut m,
        buyer,
        listing,
        ..
    } = fx();
    m.refuses(ErrorCode::Forbidden, |m| m.withdraw_listing(buyer, listing));
}

#[test]
fn sold_listing_cannot_be_withdrawn() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.accept(seller, bid.id).unwrap();
    m.refuses(ErrorCode::InvalidTransition, |m| {
        m.withdraw_listing(seller, listing)
    });
}

#[test]
fn invalid_listing_is_refused() {
    let Fx { mut m, seller, .. } = fx();
    m.refuses(ErrorCode::InvalidPrice, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 0))
    });
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.post(seller, new_listing(Side::Sell, " ", 10))
    });
}

#[test]
fn wanted_ad_deal_has_owner_as_buyer() {
    let mut m = Mem::new(MarketRules::default());
    let wanter = m.register("wanter", Mandate::default(), 10_000);
    let seller = m.register("seller", Mandate::default(), 0);
    let ad = m.list(wanter, Side::Buy, "tools", 3_000);
    // The counterparty is the seller: its offer commits nothing.
    let ask = m.open_with_offer(seller, ad, 3_500).unwrap();
    assert_eq!((ask.buyer, ask.seller), (wanter, seller));
    assert_eq!(m.funds(wanter).committed, 0);
    let bid = m.offer(wanter, ask.thread_id, 3_200).unwrap();
    assert_eq!(m.funds(wanter).committed, 3_200);
    m.refuses(ErrorCode::NotYourOffer, |m| m.accept(wanter, bid.id));
    let deal = m.accept(seller, bid.id).unwrap();
    assert_eq!((deal.buyer, deal.seller), (wanter, seller));
    assert_eq!(deal.snapshot.side, Side::Buy);
    assert_eq!(m.balance(Account::Available(wanter)), 6_800);
    assert_eq!(m.balance(Account::Escrow), 3_200);
    sound(&m);
}

#[test]
fn wanted_ad_owner_offers_across_threads_are_funded_together() {
    let mut m = Mem::new(MarketRules::default());
    let wanter = m.register("wanter", Mandate::default(), 5_000);
    let s1 = m.register("s1", Mandate::default(), 0);
    let s2 = m.register("s2", Mandate::default(), 0);
    let ad = m.list(wanter, Side::Buy, "tools", 3_000);
    let t1 = m.open(s1, ad).unwrap();
    let t2 = m.open(s2, ad).unwrap();
    m.offer(wanter, t1.id, 3_000).unwrap();
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.offer(wanter, t2.id, 2_001)
    });
    let b2 = m.offer(wanter, t2.id, 2_000).unwrap();
    m.accept(s2, b2.id).unwrap();
    // The other thread's bid became void with the sale, freeing its commitment.
    assert_eq!(m.funds(wanter).committed, 0);
    assert_eq!(m.threads[&t1.id].status, ThreadStatus::Void);
    sound(&m);
}

// ----- research options ------------------------------------------------------------------------

#[test]
fn strict_alternation_blocks_second_offer_until_other_side_acts() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(rules(|r| r.strict_alternation = true), Mandate::default());
    let bid = m.open_with_offer(buyer, listing, 1_000).unwrap();
    let t = bid.thread_id;
    m.refuses(ErrorCode::InvalidTransition, |m| m.offer(buyer, t, 1_100));
    // Withdrawing is not the other side acting.
    m.withdraw(buyer, bid.id).unwrap();
    m.refuses(ErrorCode::InvalidTransition, |m| m.offer(buyer, t, 1_100));
    // Waiting and messaging are allowed.
    m.message(buyer, t, "any thoughts?").unwrap();
    let ask = m.offer(seller, t, 4_000).unwrap();
    m.refuses(ErrorCode::InvalidTransition, |m| m.offer(seller, t, 3_900));
    m.reject(buyer, ask.id).unwrap();
    // A rejection is the other side acting: the seller may offer again.
    m.offer(seller, t, 3_900).unwrap();
}

#[test]
fn collection_window_delays_seller_acceptance() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        listing,
    } = fx_with(
        rules(|r| r.collection_window_ms = Some(HOUR_MS)),
        Mandate::default(),
    );
    let bid = m.open_with_offer(buyer, listing, 3_000).unwrap();
    m.advance(HOUR_MS / 2);
    let rival_bid = m.open_with_offer(rival, listing, 3_500).unwrap();
    // The window runs from the listing's first offer, not each offer.
    assert_eq!(m.listings[&listing].first_offer_at, Some(T0));
    m.refuses(ErrorCode::InvalidTransition, |m| m.accept(seller, bid.id));
    m.advance(HOUR_MS / 2);
    m.accept(seller, rival_bid.id).unwrap();
    assert_eq!(m.offers[&bid.id].state, OfferState::Void);
}

#[test]
fn collection_window_does_not_delay_buyer_acceptance() {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx_with(
        rules(|r| r.collection_window_ms = Some(HOUR_MS)),
        Mandate::default(),
    );
    let t = m.open(buyer, listing).unwrap();
    let ask = m.offer(seller, t.id, 4_000).unwrap();
    m.accept(buyer, ask.id).unwrap();
}

// ----- ledger and audit ------------------------------------------------------------------------

/// A market with one agreed deal (buyer paid 4000 into escrow). Returns (market, buyer, seller, deal).
fn market_with_deal() -> (Mem, ParticipantId, ParticipantId, DealId) {
    let Fx {
        mut m,
        seller,
        buyer,
        listing,
        ..
    } = fx();
    let bid = m.open_with_offer(buyer, listing, 4_000).unwrap();
    let deal = m.accept(seller, bid.id).unwrap();
    sound(&m);
    (m, buyer, seller, deal.id)
}

/// Books a transfer (and optionally a deal status) through a plan, as a lifecycle command would.
fn book(
    m: &mut Mem,
    debit: Account,
    credit: Account,
    amount: Money,
    kind: TransferKind,
    deal: Option<DealId>,
    status: Option<DealStatus>,
) {
    let mut plan = Plan::new(m.market.id, m.now(), m.next_id);
    let key = format!("test:{}", plan.next_id);
    plan.transfer(debit, credit, amount, kind, deal, key);
    if let (Some(deal), Some(status)) = (deal, status) {
        plan.change(Change::SetDealStatus { deal, status });
    }
    m.apply(plan);
}

fn invariants(m: &Mem) -> Vec<&'static str> {
    m.ledger_breaches()
        .into_iter()
        .map(|b| b.invariant)
        .collect()
}

#[test]
fn ledger_release_to_seller_is_sound() {
    let (mut m, _, seller, deal) = market_with_deal();
    book(
        &mut m,
        Account::Escrow,
        Account::Available(seller),
        4_000,
        TransferKind::Release,
        Some(deal),
        Some(DealStatus::Completed),
    );
    sound(&m);
    assert_eq!(m.balance(Account::Escrow), 0);
    assert_eq!(m.funds(m.deals[&deal].buyer).spent, 4_000);
}

#[test]
fn ledger_verify_detects_tampered_stored_balance() {
    let (mut m, buyer, _, _) = market_with_deal();
    *m.balances.get_mut(&Account::Available(buyer)).unwrap() += 1;
    assert_eq!(invariants(&m), vec!["stored_balance_matches_transfers"]);
}

#[test]
fn ledger_verify_detects_double_release() {
    let (mut m, _, seller, deal) = market_with_deal();
    for _ in 0..2 {
        book(
            &mut m,
            Account::Escrow,
            Account::Available(seller),
            4_000,
            TransferKind::Release,
            Some(deal),
            Some(DealStatus::Completed),
        );
    }
    let found = invariants(&m);
    assert!(found.contains(&"hold_released_once"), "{found:?}");
    assert!(found.contains(&"escrow_equals_open_holds"), "{found:?}");
}

#[test]
fn ledger_verify_detects_release_of_open_hold() {
    let (mut m, _, seller, deal) = market_with_deal();
    book(
        &mut m,
        Account::Escrow,
        Account::Available(seller),
        4_000,
        TransferKind::Release,
        Some(deal),
        None,
    );
    assert!(invariants(&m).contains(&"open_hold_untouched"));
}

#[test]
fn ledger_verify_detects_negative_available() {
    let (mut m, buyer, _, _) = market_with_deal();
    book(
        &mut m,
        Account::Available(buyer),
        Account::Payout,
        6_001,
        TransferKind::Payout,
        None,
        None,
    );
    assert_eq!(invariants(&m), vec!["available_never_negative"]);
}

#[test]
fn ledger_verify_detects_second_hold_and_deleted_transfer() {
    let (mut m, buyer, _, deal) = market_with_deal();
    let mut twice = m.clone();
    book(
        &mut twice,
        Account::Available(buyer),
        Account::Escrow,
        4_000,
        TransferKind::Hold,
        Some(deal),
        None,
    );
    assert!(invariants(&twice).contains(&"hold_taken_once"));
    // Deleting the hold (but not the stored balances) is found too.
    m.transfers.pop();
    let found = invariants(&m);
    assert!(found.contains(&"hold_taken_once"), "{found:?}");
    assert!(
        found.contains(&"stored_balance_matches_transfers"),
        "{found:?}"
    );
}

#[test]
fn verify_chain_detects_altered_event() {
    let (mut m, ..) = market_with_deal();
    let i = m
        .events
        .iter()
        .position(|e| e.kind() == "deal_created")
        .unwrap();
    let EventBody::DealCreated(p) = &mut m.events[i].body else {
        unreachable!()
    };
    p.deal.price = 1;
    let breaks = verify_chain(&m.events);
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert!(breaks[0].contains("altered"));
    // Re-hashing the edited event moves the break to its successor's link.
    m.events[i].hash = m.events[i].compute_hash();
    let breaks = verify_chain(&m.events);
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert!(breaks[0].contains("does not link"));
}

#[test]
fn verify_chain_detects_deleted_event() {
    let (m, ..) = market_with_deal();
    let mut last_gone = m.events.clone();
    last_gone.pop();
    assert!(
        verify_chain(&last_gone).is_empty(),
        "truncating the tail keeps a valid prefix"
    );
    let mut middle_gone = m.events.clone();
    middle_gone.remove(3);
    let breaks = verify_chain(&middle_gone);
    assert!(
        breaks.iter().any(|b| b.contains("deleted or reordered")),
        "{breaks:?}"
    );
    assert!(
        breaks.iter().any(|b| b.contains("does not link")),
        "{breaks:?}"
    );
    let mut first_gone = m.events.clone();
    first_gone.remove(0);
    assert!(!verify_chain(&first_gone).is_empty());
}

#[test]
fn every_command_appends_events_to_one_chain() {
    let (m, ..) = market_with_deal();
    assert_eq!(m.events[0].prev_hash, GENESIS_HASH);
    for (i, e) in m.events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.market_id, m.market.id);
    }
    // Each transfer has its audit event.
    let booked = m
        .events
        .iter()
        .filter(|e| e.kind() == "transfer_booked")
        .count();
    assert_eq!(booked, m.transfers.len());
}

#[test]
fn wanted_ad_owner_can_accept_ask_its_other_bids_on_the_ad_made_room_for() {
    let mut m = Mem::new(MarketRules::default());
    let wanter = m.register("wanter", Mandate::default(), 5_000);
    let s1 = m.register("s1", Mandate::default(), 0);
    let s2 = m.register("s2", Mandate::default(), 0);
    let ad = m.list(wanter, Side::Buy, "tools", 3_000);
    let t1 = m.open(s1, ad).unwrap();
    m.offer(wanter, t1.id, 3_000).unwrap();
    let ask = m.open_with_offer(s2, ad, 2_500).unwrap();
    // The bid in the first thread is voided by this very acceptance, so it must not block it:
    // after the deal the wanter holds 2500 and has nothing committed.
    m.accept(wanter, ask.id).unwrap();
    assert_eq!(m.funds(wanter).committed, 0);
    assert_eq!(m.balance(Account::Available(wanter)), 2_500);
    sound(&m);
}
