//! The reads for people watching and running a market over the JSON API: the summary, disputes
//! waiting for a ruling, the survey, and ratings by a principal.

mod support;

use serde_json::json;
use support::*;

/// A deal between `seller` and `buyer` at `price`, handed over; returns the deal id.
async fn handed_over(s: &Server, m: i64, seller: &Party, buyer: &Party, price: i64) -> i64 {
    let l = s.sell(m, seller, "Lamp", price).await;
    let (_, o) = s.bid(m, buyer, l, price).await;
    let d = s.accept(m, seller, o).await["id"].as_i64().unwrap();
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{d}/handover"),
            &seller.agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "handover");
    d
}

#[tokio::test]
async fn summary_counts_deals_volume_and_median_for_every_reader() {
    let s = Server::start().await;
    let (m, p) = s
        .market_with(&[("Alice", 0), ("Bob", 10_000), ("Cleo", 10_000)])
        .await;
    let empty = s
        .get_ok(&format!("/v1/markets/{m}/summary"), &p[2].agent)
        .await;
    assert_eq!(empty["deals"], 0);
    assert_eq!(empty["median_price"], serde_json::Value::Null);
    assert_eq!(empty["participants"], 3);
    handed_over(&s, m, &p[0], &p[1], 1_000).await;
    handed_over(&s, m, &p[0], &p[1], 3_000).await;
    let d = handed_over(&s, m, &p[0], &p[2], 2_000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{d}/confirm"),
            &p[2].agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "confirm");
    // Cleo has no part in the first two deals and still sees the aggregates.
    let sum = s
        .get_ok(&format!("/v1/markets/{m}/summary"), &p[2].agent)
        .await;
    assert_eq!(sum["deals"], 3);
    assert_eq!(sum["volume"], 6_000);
    assert_eq!(sum["median_price"], 2_000);
    assert_eq!(sum["open_deals"], 2);
    assert_eq!(sum["completed_deals"], 1);
    assert_eq!(sum["currency"], "USD");
    let other = s.market().await;
    let r = s
        .get(&format!("/v1/markets/{other}/summary"), &p[2].agent)
        .await;
    assert_refusal(&r, 403, "forbidden");
}

#[tokio::test]
async fn disputes_list_only_disputed_deals_for_operators() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 10_000)]).await;
    let quiet = handed_over(&s, m, &p[0], &p[1], 1_000).await;
    let d = handed_over(&s, m, &p[0], &p[1], 2_000).await;
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{d}/dispute"),
            &p[1].agent,
            json!({"reason": "broken"}),
        )
        .await;
    assert_status(&r, 200, "dispute");
    let list = s
        .get_ok(&format!("/v1/markets/{m}/disputes"), &s.operator)
        .await;
    assert_eq!(ids(&list["items"]), vec![d]);
    assert_ne!(d, quiet);
    for token in [&p[0].agent, &p[1].principal, &s.observer(m).await] {
        let r = s.get(&format!("/v1/markets/{m}/disputes"), token).await;
        assert_refusal(&r, 403, "forbidden");
    }
}

#[tokio::test]
async fn a_principal_answers_the_survey_and_operators_read_the_answers() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 0)]).await;
    let path = format!("/v1/markets/{m}/participants/{}/survey", p[0].id);
    assert_eq!(
        s.get_ok(&path, &p[0].principal).await,
        serde_json::Value::Null
    );
    let answer = json!({"fairness": 6, "satisfaction": 5, "would_pay": 500, "comment": "fine"});
    let r = s.put(&path, &p[0].principal, answer.clone()).await;
    assert_status(&r, 200, "answer");
    assert_eq!(r.1["fairness"], 6);
    let again = json!({"fairness": 7, "satisfaction": 5, "would_pay": 0});
    assert_status(&s.put(&path, &p[0].principal, again).await, 200, "replace");
    assert_eq!(s.get_ok(&path, &p[0].agent).await["fairness"], 7);
    // Only its own principal answers; off-scale answers are refused.
    for token in [&p[0].agent, &p[1].principal, &s.operator] {
        assert_refusal(&s.put(&path, token, answer.clone()).await, 403, "forbidden");
    }
    for bad in [
        json!({"fairness": 0, "satisfaction": 5, "would_pay": 0}),
        json!({"fairness": 8, "satisfaction": 5, "would_pay": 0}),
        json!({"fairness": 4, "satisfaction": 9, "would_pay": 0}),
        json!({"fairness": 4, "satisfaction": 5, "would_pay": -1}),
    ] {
        assert_refusal(
            &s.put(&path, &p[0].principal, bad).await,
            422,
            "invalid_request",
        );
    }
    assert_refusal(&s.get(&path, &p[1].principal).await, 403, "forbidden");
    let all = s
        .get_ok(&format!("/v1/markets/{m}/survey"), &s.observer(m).await)
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(all["items"][0]["participant_id"], p[0].id);
    let r = s
        .get(&format!("/v1/markets/{m}/survey"), &p[0].principal)
        .await;
    assert_refusal(&r, 403, "forbidden");
}

#[tokio::test]
async fn a_principal_rates_its_counterparty() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 10_000)]).await;
    let d = handed_over(&s, m, &p[0], &p[1], 1_000).await;
    let rate = format!("/v1/markets/{m}/deals/{d}/ratings");
    let early = s.post(&rate, &p[1].principal, json!({"score": 5})).await;
    assert_refusal(&early, 409, "invalid_transition");
    let r = s
        .post(
            &format!("/v1/markets/{m}/deals/{d}/confirm"),
            &p[1].agent,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "confirm");
    let r = s
        .post(&rate, &p[1].principal, json!({"score": 4, "comment": "ok"}))
        .await;
    assert_status(&r, 201, "principal rates");
    assert_eq!(r.1["rater"], p[1].id);
    assert_eq!(r.1["ratee"], p[0].id);
    // One rating per side: the agent cannot rate again for the same participant.
    let twice = s.post(&rate, &p[1].agent, json!({"score": 1})).await;
    assert!(
        twice.0 >= 400 && twice.0 < 500,
        "second rating refused: {twice:?}"
    );
    let obs = s.observer(m).await;
    assert_refusal(
        &s.post(&rate, &obs, json!({"score": 1})).await,
        403,
        "forbidden",
    );
}

/// The summary's median is the experiment report's (`haggle_core::figures::median`): of an even
/// count, the mean of the middle two rounded down, not the lower middle.
#[tokio::test]
async fn the_summary_median_of_an_even_count_is_the_reports() {
    let s = Server::start().await;
    let (m, p) = s
        .market_with(&[("Alice", 0), ("Bob", 10_000), ("Cleo", 10_000)])
        .await;
    for (buyer, price) in [(1, 1_000), (1, 3_000), (2, 2_000), (2, 2_501)] {
        handed_over(&s, m, &p[0], &p[buyer], price).await;
    }
    let sum = s
        .get_ok(&format!("/v1/markets/{m}/summary"), &p[2].agent)
        .await;
    assert_eq!(sum["deals"], 4);
    assert_eq!(
        sum["median_price"], 2_250,
        "(2000 + 2501) / 2, rounded down"
    );
}
