//! LLM markets at full speed (issue 16): the turns of one market's LLM agents overlap at the
//! model server (by the server's own count); a concurrent run replays identically from its call
//! log in round and event mode, and a changed reply is a divergence naming agent and call; a
//! model that fails, stalls or answers 500s concurrently ends only the affected turns; the token
//! budget holds per agent with many calls in flight. The model is the stand-in of `bench llm`.

#[path = "../src/standin.rs"]
#[allow(dead_code)]
mod standin;
mod support;

use serde_json::Value;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

fn demo(dir: &Path, brains: &str, rounds: &str, extra: &[&str]) -> std::process::Output {
    let out = dir.join("out").display().to_string();
    let mut args = vec![
        "demo",
        "--quiet",
        "--participants",
        "8",
        "--rounds",
        rounds,
        "--brains",
        brains,
        "--out",
        out.as_str(),
    ];
    args.extend_from_slice(extra);
    run_within(dir, &args, Duration::from_secs(120))
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_turns_of_one_market_overlap_at_the_model_server() {
    let server = standin::start(standin::Behaviour {
        latency: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = Scratch::new("llm-overlap");
    let brains = format!("openai:stand-in@{}", server.base);
    let o = tokio::task::block_in_place(|| demo(&dir.0, &brains, "4", &["--llm-concurrency", "6"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let peak = server.counts.peak_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=6).contains(&peak),
        "calls overlapped, at most 6 at once: {peak}"
    );
    let log = records(&dir.path("out").join("llm_calls.jsonl"));
    let calls = log.iter().filter(|r| r["kind"] == "call").count() as u64;
    assert_eq!(calls, server.counts.calls.load(Ordering::SeqCst));
    assert!(
        log.iter().any(|r| r["kind"] == "market"),
        "the order in which agents took the market is recorded"
    );
    let conduct: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path("out").join("conduct.json")).unwrap(),
    )
    .unwrap();
    let f = &conduct["first_movers"];
    assert!(f["rounds_with_actions"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["by_brain"][&brains]["share_of_agents"], 1.0, "{f}");
    assert_eq!(f["by_brain"][&brains]["share_first"], 1.0, "{f}");
    assert!(text(&o.stdout).contains("first to act in a round"));
}

/// A finished experiment run of stand-in agents beside rule agents, in `mode`, with replies
/// arriving in a varied order; the stand-in is gone when this returns.
async fn concurrent_run(dir: &Scratch, mode: &str) -> std::path::PathBuf {
    let server = standin::start(standin::Behaviour {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let file_text = format!(
        r#"
name = "concurrent"
seed = 9
[scenario]
generate = {{ seed = 42, participants = 10 }}
[arms]
model = "openai:stand-in@{}"
rules = "rule:linear"
[[runs]]
name = "split"
count = 1
split = ["model", "rules"]
[market]
mode = "{mode}"
max_rounds = 8
[llm]
concurrency = 8
max_spend_usd = "1.00"
"#,
        server.base
    );
    let file = dir.path("x.toml");
    std::fs::write(&file, file_text).unwrap();
    let out = dir.path("out").display().to_string();
    let o = tokio::task::block_in_place(|| {
        run_within(
            &dir.0,
            &[
                "experiment",
                "run",
                &file.display().to_string(),
                "--out",
                &out,
            ],
            Duration::from_secs(180),
        )
    });
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        server.counts.peak_in_flight.load(Ordering::SeqCst) > 1,
        "the run's model calls overlapped"
    );
    drop(server);
    dir.path("out")
}

fn replay(dir: &Scratch, out: &Path) -> std::process::Output {
    let out = out.display().to_string();
    run_within(
        &dir.0,
        &["experiment", "replay", &out, "split-01"],
        Duration::from_secs(120),
    )
}

async fn replays_identically(mode: &str) {
    let dir = Scratch::new(&format!("llm-replay-{mode}"));
    let out = concurrent_run(&dir, mode).await;
    let log = records(&out.join("runs/split-01/llm_calls.jsonl"));
    let calls = log.iter().filter(|r| r["kind"] == "call").count();
    let writes = log.iter().filter(|r| r["kind"] == "market").count();
    assert!(
        calls >= 10 && writes >= 10,
        "{calls} calls, {writes} market turns"
    );
    let o = replay(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    for row in [
        "event chain head       identical",
        "results.json           identical",
        "events.jsonl           identical",
        "llm_calls.jsonl        identical",
    ] {
        assert!(stdout.contains(row), "{row}: {stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "llm calls              identical    {calls} replayed"
        )),
        "{stdout}"
    );
}

/// Fairness in the experiment's report: per arm, the rounds in which the market applied one of
/// its actions first, beside the arm's share of the agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_experiment_report_shows_how_often_each_arm_acted_first() {
    let dir = Scratch::new("llm-first-movers");
    let out = concurrent_run(&dir, "rounds").await;
    let analysis: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis.json")).unwrap()).unwrap();
    let arms = &analysis["arm_summaries"];
    let first = |arm: &str| arms[arm]["first_mover_rounds"].as_u64().unwrap();
    let rounds = arms["model"]["rounds_with_actions"].as_u64().unwrap();
    assert!(rounds > 0, "{arms}");
    assert_eq!(arms["rules"]["rounds_with_actions"].as_u64(), Some(rounds));
    assert_eq!(
        first("model") + first("rules"),
        rounds,
        "one first mover a round"
    );
    assert_eq!(arms["model"]["share_of_agents"].as_f64(), Some(0.5));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("first to act") && html.contains("% of rounds ("),
        "report.html"
    );
    let csv = std::fs::read_to_string(out.join("arms.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("first_mover_rounds,rounds_with_actions,share_of_agents")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_round_based_run_replays_identically() {
    replays_identically("rounds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_event_driven_run_replays_identically() {
    replays_identically("events").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_reply_of_a_concurrent_run_is_a_divergence_naming_agent_and_call() {
    let dir = Scratch::new("llm-replay-tamper");
    let out = concurrent_run(&dir, "rounds").await;
    let path = out.join("runs/split-01/llm_calls.jsonl");
    let mut tampered = None;
    let lines: Vec<String> = records(&path)
        .into_iter()
        .map(|mut v| {
            let agent = v["agent"].as_str().unwrap_or("").to_string();
            let args = v.pointer_mut("/response/choices/0/message/tool_calls/0/function/arguments");
            if let Some(args) = args.filter(|_| tampered.is_none()) {
                *args = Value::String(r#"{"q": "tampered"}"#.into());
                tampered = Some(agent);
            }
            v.to_string()
        })
        .collect();
    let agent = tampered.expect("a reply with a tool call");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let o = replay(&dir, &out);
    let stdout = text(&o.stdout);
    assert!(!o.status.success(), "{stdout}");
    assert!(
        stdout.contains("llm calls              DIFFERS"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("replay of agent {agent}, call ")),
        "the divergence names the agent and the call: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_failing_concurrently_ends_only_the_affected_turns() {
    // Every 4th call is a 500, every 7th stalls past the per-attempt timeout, every 9th loses
    // its connection mid-reply.
    let server = standin::start(standin::Behaviour {
        latency: Duration::from_millis(50),
        error_every: 4,
        slow_every: 7,
        slow: Duration::from_millis(2500),
        reset_every: 9,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = Scratch::new("llm-faults");
    let brains = format!("openai:stand-in@{}", server.base);
    let o = tokio::task::block_in_place(|| {
        demo(
            &dir.0,
            &brains,
            "8",
            &["--llm-timeout-s", "1", "--llm-attempts", "1"],
        )
    });
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(stdout.contains("ledger verified, 0 breaches"), "{stdout}");
    let out = dir.path("out");
    let log = records(&out.join("llm_calls.jsonl"));
    let errors: Vec<&str> = log
        .iter()
        .filter(|r| r["kind"] == "call")
        .filter_map(|r| r["error"].as_str())
        .collect();
    assert!(errors.iter().any(|e| e.contains("500")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("did not answer within")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| !e.contains("500") && !e.contains("did not answer within")),
        "a broken connection is an error of its own: {errors:?}"
    );
    let conduct: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("conduct.json")).unwrap()).unwrap();
    let agents = conduct["agents"].as_array().unwrap();
    let failed: u64 = agents
        .iter()
        .map(|a| a["llm"]["failed_turns"].as_u64().unwrap())
        .sum();
    let tool_calls: u64 = agents
        .iter()
        .map(|a| a["llm"]["tool_calls"].as_u64().unwrap())
        .sum();
    assert_eq!(
        failed as usize,
        errors.len(),
        "each failed call ended its own turn only"
    );
    assert!(tool_calls > 10, "the other turns went on: {conduct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_holds_per_agent_with_many_calls_in_flight() {
    let server = standin::start(standin::Behaviour {
        latency: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = Scratch::new("llm-budget");
    let brains = format!("openai:stand-in@{}", server.base);
    let budget = 12_000u64;
    let o = tokio::task::block_in_place(|| {
        demo(
            &dir.0,
            &brains,
            "8",
            &["--llm-token-budget", &budget.to_string()],
        )
    });
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(server.counts.peak_in_flight.load(Ordering::SeqCst) > 1);
    let out = dir.path("out");
    let log = records(&out.join("llm_calls.jsonl"));
    let largest = log
        .iter()
        .filter(|r| r["kind"] == "call")
        .map(|r| {
            r["usage"]["input_tokens"].as_u64().unwrap()
                + r["usage"]["output_tokens"].as_u64().unwrap()
        })
        .max()
        .unwrap();
    let conduct: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("conduct.json")).unwrap()).unwrap();
    let mut over = 0;
    for a in conduct["agents"].as_array().unwrap() {
        let u = &a["llm"]["usage"];
        let total = u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap();
        // No call starts once the budget is spent: at most the last call goes past it.
        assert!(total < budget + largest, "{a}");
        over += a["llm"]["turns_over_budget"].as_u64().unwrap();
    }
    assert!(over > 0, "the budget was reached: {conduct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_prints_calls_tokens_cost_and_wall_time_without_calling_a_model() {
    let server = standin::start(standin::Behaviour::default()).await.unwrap();
    let dir = Scratch::new("llm-estimate");
    let brains = format!("openai:stand-in@{},rule:linear", server.base);
    let o = tokio::task::block_in_place(|| {
        demo(
            &dir.0,
            &brains,
            "10",
            &[
                "--estimate",
                "--estimate-latency-s",
                "2",
                "--llm-concurrency",
                "4",
            ],
        )
    });
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains(
            "4 LLM agents, at most 10 rounds, 3 calls a turn, 2 s a call, 4 calls at once"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(": 120 calls, "), "{stdout}");
    assert!(
        stdout.contains("cost $0.000000"),
        "a model on this machine is free: {stdout}"
    );
    // 120 calls × 2 s ÷ 4 at once.
    assert!(
        stdout.contains("wall time: about 1 min 0 s at 4 calls at once"),
        "{stdout}"
    );
    assert_eq!(server.counts.calls.load(Ordering::SeqCst), 0);
    assert!(!dir.path("out").exists(), "nothing was written");
}
