//! The event log over HTTP: each caller reads only what it may see, in sequence order, page by
//! page; and the live SSE feed delivers a sale as it happens.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

fn about_thread(e: &Value, thread: i64) -> bool {
    e["payload"]["thread_id"] == thread
        || e["payload"]["thread"]["id"] == thread
        || e["payload"]["offer"]["thread_id"] == thread
        || e["payload"]["message"]["thread_id"] == thread
}

#[tokio::test]
async fn events_show_each_caller_only_what_it_may_see_in_order() {
    let s = Server::start().await;
    let (m, p) = s
        .market_with(&[("Alice", 0), ("Bob", 5000), ("Carol", 5000)])
        .await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let observer = s.observer(m).await;
    let listing = s.sell(m, alice, "Bike", 5000).await;
    // A private negotiation between Alice and Carol.
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &carol.agent,
            json!({"message": "My best is 3000", "price": 3000}),
        )
        .await;
    assert_status(&r, 201, "Carol's thread");
    let private = r.1["thread"]["id"].as_i64().unwrap();
    s.offer(m, alice, private, 4500).await;

    let all = s.events(m, &s.operator).await;
    let bobs = s.events(m, &bob.agent).await;
    let carols = s.events(m, &carol.agent).await;
    let observed = s.events(m, &observer).await;

    // Ordered by seq, without gaps for the operator (seq 1 is the market's creation).
    assert_eq!(seqs(&all), (1..=all.len() as i64).collect::<Vec<_>>());
    for list in [&bobs, &carols, &observed] {
        let s = seqs(list);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "ordered: {s:?}");
    }
    // The private thread's events: the operator, the observer and Carol see them; Bob does not.
    let n_private = all.iter().filter(|e| about_thread(e, private)).count();
    assert!(n_private >= 4, "thread_opened, message, two offers");
    assert_eq!(
        carols.iter().filter(|e| about_thread(e, private)).count(),
        n_private
    );
    assert_eq!(observed, all, "this market lets observers read everything");
    assert!(!bobs.iter().any(|e| about_thread(e, private)), "{bobs:?}");
    // Everything Bob sees is public or names him; he still sees the public listing.
    for e in &bobs {
        let v = &e["visibility"];
        assert!(
            v["scope"] == "public"
                || v["participants"]
                    .as_array()
                    .is_some_and(|ps| ps.contains(&json!(bob.id))),
            "Bob sees {e}"
        );
    }
    assert!(bobs.iter().any(|e| e["kind"] == "listing_posted"));
    // Bob's view is exactly the operator's view filtered by visibility.
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| {
            let v = &e["visibility"];
            v["scope"] == "public"
                || v["participants"]
                    .as_array()
                    .is_some_and(|ps| ps.contains(&json!(bob.id)))
        })
        .collect();
    assert_eq!(bobs.iter().collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn events_page_with_next_after() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    for i in 0..4 {
        let l = s.sell(m, alice, &format!("Item {i}"), 1000 + i).await;
        s.bid(m, bob, l, 500).await;
    }
    let all = s.events(m, &bob.agent).await;
    assert!(all.len() > 10, "enough events to page: {}", all.len());

    let mut paged = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = s
            .get_ok(
                &format!("/v1/markets/{m}/events?after={after}&limit=3"),
                &bob.agent,
            )
            .await;
        let events = page["events"].as_array().unwrap().clone();
        let next = page["next_after"].as_i64().unwrap();
        if events.is_empty() {
            assert_eq!(next, after, "an empty page keeps the position");
            break;
        }
        assert!(events.len() <= 3);
        assert_eq!(next, events.last().unwrap()["seq"].as_i64().unwrap());
        assert!(events.iter().all(|e| e["seq"].as_i64().unwrap() > after));
        paged.extend(events);
        after = next;
        pages += 1;
    }
    assert_eq!(paged, all, "the pages together are the whole log, once");
    assert_eq!(pages, all.len().div_ceil(3));

    // Starting in the middle returns the rest.
    let mid = all[5]["seq"].as_i64().unwrap();
    let rest = s
        .get_ok(
            &format!("/v1/markets/{m}/events?after={mid}&limit=1000"),
            &bob.agent,
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap()[..], all[6..]);
}

