//! Issue 15, the edges around the market's rules, through the real server: control characters
//! refused alike on both databases, bodies that must be JSON objects, an explicit `null` to reopen
//! a market, bounded durations and times, bounded and paged thread messages and deal notes, and
//! `Retry-After` on 429s. One behaviour per test.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// A deal in dispute between `alice` (seller) and `bob` (buyer): `(market, alice, bob, deal)`.
async fn disputed(s: &Server) -> (i64, Party, Party, i64) {
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (p[0].clone(), p[1].clone());
    let listing = s.sell(m, &alice, "Lamp", 3000).await;
    let (_, offer) = s.bid(m, &bob, listing, 3000).await;
    let deal = s.accept(m, &alice, offer).await["id"].as_i64().unwrap();
    let path = |step: &str| format!("/v1/markets/{m}/deals/{deal}/{step}");
    let r = s.post(&path("handover"), &alice.agent, json!({})).await;
    assert_status(&r, 200, "handover");
    let r = s
        .post(&path("dispute"), &bob.agent, json!({"reason": "broken"}))
        .await;
    assert_status(&r, 200, "dispute");
    (m, alice, bob, deal)
}

async fn nul_bytes_are_refused_with_invalid_request(s: &Server) {
    let (m, p) = s.market_with(&[("Alice", 0)]).await;
    let alice = &p[0];
    let r = s
        .get(&format!("/v1/markets/{m}/listings?q=a%00b"), &alice.agent)
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "a\u{0}b", "category": "misc", "price": 100}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants"),
            &s.operator,
            json!({"name": "Eve\u{0}", "budget": 0}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "x\u{1b}[2J", "currency": "USD"}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // Refused in the core too, for clients that never cross HTTP (MCP, web, in-process): the
    // message names the field, and no listing was made.
    assert!(
        r.1["error"]["message"].as_str().unwrap().contains("U+001B"),
        "{}",
        r.1
    );
    let listings = s
        .get_ok(&format!("/v1/markets/{m}/listings"), &alice.agent)
        .await;
    assert_eq!(listings["items"], json!([]));
    // Tabs and line breaks are text.
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Desk", "description": "oak\n\tsolid", "category": "misc", "price": 100}),
        )
        .await;
    assert_status(&r, 201, "line breaks and tabs are text");
}

#[tokio::test]
async fn nul_bytes_are_refused_on_sqlite() {
    nul_bytes_are_refused_with_invalid_request(&Server::start().await).await;
}

#[tokio::test]
async fn nul_bytes_are_refused_on_postgres() {
    if let Some(s) = Server::postgres().await {
        nul_bytes_are_refused_with_invalid_request(&s).await;
    }
}

#[tokio::test]
async fn a_json_array_is_refused_where_an_object_is_expected() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let listing = s.sell(m, &p[0], "Bike", 5000).await;
    let (thread, _) = s.bid(m, &p[1], listing, 4000).await;
    let r = s
        .raw(
            Method::POST,
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            Some(&p[1].agent),
            Some("[1,2]".into()),
            None,
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let thread = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &p[1].agent)
        .await;
    assert_eq!(thread["offers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_refused() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0)]).await;
    let r = s
        .client
        .post(s.url(&format!("/v1/markets/{m}/listings")))
        .header("Authorization", format!("Bearer {}", p[0].agent))
        .header("Content-Type", "text/plain")
        .body(r#"{"side": "sell", "title": "Bike", "category": "misc", "price": 100}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

#[tokio::test]
async fn an_empty_closing_time_body_does_not_reopen_a_closed_market() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Closing", "currency": "USD",
            "rules": {"closes_at": START_MS + 60_000}}))
        .await;
    let path = format!("/v1/markets/{m}/closes_at");
    let r = s
        .raw(
            Method::PUT,
            &path,
            Some(&s.operator),
            Some(String::new()),
            None,
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s.put(&path, &s.operator, json!({})).await;
    assert_refusal(&r, 422, "invalid_request");
    let market = s.get_ok(&format!("/v1/markets/{m}"), &s.operator).await;
    assert_eq!(market["rules"]["closes_at"], START_MS + 60_000);
    let r = s.put(&path, &s.operator, json!({"closes_at": null})).await;
    assert_status(&r, 200, "an explicit null reopens");
    assert_eq!(r.1["rules"]["closes_at"], Value::Null);
}

