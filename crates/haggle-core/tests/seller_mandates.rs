//! Seller mandates (spec: trust.md): the market refuses a listing, a seller's offer or an
//! acceptance below the seller's minimum (`below_seller_minimum`), or routes the sale to the
//! seller's principal (`below_min: ask`); the agent learns that a minimum exists, never its value.

mod support;

use haggle_core::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use support::{Mem, new_listing};

const BUDGET: Money = 50_000;

fn seller_mandate(
    min_sale: Option<Money>,
    items: &[(&str, Money)],
    below_min: BelowMin,
) -> Mandate {
    Mandate {
        min_sale,
        min_price_by_item: items.iter().map(|(i, v)| (i.to_string(), *v)).collect(),
        below_min,
        ..Default::default()
    }
}

fn item_listing(item: &str, price: Money) -> negotiation::NewListing {
    let mut l = new_listing(Side::Sell, "tools", price);
    l.attributes.insert("item_id".into(), item.into());
    l
}

/// A seller whose drill may not go below 1,100, and a funded buyer.
fn market(below_min: BelowMin) -> (Mem, ParticipantId, ParticipantId) {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register(
        "seller",
        seller_mandate(None, &[("drill", 1_100)], below_min),
        0,
    );
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    (m, seller, buyer)
}

#[test]
fn a_sell_listing_below_its_item_minimum_is_refused() {
    let (mut m, seller, _) = market(BelowMin::Refuse);
    m.refuses(ErrorCode::BelowSellerMinimum, |m| {
        m.post(seller, item_listing("drill", 30))
    });
}

#[test]
fn a_listing_at_its_minimum_or_of_another_item_is_posted() {
    let (mut m, seller, _) = market(BelowMin::Refuse);
    m.post(seller, item_listing("drill", 1_100))
        .expect("at the minimum");
    m.post(seller, item_listing("lamp", 30))
        .expect("no minimum for the lamp");
}

#[test]
fn the_refusal_never_tells_the_minimum() {
    let (mut m, seller, _) = market(BelowMin::Refuse);
    let e = m.refuses(ErrorCode::BelowSellerMinimum, |m| {
        m.post(seller, item_listing("drill", 30))
    });
    assert!(
        !e.message.contains("1100") && !e.message.contains("1,100"),
        "{e}"
    );
    assert_eq!(ErrorCode::BelowSellerMinimum.http_status(), 422);
}

#[test]
fn a_per_listing_minimum_binds_that_listing_only() {
    let (mut m, seller, buyer) = market(BelowMin::Refuse);
    let l = m.list(seller, Side::Sell, "books", 900);
    let other = m.list(seller, Side::Sell, "books", 900);
    let mut md = m.participants[&seller].mandate.clone();
    md.min_price_by_listing.insert(l, 800);
    m.set_mandate_by(seller, md, MandateAuthor::Principal)
        .unwrap();
    let low = m.open_with_offer(buyer, l, 700).unwrap();
    m.refuses(ErrorCode::BelowSellerMinimum, |m| m.accept(seller, low.id));
    let ok = m.open_with_offer(buyer, other, 700).unwrap();
    m.accept(seller, ok.id)
        .expect("no minimum on the other listing");
}

#[test]
fn min_sale_binds_any_sale_even_to_a_wanted_ad() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register(
        "seller",
        seller_mandate(Some(500), &[], BelowMin::Refuse),
        0,
    );
    let buyer = m.register("buyer", Mandate::default(), BUDGET);
    let wanted = m.list(buyer, Side::Buy, "tools", 400);
    m.refuses(ErrorCode::BelowSellerMinimum, |m| {
        m.open_with_offer(seller, wanted, 400)
    });
    m.open_with_offer(seller, wanted, 500)
        .expect("at the minimum");
}

#[test]
fn the_seller_cannot_counter_below_its_minimum() {
    let (mut m, seller, buyer) = market(BelowMin::Refuse);
    let l = m.post(seller, item_listing("drill", 1_500)).unwrap().id;
    let o = m.open_with_offer(buyer, l, 900).unwrap();
    m.refuses(ErrorCode::BelowSellerMinimum, |m| {
        m.offer(seller, o.thread_id, 1_000)
    });
    m.offer(seller, o.thread_id, 1_100)
        .expect("counter at the minimum");
}

