//! Market policy, moderation and suspension in the core (spec, trust.md: Market policy): one
//! behaviour per test, then properties over random sequences of operations.

mod support;

use haggle_core::policy::{MarketPolicy, PolicyAction, PriceBounds};
use haggle_core::*;
use proptest::prelude::*;
use support::{Mem, T0, new_listing};

fn market() -> (Mem, ParticipantId, ParticipantId) {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), 50_000);
    (m, seller, buyer)
}

fn terms(t: &[&str]) -> MarketPolicy {
    MarketPolicy {
        prohibited_terms: t.iter().map(|s| s.to_string()).collect(),
        ..MarketPolicy::default()
    }
}

#[test]
fn a_prohibited_category_is_refused_naming_the_rule() {
    let (mut m, seller, _) = market();
    m.set_policy(MarketPolicy {
        prohibited_categories: vec!["Weapons".into()],
        ..MarketPolicy::default()
    })
    .unwrap();
    let e = m.refuses(ErrorCode::PolicyViolation, |m| {
        m.post(seller, new_listing(Side::Sell, "weapons", 100))
    });
    assert!(e.message.contains("prohibited_categories"), "{e}");
}

#[test]
fn a_prohibited_term_is_refused_as_a_whole_word_in_title_or_description() {
    let (mut m, seller, _) = market();
    m.set_policy(terms(&["replica"])).unwrap();
    let mut l = new_listing(Side::Sell, "watches", 100);
    l.description = "A REPLICA, works fine".into();
    let e = m.refuses(ErrorCode::PolicyViolation, |m| m.post(seller, l));
    assert!(e.message.contains("prohibited_terms"), "{e}");
    assert!(e.message.contains("description"), "{e}");
    let mut ok = new_listing(Side::Sell, "watches", 100);
    ok.title = "Replicas of nothing: replicant".into();
    assert_eq!(m.post(seller, ok).unwrap().status, ListingStatus::Active);
}

#[test]
fn a_prohibited_term_in_the_sellers_claims_is_refused_too() {
    let (mut m, seller, _) = market();
    m.set_policy(terms(&["replica"])).unwrap();
    let mut l = new_listing(Side::Sell, "watches", 100);
    l.claims
        .details
        .insert("brand".into(), "Rolex replica".into());
    let e = m.refuses(ErrorCode::PolicyViolation, |m| m.post(seller, l));
    assert!(
        e.message.contains("the claims contain") || e.message.contains("claims"),
        "{e}"
    );
    let mut parts = new_listing(Side::Sell, "watches", 100);
    parts.claims.included = vec!["replica strap".into()];
    m.refuses(ErrorCode::PolicyViolation, |m| m.post(seller, parts));
}

#[test]
fn a_price_outside_its_category_bounds_is_refused() {
    let (mut m, seller, _) = market();
    m.set_policy(MarketPolicy {
        price_bounds: [(
            "books".to_string(),
            PriceBounds {
                min: Some(100),
                max: Some(5_000),
            },
        )]
        .into(),
        ..MarketPolicy::default()
    })
    .unwrap();
    let e = m.refuses(ErrorCode::PolicyViolation, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 5_001))
    });
    assert!(e.message.contains("price_bounds"), "{e}");
    m.refuses(ErrorCode::PolicyViolation, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 99))
    });
    m.post(seller, new_listing(Side::Sell, "books", 5_000))
        .unwrap();
    m.post(seller, new_listing(Side::Sell, "tools", 9_000))
        .unwrap();
}

#[test]
fn listings_past_the_daily_limit_are_refused_until_a_day_of_the_market_clock_passes() {
    let (mut m, seller, _) = market();
    m.set_policy(MarketPolicy {
        max_listings_per_day: Some(2),
        ..MarketPolicy::default()
    })
    .unwrap();
    m.list(seller, Side::Sell, "books", 100);
    m.list(seller, Side::Sell, "books", 100);
    let e = m.refuses(ErrorCode::PolicyViolation, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 100))
    });
    assert!(e.message.contains("max_listings_per_day"), "{e}");
    m.advance(DAY_MS);
    m.list(seller, Side::Sell, "books", 100);
}

