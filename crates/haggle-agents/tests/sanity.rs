//! The spec's sanity reference for the rule brains (agents.md, Brains), on a pure two-party
//! negotiation simulator (tests/support): like meets like near the midpoint of floor and maximum;
//! Boulware beats Conceder (and the reverse); two pure tit-for-tat agents deadlock; no brain ever
//! proposes or accepts beyond its limits; same seed, same actions; the lowballer gets no
//! irrational deal; the spammer survives refusals.

mod support;

use haggle_agents::adversaries::lowballer;
use haggle_agents::brain::{Action, BoxFuture, Brain, View};
use haggle_agents::profile::Profile;
use haggle_agents::registry::{ADVERSARY_BRAINS, RULE_BRAINS, brain_from_name};
use haggle_api::haggle_core::ThreadStatus;
use support::*;

/// Ask 10,000, floor 6,000, maximum 10,000: the buyer opens at 60% of min(ask, v) = 6,000, so
/// both sides have the same range and the zone of agreement is [6,000, 10,000], midpoint 8,000.
const SYMMETRIC: (i64, i64, i64) = (10_000, 6_000, 10_000);
const CAP: u32 = 20;

/// Every brain that keeps its own limits. The reckless seller breaks them on purpose (a hijacked
/// agent): the market's seller mandate stops it, which `crates/haggle/tests/demo.rs` checks; so
/// does the gullible agent built on it (`haggle eval`'s yardstick of red lines).
fn all_brains() -> Vec<&'static str> {
    RULE_BRAINS
        .iter()
        .chain(ADVERSARY_BRAINS)
        .copied()
        .filter(|b| !["adversary:reckless-seller", "adversary:gullible"].contains(b))
        .collect()
}

fn mix(seed: u64, salt: u64) -> u64 {
    haggle_agents::adversaries::mix(seed, salt)
}

/// Varied but valid terms: floor 1,000..101,000, ask up to twice the floor, maximum half to
/// twice the floor.
fn terms(seed: u64) -> (i64, i64, i64) {
    let f = 1_000 + (mix(seed, 1) % 100_000) as i64;
    let a = f + (mix(seed, 2) % (f as u64 + 1)) as i64;
    let v = f / 2 + (mix(seed, 3) % (f as u64 * 3 / 2)) as i64;
    (a, f, v.max(1))
}

#[test]
fn like_meets_like_near_the_midpoint() {
    let (_, f, v) = SYMMETRIC;
    let (mid, gap) = ((f + v) / 2, v - f);
    for name in [
        "rule:boulware",
        "rule:linear",
        "rule:conceder",
        "rule:micro",
    ] {
        let o = negotiate(name, name, 1, SYMMETRIC, CAP);
        let p = o
            .price
            .unwrap_or_else(|| panic!("{name} vs {name}: no deal: {o:?}"));
        assert!(
            (p - mid).abs() * 10 <= gap,
            "{name} vs {name}: {p}, not within 10% of the gap from {mid}"
        );
    }
    // Linear against linear also with an asymmetric zone.
    let o = negotiate(
        "rule:linear",
        "rule:linear",
        1,
        (12_000, 7_000, 10_000),
        CAP,
    );
    let p = o.price.unwrap();
    assert!((p - 8_500).abs() * 10 <= 3_000, "{p}");
}

#[test]
fn boulware_beats_conceder_and_the_reverse() {
    for terms in [
        SYMMETRIC,
        (12_000, 7_000, 10_000),
        (50_000, 20_000, 45_000),
        (900, 500, 800),
    ] {
        let (_, f, v) = terms;
        let (mid, gap) = ((f + v) / 2, v - f);
        let hard_seller = negotiate("rule:boulware", "rule:conceder", 1, terms, CAP)
            .price
            .unwrap();
        let hard_buyer = negotiate("rule:conceder", "rule:boulware", 1, terms, CAP)
            .price
            .unwrap();
        let even = negotiate("rule:linear", "rule:linear", 1, terms, CAP)
            .price
            .unwrap();
        assert!(
            hard_seller > even && even > hard_buyer,
            "{terms:?}: {hard_seller} > {even} > {hard_buyer}"
        );
        assert!(
            hard_seller > mid && mid > hard_buyer,
            "{terms:?}: {hard_seller} > {mid} > {hard_buyer}"
        );
        if terms == SYMMETRIC {
            // Clearly, not marginally: at least a quarter of the zone beyond the midpoint.
            assert!(
                hard_seller - mid >= gap / 4,
                "Boulware seller got only {hard_seller}"
            );
            assert!(
                mid - hard_buyer >= gap / 4,
                "Boulware buyer paid {hard_buyer}"
            );
        }
    }
}

