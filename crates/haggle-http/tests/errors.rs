//! Every error code of the spec, provoked over HTTP. Each refusal has the spec's status and body
//! `{"error": {"code", "message"}}`, and changes nothing: the market's event log, balances,
//! listings, threads and deals are the same before and after.

mod support;

use haggle_service::Config;
use reqwest::Method;
use serde_json::json;
use support::*;

#[tokio::test]
async fn unauthorized_without_or_with_a_bad_token() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let before = s.snapshot(m, &[&p[0]]).await;
    let listing = json!({"side": "sell", "title": "Lamp", "category": "home", "price": 100});
    let path = format!("/v1/markets/{m}/listings");

    let r = s.call(Method::GET, "/v1/me", None, None, None).await;
    assert_refusal(&r, 401, "unauthorized");
    let r = s
        .call(Method::POST, &path, None, Some(listing.clone()), None)
        .await;
    assert_refusal(&r, 401, "unauthorized");
    let r = s
        .call(
            Method::POST,
            &path,
            Some("hgl_not_a_real_token"),
            Some(listing.clone()),
            None,
        )
        .await;
    assert_refusal(&r, 401, "unauthorized");
    let r = s
        .call(Method::GET, &path, Some("hgl_not_a_real_token"), None, None)
        .await;
    assert_refusal(&r, 401, "unauthorized");
    // Not a bearer credential at all.
    let resp = s
        .client
        .get(s.url("/v1/me"))
        .header("Authorization", format!("Basic {}", p[0].agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    assert_eq!(s.snapshot(m, &[&p[0]]).await, before);
}

#[tokio::test]
async fn forbidden_for_another_participants_balance_and_for_an_agent_creating_a_market() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000), ("Bob", 2000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let before = s.snapshot(m, &[alice, bob]).await;
    let markets_before = s.get_ok("/v1/markets", &s.operator).await;

    let r = s
        .get(
            &format!("/v1/markets/{m}/participants/{}/balance", bob.id),
            &alice.agent,
        )
        .await;
    assert_refusal(&r, 403, "forbidden");
    let r = s
        .post("/v1/markets", &alice.agent, json!({"name": "Mine"}))
        .await;
    assert_refusal(&r, 403, "forbidden");
    let r = s
        .post("/v1/markets", &alice.principal, json!({"name": "Mine"}))
        .await;
    assert_refusal(&r, 403, "forbidden");
    // An agent cannot fund itself either.
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/fund", alice.id),
            &alice.agent,
            json!({"amount": 1_000_000}),
        )
        .await;
    assert_refusal(&r, 403, "forbidden");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
    assert_eq!(s.get_ok("/v1/markets", &s.operator).await, markets_before);
}

#[tokio::test]
async fn not_found_for_unknown_listing_offer_market_and_route() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let alice = &p[0];
    let before = s.snapshot(m, &[alice]).await;

    let r = s
        .get(&format!("/v1/markets/{m}/listings/999"), &alice.agent)
        .await;
    assert_refusal(&r, 404, "not_found");
    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/999/accept"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 404, "not_found");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/999/threads"),
            &alice.agent,
            json!({"message": "hi"}),
        )
        .await;
    assert_refusal(&r, 404, "not_found");
    let r = s.get("/v1/markets/999", &s.operator).await;
    assert_refusal(&r, 404, "not_found");
    let r = s.get("/v1/no/such/route", &s.operator).await;
    assert_refusal(&r, 404, "not_found");
    // An unknown route answers 404 before (and without) authentication.
    let r = s.call(Method::GET, "/nope", None, None, None).await;
    assert_refusal(&r, 404, "not_found");

    assert_eq!(s.snapshot(m, &[alice]).await, before);
}

