//! A market's closing time (an extension of `shared/spec/market.md`): from `closes_at` on, nothing
//! new is traded (`market_closed`), the sweep ends every negotiation and expires every active
//! listing, and everything already agreed still settles. One behaviour per test, against an
//! in-memory market; every refusal is checked for its code and for leaving the market unchanged.

mod support;

use haggle_core::lifecycle::Ruling;
use haggle_core::*;
use support::{Mem, T0, new_listing};

const CLOSE: Timestamp = T0 + DAY_MS;

/// A market closing a day after it starts: a seller with a sell ad, a buyer with a live offer on
/// it, a rival who has not offered yet, and an agreed deal between the same seller and the buyer
/// on a second listing.
struct Fx {
    m: Mem,
    seller: ParticipantId,
    buyer: ParticipantId,
    rival: ParticipantId,
    listing: ListingId,
    offer: OfferId,
    thread: ThreadId,
    deal: DealId,
}

fn fx_with(rules: MarketRules, buyer_mandate: Mandate) -> Fx {
    let mut m = Mem::new(MarketRules {
        closes_at: Some(CLOSE),
        ..rules
    });
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", buyer_mandate, 10_000);
    let rival = m.register("rival", Mandate::default(), 10_000);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    let sold = m.list(seller, Side::Sell, "lamps", 2_000);
    let deal = m.deal_on(buyer, sold, 1_500).id;
    let o = m.open_with_offer(buyer, listing, 3_000).unwrap();
    Fx {
        m,
        seller,
        buyer,
        rival,
        listing,
        offer: o.id,
        thread: o.thread_id,
        deal,
    }
}

fn fx() -> Fx {
    fx_with(MarketRules::default(), Mandate::default())
}

/// The same market once its clock reached the closing time (not yet swept).
fn closed() -> Fx {
    let mut f = fx();
    f.m.advance(CLOSE - f.m.now());
    f
}

/// The ledger and the event chain are sound, and escrow holds exactly the open deals' prices.
#[track_caller]
fn sound(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    let (escrow, open) = m.escrow_and_open_holds();
    assert_eq!(escrow, open, "escrow equals the open holds");
}

// ----- what is refused -------------------------------------------------------------------------

#[test]
fn offer_after_close_is_refused_with_market_closed() {
    let Fx {
        mut m,
        seller,
        thread,
        ..
    } = closed();
    let err = m.refuses(ErrorCode::MarketClosed, |m| m.offer(seller, thread, 4_500));
    assert!(
        err.message.contains(&utc(CLOSE)),
        "the message says when the market closed: {}",
        err.message
    );
}

#[test]
fn market_closed_travels_as_409() {
    assert_eq!(ErrorCode::MarketClosed.http_status(), 409);
    assert_eq!(ErrorCode::MarketClosed.as_str(), "market_closed");
    assert!(ErrorCode::ALL.contains(&ErrorCode::MarketClosed));
}

#[test]
fn posting_a_listing_or_wanted_ad_after_close_is_refused() {
    let Fx {
        mut m,
        seller,
        buyer,
        ..
    } = closed();
    m.refuses(ErrorCode::MarketClosed, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 900))
    });
    m.refuses(ErrorCode::MarketClosed, |m| {
        m.post(buyer, new_listing(Side::Buy, "books", 900))
    });
}

#[test]
fn opening_a_thread_after_close_is_refused() {
    let Fx {
        mut m,
        rival,
        listing,
        ..
    } = closed();
    m.refuses(ErrorCode::MarketClosed, |m| m.open(rival, listing));
}

#[test]
fn accepting_an_offer_after_close_is_refused() {
    let Fx {
        mut m,
        seller,
        offer,
        ..
    } = closed();
    m.refuses(ErrorCode::MarketClosed, |m| m.accept(seller, offer));
}

#[test]
fn messaging_in_a_negotiation_after_close_is_refused() {
    let Fx {
        mut m,
        seller,
        thread,
        ..
    } = closed();
    m.refuses(ErrorCode::MarketClosed, |m| {
        m.message(seller, thread, "still there?")
    });
}

#[test]
fn trading_a_moment_before_close_still_works() {
    let mut f = fx();
    f.m.advance(CLOSE - 1 - f.m.now());
    f.m.accept(f.seller, f.offer).unwrap();
    sound(&f.m);
}

// ----- what still settles ----------------------------------------------------------------------

#[test]
fn handover_and_confirm_after_close_still_settle() {
    let mut f = closed();
    f.m.sweep();
    f.m.hand_over(f.seller, f.deal, Some("at reception"))
        .unwrap();
    f.m.confirm(f.buyer, f.deal).unwrap();
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Completed);
    assert_eq!(f.m.balance(Account::Available(f.seller)), 1_500);
    sound(&f.m);
}

#[test]
fn dispute_evidence_and_resolution_after_close_still_work() {
    let mut f = closed();
    f.m.hand_over(f.seller, f.deal, None).unwrap();
    f.m.dispute(f.buyer, f.deal, "never arrived").unwrap();
    f.m.evidence(Some(f.seller), f.deal, "photo of the handover")
        .unwrap();
    f.m.resolve(None, f.deal, Ruling::Refund, "no proof")
        .unwrap();
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Refunded);
    sound(&f.m);
}