#[test]
fn offers_past_the_hourly_limit_are_refused_until_an_hour_passes() {
    let (mut m, seller, buyer) = market();
    m.set_policy(MarketPolicy {
        max_offers_per_hour: Some(2),
        ..MarketPolicy::default()
    })
    .unwrap();
    let l = m.list(seller, Side::Sell, "books", 1_000);
    let t = m.open_with_offer(buyer, l, 500).unwrap().thread_id;
    m.offer(buyer, t, 600).unwrap();
    let e = m.refuses(ErrorCode::PolicyViolation, |m| m.offer(buyer, t, 700));
    assert!(e.message.contains("max_offers_per_hour"), "{e}");
    m.advance(HOUR_MS);
    m.offer(buyer, t, 700).unwrap();
}

#[test]
fn a_hold_rule_posts_the_listing_held_seen_by_its_owner_only() {
    let (mut m, seller, buyer) = market();
    let mut p = terms(&["vintage"]);
    p.actions.prohibited_terms = PolicyAction::Hold;
    m.set_policy(p).unwrap();
    let mut input = new_listing(Side::Sell, "books", 100);
    input.title = "Vintage atlas".into();
    let l = m.post(seller, input).unwrap();
    assert_eq!(l.status, ListingStatus::Held);
    let e = m.events.last().unwrap();
    assert_eq!(e.kind(), "listing_held");
    assert_eq!(e.visibility, Visibility::Parties(vec![seller]));
    assert!(m.holds[&l.id].1.contains("vintage"));
    assert!(!m.event_kinds().contains(&"listing_posted"));
    m.refuses(ErrorCode::ListingUnavailable, |m| m.open(buyer, l.id));
}

#[test]
fn approving_a_held_listing_puts_it_on_the_market() {
    let (mut m, seller, buyer) = market();
    let mut p = terms(&["vintage"]);
    p.actions.prohibited_terms = PolicyAction::Hold;
    m.set_policy(p).unwrap();
    let mut input = new_listing(Side::Sell, "books", 100);
    input.title = "vintage atlas".into();
    let l = m.post(seller, input).unwrap().id;
    assert_eq!(m.approve(l).unwrap().status, ListingStatus::Active);
    assert!(
        m.event_kinds()
            .ends_with(&["listing_approved", "listing_posted"])
    );
    m.open(buyer, l).unwrap();
    m.refuses(ErrorCode::InvalidTransition, |m| m.approve(l));
}

#[test]
fn a_refusing_rule_wins_over_a_holding_one() {
    let (mut m, seller, _) = market();
    let mut p = terms(&["vintage"]);
    p.actions.prohibited_terms = PolicyAction::Hold;
    p.prohibited_categories = vec!["books".into()];
    m.set_policy(p).unwrap();
    let mut input = new_listing(Side::Sell, "books", 100);
    input.title = "vintage atlas".into();
    m.refuses(ErrorCode::PolicyViolation, |m| m.post(seller, input));
}

#[test]
fn removing_an_active_listing_voids_its_offers_and_ends_its_threads() {
    let (mut m, seller, buyer) = market();
    let l = m.list(seller, Side::Sell, "books", 1_000);
    let t = m.open_with_offer(buyer, l, 500).unwrap().thread_id;
    m.remove(l, "counterfeit goods").unwrap();
    assert_eq!(m.listings[&l].status, ListingStatus::Removed);
    assert_eq!(m.threads[&t].status, ThreadStatus::Void);
    assert!(m.offers.values().all(|o| o.state == OfferState::Void));
    assert!(
        m.void_reasons
            .values()
            .all(|r| *r == VoidReason::ListingRemoved)
    );
    assert_eq!(m.funds(buyer).committed, 0);
    assert_eq!(m.events.last().unwrap().kind(), "listing_removed");
    m.refuses(ErrorCode::InvalidTransition, |m| m.remove(l, "again"));
}

#[test]
fn a_removal_needs_a_reason() {
    let (mut m, seller, _) = market();
    let l = m.list(seller, Side::Sell, "books", 1_000);
    m.refuses(ErrorCode::InvalidRequest, |m| m.remove(l, "  "));
}

