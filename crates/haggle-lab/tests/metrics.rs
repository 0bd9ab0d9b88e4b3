//! Metrics of a tiny run, every number computed by hand.

mod common;

use haggle_lab::efficiency::max_welfare;
use haggle_lab::metrics::{compute, compute_with};

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("a value");
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

#[test]
fn per_deal_metrics() {
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &common::record("Ada", "Ben"));
    assert_eq!(m.deals.len(), 3);

    // Deal 1: r = 60, v = 90 (Ben's want), p = 70, ask 80, Ben opened at 65.
    let d = &m.deals[0];
    assert_eq!(
        (
            d.item_id.as_deref(),
            d.item_type.as_deref(),
            d.want_id.as_deref()
        ),
        (Some("bike"), Some("road bike"), Some("ben-bike"))
    );
    assert_eq!(
        (d.seller_brain.as_str(), d.buyer_brain.as_str()),
        ("rule:boulware", "rule:conceder")
    );
    assert!(d.counted);
    assert_eq!(
        (d.floor, d.valuation, d.ask, d.opening, d.reference),
        (Some(6000), 9000, Some(8000), Some(6500), Some(8500))
    );
    assert_eq!(
        (d.seller_surplus, d.buyer_surplus, d.welfare),
        (Some(1000), 2000, Some(3000))
    );
    close(d.seller_share, 1.0 / 3.0);
    assert_eq!(d.nash_distance, Some(500));
    close(d.seller_advantage, 0.5);
    close(d.buyer_advantage, 0.8);
    assert!(!d.irrational && !d.unwanted && !d.owned_type);
    assert_eq!(
        (d.time_to_deal_ms, d.time_from_listing_ms),
        (Some(2500), Some(3500))
    );
    assert_eq!(d.first_offer_won, Some(false), "Cy offered first");

    // Deal 2: the item and want from the listing; r = 8, v = 15, p = 16: above valuation.
    let d = &m.deals[1];
    assert_eq!(
        (d.item_id.as_deref(), d.want_id.as_deref()),
        (Some("lamp"), Some("ada-lamp"))
    );
    assert_eq!(
        (d.seller_surplus, d.buyer_surplus, d.welfare),
        (Some(800), -100, Some(700))
    );
    close(d.seller_share, 8.0 / 7.0);
    assert_eq!(d.nash_distance, Some(450));
    assert!(d.irrational);
    assert_eq!(
        d.time_to_deal_ms,
        Some(100),
        "from the thread's first offer"
    );
    assert_eq!(d.first_offer_won, Some(true));
    assert_eq!(d.buyer_advantage, None, "opened above its valuation");

    // Deal 3: cancelled, so not counted; Cy owns a lamp and never wanted one.
    let d = &m.deals[2];
    assert!(!d.counted && d.unwanted && d.owned_type);
    assert_eq!(d.valuation, 0);
}

#[test]
fn market_metrics() {
    let s = common::scenario("Ada", "Ben");
    let e = max_welfare(&s);
    // Ben gets the bike (90 − 60) and Ada the cheaper lamp (15 − 5).
    assert_eq!((e.max_welfare, e.exact), (4000, true));
    let m = compute_with(&s, &common::record("Ada", "Ben"), &e);
    let k = &m.market;
    assert_eq!(
        (k.participants, k.listings, k.sell_listings, k.buy_listings),
        (3, 3, 3, 0)
    );
    assert_eq!((k.deals, k.deals_not_counted), (2, 1));
    assert_eq!(
        (k.gross_volume, k.welfare, k.seller_surplus, k.buyer_surplus),
        (8600, 3700, 1800, 1900)
    );
    assert_eq!(
        (
            k.max_welfare,
            k.max_welfare_exact,
            k.max_welfare_upper_bound
        ),
        (4000, true, 4000)
    );
    close(k.allocative_efficiency, 0.925);
    // Threads 100, 102, 104 ended in a deal (104's was cancelled later); 100, 101 and 102 were
    // feasible (Cy never wanted a lamp).
    assert_eq!((k.threads, k.threads_with_deal), (5, 3));
    close(k.agreement_rate, 0.6);
    assert_eq!((k.feasible_threads, k.feasible_threads_with_deal), (3, 2));
    close(k.agreement_rate_feasible, 2.0 / 3.0);
    close(k.mean_seller_share, (1.0 / 3.0 + 8.0 / 7.0) / 2.0);
    assert_eq!(k.mean_nash_distance, Some(475));
    assert_eq!(
        (
            k.irrational_deals,
            k.below_floor_deals,
            k.above_valuation_deals
        ),
        (1, 0, 1)
    );
    assert_eq!((k.unwanted_deals, k.owned_type_deals), (0, 0));
    assert_eq!(k.offers, 6);
    close(k.mean_offers_per_deal, 2.0);
    assert_eq!(
        (k.mean_time_to_deal_ms, k.median_time_to_deal_ms),
        (Some(1300), Some(1300))
    );
    assert_eq!((k.rounds, k.simulated_ms), (12, 6000));
    assert_eq!((k.wants, k.wants_met), (3, 2));
    close(k.share_wants_met, 2.0 / 3.0);
    assert_eq!((k.items, k.items_sold), (3, 2));
    close(k.share_items_sold, 2.0 / 3.0);
    assert_eq!((k.first_offer_deals, k.first_offer_wins), (2, 1));
    close(k.first_proposal_bias, 0.5);
    close(
        k.mean_first_offer_to_ask,
        (6500.0 / 8000.0 + 1600.0 / 1200.0) / 2.0,
    );
    close(k.first_offer_price_correlation, 1.0);
    assert_eq!((k.median_price, k.mean_price), (Some(4300), Some(4300)));
    assert_eq!(k.refusals, 3);
    assert_eq!(k.refusals_by_code["insufficient_funds"], 2);
}

