//! Market policy, moderation and suspension over HTTP (spec, trust.md: Market policy): a refusal
//! is `policy_violation` naming the rule and changes nothing; a held listing is seen by its owner
//! and operators only until approved; a removal voids offers; a suspended participant's agent
//! token is refused while its principal sees why, and its agreed deal still settles.

mod support;

use serde_json::{Value, json};
use support::*;

async fn set_policy(s: &Server, m: i64, policy: Value) {
    let r = s
        .put(&format!("/v1/markets/{m}/policy"), &s.operator, policy)
        .await;
    assert_status(&r, 200, "set policy");
}

fn listing(title: &str) -> Value {
    json!({"side": "sell", "title": title, "category": "misc", "price": 1_000})
}

#[tokio::test]
async fn a_listing_breaking_a_refusing_rule_is_refused_with_policy_violation_and_nothing_changes() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Seller", 0)]).await;
    set_policy(&s, m, json!({"prohibited_terms": ["replica"]})).await;
    assert_eq!(
        s.get_ok(&format!("/v1/markets/{m}/policy"), &p[0].agent)
            .await["prohibited_terms"],
        json!(["replica"])
    );
    let before = s.snapshot(m, &[&p[0]]).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &p[0].agent,
            listing("Replica watch"),
        )
        .await;
    assert_refusal(&r, 422, "policy_violation");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("prohibited_terms"), "{message}");
    assert_eq!(s.snapshot(m, &[&p[0]]).await, before);
}

#[tokio::test]
async fn a_policy_change_is_an_event_and_a_bad_policy_is_refused() {
    let s = Server::start().await;
    let m = s.market().await;
    set_policy(&s, m, json!({"max_listings_per_day": 3})).await;
    let events = s.events(m, &s.operator).await;
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "policy_changed");
    assert_eq!(last["payload"]["policy"]["max_listings_per_day"], 3);
    let r = s
        .put(
            &format!("/v1/markets/{m}/policy"),
            &s.operator,
            json!({"price_bounds": {"misc": {"min": 10, "max": 5}}}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s
        .put(
            &format!("/v1/markets/{m}/policy"),
            &s.operator,
            json!({"banned_words": ["x"]}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
}

#[tokio::test]
async fn a_held_listing_is_seen_by_its_owner_and_operators_only_until_approved() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Seller", 0), ("Buyer", 10_000)]).await;
    let (seller, buyer) = (&p[0], &p[1]);
    set_policy(
        &s,
        m,
        json!({"prohibited_terms": ["vintage"], "actions": {"prohibited_terms": "hold"}}),
    )
    .await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &seller.agent,
            listing("Vintage lamp"),
        )
        .await;
    assert_status(&r, 201, "held listing");
    assert_eq!(r.1["status"], "held");
    let id = r.1["id"].as_i64().unwrap();
    let path = format!("/v1/markets/{m}/listings/{id}");

    assert_refusal(&s.get(&path, &buyer.agent).await, 404, "not_found");
    s.get_ok(&path, &seller.agent).await;
    let found = s
        .get_ok(&format!("/v1/markets/{m}/listings"), &buyer.agent)
        .await;
    assert!(ids(&found["items"]).is_empty(), "{found}");
    let own = s
        .get_ok(
            &format!("/v1/markets/{m}/listings?status=held"),
            &seller.agent,
        )
        .await;
    assert_eq!(ids(&own["items"]), [id]);
    let r = s
        .get(
            &format!("/v1/markets/{m}/listings?status=held&owner={}", seller.id),
            &buyer.agent,
        )
        .await;
    assert_refusal(&r, 403, "forbidden");

    let queue = s
        .get_ok(&format!("/v1/markets/{m}/moderation"), &s.operator)
        .await;
    assert_eq!(queue["items"][0]["listing"]["id"], id);
    assert_eq!(queue["items"][0]["rules"], json!(["prohibited_terms"]));
    assert!(
        queue["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("vintage")
    );

    let r = s
        .post(&format!("{path}/approve"), &s.operator, json!({}))
        .await;
    assert_status(&r, 200, "approve");
    assert_eq!(r.1["status"], "active");
    s.get_ok(&path, &buyer.agent).await;
    s.bid(m, buyer, id, 900).await;
    let queue = s
        .get_ok(&format!("/v1/markets/{m}/moderation"), &s.operator)
        .await;
    assert!(ids(&queue["items"]).is_empty());
}

#[tokio::test]
async fn an_operator_removes_an_active_listing_voiding_its_offers_and_ending_its_threads() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Seller", 0), ("Buyer", 10_000)]).await;
    let id = s.sell(m, &p[0], "Lamp", 1_000).await;
    let (thread, _) = s.bid(m, &p[1], id, 900).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{id}/remove"),
            &s.operator,
            json!({"reason": "counterfeit"}),
        )
        .await;
    assert_status(&r, 200, "remove");
    let t = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &p[1].agent)
        .await;
    assert_eq!(t["thread"]["status"], "void", "{t}");
    assert_eq!(t["offers"][0]["state"], "void", "{t}");
    assert_eq!(s.balance(m, p[1].id).await["committed_to_offers"], 0);
    let removed = s
        .get_ok(&format!("/v1/markets/{m}/listings/{id}"), &s.operator)
        .await;
    assert_eq!(removed["status"], "removed");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{id}/remove"),
            &s.operator,
            json!({"reason": "again"}),
        )
        .await;
    assert_refusal(&r, 409, "invalid_transition");
}

#[tokio::test]
async fn a_suspended_participants_agent_token_is_refused_and_its_principal_sees_why() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Seller", 0), ("Buyer", 10_000)]).await;
    let (seller, buyer) = (&p[0], &p[1]);
    let id = s.sell(m, seller, "Lamp", 1_000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/suspend", seller.id),
            &s.operator,
            json!({"reason": "fraud reports"}),
        )
        .await;
    assert_status(&r, 200, "suspend");
    assert_eq!(r.1["suspension"]["reason"], "fraud reports");

    let r = s.get("/v1/me", &seller.agent).await;
    assert_refusal(&r, 403, "participant_suspended");
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fraud reports")
    );
    let me = format!("/v1/markets/{m}/participants/{}", seller.id);
    let seen = s.get_ok(&me, &seller.principal).await;
    assert_eq!(seen["suspension"]["reason"], "fraud reports");
    assert!(
        s.get_ok(&me, &buyer.agent)
            .await
            .get("suspension")
            .is_none()
    );
    let l = s
        .get_ok(&format!("/v1/markets/{m}/listings/{id}"), &buyer.agent)
        .await;
    assert_eq!(l["status"], "withdrawn");

    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/reinstate", seller.id),
            &s.operator,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "reinstate");
    s.sell(m, seller, "Chair", 500).await;
}

#[tokio::test]
async fn a_suspended_sellers_handed_over_deal_still_settles() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Seller", 0), ("Buyer", 10_000)]).await;
    let (seller, buyer) = (&p[0], &p[1]);
    let id = s.sell(m, seller, "Lamp", 1_000).await;
    let (_, offer) = s.bid(m, buyer, id, 900).await;
    let deal = s.accept(m, seller, offer).await["id"].as_i64().unwrap();
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{deal}/handover"),
            &seller.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "hand over");
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/suspend", seller.id),
            &s.operator,
            json!({"reason": "fraud reports"}),
        )
        .await;
    assert_status(&r, 200, "suspend");
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{deal}/confirm"),
            &buyer.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "confirm");
    assert_eq!(r.1["status"], "completed");
    assert_eq!(s.balance(m, seller.id).await["available"], 900);
}
