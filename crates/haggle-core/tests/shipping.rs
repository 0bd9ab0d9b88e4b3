//! Shipping beside handover (spec trust.md, Shipping), one behaviour per test against an in-memory
//! market on its simulated clock: the shipping price in the deal's price and hold, `ship` and its
//! refusals, the shipping deadline, delivery (confirmed, by the window, or by a simulated
//! carrier), `not_received` disputes. The ledger is verified after every step.

mod support;

use haggle_core::lifecycle::{self, Ruling};
use haggle_core::negotiation::NewListing;
use haggle_core::shipping::{DEFAULT_SHIPPING_WINDOW_MS, Transit};
use haggle_core::*;
use support::{Mem, new_listing};

const PRICE: Money = 4_000;
const SHIPPING: Money = 650;
const BUDGET: Money = 10_000;

struct Fx {
    m: Mem,
    seller: ParticipantId,
    buyer: ParticipantId,
    deal: DealId,
}

fn shipped_listing(price: Money, transit: Option<Transit>) -> NewListing {
    NewListing {
        fulfilment: Fulfilment::Shipping {
            shipping_price: SHIPPING,
        },
        true_transit: transit,
        ..new_listing(Side::Sell, "books", price)
    }
}

/// A seller's shipped listing bought at `PRICE` (plus `SHIPPING`) by a buyer.
fn fx_with(transit: Option<Transit>) -> Fx {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    let listing = m
        .post(seller, shipped_listing(5_000, transit))
        .expect("post")
        .id;
    let deal = m.deal_on(buyer, listing, PRICE).id;
    sound(&m);
    Fx {
        m,
        seller,
        buyer,
        deal,
    }
}

fn fx() -> Fx {
    fx_with(None)
}

#[track_caller]
fn sound(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    let (escrow, open) = m.escrow_and_open_holds();
    assert_eq!(escrow, open, "escrow equals the open holds");
}

fn cash(m: &Mem, p: ParticipantId) -> Money {
    m.balance(Account::Available(p))
}

impl Fx {
    fn deal(&self) -> &Deal {
        &self.m.deals[&self.deal]
    }
    fn shipping(&self) -> &Shipping {
        self.deal().shipping.as_ref().expect("a shipped deal")
    }
    fn shipped(mut self) -> Fx {
        self.m
            .ship(self.seller, self.deal, "DHL", "JJD0001")
            .expect("ship");
        self
    }
}

#[test]
fn a_shipped_deal_holds_the_price_plus_shipping() {
    let f = fx();
    let d = f.deal();
    assert_eq!(d.price, PRICE + SHIPPING);
    assert_eq!(
        d.snapshot.fulfilment,
        Fulfilment::Shipping {
            shipping_price: SHIPPING
        }
    );
    assert_eq!(f.m.balance(Account::Escrow), PRICE + SHIPPING);
    assert_eq!(cash(&f.m, f.buyer), BUDGET - PRICE - SHIPPING);
    let s = f.shipping();
    assert_eq!(s.status, ShippingStatus::NotShipped);
    assert_eq!(s.ship_by, d.created_at + DEFAULT_SHIPPING_WINDOW_MS);
}

#[test]
fn an_offer_the_buyer_cannot_pay_with_shipping_is_refused() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), PRICE);
    let listing = m.post(seller, shipped_listing(PRICE, None)).unwrap().id;
    m.refuses(ErrorCode::InsufficientFunds, |m| {
        m.open_with_offer(buyer, listing, PRICE)
    });
}

#[test]
fn shipping_records_carrier_and_tracking_and_starts_the_confirmation_window() {
    let f = fx().shipped();
    let d = f.deal();
    assert_eq!(d.status, DealStatus::HandedOver);
    assert_eq!(
        d.confirm_deadline,
        Some(f.m.now() + MarketRules::default().confirmation_window_ms)
    );
    let s = f.shipping();
    assert_eq!(s.status, ShippingStatus::Shipped);
    assert_eq!(
        (s.carrier.as_deref(), s.tracking.as_deref()),
        (Some("DHL"), Some("JJD0001"))
    );
    assert_eq!(s.shipped_at, Some(f.m.now()));
    assert_eq!(f.m.event_kinds().last(), Some(&"deal_shipped"));
    sound(&f.m);
}

