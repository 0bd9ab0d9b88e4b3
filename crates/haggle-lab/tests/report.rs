//! Report files: written, self-contained, escaped, deterministic; timing kept apart.

mod common;

use haggle_lab::generator::generate;
use haggle_lab::metrics::{RunRecord, compute};
use haggle_lab::report::{Results, Timing, escape, money, write_report, write_timing};
use std::collections::BTreeMap;

fn out_dir(name: &str) -> std::path::PathBuf {
    haggle_testkit::temp_path(&format!("lab-report-{name}"))
}

#[test]
fn writes_results_csvs_and_html() {
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &common::record("Ada", "Ben"));
    let dir = out_dir("tiny");
    let files = write_report(&dir, &s, &m).unwrap();

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.results_json).unwrap()).unwrap();
    assert_eq!(results["efficiency"], serde_json::json!(0.925));
    assert_eq!(results["scenario"]["name"], "tiny");
    assert_eq!(results["scenario"]["participants"], 3);
    assert_eq!(results["scenario"]["items"], 3);
    assert_eq!(results["metrics"]["market"]["welfare"], 3700);
    assert_eq!(results["metrics"]["market"]["max_welfare"], 4000);
    let typed: Results =
        serde_json::from_str(&std::fs::read_to_string(&files.results_json).unwrap()).unwrap();
    // (serde_json may read a float back one ulp off, so compare the exact fields.)
    assert_eq!(
        (typed.metrics.market.welfare, typed.metrics.deals.len()),
        (3700, 3)
    );
    assert_eq!(typed.metrics.participants, m.participants);

    let deals = std::fs::read_to_string(&files.deals_csv).unwrap();
    let lines: Vec<&str> = deals.lines().collect();
    assert_eq!(lines.len(), 4, "{deals}");
    assert!(lines[0].starts_with("deal_id,listing_id,item_id,item_type,want_id,seller,seller_brain,buyer,buyer_brain,status,counted,price,floor,valuation"));
    assert!(lines[1].starts_with("1,10,bike,road bike,ben-bike,Ada,rule:boulware,Ben,rule:conceder,completed,true,7000,6000,9000,8000,8500,1000,2000,3000,0.3333,500,false,false,3500,3,2500"), "{}", lines[1]);
    assert!(lines[3].contains(",cancelled,false,"));

    let parts = std::fs::read_to_string(&files.participants_csv).unwrap();
    assert_eq!(parts.lines().count(), 4);
    assert!(
        parts.lines().any(|l| l.starts_with(
            "Ada,1,rule:boulware,10000,1,1,7000,1000,1,1,1,1600,-100,5400,15400,1,0,1"
        )),
        "{parts}"
    );

    let html = std::fs::read_to_string(&files.report_html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for needle in [
        "Price against reference",
        "Surplus by brain",
        "Deals over time",
        "seller&#39;s share",
        "Settlement by participant",
        "92.5%",
        "$70.00",
        "rule:conceder",
        "<style>",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    // Self-contained: nothing fetched.
    for banned in ["<script", "<link", " src=", "href=", "url(", "@import"] {
        assert!(!html.contains(banned), "found {banned}");
    }
    assert_eq!(
        html.matches("http").count(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
}

#[test]
fn all_text_is_escaped() {
    let evil = "Ada <script>alert('x')</script> & \"Co\"";
    let s = common::scenario(evil, "Ben");
    let m = compute(&s, &common::record(evil, "Ben"));
    let dir = out_dir("evil");
    let files = write_report(&dir, &s, &m).unwrap();
    let html = std::fs::read_to_string(&files.report_html).unwrap();
    assert!(!html.contains("<script"), "unescaped name");
    // The tables are askama templates (numeric character references); the charts use `escape`.
    assert!(
        html.contains("Ada &#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62; &#38; &#34;Co&#34;")
    );
    // CSV quotes it.
    let parts = std::fs::read_to_string(&files.participants_csv).unwrap();
    assert!(
        parts.contains("\"Ada <script>alert('x')</script> & \"\"Co\"\"\""),
        "{parts}"
    );
    assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&#39;&quot;");
}

#[test]
fn reports_are_deterministic_and_timing_is_separate() {
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &common::record("Ada", "Ben"));
    let (a, b) = (out_dir("det-a"), out_dir("det-b"));
    let fa = write_report(&a, &s, &m).unwrap();
    let fb = write_report(&b, &s, &m).unwrap();
    for (x, y) in [
        (&fa.results_json, &fb.results_json),
        (&fa.deals_csv, &fb.deals_csv),
        (&fa.participants_csv, &fb.participants_csv),
        (&fa.report_html, &fb.report_html),
    ] {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }
    let timing = Timing {
        total_ms: 1234.5,
        phases_ms: BTreeMap::from([("efficiency".to_string(), 3.25)]),
        notes: BTreeMap::from([("profile".to_string(), "release".to_string())]),
    };
    let path = write_timing(&a, &timing).unwrap();
    assert_eq!(path.file_name().unwrap(), "timing.json");
    let back: Timing = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, timing);
    let results = std::fs::read_to_string(&fa.results_json).unwrap();
    assert!(!results.contains("total_ms") && !results.contains("1234.5"));
}

#[test]
fn a_run_without_deals_still_reports() {
    let s = generate(4, 10, 10_000);
    let m = compute(&s, &RunRecord::default());
    let files = write_report(&out_dir("empty"), &s, &m).unwrap();
    let html = std::fs::read_to_string(&files.report_html).unwrap();
    assert!(html.contains("no deals"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.results_json).unwrap()).unwrap();
    assert_eq!(results["efficiency"], serde_json::json!(0.0));
    assert_eq!(
        std::fs::read_to_string(&files.deals_csv)
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn money_is_formatted_from_minor_units() {
    assert_eq!(money(1250, "USD"), "$12.50");
    assert_eq!(money(-305, "EUR"), "-€3.05");
    assert_eq!(money(7, "CHF"), "0.07 CHF");
}

#[test]
fn every_table_sits_in_its_own_sideways_scrolling_box() {
    // A wide table scrolls inside its box instead of widening the page (a 1280 px window
    // shows the whole page).
    let s = common::scenario("Ada", "Ben");
    let m = compute(&s, &common::record("Ada", "Ben"));
    let html = haggle_lab::report::report_html(&s, &m);
    assert_eq!(
        html.matches("<table").count(),
        4,
        "summary, brains, deals, settlement"
    );
    assert_eq!(
        html.matches("<div class=\"scroll\"><table").count(),
        html.matches("<table").count()
    );
    assert!(html.contains(".scroll{overflow-x:auto"));
}
