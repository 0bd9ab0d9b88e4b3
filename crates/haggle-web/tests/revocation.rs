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

#[tokio::test]
async fn an_operator_revokes_a_token_from_the_operate_page() {
    let s = Server::start().await;
    let m = s.market("Office market").await;
    let alice = s.participant(m, "Alice", 10_000).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let page = s.page(&format!("/m/{m}/operate"), Some(&s.operator)).await;
    assert!(page.body.contains("Revoke a token"), "{}", page.body);
    let csrf = page.hidden("csrf");
    // By the secret itself, and by the id.
    let bob_id = haggle_service::hash_token(&bob.agent);
    for (token, key) in [(alice.agent.as_str(), "r1"), (bob_id.as_str(), "r2")] {
        let r = s
            .form(
                &format!("/m/{m}/operate/revoke"),
                &s.operator,
                &[("csrf", &csrf), ("idem", key), ("token", token)],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    for revoked in [&alice.agent, &bob.agent] {
        let p = s.page(&format!("/m/{m}"), Some(revoked)).await;
        assert_ne!(p.status, 200, "a revoked token no longer signs in");
    }
    assert_eq!(
        s.page(&format!("/m/{m}"), Some(&alice.principal))
            .await
            .status,
        200
    );
    // A principal may revoke only its agent's tokens: not its own, even with its own CSRF token.
    let own_csrf = s
        .page(&format!("/m/{m}"), Some(&alice.principal))
        .await
        .hidden("csrf");
    let r = s
        .form(
            &format!("/m/{m}/operate/revoke"),
            &alice.principal,
            &[
                ("csrf", &own_csrf),
                ("idem", "r3"),
                ("token", &alice.principal),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        s.page(&format!("/m/{m}"), Some(&alice.principal))
            .await
            .status,
        200
    );
}