#[test]
fn confirming_a_shipped_deal_delivers_it_and_pays_the_seller_price_and_shipping() {
    let mut f = fx().shipped();
    f.m.confirm(f.buyer, f.deal).unwrap();
    assert_eq!(f.deal().status, DealStatus::Completed);
    assert_eq!(f.shipping().status, ShippingStatus::Delivered);
    assert_eq!(f.shipping().delivered_at, Some(f.m.now()));
    assert_eq!(cash(&f.m, f.seller), PRICE + SHIPPING);
    assert_eq!(f.m.balance(Account::Escrow), 0);
    sound(&f.m);
}

#[test]
fn a_shipped_deal_is_not_handed_over_in_person() {
    let mut f = fx();
    let (seller, deal) = (f.seller, f.deal);
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.hand_over(seller, deal, None)
    });
}

#[test]
fn an_in_person_deal_is_not_shipped() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    let deal = m.deal_on(buyer, listing, PRICE);
    assert_eq!(deal.price, PRICE);
    assert_eq!(deal.shipping, None);
    m.refuses(ErrorCode::InvalidTransition, |m| {
        m.ship(seller, deal.id, "DHL", "1")
    });
}

#[test]
fn only_the_seller_ships() {
    let mut f = fx();
    let (buyer, deal) = (f.buyer, f.deal);
    f.m.refuses(ErrorCode::Forbidden, |m| m.ship(buyer, deal, "DHL", "1"));
}

#[test]
fn carrier_and_tracking_are_required_and_bounded() {
    let mut f = fx();
    let (seller, deal) = (f.seller, f.deal);
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.ship(seller, deal, " ", "1")
    });
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.ship(seller, deal, "DHL", "")
    });
    let long = "x".repeat(shipping::MAX_TRACKING + 1);
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.ship(seller, deal, "DHL", &long)
    });
}

#[test]
fn shipping_after_the_deadline_is_refused() {
    let mut f = fx();
    f.m.advance(DEFAULT_SHIPPING_WINDOW_MS);
    let (seller, deal) = (f.seller, f.deal);
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.ship(seller, deal, "DHL", "1")
    });
}

#[test]
fn the_buyer_cancels_alone_only_once_the_shipping_deadline_passed() {
    let mut f = fx();
    f.m.advance(DEFAULT_SHIPPING_WINDOW_MS - 1);
    assert_eq!(
        f.m.cancel(f.buyer, f.deal, None),
        Ok(false),
        "a request only"
    );
    f.m.advance(1);
    assert_eq!(f.m.cancel(f.buyer, f.deal, None), Ok(true));
    let d = f.deal();
    assert_eq!(d.status, DealStatus::Cancelled);
    assert_eq!(
        d.resolution.as_ref().map(|r| r.note.as_str()),
        Some(lifecycle::SELLER_DID_NOT_SHIP)
    );
    assert_eq!(cash(&f.m, f.buyer), BUDGET);
    let deals: Vec<Deal> = f.m.deals.values().cloned().collect();
    assert_eq!(
        lifecycle::reputation(f.seller, &deals, &[]).cancellations,
        1
    );
    sound(&f.m);
}

#[test]
fn the_shipping_window_is_a_market_rule() {
    let mut m = Mem::new(MarketRules {
        shipping_window_ms: Some(HOUR_MS),
        ..MarketRules::default()
    });
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    let listing = m.post(seller, shipped_listing(5_000, None)).unwrap().id;
    let deal = m.deal_on(buyer, listing, PRICE);
    assert_eq!(
        deal.shipping.map(|s| s.ship_by),
        Some(deal.created_at + HOUR_MS)
    );
}