#[test]
fn a_buyer_may_offer_below_but_the_seller_cannot_accept_it() {
    let (mut m, seller, buyer) = market(BelowMin::Refuse);
    let l = m.post(seller, item_listing("drill", 1_500)).unwrap().id;
    let o = m
        .open_with_offer(buyer, l, 30)
        .expect("a buyer's offer is the buyer's business");
    m.refuses(ErrorCode::BelowSellerMinimum, |m| m.accept(seller, o.id));
}

#[test]
fn a_buyer_cannot_accept_a_seller_offer_once_the_minimum_rose_above_it() {
    let (mut m, seller, buyer) = market(BelowMin::Refuse);
    let l = m.post(seller, item_listing("drill", 1_500)).unwrap().id;
    let bid = m.open_with_offer(buyer, l, 1_000).unwrap();
    let counter = m.offer(seller, bid.thread_id, 1_200).unwrap();
    m.set_mandate_by(
        seller,
        seller_mandate(None, &[("drill", 1_300)], BelowMin::Refuse),
        MandateAuthor::Principal,
    )
    .unwrap();
    let e = m.refuses(ErrorCode::BelowSellerMinimum, |m| {
        m.accept(buyer, counter.id)
    });
    assert!(!e.message.contains("1300"), "{e}");
}

#[test]
fn ask_routes_the_sale_to_the_sellers_principal() {
    let (mut m, seller, buyer) = market(BelowMin::Ask);
    let l = m
        .post(seller, item_listing("drill", 30))
        .expect("ask: the listing goes up");
    let o = m.open_with_offer(buyer, l.id, 30).unwrap();
    let d = m.accept(seller, o.id).expect("accepted, to be approved");
    assert_eq!(d.status, DealStatus::AwaitingApproval);
    assert_eq!(d.approval_from, Approver::Seller);
    assert!(d.awaits_approval_of(seller) && !d.awaits_approval_of(buyer));
    m.refuses(ErrorCode::Forbidden, |m| m.decide(buyer, d.id, true));
    m.decide(seller, d.id, true)
        .expect("the seller's principal approves");
    assert_eq!(m.deals[&d.id].status, DealStatus::Agreed);
}

#[test]
fn a_sellers_principal_may_decline_a_sale_below_its_minimum() {
    let (mut m, seller, buyer) = market(BelowMin::Ask);
    let l = m.post(seller, item_listing("drill", 30)).unwrap();
    let o = m.open_with_offer(buyer, l.id, 30).unwrap();
    let d = m.accept(seller, o.id).unwrap();
    m.decide(seller, d.id, false).unwrap();
    assert_eq!(m.deals[&d.id].status, DealStatus::Declined);
    assert_eq!(m.listings[&l.id].status, ListingStatus::Active);
}

#[test]
fn both_principals_approve_when_both_mandates_ask() {
    let (mut m, seller, buyer) = market(BelowMin::Ask);
    m.set_mandate_by(
        buyer,
        Mandate {
            approval_above: Some(10),
            ..Default::default()
        },
        MandateAuthor::Principal,
    )
    .unwrap();
    let l = m.post(seller, item_listing("drill", 30)).unwrap();
    let o = m.open_with_offer(buyer, l.id, 30).unwrap();
    let d = m.accept(seller, o.id).unwrap();
    assert_eq!(d.approval_from, Approver::Both);
    m.decide(buyer, d.id, true).unwrap();
    let d = m.deals[&d.id].clone();
    assert_eq!(
        (d.status, d.approval_from),
        (DealStatus::AwaitingApproval, Approver::Seller)
    );
    m.refuses(ErrorCode::Forbidden, |m| m.decide(buyer, d.id, true));
    m.decide(seller, d.id, true).unwrap();
    assert_eq!(m.deals[&d.id].status, DealStatus::Agreed);
}

