//! `haggle demo` as a newcomer runs it, at a small size: the report files and their content,
//! exact replay from a seed, an efficiency figure checked against a market whose best allocation
//! is known by construction, and adversaries that cannot break a rule.

mod support;

use serde_json::Value;
use support::*;

fn demo(dir: &Scratch, out: &str, extra: &[&str]) -> Value {
    let out_dir = dir.path(out);
    let out_s = out_dir.display().to_string();
    let mut args = vec!["demo", "--quiet", "--out", out_s.as_str()];
    args.extend_from_slice(extra);
    let stdout = run_ok(&dir.0, &args);
    assert!(
        stdout.contains("report:"),
        "the demo says where the report is: {stdout}"
    );
    // The exact next steps: the whole serve command with absolute paths, the address, which
    // token opens which view, and how the simulated clock moves on.
    let db_abs = std::path::absolute(out_dir.join("private/haggle.db")).unwrap();
    let out_abs = std::path::absolute(&out_dir).unwrap();
    let serve = format!(
        "haggle serve --database sqlite://{} --reports {}",
        db_abs.display(),
        out_abs.display()
    );
    assert!(stdout.contains(&serve), "{serve} in: {stdout}");
    for needle in [
        "http://127.0.0.1:8080/signin",
        "\"operator\"",
        "\"observer\"",
        "\"principal_token\"",
        "\"agent_token\"",
        "/clock/advance",
    ] {
        assert!(stdout.contains(needle), "{needle} in: {stdout}");
    }
    // The ledger and hash chain of the finished market verify with the operator's own command.
    let db = format!("sqlite://{}", out_dir.join("private/haggle.db").display());
    run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn the_demo_writes_its_report_results_csvs_database_and_tokens() {
    let dir = Scratch::new("demo");
    let r = demo(&dir, "out", &["--participants", "12", "--seed", "7"]);
    let out = dir.path("out");
    let eff = r["efficiency"]
        .as_f64()
        .expect("a top-level efficiency number");
    assert!((0.0..=1.0).contains(&eff), "efficiency {eff}");
    assert!(
        r["metrics"]["market"]["deals"].as_u64().unwrap() > 0,
        "agents trade"
    );
    assert_eq!(r["metrics"]["market"]["participants"], 12);
    assert_eq!(
        r["metrics"]["market"]["irrational_deals"], 0,
        "rule brains never trade past their limits"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("<table"),
        "charts and tables"
    );
    let external = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !external.contains("http://")
            && !external.contains("https://")
            && !external.contains("src="),
        "self-contained: no external assets"
    );
    let deals_csv = std::fs::read_to_string(out.join("deals.csv")).unwrap();
    assert_eq!(
        deals_csv.lines().count() as u64,
        1 + r["metrics"]["deals"].as_array().unwrap().len() as u64
    );
    assert!(deals_csv.starts_with("deal_id,"));
    let settlement = std::fs::read_to_string(out.join("settlement_deals.csv")).unwrap();
    assert!(
        settlement.starts_with("deal_id,listing_id,title,seller_id"),
        "the ledger's handover list"
    );
    let conduct: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("conduct.json")).unwrap()).unwrap();
    assert!(
        conduct["prices"]
            .as_str()
            .unwrap()
            .starts_with("built-in list prices as of"),
        "the run records which price table priced it: {conduct}"
    );
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("private/tokens.json")).unwrap())
            .unwrap();
    assert!(tokens["operator"].as_str().unwrap().starts_with("hgl_"));
    assert!(tokens["observer"].as_str().unwrap().starts_with("hgl_"));
    let people = tokens["participants"].as_array().unwrap();
    assert_eq!(people.len(), 12);
    assert!(people.iter().all(|p| p["agent_token"].is_string()
        && p["principal_token"].is_string()
        && p["name"].is_string()));
    let timing: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("timing.json")).unwrap()).unwrap();
    assert!(timing["total_ms"].as_f64().unwrap() > 0.0);
    assert!(
        !std::fs::read_to_string(out.join("results.json"))
            .unwrap()
            .contains("total_ms"),
        "no wall clock in results"
    );
}