#[tokio::test]
async fn invalid_request_for_bad_json_unknown_fields_bad_query_and_bad_cursor() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Chair", 1000).await;
    let (thread, _) = s.bid(m, bob, listing, 800).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    // Malformed JSON.
    let r = s
        .raw(
            Method::POST,
            &format!("/v1/markets/{m}/listings"),
            Some(&alice.agent),
            Some(r#"{"side": "sell", "title": "Desk", "#.into()),
            None,
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // An unknown field.
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": 900, "discount": 5}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Desk", "category": "home", "price": 900,
                   "descripton": "a typo must not be dropped silently"}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // A wrong type.
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": "nine hundred"}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // Bad query parameters.
    for q in [
        format!("/v1/markets/{m}/events?after=yesterday"),
        format!("/v1/markets/{m}/listings?sort=dearest"),
        format!("/v1/markets/{m}/listings?min_price=-1"),
        format!("/v1/markets/{m}/deals?limit=many"),
    ] {
        let r = s.get(&q, &bob.agent).await;
        assert_refusal(&r, 422, "invalid_request");
    }
    // Bad cursors.
    for q in [
        format!("/v1/markets/{m}/listings?cursor=zzz"),
        format!("/v1/markets/{m}/listings?sort=cheapest&cursor=12"),
        format!("/v1/markets/{m}/listings?q=bike&cursor=12"),
        format!("/v1/markets/{m}/threads?cursor=zzz"),
        format!("/v1/markets/{m}/deals?cursor=zzz"),
        format!("/v1/markets/{m}/participants?cursor=zzz"),
    ] {
        let r = s.get(&q, &bob.agent).await;
        assert_refusal(&r, 422, "invalid_request");
    }
    // A path id that is not a number.
    let r = s
        .get(&format!("/v1/markets/{m}/listings/abc"), &bob.agent)
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // A rule of the request itself: an empty title.
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": " ", "category": "x", "price": 5}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

/// A page size outside its documented bounds is refused naming `limit`, not silently clamped.
#[tokio::test]
async fn invalid_request_for_a_limit_outside_its_bounds() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0)]).await;
    let alice = &p[0];
    for q in [
        format!("/v1/markets/{m}/listings?limit=0"),
        format!("/v1/markets/{m}/listings?limit=501"),
        format!("/v1/markets/{m}/threads?limit=501"),
        format!("/v1/markets/{m}/deals?limit=0"),
        format!("/v1/markets/{m}/participants?limit=100000"),
        format!("/v1/markets/{m}/events?limit=1001"),
        format!("/v1/markets/{m}/events?limit=0"),
    ] {
        let r = s.get(&q, &alice.agent).await;
        assert_refusal(&r, 422, "invalid_request");
        let message = r.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("limit"), "{q}: {message}");
    }
    for q in [
        format!("/v1/markets/{m}/listings?limit=500"),
        format!("/v1/markets/{m}/events?limit=1000"),
        format!("/v1/markets/{m}/deals?limit=1"),
    ] {
        s.get_ok(&q, &alice.agent).await;
    }
}