#[test]
fn cancelling_after_close_refunds_and_the_listing_expires_instead_of_relisting() {
    let mut f = closed();
    let listing = f.m.deals[&f.deal].listing_id;
    assert!(f.m.cancel(f.seller, f.deal, None).unwrap());
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Cancelled);
    assert_eq!(f.m.balance(Account::Available(f.buyer)), 10_000);
    assert_eq!(f.m.listings[&listing].status, ListingStatus::Expired);
    assert!(!f.m.event_kinds().contains(&"listing_relisted"));
    sound(&f.m);
}

#[test]
fn a_principal_approves_a_waiting_deal_after_close() {
    let mandate = Mandate {
        approval_above: Some(100),
        ..Mandate::default()
    };
    let rules = MarketRules {
        approval_window_ms: 2 * DAY_MS,
        ..MarketRules::default()
    };
    let mut f = fx_with(rules, mandate);
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::AwaitingApproval);
    f.m.advance(CLOSE - f.m.now());
    f.m.decide(f.buyer, f.deal, true).unwrap();
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Agreed);
    sound(&f.m);
}

#[test]
fn a_deal_declined_after_close_refunds_and_its_listing_expires() {
    let mandate = Mandate {
        approval_above: Some(100),
        ..Mandate::default()
    };
    let mut f = fx_with(MarketRules::default(), mandate);
    let listing = f.m.deals[&f.deal].listing_id;
    f.m.advance(CLOSE - f.m.now());
    f.m.decide(f.buyer, f.deal, false).unwrap();
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Declined);
    assert_eq!(f.m.listings[&listing].status, ListingStatus::Expired);
    assert_eq!(f.m.balance(Account::Available(f.buyer)), 10_000);
    sound(&f.m);
}

#[test]
fn rating_after_close_works() {
    let mut f = fx();
    f.m.hand_over(f.seller, f.deal, None).unwrap();
    f.m.confirm(f.buyer, f.deal).unwrap();
    f.m.advance(CLOSE - f.m.now());
    f.m.sweep();
    f.m.rate(f.buyer, f.deal, 5, "smooth").unwrap();
    f.m.rate(f.seller, f.deal, 4, "").unwrap();
}

#[test]
fn withdrawing_and_walking_away_after_close_work_before_the_sweep() {
    let mut f = closed();
    f.m.withdraw(f.buyer, f.offer).unwrap();
    f.m.walk_away(f.seller, f.thread).unwrap();
    f.m.withdraw_listing(f.seller, f.listing).unwrap();
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Withdrawn);
    sound(&f.m);
}

#[test]
fn the_operator_funds_participants_after_close() {
    let mut f = closed();
    f.m.fund(f.rival, 500).unwrap();
    assert_eq!(f.m.balance(Account::Available(f.rival)), 10_500);
}

// ----- the sweep at close ----------------------------------------------------------------------

#[test]
fn sweep_at_close_expires_listings_offers_and_threads() {
    let mut f = fx();
    let wanted = f.m.list(f.rival, Side::Buy, "books", 800);
    f.m.advance(CLOSE - f.m.now());
    f.m.sweep();
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Expired);
    assert_eq!(f.m.listings[&wanted].status, ListingStatus::Expired);
    assert_eq!(f.m.offers[&f.offer].state, OfferState::Expired);
    assert_eq!(f.m.threads[&f.thread].status, ThreadStatus::TimedOut);
    let kinds = f.m.event_kinds();
    for k in ["listing_expired", "offer_expired", "thread_closed"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let closing = f.m.events.iter().rev().take(5).collect::<Vec<_>>();
    assert!(
        closing
            .iter()
            .any(|e| matches!(&e.body, EventBody::ThreadClosed(p) if p.reason == "market_closed"))
    );
    // The deal agreed before the close is untouched; its listing stays sold.
    assert_eq!(f.m.deals[&f.deal].status, DealStatus::Agreed);
    sound(&f.m);
}

#[test]
fn sweep_at_close_releases_the_buyers_committed_funds() {
    let mut f = closed();
    // The live offer no longer commits once expired by the clock; the sweep records it.
    f.m.sweep();
    assert_eq!(f.m.funds(f.buyer).committed, 0);
    assert_eq!(f.m.funds(f.buyer).held, 1_500);
    assert_eq!(f.m.balance(Account::Available(f.buyer)), 10_000 - 1_500);
    sound(&f.m);
}

#[test]
fn sweep_before_close_leaves_trading_alone() {
    let mut f = fx();
    f.m.advance(CLOSE - 1 - f.m.now());
    // The offer lives a day (T0 + 1 day > CLOSE - 1), so nothing is due yet.
    assert_eq!(f.m.sweep(), 0);
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    assert_eq!(f.m.offers[&f.offer].state, OfferState::Live);
}

#[test]
fn sweep_after_close_is_idempotent() {
    let mut f = closed();
    assert!(f.m.sweep() > 0);
    let before = f.m.clone();
    assert_eq!(f.m.sweep(), 0);
    assert_eq!(f.m, before);
}

