//! `haggle experiment` as a researcher runs it: an interrupted experiment resumes without
//! redoing finished runs; a replayed run is identical (and a tampered record is caught), also
//! with a language model answered from its recorded calls (and a changed reply is caught); the
//! report and its files; bad experiment files name the field; calibration on real markets — A/A
//! splits give p < 0.05 about 5% of the time, and Boulware against Conceder at the demo's size
//! is detected in (nearly) every seed.

mod support;

use haggle_lab::analysis::{RunData, compare_arms};
use haggle_lab::experiment::{Design, RunPlan, mix};
use haggle_lab::stats::Resampling;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

fn experiment_file(
    dir: &Scratch,
    name: &str,
    participants: usize,
    count: u32,
    arms: &str,
    seed: u64,
) -> String {
    let text = format!(
        r#"
name = "{name}"
seed = {seed}
[scenario]
generate = {{ seed = 42, participants = {participants} }}
[arms]
{arms}
[[runs]]
name = "split"
count = {count}
split = ["a", "b"]
[execution]
concurrency = 2
"#
    );
    let path = dir.path(&format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn run_experiment(dir: &Scratch, file: &str, out: &str, extra: &[&str], limit: u64) -> String {
    let out_dir = dir.path(out).display().to_string();
    let mut args = vec!["experiment", "run", file, "--out", out_dir.as_str()];
    args.extend_from_slice(extra);
    let o = run_within(&dir.0, &args, Duration::from_secs(limit));
    assert!(
        o.status.success(),
        "haggle {args:?} failed:\n{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr) + &text(&o.stdout)
}

fn journal(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["run"].as_str().unwrap().to_string(),
                v["event"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(j: &[(String, String)], run: &str, event: &str) -> usize {
    j.iter().filter(|(r, e)| r == run && e == event).count()
}

const LINEAR: &str = "a = \"rule:linear\"\nb = \"rule:linear\"";

#[test]
fn an_interrupted_experiment_resumes_without_redoing_finished_runs() {
    let dir = Scratch::new("exp-resume");
    let file = experiment_file(&dir, "resume", 10, 3, LINEAR, 5);
    let out = dir.path("out");
    // Interrupted after one run.
    let log = run_experiment(&dir, &file, "out", &["--max-runs", "1"], 60);
    assert!(log.contains("not started yet"), "{log}");
    let records: Vec<bool> = ["split-01", "split-02", "split-03"]
        .iter()
        .map(|r| out.join("runs").join(r).join("record.json").exists())
        .collect();
    assert_eq!(records, [true, false, false], "ids: {:?}", out.join("runs"));
    let first = std::fs::read(out.join("runs/split-01/record.json")).unwrap();
    let first_mtime = std::fs::metadata(out.join("runs/split-01/record.json"))
        .unwrap()
        .modified()
        .unwrap();
    // A crash in the middle of a run leaves a folder without a record: it is redone.
    std::fs::create_dir_all(out.join("runs/split-02")).unwrap();
    std::fs::write(out.join("runs/split-02/run.json"), "half-written").unwrap();

    let log = run_experiment(&dir, &file, "out", &[], 120);
    assert!(log.contains("split-01: finished earlier, kept"), "{log}");
    let j = journal(&out);
    assert_eq!(count(&j, "split-01", "started"), 1, "{j:?}");
    assert_eq!(count(&j, "split-01", "kept"), 1);
    assert_eq!(count(&j, "split-02", "started"), 1);
    assert_eq!(count(&j, "split-03", "finished"), 1);
    assert_eq!(
        std::fs::read(out.join("runs/split-01/record.json")).unwrap(),
        first
    );
    assert_eq!(
        std::fs::metadata(out.join("runs/split-01/record.json"))
            .unwrap()
            .modified()
            .unwrap(),
        first_mtime,
        "the finished run's record was not rewritten"
    );
    let run2: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("runs/split-02/run.json")).unwrap())
            .unwrap();
    assert_eq!(
        run2["plan"]["id"], "split-02",
        "the half-written run was redone"
    );
    // A third invocation does nothing but keep all three.
    let log = run_experiment(&dir, &file, "out", &[], 60);
    assert_eq!(log.matches("finished earlier, kept").count(), 3, "{log}");
    // Another experiment is refused in the same folder.
    let other = experiment_file(&dir, "resume", 10, 3, LINEAR, 6);
    let out_s = out.display().to_string();
    let o = run(&dir.0, &["experiment", "run", &other, "--out", &out_s]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("different experiment"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_replayed_run_is_identical_and_a_tampered_record_is_caught() {
    let dir = Scratch::new("exp-replay");
    let file = experiment_file(&dir, "replay", 10, 1, LINEAR, 9);
    run_experiment(&dir, &file, "out", &[], 60);
    let out = dir.path("out");
    let out_s = out.display().to_string();
    let stored = std::fs::read_to_string(out.join("runs/split-01/record.json")).unwrap();
    let record: Value = serde_json::from_str(&stored).unwrap();
    assert!(record["events"].as_u64().unwrap() > 100);
    assert_eq!(record["chain_head"].as_str().unwrap().len(), 64);

    let o = run_within(
        &dir.0,
        &["experiment", "replay", &out_s, "split-01"],
        Duration::from_secs(60),
    );
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains("event chain head       identical"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("identical"), "{stdout}");

    // Change one price in the stored record: the replay must notice.
    let tampered = stored.replacen("\"price\": ", "\"price\": 1", 1);
    std::fs::write(out.join("runs/split-01/record.json"), tampered).unwrap();
    let o = run_within(
        &dir.0,
        &["experiment", "replay", &out_s, "split-01"],
        Duration::from_secs(60),
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stdout).contains("record.json            DIFFERS"),
        "{}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("differs from the stored run"));
    let o = run(&dir.0, &["experiment", "replay", &out_s, "split-09"]);
    assert!(
        text(&o.stderr).contains("has not finished"),
        "{}",
        text(&o.stderr)
    );
}

/// One run of a 50/50 split between a language model (the fake OpenAI-compatible server) and a
/// rule brain; returns the experiment folder once the server is shut down.
async fn finished_llm_run(dir: &Scratch) -> std::path::PathBuf {
    let (base, server) = fake_openai().await;
    let text = format!(
        r#"
name = "llm-replay"
seed = 4
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
max_rounds = 6
[llm]
max_spend_usd = "1.00"
"#
    );
    let file = dir.path("llm.toml");
    std::fs::write(&file, text).unwrap();
    let file = file.display().to_string();
    // The binary runs while this runtime's other worker serves the fake model.
    tokio::task::block_in_place(|| run_experiment(dir, &file, "out", &[], 120));
    server.abort();
    let _ = server.await;
    let addr = base.trim_start_matches("http://").trim_end_matches("/v1");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the fake model is gone before the replay"
    );
    dir.path("out")
}

fn replay_run(dir: &Scratch, out: &Path) -> std::process::Output {
    let out_s = out.display().to_string();
    run_within(
        &dir.0,
        &["experiment", "replay", &out_s, "split-01"],
        Duration::from_secs(60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_language_model_replays_identically_from_its_recorded_calls() {
    let dir = Scratch::new("exp-llm-replay");
    let out = finished_llm_run(&dir).await;
    let log = std::fs::read_to_string(out.join("runs/split-01/llm_calls.jsonl")).unwrap();
    let calls = log
        .lines()
        .filter(|l| l.contains(r#""kind":"call""#))
        .count();
    assert!(calls >= 6, "the model was called: {log}");

    let o = replay_run(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains(&format!(
            "llm calls              identical    {calls} replayed"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("llm_calls.jsonl        identical"),
        "{stdout}"
    );
    assert!(
        stdout.contains("events.jsonl           identical"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("identical"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_reply_in_the_call_log_makes_the_replay_differ() {
    let dir = Scratch::new("exp-llm-tamper");
    let out = finished_llm_run(&dir).await;
    let path = out.join("runs/split-01/llm_calls.jsonl");
    // The first reply's second tool call gets other arguments; the model's next request in
    // that turn carries them back, so the replayed brain asks something never recorded.
    let mut tampered = false;
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let args = v.pointer_mut("/response/choices/0/message/tool_calls/1/function/arguments");
            if let Some(args) = args.filter(|_| !tampered) {
                *args = Value::String(r#"{"title": "tampered"}"#.into());
                tampered = true;
            }
            v.to_string()
        })
        .collect();
    assert!(tampered);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let o = replay_run(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(!o.status.success(), "{stdout}");
    assert!(
        stdout.contains("llm calls              DIFFERS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("call 2: the request differs from the recorded one"),
        "the divergence names the agent and the call: {stdout}"
    );
    assert!(text(&o.stderr).contains("differs from the stored run"));
}

#[test]
fn each_run_stores_config_seeds_prompts_events_and_an_llm_call_log() {
    let dir = Scratch::new("exp-store");
    let file = experiment_file(
        &dir,
        "store",
        8,
        1,
        "a = \"rule:boulware\"\nb = \"rule:conceder\"",
        3,
    );
    run_experiment(&dir, &file, "out", &[], 60);
    let run = dir.path("out/runs/split-01");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let people = cfg["participants"].as_array().unwrap();
    assert_eq!(people.len(), 8);
    assert_eq!(
        people.iter().filter(|p| p["arm"] == "a").count(),
        4,
        "a balanced split"
    );
    assert!(
        people
            .iter()
            .all(|p| (p["arm"] == "a") == (p["brain"] == "rule:boulware"))
    );
    assert!(cfg["plan"]["seed"].as_u64().is_some());
    assert_eq!(cfg["prompt_template"], "haggle-agent-v1");
    let prompts: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("prompts.json")).unwrap()).unwrap();
    let p = prompts.as_object().unwrap().values().next().unwrap();
    assert!(
        p["system_prompt"]
            .as_str()
            .unwrap()
            .contains("Lowest acceptable price")
    );
    assert_eq!(
        std::fs::read_to_string(run.join("llm_calls.jsonl")).unwrap(),
        ""
    );
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let last: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("record.json")).unwrap()).unwrap();
    assert_eq!(last["hash"], record["chain_head"]);
    // The market itself verifies with the operator's command.
    let db = format!("sqlite://{}", run.join("haggle.db").display());
    run_ok(&dir.0, &["ledger", "verify", "--database", &db]);
}

#[test]
fn bad_experiment_files_are_refused_naming_the_field() {
    let dir = Scratch::new("exp-bad");
    let file = experiment_file(
        &dir,
        "bad",
        8,
        1,
        "a = \"rule:linear\"\nb = \"rule:psychic\"",
        1,
    );
    let o = run(&dir.0, &["experiment", "run", &file]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("arms.b") && err.contains("rule:psychic"),
        "{err}"
    );
    let file = experiment_file(&dir, "bad2", 8, 0, LINEAR, 1);
    let err = text(&run(&dir.0, &["experiment", "run", &file]).stderr);
    assert!(err.contains("runs[0].count"), "{err}");
}

/// The runs of an experiment folder, each with its participants' arms (scenario order).
fn stored_runs(out: &Path) -> Vec<(RunData, Vec<String>)> {
    let mut runs = Vec::new();
    let mut ids: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ids.sort();
    for dir in ids {
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        let results: haggle_lab::report::Results =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        let plan: RunPlan = serde_json::from_value(cfg["plan"].clone()).unwrap();
        let people = cfg["participants"].as_array().unwrap();
        let names: Vec<String> = people
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let arms = people
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["arm"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        runs.push((
            RunData {
                plan,
                arms,
                metrics: results.metrics,
                llm: BTreeMap::new(),
                first_movers: BTreeMap::new(),
                sessions: Vec::new(),
            },
            names,
        ));
    }
    runs
}

#[test]
fn aa_splits_of_real_markets_are_significant_about_five_percent_of_the_time() {
    // Six real A/A markets (12 participants, both arms rule:linear). Under A/A the arm labels
    // change nothing in a market (each brain's seed comes from the run seed and the
    // participant, not the label), so every fresh seeded split of these same markets is
    // another A/A experiment. 300 such experiments, 6 runs each, seller surplus per
    // participant, permutation test within runs: the share with p < 0.05 must be near 5%.
    // Binomial(300, 0.05): mean 15, sd 3.8; accept 5..=27 (about ±3 sd).
    let dir = Scratch::new("exp-aa");
    let file = experiment_file(&dir, "aa", 12, 6, LINEAR, 11);
    let t = Instant::now();
    run_experiment(&dir, &file, "out", &[], 120);
    eprintln!(
        "6 A/A runs of 12 participants: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let runs = stored_runs(&dir.path("out"));
    assert_eq!(runs.len(), 6);
    let r = Resampling {
        bootstrap: 100,
        permutations: 199,
        ..Resampling::default()
    };
    let mut significant = 0;
    for e in 0..300u64 {
        let mut values: Vec<(usize, String, f64)> = Vec::new();
        for (k, (run, names)) in runs.iter().enumerate() {
            let split = RunPlan {
                seed: mix(1000 + e, k as u64),
                design: Design::Split(vec!["a".into(), "b".into()]),
                ..run.plan.clone()
            };
            for (name, arm) in names.iter().zip(split.assignment(names).unwrap()) {
                let p = &run.metrics.participants[name];
                values.push((k, arm, p.seller_surplus as f64));
            }
        }
        let v: Vec<(usize, &str, f64)> = values
            .iter()
            .map(|(k, a, x)| (*k, a.as_str(), *x))
            .collect();
        let (design, _, c) = compare_arms(&v, "a", "b", &Resampling { seed: e, ..r });
        assert_eq!(design, "within runs");
        significant += usize::from(c.test.unwrap().p_value < 0.05);
    }
    eprintln!("A/A on real markets: {significant} of 300 with p < 0.05");
    assert!((5..=27).contains(&significant), "{significant} of 300");
}

#[test]
fn boulware_against_conceder_at_the_demos_size_is_detected_in_every_seed() {
    // The demo's market (69 participants, $100 budgets), four runs with their own seeds and
    // splits. Each run alone is one seed's experiment: Boulware sellers must keep a larger
    // share σ of the surplus than Conceder sellers with p < 0.05 in at least three of the four
    // (they do in all four as measured); pooled, every measure of the effect agrees.
    let dir = Scratch::new("exp-bc");
    let file = experiment_file(
        &dir,
        "bc",
        69,
        4,
        "a = \"rule:boulware\"\nb = \"rule:conceder\"",
        1,
    );
    let t = Instant::now();
    run_experiment(&dir, &file, "out", &[], 600);
    eprintln!(
        "4 runs of 69 participants: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = dir.path("out");
    let runs = stored_runs(&out);
    let arms: BTreeMap<String, String> = [("a", "rule:boulware"), ("b", "rule:conceder")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let r = Resampling::default();
    let mut detected = 0;
    for (run, _) in &runs {
        let a = haggle_lab::analysis::analyse("bc", &arms, std::slice::from_ref(run), &r, 10);
        let c = a
            .comparisons
            .iter()
            .find(|c| c.outcome == "seller_share")
            .unwrap();
        let p = c.comparison.test.unwrap().p_value;
        eprintln!(
            "{}: σ difference {:.3}, p {p:.4} (n {} / {})",
            run.plan.id,
            c.comparison.difference.unwrap(),
            c.comparison.n_first,
            c.comparison.n_second
        );
        detected += usize::from(p < 0.05 && c.comparison.difference.unwrap() > 0.0);
    }
    assert!(detected >= 3, "detected in {detected} of 4 seeds");
    // The whole experiment's analysis, as the report shows it.
    let a: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let share = a["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["outcome"] == "seller_share")
        .unwrap();
    assert!(
        share["comparison"]["ci95"][0].as_f64().unwrap() > 0.0,
        "{share}"
    );
    let sellers = &a["same_item"].as_array().unwrap()[0];
    assert_eq!(sellers["side"], "seller");
    assert!(sellers["pairs"].as_array().unwrap().len() >= 10);
    assert!(sellers["paired"]["mean_difference"].as_f64().unwrap() > 0.0);
    assert!(sellers["paired"]["test"]["p_value"].as_f64().unwrap() < 0.05);
    let reg = &a["regression"];
    assert_eq!(reg["regressors"][0], "seller arm b");
    assert!(
        reg["result"]["coefficients"][0].as_f64().unwrap() < 0.0,
        "{reg}"
    );
    // The report: charts and tables, self-contained, CSVs beside it.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Same-item comparisons"));
    assert!(html.contains("Price regression with item fixed effects"));
    let external = html.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !external.contains("http://")
            && !external.contains("https://")
            && !external.contains("src=")
    );
    for (f, head) in [
        ("runs.csv", "run,group,seed"),
        ("arms.csv", "arm,brain,runs"),
        ("comparisons.csv", "kind,outcome,first"),
        ("same_item.csv", "side,first,second,item_id"),
        ("participants_by_arm.csv", "participant,arm,runs"),
    ] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(
            text.starts_with(head),
            "{f}: {}",
            text.lines().next().unwrap_or("")
        );
    }
    // Two experiments side by side.
    let out_s = out.display().to_string();
    let cmp = dir.path("cmp").display().to_string();
    run_ok(
        &dir.0,
        &["experiment", "compare", &out_s, &out_s, "--out", &cmp],
    );
    let html = std::fs::read_to_string(dir.path("cmp").join("compare.html")).unwrap();
    assert!(
        html.matches("<td class=\"t\">bc</td>").count() >= 2,
        "{html}"
    );
}

/// A run with `arm` as one arm (a 50/50 split with a rule brain), made by `haggle` with `env`;
/// returns the experiment folder. The model server must be gone before a replay.
fn finished_run_with(dir: &Scratch, arm: &str, env: &[(&str, &str)]) -> std::path::PathBuf {
    let file = dir.path("llm.toml");
    std::fs::write(
        &file,
        format!(
            r#"
name = "llm-replay"
seed = 4
[scenario]
generate = {{ seed = 42, participants = 6 }}
[arms]
model = "{arm}"
rules = "rule:linear"
[[runs]]
name = "split"
count = 1
split = ["model", "rules"]
[market]
max_rounds = 6
[llm]
max_spend_usd = "1.00"
"#
        ),
    )
    .unwrap();
    let out = dir.path("out");
    let o = haggle(&dir.0)
        .envs(env.iter().copied())
        .args(["experiment", "run", &file.display().to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    out
}

/// A replay of `out` says every part is identical, with `calls` model calls replayed.
fn replays_identically(dir: &Scratch, out: &Path) {
    let log = std::fs::read_to_string(out.join("runs/split-01/llm_calls.jsonl")).unwrap();
    let calls = log
        .lines()
        .filter(|l| l.contains(r#""kind":"call""#))
        .count();
    assert!(calls >= 3, "the model was called: {log}");
    let o = replay_run(dir, out);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains(&format!(
            "llm calls              identical    {calls} replayed"
        )),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("identical"), "{stdout}");
}

/// Issue 25: a run on Anthropic's Messages API replays from its recorded calls (no network, no
/// key), read back by the same parser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_an_anthropic_model_replays_identically() {
    let app = axum::Router::new().route(
        "/v1/messages",
        axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            let first = body["messages"].as_array().map_or(0, Vec::len) == 1;
            let content = if first {
                serde_json::json!([
                    {"type": "tool_use", "id": "toolu_a", "name": "my_balance", "input": {}},
                    {"type": "tool_use", "id": "toolu_b", "name": "post_listing", "input": {"title": "x"}},
                ])
            } else {
                serde_json::json!([{"type": "text", "text": "Nothing more this turn."}])
            };
            axum::Json(serde_json::json!({
                "id": "msg_1", "type": "message", "role": "assistant", "content": content,
                "stop_reason": if first { "tool_use" } else { "end_turn" },
                "usage": {"input_tokens": 1000, "output_tokens": 20},
            }))
        }),
    );
    let (base, server) = haggle_testkit::serve_router(app).await;
    let dir = Scratch::new("exp-anthropic-replay");
    let out = tokio::task::block_in_place(|| {
        finished_run_with(
            &dir,
            &format!("anthropic:claude-fake@{base}"),
            &[("ANTHROPIC_API_KEY", "sk-ant-test")],
        )
    });
    server.abort();
    let _ = server.await;
    let log = std::fs::read_to_string(out.join("runs/split-01/llm_calls.jsonl")).unwrap();
    assert!(log.contains("tool_use"), "{log}");
    replays_identically(&dir, &out);
}

/// Issue 25: JSON mode switches to the `json_schema` form once the server refuses a schema; the
/// replay makes the same switch at the same call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_mode_run_that_switched_form_replays_identically() {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            if body["response_format"]["type"] == "json_object" {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": {"message": "Unrecognized request argument: schema"}})),
                );
            }
            let first = body["messages"].as_array().map_or(0, Vec::len) == 2;
            let content = if first {
                r#"{"action": "post_listing", "arguments": {"title": "x"}}"#
            } else {
                r#"{"action": "reply", "arguments": {"text": "Nothing more this turn."}}"#
            };
            (
                axum::http::StatusCode::OK,
                axum::Json(serde_json::json!({
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 20},
                })),
            )
        }),
    );
    let (base, server) = haggle_testkit::serve_router(app).await;
    let base = format!("{base}/v1");
    let dir = Scratch::new("exp-json-switch-replay");
    let out = tokio::task::block_in_place(|| {
        finished_run_with(&dir, &format!("openai-json:fake-model@{base}"), &[])
    });
    server.abort();
    let _ = server.await;
    let log = std::fs::read_to_string(out.join("runs/split-01/llm_calls.jsonl")).unwrap();
    assert!(
        log.contains(r#""type":"json_schema""#),
        "the client switched form: {log}"
    );
    replays_identically(&dir, &out);
}

#[test]
fn shards_run_on_their_own_merge_into_the_same_analysis_as_one_run() {
    let dir = Scratch::new("exp-shard");
    let file = experiment_file(&dir, "sharded", 10, 5, LINEAR, 9);
    run_experiment(&dir, &file, "whole", &[], 240);
    // Three machines sharing the folder: shard 1 takes runs 1 and 4, shard 2 runs 2 and 5,
    // shard 3 run 3; none writes the report.
    for (shard, runs) in [
        ("1/3", ["split-01", "split-04"].as_slice()),
        ("2/3", &["split-02", "split-05"]),
        ("3/3", &["split-03"]),
    ] {
        let log = run_experiment(&dir, &file, "shards", &["--shard", shard], 240);
        assert!(
            log.contains(&format!(
                "shard {shard}: {} of the experiment's runs",
                runs.len()
            )),
            "{log}"
        );
        assert!(log.contains("once every shard has finished"), "{log}");
        for r in runs {
            assert!(log.contains(&format!("{r}: started")), "{shard}: {log}");
        }
    }
    let shards = dir.path("shards");
    assert!(
        !shards.join("analysis.json").exists(),
        "a shard wrote the report"
    );
    assert!(shards.join("journal-shard-2-of-3.jsonl").exists());
    let o = run(
        &dir.0,
        &["experiment", "report", &shards.display().to_string()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    for f in ["analysis.json", "arms.csv", "runs.csv", "comparisons.csv"] {
        let whole = std::fs::read_to_string(dir.path("whole").join(f)).unwrap();
        let merged = std::fs::read_to_string(shards.join(f)).unwrap();
        assert!(
            whole == merged,
            "{f} differs between the whole run and the merged shards"
        );
    }
    for bad in ["0/3", "4/3", "3", "1/0", "a/b", "1/10001"] {
        let o = run(&dir.0, &["experiment", "run", &file, "--shard", bad]);
        assert!(!o.status.success(), "{bad}");
        assert!(
            text(&o.stderr).contains("expected I/N"),
            "{bad}: {}",
            text(&o.stderr)
        );
    }
}

#[test]
fn calibrate_reports_false_positives_and_coverage_and_flags_a_known_effect() {
    let dir = Scratch::new("exp-calibrate");
    let file = dir.path("bvc.toml");
    std::fs::write(
        &file,
        r#"
name = "bvc"
seed = 3
[scenario]
generate = { seed = 42, participants = 24, budget = 10000 }
[arms]
boulware = "rule:boulware"
conceder = "rule:conceder"
[[runs]]
name = "split"
count = 2
split = ["boulware", "conceder"]
"#,
    )
    .unwrap();
    let out = dir.path("cal");
    let (f, o) = (file.display().to_string(), out.display().to_string());
    let args = [
        "experiment",
        "calibrate",
        &f,
        "--seeds",
        "2",
        "--effect",
        "--out",
        &o,
    ];
    let run = run_within(&dir.0, &args, Duration::from_secs(600));
    let printed = text(&run.stdout);
    assert!(run.status.success(), "{printed}\n{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("every arm rule:boulware"),
        "the A/A version"
    );
    assert!(
        printed.contains("A/A over 2 seeds: false positives (nominal 5%)"),
        "{printed}"
    );
    assert!(printed.contains("as written over 2 seeds"), "{printed}");
    for outcome in ["seller_surplus", "buyer_share", "deals"] {
        assert!(printed.contains(outcome), "{outcome}: {printed}");
    }
    let cal: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("calibration.json")).unwrap())
            .unwrap();
    let tally = |variant: usize, outcome: &str| -> Value {
        cal[variant]["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o[0][1] == outcome)
            .unwrap()[1]
            .clone()
    };
    // Two A/A seeds: every outcome compared twice.
    assert_eq!(tally(0, "surplus")["n"], 2);
    // Boulware sellers keep more of the surplus than Conceder sellers: found in the experiment
    // as written, at this size in both seeds.
    assert_eq!(tally(1, "seller_share")["rejected"], 2, "{cal}");
    // Seeds' runs are removed once analysed unless asked to keep them.
    assert!(!out.join("aa").join("seed-0001").exists());
}

#[test]
fn run_groups_may_change_the_market_rules_and_are_compared_on_market_outcomes() {
    let dir = Scratch::new("exp-rules");
    let file = dir.path("rules.toml");
    let file_text = r#"
name = "rules"
seed = 4
[scenario]
generate = { seed = 42, participants = 10 }
[arms]
a = "rule:linear"
[[runs]]
name = "free"
count = 2
arm = "a"
[[runs]]
name = "strict"
count = 2
arm = "a"
rules = { strict_alternation = true, max_offers_per_thread = 4 }
"#;
    std::fs::write(&file, file_text).unwrap();
    let f = file.display().to_string();
    run_experiment(&dir, &f, "out", &[], 240);
    let out = dir.path("out");
    let read = |p: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(p)).unwrap()).unwrap()
    };
    let plan = read("plan.json");
    assert_eq!(
        plan[0]["rules"],
        Value::Null,
        "the free group changes nothing"
    );
    assert_eq!(plan[2]["rules"]["strict_alternation"], true);
    let free = read("runs/free-01/run.json");
    let strict = read("runs/strict-01/run.json");
    assert_eq!(free["rules"]["strict_alternation"], false);
    assert_eq!(
        free["rules"]["max_offers_per_thread"], 10,
        "the simulation's own rules"
    );
    assert_eq!(strict["rules"]["strict_alternation"], true);
    assert_eq!(strict["rules"]["max_offers_per_thread"], 4);
    assert_eq!(
        strict["rules"]["offer_ttl_ms"],
        free["rules"]["offer_ttl_ms"]
    );
    // The markets ran under their rules: the market's creation event says so.
    let created = |run: &str| -> Value {
        let events = std::fs::read_to_string(out.join(format!("runs/{run}/events.jsonl"))).unwrap();
        serde_json::from_str(events.lines().next().unwrap()).unwrap()
    };
    let rules_of = |run: &str| created(run).to_string();
    assert!(
        rules_of("strict-02").contains("\"strict_alternation\":true"),
        "{}",
        rules_of("strict-02")
    );
    assert!(rules_of("free-02").contains("\"strict_alternation\":false"));
    let analysis = read("analysis.json");
    let outcomes: Vec<&str> = analysis["group_comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    for o in [
        "efficiency",
        "deals",
        "mean_price",
        "mean_seller_share",
        "time_to_deal_h",
    ] {
        assert!(outcomes.contains(&o), "{o}: {outcomes:?}");
    }
    // A rule that does not exist, or a value out of range, names the group's field.
    for (bad, said) in [
        (
            "strict_alternation = true, max_offers = 4",
            "unknown field `max_offers`",
        ),
        ("offer_ttl_ms = 0", "offer_ttl_ms"),
    ] {
        let broken = file_text.replace("strict_alternation = true, max_offers_per_thread = 4", bad);
        std::fs::write(&file, broken).unwrap();
        let o = run(&dir.0, &["experiment", "run", &f, "--out", "other"]);
        let err = text(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains("runs[1].rules") && err.contains(said), "{err}");
    }
}