/// Durations and clocks far enough out to overflow deadline arithmetic are refused at creation
/// (they used to be accepted, and the first offer, acceptance or handover then panicked).
#[tokio::test]
async fn invalid_request_for_rule_durations_and_clock_starts_out_of_range() {
    let s = Server::start().await;
    for field in [
        "offer_ttl_ms",
        "confirmation_window_ms",
        "approval_window_ms",
        "thread_time_limit_ms",
        "rating_window_ms",
        "collection_window_ms",
    ] {
        let body = json!({"name": "M", "rules": {field: i64::MAX}});
        let r = s.post("/v1/markets", &s.operator, body).await;
        assert_refusal(&r, 422, "invalid_request");
        let message = r.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    for start in [i64::MAX, -1] {
        let body = json!({"name": "S", "clock": "simulated", "sim_start_ms": start});
        let r = s.post("/v1/markets", &s.operator, body).await;
        assert_refusal(&r, 422, "invalid_request");
        assert!(
            r.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("sim_start_ms")
        );
    }
    // Ten years is still a valid rule, and trading under it works.
    let ten_years = 3650 * 86_400_000_i64;
    let m = s
        .create_market(json!({"name": "Slow", "rules": {"offer_ttl_ms": ten_years}}))
        .await;
    let (seller, buyer) = (
        s.participant(m, "A", 0).await,
        s.participant(m, "B", 500).await,
    );
    let listing = s.sell(m, &seller, "Lamp", 100).await;
    let (_, offer) = s.bid(m, &buyer, listing, 100).await;
    s.accept(m, &seller, offer).await;
}

/// A known path with a method it does not serve is refused with the error body too (status 405).
#[tokio::test]
async fn a_wrong_method_is_refused_with_the_error_body() {
    let s = Server::start().await;
    let m = s.market().await;
    let before = s.snapshot(m, &[]).await;
    for (method, path) in [
        (Method::DELETE, format!("/v1/markets/{m}")),
        (Method::PUT, "/v1/markets".to_string()),
        (Method::GET, format!("/v1/markets/{m}/clock/advance")),
    ] {
        let r = s
            .call(method, &path, Some(&s.operator), Some(json!({})), None)
            .await;
        assert_refusal(&r, 405, "invalid_request");
    }
    assert_eq!(s.snapshot(m, &[]).await, before);
}

#[tokio::test]
async fn invalid_price_for_zero_or_negative_prices() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Chair", 1000).await;
    let (thread, _) = s.bid(m, bob, listing, 800).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Free lamp", "category": "home", "price": 0}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_price");
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": -5}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_price");
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &alice.agent,
            json!({"price": 0}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_price");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

#[tokio::test]
async fn insufficient_funds_for_an_offer_above_the_balance() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 1000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Chair", 3000).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &bob.agent,
            json!({"message": "2000?", "price": 2000}),
        )
        .await;
    assert_refusal(&r, 422, "insufficient_funds");
    // Refused as a whole: not even the thread or the message was created.
    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);

    // Funded commitments: a live offer of 800 leaves 200 for the next one.
    let (thread, _) = s.bid(m, bob, listing, 800).await;
    let other = s.sell(m, alice, "Table", 3000).await;
    let before = s.snapshot(m, &[alice, bob]).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{other}/threads"),
            &bob.agent,
            json!({"price": 300}),
        )
        .await;
    assert_refusal(&r, 422, "insufficient_funds");
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": 1001}),
        )
        .await;
    assert_refusal(&r, 422, "insufficient_funds");
    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

#[tokio::test]
async fn mandate_exceeded_for_an_offer_above_the_per_deal_cap() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 10_000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Camera", 5000).await;
    let r = s
        .put(
            &format!("/v1/markets/{m}/participants/{}/mandate", bob.id),
            &bob.principal,
            json!({"per_deal_cap": 3000}),
        )
        .await;
    assert_status(&r, 200, "the principal sets the mandate");
    let mandate = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}/mandate", bob.id),
            &bob.agent,
        )
        .await;
    assert_eq!(mandate["per_deal_cap"], 3000);
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &bob.agent,
            json!({"price": 3500}),
        )
        .await;
    assert_refusal(&r, 422, "mandate_exceeded");
    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);

    // At the cap is fine.
    s.bid(m, bob, listing, 3000).await;
}

#[tokio::test]
async fn listing_unavailable_when_a_second_buyer_accepts_after_the_sale() {
    let s = Server::start().await;
    let (m, p) = s
        .market_with(&[("Alice", 0), ("Bob", 5000), ("Carol", 5000), ("Dave", 5000)])
        .await;
    let (alice, bob, carol, dave) = (&p[0], &p[1], &p[2], &p[3]);
    let listing = s.sell(m, alice, "Guitar", 3000).await;
    let mut offers = Vec::new();
    for buyer in [bob, carol] {
        let r = s
            .post(
                &format!("/v1/markets/{m}/listings/{listing}/threads"),
                &buyer.agent,
                json!({"message": "Is it still available?"}),
            )
            .await;
        assert_status(&r, 201, "open thread");
        let thread = r.1["thread"]["id"].as_i64().unwrap();
        offers.push(s.offer(m, alice, thread, 2800).await);
    }
    s.accept(m, bob, offers[0]).await;
    let before = s.snapshot(m, &[alice, bob, carol, dave]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{}/accept", offers[1]),
            &carol.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "listing_unavailable");
    // Nor can a newcomer open a thread on the sold listing (Carol's own thread there is void,
    // so she gets thread_closed).
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &dave.agent,
            json!({"price": 3000}),
        )
        .await;
    assert_refusal(&r, 409, "listing_unavailable");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &carol.agent,
            json!({"price": 3000}),
        )
        .await;
    assert_refusal(&r, 409, "thread_closed");

    assert_eq!(s.snapshot(m, &[alice, bob, carol, dave]).await, before);
    let b = s.balance(m, carol.id).await;
    assert_eq!(
        (b["available"].as_i64(), b["held"].as_i64()),
        (Some(5000), Some(0))
    );
}