#[test]
fn an_offer_past_its_own_expiry_at_close_expires_without_a_closing_reason() {
    let mut f = fx();
    f.m.advance(DAY_MS + HOUR_MS);
    f.m.sweep();
    let e =
        f.m.events
            .iter()
            .find_map(|e| match &e.body {
                EventBody::OfferExpired(p) => Some(p),
                _ => None,
            })
            .expect("expired");
    assert_eq!(e.reason, None);
}

// ----- setting the closing time ----------------------------------------------------------------

#[test]
fn closes_at_in_the_past_at_creation_is_refused() {
    let rules = MarketRules {
        closes_at: Some(T0),
        ..MarketRules::default()
    };
    let err = rules.validate_new(T0).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert!(err.message.contains("rules.closes_at"), "{}", err.message);
    assert!(
        MarketRules {
            closes_at: Some(T0 + 1),
            ..MarketRules::default()
        }
        .validate_new(T0)
        .is_ok()
    );
}

#[test]
fn closes_at_must_be_a_plausible_time() {
    let rules = MarketRules {
        closes_at: Some(-5),
        ..MarketRules::default()
    };
    let err = rules.validate().unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    assert!(err.message.contains("rules.closes_at"));
    let mut m = Mem::new(MarketRules::default());
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.set_closing_time(Some(MAX_TIMESTAMP + 1))
    });
}

#[test]
fn stored_rules_without_a_closing_time_are_open_ended() {
    let rules: MarketRules = serde_json::from_str(r#"{"offer_ttl_ms": 1000}"#).unwrap();
    assert_eq!(rules.closes_at, None);
    let m = Mem::new(rules);
    assert!(!m.market.is_closed(i64::MAX));
    assert_eq!(m.market.time_left(T0), None);
}

#[test]
fn time_left_counts_down_to_zero() {
    let f = fx();
    assert_eq!(f.m.market.time_left(T0), Some(DAY_MS));
    assert_eq!(f.m.market.time_left(CLOSE + 5), Some(0));
    assert!(f.m.market.is_closed(CLOSE));
    assert!(!f.m.market.is_closed(CLOSE - 1));
}

#[test]
fn moving_the_closing_time_into_the_past_closes_at_the_next_sweep() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    m.set_closing_time(Some(T0 - 1)).unwrap();
    let e = m.events.last().unwrap();
    let EventBody::MarketClosingSet(p) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(p.closes_at, Some(T0 - 1));
    assert_eq!(m.listings[&listing].status, ListingStatus::Active);
    m.sweep();
    assert_eq!(m.listings[&listing].status, ListingStatus::Expired);
}

#[test]
fn extending_the_closing_time_reopens_trading_but_expired_listings_stay_expired() {
    let mut f = closed();
    f.m.sweep();
    f.m.set_closing_time(Some(CLOSE + DAY_MS)).unwrap();
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Expired);
    f.m.refuses(ErrorCode::ListingUnavailable, |m| {
        m.open(f.rival, f.listing)
    });
    let again = f.m.list(f.seller, Side::Sell, "books", 5_000);
    f.m.open_with_offer(f.rival, again, 4_000).unwrap();
    sound(&f.m);
}

#[test]
fn removing_the_closing_time_makes_the_market_open_ended() {
    let mut f = closed();
    f.m.set_closing_time(None).unwrap();
    f.m.offer(f.seller, f.thread, 4_500).unwrap();
}

#[test]
fn only_an_operator_sets_the_closing_time() {
    let mut f = fx();
    let seller = f.seller;
    f.m.refuses(ErrorCode::Forbidden, |m| {
        let s = m.scene(Some(seller), None, None, None);
        m.run(s, |s, p| {
            haggle_core::negotiation::set_closing_time(s, p, None)
        })
    });
}

// ----- reading and writing times ---------------------------------------------------------------

#[test]
fn times_are_written_and_read_back_in_utc() {
    assert_eq!(utc(T0), "2023-11-14 22:13 UTC");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    assert_eq!(parse_utc("2023-11-14 22:13 UTC"), Some(T0 - 20_000));
    assert_eq!(parse_utc("2000-02-29T00:00"), Some(951_782_400_000));
    assert_eq!(parse_utc("1970-01-01 00:00:05Z"), Some(5_000));
    for bad in [
        "",
        "2023-02-30 10:00",
        "2023-13-01 10:00",
        "2023-1-01 10:00",
        "2023-01-01",
        "tomorrow",
    ] {
        assert_eq!(parse_utc(bad), None, "{bad}");
    }
}

#[test]
fn durations_read_as_days_hours_minutes_and_seconds() {
    assert_eq!(parse_duration("7d"), Some(7 * DAY_MS));
    assert_eq!(parse_duration("2d4h"), Some(2 * DAY_MS + 4 * HOUR_MS));
    assert_eq!(parse_duration("90s"), Some(90_000));
    assert_eq!(parse_duration("30m"), Some(30 * 60_000));
    for bad in ["", "7", "d", "7w", "-1d", "99999999999999999999d"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}
