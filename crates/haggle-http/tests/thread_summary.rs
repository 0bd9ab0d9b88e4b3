//! Thread state at a glance over HTTP: each thread read and list item carries whose move it is,
//! the live offer, offers and time left; the list filters by `state` (alias `status`) and
//! `your_move`, and lists newest activity first, page after page.

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
    /// The thread ids of every page at `limit` per page, following the cursors.
    async fn pages(&self, token: &str, limit: u32) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.list(token, &format!("?limit={limit}{cursor}")).await;
            pages.push(ids(&page["items"]));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return pages,
            }
            assert!(pages.len() <= 20, "the cursors end: {pages:?}");
        }
    }
    async fn advance(&self, ms: i64) {
        let r = self
            .s
            .post(
                &format!("/v1/markets/{}/clock/advance", self.m),
                &self.s.operator,
                json!({"by_ms": ms}),
            )
            .await;
        assert_status(&r, 200, "advance the clock");
    }
    async fn say(&self, who: &Party, thread: i64, body: &str) {
        let r = self
            .s
            .post(
                &format!("/v1/markets/{}/threads/{thread}/messages", self.m),
                &who.agent,
                json!({"body": body}),
            )
            .await;
        assert_status(&r, 201, "post a message");
    }
    /// Bob bids on three of Alice's listings a second apart: the threads, oldest first.
    async fn three_threads(&self) -> [i64; 3] {
        let mut out = [0; 3];
        for (i, title) in ["Lamp", "Chair", "Desk"].into_iter().enumerate() {
            let l = self.s.sell(self.m, &self.alice, title, 5_000).await;
            out[i] = self.s.bid(self.m, &self.bob, l, 4_000).await.0;
            self.advance(1_000).await;
        }
        out
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
async fn the_thread_list_filters_by_state_and_your_move() {
    let x = setup().await;
    let lamp = x.s.sell(x.m, &x.alice, "Lamp", 5_000).await;
    let chair = x.s.sell(x.m, &x.alice, "Chair", 3_000).await;
    let (open, _) = x.s.bid(x.m, &x.bob, lamp, 4_000).await;
    let (agreed, offer) = x.s.bid(x.m, &x.carol, chair, 3_000).await;
    x.s.accept(x.m, &x.alice, offer).await;

    let ids_of = |v: Value| ids(&v["items"]);
    let a = &x.alice.agent;
    assert_eq!(ids_of(x.list(a, "").await), [open, agreed]);
    assert_eq!(ids_of(x.list(a, "?state=open").await), [open]);
    assert_eq!(ids_of(x.list(a, "?state=agreed").await), [agreed]);
    // `status` is the accepted older name of `state`.
    assert_eq!(ids_of(x.list(a, "?status=agreed").await), [agreed]);
    assert_eq!(ids_of(x.list(a, "?your_move=true").await), [open]);
    assert_eq!(ids_of(x.list(a, "?your_move=false").await), [agreed]);
    assert_eq!(
        ids_of(x.list(a, "?state=open&your_move=false").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_of(x.list(&x.bob.agent, "?your_move=false").await),
        [open]
    );
    assert_eq!(ids_of(x.list(&x.s.operator, "?state=open").await), [open]);
}

#[tokio::test]
async fn bad_thread_filters_are_refused_naming_the_parameter() {
    let x = setup().await;
    for (query, param) in [
        ("?state=pending", "state"),
        ("?status=pending", "status"),
        ("?state=open&status=open", "not both"),
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

#[tokio::test]
async fn the_thread_list_is_newest_activity_first_page_after_page() {
    let x = setup().await;
    let [lamp, chair, desk] = x.three_threads().await;
    // Carol's deal ends the newest thread; then Bob writes in the oldest one.
    let rug = x.s.sell(x.m, &x.alice, "Rug", 2_000).await;
    let (agreed, offer) = x.s.bid(x.m, &x.carol, rug, 2_000).await;
    x.s.accept(x.m, &x.alice, offer).await;
    x.advance(1_000).await;
    x.say(&x.bob, lamp, "Is the lamp still there?").await;

    let a = &x.alice.agent;
    let order = [lamp, desk, chair, agreed];
    assert_eq!(
        ids(&x.list(a, "").await["items"]),
        order,
        "open first, newest activity first"
    );
    assert_eq!(
        x.pages(a, 1).await,
        order.iter().map(|&t| vec![t]).collect::<Vec<_>>()
    );
    assert_eq!(x.pages(a, 3).await, [vec![lamp, desk, chair], vec![agreed]]);
    let listed = x.list(a, "").await;
    let times: Vec<i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|t| t["summary"]["last_activity_at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
}

#[tokio::test]
async fn a_thread_with_activity_while_a_reader_pages_is_not_listed_twice() {
    let x = setup().await;
    let [lamp, chair, desk] = x.three_threads().await;
    let a = &x.alice.agent;
    let first = x.list(a, "?limit=1").await;
    assert_eq!(ids(&first["items"]), [desk]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    // The listed thread moves on while Alice reads the next pages.
    x.say(&x.bob, desk, "Any news?").await;
    let rest = x.list(a, &format!("?limit=10&cursor={cursor}")).await;
    assert_eq!(ids(&rest["items"]), [chair, lamp]);
    assert!(rest["next_cursor"].is_null(), "{rest}");
    assert_eq!(ids(&x.list(a, "").await["items"]), [desk, chair, lamp]);
}

#[tokio::test]
async fn the_thread_list_filters_page_full_in_the_same_order() {
    let x = setup().await;
    let [lamp, chair, desk] = x.three_threads().await;
    x.s.offer(x.m, &x.alice, chair, 4_500).await;
    // Chair waits for Bob now; lamp and desk wait for Alice, desk newest.
    let a = &x.alice.agent;
    let waiting = x.list(a, "?your_move=true&limit=1").await;
    assert_eq!(ids(&waiting["items"]), [desk]);
    let cursor = waiting["next_cursor"].as_str().unwrap();
    let next = x
        .list(a, &format!("?your_move=true&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(ids(&next["items"]), [lamp]);
    assert!(next["next_cursor"].is_null(), "{next}");
}

#[tokio::test]
async fn the_openapi_document_lists_the_state_filter_and_its_alias() {
    let params = document()["paths"]["/v1/markets/{market}/threads"]["get"]["parameters"]
        .as_array()
        .expect("the thread list's parameters");
    let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["state", "status", "your_move", "cursor", "limit"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let alias = params.iter().find(|p| p["name"] == "status").unwrap();
    assert!(
        alias["description"]
            .as_str()
            .unwrap()
            .contains("Alias of `state`"),
        "{alias}"
    );
}