#[tokio::test]
async fn offer_not_live_when_accepting_a_countered_offer() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (thread, first) = s.bid(m, bob, listing, 4000).await;
    s.offer(m, alice, thread, 4500).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{first}/accept"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "offer_not_live");
    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{first}/reject"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "offer_not_live");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

/// On a simulated clock the operator's advance sweeps: the offer is marked `expired` at once, and
/// a late acceptance is still refused as `offer_expired` (rule 5), not as a generic not-live offer.
#[tokio::test]
async fn offer_expired_also_after_a_simulated_clock_advance_swept_it() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Sim", "clock": "simulated", "sim_start_ms": 0}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 5000).await;
    let listing = s.sell(m, &alice, "Bike", 5000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &bob.agent,
            json!({"price": 4000, "expires_in_ms": 60_000}),
        )
        .await;
    assert_status(&r, 201, "offer");
    let offer = r.1["offer"]["id"].as_i64().unwrap();
    assert_eq!(r.1["offer"]["expires_at"], 60_000);
    let r = s
        .post(
            &format!("/v1/markets/{m}/clock/advance"),
            &s.operator,
            json!({"by_ms": 60_000}),
        )
        .await;
    assert_status(&r, 200, "advance");
    assert_eq!(r.1["now"], 60_000);
    let before = s.snapshot(m, &[&alice, &bob]).await;
    assert!(
        before["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "offer_expired" && e["payload"]["offer_id"] == offer)
    );

    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{offer}/accept"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "offer_expired");
    assert_eq!(s.snapshot(m, &[&alice, &bob]).await, before);
}

/// A real-clock market with no sweeper running: the offer stays `live` in the store past its
/// expiry, so the acceptance itself must refuse it. The service's manual clock makes this exact
/// (no sleeping): the offer lives 1000 ms and the clock moves 1000 ms.
#[tokio::test]
async fn offer_expired_when_accepting_after_the_expiry() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &bob.agent,
            json!({"price": 4000, "expires_in_ms": 1000}),
        )
        .await;
    assert_status(&r, 201, "offer with a short expiry");
    let offer = r.1["offer"]["id"].as_i64().unwrap();
    assert_eq!(r.1["offer"]["expires_at"], START_MS + 1000);
    s.advance(1000);
    let before = s.snapshot(m, &[alice, bob]).await;
    // The expired offer no longer commits Bob's funds.
    assert_eq!(before["balances"][1]["available"], 5000);

    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{offer}/accept"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "offer_expired");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
    let l = s
        .get_ok(&format!("/v1/markets/{m}/listings/{listing}"), &bob.agent)
        .await;
    assert_eq!(l["status"], "active");
}