#[test]
fn the_agent_view_says_a_minimum_exists_never_its_value() {
    let md = seller_mandate(Some(500), &[("drill", 1_100)], BelowMin::Refuse);
    let seen = serde_json::to_value(md.agent_view()).unwrap();
    assert_eq!(seen["has_minimum"], true);
    let text = seen.to_string();
    assert!(
        !text.contains("500") && !text.contains("1100") && !text.contains("drill"),
        "{text}"
    );
    let none = serde_json::to_value(Mandate::default().agent_view()).unwrap();
    assert!(
        none.get("has_minimum").is_none(),
        "no minimum, no flag: {none}"
    );
}

#[test]
fn mandate_changed_events_carry_the_agents_view() {
    let (mut m, seller, _) = market(BelowMin::Refuse);
    m.set_mandate_by(
        seller,
        seller_mandate(Some(777), &[("drill", 1_234)], BelowMin::Refuse),
        MandateAuthor::Principal,
    )
    .unwrap();
    let e = m
        .events
        .iter()
        .rev()
        .find(|e| e.kind() == "mandate_changed")
        .unwrap();
    let text = e.body.payload_json().to_string();
    assert!(
        text.contains("has_minimum") && !text.contains("777") && !text.contains("1234"),
        "{text}"
    );
    assert_eq!(m.participants[&seller].mandate.min_sale, Some(777));
    assert!(
        !m.participants[&seller].mandate.has_minimum,
        "the view flag is never stored"
    );
}

#[test]
fn a_mandate_without_a_seller_side_serializes_as_before() {
    let md = Mandate {
        spend_cap: Some(100),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&md).unwrap(),
        r#"{"spend_cap":100,"per_deal_cap":null,"categories":null,"expires_at":null,"approval_above":null,"frozen":false}"#
    );
}

#[test]
fn seller_minimums_are_bounded() {
    for md in [
        seller_mandate(Some(-1), &[], BelowMin::Refuse),
        seller_mandate(None, &[("drill", MAX_AMOUNT + 1)], BelowMin::Refuse),
        seller_mandate(None, &[("", 10)], BelowMin::Refuse),
        Mandate {
            min_price_by_item: (0..=MAX_SELLER_MINIMUMS)
                .map(|i| (format!("i{i}"), 1))
                .collect(),
            ..Default::default()
        },
    ] {
        assert_eq!(md.validate().unwrap_err().code, ErrorCode::InvalidRequest);
    }
}

// ---------------------------------------------------------------------------------------------
// Property: whatever the order of listings, offers, counters, acceptances, mandate changes and
// approvals, no sale stands below its seller's minimum without the seller's principal's approval.
// ---------------------------------------------------------------------------------------------

const PEOPLE: usize = 4;
const ITEMS: [&str; 3] = ["drill", "lamp", "desk"];

#[derive(Debug, Clone)]
enum Op {
    Post {
        who: usize,
        item: Option<usize>,
        buy: bool,
        price: Money,
    },
    Open {
        who: usize,
        listing: usize,
        price: Money,
    },
    /// The owner (`true`) or the counterparty counters in a thread.
    Counter {
        owner: bool,
        thread: usize,
        price: Money,
    },
    /// The offer's recipient (`true`) or anyone accepts it.
    Accept {
        recipient: bool,
        who: usize,
        offer: usize,
    },
    SetMandate {
        who: usize,
        mandate: Mandate,
    },
    Decide {
        seller: bool,
        deal: usize,
        approve: bool,
    },
    Advance {
        ms: i64,
    },
    Sweep,
}

fn amount() -> impl Strategy<Value = Money> {
    prop_oneof![8 => 1..3_000i64, 1 => Just(1i64), 1 => 3_000..6_000i64]
}