/// Durations past ten years are refused (errors.rs); at the bound, an offer is born live.
#[tokio::test]
async fn an_offer_lives_as_long_as_the_longest_rule_allows() {
    let s = Server::start().await;
    // Ten years is the longest a rule may last, and such a market works.
    let ten_years = 3650 * 86_400_000_i64;
    let m = s
        .create_market(json!({"name": "Patient", "currency": "USD",
            "rules": {"offer_ttl_ms": ten_years, "confirmation_window_ms": ten_years}}))
        .await;
    let a = s.participant(m, "Alice", 0).await;
    let b = s.participant(m, "Bob", 5000).await;
    let listing = s.sell(m, &a, "Chair", 100).await;
    let (thread, _) = s.bid(m, &b, listing, 100).await;
    let t = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &b.agent)
        .await;
    assert_eq!(
        t["offers"][0]["expires_at"].as_i64().unwrap(),
        START_MS + ten_years,
        "an offer is born live, its expiry ten years ahead"
    );
}

#[tokio::test]
async fn a_simulated_clock_never_moves_past_the_year_9999() {
    let s = Server::start().await;
    let last = 253_402_300_799_999_i64;
    let m = s
        .create_market(
            json!({"name": "Late", "currency": "USD", "clock": "simulated",
            "sim_start_ms": last - 1000}),
        )
        .await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/clock/advance"),
            &s.operator,
            json!({"by_ms": 86_400_000}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let market = s.get_ok(&format!("/v1/markets/{m}"), &s.operator).await;
    assert_eq!(market["sim_now"], last - 1000, "the clock did not wrap");
}

/// A spammer's messages no longer bury the owner's reply: each party posts at most
/// `MAX_POSTS_PER_PARTY` messages and offers, a thread read holds them all, and the messages
/// page newest first.
#[tokio::test]
async fn a_party_posts_a_bounded_number_of_messages_and_the_owners_reply_stays_visible() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (thread, _) = s.bid(m, bob, listing, 4000).await;
    let path = format!("/v1/markets/{m}/threads/{thread}/messages");
    let cap = haggle_api::haggle_core::negotiation::MAX_POSTS_PER_PARTY;
    // The opening offer was Bob's first post.
    for i in 1..cap {
        let r = s
            .post(&path, &bob.agent, json!({"body": format!("spam {i}")}))
            .await;
        assert_status(&r, 201, "within the bound");
    }
    let r = s.post(&path, &bob.agent, json!({"body": "one more"})).await;
    assert_refusal(&r, 422, "too_many_messages");
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": 4100}),
        )
        .await;
    assert_refusal(&r, 422, "too_many_offers");
    let r = s
        .post(&path, &alice.agent, json!({"body": "No spam, please."}))
        .await;
    assert_status(&r, 201, "the owner still replies");
    let reply_id = r.1["id"].as_i64().unwrap();
    let detail = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &s.operator)
        .await;
    let messages = detail["messages"].as_array().unwrap();
    assert_eq!(
        messages.len() as u32,
        cap,
        "every message fits a thread read"
    );
    assert_eq!(messages.last().unwrap()["id"], reply_id);
    // Paged newest first: the reply first, then older pages to the very first message.
    let page = s.get_ok(&format!("{path}?limit=100"), &bob.agent).await;
    assert_eq!(page["items"][0]["id"], reply_id);
    let mut seen = page["items"].as_array().unwrap().len();
    let mut cursor = page["next_cursor"].clone();
    while let Some(c) = cursor.as_str() {
        let next = s
            .get_ok(&format!("{path}?limit=100&cursor={c}"), &bob.agent)
            .await;
        let items = next["items"].as_array().unwrap();
        assert!(
            items
                .windows(2)
                .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64())
        );
        seen += items.len();
        cursor = next["next_cursor"].clone();
    }
    assert_eq!(seen as u32, cap, "every message, once");
    // Someone outside the thread reads none of it.
    let carol = s.participant(m, "Carol", 0).await;
    let r = s.get(&path, &carol.agent).await;
    assert_refusal(&r, 403, "forbidden");
}