#[tokio::test]
async fn not_your_offer_when_the_proposer_accepts_its_own_offer() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (_, offer) = s.bid(m, bob, listing, 4000).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{offer}/accept"),
            &bob.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 422, "not_your_offer");
    // And only the proposer may withdraw it.
    let r = s
        .post(
            &format!("/v1/markets/{m}/offers/{offer}/withdraw"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 422, "not_your_offer");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

#[tokio::test]
async fn too_many_offers_past_the_markets_cap() {
    let s = Server::start().await;
    let m = s
        .create_market(json!({"name": "Capped", "rules": {"max_offers_per_thread": 2}}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 5000).await;
    let listing = s.sell(m, &alice, "Bike", 5000).await;
    let (thread, _) = s.bid(m, &bob, listing, 4000).await;
    s.offer(m, &alice, thread, 4800).await;
    let view = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &bob.agent)
        .await;
    assert_eq!(view["offers_remaining"], 0);
    assert_eq!(view["elapsed_ppm"], 1_000_000);
    let before = s.snapshot(m, &[&alice, &bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": 4400}),
        )
        .await;
    assert_refusal(&r, 422, "too_many_offers");

    assert_eq!(s.snapshot(m, &[&alice, &bob]).await, before);
}

#[tokio::test]
async fn invalid_transition_when_withdrawing_a_sold_listing() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (_, offer) = s.bid(m, bob, listing, 4000).await;
    s.accept(m, alice, offer).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/withdraw"),
            &alice.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 409, "invalid_transition");

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

#[tokio::test]
async fn idempotency_conflict_for_the_same_key_with_another_body() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let path = format!("/v1/markets/{m}/listings/{listing}/threads");
    let r = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(json!({"price": 1000})),
            Some("bob-1"),
        )
        .await;
    assert_status(&r, 201, "first use of the key");
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .call(
            Method::POST,
            &path,
            Some(&bob.agent),
            Some(json!({"price": 1100})),
            Some("bob-1"),
        )
        .await;
    assert_refusal(&r, 422, "idempotency_conflict");
    // The key belongs to the request it was first used with, path included.
    let thread = before["threads"]["items"][0]["id"].as_i64().unwrap();
    let r = s
        .call(
            Method::POST,
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            Some(&bob.agent),
            Some(json!({"price": 1000})),
            Some("bob-1"),
        )
        .await;
    assert_refusal(&r, 422, "idempotency_conflict");
    // Creating a market goes through its own path in the service: the same rule holds there.
    let r = s
        .call(
            Method::POST,
            "/v1/markets",
            Some(&s.operator),
            Some(json!({"name": "One"})),
            Some("op-1"),
        )
        .await;
    assert_status(&r, 201, "create market with a key");
    let markets = s.get_ok("/v1/markets", &s.operator).await;
    let r = s
        .call(
            Method::POST,
            "/v1/markets",
            Some(&s.operator),
            Some(json!({"name": "Two"})),
            Some("op-1"),
        )
        .await;
    assert_refusal(&r, 422, "idempotency_conflict");
    assert_eq!(s.get_ok("/v1/markets", &s.operator).await, markets);

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

/// `idempotency_in_flight` needs a request that is still running when its replay arrives. To hold
/// one deterministically, the test takes SQLite's write lock on the server's database file from
/// a connection of its own (`BEGIN IMMEDIATE`): the server's write then waits in SQLite's busy
/// handler with the key claimed. Two requests with one key are sent together; whichever claims
/// the key first waits, and the other must come back at once with 409 `idempotency_in_flight`.
/// Releasing the lock lets the first finish with 201; a later replay returns that 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_in_flight_while_the_first_request_runs() {
    use futures_util::future::{Either, select};

    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let before = s.snapshot(m, &[alice, bob]).await;

    let lock = rusqlite::Connection::open(&s.db).expect("a second connection to the database");
    lock.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let send = || {
        let client = s.client.clone();
        let url = s.url(&format!("/v1/markets/{m}/listings/{listing}/threads"));
        let token = bob.agent.clone();
        tokio::spawn(async move {
            let resp = client
                .post(url)
                .header("Authorization", format!("Bearer {token}"))
                .header("Idempotency-Key", "bob-open")
                .header("Content-Type", "application/json")
                .body(r#"{"price": 1000}"#)
                .send()
                .await
                .expect("sent");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        })
    };
    let (a, b) = (send(), send());
    let (first, running) = tokio::time::timeout(std::time::Duration::from_secs(10), select(a, b))
        .await
        .map(|either| match either {
            Either::Left((r, other)) | Either::Right((r, other)) => (r.expect("task"), other),
        })
        .expect("one of the two requests answers while the other holds the key");
    assert_refusal(&first, 409, "idempotency_in_flight");
    assert!(!running.is_finished(), "the first request is still waiting");
    // Still nothing changed: the running request has not committed.
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    let done = tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the held request finishes once the lock is released")
        .expect("task");
    assert_status(&done, 201, "the first request");
    // A replay now returns the first response; exactly one thread and offer exist.
    // (The same bytes: the request hash covers the body as sent.)
    let r = s
        .raw(
            Method::POST,
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            Some(&bob.agent),
            Some(r#"{"price": 1000}"#.into()),
            Some("bob-open"),
        )
        .await;
    assert_eq!(r, done);
    let after = s.snapshot(m, &[alice, bob]).await;
    assert_eq!(after["threads"]["items"].as_array().unwrap().len(), 1);
    let offers_made = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "offer_made")
        .count();
    assert_eq!(offers_made, 1);
    assert_eq!(
        after["events"].as_array().unwrap().len(),
        before["events"].as_array().unwrap().len() + 2,
        "thread_opened and offer_made, once"
    );
}