fn mandate() -> impl Strategy<Value = Mandate> {
    (
        proptest::option::weighted(0.4, amount()),
        prop::collection::btree_map(0..ITEMS.len(), amount(), 0..3),
        prop::collection::btree_map(1..60i64, amount(), 0..3),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(min_sale, items, listings, ask)| Mandate {
            min_sale,
            min_price_by_item: items
                .into_iter()
                .map(|(i, v)| (ITEMS[i].to_string(), v))
                .collect(),
            min_price_by_listing: listings,
            below_min: if ask { BelowMin::Ask } else { BelowMin::Refuse },
            ..Default::default()
        })
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..1_000usize;
    prop_oneof![
        4 => (0..PEOPLE, proptest::option::weighted(0.8, 0..ITEMS.len()), prop::bool::weighted(0.2), amount())
            .prop_map(|(who, item, buy, price)| Op::Post { who, item, buy, price }),
        5 => (0..PEOPLE, idx.clone(), amount()).prop_map(|(who, listing, price)| Op::Open { who, listing, price }),
        6 => (any::<bool>(), idx.clone(), amount()).prop_map(|(owner, thread, price)| Op::Counter { owner, thread, price }),
        6 => (prop::bool::weighted(0.9), 0..PEOPLE, idx.clone())
            .prop_map(|(recipient, who, offer)| Op::Accept { recipient, who, offer }),
        2 => (0..PEOPLE, mandate()).prop_map(|(who, mandate)| Op::SetMandate { who, mandate }),
        2 => (any::<bool>(), idx.clone(), prop::bool::weighted(0.6))
            .prop_map(|(seller, deal, approve)| Op::Decide { seller, deal, approve }),
        1 => (0..HOUR_MS).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Sweep),
    ]
}

fn nth<V: Clone>(m: &BTreeMap<i64, V>, keep: impl Fn(&V) -> bool, i: usize) -> Option<V> {
    let n = m.values().filter(|v| keep(v)).count();
    (n > 0).then(|| m.values().filter(|v| keep(v)).nth(i % n).unwrap().clone())
}

/// The market and what the property tracks beside it: deals created below their seller's
/// minimum (allowed only under `ask`), and those the seller's principal approved.
struct Run {
    m: Mem,
    people: Vec<ParticipantId>,
    below: BTreeSet<DealId>,
    seller_approved: BTreeSet<DealId>,
}

impl Run {
    /// Runs `op`; `None` when it had nothing to act on.
    fn step(&mut self, op: &Op) -> Option<Result<(), DomainError>> {
        let people = self.people.clone();
        let person = |i: usize| people[i % people.len()];
        let m = &mut self.m;
        let deals_before: BTreeSet<DealId> = m.deals.keys().copied().collect();
        let out = match op {
            Op::Post {
                who,
                item,
                buy,
                price,
            } => {
                let mut l = new_listing(if *buy { Side::Buy } else { Side::Sell }, "tools", *price);
                if let Some(i) = item {
                    l.attributes.insert("item_id".into(), ITEMS[*i].into());
                }
                m.post(person(*who), l).map(|_| ())
            }
            Op::Open {
                who,
                listing,
                price,
            } => {
                let l = nth(&m.listings, |l| l.status == ListingStatus::Active, *listing)?;
                m.open_with_offer(person(*who), l.id, *price).map(|_| ())
            }
            Op::Counter {
                owner,
                thread,
                price,
            } => {
                let t = nth(&m.threads, |t| t.status == ThreadStatus::Open, *thread)?;
                let actor = if *owner { t.owner } else { t.counterparty };
                m.offer(actor, t.id, *price).map(|_| ())
            }
            Op::Accept {
                recipient,
                who,
                offer,
            } => {
                let o = nth(&m.offers, |o| o.state == OfferState::Live, *offer)?;
                let actor = if *recipient {
                    o.recipient()
                } else {
                    person(*who)
                };
                m.accept(actor, o.id).map(|_| ())
            }
            Op::SetMandate { who, mandate } => {
                m.set_mandate_by(person(*who), mandate.clone(), MandateAuthor::Principal)
            }
            Op::Decide {
                seller,
                deal,
                approve,
            } => {
                let d = nth(
                    &m.deals,
                    |d| d.status == DealStatus::AwaitingApproval,
                    *deal,
                )?;
                let principal = if *seller { d.seller } else { d.buyer };
                let r = m.decide(principal, d.id, *approve);
                if r.is_ok() && *approve && principal == d.seller {
                    self.seller_approved.insert(d.id);
                }
                r
            }
            Op::Advance { ms } => {
                m.advance(*ms);
                return None;
            }
            Op::Sweep => {
                m.sweep();
                return None;
            }
        };
        // A new deal is below its seller's minimum only if the seller's mandate says `ask`.
        for d in m.deals.values().filter(|d| !deals_before.contains(&d.id)) {
            let seller = &m.participants[&d.seller];
            let listing = &m.listings[&d.listing_id];
            if let Some(min) = seller.mandate.seller_minimum(seller.id, listing)
                && d.price < min
            {
                assert_eq!(
                    seller.mandate.below_min,
                    BelowMin::Ask,
                    "deal {} below {min}",
                    d.id
                );
                assert!(
                    d.awaits_approval_of(d.seller),
                    "deal {} skipped the seller",
                    d.id
                );
                self.below.insert(d.id);
            }
        }
        Some(out)
    }

