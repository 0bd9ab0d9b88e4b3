//! Webhooks over HTTP: register, list (no secret), deliver to a local receiver that checks the
//! signature, read each delivery's status (delivered, retrying with its error), deactivate.
//! Delivery passes are run directly (`deliver_due_webhooks`) so the test is deterministic.
//! The receivers are on loopback, so these servers allow private webhook addresses; without that
//! flag such endpoints are refused at registration and at delivery.

mod support;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use haggle_service::webhooks::verify_signature;
use haggle_service::{Config, ManualClock, Service, Store};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use support::*;

/// A receiver that answers `status` and records `(event kind, signature ok)` per request.
async fn receiver(
    status: u16,
    secret: Arc<Mutex<String>>,
) -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
    let got: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (seen, secret) = (seen.clone(), secret.clone());
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let ok = verify_signature(
                    &secret.lock().unwrap(),
                    &h("haggle-timestamp"),
                    &body,
                    &h("haggle-signature"),
                );
                seen.lock().unwrap().push((h("haggle-event-type"), ok));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let (base, _) = haggle_testkit::serve_router(app).await;
    (format!("{base}/hook"), got)
}

#[tokio::test]
async fn webhooks_are_registered_delivered_and_inspected_over_http() {
    let s = Server::allowing_private_webhooks().await;
    let (m, people) = s.market_with(&[("seller", 0), ("buyer", 10_000)]).await;
    let (seller, buyer) = (&people[0], &people[1]);
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = receiver(200, secret.clone()).await;
    let hooks = format!("/v1/markets/{m}/webhooks");

    let r = s
        .post(
            &hooks,
            &s.operator,
            json!({"url": url, "event_types": ["listing_posted", "deal_created"]}),
        )
        .await;
    assert_status(&r, 201, "create webhook");
    let id = r.1["webhook"]["id"].as_i64().unwrap();
    assert_eq!(r.1["webhook"]["url"], url.as_str());
    assert_eq!(r.1["webhook"]["active"], true);
    *secret.lock().unwrap() = r.1["secret"].as_str().unwrap().to_string();

    // Listed without the secret.
    let listed = s.get_ok(&hooks, &s.operator).await;
    assert_eq!(ids(&listed["items"]), [id]);
    assert!(listed["items"][0].get("secret").is_none(), "{listed}");

    // Refusals: agents, bad bodies, unknown webhooks and statuses.
    let r = s.post(&hooks, &seller.agent, json!({"url": url})).await;
    assert_refusal(&r, 403, "forbidden");
    assert_refusal(&s.get(&hooks, &seller.agent).await, 403, "forbidden");
    for body in [
        json!({"url": "ftp://example.com/x"}),
        json!({"url": "https://"}),
        json!({"url": url, "colour": "red"}),
        json!({"url": url, "event_types": ["Deal Created"]}),
        json!({}),
    ] {
        assert_refusal(
            &s.post(&hooks, &s.operator, body).await,
            422,
            "invalid_request",
        );
    }
    let deliveries = format!("{hooks}/{id}/deliveries");
    assert_refusal(
        &s.get(&format!("{hooks}/999/deliveries"), &s.operator).await,
        404,
        "not_found",
    );
    assert_refusal(
        &s.get(&format!("{deliveries}?status=lost"), &s.operator)
            .await,
        422,
        "invalid_request",
    );

    let listing = s.sell(m, seller, "kettle", 2_000).await;
    let (_, offer) = s.bid(m, buyer, listing, 1_900).await;
    s.accept(m, seller, offer).await;
    let pass = s.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!(pass.delivered, 2, "{pass:?}");
    let mut seen = got.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("deal_created".to_string(), true),
            ("listing_posted".to_string(), true)
        ]
    );

    let page = s.get_ok(&deliveries, &s.operator).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for d in items {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status_code"], 200);
        assert_eq!(d["webhook_id"], id);
        assert_eq!(d["next_attempt_at"], Value::Null);
    }
    let pending = s
        .get_ok(&format!("{deliveries}?status=pending"), &s.operator)
        .await;
    assert_eq!(pending["items"], json!([]));
    // Paged by id.
    let first = s
        .get_ok(&format!("{deliveries}?limit=1"), &s.operator)
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = s
        .get_ok(
            &format!("{deliveries}?limit=1&cursor={cursor}"),
            &s.operator,
        )
        .await;
    assert_eq!(rest["items"][0]["id"], items[1]["id"]);

    let r = s
        .call(
            Method::POST,
            &format!("{hooks}/{id}/deactivate"),
            Some(&s.operator),
            None,
            Some("deact-1"),
        )
        .await;
    assert_status(&r, 200, "deactivate");
    assert_eq!(r.1["active"], false);
    assert_refusal(
        &s.post(
            &format!("{hooks}/{id}/deactivate"),
            &seller.agent,
            json!({}),
        )
        .await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn a_failing_receiver_shows_as_retrying_with_its_error() {
    let s = Server::allowing_private_webhooks().await;
    let m = s.market().await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = receiver(500, secret).await;
    let hooks = format!("/v1/markets/{m}/webhooks");
    let r = s
        .post(
            &hooks,
            &s.operator,
            json!({"url": url, "event_types": ["participant_joined"]}),
        )
        .await;
    assert_status(&r, 201, "create webhook");
    let id = r.1["webhook"]["id"].as_i64().unwrap();
    s.participant(m, "someone", 0).await;

    let pass = s.svc.deliver_due_webhooks().await.unwrap();
    assert_eq!(pass.retrying, 1, "{pass:?}");
    assert_eq!(got.lock().unwrap().len(), 1);
    let page = s
        .get_ok(
            &format!("{hooks}/{id}/deliveries?status=pending"),
            &s.operator,
        )
        .await;
    let d = &page["items"][0];
    assert_eq!(d["event_type"], "participant_joined");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last_status_code"], 500);
    assert!(d["last_error"].as_str().unwrap().contains("500"), "{d}");
    assert_eq!(d["next_attempt_at"], START_MS + 1_000);
    assert_eq!(d["delivered_at"], Value::Null);
}

#[tokio::test]
async fn non_public_endpoints_are_refused_without_the_allow_flag() {
    let s = Server::start().await;
    let m = s.market().await;
    let hooks = format!("/v1/markets/{m}/webhooks");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://10.0.0.5/hook",
        "http://172.20.1.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fd12::1]/hook",
        "http://0.0.0.0:80/hook",
        "http://localhost:8080/hook",
    ] {
        let r = s.post(&hooks, &s.operator, json!({"url": url})).await;
        assert_refusal(&r, 422, "invalid_request");
        let msg = r.1["error"]["message"].as_str().unwrap();
        assert!(msg.contains("--allow-private-webhooks"), "{url}: {msg}");
    }
    let listed = s.get_ok(&hooks, &s.operator).await;
    assert_eq!(listed["items"], json!([]), "nothing was registered");
}

