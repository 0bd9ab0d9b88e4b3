//! Routes for the market policy and moderation (spec, trust.md: Market policy): the policy, the
//! moderation queue, approving and removing listings, suspending and reinstating participants.
//! Each is one service call; the rules are in the core.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Query, Result, ok};
use crate::routes::{Empty, PageParams};
use axum::extract::State;
use haggle_api::*;
use haggle_core::policy::MarketPolicy;

type S = State<AppState>;

/// The market's policy (every reader of the market).
#[utoipa::path(get, path = "/v1/markets/{market}/policy", params(("market" = i64, Path)), responses((status = 200, body = MarketPolicy)), security(("bearer" = [])))]
pub async fn policy(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.policy(&c, m).await?))
}

/// Replaces the market's policy (operators); answers with the market. Each change is an event
/// `policy_changed`.
#[utoipa::path(put, path = "/v1/markets/{market}/policy", params(("market" = i64, Path)), request_body = MarketPolicy, responses((status = 200, body = haggle_core::Market)), security(("bearer" = [])))]
pub async fn set_policy(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<MarketPolicy>,
) -> Result<Json> {
    Ok(Json(
        s.svc.set_policy(&c, m, b.body, b.idem.as_ref()).await?,
    ))
}

/// The moderation queue: held listings, oldest first, with the rules that held them and why
/// (operators).
#[utoipa::path(get, path = "/v1/markets/{market}/moderation", params(("market" = i64, Path), PageParams), responses((status = 200, body = HeldListingPage)), security(("bearer" = [])))]
pub async fn moderation(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .held_listings(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

/// Approves a held listing: it goes on the market (operators).
#[utoipa::path(post, path = "/v1/markets/{market}/listings/{listing}/approve", params(("market" = i64, Path), ("listing" = i64, Path)), responses((status = 200, body = haggle_core::Listing)), security(("bearer" = [])))]
pub async fn approve(
    State(s): S,
    Auth(c): Auth,
    Path((m, l)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc.approve_listing(&c, m, l, b.idem.as_ref()).await?,
    ))
}

/// Removes a held or active listing: its live offers void, its threads end (operators).
#[utoipa::path(post, path = "/v1/markets/{market}/listings/{listing}/remove", params(("market" = i64, Path), ("listing" = i64, Path)), request_body = Reason, responses((status = 200, body = Done)), security(("bearer" = [])))]
pub async fn remove(
    State(s): S,
    Auth(c): Auth,
    Path((m, l)): Path<(i64, i64)>,
    b: Mutation<Reason>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .remove_listing(&c, m, l, b.body.reason, b.idem.as_ref())
            .await?,
    ))
}

/// Suspends a participant: its agent tokens are refused (`participant_suspended`), its listings
/// withdrawn, its live offers void; deals it agreed still settle (operators).
#[utoipa::path(post, path = "/v1/markets/{market}/participants/{participant}/suspend", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = Reason, responses((status = 200, body = haggle_core::Participant)), security(("bearer" = [])))]
pub async fn suspend(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Reason>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .suspend(&c, m, p, b.body.reason, b.idem.as_ref())
            .await?,
    ))
}

/// Lifts a participant's suspension (operators).
#[utoipa::path(post, path = "/v1/markets/{market}/participants/{participant}/reinstate", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = haggle_core::Participant)), security(("bearer" = [])))]
pub async fn reinstate(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(s.svc.reinstate(&c, m, p, b.idem.as_ref()).await?))
}
