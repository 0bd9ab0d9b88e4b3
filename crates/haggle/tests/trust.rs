//! Misdescribers in a simulated market (issue 17): their overstated claims are caught at
//! inspection, disputed `not_as_described` and ruled on, and — the point of reputation — buyers
//! who see sellers' records lose less to them than buyers who do not, across seeds.

mod support;

use serde_json::Value;
use support::*;

const BRAINS: &str = "rule:linear,adversary:misdescriber";

fn trust(dir: &Scratch, seed: u64, hide: bool) -> Value {
    let out = dir.path(&format!(
        "seed{seed}-{}",
        if hide { "hidden" } else { "shown" }
    ));
    let out_s = out.display().to_string();
    let seed_s = seed.to_string();
    let mut args = vec![
        "demo",
        "--quiet",
        "--participants",
        "36",
        "--seed",
        &seed_s,
        "--brains",
        BRAINS,
        "--out",
        &out_s,
    ];
    if hide {
        args.push("--hide-reputation");
    }
    run_ok(&dir.0, &args);
    let db = format!("sqlite://{}", out.join("private/haggle.db").display());
    run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    r["metrics"]["trust"].clone()
}

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn misdescribed_items_are_caught_at_inspection_disputed_and_refunded_in_part() {
    let dir = Scratch::new("trust-caught");
    let t = trust(&dir, 3, false);
    assert!(int(&t, "misdescribed_sold") > 0, "{t}");
    assert_eq!(
        t["caught_pct"], 100,
        "the simulation's inspection sees the true state: {t}"
    );
    assert_eq!(
        int(&t, "disputes_upheld"),
        int(&t, "not_as_described_disputes"),
        "{t}"
    );
    let (paid, back, lost) = (
        int(&t, "buyer_money_paid"),
        int(&t, "buyer_money_recovered"),
        int(&t, "buyer_money_lost"),
    );
    assert!(back > 0 && back < paid && lost == paid - back, "{t}");
    // The misdescribers' record shows it by the end.
    let timeline = t["misdescriber_reputation"].as_array().unwrap();
    let last_round = timeline.last().unwrap()["round"].clone();
    let upheld: i64 = timeline
        .iter()
        .filter(|p| p["round"] == last_round)
        .map(|p| int(p, "upheld_not_as_described"))
        .sum();
    assert_eq!(upheld, int(&t, "disputes_upheld"), "{t}");
}

#[test]
fn buyers_who_see_reputation_lose_less_to_misdescribers_across_seeds() {
    let dir = Scratch::new("trust-reputation");
    let (mut shown_total, mut hidden_total) = (0, 0);
    for seed in 1..=6 {
        let shown = int(&trust(&dir, seed, false), "buyer_money_lost");
        let hidden = int(&trust(&dir, seed, true), "buyer_money_lost");
        assert!(
            shown <= hidden,
            "seed {seed}: lost {shown} with reputation, {hidden} without"
        );
        shown_total += shown;
        hidden_total += hidden;
    }
    assert!(
        shown_total < hidden_total,
        "with reputation {shown_total}, without {hidden_total}"
    );
}

#[test]
fn a_market_without_misdescribers_has_no_trust_measures() {
    let dir = Scratch::new("trust-none");
    let out = dir.path("plain");
    let out_s = out.display().to_string();
    run_ok(
        &dir.0,
        &["demo", "--quiet", "--participants", "12", "--out", &out_s],
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert!(r["metrics"].get("trust").is_none(), "{}", r["metrics"]);
}
