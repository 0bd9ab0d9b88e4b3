//! Property tests: random sequences of market operations by several participants, with every
//! invariant of the spec checked after every step.

mod support;

use haggle_core::*;
use proptest::prelude::*;
use support::{Mem, Outcome, T0, new_listing};

const PEOPLE: usize = 6;
const CATEGORIES: [&str; 3] = ["books", "tools", "games"];

/// Who acts: for a thread, `A` is the owner and `B` the counterparty; for an offer, `A` is its
/// recipient and `B` its proposer. `Anyone` is a participant picked at random (often an outsider).
#[derive(Debug, Clone, Copy)]
enum Who {
    A,
    B,
    Anyone(usize),
}

/// An operation; `usize` targets pick among existing objects (modulo their number), `live` picks
/// among live offers or open threads only, otherwise among all of them (stale ids included).
#[derive(Debug, Clone)]
enum Op {
    Post {
        who: usize,
        buy: bool,
        cat: usize,
        price: Money,
    },
    Open {
        who: usize,
        listing: usize,
        live: bool,
        offer: Option<Money>,
    },
    Offer {
        who: Who,
        thread: usize,
        live: bool,
        price: Money,
        ttl: Option<i64>,
    },
    Accept {
        who: Who,
        offer: usize,
        live: bool,
    },
    Reject {
        who: Who,
        offer: usize,
        live: bool,
    },
    Withdraw {
        who: Who,
        offer: usize,
        live: bool,
    },
    WalkAway {
        who: Who,
        thread: usize,
    },
    WithdrawListing {
        who: Who,
        listing: usize,
    },
    Message {
        who: Who,
        thread: usize,
    },
    Advance {
        ms: i64,
    },
    Sweep,
    Fund {
        who: usize,
        amount: Money,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        5 => Just(Who::A),
        4 => Just(Who::B),
        2 => (0..PEOPLE).prop_map(Who::Anyone),
    ]
}

/// Mostly sensible prices, some out of range, some beyond anyone's budget.
fn price() -> impl Strategy<Value = Money> {
    prop_oneof![
        20 => 1..6_000i64,
        3 => 6_000..25_000i64,
        1 => Just(0i64),
        1 => -1_000..0i64,
        1 => Just(MAX_AMOUNT + 1),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..1_000usize;
    prop_oneof![
        4 => (0..PEOPLE, any::<bool>(), 0..CATEGORIES.len(), price())
            .prop_map(|(who, buy, cat, price)| Op::Post { who, buy, cat, price }),
        6 => (0..PEOPLE, idx.clone(), prop::bool::weighted(0.8), proptest::option::weighted(0.7, price()))
            .prop_map(|(who, listing, live, offer)| Op::Open { who, listing, live, offer }),
        8 => (who(), idx.clone(), prop::bool::weighted(0.8), price(),
              proptest::option::weighted(0.2, 0..3 * HOUR_MS))
            .prop_map(|(who, thread, live, price, ttl)| Op::Offer { who, thread, live, price, ttl }),
        6 => (who(), idx.clone(), prop::bool::weighted(0.85))
            .prop_map(|(who, offer, live)| Op::Accept { who, offer, live }),
        2 => (who(), idx.clone(), prop::bool::weighted(0.7))
            .prop_map(|(who, offer, live)| Op::Reject { who, offer, live }),
        1 => (who(), idx.clone(), prop::bool::weighted(0.7))
            .prop_map(|(who, offer, live)| Op::Withdraw { who, offer, live }),
        1 => (who(), idx.clone()).prop_map(|(who, thread)| Op::WalkAway { who, thread }),
        1 => (who(), idx.clone()).prop_map(|(who, listing)| Op::WithdrawListing { who, listing }),
        1 => (who(), idx.clone()).prop_map(|(who, thread)| Op::Message { who, thread }),
        2 => (0..2 * HOUR_MS).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Sweep),
        1 => (0..PEOPLE, prop_oneof![1..5_000i64, Just(0i64)])
            .prop_map(|(who, amount)| Op::Fund { who, amount }),
    ]
}

