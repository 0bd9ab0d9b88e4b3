//! Shipping beside handover over the real server (trust.md, Shipping): a shipped listing's deal
//! holds the price plus shipping, the seller ships with a carrier and tracking reference, the
//! buyer confirms delivery and the seller is paid both; the refusals carry their codes and change
//! nothing; the shipping deadline runs on the market's clock.

mod support;

use serde_json::{Value, json};
use support::*;

const BUDGET: i64 = 10_000;
const SHIPPING: i64 = 700;

fn path(m: i64, deal: i64, action: &str) -> String {
    format!("/v1/markets/{m}/deals/{deal}/{action}")
}

/// Alice lists a lamp shipped for `SHIPPING` and accepts Bob's bid of 3,000.
async fn shipped_deal(s: &Server, m: i64, alice: &Party, bob: &Party) -> Value {
    let r = s
        .post(
            &format!("/v1/markets/{m}/listings"),
            &alice.agent,
            json!({"side": "sell", "title": "Lamp", "category": "home", "price": 3000,
                   "fulfilment": {"shipping": {"shipping_price": SHIPPING}}}),
        )
        .await;
    assert_status(&r, 201, "list the lamp");
    assert_eq!(
        r.1["fulfilment"]["shipping"]["shipping_price"], SHIPPING,
        "{r:?}"
    );
    let listing = r.1["id"].as_i64().expect("id");
    let (_, offer) = s.bid(m, bob, listing, 3000).await;
    s.accept(m, alice, offer).await
}

#[tokio::test]
async fn a_shipped_deal_is_shipped_confirmed_and_pays_price_and_shipping() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let deal = shipped_deal(&s, m, &p[0], &p[1]).await;
    let d = deal["id"].as_i64().unwrap();
    assert_eq!(deal["price"], 3000 + SHIPPING);
    assert_eq!(deal["shipping"]["status"], "not_shipped");
    let r = s
        .post(
            &path(m, d, "ship"),
            &p[0].agent,
            json!({"carrier": "DHL", "tracking": "JJD000390007"}),
        )
        .await;
    assert_status(&r, 200, "ship");
    assert_eq!(r.1["status"], "handed_over");
    assert_eq!(r.1["shipping"]["status"], "shipped");
    assert_eq!(r.1["shipping"]["tracking"], "JJD000390007");
    // The buyer's deal list (the agents' `my_deals`) shows the shipping state.
    let mine = s
        .get_ok(&format!("/v1/markets/{m}/deals"), &p[1].agent)
        .await;
    assert_eq!(mine["items"][0]["shipping"]["carrier"], "DHL", "{mine}");
    let r = s.post(&path(m, d, "confirm"), &p[1].agent, json!({})).await;
    assert_status(&r, 200, "confirm delivery");
    assert_eq!(r.1["shipping"]["status"], "delivered");
    let seller = s.balance(m, p[0].id).await;
    assert_eq!(seller["available"], 3000 + SHIPPING);
    let buyer = s.balance(m, p[1].id).await;
    assert_eq!(buyer["available"], BUDGET - 3000 - SHIPPING);
    let v = s
        .get_ok(&format!("/v1/markets/{m}/ledger/verify"), &s.operator)
        .await;
    assert_eq!(v["breaches"], json!([]), "{v}");
}

#[tokio::test]
async fn ship_refusals_carry_their_codes_and_change_nothing() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let deal = shipped_deal(&s, m, &p[0], &p[1]).await;
    let d = deal["id"].as_i64().unwrap();
    let before = s.snapshot(m, &[&p[0], &p[1]]).await;
    let cases = [
        (
            &p[1],
            json!({"carrier": "DHL", "tracking": "1"}),
            403,
            "forbidden",
        ),
        (
            &p[0],
            json!({"carrier": "", "tracking": "1"}),
            422,
            "invalid_request",
        ),
        (
            &p[0],
            json!({"carrier": "DHL", "tracking": "x".repeat(201)}),
            422,
            "invalid_request",
        ),
        (&p[0], json!({"carrier": "DHL"}), 422, "invalid_request"),
    ];
    for (who, body, status, code) in cases {
        let r = s.post(&path(m, d, "ship"), &who.agent, body).await;
        assert_refusal(&r, status, code);
    }
    let r = s
        .post(&path(m, d, "handover"), &p[0].agent, json!({}))
        .await;
    assert_refusal(&r, 409, "invalid_transition");
    assert_eq!(s.snapshot(m, &[&p[0], &p[1]]).await, before);
}

#[tokio::test]
async fn after_the_shipping_deadline_the_seller_cannot_ship_and_the_buyer_cancels_alone() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 0), ("Bob", BUDGET)]).await;
    let deal = shipped_deal(&s, m, &p[0], &p[1]).await;
    let d = deal["id"].as_i64().unwrap();
    let ship_by = deal["shipping"]["ship_by"].as_i64().expect("ship_by");
    let created = deal["created_at"].as_i64().unwrap();
    s.advance(ship_by - created);
    let r = s
        .post(
            &path(m, d, "ship"),
            &p[0].agent,
            json!({"carrier": "DHL", "tracking": "1"}),
        )
        .await;
    assert_refusal(&r, 409, "invalid_transition");
    let r = s.post(&path(m, d, "cancel"), &p[1].agent, json!({})).await;
    assert_status(&r, 200, "the buyer cancels alone");
    assert_eq!(r.1["status"], "cancelled");
    assert_eq!(r.1["resolution"]["note"], "seller_did_not_ship");
    assert_eq!(s.balance(m, p[1].id).await["available"], BUDGET);
}