#[test]
fn arms_and_participants() {
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &common::record("Ada", "Ben"));
    assert_eq!(
        m.brains.keys().collect::<Vec<_>>(),
        ["rule:boulware", "rule:conceder"]
    );
    let b = &m.brains["rule:boulware"];
    assert_eq!(
        (b.participants, b.deals_as_seller, b.deals_as_buyer),
        (2, 1, 1)
    );
    assert_eq!(
        (b.seller_surplus, b.buyer_surplus, b.surplus),
        (1000, -100, 900)
    );
    assert_eq!((b.volume_sold, b.volume_bought), (7000, 1600));
    close(b.mean_share_as_seller, 1.0 / 3.0);
    close(b.mean_share_as_buyer, 1.0 - 8.0 / 7.0);
    assert_eq!((b.irrational_deals, b.refusals), (1, 3));
    let c = &m.brains["rule:conceder"];
    assert_eq!(
        (c.seller_surplus, c.buyer_surplus, c.irrational_deals),
        (800, 2000, 0)
    );
    close(c.mean_share_as_buyer, 2.0 / 3.0);

    let ada = &m.participants["Ada"];
    assert_eq!(
        (ada.participant_id, ada.brain.as_str()),
        (Some(1), "rule:boulware")
    );
    assert_eq!(
        (ada.revenue, ada.spent, ada.net_cash, ada.final_cash),
        (7000, 1600, 5400, 15_400)
    );
    assert_eq!((ada.seller_surplus, ada.buyer_surplus), (1000, -100));
    assert_eq!(
        (
            ada.items,
            ada.items_sold,
            ada.wants,
            ada.wants_met,
            ada.bought
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!((ada.listings, ada.threads, ada.irrational_deals), (1, 3, 1));
    let ben = &m.participants["Ben"];
    assert_eq!(
        (ben.items, ben.items_sold, ben.revenue, ben.spent),
        (2, 1, 1600, 7000)
    );
    let cy = &m.participants["Cy"];
    assert_eq!((cy.bought, cy.wants_met, cy.threads), (0, 0, 3));
    assert_eq!(cy.refusals["insufficient_funds"], 2);
}

#[test]
fn metrics_json_is_byte_stable() {
    let s = common::scenario("Ada", "Ben");
    let a = serde_json::to_string_pretty(&compute(&s, &common::record("Ada", "Ben"))).unwrap();
    let b = serde_json::to_string_pretty(&compute(&s, &common::record("Ada", "Ben"))).unwrap();
    assert_eq!(a, b);
    // The record itself round-trips through JSON (the runner may store it).
    let r = common::record("Ada", "Ben");
    let back: haggle_lab::metrics::RunRecord =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn an_empty_run_has_no_deals_and_no_ratios() {
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &Default::default());
    assert_eq!(m.market.deals, 0);
    assert_eq!(m.market.allocative_efficiency, Some(0.0));
    assert_eq!(
        (
            m.market.agreement_rate,
            m.market.mean_price,
            m.market.first_proposal_bias
        ),
        (None, None, None)
    );
    assert_eq!(m.participants.len(), 3);
    assert_eq!(m.participants["Ada"].brain, "unknown");
}

#[test]
fn a_stored_runs_results_json_is_reproduced_byte_for_byte() {
    // A real run (12 generated colleagues, Boulware, Conceder and Linear, 60 rounds; run
    // `split-01` of an experiment) as fixtures: its scenario, its record and the results.json
    // written when it ran. Any change to what `compute` yields, or to its serialisation, shows
    // here (the demo's results.json must stay byte-identical for a seed).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let scenario: haggle_lab::scenario::Scenario =
        serde_json::from_str(&read("scenario.json")).unwrap();
    let record: haggle_lab::metrics::RunRecord =
        serde_json::from_str(&read("record.json")).unwrap();
    let m = compute(&scenario, &record);
    assert!(
        m.market.deals > 10 && m.market.buy_listings > 0,
        "{:?}",
        m.market
    );
    assert!(
        haggle_lab::report::results_json(&scenario, &m) == read("results.json"),
        "results.json differs from the fixture"
    );
}