#[test]
fn the_same_seed_gives_byte_identical_results() {
    let dir = Scratch::new("replay");
    demo(&dir, "a", &["--participants", "10", "--seed", "11"]);
    demo(&dir, "b", &["--participants", "10", "--seed", "11"]);
    for f in ["results.json", "deals.csv", "participants.csv"] {
        let a = std::fs::read(dir.path("a").join(f)).unwrap();
        let b = std::fs::read(dir.path("b").join(f)).unwrap();
        assert!(a == b, "{f} differs between two runs of one seed");
    }
    demo(&dir, "c", &["--participants", "10", "--seed", "12"]);
    assert_ne!(
        std::fs::read(dir.path("a").join("results.json")).unwrap(),
        std::fs::read(dir.path("c").join("results.json")).unwrap(),
        "another seed, another market"
    );
}

/// Issue 23: payments run only for a market created with a provider. The demo's market has none,
/// so a Stripe key in the environment (pointing at a provider that is not there) changes
/// nothing: the same results byte for byte, no payment record, no `payment_*` event.
#[test]
fn the_demo_is_unchanged_by_a_payment_provider_in_the_environment() {
    let dir = Scratch::new("nopay");
    demo(&dir, "a", &["--participants", "8", "--seed", "5"]);
    let out = dir.path("b").display().to_string();
    let args = [
        "demo",
        "--quiet",
        "--out",
        &out,
        "--participants",
        "8",
        "--seed",
        "5",
    ];
    let env = [
        ("HAGGLE_STRIPE_SECRET_KEY", "sk_test_unused"),
        ("HAGGLE_STRIPE_BASE_URL", "http://127.0.0.1:9"),
    ];
    let ran = run_within_env(&dir.0, &args, &env, std::time::Duration::from_secs(90));
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    for f in ["results.json", "deals.csv", "participants.csv"] {
        let a = std::fs::read(dir.path("a").join(f)).unwrap();
        let b = std::fs::read(dir.path("b").join(f)).unwrap();
        assert!(a == b, "{f} differs with a provider key in the environment");
    }
    let db = format!(
        "sqlite://{}",
        dir.path("b").join("private/haggle.db").display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = haggle_store::Store::open(&db)
            .await
            .expect("open the demo's database");
        let markets = store.markets().await.unwrap();
        assert!(!markets.is_empty());
        for m in markets {
            assert!(m.rules.payments.is_none());
            assert!(store.payments(m.id, 0, 500).await.unwrap().is_empty());
            let (mut after, mut seen) = (0, 0);
            loop {
                let page = store
                    .events(m.id, haggle_store::Viewer::All, after, 1_000)
                    .await
                    .unwrap();
                let Some(last) = page.last() else { break };
                after = last.seq;
                seen += page.len();
                assert!(
                    !page.iter().any(|e| e.kind().starts_with("payment_")),
                    "a payment event in a market without a provider"
                );
            }
            assert!(seen > 0, "the demo's market has events");
        }
    });
}

/// Two item types, two sellers, two buyers: the best allocation gives each buyer the item it
/// wants, welfare (5000 − 1000) + (3000 − 2000) = 5000, and nothing else is feasible.
const KNOWN: &str = r#"
name = "known"
seed = 1
currency = "USD"

[[profiles]]
name = "Sella"
budget = 0
[[profiles.sell]]
item_id = "lamp-1"
item_type = "desk lamp"
title = "Desk lamp"
category = "furniture"
asking_price = 1500
floor_price = 1000

[[profiles]]
name = "Selby"
budget = 0
[[profiles.sell]]
item_id = "kettle-1"
item_type = "kettle"
title = "Electric kettle"
category = "kitchen"
asking_price = 2600
floor_price = 2000

[[profiles]]
name = "Xavi"
budget = 10000
[[profiles.want]]
want_id = "w-lamp"
item_type = "desk lamp"
description = "a desk lamp"
category = "furniture"
keywords = ["lamp"]
max_price = 5000

[[profiles]]
name = "Yara"
budget = 10000
[[profiles.want]]
want_id = "w-kettle"
item_type = "kettle"
description = "a kettle"
category = "kitchen"
keywords = ["kettle"]
max_price = 3000
"#;

