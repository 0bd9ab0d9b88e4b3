//! A revoked token's web session: its open live stream ends within seconds, and its pages send
//! the visitor to sign in again.

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

/// Reads the stream until it ends (`true`) or `limit` passes (`false`).
async fn ends_within(resp: &mut reqwest::Response, limit: Duration) -> bool {
    let rest = async { while let Ok(Some(_)) = resp.chunk().await {} };
    tokio::time::timeout(limit, rest).await.is_ok()
}

#[tokio::test]
async fn the_live_stream_of_a_revoked_session_ends() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let page = s.page(&format!("/m/{m}"), Some(&alice.agent)).await;
    let live = page
        .body
        .split("sse-connect=\"")
        .nth(1)
        .expect("the feed page has a live stream")
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let mut resp = s
        .client
        .get(s.url(&live))
        .header("Cookie", format!("haggle_session={}", alice.agent))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        !ends_within(&mut resp, Duration::from_millis(1500)).await,
        "the stream stays open while the token is valid"
    );
    let id = haggle_service::hash_token(&alice.agent);
    s.post(
        &format!("/v1/markets/{m}/tokens/{id}/revoke"),
        &s.operator,
        json!({}),
    )
    .await;
    assert!(
        ends_within(&mut resp, Duration::from_secs(3)).await,
        "the stream ended within 3 s of the revocation"
    );
    let again = s.page(&format!("/m/{m}"), Some(&alice.agent)).await;
    assert_ne!(again.status, 200, "a revoked session is signed out");
}
