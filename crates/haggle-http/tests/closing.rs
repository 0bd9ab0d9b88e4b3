//! A market's closing time over the HTTP API (an extension of the spec): the 409 `market_closed`
//! refusal, the summary's time left on a simulated clock advanced across the close, the
//! operator's `PUT /closes_at`, and the ledger after a close.

mod support;

use haggle_core::{DAY_MS, HOUR_MS};
use reqwest::Method;
use serde_json::json;
use support::*;

/// A simulated market that closes a day after it starts, with a seller and a buyer.
async fn closing_market(s: &Server) -> (i64, Party, Party) {
    let m = s
        .create_market(json!({
            "name": "Closing", "clock": "simulated", "sim_start_ms": START_MS,
            "rules": {"closes_at": START_MS + DAY_MS},
        }))
        .await;
    let seller = s.participant(m, "Ada", 0).await;
    let buyer = s.participant(m, "Ben", 10_000).await;
    (m, seller, buyer)
}

async fn advance(s: &Server, m: i64, by_ms: i64) {
    let r = s
        .post(
            &format!("/v1/markets/{m}/clock/advance"),
            &s.operator,
            json!({"by_ms": by_ms}),
        )
        .await;
    assert_status(&r, 200, "advance the clock");
}

#[tokio::test]
async fn offer_after_close_is_refused_with_409_market_closed() {
    let s = Server::start().await;
    let (m, seller, buyer) = closing_market(&s).await;
    let l = s.sell(m, &seller, "Lamp", 3_000).await;
    let (t, _) = s.bid(m, &buyer, l, 2_000).await;
    advance(&s, m, DAY_MS).await;
    let before = s.snapshot(m, &[&seller, &buyer]).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{t}/offers"),
            &seller.agent,
            json!({"price": 2_500}),
        )
        .await;
    assert_refusal(&r, 409, "market_closed");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("closed at 2023-11-15 22:13 UTC"),
        "{message}"
    );
    assert_eq!(s.snapshot(m, &[&seller, &buyer]).await, before);
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &seller.agent,
            json!({"side": "sell", "title": "Late", "category": "misc", "price": 100}),
        )
        .await;
    assert_refusal(&r, 409, "market_closed");
}

#[tokio::test]
async fn summary_counts_time_left_down_across_the_close() {
    let s = Server::start().await;
    let (m, seller, buyer) = closing_market(&s).await;
    let l = s.sell(m, &seller, "Lamp", 3_000).await;
    s.bid(m, &buyer, l, 2_000).await;
    let path = format!("/v1/markets/{m}/summary");
    let sum = s.get_ok(&path, &buyer.agent).await;
    assert_eq!(sum["closes_at"], START_MS + DAY_MS);
    assert_eq!(sum["time_left_ms"], DAY_MS);
    assert_eq!(sum["closed"], false);
    advance(&s, m, 6 * HOUR_MS).await;
    let sum = s.get_ok(&path, &buyer.agent).await;
    assert_eq!(sum["time_left_ms"], 18 * HOUR_MS);
    advance(&s, m, 18 * HOUR_MS).await;
    let sum = s.get_ok(&path, &buyer.agent).await;
    assert_eq!(sum["time_left_ms"], 0);
    assert_eq!(sum["closed"], true);
    // The advance swept the close: the listing expired and the buyer's offer no longer commits.
    let listing = s
        .get_ok(&format!("/v1/markets/{m}/listings/{l}"), &buyer.agent)
        .await;
    assert_eq!(listing["status"], "expired", "{listing}");
    assert_eq!(s.balance(m, buyer.id).await["committed_to_offers"], 0);
}

#[tokio::test]
async fn an_open_ended_market_has_no_time_left() {
    let s = Server::start().await;
    let m = s.market().await;
    let sum = s
        .get_ok(&format!("/v1/markets/{m}/summary"), &s.operator)
        .await;
    assert_eq!(sum["closes_at"], serde_json::Value::Null);
    assert_eq!(sum["time_left_ms"], serde_json::Value::Null);
    assert_eq!(sum["closed"], false);
}

#[tokio::test]
async fn creating_a_market_that_closes_before_its_clock_starts_is_refused() {
    let s = Server::start().await;
    let r = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "Late", "rules": {"closes_at": START_MS - 1}}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rules.closes_at")
    );
}

#[tokio::test]
async fn the_operator_moves_the_closing_time_and_a_replay_returns_the_first_answer() {
    let s = Server::start().await;
    let (m, seller, _) = closing_market(&s).await;
    let path = format!("/v1/markets/{m}/closes_at");
    let later = json!({"closes_at": START_MS + 7 * DAY_MS});
    let first = s
        .call(
            Method::PUT,
            &path,
            Some(&s.operator),
            Some(later.clone()),
            Some("move-1"),
        )
        .await;
    assert_status(&first, 200, "move the closing time");
    assert_eq!(first.1["rules"]["closes_at"], START_MS + 7 * DAY_MS);
    let again = s
        .call(
            Method::PUT,
            &path,
            Some(&s.operator),
            Some(later),
            Some("move-1"),
        )
        .await;
    assert_eq!(again, first);
    let moves = s
        .events(m, &s.operator)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "market_closing_set")
        .count();
    assert_eq!(moves, 1, "a replay appends nothing");
    let r = s
        .put(&path, &seller.agent, json!({"closes_at": null}))
        .await;
    assert_refusal(&r, 403, "forbidden");
    let r = s.put(&path, &s.operator, json!({"closes_at": -1})).await;
    assert_refusal(&r, 422, "invalid_request");
    // Extended: trading goes on after the first closing time.
    advance(&s, m, 2 * DAY_MS).await;
    s.sell(m, &seller, "Lamp", 3_000).await;
}

#[tokio::test]
async fn ledger_verifies_after_a_close() {
    let s = Server::start().await;
    let (m, seller, buyer) = closing_market(&s).await;
    let sold = s.sell(m, &seller, "Lamp", 3_000).await;
    let (_, o) = s.bid(m, &buyer, sold, 2_000).await;
    let deal = s.accept(m, &seller, o).await["id"].as_i64().unwrap();
    let open = s.sell(m, &seller, "Chair", 1_000).await;
    s.bid(m, &buyer, open, 900).await;
    advance(&s, m, DAY_MS).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{deal}/handover"),
            &seller.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "handover after the close");
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{deal}/confirm"),
            &buyer.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "confirm after the close");
    let v = s
        .get_ok(&format!("/v1/markets/{m}/ledger/verify"), &s.operator)
        .await;
    assert_eq!(v["breaches"], json!([]), "{v}");
}
