//! Repeated markets (issue 20): `sessions = K` runs the same participants through K sessions of
//! one market — each session measured on its own (sessions.json, sessions.csv, the learning
//! curve in the report), the market's record of the participants carried from one session to
//! the next, the same result for the same seed, and, with a language model, the notes agents
//! write between sessions stored, logged and replayed from the call log.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// A repeated experiment of rule brains: `sessions` sessions of `participants` colleagues,
/// `count` runs split between Boulware and Conceder.
fn repeated_file(dir: &Scratch, sessions: u32, count: u32, budget: &str) -> String {
    let text = format!(
        r#"
name = "rep"
seed = 11
sessions = {sessions}
session_budget = "{budget}"
[scenario]
generate = {{ seed = 42, participants = 10 }}
[arms]
a = "rule:boulware"
b = "rule:conceder"
[[runs]]
name = "split"
count = {count}
split = ["a", "b"]
[market]
max_rounds = 60
"#
    );
    let path = dir.path(&format!("rep-{sessions}-{budget}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn run_into(dir: &Scratch, file: &str, out: &str) -> PathBuf {
    let out_dir = dir.path(out);
    let o = run_within(
        &dir.0,
        &[
            "experiment",
            "run",
            file,
            "--out",
            &out_dir.display().to_string(),
        ],
        Duration::from_secs(300),
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    out_dir
}

fn sessions_of(out: &Path, run: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("runs").join(run).join("sessions.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

#[test]
fn k_sessions_produce_per_session_metrics_a_csv_and_a_learning_curve() {
    let dir = Scratch::new("sessions-metrics");
    let file = repeated_file(&dir, 3, 2, "fresh");
    let out = run_into(&dir, &file, "out");
    for run in ["split-01", "split-02"] {
        let s = sessions_of(&out, run);
        assert_eq!(s.len(), 3, "{run}: one entry per session");
        for (k, x) in s.iter().enumerate() {
            assert_eq!(x["session"], k as u64 + 1);
            assert!(
                x["deals"].as_u64().unwrap() > 0,
                "{run} session {}: {x}",
                k + 1
            );
            assert!(x["max_surplus"].as_i64().unwrap() > 0);
            for f in [
                "surplus",
                "irrational_deals",
                "disputes",
                "efficiency",
                "rounds",
            ] {
                assert!(!x[f].is_null(), "{f} in {x}");
            }
        }
        // The sessions' deals are the run's deals.
        let results: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("runs").join(run).join("results.json")).unwrap(),
        )
        .unwrap();
        let total: u64 = s.iter().map(|x| x["deals"].as_u64().unwrap()).sum();
        assert_eq!(
            total,
            results["metrics"]["market"]["deals"].as_u64().unwrap()
        );
    }
    let csv = std::fs::read_to_string(out.join("sessions.csv")).unwrap();
    assert!(csv.starts_with("run,group,session,"), "{csv}");
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    let curve = std::fs::read_to_string(out.join("learning_curve.csv")).unwrap();
    assert_eq!(
        curve.lines().filter(|l| l.starts_with("arm,")).count(),
        2 * 3,
        "{curve}"
    );
    let analysis: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(analysis["learning_curve"]["sessions"], 3);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Sessions (learning curve)"));
    assert!(html.contains("aria-label=\"Surplus per participant by session\""));
}

#[test]
fn repeated_sessions_carry_the_markets_record_of_the_participants_over() {
    let dir = Scratch::new("sessions-reputation");
    let file = repeated_file(&dir, 3, 1, "fresh");
    let out = run_into(&dir, &file, "out");
    let s = sessions_of(&out, "split-01");
    let at_start = |k: usize| s[k]["completed_deals_at_start"].as_u64().unwrap();
    assert_eq!(at_start(0), 0, "a new market has no record");
    assert!(
        at_start(1) > 0 && s[1]["participants_with_record"].as_u64().unwrap() > 0,
        "session 2 starts with session 1's settled deals on record: {}",
        s[1]
    );
    assert!(
        at_start(2) > at_start(1),
        "the record grows over the sessions: {} then {}",
        at_start(1),
        at_start(2)
    );
    // Each settled deal counts for its seller and its buyer: session 1's deals that had
    // settled by the time session 2 opened, no more.
    assert!(at_start(1) <= 2 * s[0]["deals"].as_u64().unwrap());
    // One market: session 2's events continue session 1's hash chain (one events.jsonl,
    // one sequence), and its listings of session 1 expired at the close between them.
    let events = std::fs::read_to_string(out.join("runs/split-01/events.jsonl")).unwrap();
    let closes = events
        .lines()
        .filter(|l| l.contains("\"market_closing_set\""))
        .count();
    assert_eq!(
        closes,
        2 * 2,
        "closed and reopened between each pair of sessions"
    );
    assert!(events.contains("\"reason\":\"market_closed\""));
}

#[test]
fn a_repeated_experiment_is_the_same_for_a_seed_and_replays_identically() {
    let dir = Scratch::new("sessions-determinism");
    let file = repeated_file(&dir, 2, 1, "carry");
    let a = run_into(&dir, &file, "a");
    let b = run_into(&dir, &file, "b");
    for f in [
        "runs/split-01/sessions.json",
        "runs/split-01/results.json",
        "runs/split-01/events.jsonl",
        "sessions.csv",
        "learning_curve.csv",
    ] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs between two runs of the same seed"
        );
    }
    let run = std::fs::read_to_string(a.join("runs/split-01/run.json")).unwrap();
    assert!(run.contains("\"sessions\": 2") && run.contains("\"session_budget\": \"carry\""));
    let o = run_within(
        &dir.0,
        &["experiment", "replay", &a.display().to_string(), "split-01"],
        Duration::from_secs(120),
    );
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains("sessions.json          identical"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("identical"), "{stdout}");
}

#[test]
fn one_session_leaves_the_stored_files_as_before() {
    let dir = Scratch::new("sessions-one");
    let file = repeated_file(&dir, 1, 1, "fresh");
    let out = run_into(&dir, &file, "out");
    let exp = std::fs::read_to_string(out.join("experiment.json")).unwrap();
    let run = std::fs::read_to_string(out.join("runs/split-01/run.json")).unwrap();
    assert!(
        !exp.contains("\"sessions\"") && !exp.contains("session_budget"),
        "{exp}"
    );
    assert!(!run.contains("\"sessions\"") && !run.contains("session_budget"));
    assert!(!out.join("runs/split-01/sessions.json").exists());
    assert!(!out.join("sessions.csv").exists());
    let analysis = std::fs::read_to_string(out.join("analysis.json")).unwrap();
    assert!(!analysis.contains("learning_curve"));
}

#[test]
fn a_bad_sessions_setting_is_refused_naming_the_field() {
    let dir = Scratch::new("sessions-bad");
    let file = repeated_file(&dir, 0, 1, "fresh");
    let o = run(&dir.0, &["experiment", "run", &file]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("sessions: must be between 1 and 100"),
        "{}",
        text(&o.stderr)
    );
    let file = repeated_file(&dir, 2, 1, "keep");
    let o = run(&dir.0, &["experiment", "run", &file]);
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(
        e.contains("line 5") && e.contains("expected `fresh` or `carry`"),
        "{e}"
    );
}

/// Two sessions with a language model (the fake OpenAI-compatible server) in half the market:
/// each model agent writes a note at the end of session 1 (a logged call and a `memory`
/// record, stored in memory.json, within the limit) that its session-2 prompt carries; the run
/// replays identically from its call log with the server gone.
async fn llm_sessions_run(dir: &Scratch) -> PathBuf {
    let (base, server) = fake_openai().await;
    let text_file = format!(
        r#"
name = "llm-sessions"
seed = 4
sessions = 2
[scenario]
generate = {{ seed = 42, participants = 6 }}
[arms]
model = "openai:fake-model@{base}"
rules = "rule:linear"
[[runs]]
name = "split"
count = 1
split = ["model", "rules"]
[market]
max_rounds = 4
[llm]
max_spend_usd = "1.00"
"#
    );
    let file = dir.path("llm.toml");
    std::fs::write(&file, text_file).unwrap();
    let file = file.display().to_string();
    let out = tokio::task::block_in_place(|| run_into(dir, &file, "out"));
    server.abort();
    let _ = server.await;
    out
}

fn replay(dir: &Scratch, out: &Path) -> std::process::Output {
    run_within(
        &dir.0,
        &[
            "experiment",
            "replay",
            &out.display().to_string(),
            "split-01",
        ],
        Duration::from_secs(120),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_run_with_llm_notes_replays_identically_without_the_model() {
    let dir = Scratch::new("sessions-llm");
    let out = llm_sessions_run(&dir).await;
    let rd = out.join("runs/split-01");
    let log = std::fs::read_to_string(rd.join("llm_calls.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notes: Vec<&Value> = records.iter().filter(|r| r["kind"] == "memory").collect();
    assert_eq!(notes.len(), 3, "each of the 3 model agents wrote a note");
    let limit = haggle_agents::llm_brain::MAX_SESSION_MEMORY_CHARS;
    for n in &notes {
        assert_eq!(n["session"], 1);
        let t = n["text"].as_str().unwrap();
        assert!(!t.is_empty() && t.chars().count() <= limit);
    }
    let memory: Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("memory.json")).unwrap()).unwrap();
    assert_eq!(memory["2"].as_object().unwrap().len(), 3, "{memory}");
    let agent = notes[0]["agent"].as_str().unwrap();
    assert_eq!(memory["2"][agent], notes[0]["text"]);
    // The agent's second prompt (session 2) carries its note; its first does not.
    let prompts: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "prompt" && r["agent"] == agent)
        .map(|r| r["system_prompt"].as_str().unwrap())
        .collect();
    assert_eq!(prompts.len(), 2);
    assert!(!prompts[0].contains("notes from the previous session"));
    assert!(prompts[1].contains("notes from the previous session"));
    assert!(prompts[1].contains(notes[0]["text"].as_str().unwrap()));

    let calls = records.iter().filter(|r| r["kind"] == "call").count();
    let o = replay(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    for line in [
        format!("llm calls              identical    {calls} replayed"),
        "memory.json            identical".to_string(),
        "sessions.json          identical".to_string(),
        "llm_calls.jsonl        identical".to_string(),
        "events.jsonl           identical".to_string(),
    ] {
        assert!(stdout.contains(&line), "{line}: {stdout}");
    }
    assert!(stdout.trim_end().ends_with("identical"), "{stdout}");
}

/// The note comes from the call log in a replay, not from anywhere else: a changed note reply
/// in the log makes the replay's notes, and the next session's requests, differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_note_in_the_call_log_makes_the_replay_differ() {
    let dir = Scratch::new("sessions-llm-tamper");
    let out = llm_sessions_run(&dir).await;
    let path = out.join("runs/split-01/llm_calls.jsonl");
    let mut tampered = 0;
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let note_call = v["kind"] == "call" && v["request"].get("tools").is_none();
            if let Some(c) = v
                .pointer_mut("/response/choices/0/message/content")
                .filter(|_| note_call && tampered == 0)
            {
                *c = Value::String("Notes: never sell below the asking price.".into());
                tampered += 1;
            }
            v.to_string()
        })
        .collect();
    assert_eq!(tampered, 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = replay(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(!o.status.success(), "{stdout}");
    assert!(
        stdout.contains("memory.json            DIFFERS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("llm calls              DIFFERS"),
        "{stdout}"
    );
}

/// A scenario file's own lists for later sessions (`[[sessions]]`): each session is measured
/// against its own list; asking for more sessions than it lists is refused naming `sessions`.
#[test]
fn a_scenario_files_session_lists_are_traded_and_measured_one_by_one() {
    let dir = Scratch::new("sessions-file");
    std::fs::write(
        dir.path("two.toml"),
        r#"
name = "two colleagues"
[[profiles]]
name = "Ada"
budget = 10000
[[profiles.sell]]
item_id = "bike"
item_type = "road bike"
title = "Road bike"
category = "bikes"
asking_price = 8000
floor_price = 6000
[[profiles]]
name = "Ben"
budget = 10000
[[profiles.want]]
want_id = "bike"
item_type = "road bike"
description = "A road bike"
category = "bikes"
max_price = 9000

[[sessions]]
[[sessions.profiles]]
name = "Ben"
budget = 10000
[[sessions.profiles.sell]]
item_id = "kettle"
item_type = "kettle"
title = "Kettle"
category = "kitchen"
asking_price = 2000
floor_price = 1500
[[sessions.profiles]]
name = "Ada"
budget = 10000
[[sessions.profiles.want]]
want_id = "kettle"
item_type = "kettle"
description = "A kettle"
category = "kitchen"
max_price = 2500
"#,
    )
    .unwrap();
    let exp = |sessions: u32| {
        format!(
            r#"
name = "file-sessions"
seed = 2
sessions = {sessions}
[scenario]
file = "two.toml"
[arms]
a = "rule:linear"
[[runs]]
name = "all"
arm = "a"
[market]
max_rounds = 40
"#
        )
    };
    std::fs::write(dir.path("x.toml"), exp(2)).unwrap();
    let out = run_into(&dir, &dir.path("x.toml").display().to_string(), "out");
    let s = sessions_of(&out, "all-01");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["max_surplus"], 3000, "the bike: 9000 − 6000");
    assert_eq!(s[1]["max_surplus"], 1000, "the kettle: 2500 − 1500");
    let deals = std::fs::read_to_string(out.join("runs/all-01/deals.csv")).unwrap();
    assert!(deals.contains("s2-kettle"), "{deals}");
    std::fs::write(dir.path("y.toml"), exp(3)).unwrap();
    let o = run(
        &dir.0,
        &[
            "experiment",
            "run",
            &dir.path("y.toml").display().to_string(),
        ],
    );
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(
        e.contains("sessions: the scenario lists 2 session(s)"),
        "{e}"
    );
}