#[test]
fn efficiency_matches_a_market_whose_best_allocation_is_known() {
    let dir = Scratch::new("known");
    std::fs::write(dir.path("known.toml"), KNOWN).unwrap();
    let scenario = dir.path("known.toml").display().to_string();
    let r = demo(
        &dir,
        "out",
        &["--scenario", &scenario, "--brains", "rule:linear"],
    );
    assert_eq!(r["metrics"]["market"]["max_welfare"], 5000);
    assert_eq!(r["metrics"]["market"]["max_welfare_exact"], true);
    let deals = r["metrics"]["deals"].as_array().unwrap();
    let welfare: i64 = deals
        .iter()
        .map(|d| d["valuation"].as_i64().unwrap() - d["floor"].as_i64().unwrap())
        .sum();
    assert_eq!(r["metrics"]["market"]["welfare"].as_i64().unwrap(), welfare);
    assert_eq!(r["efficiency"].as_f64().unwrap(), welfare as f64 / 5000.0);
    assert_eq!(deals.len(), 2, "both trades happen between linear agents");
    assert_eq!(r["efficiency"].as_f64().unwrap(), 1.0);
}

#[test]
fn the_lowballer_gets_no_irrational_deal_from_rule_brains() {
    let dir = Scratch::new("lowball");
    let r = demo(
        &dir,
        "out",
        &[
            "--participants",
            "12",
            "--brains",
            "adversary:lowballer,rule:boulware,rule:linear,rule:conceder",
        ],
    );
    assert_eq!(r["metrics"]["market"]["irrational_deals"], 0);
    for d in r["metrics"]["deals"].as_array().unwrap() {
        assert!(
            d["price"].as_i64() >= d["floor"].as_i64(),
            "never below a floor: {d}"
        );
    }
}

#[test]
fn a_seller_that_never_hands_over_is_caught_and_the_buyer_gets_its_money_back() {
    let dir = Scratch::new("noship");
    let r = demo(
        &dir,
        "out",
        &[
            "--participants",
            "12",
            "--brains",
            "adversary:never-ships,rule:linear",
        ],
    );
    let deals = r["metrics"]["deals"].as_array().unwrap();
    let by_never = deals
        .iter()
        .filter(|d| d["seller_brain"] == "adversary:never-ships")
        .collect::<Vec<_>>();
    assert!(!by_never.is_empty(), "the adversary sold something");
    for d in by_never {
        assert_eq!(d["status"], "cancelled", "no goods, no money: {d}");
    }
    assert!(
        r["metrics"]["market"]["deals_not_counted"]
            .as_u64()
            .unwrap()
            > 0,
        "undone deals are not counted as trades"
    );
}

#[test]
fn a_reckless_seller_makes_no_sale_below_its_principals_limits() {
    let dir = Scratch::new("reckless");
    let r = demo(
        &dir,
        "out",
        &[
            "--participants",
            "12",
            "--brains",
            "adversary:reckless-seller,rule:linear",
        ],
    );
    let market = &r["metrics"]["market"];
    let refused = market["sales_refused_below_seller_minimum"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused > 0, "the hijacked sellers tried: {market}");
    assert_eq!(market["below_floor_deals"], 0, "{market}");
    let report = std::fs::read_to_string(dir.path("out").join("report.html")).unwrap();
    assert!(
        report.contains("Sales attempted below seller limits (refused)"),
        "the report shows the measure"
    );
}

#[test]
fn the_offer_spammer_hits_the_cap_and_breaks_nothing() {
    let dir = Scratch::new("spam");
    let r = demo(
        &dir,
        "out",
        &[
            "--participants",
            "12",
            "--brains",
            "adversary:spammer,rule:linear",
        ],
    );
    let refusals = r["metrics"]["market"]["refusals_by_code"]
        .as_object()
        .unwrap();
    let capped = refusals
        .get("too_many_offers")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        + refusals
            .get("thread_closed")
            .and_then(Value::as_u64)
            .unwrap_or(0);
    assert!(capped > 0, "the market stopped the spam: {refusals:?}");
    assert_eq!(r["metrics"]["market"]["irrational_deals"], 0);
}
