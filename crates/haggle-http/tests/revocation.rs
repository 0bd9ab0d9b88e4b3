//! Token revocation through the real server: who may revoke which token, a revoked token is
//! refused at once, idempotent replays, and an open event stream of a revoked token ends within
//! seconds (revoked through this server, or through another server on the same database).

mod support;

use haggle_service::hash_token;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

fn revoke_path(m: i64, token: &str) -> String {
    format!("/v1/markets/{m}/tokens/{}/revoke", hash_token(token))
}

async fn revoke(s: &Server, m: i64, token: &str, by: &str) -> Resp {
    s.post(&revoke_path(m, token), by, json!({})).await
}

#[tokio::test]
async fn an_operator_revokes_a_token_and_it_is_refused_from_then_on() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let alice = &p[0];
    assert_eq!(
        s.get(&format!("/v1/markets/{m}"), &alice.agent).await.0,
        200
    );

    let r = revoke(&s, m, &alice.agent, &s.operator).await;
    assert_status(&r, 200, "revoke");
    assert_eq!(r.1["token_id"], hash_token(&alice.agent));
    assert_eq!(r.1["role"], "agent");
    assert_eq!(r.1["participant_id"], alice.id);
    assert_eq!(r.1["revoked_at"], START_MS);

    let refused = s.get(&format!("/v1/markets/{m}"), &alice.agent).await;
    assert_refusal(&refused, 401, "unauthorized");
    // The principal's token is another credential: still valid.
    assert_eq!(
        s.get(&format!("/v1/markets/{m}"), &alice.principal).await.0,
        200
    );
}

#[tokio::test]
async fn revoking_again_answers_with_the_first_revocation_and_keys_replay() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let path = revoke_path(m, &p[0].agent);
    let first = s
        .call(
            Method::POST,
            &path,
            Some(&s.operator),
            Some(json!({})),
            Some("k1"),
        )
        .await;
    assert_status(&first, 200, "revoke");
    s.advance(5_000);
    let replay = s
        .call(
            Method::POST,
            &path,
            Some(&s.operator),
            Some(json!({})),
            Some("k1"),
        )
        .await;
    assert_eq!(replay, first, "the same key replays the first answer");
    let again = s
        .call(
            Method::POST,
            &path,
            Some(&s.operator),
            Some(json!({})),
            Some("k2"),
        )
        .await;
    assert_eq!(again, first, "a second revocation keeps the first time");
    let other = s
        .call(
            Method::POST,
            &revoke_path(m, &p[0].principal),
            Some(&s.operator),
            Some(json!({})),
            Some("k1"),
        )
        .await;
    assert_refusal(&other, 422, "idempotency_conflict");
}

#[tokio::test]
async fn a_principal_revokes_only_its_own_agents_tokens() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000), ("Bob", 1000)]).await;
    let (alice, bob) = (&p[0], &p[1]);
    for (token, by, why) in [
        (&bob.agent, &alice.principal, "another participant's agent"),
        (
            &alice.principal,
            &alice.principal,
            "its own principal token",
        ),
        (&alice.agent, &bob.agent, "an agent token revokes nothing"),
        (&alice.agent, &bob.principal, "another principal"),
    ] {
        let r = revoke(&s, m, token, by).await;
        assert_refusal(&r, 403, "forbidden");
        assert_eq!(
            s.get(&format!("/v1/markets/{m}"), token).await.0,
            200,
            "{why}: the token still works"
        );
    }
    let r = revoke(&s, m, &alice.agent, &alice.principal).await;
    assert_status(&r, 200, "the principal revokes its agent's token");
    assert_refusal(
        &s.get(&format!("/v1/markets/{m}"), &alice.agent).await,
        401,
        "unauthorized",
    );
}