    /// No deal below its seller's minimum stands unless the seller's principal approved it.
    fn check(&self) {
        for id in &self.below {
            let d = &self.m.deals[id];
            assert!(
                matches!(
                    d.status,
                    DealStatus::AwaitingApproval | DealStatus::Declined
                ) || self.seller_approved.contains(id),
                "deal {id} at {} is {} without the seller's approval",
                d.price,
                d.status
            );
        }
        assert_eq!(self.m.ledger_breaches(), vec![], "ledger breach");
        assert_eq!(
            self.m.chain_breaks(),
            Vec::<String>::new(),
            "event chain break"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn no_sale_below_a_seller_mandate_whatever_the_order(
        mandates in prop::collection::vec(mandate(), PEOPLE),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut m = Mem::new(MarketRules::default());
        let people = mandates
            .into_iter()
            .enumerate()
            .map(|(i, md)| m.register(&format!("p{i}"), md, BUDGET))
            .collect();
        let mut run = Run { m, people, below: BTreeSet::new(), seller_approved: BTreeSet::new() };
        for op in &ops {
            let before = run.m.clone();
            if let Some(Err(e)) = run.step(op) {
                prop_assert!(run.m == before, "refused {op:?} ({e}) but changed the market");
            }
            run.check();
        }
    }

    /// A hijacked seller that prices everything at 1 sells nothing below its principal's limits.
    #[test]
    fn a_seller_pricing_everything_at_one_sells_nothing_below_its_limits(
        floors in prop::collection::vec(2..5_000i64, ITEMS.len()),
        bids in prop::collection::vec(1..6_000i64, 1..20),
    ) {
        let mut m = Mem::new(MarketRules::default());
        let items: Vec<(&str, Money)> = ITEMS.iter().copied().zip(floors.iter().copied()).collect();
        let min = *floors.iter().min().unwrap();
        let seller = m.register("hijacked", seller_mandate(Some(min), &items, BelowMin::Refuse), 0);
        let buyer = m.register("buyer", Mandate::default(), 10 * BUDGET);
        for (i, &(item, floor)) in items.iter().enumerate() {
            prop_assert_eq!(
                m.post(seller, item_listing(item, 1)).unwrap_err().code,
                ErrorCode::BelowSellerMinimum
            );
            let l = m.post(seller, item_listing(item, floor)).unwrap().id;
            for (_, &bid) in bids.iter().enumerate().filter(|(k, _)| k % ITEMS.len() == i) {
                let Ok(o) = m.open_with_offer(buyer, l, bid) else { continue };
                // The hijacked brain counters at 1 and accepts whatever it is offered.
                let _ = m.offer(seller, o.thread_id, 1);
                let _ = m.accept(seller, o.id);
            }
        }
        for d in m.deals.values() {
            let floor = items.iter().find(|(i, _)| m.listings[&d.listing_id].attributes["item_id"] == *i).unwrap().1;
            prop_assert!(d.price >= floor, "sold at {} below {floor}", d.price);
        }
    }
}
