//! Thread state at a glance over HTTP: each thread read and list item carries whose move it is,
//! the live offer, offers and time left; the list filters by `status` and `your_move`.

mod support;

use serde_json::{Value, json};
use support::*;

struct Setup {
    s: Server,
    m: i64,
    alice: Party,
    bob: Party,
    carol: Party,
}

/// A simulated-clock market capping threads at 3 offers and 60 s; Alice sells, Bob and Carol buy.
async fn setup() -> Setup {
    let s = Server::start().await;
    let m = s
        .create_market(json!({
            "name": "Glance", "currency": "USD", "clock": "simulated", "sim_start_ms": 1_000_000,
            "rules": {"max_offers_per_thread": 3, "thread_time_limit_ms": 60_000}
        }))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 100_000).await;
    let carol = s.participant(m, "Carol", 100_000).await;
    Setup {
        s,
        m,
        alice,
        bob,
        carol,
    }
}

impl Setup {
    async fn list(&self, token: &str, query: &str) -> Value {
        self.s
            .get_ok(&format!("/v1/markets/{}/threads{query}", self.m), token)
            .await
    }
    async fn summary_in_list(&self, token: &str, thread: i64) -> Value {
        let page = self.list(token, "").await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == thread)
            .expect("the thread is listed")["summary"]
            .clone()
    }
}

#[tokio::test]
async fn a_listed_thread_says_whose_move_it_is_and_which_offer_is_live() {
    let x = setup().await;
    let lamp = x.s.sell(x.m, &x.alice, "Lamp", 5_000).await;
    let (thread, offer) = x.s.bid(x.m, &x.bob, lamp, 4_000).await;

    let alices = x.summary_in_list(&x.alice.agent, thread).await;
    assert_eq!(alices["your_move"], true);
    assert_eq!(alices["live_offer"]["offer_id"], offer);
    assert_eq!(alices["live_offer"]["price"], 4_000);
    assert_eq!(alices["live_offer"]["by"], x.bob.id);
    assert!(alices["live_offer"]["expires_at"].as_i64().unwrap() > 1_000_000);
    assert_eq!(alices["offers_made"], 1);
    assert_eq!(alices["offers_left"], 2);
    assert_eq!(alices["time_left_ms"], 60_000);
    assert_eq!(alices["last_activity_at"], 1_000_000);

    let bobs = x.summary_in_list(&x.bob.agent, thread).await;
    assert_eq!(bobs["your_move"], false);
    let operators = x.summary_in_list(&x.s.operator, thread).await;
    assert_eq!(operators["your_move"], Value::Null);
}

#[tokio::test]
async fn a_thread_read_carries_the_same_summary_as_time_passes_and_offers_alternate() {
    let x = setup().await;
    let lamp = x.s.sell(x.m, &x.alice, "Lamp", 5_000).await;
    let (thread, _) = x.s.bid(x.m, &x.bob, lamp, 4_000).await;
    let r =
        x.s.post(
            &format!("/v1/markets/{}/clock/advance", x.m),
            &x.s.operator,
            json!({"by_ms": 10_000}),
        )
        .await;
    assert_status(&r, 200, "advance the clock");
    let counter = x.s.offer(x.m, &x.alice, thread, 4_800).await;

    let read =
        x.s.get_ok(
            &format!("/v1/markets/{}/threads/{thread}", x.m),
            &x.bob.agent,
        )
        .await;
    let summary = &read["summary"];
    assert_eq!(summary["your_move"], true, "Alice's counter waits for Bob");
    assert_eq!(summary["live_offer"]["offer_id"], counter);
    assert_eq!(summary["live_offer"]["by"], x.alice.id);
    assert_eq!(summary["offers_made"], 2);
    assert_eq!(summary["offers_left"], 1);
    assert_eq!(summary["time_left_ms"], 50_000);
    assert_eq!(summary["last_activity_at"], 1_010_000);
    assert_eq!(*summary, x.summary_in_list(&x.bob.agent, thread).await);
}

#[tokio::test]
async fn the_thread_list_filters_by_status_and_your_move() {
    let x = setup().await;
    let lamp = x.s.sell(x.m, &x.alice, "Lamp", 5_000).await;
    let chair = x.s.sell(x.m, &x.alice, "Chair", 3_000).await;
    let (open, _) = x.s.bid(x.m, &x.bob, lamp, 4_000).await;
    let (agreed, offer) = x.s.bid(x.m, &x.carol, chair, 3_000).await;
    x.s.accept(x.m, &x.alice, offer).await;

    let ids_of = |v: Value| ids(&v["items"]);
    let a = &x.alice.agent;
    assert_eq!(ids_of(x.list(a, "").await), [open, agreed]);
    assert_eq!(ids_of(x.list(a, "?status=open").await), [open]);
    assert_eq!(ids_of(x.list(a, "?status=agreed").await), [agreed]);
    assert_eq!(ids_of(x.list(a, "?your_move=true").await), [open]);
    assert_eq!(ids_of(x.list(a, "?your_move=false").await), [agreed]);
    assert_eq!(
        ids_of(x.list(a, "?status=open&your_move=false").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_of(x.list(&x.bob.agent, "?your_move=false").await),
        [open]
    );
    assert_eq!(ids_of(x.list(&x.s.operator, "?status=open").await), [open]);
}

#[tokio::test]
async fn bad_thread_filters_are_refused_naming_the_parameter() {
    let x = setup().await;
    for (query, param) in [
        ("?status=pending", "status"),
        ("?your_move=yes", "your_move"),
    ] {
        let r =
            x.s.get(
                &format!("/v1/markets/{}/threads{query}", x.m),
                &x.alice.agent,
            )
            .await;
        assert_refusal(&r, 422, "invalid_request");
        let message = r.1["error"]["message"].as_str().unwrap();
        assert!(message.contains(param), "{message}");
    }
    // Only a party has a move: an operator's `your_move` filter is refused, not silently empty.
    let r =
        x.s.get(
            &format!("/v1/markets/{}/threads?your_move=true", x.m),
            &x.s.operator,
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
}
