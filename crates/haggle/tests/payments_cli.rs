//! `haggle settlement reconcile` against localstripe: the real binary serves a market with Stripe
//! behind its escrow, a deal's hold is placed, and the command agrees (exit 0) until the intent is
//! cancelled directly at the provider, then lists the deal and exits non-zero. Needs localstripe
//! (`HAGGLE_TEST_LOCALSTRIPE_URL`, or the `localstripe` command); NOT RUN without it.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const KEY: &str = "sk_test_haggle_cli";

fn localstripe() -> Option<String> {
    if let Some(u) = std::env::var("HAGGLE_TEST_LOCALSTRIPE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Some(u.trim_end_matches('/').to_string());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok();
    let started = port.and_then(|port| {
        // The server ends within a second of this test process (a watcher polls its pid).
        std::process::Command::new("sh")
            .args(["-c", &watched_localstripe(port)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(|_| port)
    });
    if let Some(port) = started {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(format!("http://127.0.0.1:{port}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** LOCALSTRIPE CLI TEST NOT RUN: set HAGGLE_TEST_LOCALSTRIPE_URL or install \
         localstripe (pip install localstripe) ***\n"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but localstripe is missing: the payment tests must run in CI"
    );
    None
}

async fn stripe(http: &reqwest::Client, base: &str, path: &str, form: &str) -> Value {
    http.post(format!("{base}{path}"))
        .bearer_auth(KEY)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .expect("localstripe answers")
        .json()
        .await
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn settlement_reconcile_lists_an_intent_changed_at_the_provider_and_fails() {
    let Some(ls) = localstripe() else { return };
    let dir = Scratch::new("payments-cli");
    let db = dir.sqlite("h.db");
    let op = operator_token(&dir.0, &db);
    let env = [
        ("HAGGLE_STRIPE_SECRET_KEY", KEY),
        ("HAGGLE_STRIPE_BASE_URL", ls.as_str()),
    ];
    let server = Server::start_raw_env(
        &dir.0,
        &["serve", "--listen", "127.0.0.1:0", "--database", &db],
        &env,
    )
    .await;
    let http = Http::default();
    let base = server.base.clone();
    let m = id(&http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets"),
            &op,
            json!({"name": "Paid", "rules": {"payments": {"provider": "stripe"}}}),
        )
        .await);
    let seller = register(&http, &base, &op, m, "Seller", 0).await;
    let buyer = register(&http, &base, &op, m, "Buyer", 5_000).await;
    // The buyer's card, as the provider's own page would leave it.
    let raw = haggle_tls::client();
    let cus = stripe(&raw, &ls, "/v1/customers", "email=b%40example.com").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pm = stripe(
        &raw,
        &ls,
        "/v1/payment_methods",
        "type=card&card%5Bnumber%5D=4242424242424242&card%5Bexp_month%5D=12&card%5Bexp_year%5D=2034&card%5Bcvc%5D=123",
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    stripe(
        &raw,
        &ls,
        &format!("/v1/payment_methods/{pm}/attach"),
        &format!("customer={cus}"),
    )
    .await;
    let r = raw
        .put(format!(
            "{base}/v1/markets/{m}/participants/{}/payment_method",
            buyer.id
        ))
        .bearer_auth(&op)
        .json(&json!({"customer": cus, "payment_method": pm}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let l = id(&http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets/{m}/listings"),
            &seller.token,
            json!({"side": "sell", "title": "Desk", "category": "misc", "price": 1400}),
        )
        .await);
    let t = http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets/{m}/listings/{l}/threads"),
            &buyer.token,
            json!({"price": 1400}),
        )
        .await;
    let offer = id(&t["offer"]);
    let deal = id(&http
        .expect(
            201,
            "POST",
            &format!("{base}/v1/markets/{m}/offers/{offer}/accept"),
            &seller.token,
            json!({}),
        )
        .await);
    let args = [
        "settlement",
        "reconcile",
        "--market",
        &m.to_string(),
        "--database",
        &db,
    ];
    let ok = run_within_env(&dir.0, &args, &env, Duration::from_secs(20));
    assert!(
        ok.status.success(),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    assert!(
        text(&ok.stdout).contains("1 deals agree"),
        "{}",
        text(&ok.stdout)
    );
    // Someone cancels the hold at the provider's dashboard.
    let mut intent = None;
    let mut after = String::new();
    while intent.is_none() {
        let page: Value = raw
            .get(format!("{ls}/v1/payment_intents?limit=100{after}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["data"].as_array().unwrap();
        intent = items
            .iter()
            .find(|i| i["customer"] == cus.as_str())
            .map(|i| i["id"].as_str().unwrap().to_string());
        assert!(
            intent.is_some() || page["has_more"] == true,
            "the deal's intent is missing"
        );
        after = format!(
            "&starting_after={}",
            items.last().unwrap()["id"].as_str().unwrap()
        );
    }
    let intent = intent.unwrap();
    stripe(
        &raw,
        &ls,
        &format!("/v1/payment_intents/{intent}/cancel"),
        "",
    )
    .await;
    let bad = run_within_env(&dir.0, &args, &env, Duration::from_secs(20));
    assert!(!bad.status.success());
    let out = text(&bad.stdout);
    assert!(
        out.contains(&format!(
            "deal {deal} (agreed): ledger hold 1400, recorded authorized, provider canceled"
        )),
        "{out}"
    );
    drop(server);
}

/// A shell line running localstripe on `port` until this process ends.
fn watched_localstripe(port: u16) -> String {
    format!(
        "localstripe --port {port} --from-scratch & ls=$!; \
         while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $ls",
        pid = std::process::id()
    )
}