#[test]
fn suspension_withdraws_listings_voids_live_offers_and_ends_threads() {
    let (mut m, seller, buyer) = market();
    let l = m.list(seller, Side::Sell, "books", 1_000);
    let other = m.register("other", Mandate::default(), 0);
    let theirs = m.list(other, Side::Sell, "books", 1_000);
    let t1 = m.open_with_offer(buyer, l, 500).unwrap().thread_id;
    let t2 = m.open_with_offer(seller, theirs, 400);
    assert_eq!(t2.unwrap_err().code, ErrorCode::InsufficientFunds);
    let t2 = m.open(seller, theirs).unwrap().id;
    m.suspend(seller, "fraud reports").unwrap();
    assert_eq!(m.listings[&l].status, ListingStatus::Withdrawn);
    assert_eq!(m.listings[&theirs].status, ListingStatus::Active);
    assert_eq!(m.threads[&t1].status, ThreadStatus::Void);
    assert_eq!(m.threads[&t2].status, ThreadStatus::Void);
    assert!(m.offers.values().all(|o| o.state == OfferState::Void));
    let s = m.participants[&seller].suspension.clone().unwrap();
    assert_eq!((s.reason.as_str(), s.at), ("fraud reports", T0));
    let e = m.events.last().unwrap();
    assert_eq!(e.kind(), "participant_suspended");
    assert_eq!(e.visibility, Visibility::Parties(vec![seller]));
}

#[test]
fn a_suspended_participant_is_refused_trading_naming_the_reason() {
    let (mut m, seller, buyer) = market();
    let l = m.list(buyer, Side::Buy, "books", 1_000);
    m.suspend(seller, "fraud reports").unwrap();
    let e = m.refuses(ErrorCode::ParticipantSuspended, |m| m.open(seller, l));
    assert!(e.message.contains("fraud reports"), "{e}");
    m.refuses(ErrorCode::ParticipantSuspended, |m| {
        m.post(seller, new_listing(Side::Sell, "books", 100))
    });
    m.refuses(ErrorCode::InvalidTransition, |m| m.suspend(seller, "twice"));
}

#[test]
fn a_suspended_seller_still_settles_its_agreed_deal() {
    let (mut m, seller, buyer) = market();
    let l = m.list(seller, Side::Sell, "books", 1_000);
    let offer = m.open_with_offer(buyer, l, 900).unwrap().id;
    let deal = m.accept(seller, offer).unwrap().id;
    m.suspend(seller, "fraud reports").unwrap();
    assert_eq!(m.deals[&deal].status, DealStatus::Agreed);
    m.hand_over(seller, deal, None).unwrap();
    m.confirm(buyer, deal).unwrap();
    assert_eq!(m.deals[&deal].status, DealStatus::Completed);
    assert_eq!(m.balance(Account::Available(seller)), 900);
}

#[test]
fn reinstating_lets_the_participant_trade_again() {
    let (mut m, seller, _) = market();
    m.suspend(seller, "fraud reports").unwrap();
    m.reinstate(seller).unwrap();
    assert!(m.participants[&seller].suspension.is_none());
    assert_eq!(m.events.last().unwrap().kind(), "participant_reinstated");
    m.list(seller, Side::Sell, "books", 100);
    m.refuses(ErrorCode::InvalidTransition, |m| m.reinstate(seller));
}

#[test]
fn a_policy_change_is_an_event_and_a_bad_policy_is_refused() {
    let (mut m, _, _) = market();
    m.set_policy(terms(&["replica"])).unwrap();
    let e = m.events.last().unwrap();
    let EventBody::PolicyChanged(p) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(p.policy.prohibited_terms, ["replica"]);
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.set_policy(MarketPolicy {
            max_offers_per_hour: Some(0),
            ..MarketPolicy::default()
        })
    });
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.set_policy(terms(&["  ,  "]))
    });
}

#[test]
fn rules_without_a_policy_serialise_as_before() {
    let json = serde_json::to_value(MarketRules::default()).unwrap();
    assert!(json.get("policy").is_none());
}

// ----- properties -----------------------------------------------------------------------------