#[test]
fn pure_tit_for_tat_agents_deadlock() {
    for terms in [SYMMETRIC, (12_000, 7_000, 10_000)] {
        let o = negotiate(
            "rule:tit-for-tat-pure",
            "rule:tit-for-tat-pure",
            1,
            terms,
            CAP,
        );
        assert_eq!(o.price, None, "{terms:?}: {o:?}");
        assert_ne!(o.status, Some(ThreadStatus::Agreed));
        // Nobody ever concedes: the seller repeats its ask, the buyer its opening, to the end.
        assert!(
            o.offers.len() as u32 >= CAP - 1,
            "ran until the cap: {}",
            o.offers.len()
        );
        assert!(o.offers_by(SELLER).iter().all(|p| *p == terms.0));
        assert!(o.offers_by(BUYER).iter().all(|p| *p == 6_000));
    }
    // With a minimum concession tit-for-tat does move, and meets a conceding partner.
    let o = negotiate("rule:tit-for-tat", "rule:tit-for-tat", 1, SYMMETRIC, CAP);
    assert!(o.offers_by(SELLER).windows(2).any(|w| w[1] < w[0]));
    for other in ["rule:linear", "rule:conceder", "rule:micro"] {
        assert!(
            negotiate("rule:tit-for-tat", other, 1, SYMMETRIC, CAP)
                .price
                .is_some(),
            "tit-for-tat vs {other}"
        );
        assert!(
            negotiate(other, "rule:tit-for-tat", 1, SYMMETRIC, CAP)
                .price
                .is_some(),
            "{other} vs tit-for-tat"
        );
    }
}

#[test]
fn brains_never_go_beyond_their_limits() {
    let mut deals = 0;
    let mut runs = 0;
    for seed in 0..24u64 {
        let (a, f, v) = terms(seed);
        let cap = [3, 6, 11, 20][seed as usize % 4];
        for s in all_brains() {
            for b in all_brains() {
                let o = negotiate(s, b, seed, (a, f, v), cap);
                let ctx = format!("{s} vs {b}, seed {seed}, ask {a} floor {f} max {v} cap {cap}");
                assert!(
                    o.offers_by(SELLER).iter().all(|p| *p >= f),
                    "{ctx}: seller below floor: {o:?}"
                );
                assert!(
                    o.offers_by(BUYER).iter().all(|p| *p <= v && *p > 0),
                    "{ctx}: buyer above max: {o:?}"
                );
                if let Some(p) = o.price {
                    assert!(f <= p && p <= v, "{ctx}: irrational deal at {p}");
                }
                if v >= f + f / 10 && cap >= 11 && b.starts_with("rule:") {
                    runs += 1;
                    deals += usize::from(o.price.is_some());
                }
                assert!(
                    o.refusals.is_empty(),
                    "{ctx}: refused actions {:?}",
                    o.refusals
                );
                assert!(o.offers.len() as u32 <= cap, "{ctx}");
            }
        }
    }
    println!("{deals} deals in {runs} runs with a zone of agreement and room to bargain");
    assert!(
        deals * 2 > runs,
        "most negotiations with room to bargain should close: {deals} of {runs}"
    );
}

#[test]
fn same_seed_same_actions() {
    for name in all_brains() {
        for other in ["rule:linear", "adversary:lowballer"] {
            let (a, f, v) = terms(5);
            let one = negotiate(name, other, 9, (a, f, v), CAP);
            let two = negotiate(name, other, 9, (a, f, v), CAP);
            assert_eq!(one, two, "{name} as seller vs {other}");
            let one = negotiate(other, name, 9, (a, f, v), CAP);
            let two = negotiate(other, name, 9, (a, f, v), CAP);
            assert_eq!(one, two, "{other} vs {name} as buyer");
        }
    }
}