/// A buyer's flood of notes no longer hides the seller's evidence from the arbiter: notes are
/// bounded per party and paged newest first.
#[tokio::test]
async fn a_party_adds_a_bounded_number_of_notes_and_the_newest_come_first() {
    let s = Server::start().await;
    let (m, alice, bob, deal) = disputed(&s).await;
    let evidence = format!("/v1/markets/{m}/deals/{deal}/evidence");
    let cap = haggle_api::haggle_core::lifecycle::MAX_NOTES_PER_PARTY;
    // The dispute's reason is Bob's first note.
    for i in 1..cap {
        let r = s
            .post(&evidence, &bob.agent, json!({"body": format!("note {i}")}))
            .await;
        assert_status(&r, 201, "within the bound");
    }
    let r = s
        .post(&evidence, &bob.agent, json!({"body": "one more"}))
        .await;
    assert_refusal(&r, 422, "too_many_notes");
    let r = s
        .post(
            &evidence,
            &alice.agent,
            json!({"body": "It worked when it left."}),
        )
        .await;
    assert_status(&r, 201, "the seller's evidence");
    let notes = format!("/v1/markets/{m}/deals/{deal}/notes");
    let page = s.get_ok(&format!("{notes}?limit=10"), &s.operator).await;
    assert_eq!(page["items"][0]["body"], "It worked when it left.");
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    let next = page["next_cursor"].as_str().expect("more pages");
    let older = s
        .get_ok(&format!("{notes}?limit=10&cursor={next}"), &s.operator)
        .await;
    assert!(
        older["items"][0]["id"].as_i64() < page["items"][9]["id"].as_i64(),
        "the next page is older"
    );
}

#[tokio::test]
async fn a_429_says_when_to_retry() {
    let s = Server::with_config(haggle_service::Config {
        rate_per_sec: 1,
        ..haggle_service::Config::default()
    })
    .await;
    let mut last = None;
    for _ in 0..5 {
        let r = s
            .client
            .get(s.url("/v1/markets"))
            .header("Authorization", format!("Bearer {}", s.operator))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("the burst runs out");
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!((1..=60).contains(&after), "Retry-After: {after}");
    // Waiting that long is enough.
    s.advance(after as i64 * 1000);
    assert_status(
        &s.get("/v1/me", &s.operator).await,
        200,
        "after Retry-After",
    );
}

#[tokio::test]
async fn the_markets_list_is_paged_and_a_market_token_sees_only_its_market() {
    let s = Server::start().await;
    let ids = [s.market().await, s.market().await, s.market().await];
    let first = s.get_ok("/v1/markets?limit=2", &s.operator).await;
    let page: Vec<i64> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(page, ids[..2]);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = s
        .get_ok(&format!("/v1/markets?limit=2&cursor={cursor}"), &s.operator)
        .await;
    assert_eq!(second["items"][0]["id"], ids[2]);
    assert_eq!(second["next_cursor"], Value::Null, "{second}");
    let r = s.get("/v1/markets?limit=501", &s.operator).await;
    assert_refusal(&r, 422, "invalid_request");

    let observer = s.observer(ids[1]).await;
    let mine = s.get_ok("/v1/markets", &observer).await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["items"][0]["id"], ids[1]);
}
