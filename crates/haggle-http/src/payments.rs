//! Payment routes (issue 23): a principal attaches its provider ids, operators reconcile and
//! re-drive a market's payments, a party retries a refused step, and the provider's webhook.
//! Each is one service call; the provider adapter and its driver are the service's.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Result, ok};
use crate::routes::Empty;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use haggle_api::*;
use serde::Deserialize;

type S = State<AppState>;

/// The participant's principal (or an operator) attaches the payment provider's customer and
/// payment method ids (the card itself is entered on the provider's page, never here).
#[utoipa::path(put, path = "/v1/markets/{market}/participants/{participant}/payment_method", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = AttachPaymentMethod, responses((status = 200, body = AttachPaymentMethod)), security(("bearer" = [])))]
pub async fn attach_payment_method(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<AttachPaymentMethod>,
) -> Result<Json> {
    Ok(ok(&s.svc.attach_payment_method(&c, m, p, b.body).await?))
}

/// Operators: every deal whose payment with the provider differs from the ledger (the provider
/// is asked for each intent).
#[utoipa::path(get, path = "/v1/markets/{market}/payments/reconcile", params(("market" = i64, Path)), responses((status = 200, body = Reconciliation)), security(("bearer" = [])))]
pub async fn reconcile(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.reconcile_payments(&c, m).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPayments {
    /// Also try refused steps again (each under a new idempotency key).
    #[serde(default)]
    pub retry: bool,
}

/// Operators: drives every deal's payment to its ledger state (steps left pending by a stop are
/// looked up at the provider first), then answers the reconciliation.
#[utoipa::path(post, path = "/v1/markets/{market}/payments/sync", params(("market" = i64, Path)), request_body = SyncPayments, responses((status = 200, body = Reconciliation)), security(("bearer" = [])))]
pub async fn sync(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    b: Mutation<SyncPayments>,
) -> Result<Json> {
    Ok(ok(&s.svc.sync_payments(&c, m, b.body.retry).await?))
}

/// A party (or an operator): tries the deal's refused payment step again, e.g. after the buyer's
/// principal attached another card; `payment_failed` if the provider refuses again.
#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/payment/retry", params(("market" = i64, Path), ("deal" = i64, Path)), responses((status = 200, body = haggle_core::payment::PaymentView)), security(("bearer" = [])))]
pub async fn retry(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    _b: Mutation<Empty>,
) -> Result<Json> {
    Ok(ok(&s.svc.retry_payment(&c, m, d).await?))
}

/// Stripe's webhook (`Stripe-Signature` verified with `HAGGLE_STRIPE_WEBHOOK_SECRET`): not part
/// of the agents' API, so not in the OpenAPI document.
pub async fn stripe_webhook(State(s): S, headers: HeaderMap, body: Bytes) -> Result<Json> {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    s.svc.stripe_webhook(sig, &body).await?;
    Ok(ok(&serde_json::json!({"received": true})))
}
