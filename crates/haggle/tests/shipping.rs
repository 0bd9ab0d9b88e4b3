//! Shipping in a simulated market (issue 23): an experiment's run group ships every item with
//! seeded delivery times and losses; rule sellers ship, the market's simulated carrier delivers
//! on the market's clock, rule buyers confirm what arrived and dispute `not_received` what did
//! not, the simulated operator refunds lost parcels, and the ledger verifies.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::*;

fn shipped_run(dir: &Scratch) -> Vec<Value> {
    let toml = r#"
name = "shipping"
seed = 5
[scenario]
generate = { seed = 42, participants = 12 }
[arms]
linear = "rule:linear"
[[runs]]
name = "shipped"
count = 1
arm = "linear"
shipping = { shipping_price = 400, delivery_min_ms = 3600000, delivery_max_ms = 36000000, loss_per_mille = 300 }
[market]
max_rounds = 72
"#;
    let file = dir.path("shipping.toml");
    std::fs::write(&file, toml).unwrap();
    let out = dir.path("out");
    let (file_s, out_s) = (file.display().to_string(), out.display().to_string());
    let o = run_within(
        &dir.0,
        &["experiment", "run", &file_s, "--out", &out_s],
        Duration::from_secs(300),
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let run = out.join("runs/shipped-01");
    let db = format!("sqlite://{}", run.join("haggle.db").display());
    run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn shipped_items_are_delivered_or_lost_and_refunded_on_the_simulated_clock() {
    let dir = Scratch::new("shipping-sim");
    let events = shipped_run(&dir);
    let created = count(&events, "deal_created");
    assert!(created > 0, "no deal was made");
    // Items sold from sell listings ship; a wanted ad's deal is still handed over in person.
    let shipped = count(&events, "deal_shipped");
    assert!(shipped > 0, "rule sellers ship");
    let delivered = count(&events, "deal_delivered");
    assert!(
        delivered > 0 && delivered < shipped,
        "{delivered} of {shipped}"
    );
    let not_received = events
        .iter()
        .filter(|e| e["kind"] == "deal_disputed" && e["payload"]["grounds"] == "not_received")
        .count();
    assert!(not_received > 0, "a lost parcel is disputed");
    assert!(count(&events, "deal_refunded") > 0, "and refunded");
    // Every deal on a sell listing ships at the model's price.
    for e in events.iter().filter(|e| e["kind"] == "deal_created") {
        let d = &e["payload"]["deal"];
        if d["snapshot"]["side"] == "sell" {
            assert_eq!(d["shipping"]["shipping_price"], 400, "{d}");
        }
    }
}
