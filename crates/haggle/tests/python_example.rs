//! The Python example (`examples/python/agent.py`) against a served market: the real `haggle
//! serve` on a random port, an operator token from the CLI, two participants registered over
//! HTTP, then `python3 agent.py` trades as both; the deal must complete and the ledger verify.
//! Without `python3` the test says NOT RUN loudly (and fails under `CI`).

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/agent.py"
);

/// `python3` if it runs; `None` (after saying so loudly) when there is none.
fn python() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("python3");
    }
    haggle_testkit::not_run("PYTHON EXAMPLE TEST", "python3 is not installed");
    None
}

/// Runs the example to completion (bounded); returns (success, stdout, stderr).
fn run_example(python: &str, cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(python)
        .arg(EXAMPLE)
        .args(args)
        .current_dir(cwd)
        .env_remove("HAGGLE_SERVER")
        .env_remove("HAGGLE_SELLER_TOKEN")
        .env_remove("HAGGLE_BUYER_TOKEN")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for python3").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the Python example did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("python3 output");
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn the_python_example_lists_searches_negotiates_and_settles_a_deal() {
    let Some(python) = python() else { return };
    let dir = Scratch::new("python-example");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let server = Server::start(&dir.0, &["--database", &db]).await;
    let http = Http::default();
    let market = create_market(&http, &server.base, &op, "python market").await;
    let seller = register(&http, &server.base, &op, market, "Seller", 0).await;
    let buyer = register(&http, &server.base, &op, market, "Buyer", 20_000).await;

    let (ok, stdout, stderr) = run_example(
        python,
        &dir.0,
        &[
            "--server",
            &server.base,
            "--seller-token",
            &seller.token,
            "--buyer-token",
            &buyer.token,
        ],
    );
    assert!(ok, "the example failed:\n{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON summary last ({e}):\n{stdout}"));
    assert_eq!(summary["status"], "completed", "{summary}");
    let price = summary["price"].as_i64().unwrap();
    assert!((9_000..=10_000).contains(&price), "{summary}");
    assert!(stdout.contains("found #"), "it searched:\n{stdout}");
    assert!(stdout.contains("countered at"), "it negotiated:\n{stdout}");

    // The market agrees: the deal is completed, the money moved, the ledger verifies.
    let deal = summary["deal_id"].as_i64().unwrap();
    let d = http
        .expect(
            200,
            "GET",
            &server.url(&format!("/v1/markets/{market}/deals/{deal}")),
            &op,
            Value::Null,
        )
        .await;
    assert_eq!(d["status"], "completed");
    assert_eq!(
        (d["seller"].as_i64(), d["buyer"].as_i64()),
        (Some(seller.id), Some(buyer.id))
    );
    assert_eq!(summary["seller_balance"]["available"], price);
    assert_eq!(summary["buyer_balance"]["total"], 20_000 - price);
    let verified = http
        .expect(
            200,
            "GET",
            &server.url(&format!("/v1/markets/{market}/ledger/verify")),
            &op,
            Value::Null,
        )
        .await;
    assert_eq!(verified["breaches"], serde_json::json!([]), "{verified}");
    assert!(verified["transfers"].as_u64().unwrap() > 0, "{verified}");
}

#[tokio::test]
async fn the_python_example_says_unavailable_when_no_server_answers() {
    let Some(python) = python() else { return };
    let dir = Scratch::new("python-example-down");
    let base = haggle_testkit::dead_base();
    let (ok, _, stderr) = run_example(
        python,
        &dir.0,
        &[
            "--server",
            &base,
            "--seller-token",
            "hgl_x",
            "--buyer-token",
            "hgl_y",
        ],
    );
    assert!(!ok);
    assert!(stderr.starts_with("unavailable: cannot reach"), "{stderr}");
}
