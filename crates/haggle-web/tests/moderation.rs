//! The operator's policy and moderation page: the policy form, the moderation queue with each
//! hold's reason and its approval, suspending and reinstating, and the suspended participant's
//! principal seeing why on its own page.

mod support;

use serde_json::json;
use support::*;

fn moderation(m: i64) -> String {
    format!("/m/{m}/operate/moderation")
}

#[tokio::test]
async fn the_policy_form_sets_rules_the_api_then_enforces() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let op = s.page(&moderation(m), Some(&s.operator)).await;
    assert_eq!(op.status, 200, "{}", op.body);
    let csrf = op.hidden("csrf");
    let form = [
        ("csrf", csrf.as_str()),
        ("idem", "policy-1"),
        ("categories", "Weapons"),
        ("terms", "replica\nfake watch"),
        ("bounds", "misc 1.00 50.00"),
        ("per_day", "5"),
        ("per_hour", ""),
        ("prohibited_terms", "hold"),
    ];
    let r = s
        .form(&format!("/m/{m}/operate/policy"), &s.operator, &form)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let policy = s
        .api(
            reqwest::Method::GET,
            &format!("/v1/markets/{m}/policy"),
            &s.operator,
            json!(null),
        )
        .await;
    assert_eq!(policy["prohibited_categories"], json!(["weapons"]));
    assert_eq!(policy["prohibited_terms"], json!(["replica", "fake watch"]));
    assert_eq!(
        policy["price_bounds"]["misc"],
        json!({"min": 100, "max": 5000})
    );
    assert_eq!(policy["max_listings_per_day"], 5);
    assert_eq!(policy["actions"]["prohibited_terms"], "hold");
    let r = s
        .client
        .post(s.url(&format!("/v1/markets/{m}/listings")))
        .bearer_auth(&alice.agent)
        .json(&json!({"side": "sell", "title": "Chair", "category": "misc", "price": 9_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "policy_violation");
    // A malformed bound is a clear refusal, not a changed policy.
    let bad = [
        ("csrf", csrf.as_str()),
        ("idem", "policy-2"),
        ("bounds", "misc cheap"),
    ];
    let r = s
        .form(&format!("/m/{m}/operate/policy"), &s.operator, &bad)
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
}

#[tokio::test]
async fn the_queue_shows_why_a_listing_is_held_and_approving_puts_it_on_the_market() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    s.put(
        &format!("/v1/markets/{m}/policy"),
        &s.operator,
        json!({"prohibited_terms": ["vintage"], "actions": {"prohibited_terms": "hold"}}),
    )
    .await;
    let l = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Vintage lamp", "category": "misc", "price": 900}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let operate = s.page(&format!("/m/{m}/operate"), Some(&s.operator)).await;
    assert!(
        operate.body.contains("1 listing(s) held for review"),
        "{}",
        operate.body
    );
    let op = s.page(&moderation(m), Some(&s.operator)).await;
    assert!(op.body.contains(&format!("data-testid=\"held-{l}\"")));
    assert!(
        op.body.contains("the title contains the prohibited term"),
        "{}",
        op.body
    );
    let csrf = op.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{m}/operate/listings/{l}/approve"),
            &s.operator,
            &[("csrf", csrf.as_str()), ("idem", "approve-1")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let op = s.page(&moderation(m), Some(&s.operator)).await;
    assert!(op.body.contains("data-testid=\"queue-empty\""));
    let listing = s
        .api(
            reqwest::Method::GET,
            &format!("/v1/markets/{m}/listings/{l}"),
            &alice.agent,
            json!(null),
        )
        .await;
    assert_eq!(listing["status"], "active");
}

#[tokio::test]
async fn a_suspension_from_the_page_is_explained_on_the_principals_page() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 0).await;
    let op = s.page(&moderation(m), Some(&s.operator)).await;
    let csrf = op.hidden("csrf");
    let r = s
        .form(
            &format!("/m/{m}/operate/participants/{}/suspend", alice.id),
            &s.operator,
            &[
                ("csrf", csrf.as_str()),
                ("idem", "suspend-1"),
                ("reason", "fraud reports"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let own = s
        .page(&format!("/m/{m}/p/{}", alice.id), Some(&alice.principal))
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(
        own.body
            .contains("Suspended by an operator:</strong> fraud reports"),
        "{}",
        own.body
    );
    let refused = s.page(&format!("/m/{m}"), Some(&alice.agent)).await;
    assert_ne!(refused.status, 200);
    let r = s
        .form(
            &format!("/m/{m}/operate/participants/{}/reinstate", alice.id),
            &s.operator,
            &[("csrf", csrf.as_str()), ("idem", "reinstate-1")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let own = s
        .page(&format!("/m/{m}/p/{}", alice.id), Some(&alice.principal))
        .await;
    assert!(!own.body.contains("Suspended by an operator"));
}
