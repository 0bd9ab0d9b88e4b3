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
    haggle_testkit::localstripe("LOCALSTRIPE CLI TEST")
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
