//! Webhook routes (operators of the market): register an endpoint, list, deactivate, and read each
//! delivery's status. Each is one service call; delivery itself is the service's worker.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Query, Result, ok};
use crate::routes::{Empty, PageParams};
use axum::extract::State;
use haggle_api::*;
use serde::Deserialize;

type S = State<AppState>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries with this status: `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=500 (default 50); others are refused.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Registers a webhook. Events from now on are POSTed to it, signed:
/// `Haggle-Signature: v1=<hex HMAC-SHA256(secret, "{Haggle-Timestamp}.{body}")>`.
/// The secret is in this response only.
#[utoipa::path(post, path = "/v1/markets/{market}/webhooks", params(("market" = i64, Path)), request_body = CreateWebhook, responses((status = 201, body = WebhookCreated)), security(("bearer" = [])))]
pub async fn create_webhook(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<CreateWebhook>,
) -> Result<Json> {
    Ok(Json(
        s.svc.create_webhook(&c, m, b.body, b.idem.as_ref()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/webhooks", params(("market" = i64, Path), PageParams), responses((status = 200, body = WebhookList)), security(("bearer" = [])))]
pub async fn webhooks(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .webhooks(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

/// Stops deliveries to a webhook; its pending deliveries become `failed`.
#[utoipa::path(post, path = "/v1/markets/{market}/webhooks/{webhook}/deactivate", params(("market" = i64, Path), ("webhook" = i64, Path)), responses((status = 200, body = Webhook)), security(("bearer" = [])))]
pub async fn deactivate_webhook(
    State(s): S,
    Auth(c): Auth,
    Path((m, w)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc.deactivate_webhook(&c, m, w, b.idem.as_ref()).await?,
    ))
}

/// A webhook's deliveries with their status, attempts and last error.
#[utoipa::path(get, path = "/v1/markets/{market}/webhooks/{webhook}/deliveries", params(("market" = i64, Path), ("webhook" = i64, Path), DeliveryParams), responses((status = 200, body = WebhookDeliveryList)), security(("bearer" = [])))]
pub async fn webhook_deliveries(
    State(s): S,
    Auth(c): Auth,
    Path((m, w)): Path<(i64, i64)>,
    Query(p): Query<DeliveryParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .webhook_deliveries(&c, m, w, p.status.as_deref(), p.cursor.as_deref(), p.limit)
        .await?))
}

/// The market's chat channel (its URL shortened: it is the channel's secret), if one is set.
#[utoipa::path(get, path = "/v1/markets/{market}/channel", params(("market" = i64, Path)), responses((status = 200, body = ChannelState)), security(("bearer" = [])))]
pub async fn channel(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.channel(&c, m).await?))
}

/// Sets the market's chat channel, replacing the one before: the chosen event kinds are posted
/// to a Slack or Mattermost incoming-webhook URL as `{"text": ...}` lines linking back to the web
/// pages, retried like webhooks.
#[utoipa::path(put, path = "/v1/markets/{market}/channel", params(("market" = i64, Path)), request_body = SetChannel, responses((status = 200, body = ChannelState)), security(("bearer" = [])))]
pub async fn set_channel(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<SetChannel>,
) -> Result<Json> {
    Ok(Json(
        s.svc.set_channel(&c, m, b.body, b.idem.as_ref()).await?,
    ))
}

/// Stops the market's chat channel; its pending lines become `failed`.
#[utoipa::path(post, path = "/v1/markets/{market}/channel/remove", params(("market" = i64, Path)), responses((status = 200, body = ChannelState)), security(("bearer" = [])))]
pub async fn remove_channel(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(s.svc.remove_channel(&c, m, b.idem.as_ref()).await?))
}