fn rules() -> impl Strategy<Value = MarketRules> {
    (
        HOUR_MS..4 * HOUR_MS,
        proptest::option::of(1..6u32),
        proptest::option::weighted(0.3, HOUR_MS..24 * HOUR_MS),
        any::<bool>(),
        proptest::option::weighted(0.3, 0..3 * HOUR_MS),
        any::<bool>(),
    )
        .prop_map(|(ttl, cap, limit, strict, window, public)| MarketRules {
            offer_ttl_ms: ttl,
            max_offers_per_thread: cap,
            thread_time_limit_ms: limit,
            strict_alternation: strict,
            collection_window_ms: window,
            public_negotiations: public,
            ..MarketRules::default()
        })
}

fn mandate() -> impl Strategy<Value = Mandate> {
    (
        proptest::option::weighted(0.4, 0..30_000i64),
        proptest::option::weighted(0.4, 0..8_000i64),
        proptest::option::weighted(
            0.3,
            proptest::sample::subsequence(CATEGORIES.to_vec(), 0..=CATEGORIES.len()),
        ),
        proptest::option::weighted(0.2, T0..T0 + 2 * DAY_MS),
        proptest::option::weighted(0.3, 0..6_000i64),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(spend_cap, per_deal_cap, cats, expires_at, approval_above, frozen, paused)| Mandate {
                spend_cap,
                per_deal_cap,
                categories: cats.map(|c| c.into_iter().map(String::from).collect()),
                expires_at,
                approval_above,
                frozen,
                paused,
                ..Default::default()
            },
        )
}

fn nth<V>(
    m: &std::collections::BTreeMap<i64, V>,
    keep: impl Fn(&V) -> bool,
    i: usize,
) -> Option<&V> {
    let n = m.values().filter(|v| keep(v)).count();
    (n > 0).then(|| m.values().filter(|v| keep(v)).nth(i % n).unwrap())
}

fn person(people: &[ParticipantId], i: usize) -> ParticipantId {
    people[i % people.len()]
}

fn pick(people: &[ParticipantId], who: Who, a: ParticipantId, b: ParticipantId) -> ParticipantId {
    match who {
        Who::A => a,
        Who::B => b,
        Who::Anyone(i) => person(people, i),
    }
}

fn done<T>(r: Outcome<T>) -> Option<Outcome<()>> {
    Some(r.map(|_| ()))
}

/// Runs one operation; `None` when it had nothing to act on, else the command's outcome.
fn step(m: &mut Mem, people: &[ParticipantId], op: &Op) -> Option<Outcome<()>> {
    match *op {
        Op::Post {
            who,
            buy,
            cat,
            price,
        } => {
            let side = if buy { Side::Buy } else { Side::Sell };
            done(m.post(
                person(people, who),
                new_listing(side, CATEGORIES[cat], price),
            ))
        }
        Op::Open {
            who,
            listing,
            live,
            offer,
        } => {
            let l = nth(
                &m.listings,
                |l| !live || l.status == ListingStatus::Active,
                listing,
            )?
            .id;
            let who = person(people, who);
            match offer {
                Some(price) => done(m.open_with_offer(who, l, price)),
                None => done(m.open(who, l)),
            }
        }
        Op::Offer {
            who,
            thread,
            live,
            price,
            ttl,
        } => {
            let t = nth(
                &m.threads,
                |t| !live || t.status == ThreadStatus::Open,
                thread,
            )?;
            let (id, actor) = (t.id, pick(people, who, t.owner, t.counterparty));
            done(m.offer_for(actor, id, price, ttl))
        }
        Op::Accept { who, offer, live }
        | Op::Reject { who, offer, live }
        | Op::Withdraw { who, offer, live } => {
            let o = nth(&m.offers, |o| !live || o.state == OfferState::Live, offer)?;
            let (id, actor) = (o.id, pick(people, who, o.recipient(), o.proposer));
            match op {
                Op::Accept { .. } => done(m.accept(actor, id)),
                Op::Reject { .. } => done(m.reject(actor, id)),
                _ => done(m.withdraw(actor, id)),
            }
        }
        Op::WalkAway { who, thread } => {
            let t = nth(&m.threads, |_| true, thread)?;
            let (id, actor) = (t.id, pick(people, who, t.owner, t.counterparty));
            done(m.walk_away(actor, id))
        }
        Op::Message { who, thread } => {
            let t = nth(&m.threads, |_| true, thread)?;
            let (id, actor) = (t.id, pick(people, who, t.owner, t.counterparty));
            done(m.message(actor, id, "how about it?"))
        }
        Op::WithdrawListing { who, listing } => {
            let l = nth(&m.listings, |_| true, listing)?;
            let (id, actor) = (l.id, pick(people, who, l.owner, l.owner));
            done(m.withdraw_listing(actor, id))
        }
        Op::Advance { ms } => {
            m.advance(ms);
            None
        }
        Op::Sweep => {
            m.sweep();
            // Idempotent: nothing is left due, and a second sweep changes nothing.
            let due = m.due();
            assert!(
                due.offers.is_empty()
                    && due.threads.is_empty()
                    && due.approvals_expired.is_empty()
                    && due.deals_to_complete.is_empty(),
                "{due:?}"
            );
            assert_eq!(m.sweep(), 0, "a second sweep changed something");
            None
        }
        Op::Fund { who, amount } => done(m.fund(person(people, who), amount)),
    }
}