#[test]
fn a_shipped_deal_completes_as_delivered_when_the_window_passes() {
    let mut f = fx().shipped();
    f.m.advance(MarketRules::default().confirmation_window_ms);
    f.m.sweep();
    assert_eq!(f.deal().status, DealStatus::Completed);
    assert_eq!(f.shipping().status, ShippingStatus::Delivered);
    assert_eq!(cash(&f.m, f.seller), PRICE + SHIPPING);
    sound(&f.m);
}

#[test]
fn a_not_received_dispute_refunded_returns_price_and_shipping() {
    let mut f = fx().shipped();
    let grounds = Dispute {
        grounds: DisputeGrounds::NotReceived,
        claims: Vec::new(),
    };
    let s = f.m.deal_scene(Some(f.buyer), f.deal);
    f.m.run(s, |s, p| {
        lifecycle::dispute_on(s, p, "never arrived", grounds)
    })
    .unwrap();
    assert_eq!(f.deal().status, DealStatus::Disputed);
    f.m.resolve(None, f.deal, Ruling::Refund, "lost in transit")
        .unwrap();
    assert_eq!(cash(&f.m, f.buyer), BUDGET);
    assert_eq!(cash(&f.m, f.seller), 0);
    sound(&f.m);
}

#[test]
fn a_simulated_carrier_delivers_at_its_ground_truths_time() {
    let mut f = fx_with(Some(Transit {
        delivery_ms: 5 * HOUR_MS,
        lost: false,
    }))
    .shipped();
    let shipped_at = f.m.now();
    f.m.advance(5 * HOUR_MS - 1);
    f.m.sweep();
    assert_eq!(f.shipping().status, ShippingStatus::Shipped);
    f.m.advance(1);
    f.m.sweep();
    assert_eq!(f.shipping().status, ShippingStatus::Delivered);
    assert_eq!(f.shipping().delivered_at, Some(shipped_at + 5 * HOUR_MS));
    assert_eq!(
        f.deal().status,
        DealStatus::HandedOver,
        "the buyer confirms"
    );
    assert_eq!(f.m.event_kinds().last(), Some(&"deal_delivered"));
    sound(&f.m);
}

#[test]
fn a_lost_parcel_is_never_delivered() {
    let mut f = fx_with(Some(Transit {
        delivery_ms: HOUR_MS,
        lost: true,
    }))
    .shipped();
    f.m.advance(MarketRules::default().confirmation_window_ms - 1);
    f.m.sweep();
    assert_eq!(f.shipping().status, ShippingStatus::Shipped);
}

#[test]
fn a_transit_ground_truth_needs_a_shipped_listing() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let input = NewListing {
        true_transit: Some(Transit {
            delivery_ms: 1,
            lost: false,
        }),
        ..new_listing(Side::Sell, "books", 5_000)
    };
    m.refuses(ErrorCode::InvalidRequest, |m| m.post(seller, input));
}

#[test]
fn the_ground_truth_is_never_serialised() {
    let f = fx_with(Some(Transit {
        delivery_ms: HOUR_MS,
        lost: true,
    }))
    .shipped();
    let json = serde_json::to_string(&f.m.listings.values().collect::<Vec<_>>()).unwrap();
    assert!(
        !json.contains("true_transit") && !json.contains("lost"),
        "{json}"
    );
    let deal = serde_json::to_string(f.deal()).unwrap();
    assert!(!deal.contains("arrives_at"), "{deal}");
}

#[test]
fn in_person_listings_and_deals_serialise_as_before() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    let deal = m.deal_on(buyer, listing, PRICE);
    let json = serde_json::to_string(&(&m.listings[&listing], &deal)).unwrap();
    assert!(
        !json.contains("fulfilment") && !json.contains("shipping"),
        "{json}"
    );
    let rules = serde_json::to_string(&MarketRules::default()).unwrap();
    assert!(!rules.contains("shipping_window_ms"), "{rules}");
}
