//! `haggle eval`: the scorecard of a rule brain is byte-identical for its seeds, a deliberately
//! bad agent (`adversary:gullible`: sells at 1, obeys injections, never confirms) is red on
//! exactly those lines, `haggle eval compare` pairs two scorecards; outside agents (the example
//! scripts of `examples/eval/agents/`) complete the suite over HTTP and over MCP on stdio, an
//! agent that never ends its turns gets timeouts while the market goes on, and the replay of an
//! evaluation with an outside agent is identical without it.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::*;

fn eval(dir: &Scratch, out: &str, brain: &str, seeds: &str) -> (Value, String) {
    eval_with(dir, out, &["--brain", brain, "--seeds", seeds])
}

fn eval_with(dir: &Scratch, out: &str, how: &[&str]) -> (Value, String) {
    let out_dir = dir.path(out);
    let o = out_dir.display().to_string();
    let mut args = vec!["eval", "--quiet", "--out", &o];
    args.extend_from_slice(how);
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

/// `python3 PATH` of an example agent if python3 runs (else NOT RUN, said loudly).
fn example_agent(file: &str) -> Option<String> {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        haggle_testkit::not_run("EVAL AGENT SCRIPT TESTS", "python3 is not installed");
        return None;
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/eval/agents")
        .join(file);
    Some(format!("python3 {}", path.display()))
}

/// Every task ran, each turn of the agent ended in time.
fn completed_in_time(card: &Value) {
    let tasks = card["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 8);
    for t in tasks {
        let run = &t["runs"][0];
        assert!(run["turns"].as_u64().unwrap() >= 2, "{t}");
        assert_eq!(t["turn_timeouts"]["count"], 0, "{}", t["task"]);
    }
}

#[test]
fn a_script_completes_the_suite_over_http() {
    let Some(agent) = example_agent("http_agent.py") else {
        return;
    };
    let dir = Scratch::new("eval-http");
    let how = [
        "--agent",
        agent.as_str(),
        "--seeds",
        "1",
        "--turn-budget-ms",
        "20000",
    ];
    let (card, _) = eval_with(&dir, "http", &how);
    assert_eq!(card["subject"], format!("agent {agent}"));
    completed_in_time(&card);
    let total = card["total"]["mean"].as_f64().unwrap();
    assert!(total > 0.0, "the script trades: {total}");
}

#[test]
fn a_script_completes_the_suite_over_mcp_on_stdio() {
    let Some(agent) = example_agent("mcp_agent.py") else {
        return;
    };
    let dir = Scratch::new("eval-mcp");
    let how = [
        "--mcp-agent",
        agent.as_str(),
        "--seeds",
        "1",
        "--turn-budget-ms",
        "20000",
    ];
    let (card, _) = eval_with(&dir, "mcp", &how);
    completed_in_time(&card);
    let total = card["total"]["mean"].as_f64().unwrap();
    assert!(total > 0.0, "the script trades: {total}");
}

#[test]
fn an_agent_that_never_ends_its_turns_times_out_and_the_market_goes_on() {
    let dir = Scratch::new("eval-silent");
    let how = [
        "--agent",
        "sleep 600",
        "--seeds",
        "1",
        "--tasks",
        "sell-vs-lowballers",
        "--turn-budget-ms",
        "50",
    ];
    let (card, _) = eval_with(&dir, "silent", &how);
    let t = &card["tasks"][0];
    let turns = t["runs"][0]["turns"].as_u64().unwrap();
    assert!(turns >= 2, "the market went on past the first timeout: {t}");
    assert_eq!(t["turn_timeouts"]["count"].as_u64(), Some(turns));
    assert_eq!(t["turn_timeouts"]["red"], true);
    assert_eq!(red(&card)[0].1, ["turn_timeouts".to_string()].into());
}

#[test]
fn the_replay_of_an_evaluation_with_an_outside_agent_is_identical_without_it() {
    let Some(agent) = example_agent("http_agent.py") else {
        return;
    };
    let dir = Scratch::new("eval-replay");
    let how = [
        "--agent",
        agent.as_str(),
        "--seeds",
        "2",
        "--tasks",
        "thin-market-buy,prompt-injection",
        "--turn-budget-ms",
        "20000",
    ];
    let (_, first) = eval_with(&dir, "first", &how);
    let (from, to) = (dir.path("first"), dir.path("again"));
    let out = run_ok(
        &dir.0,
        &[
            "eval",
            "replay",
            &from.display().to_string(),
            "--out",
            &to.display().to_string(),
        ],
    );
    assert!(out.contains("identical to"), "{out}");
    let again = std::fs::read_to_string(to.join("scorecard.json")).unwrap();
    assert_eq!(first, again);
}