#[test]
fn the_lowballer_gets_no_irrational_deal() {
    let (a, f, v) = (10_000, 6_000, 12_000);
    let mut openings = std::collections::BTreeSet::new();
    for seed in 0..20 {
        for seller in RULE_BRAINS {
            let mut s = brain_from_name(seller, seed).unwrap();
            let mut b = lowballer(seed);
            let mut sim = Sim::new(seller_profile(a, f), buyer_profile(v, 100_000), CAP);
            let o = sim.run(s.as_mut(), &mut b, 100, 0);
            let first = o.offers_by(BUYER)[0];
            assert!(
                (a * 20 / 100..=a * 30 / 100).contains(&first),
                "{seller}, seed {seed}: opened at {first}"
            );
            openings.insert(first);
            assert!(o.offers_by(BUYER).iter().all(|p| *p <= v));
            assert!(
                o.offers_by(SELLER).iter().all(|p| *p >= f),
                "{seller} offered below its floor: {o:?}"
            );
            if let Some(p) = o.price {
                assert!(
                    p >= f,
                    "{seller} sold below its floor to the lowballer: {p}"
                );
            }
        }
    }
    assert!(openings.len() > 1, "the seed varies the lowball");
}

/// A counterparty that never does anything.
struct Silent;

impl Brain for Silent {
    fn name(&self) -> String {
        "test:silent".into()
    }
    fn decide<'a>(&'a mut self, _: &'a Profile, _: &'a View) -> BoxFuture<'a, Vec<Action>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}

fn offers_in(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Offer { .. } | Action::OpenThread { price: Some(_), .. }
            )
        })
        .count()
}

#[test]
fn the_spammer_offers_every_turn_and_survives_refusals() {
    for close_at_cap in [true, false] {
        let mut sim = Sim::new(
            seller_profile(10_000, 6_000),
            buyer_profile(10_000, 100_000),
            5,
        );
        sim.close_at_cap = close_at_cap;
        let mut spammer = brain_from_name("adversary:spammer", 3).unwrap();
        let o = sim.run(&mut Silent, spammer.as_mut(), 40, 4);
        let buyer_turns: Vec<&Vec<Action>> = o
            .transcript
            .iter()
            .filter(|(w, _)| *w == BUYER)
            .map(|(_, a)| a)
            .collect();
        // One offer each turn, although its own offer is always the live one.
        assert!(
            buyer_turns[..5].iter().all(|a| offers_in(a) == 1),
            "{buyer_turns:?}"
        );
        assert_eq!(o.offers.len(), 5, "the cap");
        // Then once more, refused; then it stops, without a panic.
        let expected = if close_at_cap {
            "thread_closed"
        } else {
            "too_many_offers"
        };
        assert_eq!(
            o.refusals,
            vec![(BUYER, expected.to_string())],
            "close_at_cap {close_at_cap}"
        );
        assert!(
            buyer_turns[6..].iter().all(|a| offers_in(a) == 0),
            "{buyer_turns:?}"
        );
        assert!(
            buyer_turns
                .iter()
                .all(|a| a.iter().all(|x| !matches!(x, Action::WalkAway { .. })))
        );
    }
    // Against a real negotiator it still never leaves its limit or pays more than it has.
    let mut sim = Sim::new(
        seller_profile(10_000, 6_000),
        buyer_profile(9_000, 9_000),
        6,
    );
    let mut seller = brain_from_name("rule:boulware", 1).unwrap();
    let mut spammer = brain_from_name("adversary:spammer", 1).unwrap();
    let o = sim.run(seller.as_mut(), spammer.as_mut(), 40, 3);
    assert!(o.offers_by(BUYER).iter().all(|p| *p <= 9_000));
    assert!(
        o.refusals
            .iter()
            .all(|(who, code)| *who == BUYER && code == "thread_closed"),
        "{o:?}"
    );
}

#[test]
fn the_reckless_seller_lists_at_one_and_accepts_anything() {
    let profile = seller_profile(10_000, 6_000);
    let mut brain = brain_from_name("adversary:reckless-seller", 1).unwrap();
    assert_eq!(brain.name(), "adversary:reckless-seller");
    let mut view = empty_view(1, 0);
    view.unlisted = vec![ITEM.into()];
    let acts = decide(brain.as_mut(), &profile, &view);
    assert!(
        acts.iter()
            .any(|a| matches!(a, haggle_agents::brain::Action::ListItem { price: 1, .. })),
        "{acts:?}"
    );
    // Against a buyer offering 2, the hijacked seller takes it: only the market stops the sale.
    let o = negotiate(
        "adversary:reckless-seller",
        "adversary:lowballer",
        1,
        SYMMETRIC,
        CAP,
    );
    assert!(o.offers_by(SELLER).iter().all(|p| *p == 1), "{o:?}");
    assert!(o.price.is_some_and(|p| p < 6_000), "{o:?}");
}
