//! Tests of outside participants (issue 24) through the real server the simulation serves on a
//! random port: a silent agent times out while the market goes on; a Python script drives one
//! participant over HTTP; a replay without the script reproduces the run from its record.

use super::*;
use crate::sim::{self, Mode, SimConfig, SimOutput};
use haggle_agents::registry::{BrainFactory, LlmEnv};
use haggle_lab::scenario::Scenario;
use haggle_testkit::TempSqlite;
use std::process::{Child, Command as Process, Stdio};

/// The generated market of `n` participants; the first one with something to sell is driven
/// from outside, the others by rule brains. Returns the scenario, the brains and that index.
fn market(n: usize) -> (Scenario, Vec<String>, usize) {
    let scenario = haggle_lab::generator::generate(7, n, 10_000);
    let seat = scenario
        .profiles
        .iter()
        .position(|p| !p.sell.is_empty())
        .expect("a seller");
    let rules = [
        "rule:boulware",
        "rule:linear",
        "rule:conceder",
        "rule:taker",
    ];
    let brains = (0..n)
        .map(|i| match i {
            i if i == seat => EXTERNAL.to_string(),
            i => rules[i % rules.len()].to_string(),
        })
        .collect();
    (scenario, brains, seat)
}

fn config(
    scenario: Scenario,
    brains: Vec<String>,
    db: &TempSqlite,
    log: Arc<CallLog>,
    replay: Option<Arc<Recording>>,
    outside: OutsideConfig,
) -> SimConfig {
    let mut factory = BrainFactory::new(LlmEnv::default(), log, &scenario.currency);
    factory.replay = replay;
    SimConfig {
        scenario,
        brains,
        seed: 7,
        max_rounds: 4,
        tick_ms: haggle_api::haggle_core::HOUR_MS,
        mode: Mode::Rounds,
        database: db.url(),
        factory,
        withhold_leaks: false,
        rules: sim::market_rules(),
        hide_reputation: false,
        sessions: Vec::new(),
        session_budget: sim::SessionBudget::Fresh,
        shipping: None,
        outside,
    }
}

/// Every event of the run's market, as stored (hashes included).
async fn events(out: &SimOutput) -> Vec<String> {
    let page = out
        .svc
        .store()
        .events(
            out.market_id,
            haggle_service::Viewer::All,
            0,
            haggle_api::haggle_core::limits::MAX_EVENTS,
        )
        .await
        .expect("events");
    assert!(page.len() < 1000, "the test market stays within one page");
    page.iter()
        .map(|e| serde_json::to_string(e).expect("event"))
        .collect()
}

#[tokio::test]
async fn an_agent_that_never_ends_its_turns_gets_timeouts_and_the_market_goes_on() {
    let (scenario, brains, seat) = market(8);
    let name = scenario.profiles[seat].name.clone();
    let db = TempSqlite::new("outside-silent");
    let outside = OutsideConfig {
        turn_budget: Some(Duration::from_millis(30)),
        ..OutsideConfig::default()
    };
    let log = Arc::new(CallLog::discard());
    let out = sim::run(config(scenario, brains, &db, log, None, outside), |_| {})
        .await
        .expect("the run");
    let t = &out.outside[&name];
    assert!(t.turns >= 2, "{t:?}");
    assert_eq!((t.timed_out, t.ended, t.commands), (t.turns, 0, 0));
    let others: u64 = out.agents.iter().map(|a| a.successful_actions()).sum();
    assert!(others > 0, "the rule brains traded on");
    let timeouts = events(&out)
        .await
        .iter()
        .filter(|e| e.contains("\"kind\":\"turn_timed_out\""))
        .count() as u64;
    assert_eq!(timeouts, t.turns);
}

/// The external agent: waits for `turn_started` on its feed, posts its listing in its first
/// turn, ends every turn, and tries to end its first turn a second time (refused).
const SCRIPT: &str = r#"
import json, os, sys, time, urllib.request, urllib.error
url, m, token = os.environ["HAGGLE_URL"], os.environ["HAGGLE_MARKET"], os.environ["HAGGLE_TOKEN"]
def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError:
        sys.exit(0)  # the run ended: its server is gone
listing = json.loads(os.environ["HAGGLE_LISTING"])
after, turns = 0, 0
while True:
    status, page = call("GET", f"/v1/markets/{m}/events?mine=true&after={after}")
    for e in page["events"]:
        after = e["seq"]
        if e["kind"] == "turn_started":
            turn = e["payload"]["turn"]
            if turns == 0:
                status, body = call("POST", f"/v1/markets/{m}/listings", listing)
                print("listed", status, flush=True)
                status, body = call("POST", f"/v1/markets/{m}/listings", dict(listing, price=0))
                print("refused", status, body["error"]["code"], flush=True)
            turns += 1
            status, body = call("POST", f"/v1/markets/{m}/turns/{turn}/end", {})
            print("ended", turn, status, flush=True)
            if turns == 1:
                status, body = call("POST", f"/v1/markets/{m}/turns/{turn}/end", {})
                print("again", status, body["error"]["code"], flush=True)
    time.sleep(0.02)
