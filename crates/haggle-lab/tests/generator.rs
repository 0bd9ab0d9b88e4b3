//! The seeded office-market generator: determinism and realism.

use haggle_lab::generator::{CATALOGUE, CONDITIONS, generate};
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn same_seed_same_scenario_byte_for_byte() {
    let a = generate(42, 69, 10_000);
    let b = generate(42, 69, 10_000);
    assert_eq!(a, b);
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.to_toml().unwrap(), b.to_toml().unwrap());
    let c = generate(43, 69, 10_000);
    assert_ne!(
        a.to_json(),
        c.to_json(),
        "another seed gives another market"
    );
}

#[test]
fn item_ids_are_stable_for_a_seed() {
    let a = generate(7, 20, 10_000);
    let b = generate(7, 20, 10_000);
    let ids = |s: &haggle_lab::scenario::Scenario| -> Vec<(String, String)> {
        s.profiles
            .iter()
            .flat_map(|p| p.sell.iter().map(|i| (i.item_id.clone(), i.title.clone())))
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    for (n, p) in a.profiles.iter().enumerate() {
        for (k, item) in p.sell.iter().enumerate() {
            assert_eq!(item.item_id, format!("item-{:02}-{}", n + 1, k + 1));
        }
    }
}

#[test]
fn catalogue_is_broad_and_priced_for_a_100_dollar_office() {
    assert!(CATALOGUE.len() >= 40, "{} item types", CATALOGUE.len());
    let categories: BTreeSet<&str> = CATALOGUE.iter().map(|k| k.category).collect();
    for c in [
        "bikes",
        "books",
        "kitchen",
        "electronics",
        "furniture",
        "collectibles",
        "services",
        "clothing",
        "games",
        "plants",
    ] {
        assert!(categories.contains(c), "category {c}");
    }
    let types: BTreeSet<&str> = CATALOGUE.iter().map(|k| k.item_type).collect();
    assert_eq!(types.len(), CATALOGUE.len(), "item types are unique");
    for k in CATALOGUE {
        assert!(
            (500..=9_000).contains(&k.reference),
            "{}: {}",
            k.item_type,
            k.reference
        );
        assert!(!k.titles.is_empty() && !k.details.is_empty() && !k.keywords.is_empty());
    }
    assert!(
        CATALOGUE.iter().any(|k| k.service),
        "services such as pet-sitting"
    );
    assert!(
        types.contains("pet-sitting") && types.contains("snowboard") && types.contains("road bike")
    );
    let names: Vec<&str> = CONDITIONS.iter().map(|c| c.0).collect();
    assert_eq!(names, ["new", "like new", "good", "fair", "for parts"]);
}

#[test]
fn a_69_participant_market_looks_like_an_office_classifieds_board() {
    let s = generate(2024, 69, 10_000);
    s.validate().expect("a generated scenario is valid");
    assert_eq!(s.profiles.len(), 69);
    assert_eq!(s.currency, "USD");
    assert_eq!(s.seed, 2024);
    let items = s.item_count();
    assert!(
        (420..=580).contains(&items),
        "about 500 listings, got {items}"
    );

    // Names: unique first names.
    let names: BTreeSet<&str> = s.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 69);
    assert!(
        s.profiles
            .iter()
            .all(|p| p.name.chars().next().unwrap().is_uppercase())
    );

    let reference: BTreeMap<&str, i64> = CATALOGUE
        .iter()
        .map(|k| (k.item_type, k.reference))
        .collect();
    let factor: BTreeMap<&str, i64> = CONDITIONS.iter().map(|c| (c.0, c.1)).collect();
    let mut sellers_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut conditions: BTreeSet<&str> = BTreeSet::new();
    let mut types_on_sale = BTreeSet::new();
    for p in &s.profiles {
        assert_eq!(p.budget, 10_000);
        assert!(
            (3..=11).contains(&p.sell.len()),
            "{} sells {}",
            p.name,
            p.sell.len()
        );
        for i in &p.sell {
            let r = reference[i.item_type.as_str()];
            assert_eq!(s.reference_prices[&i.item_type], r);
            assert_eq!(i.floor_price % 100, 0, "whole dollars");
            assert_eq!(i.asking_price % 100, 0, "whole dollars");
            assert!(i.floor_price >= 100);
            assert!(
                i.asking_price > i.floor_price,
                "{}: ask above floor",
                i.item_id
            );
            assert!(
                i.asking_price <= i.floor_price * 18 / 10 + 200,
                "{}: ask at most ~1.8 × floor",
                i.item_id
            );
            let f = if i.condition == "n/a" {
                1000
            } else {
                factor[i.condition.as_str()]
            };
            // Floor = 50–90% of reference × condition, rounded to a dollar.
            assert!(
                i.floor_price <= r * f / 1000 * 9 / 10 + 50,
                "{}: floor {} ref {r}",
                i.item_id,
                i.floor_price
            );
            assert!(
                i.floor_price >= (r * f / 1000 / 2 - 50).max(100),
                "{}: floor {} ref {r}",
                i.item_id,
                i.floor_price
            );
            assert!(!i.title.is_empty() && !i.description.is_empty() && !i.category.is_empty());
            conditions.insert(i.condition.as_str());
            sellers_of
                .entry(i.item_type.as_str())
                .or_default()
                .insert(p.name.as_str());
            types_on_sale.insert(i.item_type.as_str());
        }
    }
    assert!(conditions.len() >= 5, "several conditions: {conditions:?}");
    assert!(
        types_on_sale.len() >= 40,
        "{} types on sale",
        types_on_sale.len()
    );

    let mut owners = 0;
    for p in &s.profiles {
        assert!(
            (3..=5).contains(&p.want.len()),
            "{} wants {}",
            p.name,
            p.want.len()
        );
        let wanted: BTreeSet<&str> = p.want.iter().map(|w| w.item_type.as_str()).collect();
        assert_eq!(wanted.len(), p.want.len(), "one want per type");
        let mut priorities: Vec<u32> = p.want.iter().map(|w| w.priority).collect();
        priorities.sort();
        assert_eq!(priorities, (1..=p.want.len() as u32).collect::<Vec<_>>());
        for w in &p.want {
            // Wants are for what others sell.
            let sellers = &sellers_of[w.item_type.as_str()];
            assert!(
                sellers.iter().any(|n| *n != p.name),
                "{}: nobody else sells {}",
                w.want_id,
                w.item_type
            );
            assert!(
                !p.sell.iter().any(|i| i.item_type == w.item_type),
                "{} sells what it wants",
                p.name
            );
            let r = reference[w.item_type.as_str()];
            assert!(
                w.max_price >= r * 7 / 10 - 50 && w.max_price <= r * 14 / 10 + 50,
                "{}: {} vs ref {r}",
                w.want_id,
                w.max_price
            );
            assert!((1..=2).contains(&w.quantity));
            assert!(!w.keywords.is_empty() && w.description.contains(&w.item_type));
        }
        if !p.owns.is_empty() {
            owners += 1;
            for o in &p.owns {
                assert!(!wanted.contains(o.as_str()), "owns what it wants");
                assert!(
                    sellers_of.contains_key(o.as_str()),
                    "owns something others sell"
                );
            }
        }
    }
    assert!(
        (10..=45).contains(&owners),
        "some participants already own a type ({owners})"
    );
}

#[test]
fn a_bigger_market_gets_numbered_names_and_stays_valid() {
    let s = generate(1, 150, 5_000);
    s.validate().unwrap();
    let names: BTreeSet<&str> = s.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 150);
    assert!(s.profiles.iter().all(|p| p.budget == 5_000));
    assert_eq!(s.profiles[0].sell[0].item_id.len(), "item-001-1".len());
}

#[test]
fn tiny_markets_do_not_panic() {
    assert!(generate(3, 0, 10_000).profiles.is_empty());
    let one = generate(3, 1, 10_000);
    assert!(
        one.profiles[0].want.is_empty(),
        "nobody else sells anything"
    );
    generate(3, 2, 10_000).validate().unwrap();
}
