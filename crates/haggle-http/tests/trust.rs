//! Claims, inspection and not-as-described disputes over the real server (trust.md): a listing's
//! claims are shown as the seller's, the buyer's principal reports a mismatch, the buyer disputes
//! naming the claim, the operator refunds, the ledger balances and the seller's reputation shows
//! it; a simulated market inspects against the item's true state, which no view shows.

mod support;

use serde_json::{Value, json};
use support::*;

const BUDGET: i64 = 10_000;

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

fn path(m: i64, deal: i64, action: &str) -> String {
    format!("/v1/markets/{m}/deals/{deal}/{action}")
}

/// Alice lists a phone with claims (and `true_state` when given) and accepts Bob's bid at `price`.
async fn claimed_deal(
    s: &Server,
    m: i64,
    alice: &Party,
    bob: &Party,
    truth: Option<Value>,
) -> Value {
    let mut body = json!({
        "side": "sell", "title": "Phone", "category": "electronics", "price": 3000,
        "claims": {"condition": "like_new", "working": "yes", "included": ["charger"],
                   "details": {"battery": "90%"}}
    });
    if let Some(t) = truth {
        body["true_state"] = t;
    }
    let r = s
        .post(&format!("/v1/markets/{m}/listings"), &alice.agent, body)
        .await;
    assert_status(&r, 201, "list the phone");
    let (_, offer) = s.bid(m, bob, id(&r.1), 3000).await;
    s.accept(m, alice, offer).await
}

#[tokio::test]
async fn listing_shows_claims_as_the_sellers_and_the_deal_snapshot_keeps_them() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let deal = claimed_deal(&s, m, &p[0], &p[1], None).await;
    let listing = s
        .get_ok(
            &format!("/v1/markets/{m}/listings/{}", deal["listing_id"]),
            &p[1].agent,
        )
        .await;
    let claims = if listing["claims"].is_null() {
        &listing["listing"]["claims"]
    } else {
        &listing["claims"]
    };
    assert_eq!(claims["condition"], "like_new", "{listing}");
    assert_eq!(deal["snapshot"]["claims"]["included"], json!(["charger"]));
}

#[tokio::test]
async fn a_claim_outside_the_enum_is_refused_with_a_code() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0)]).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &p[0].agent,
            json!({"side": "sell", "title": "Phone", "category": "misc", "price": 100,
                   "claims": {"condition": "mint"}}),
        )
        .await;
    assert!(r.0 == 400 || r.0 == 422, "{r:?}");
    assert!(r.1["error"]["code"].is_string(), "{r:?}");
}

#[tokio::test]
async fn a_real_market_refuses_a_true_state() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0)]).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &p[0].agent,
            json!({"side": "sell", "title": "Phone", "category": "misc", "price": 100,
                   "true_state": {"condition": "fair"}}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
}

#[tokio::test]
async fn an_inspection_is_recorded_as_the_principals_not_its_agents() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let d = id(&claimed_deal(&s, m, alice, bob, None).await);
    let handover = s
        .post(&path(m, d, "handover"), &alice.agent, json!({}))
        .await;
    assert_status(&handover, 200, "handover");
    let inspection = json!({"mismatched": ["condition"]});
    let inspected = s
        .post(&path(m, d, "inspection"), &bob.principal, inspection)
        .await;
    assert_status(&inspected, 200, "inspection");
    let events = s
        .svc
        .store()
        .events(m, haggle_service::Viewer::All, 0, 1000)
        .await
        .unwrap();
    let last = events.last().expect("events");
    assert_eq!(
        (last.kind(), last.by.as_str()),
        ("deal_inspected", "principal")
    );
}

