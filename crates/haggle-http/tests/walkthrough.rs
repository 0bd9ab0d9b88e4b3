//! The README's curl walk-through, step by step, against a real server.

mod support;

use reqwest::Method;
use serde_json::json;
use support::*;

#[tokio::test]
async fn curl_walkthrough() {
    let s = Server::start().await;
    let op = s.operator.clone();

    // 1. The operator creates a market.
    let r = s
        .post(
            "/v1/markets",
            &op,
            json!({"name": "Office market", "currency": "USD"}),
        )
        .await;
    assert_status(&r, 201, "create market");
    let m = r.1["id"].as_i64().unwrap();
    assert_eq!(m, 1, "the first market of a fresh database");
    assert_eq!(r.1["currency"], "USD");

    // 2. Two participants with $100 budgets, each with an agent and a principal token.
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    assert_eq!((alice.id, bob.id), (1, 3), "ids as the README gives them");
    assert_ne!(alice.agent, alice.principal);

    // 3. Alice's agent lists a bike for $50.
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Red road bike", "description": "54 cm, new tyres",
                   "category": "bikes", "condition": "good", "price": 5000}),
        )
        .await;
    assert_status(&r, 201, "list the bike");
    let listing = r.1["id"].as_i64().unwrap();
    assert_eq!(listing, 5);
    assert_eq!(r.1["status"], "active");
    assert_eq!(r.1["owner"], alice.id);

    // 4. Bob's agent searches, then opens a thread with a message and an offer of $40.
    let found = s
        .get_ok(
            &format!("/v1/markets/{m}/listings?q=bike&max_price=6000&sort=cheapest"),
            &bob.agent,
        )
        .await;
    assert_eq!(ids(&found["items"]), [listing]);
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings/{listing}/threads"),
            &bob.agent,
            json!({"message": "Would you take 40?", "price": 4000}),
        )
        .await;
    assert_status(&r, 201, "open thread");
    let thread = r.1["thread"]["id"].as_i64().unwrap();
    let first_offer = r.1["offer"]["id"].as_i64().unwrap();
    assert_eq!((thread, first_offer), (6, 8));
    assert_eq!(r.1["message"]["body"], "Would you take 40?");
    assert_eq!(r.1["offer"]["price"], 4000);
    assert_eq!(r.1["offer"]["state"], "live");
    assert_eq!(r.1["offer"]["proposer"], bob.id);

    // 5. Alice counters at $45.
    let r = s
        .post(
            &format!("/v1/markets/{m}/threads/{thread}/offers"),
            &alice.agent,
            json!({"price": 4500}),
        )
        .await;
    assert_status(&r, 201, "counter");
    let counter = r.1["id"].as_i64().unwrap();
    assert_eq!(counter, 9);
    let view = s
        .get_ok(&format!("/v1/markets/{m}/threads/{thread}"), &bob.agent)
        .await;
    let states: Vec<_> = view["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_i64().unwrap(), o["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(8, "countered"), (9, "live")]);

    // 6. Bob accepts the counter by id: a deal.
    let r = s
        .call(
            Method::POST,
            &format!("/v1/markets/{m}/offers/{counter}/accept"),
            Some(&bob.agent),
            None,
            Some("bob-accept-9"),
        )
        .await;
    assert_status(&r, 201, "accept the counter");
    let deal = r.1.clone();
    assert_eq!(deal["price"], 4500);
    assert_eq!(deal["buyer"], bob.id);
    assert_eq!(deal["seller"], alice.id);
    assert_eq!(deal["listing_id"], listing);
    assert_eq!(deal["offer_id"], counter);
    assert_eq!(deal["status"], "agreed");
    assert_eq!(deal["snapshot"]["title"], "Red road bike");

    // 7. Balances: Bob has 5500 available and 4500 held; Alice unchanged until completion.
    let b = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}/balance", bob.id),
            &bob.agent,
        )
        .await;
    assert_eq!(b["available"], 10_000 - 4500);
    assert_eq!(b["held_in_escrow"], 4500);
    assert_eq!(b["committed_to_offers"], 0);
    assert_eq!(b["total"], 10_000);
    let a = s
        .get_ok(
            &format!("/v1/markets/{m}/participants/{}/balance", alice.id),
            &alice.agent,
        )
        .await;
    assert_eq!(a["available"], 10_000);
    assert_eq!(a["held_in_escrow"], 0);
    assert_eq!(a["total"], 10_000);

    // The listing is sold; the deal is Bob's to read.
    let l = s
        .get_ok(&format!("/v1/markets/{m}/listings/{listing}"), &bob.agent)
        .await;
    assert_eq!(l["status"], "sold");
    let d = s
        .get_ok(&format!("/v1/markets/{m}/deals/{}", deal["id"]), &bob.agent)
        .await;
    assert_eq!(d, deal);

    // The audit: Bob's events show the sale; the operator's ledger check is clean.
    let kinds: Vec<String> = s
        .events(m, &bob.agent)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "listing_posted",
        "thread_opened",
        "offer_made",
        "offer_countered",
        "offer_accepted",
        "deal_created",
        "listing_sold",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let v = s
        .get_ok(&format!("/v1/markets/{m}/ledger/verify"), &op)
        .await;
    assert_eq!(v["breaches"], json!([]), "verify: {v}");
    assert!(v["transfers"].as_u64().unwrap() >= 3, "{v}");
}
