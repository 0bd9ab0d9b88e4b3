//! The market policy met through MCP at `/mcp` (spec, trust.md: Market policy): a refused
//! listing is a tool error carrying the HTTP API's `policy_violation` body; a held listing waits
//! for an operator's approval; a suspended participant's token opens no MCP session.

mod support;

use haggle_api::haggle_core::policy::{MarketPolicy, PolicyAction};
use serde_json::{Value, json};
use support::agent::id;
use support::*;

fn terms(t: &str, action: PolicyAction) -> MarketPolicy {
    let mut p = MarketPolicy {
        prohibited_terms: vec![t.into()],
        ..MarketPolicy::default()
    };
    p.actions.prohibited_terms = action;
    p
}

#[tokio::test]
async fn post_listing_meets_policy_violation_as_over_http() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    let a = m.connect("alice", &alice.token).await;
    m.svc
        .set_policy(
            &operator(),
            m.id,
            terms("replica", PolicyAction::Refuse),
            None,
        )
        .await
        .unwrap();
    let via_mcp = a
        .refused(
            "post_listing",
            json!({"title": "Replica watch", "category": "watches", "price": 1500}),
        )
        .await;
    let (status, via_http) = m
        .http(
            "POST",
            &m.path("/listings"),
            Some(&alice.token),
            Some(json!({"side": "sell", "title": "Replica watch", "category": "watches", "price": 1500})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(via_mcp, via_http);
    assert_eq!(via_mcp["error"]["code"], "policy_violation");
    let mine = a.ok("search_listings", json!({"owner": alice.id})).await;
    assert_eq!(mine["items"], json!([]));
}

#[tokio::test]
async fn a_listing_held_over_mcp_is_found_only_once_an_operator_approves_it() {
    let m = Market::start().await;
    let (alice, bob) = (
        m.participant("Alice", 10_000).await,
        m.participant("Bob", 10_000).await,
    );
    let (a, b) = (
        m.connect("alice", &alice.token).await,
        m.connect("bob", &bob.token).await,
    );
    m.svc
        .set_policy(
            &operator(),
            m.id,
            terms("vintage", PolicyAction::Hold),
            None,
        )
        .await
        .unwrap();
    let held = a
        .ok(
            "post_listing",
            json!({"title": "Vintage lamp", "category": "home", "price": 1500}),
        )
        .await;
    assert_eq!(held["status"], "held");
    let listing = id(&held, "/id");
    let search = json!({"q": "lamp"});
    assert_eq!(
        b.ok("search_listings", search.clone()).await["items"],
        json!([])
    );
    let hidden = b
        .refused("get_listing", json!({"listing_id": listing}))
        .await;
    assert_eq!(hidden["error"]["code"], "not_found");

    m.svc
        .approve_listing(&operator(), m.id, listing, None)
        .await
        .unwrap();
    let found: Vec<i64> = b.ok("search_listings", search).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(found, [listing]);
}

#[tokio::test]
async fn a_suspended_participants_token_opens_no_mcp_session() {
    let m = Market::start().await;
    let alice = m.participant("Alice", 10_000).await;
    m.connect("alice", &alice.token).await;
    m.svc
        .suspend(&operator(), m.id, alice.id, "fraud reports".into(), None)
        .await
        .unwrap();
    haggle_tls::install_provider();
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    });
    let r = haggle_tls::client()
        .post(m.mcp_url())
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("Authorization", format!("Bearer {}", alice.token))
        .body(init.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    let (_, http) = m.http("GET", "/v1/me", Some(&alice.token), None).await;
    assert_eq!(body, http);
    assert_eq!(body["error"]["code"], "participant_suspended");
}