#[tokio::test]
async fn unknown_malformed_and_other_markets_tokens_are_refused() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let (other, q) = s.market_with(&[("Zed", 1000)]).await;
    let unknown = format!("/v1/markets/{m}/tokens/{}/revoke", "0".repeat(64));
    assert_refusal(
        &s.post(&unknown, &s.operator, json!({})).await,
        404,
        "not_found",
    );
    let malformed = format!("/v1/markets/{m}/tokens/not-a-hash/revoke");
    assert_refusal(
        &s.post(&malformed, &s.operator, json!({})).await,
        422,
        "invalid_request",
    );
    // Zed's token belongs to the other market: not found through this one.
    let r = revoke(&s, m, &q[0].agent, &s.operator).await;
    assert_refusal(&r, 404, "not_found");
    assert_eq!(
        s.get(&format!("/v1/markets/{other}"), &q[0].agent).await.0,
        200
    );
    // The global operator token is in no market: no market's route finds it.
    let r = revoke(&s, m, &s.operator, &p[0].principal).await;
    assert_refusal(&r, 404, "not_found");
    assert_eq!(s.get("/v1/me", &s.operator).await.0, 200);
}

/// Reads the stream until it ends (`true`) or `limit` passes (`false`).
async fn ends_within(resp: &mut reqwest::Response, limit: Duration) -> bool {
    tokio::time::timeout(limit, async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await
    .is_ok()
}

async fn open_stream(s: &Server, m: i64, token: &str) -> reqwest::Response {
    let resp = s
        .client
        .get(s.url(&format!("/v1/markets/{m}/events/stream")))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp
}

#[tokio::test]
async fn an_open_event_stream_ends_when_its_token_is_revoked() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000), ("Bob", 1000)]).await;
    let mut alices = open_stream(&s, m, &p[0].agent).await;
    let mut bobs = open_stream(&s, m, &p[1].agent).await;
    assert!(
        !ends_within(&mut alices, Duration::from_millis(1500)).await,
        "a valid token's stream stays open"
    );
    let t = Instant::now();
    assert_status(
        &revoke(&s, m, &p[0].agent, &s.operator).await,
        200,
        "revoke",
    );
    assert!(
        ends_within(&mut alices, Duration::from_secs(3)).await,
        "the revoked token's stream ended"
    );
    eprintln!("stream ended {:?} after the revocation", t.elapsed());
    assert!(
        !ends_within(&mut bobs, Duration::from_millis(1500)).await,
        "other tokens' streams go on"
    );
    let again = s
        .client
        .get(s.url(&format!("/v1/markets/{m}/events/stream")))
        .header("Authorization", format!("Bearer {}", p[0].agent))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 401);
}

#[tokio::test]
async fn a_revocation_through_another_server_ends_the_stream_too() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let mut stream = open_stream(&s, m, &p[0].agent).await;
    // A second server process on the same database: this server hears nothing of it.
    let replica = haggle_service::Store::open(&format!("sqlite://{}", s.db.display()))
        .await
        .unwrap();
    let t = Instant::now();
    let revoked = replica
        .revoke_token(&hash_token(&p[0].agent), START_MS)
        .await
        .unwrap();
    assert!(revoked.is_some_and(|t| t.revoked_at.is_some()));
    assert!(
        ends_within(&mut stream, Duration::from_secs(4)).await,
        "the stream ended by re-reading its token"
    );
    eprintln!(
        "stream ended {:?} after the replica's revocation",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_revocation_through_another_server_is_honoured_within_a_second() {
    let s = Server::start().await;
    let (m, p) = s.market_with(&[("Alice", 1000)]).await;
    let path = format!("/v1/markets/{m}");
    // Checked once: this server now remembers the token (for at most a second).
    assert_eq!(s.get(&path, &p[0].agent).await.0, 200);
    let replica = haggle_service::Store::open(&format!("sqlite://{}", s.db.display()))
        .await
        .unwrap();
    let t = Instant::now();
    replica
        .revoke_token(&hash_token(&p[0].agent), START_MS)
        .await
        .unwrap();
    loop {
        let r = s.get(&path, &p[0].agent).await;
        if r.0 == 401 {
            break;
        }
        assert_eq!(r.0, 200);
        // The bound (TOKEN_RECHECK, one second) and some slack for a loaded machine.
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "still accepted {:?} after the replica's revocation",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("refused {:?} after the replica's revocation", t.elapsed());
}