/// The whole path of the issue over HTTP: inspection by the principal, a not-as-described
/// dispute naming the contradicted claim, a refund, the ledger verified, the reputation.
#[tokio::test]
async fn not_as_described_from_inspection_to_refund_balances_the_ledger() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let d = id(&claimed_deal(&s, m, alice, bob, None).await);
    assert_status(
        &s.post(&path(m, d, "handover"), &alice.agent, json!({}))
            .await,
        200,
        "handover",
    );

    // Without an inspection that found a mismatch there are no grounds.
    let early = s
        .post(
            &path(m, d, "dispute"),
            &bob.agent,
            json!({"reason": "scratched", "grounds": "not_as_described", "claims": ["condition"]}),
        )
        .await;
    assert_refusal(&early, 409, "invalid_transition");
    // The buyer's agent does not inspect: its principal does.
    let by_agent = s
        .post(
            &path(m, d, "inspection"),
            &bob.agent,
            json!({"mismatched": ["condition"]}),
        )
        .await;
    assert_refusal(&by_agent, 403, "forbidden");
    let unknown = s
        .post(
            &path(m, d, "inspection"),
            &bob.principal,
            json!({"mismatched": ["colour"]}),
        )
        .await;
    assert_refusal(&unknown, 422, "invalid_request");

    let inspected = s
        .post(
            &path(m, d, "inspection"),
            &bob.principal,
            json!({"mismatched": ["condition", "battery"]}),
        )
        .await;
    assert_status(&inspected, 200, "inspection");
    assert_eq!(inspected.1["inspection"]["source"], "principal");
    assert_eq!(
        inspected.1["inspection"]["mismatched"],
        json!(["condition", "battery"])
    );
    let again = s
        .post(
            &path(m, d, "inspection"),
            &bob.principal,
            json!({"mismatched": []}),
        )
        .await;
    assert_refusal(&again, 409, "invalid_transition");

    // A claim the inspection did not contradict cannot be named.
    let wrong = s
        .post(
            &path(m, d, "dispute"),
            &bob.agent,
            json!({"reason": "broken", "grounds": "not_as_described", "claims": ["working"]}),
        )
        .await;
    assert_refusal(&wrong, 422, "invalid_request");
    let disputed = s
        .post(&path(m, d, "dispute"), &bob.agent,
              json!({"reason": "Scratched all over", "grounds": "not_as_described", "claims": ["condition"]}))
        .await;
    assert_status(&disputed, 200, "dispute");
    assert_eq!(disputed.1["status"], "disputed");
    assert_eq!(
        disputed.1["dispute"],
        json!({"grounds": "not_as_described", "claims": ["condition"]})
    );

    let evidence = s
        .post(
            &path(m, d, "evidence"),
            &bob.agent,
            json!({"body": "photo of scratches"}),
        )
        .await;
    assert_status(&evidence, 201, "evidence");
    let ruled = s
        .post(
            &path(m, d, "resolve"),
            &s.operator,
            json!({"ruling": {"outcome": "refund"}, "note": "as shown"}),
        )
        .await;
    assert_status(&ruled, 200, "refund");
    assert_eq!(ruled.1["status"], "refunded");

    assert_eq!(s.balance(m, bob.id).await["available"], BUDGET);
    assert_eq!(s.balance(m, alice.id).await["total"], 0);
    let v = s
        .get_ok(&format!("/v1/markets/{m}/ledger/verify"), &s.operator)
        .await;
    assert_eq!(v["breaches"], json!([]), "ledger verify: {v}");

    let rep = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}/reputation", alice.id),
            &bob.agent,
        )
        .await;
    assert_eq!(rep["deals_as_seller"], 1, "{rep}");
    assert_eq!(rep["disputes_against"], 1, "{rep}");
    assert_eq!(rep["upheld_not_as_described"], 1, "{rep}");
    assert_eq!(rep["inspected_sales"], 1, "{rep}");
    assert_eq!(rep["accurate_sales"], 0, "{rep}");
    assert_eq!(rep["claim_accuracy_pct"], 0, "{rep}");
}

/// In a simulated market the buyer inspects at handover against the item's true state, which
/// the listing never shows.
#[tokio::test]
async fn a_simulated_handover_inspects_the_true_state_that_no_view_shows() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Sim", "clock": "simulated"}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", BUDGET).await;
    let truth = json!({"condition": "fair", "working": "yes", "included": [], "details": {"battery": "90%"}});
    let deal = claimed_deal(&s, m, &alice, &bob, Some(truth)).await;
    let d = id(&deal);
    assert!(!deal.to_string().contains("true_state"), "{deal}");
    let listing = s
        .get_ok(
            &format!("/v1/markets/{m}/listings/{}", deal["listing_id"]),
            &bob.agent,
        )
        .await;
    assert!(!listing.to_string().contains("true_state"), "{listing}");
    for e in s.events(m, &s.operator).await {
        assert!(
            !e.to_string().contains("\"fair\""),
            "an event shows the true state: {e}"
        );
    }
    let handed = s
        .post(&path(m, d, "handover"), &alice.agent, json!({}))
        .await;
    assert_status(&handed, 200, "handover");
    let i = &handed.1["inspection"];
    assert_eq!(i["source"], "simulation", "{handed:?}");
    assert_eq!(i["mismatched"], json!(["condition", "included"]));
    assert_eq!(i["found"]["condition"], "fair");
    let seen = s
        .get_ok(&format!("/v1/markets/{m}/deals/{d}"), &bob.agent)
        .await;
    assert_eq!(seen["inspection"], *i);
}
