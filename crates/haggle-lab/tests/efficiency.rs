//! The efficiency benchmark: known optima by construction, agreement with brute force on tiny
//! random markets, and the generated demo market.

use haggle_agents::profile::{Profile, SellItem, Want};
use haggle_lab::efficiency::{Efficiency, Limits, brute_force, max_welfare, max_welfare_with};
use haggle_lab::generator::generate;
use haggle_lab::scenario::Scenario;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn person(name: &str, budget: i64) -> Profile {
    Profile {
        version: 1,
        name: name.into(),
        budget,
        currency: "USD".into(),
        sell: Vec::new(),
        want: Vec::new(),
        owns: Vec::new(),
        style: Default::default(),
        autonomy: Default::default(),
    }
}

fn sells(mut p: Profile, id: &str, item_type: &str, floor: i64) -> Profile {
    p.sell.push(SellItem {
        item_id: id.into(),
        item_type: item_type.into(),
        title: id.into(),
        description: String::new(),
        category: "misc".into(),
        condition: "good".into(),
        asking_price: floor * 2,
        floor_price: floor,
        attributes: BTreeMap::new(),
        claims: Default::default(),
        true_state: None,
        shipping_price: None,
        true_transit: None,
    });
    p
}

fn wants(mut p: Profile, id: &str, item_type: &str, max: i64, quantity: u32) -> Profile {
    p.want.push(Want {
        want_id: id.into(),
        item_type: item_type.into(),
        description: item_type.into(),
        category: "misc".into(),
        keywords: Vec::new(),
        max_price: max,
        priority: 1,
        quantity,
    });
    p
}

fn scenario(profiles: Vec<Profile>) -> Scenario {
    let s = Scenario {
        name: "test".into(),
        seed: 0,
        currency: "USD".into(),
        budget_default: 0,
        reference_prices: BTreeMap::new(),
        truncate_long_text: false,
        truncated: Vec::new(),
        sessions: Vec::new(),
        profiles,
    };
    s.validate().unwrap();
    s
}

/// The assignment is feasible and worth `max_welfare`.
fn check(s: &Scenario, e: &Efficiency) {
    let mut seen = std::collections::BTreeSet::new();
    let mut units: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut spent: BTreeMap<&str, i64> = BTreeMap::new();
    let mut total = 0;
    for (item_id, buyer, want_id) in &e.assignment {
        assert!(seen.insert(item_id.clone()), "{item_id} assigned twice");
        let (seller, item) = s.item(item_id).expect("item exists");
        assert_ne!(&seller.name, buyer, "{buyer} buys its own {item_id}");
        let b = s.profile(buyer).expect("buyer exists");
        let w = b
            .want
            .iter()
            .find(|w| &w.want_id == want_id)
            .expect("want exists");
        assert_eq!(w.item_type, item.item_type);
        assert!(w.max_price > item.floor_price);
        *units.entry((buyer.as_str(), want_id.as_str())).or_default() += 1;
        assert!(
            units[&(buyer.as_str(), want_id.as_str())] <= w.quantity,
            "{want_id} over quantity"
        );
        *spent.entry(buyer.as_str()).or_default() += item.floor_price;
        assert!(spent[buyer.as_str()] <= b.budget, "{buyer} over budget");
        total += w.max_price - item.floor_price;
    }
    assert_eq!(total, e.max_welfare);
    assert!(e.upper_bound >= e.max_welfare);
    if e.exact {
        assert_eq!(e.upper_bound, e.max_welfare);
    }
}

#[test]
fn the_highest_valuation_gets_the_item() {
    let s = scenario(vec![
        sells(person("Sam", 0), "bike", "road bike", 6000),
        wants(person("Bea", 20_000), "b1", "road bike", 9000, 1),
        wants(person("Cy", 20_000), "c1", "road bike", 10_000, 1),
    ]);
    let e = max_welfare(&s);
    check(&s, &e);
    assert!(e.exact);
    assert_eq!(e.max_welfare, 4000);
    assert_eq!(
        e.assignment,
        [("bike".to_string(), "Cy".to_string(), "c1".to_string())]
    );
}

#[test]
fn nobody_buys_below_the_floor_or_from_itself() {
    let s = scenario(vec![
        wants(
            sells(person("Ann", 10_000), "lamp", "desk lamp", 1000),
            "a1",
            "desk lamp",
            5000,
            1,
        ),
        wants(person("Bob", 10_000), "b1", "desk lamp", 900, 1),
    ]);
    let e = max_welfare(&s);
    check(&s, &e);
    assert_eq!(e.max_welfare, 0);
    assert!(e.assignment.is_empty() && e.exact);
}