/// Every invariant of the spec that holds between commands.
fn check(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    let now = m.now();
    for l in m.listings.values() {
        // A declined approval (the sweep times it out) relists: only the deals still standing count.
        let deals = m
            .deals
            .values()
            .filter(|d| d.listing_id == l.id && d.status != DealStatus::Declined)
            .count();
        assert!(deals <= 1, "listing {} sold {deals} times", l.id);
        if deals == 1 {
            assert_eq!(l.status, ListingStatus::Sold, "listing {} has a deal", l.id);
        }
    }
    for t in m.threads.values() {
        // At most one live offer per thread, and only in an open thread of an active listing.
        if let Some(o) = m.live_offer_in(t.id) {
            assert_eq!(
                t.status,
                ThreadStatus::Open,
                "live offer {} in a closed thread",
                o.id
            );
            assert_eq!(m.listings[&t.listing_id].status, ListingStatus::Active);
        }
        if t.status == ThreadStatus::Agreed {
            assert!(m.deals.values().any(|d| d.thread_id == t.id));
        }
    }
    for p in m.participants.values() {
        let f = m.funds(p.id);
        assert!(f.cash >= 0, "participant {} has cash {}", p.id, f.cash);
        assert!(
            f.committed + f.held <= f.cash + f.held,
            "participant {} committed {} with only {} cash",
            p.id,
            f.committed,
            f.cash
        );
        if let Some(cap) = p.mandate.spend_cap {
            assert!(
                f.spent + f.committed <= cap,
                "participant {} spent {} and committed {} against a cap of {cap}",
                p.id,
                f.spent,
                f.committed
            );
        }
    }
    for d in m.deals.values() {
        let mandate = &m.participants[&d.buyer].mandate;
        assert!(mandate.per_deal_cap.is_none_or(|cap| d.price <= cap));
        assert!(
            mandate
                .categories
                .as_ref()
                .is_none_or(|c| c.contains(&d.snapshot.category))
        );
        let needs_approval = mandate.approval_above.is_some_and(|x| d.price > x);
        if needs_approval {
            // Waiting, or timed out by the sweep (nobody approves here).
            assert!(
                matches!(
                    d.status,
                    DealStatus::AwaitingApproval | DealStatus::Declined
                ),
                "deal {} is {}",
                d.id,
                d.status
            );
        } else {
            assert_eq!(d.status, DealStatus::Agreed);
        }
        assert!(d.created_at <= now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn market_invariants_hold_after_every_step(
        rules in rules(),
        people in prop::collection::vec((mandate(), 0..20_000i64), PEOPLE),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut m = Mem::new(rules);
        let ids: Vec<ParticipantId> = people
            .into_iter()
            .enumerate()
            .map(|(i, (mandate, budget))| m.register(&format!("p{i}"), mandate, budget))
            .collect();
        check(&m);
        for op in &ops {
            let before = m.clone();
            if let Some(Err(e)) = step(&mut m, &ids, op) {
                prop_assert!(m == before, "refused {op:?} ({e}) but changed the market");
            }
            check(&m);
        }
    }
}