/// Endpoints registered while allowed (here: by a server with the flag) are not sent to by a
/// server without it. (Names that resolve to such addresses are refused by the delivery
/// client's resolver: see the unit tests in `haggle-service/src/webhooks.rs`.)
#[tokio::test]
async fn a_server_without_the_flag_sends_nothing_to_non_public_endpoints() {
    let s = Server::allowing_private_webhooks().await;
    let m = s.market().await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (url, got) = receiver(200, secret).await;
    let by_name = url.replace("127.0.0.1", "localhost");
    let hooks = format!("/v1/markets/{m}/webhooks");
    let mut ids = Vec::new();
    for u in [&url, &by_name] {
        let r = s.post(&hooks, &s.operator, json!({"url": u})).await;
        assert_status(&r, 201, "create webhook while allowed");
        ids.push(r.1["webhook"]["id"].as_i64().unwrap());
    }
    s.participant(m, "someone", 0).await;

    let store = Store::open(&format!("sqlite://{}", s.db.display()))
        .await
        .unwrap();
    let strict = Service::new(
        store,
        std::sync::Arc::new(ManualClock::new(START_MS)),
        Config::default(),
    );
    let pass = strict.deliver_due_webhooks().await.unwrap();
    assert_eq!(pass.attempted, 2, "{pass:?}");
    assert_eq!(pass.delivered, 0, "{pass:?}");
    assert!(got.lock().unwrap().is_empty(), "the receiver heard nothing");
    for id in ids {
        let page = s
            .get_ok(&format!("{hooks}/{id}/deliveries"), &s.operator)
            .await;
        let d = &page["items"][0];
        let error = d["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("--allow-private-webhooks"),
            "webhook {id}: {d}"
        );
        assert_eq!(d["status"], "failed", "refused for good: {d}");
    }
}