#[test]
fn a_binding_budget_changes_the_allocation() {
    // Xena would take both (welfare 50 + 40) but can afford only one; Yuri also values the
    // snowboard. Best: Xena the bike (50), Yuri the snowboard (10) = 60.
    let s = scenario(vec![
        sells(person("S1", 0), "bike", "road bike", 7000),
        sells(person("S2", 0), "board", "snowboard", 5000),
        wants(
            wants(person("Xena", 10_000), "x-bike", "road bike", 12_000, 1),
            "x-board",
            "snowboard",
            9000,
            1,
        ),
        wants(person("Yuri", 100_000), "y-board", "snowboard", 6000, 1),
    ]);
    let e = max_welfare(&s);
    check(&s, &e);
    assert!(e.exact);
    assert_eq!(e.max_welfare, 6000);
    let got: Vec<(&str, &str)> = e
        .assignment
        .iter()
        .map(|(i, b, _)| (i.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, [("bike", "Xena"), ("board", "Yuri")]);
}

#[test]
fn pairing_inside_a_type_respects_budgets() {
    // Two lamps, two buyers valuing them equally; Pia can only afford the cheap one.
    let s = scenario(vec![
        sells(
            sells(person("Sol", 0), "lamp-cheap", "desk lamp", 1000),
            "lamp-dear",
            "desk lamp",
            3000,
        ),
        wants(person("Pia", 1500), "p1", "desk lamp", 4000, 1),
        wants(person("Quinn", 10_000), "q1", "desk lamp", 4000, 1),
    ]);
    let e = max_welfare(&s);
    check(&s, &e);
    assert!(e.exact);
    assert_eq!(e.max_welfare, 3000 + 1000);
    assert!(
        e.assignment
            .contains(&("lamp-cheap".into(), "Pia".into(), "p1".into()))
    );
}

#[test]
fn quantities_take_the_cheapest_items() {
    let s = scenario(vec![
        sells(
            sells(
                sells(person("Vic", 0), "n1", "novel", 300),
                "n2",
                "novel",
                500,
            ),
            "n3",
            "novel",
            200,
        ),
        wants(person("Wes", 10_000), "w1", "novel", 1000, 2),
    ]);
    let e = max_welfare(&s);
    check(&s, &e);
    assert_eq!(e.max_welfare, (1000 - 200) + (1000 - 300));
}

#[test]
fn a_chain_of_budget_bound_buyers_is_solved_exactly() {
    // Each of ten buyers can afford two of its three wants; the wants overlap in item types so
    // the buyers compete. Known optimum by construction: each buyer i keeps its two most
    // valuable wants, the types it does not take go to the next buyer, who values them less.
    let mut profiles = vec![person("Seller", 0)];
    for t in 0..12 {
        for k in 0..2 {
            profiles[0] = sells(
                profiles[0].clone(),
                &format!("t{t}-{k}"),
                &format!("type{t}"),
                1000,
            );
        }
    }
    for b in 0..10 {
        let mut p = person(&format!("B{b}"), 2000);
        // Wants type b (value 5000), type b+1 (4000), type b+2 (1500).
        p = wants(p, &format!("b{b}-a"), &format!("type{b}"), 5000, 1);
        p = wants(p, &format!("b{b}-b"), &format!("type{}", b + 1), 4000, 1);
        p = wants(p, &format!("b{b}-c"), &format!("type{}", b + 2), 1500, 1);
        profiles.push(p);
    }
    let s = scenario(profiles);
    let e = max_welfare(&s);
    check(&s, &e);
    assert!(e.exact);
    // Every buyer: 4000 + 3000 (its two best), two items per type suffice.
    assert_eq!(e.max_welfare, 10 * (4000 + 3000));
}

/// A random tiny market: few participants, items and wants, tight budgets.
fn random_market(rng: &mut StdRng) -> Scenario {
    let n = rng.random_range(2..=4);
    let types = rng.random_range(1..=3);
    let mut profiles = Vec::new();
    let mut item = 0;
    for p in 0..n {
        let mut pr = person(&format!("P{p}"), rng.random_range(0..=12) * 500);
        for _ in 0..rng.random_range(0..=3) {
            item += 1;
            pr = sells(
                pr,
                &format!("i{item}"),
                &format!("t{}", rng.random_range(0..types)),
                rng.random_range(1..=10) * 300,
            );
        }
        for w in 0..rng.random_range(0..=2) {
            pr = wants(
                pr,
                &format!("w{p}-{w}"),
                &format!("t{}", rng.random_range(0..types)),
                rng.random_range(1..=12) * 400,
                rng.random_range(1..=2),
            );
        }
        profiles.push(pr);
    }
    scenario(profiles)
}

#[test]
fn agrees_with_brute_force_on_tiny_random_markets() {
    let mut rng = StdRng::seed_from_u64(99);
    let mut compared = 0;
    let mut binding = 0;
    for _ in 0..600 {
        let s = random_market(&mut rng);
        let Some(truth) = brute_force(&s, 2_000_000) else {
            continue;
        };
        compared += 1;
        let e = max_welfare(&s);
        check(&s, &e);
        check(&s, &truth);
        assert!(e.exact, "{}", s.to_json());
        assert_eq!(e.max_welfare, truth.max_welfare, "{}", s.to_json());
        binding += usize::from(e.search_steps > 0);
        // With no room for the exact search: still feasible, bounded, honest.
        let rough = max_welfare_with(
            &s,
            Limits {
                max_work: 0,
                price_iterations: 30,
            },
        );
        check(&s, &rough);
        assert!(rough.max_welfare <= truth.max_welfare);
        assert!(rough.upper_bound >= truth.max_welfare, "{}", s.to_json());
        if rough.exact {
            assert_eq!(rough.max_welfare, truth.max_welfare);
        }
    }
    assert!(compared > 500, "{compared}");
    assert!(binding > 20, "budgets bind in some markets ({binding})");
}

#[test]
fn agrees_with_brute_force_on_crowded_tiny_markets() {
    // More buyers per type and tight budgets, so several buyers are critical at once.
    let mut rng = StdRng::seed_from_u64(7);
    let mut binding = 0;
    for _ in 0..150 {
        let mut profiles = Vec::new();
        let mut item = 0;
        for p in 0..5 {
            let mut pr = person(&format!("P{p}"), rng.random_range(2..=8) * 500);
            for _ in 0..rng.random_range(0..=2) {
                item += 1;
                pr = sells(
                    pr,
                    &format!("i{item}"),
                    &format!("t{}", rng.random_range(0..2)),
                    rng.random_range(2..=12) * 250,
                );
            }
            for w in 0..2 {
                pr = wants(
                    pr,
                    &format!("w{p}-{w}"),
                    &format!("t{w}"),
                    rng.random_range(3..=14) * 300,
                    1,
                );
            }
            profiles.push(pr);
        }
        let s = scenario(profiles);
        let Some(truth) = brute_force(&s, 3_000_000) else {
            continue;
        };
        let e = max_welfare(&s);
        check(&s, &e);
        assert!(e.exact);
        assert_eq!(e.max_welfare, truth.max_welfare, "{}", s.to_json());
        binding += usize::from(e.search_steps > 0);
    }
    assert!(binding > 10, "{binding}");
}

#[test]
fn the_generated_demo_market_is_solved_exactly_and_fast() {
    for seed in [2, 15] {
        let s = generate(seed, 69, 10_000);
        let start = std::time::Instant::now();
        let e = max_welfare(&s);
        let took = start.elapsed();
        check(&s, &e);
        assert!(e.exact, "seed {seed}");
        assert!(e.max_welfare > 0 && e.assignment.len() > 200);
        println!(
            "seed {seed}: {} items, {} wants, max welfare {} ({} pairs, {} search steps) in {took:?}",
            s.item_count(),
            s.want_count(),
            e.max_welfare,
            e.assignment.len(),
            e.search_steps
        );
        // Deterministic.
        assert_eq!(max_welfare(&s), e);
    }
}

#[test]
fn tight_budgets_give_an_honest_bound() {
    let s = generate(3, 69, 3000);
    let e = max_welfare(&s);
    check(&s, &e);
    assert!(e.upper_bound >= e.max_welfare);
    // Within a few per cent of the bound.
    assert!(
        e.max_welfare as f64 >= 0.95 * e.upper_bound as f64,
        "{} vs {}",
        e.max_welfare,
        e.upper_bound
    );
}
