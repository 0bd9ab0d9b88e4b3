//! `haggle eval` with built-in brains: the scorecard of a rule brain is byte-identical for its
//! seeds, a deliberately bad agent (`adversary:gullible`: sells at 1, obeys injections, never
//! confirms) is red on exactly those lines, and `haggle eval compare` pairs two scorecards.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

fn eval(dir: &Scratch, out: &str, brain: &str, seeds: &str) -> (Value, String) {
    let out_dir = dir.path(out);
    let o = out_dir.display().to_string();
    let args = [
        "eval", "--brain", brain, "--seeds", seeds, "--quiet", "--out", &o,
    ];
    run_ok(&dir.0, &args);
    let text = std::fs::read_to_string(out_dir.join("scorecard.json")).unwrap();
    assert!(out_dir.join("scorecard.html").exists());
    (serde_json::from_str(&text).unwrap(), text)
}

/// Red lines per task.
fn red(card: &Value) -> Vec<(String, BTreeSet<String>)> {
    card["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let mut lines = BTreeSet::new();
            for line in [
                "catastrophic",
                "leaks",
                "lifecycle",
                "injection_compliance",
                "turn_timeouts",
            ] {
                if t[line]["red"] == Value::Bool(true) {
                    lines.insert(line.to_string());
                }
            }
            (t["task"].as_str().unwrap().to_string(), lines)
        })
        .collect()
}

#[test]
fn a_rule_brains_scorecard_is_byte_identical_for_its_seeds() {
    let dir = Scratch::new("eval-det");
    let (card, a) = eval(&dir, "a", "rule:boulware", "2");
    let (_, b) = eval(&dir, "b", "rule:boulware", "2");
    assert_eq!(a, b, "same brain, same seeds, same scorecard");
    assert_eq!(card["suite"], "haggle-eval-v1");
    assert_eq!(card["tasks"].as_array().unwrap().len(), 8);
    let total = card["total"]["mean"].as_f64().unwrap();
    assert!(total > 0.0, "a rule brain captures some surplus: {total}");
}

#[test]
fn a_bad_agent_is_red_on_exactly_its_faults() {
    let dir = Scratch::new("eval-bad");
    let (card, _) = eval(&dir, "bad", "adversary:gullible", "1");
    let red = red(&card);
    let all: BTreeSet<String> = red.iter().flat_map(|(_, l)| l.clone()).collect();
    let expected: BTreeSet<String> = ["catastrophic", "injection_compliance", "lifecycle"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(all, expected, "red lines per task: {red:?}");
    let task = |name: &str| red.iter().find(|(t, _)| t == name).unwrap().1.clone();
    // Selling at 1 is refused by its seller mandate: catastrophic attempts.
    assert!(task("sell-vs-lowballers").contains("catastrophic"));
    // It accepted the injecting seller's offer as told.
    assert!(task("prompt-injection").contains("injection_compliance"));
    // It never confirms what it bought.
    assert!(task("thin-market-buy").contains("lifecycle"));
}

#[test]
fn compare_sets_two_scorecards_side_by_side() {
    let dir = Scratch::new("eval-cmp");
    eval(&dir, "good", "rule:boulware", "1");
    eval(&dir, "bad", "adversary:gullible", "1");
    let good = dir.path("good/scorecard.json").display().to_string();
    let bad = dir.path("bad/scorecard.json").display().to_string();
    let json = dir.path("cmp.json").display().to_string();
    let out = run_ok(&dir.0, &["eval", "compare", &good, &bad, "--out", &json]);
    assert!(out.contains("brain rule:boulware"), "{out}");
    assert!(out.contains("brain adversary:gullible"), "{out}");
    assert!(out.contains("B−A"), "{out}");
    let diffs: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(diffs.as_array().unwrap().len(), 8);
}

#[test]
fn an_unknown_brain_is_refused_before_any_market_runs() {
    let dir = Scratch::new("eval-unknown");
    let o = run(&dir.0, &["eval", "--brain", "rule:nope", "--out", "x"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("unknown brain"),
        "{}",
        text(&o.stderr)
    );
    assert!(!dir.path("x/scorecard.json").exists());
}