/// One request per second with a burst of two, on the manual clock (no refill while the test
/// runs): the third quick request of a token is refused, and nothing it asked for happens.
#[tokio::test]
async fn rate_limited_past_the_tokens_burst() {
    let s = Server::with_config(Config {
        rate_per_sec: 1,
        ..Config::default()
    })
    .await;
    // The operator's two requests: the market and one participant.
    let m = s.market().await;
    let alice = s.participant(m, "Alice", 0).await;
    let r = s.get("/v1/me", &s.operator).await;
    assert_refusal(&r, 429, "rate_limited");

    assert_status(&s.get("/v1/me", &alice.agent).await, 200, "1st");
    assert_status(&s.get("/v1/me", &alice.agent).await, 200, "2nd");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Lamp", "category": "home", "price": 100}),
        )
        .await;
    assert_refusal(&r, 429, "rate_limited");

    // Two seconds later the buckets are full again; the refused listing was never made.
    s.advance(2000);
    let events = s
        .get_ok(&format!("/v1/markets/{m}/events?after=0"), &s.operator)
        .await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] != "listing_posted"),
        "{events}"
    );
    let listings = s
        .get_ok(&format!("/v1/markets/{m}/listings"), &alice.agent)
        .await;
    assert_eq!(listings["items"], json!([]));
}

#[tokio::test]
async fn agent_frozen_can_read_but_not_act() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (thread, _) = s.bid(m, bob, listing, 4000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/freeze", bob.id),
            &s.operator,
            json!({"frozen": true}),
        )
        .await;
    assert_status(&r, 200, "the operator freezes the agent");
    let before = s.snapshot(m, &[alice, bob]).await;

    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &bob.agent,
            json!({"price": 4200}),
        )
        .await;
    assert_refusal(&r, 403, "agent_frozen");
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &bob.agent,
            json!({"side": "sell", "title": "Lamp", "category": "home", "price": 100}),
        )
        .await;
    assert_refusal(&r, 403, "agent_frozen");
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/walk-away"),
            &bob.agent,
            json!({}),
        )
        .await;
    assert_refusal(&r, 403, "agent_frozen");
    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);

    // Reading still works.
    s.get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &bob.agent)
        .await;
    s.get_ok(
        &format!("/v1/markets/{m}/participants/{}/balance", bob.id),
        &bob.agent,
    )
    .await;
    s.get_ok(&format!("/v1/markets/{m}/listings"), &bob.agent)
        .await;

    // Unfrozen, it acts again.
    let r = s
        .post(
            &format!("/v1/markets/{m}/participants/{}/freeze", bob.id),
            &s.operator,
            json!({"frozen": false}),
        )
        .await;
    assert_status(&r, 200, "unfreeze");
    s.offer(m, bob, thread, 4200).await;
}