const PEOPLE: usize = 5;
const CATEGORIES: [&str; 3] = ["books", "tools", "games"];
const WORDS: [&str; 4] = ["books", "item", "tools", "vintage"];

fn action() -> impl Strategy<Value = PolicyAction> {
    prop_oneof![Just(PolicyAction::Refuse), Just(PolicyAction::Hold)]
}

fn policy() -> impl Strategy<Value = MarketPolicy> {
    (
        proptest::sample::subsequence(CATEGORIES.to_vec(), 0..=1),
        proptest::sample::subsequence(WORDS.to_vec(), 0..=2),
        proptest::option::of((1..3_000i64, 3_000..6_000i64)),
        proptest::option::of(1..4u32),
        proptest::option::of(1..4u32),
        (action(), action(), action(), action()),
    )
        .prop_map(|(cats, terms, bounds, per_day, per_hour, acts)| {
            let mut p = MarketPolicy {
                prohibited_categories: cats.into_iter().map(String::from).collect(),
                prohibited_terms: terms.into_iter().map(String::from).collect(),
                max_listings_per_day: per_day,
                max_offers_per_hour: per_hour,
                ..MarketPolicy::default()
            };
            if let Some((min, max)) = bounds {
                p.price_bounds.insert(
                    "tools".into(),
                    PriceBounds {
                        min: Some(min),
                        max: Some(max),
                    },
                );
            }
            (
                p.actions.prohibited_categories,
                p.actions.prohibited_terms,
                p.actions.price_bounds,
                p.actions.max_listings_per_day,
            ) = acts;
            p
        })
}