"#;

/// `python3` if it runs (else NOT RUN, said loudly).
fn python() -> Option<&'static str> {
    let found = Process::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        haggle_testkit::not_run("EXTERNAL AGENT SCRIPT TEST", "python3 is not installed");
    }
    found.then_some("python3")
}

/// The listing the script posts: the seat's first item at its asking price.
fn listing(p: &haggle_agents::profile::Profile) -> String {
    let item = &p.sell[0];
    serde_json::json!({
        "side": "sell", "title": item.title, "category": item.category,
        "price": item.asking_price,
    })
    .to_string()
}

/// Starts the script for the outside seat once the market is served; its process comes back on
/// the channel.
fn start_script(
    python: &'static str,
    listing: String,
    out: std::path::PathBuf,
) -> (OutsideConfig, std::sync::mpsc::Receiver<Child>) {
    let (started, child) = std::sync::mpsc::channel();
    let cfg = OutsideConfig {
        turn_budget: Some(Duration::from_secs(20)),
        on_ready: Some(Box::new(move |r: &Ready| {
            let seat = &r.seats[0];
            let script = out.with_extension("py");
            std::fs::write(&script, SCRIPT).expect("script");
            let child = Process::new(python)
                .arg(&script)
                .env("HAGGLE_URL", &r.url)
                .env("HAGGLE_MARKET", r.market_id.to_string())
                .env("HAGGLE_TOKEN", &seat.agent_token)
                .env("HAGGLE_LISTING", &listing)
                .stdout(std::fs::File::create(&out).expect("script output"))
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start python3");
            started.send(child).expect("the test waits for the script");
        })),
        ..OutsideConfig::default()
    };
    (cfg, child)
}

/// Ends the script started for a run.
fn stop_script(child: std::sync::mpsc::Receiver<Child>) {
    if let Ok(mut c) = child.try_recv() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[tokio::test]
async fn a_python_script_drives_one_participant_over_http_and_a_replay_without_it_is_identical() {
    let Some(python) = python() else { return };
    let (scenario, brains, seat) = market(8);
    let name = scenario.profiles[seat].name.clone();
    let dir = haggle_testkit::temp_dir("outside-script");
    let (out_path, log_path) = (dir.join("agent.out"), dir.join("llm_calls.jsonl"));
    let db = TempSqlite::new("outside-script");
    let log = Arc::new(CallLog::create(&log_path).expect("log"));
    let (outside, script) =
        start_script(python, listing(&scenario.profiles[seat]), out_path.clone());
    let run = sim::run(
        config(scenario.clone(), brains.clone(), &db, log, None, outside),
        |_| {},
    )
    .await;
    stop_script(script);
    let out = run.expect("the run");
    let said = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        said.starts_with("listed 201\nrefused 422 invalid_price\nended 1 200\n"),
        "{said}"
    );
    assert!(said.contains("again 409 not_your_turn"), "{said}");
    let t = &out.outside[&name].clone();
    assert!(
        t.turns >= 2 && t.ended == t.turns && t.timed_out == 0,
        "{t:?}"
    );
    assert!(t.commands >= 2, "{t:?}");
    // Its refused command is counted (eval's refusals per turn), in the run and in the replay.
    assert_eq!(
        t.refusals,
        [("invalid_price".to_string(), 1)].into(),
        "{t:?}"
    );
    let stored = events(&out).await;
    drop(out);

    // The replay: the same run from its record, no script.
    let recording = Arc::new(Recording::read(&log_path).expect("the record"));
    let db2 = TempSqlite::new("outside-replay");
    let cfg = config(
        scenario,
        brains,
        &db2,
        Arc::new(CallLog::discard()),
        Some(recording.clone()),
        OutsideConfig::default(),
    );
    let again = sim::run(cfg, |_| {}).await.expect("the replay");
    assert_eq!(recording.divergences(), Vec::<String>::new());
    assert_eq!(&again.outside[&name], t);
    let replayed = events(&again).await;
    let first = stored.iter().zip(&replayed).position(|(a, b)| a != b);
    assert!(
        first.is_none() && stored.len() == replayed.len(),
        "{} events stored, {} replayed; first difference: {:?}",
        stored.len(),
        replayed.len(),
        first.map(|i| (&stored[i], &replayed[i]))
    );
    std::fs::remove_dir_all(dir).ok();
}