/// Issue 15: after an operator's freeze, the principal's `PUT .../mandate` cleared `frozen` and
/// the agent traded again. Only an operator lifts a freeze; the principal pauses apart.
#[tokio::test]
async fn a_principal_cannot_lift_an_operators_freeze() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let freeze = format!("/v1/markets/{m}/participants/{}/freeze", bob.id);
    let r = s.post(&freeze, &s.operator, json!({"frozen": true})).await;
    assert_status(&r, 200, "the operator freezes Bob's agent");
    let mandate = format!("/v1/markets/{m}/participants/{}/mandate", bob.id);
    let r = s
        .put(&mandate, &bob.principal, json!({"spend_cap": 4000}))
        .await;
    assert_refusal(&r, 403, "forbidden");
    let r = s
        .post(&freeze, &bob.principal, json!({"frozen": false}))
        .await;
    assert_refusal(&r, 403, "forbidden");
    let pause = format!("/v1/markets/{m}/participants/{}/pause", bob.id);
    let r = s
        .post(&pause, &bob.principal, json!({"paused": false}))
        .await;
    assert_status(&r, 200, "resuming is the principal's own switch");
    let open = format!("/v1/markets/{m}/listings/{listing}/threads");
    let r = s.post(&open, &bob.agent, json!({"message": "hi"})).await;
    assert_refusal(&r, 403, "agent_frozen");
    // The principal may still change the limits, keeping the freeze as it is.
    let r = s
        .put(
            &mandate,
            &bob.principal,
            json!({"spend_cap": 4000, "frozen": true}),
        )
        .await;
    assert_status(&r, 200, "limits change, the freeze stays");
    let r = s.post(&open, &bob.agent, json!({"message": "hi"})).await;
    assert_refusal(&r, 403, "agent_frozen");
    let r = s.post(&freeze, &s.operator, json!({"frozen": false})).await;
    assert_status(&r, 200, "the operator lifts the freeze");
    let r = s.post(&open, &bob.agent, json!({"message": "hi"})).await;
    assert_status(&r, 201, "the agent acts again");
}

#[tokio::test]
async fn a_principal_pauses_and_resumes_its_agent() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let pause = format!("/v1/markets/{m}/participants/{}/pause", bob.id);
    let r = s
        .post(&pause, &bob.principal, json!({"paused": true}))
        .await;
    assert_status(&r, 200, "pause");
    let open = format!("/v1/markets/{m}/listings/{listing}/threads");
    let r = s.post(&open, &bob.agent, json!({"message": "hi"})).await;
    assert_refusal(&r, 403, "agent_paused");
    let r = s.post(&pause, &bob.agent, json!({"paused": false})).await;
    assert_refusal(&r, 403, "forbidden");
    let r = s
        .post(&pause, &bob.principal, json!({"paused": false}))
        .await;
    assert_status(&r, 200, "resume");
    let r = s.post(&open, &bob.agent, json!({"message": "hi"})).await;
    assert_status(&r, 201, "the agent acts again");
}

#[tokio::test]
async fn thread_closed_after_walking_away() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (thread, offer) = s.bid(m, bob, listing, 4000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/walk-away"),
            &bob.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "walk away");
    let view = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &alice.agent)
        .await;
    assert_eq!(view["thread"]["status"], "broken");
    assert_eq!(view["offers"][0]["id"], offer);
    assert_eq!(view["offers"][0]["state"], "void");
    let before = s.snapshot(m, &[alice, bob]).await;

    for who in [bob, alice] {
        let r = s
            .post(
                &format!("/v1/markets/{m}/threads/{thread}/messages"),
                &who.agent,
                json!({"body": "wait, come back"}),
            )
            .await;
        assert_refusal(&r, 409, "thread_closed");
        let r = s
            .post(
                &format!("/v1/markets/{m}/threads/{thread}/offers"),
                &who.agent,
                json!({"price": 4500}),
            )
            .await;
        assert_refusal(&r, 409, "thread_closed");
    }

    assert_eq!(s.snapshot(m, &[alice, bob]).await, before);
}

/// The README's walk-through: accepting the countered offer answers `offer_not_live` while the
/// listing is for sale, and `listing_unavailable` once the counter's deal sold it.
#[tokio::test]
async fn a_countered_offer_is_offer_not_live_before_the_deal_and_listing_unavailable_after() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 10_000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Red road bike", 5_000).await;
    let (thread, first) = s.bid(m, bob, listing, 4_000).await;
    let counter = s.offer(m, alice, thread, 4_500).await;
    let accept_first = format!("/v1/markets/{m}/offers/{first}/accept");
    let r = s.post(&accept_first, &alice.agent, json!({})).await;
    assert_refusal(&r, 409, "offer_not_live");
    s.accept(m, bob, counter).await;
    let r = s.post(&accept_first, &alice.agent, json!({})).await;
    assert_refusal(&r, 409, "listing_unavailable");
}