#[derive(Debug, Clone)]
enum Op {
    Post {
        who: usize,
        cat: usize,
        vintage: bool,
        price: Money,
    },
    Open {
        who: usize,
        listing: usize,
        price: Money,
    },
    Offer {
        thread: usize,
        owner: bool,
        price: Money,
    },
    Accept {
        offer: usize,
    },
    Approve {
        listing: usize,
    },
    Remove {
        listing: usize,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..1_000usize;
    prop_oneof![
        4 => (0..PEOPLE, 0..CATEGORIES.len(), any::<bool>(), 1..7_000i64)
            .prop_map(|(who, cat, vintage, price)| Op::Post { who, cat, vintage, price }),
        4 => (0..PEOPLE, idx.clone(), 1..7_000i64)
            .prop_map(|(who, listing, price)| Op::Open { who, listing, price }),
        4 => (idx.clone(), any::<bool>(), 1..7_000i64)
            .prop_map(|(thread, owner, price)| Op::Offer { thread, owner, price }),
        2 => idx.clone().prop_map(|offer| Op::Accept { offer }),
        1 => idx.clone().prop_map(|listing| Op::Approve { listing }),
        1 => idx.clone().prop_map(|listing| Op::Remove { listing }),
        1 => (0..2 * HOUR_MS).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn nth<V: Clone>(m: &std::collections::BTreeMap<i64, V>, i: usize) -> Option<V> {
    (!m.is_empty()).then(|| m.values().nth(i % m.len()).unwrap().clone())
}

/// Runs one operation; `None` when it had nothing to act on, else the actor (`None` for an
/// operator) and the command's outcome.
fn step(
    m: &mut Mem,
    people: &[ParticipantId],
    op: &Op,
) -> Option<(Option<ParticipantId>, Result<(), DomainError>)> {
    fn ok<T>(r: Result<T, DomainError>) -> Result<(), DomainError> {
        r.map(|_| ())
    }
    Some(match *op {
        Op::Post {
            who,
            cat,
            vintage,
            price,
        } => {
            let who = people[who];
            let mut l = new_listing(Side::Sell, CATEGORIES[cat], price);
            if vintage {
                l.description = "a Vintage piece".into();
            }
            (Some(who), ok(m.post(who, l)))
        }
        Op::Open {
            who,
            listing,
            price,
        } => {
            let (who, l) = (people[who], nth(&m.listings, listing)?);
            (Some(who), ok(m.open_with_offer(who, l.id, price)))
        }
        Op::Offer {
            thread,
            owner,
            price,
        } => {
            let t = nth(&m.threads, thread)?;
            let who = if owner { t.owner } else { t.counterparty };
            (Some(who), ok(m.offer(who, t.id, price)))
        }
        Op::Accept { offer } => {
            let o = nth(&m.offers, offer)?;
            (Some(o.recipient()), ok(m.accept(o.recipient(), o.id)))
        }
        Op::Approve { listing } => (None, ok(m.approve(nth(&m.listings, listing)?.id))),
        Op::Remove { listing } => (None, ok(m.remove(nth(&m.listings, listing)?.id, "policy"))),
        Op::Advance { ms } => {
            m.advance(ms);
            return None;
        }
    })
}

/// What the policy and moderation guarantee between commands.
fn check(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    for l in m.listings.values() {
        let touched = m.threads.values().any(|t| t.listing_id == l.id);
        // A held listing is seen by nobody but its owner: nobody negotiates on it.
        if l.status == ListingStatus::Held {
            assert!(!touched, "held listing {} has a thread", l.id);
            assert!(
                m.holds.contains_key(&l.id),
                "held listing {} has no hold",
                l.id
            );
        }
        if matches!(l.status, ListingStatus::Removed | ListingStatus::Withdrawn) {
            assert!(
                m.offers
                    .values()
                    .all(|o| o.listing_id != l.id || o.state != OfferState::Live),
                "listing {} is {} with a live offer",
                l.id,
                l.status
            );
        }
    }
}

fn people(m: &mut Mem) -> Vec<ParticipantId> {
    (0..PEOPLE)
        .map(|i| m.register(&format!("p{i}"), Mandate::default(), 20_000))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Policy refusals change nothing; holds and removals keep held listings out of trade.
    #[test]
    fn policy_refusals_change_nothing(
        policy in policy(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let mut m = Mem::new(MarketRules::default());
        let ids = people(&mut m);
        m.set_policy(policy).unwrap();
        for op in &ops {
            let before = m.clone();
            if let Some((_, Err(e))) = step(&mut m, &ids, op) {
                prop_assert!(m == before, "refused {op:?} ({e}) but changed the market");
            }
            check(&m);
        }
    }

    /// Once suspended, a participant is refused everything but settling the deals it agreed
    /// (which still settle), and holds no listing, live offer or open thread.
    #[test]
    fn a_suspended_participant_can_do_nothing_but_settle_agreed_deals(
        policy in policy(),
        before_ops in prop::collection::vec(op(), 0..80),
        after_ops in prop::collection::vec(op(), 1..80),
        who in 0..PEOPLE,
    ) {
        let mut m = Mem::new(MarketRules::default());
        let ids = people(&mut m);
        m.set_policy(policy).unwrap();
        for op in &before_ops {
            step(&mut m, &ids, op);
        }
        let p = ids[who];
        m.suspend(p, "fraud reports").unwrap();
        let agreed: Vec<DealId> = m.deals.values()
            .filter(|d| d.is_party(p) && d.status == DealStatus::Agreed)
            .map(|d| d.id)
            .collect();
        for op in &after_ops {
            let before = m.clone();
            match step(&mut m, &ids, op) {
                Some((Some(actor), Err(e))) if actor == p => {
                    prop_assert_eq!(e.code, ErrorCode::ParticipantSuspended);
                    prop_assert!(m == before, "a refusal changed the market");
                }
                Some((Some(actor), Ok(()))) => prop_assert_ne!(actor, p, "{:?} succeeded", op),
                Some((_, Err(_))) => prop_assert!(m == before, "a refusal changed the market"),
                _ => {}
            }
            prop_assert!(m.listings.values().all(|l| l.owner != p
                || !matches!(l.status, ListingStatus::Active | ListingStatus::Held)));
            prop_assert!(m.offers.values().all(|o| o.state != OfferState::Live
                || (o.buyer != p && o.seller != p)));
            prop_assert!(m.threads.values().all(|t| t.status != ThreadStatus::Open || !t.is_party(p)));
            check(&m);
        }
        for d in agreed {
            let deal = m.deals[&d].clone();
            m.hand_over(deal.seller, d, None).unwrap();
            m.confirm(deal.buyer, d).unwrap();
            prop_assert_eq!(m.deals[&d].status, DealStatus::Completed);
        }
    }
}