/// Reads SSE frames until one has `event: {kind}`; returns the data (JSON events) of every frame
/// read, the matching one last. Each frame's `id` is its event's seq.
async fn read_until(resp: &mut reqwest::Response, buf: &mut String, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_string())
            };
            // Keep-alive comments have no data.
            let Some(data) = field("data:") else { continue };
            let event: Value = serde_json::from_str(&data).expect("data is JSON");
            assert_eq!(field("id:"), Some(event["seq"].to_string()));
            assert_eq!(field("event:").as_deref(), event["kind"].as_str());
            let done = event["kind"] == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
        let chunk = resp
            .chunk()
            .await
            .expect("the stream stays readable")
            .expect("the stream does not end");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_live_stream_delivers_a_sale_as_it_happens() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    let listing = s.sell(m, alice, "Bike", 5000).await;
    let (_, offer) = s.bid(m, bob, listing, 4000).await;
    let last = s.events(m, &bob.agent).await.last().unwrap()["seq"]
        .as_i64()
        .unwrap();

    // Bob follows the feed from now on.
    let mut resp = s
        .client
        .get(s.url(&format!("/v1/markets/{m}/events/stream?after={last}")))
        .header("Authorization", format!("Bearer {}", bob.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");

    let deal = s.accept(m, alice, offer).await;
    let mut buf = String::new();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        read_until(&mut resp, &mut buf, "listing_sold"),
    )
    .await
    .expect("listing_sold arrives within 5 s");
    let sold = seen.last().unwrap();
    assert!(
        seen.iter().any(|e| e["kind"] == "deal_created"),
        "Bob is party to the deal"
    );
    assert_eq!(sold["payload"]["listing_id"], listing);
    assert_eq!(sold["payload"]["deal_id"], deal["id"]);
    assert_eq!(sold["payload"]["price"], 4000);
    assert!(sold["seq"].as_i64().unwrap() > last);
}

/// The stream filters like the poll: Bob's feed skips a private thread between Alice and Carol
/// and carries on with the public events after it.
#[tokio::test]
async fn the_live_stream_hides_other_participants_private_events() {
    let s = Server::start().await;
    let (m, p) = s
        .market_with(&[("Alice", 0), ("Bob", 5000), ("Carol", 5000)])
        .await;
    let (alice, bob, carol) = (&p[0], &p[1], &p[2]);
    let bike = s.sell(m, alice, "Bike", 5000).await;
    let last = s.events(m, &s.operator).await.len();
    let mut resp = s
        .client
        .get(s.url(&format!("/v1/markets/{m}/events/stream?after={last}")))
        .header("Authorization", format!("Bearer {}", bob.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let (thread, _) = s.bid(m, carol, bike, 3000).await;
    s.sell(m, alice, "Lamp", 700).await;
    let mut buf = String::new();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        read_until(&mut resp, &mut buf, "listing_posted"),
    )
    .await
    .expect("the lamp's listing arrives");
    assert_eq!(seen.last().unwrap()["payload"]["listing"]["title"], "Lamp");
    let private: Vec<i64> = s
        .events(m, &s.operator)
        .await
        .iter()
        .filter(|e| about_thread(e, thread))
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(!private.is_empty());
    // Carol's thread came before the lamp; Bob's stream skipped all of it.
    assert!(
        private
            .iter()
            .all(|s| *s < seen.last().unwrap()["seq"].as_i64().unwrap())
    );
    assert!(!seen.iter().any(|e| about_thread(e, thread)), "{seen:?}");
    assert_eq!(
        seen,
        s.get_ok(&format!("/v1/markets/{m}/events?after={last}"), &bob.agent)
            .await["events"]
            .as_array()
            .unwrap()[..],
        "the stream carries what the poll returns"
    );
}
