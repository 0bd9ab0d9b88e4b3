//! Idempotency keys over HTTP: a replay returns the first response exactly and does nothing
//! again, a replayed refusal stays a refusal, and keys belong to the token that sent them.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

fn kinds(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_replayed_acceptance_returns_the_same_deal_and_makes_no_second_one() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (_, offer) = s.bid(m, bob, listing, 4000).await;
    let path = format!("/v1/markets/{m}/offers/{offer}/accept");

    let first = s
        .call(
            Method::POST,
            &path,
            Some(&alice.agent),
            None,
            Some("accept-1"),
        )
        .await;
    assert_status(&first, 201, "accept");
    let after_first = s.snapshot(m, &[alice, bob]).await;
    assert_eq!(after_first["deals"]["items"].as_array().unwrap().len(), 1);

    for _ in 0..3 {
        let again = s
            .call(
                Method::POST,
                &path,
                Some(&alice.agent),
                None,
                Some("accept-1"),
            )
            .await;
        assert_eq!(
            again, first,
            "the replay is the first response, byte for byte"
        );
    }
    // Nothing happened again: one deal, one hold, one set of events.
    assert_eq!(s.snapshot(m, &[alice, bob]).await, after_first);
    let events = &after_first["events"];
    assert_eq!(
        kinds(events)
            .iter()
            .filter(|k| **k == "deal_created")
            .count(),
        1
    );
    assert_eq!(after_first["balances"][1]["held_in_escrow"], 4000);

    // Without the key the same acceptance is a new request, refused as such.
    let r = s.post(&path, &alice.agent, json!({})).await;
    assert_refusal(&r, 409, "listing_unavailable");
}

#[tokio::test]
async fn a_replayed_refusal_stays_a_refusal_after_the_buyer_is_funded() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 1000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let path = format!("/v1/markets/{m}/listings/{listing}/threads");
    let body = json!({"message": "4000?", "price": 4000});

    let first = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(body.clone()),
            Some("bob-try"),
        )
        .await;
    assert_refusal(&first, 422, "insufficient_funds");

    // Bob is funded in between: now he could afford it.
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/fund", bob.id),
            &s.operator,
            json!({"amount": 9000}),
        )
        .await;
    assert_status(&r, 200, "fund");
    let funded = s.snapshot(m, &[alice, bob]).await;
    assert_eq!(funded["balances"][1]["available"], 10_000);

    let replay = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(body.clone()),
            Some("bob-try"),
        )
        .await;
    assert_eq!(
        replay, first,
        "a retry never turns a refusal into a success"
    );
    assert_eq!(s.snapshot(m, &[alice, bob]).await, funded);

    // A new key is a new attempt, and it succeeds.
    let fresh = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(body),
            Some("bob-try-2"),
        )
        .await;
    assert_status(&fresh, 201, "a new key");
    assert_eq!(fresh.1["offer"]["price"], 4000);
}

#[tokio::test]
async fn keys_belong_to_the_token_that_sent_them() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 0)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let path = format!("/v1/markets/{m}/listings");
    let body = json!({"side": "sell", "title": "Lamp", "category": "home", "price": 100});

    let a = s
        .call(
            Method::POST,
            &path,
            Some(&alice.agent),
            Some(body.clone()),
            Some("same"),
        )
        .await;
    let b = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(body.clone()),
            Some("same"),
        )
        .await;
    assert_status(&a, 201, "Alice");
    assert_status(&b, 201, "Bob");
    assert_ne!(a.1["id"], b.1["id"], "two listings, one each");
    assert_eq!(a.1["owner"], alice.id);
    assert_eq!(b.1["owner"], bob.id);
    let listings = s.get_ok(&path, &s.operator).await;
    assert_eq!(listings["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn creating_a_market_twice_with_one_key_creates_it_once() {
    let s = Server::start().await;
    let body = json!({"name": "Experiment A", "currency": "eur"});
    let first = s
        .call(
            Method::POST,
            "/v1/markets",
            Some(&s.operator),
            Some(body.clone()),
            Some("market-a"),
        )
        .await;
    assert_status(&first, 201, "create");
    assert_eq!(first.1["currency"], "EUR");
    let again = s
        .call(
            Method::POST,
            "/v1/markets",
            Some(&s.operator),
            Some(body),
            Some("market-a"),
        )
        .await;
    assert_eq!(again, first);
    let markets = s.get_ok("/v1/markets", &s.operator).await;
    assert_eq!(ids(&markets["items"]), [first.1["id"].as_i64().unwrap()]);
}

/// Registering a participant replays the participant, but not its credentials: secrets are stored
/// only as hashes, so the stored response holds a placeholder where the tokens were.
#[tokio::test]
async fn a_replayed_registration_returns_the_participant_without_its_secrets() {
    let s = Server::start().await;
    let m = s.market().await;
    let path = format!("/v1/markets/{m}/participants");
    let body = json!({"name": "Carol", "budget": 500});
    let first = s
        .call(
            Method::POST,
            &path,
            Some(&s.operator),
            Some(body.clone()),
            Some("carol"),
        )
        .await;
    assert_status(&first, 201, "register");
    let token = first.1["agent_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("hgl_"));
    let before = s.snapshot(m, &[]).await;

    let again = s
        .call(
            Method::POST,
            &path,
            Some(&s.operator),
            Some(body),
            Some("carol"),
        )
        .await;
    assert_status(&again, 201, "replay");
    assert_eq!(again.1["participant"], first.1["participant"]);
    for t in ["agent_token", "principal_token"] {
        let shown = again.1[t].as_str().unwrap();
        assert!(!shown.starts_with("hgl_"), "{t} is not replayed: {shown}");
    }
    assert_eq!(s.snapshot(m, &[]).await, before, "one Carol, one budget");
    // The first response's token still works.
    let me = s.get_ok("/v1/me", &token).await;
    assert_eq!(me["participant_id"], first.1["participant"]["id"]);
}
