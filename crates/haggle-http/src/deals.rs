//! Routes of the deal lifecycle: handover, receipt, cancellation, disputes (evidence, resolution),
//! the principal's approval, ratings, reputation and the settlement report.

use crate::AppState;
use crate::extract::{Auth, Failure, Json, Mutation, Path, Query, Result, ok};
use crate::routes::{Empty, PageParams};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use haggle_api::*;
use haggle_service::Command;
use serde::Deserialize;

type S = State<AppState>;

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/handover", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = HandOver, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn hand_over(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<HandOver>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .deal_action(
                &c,
                m,
                |actor| Command::HandOver {
                    actor,
                    deal: d,
                    note: b.body.note,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/ship", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = Ship, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn ship(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<Ship>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .deal_action(
                &c,
                m,
                |actor| Command::Ship {
                    actor,
                    deal: d,
                    carrier: b.body.carrier,
                    tracking: b.body.tracking,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/confirm", params(("market" = i64, Path), ("deal" = i64, Path)), responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn confirm(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<Empty>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .deal_action(
                &c,
                m,
                |actor| Command::ConfirmReceipt { actor, deal: d },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/cancel", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = CancelDeal, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn cancel(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<CancelDeal>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .deal_action(
                &c,
                m,
                |actor| Command::CancelDeal {
                    actor,
                    deal: d,
                    reason: b.body.reason,
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/dispute", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = OpenDispute, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn dispute(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<OpenDispute>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .deal_action(
                &c,
                m,
                |actor| Command::Dispute {
                    actor,
                    deal: d,
                    reason: b.body.reason,
                    grounds: haggle_core::Dispute {
                        grounds: b.body.grounds,
                        claims: b.body.claims,
                    },
                },
                b.idem.as_ref(),
            )
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/evidence", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = AddEvidence, responses((status = 201, body = haggle_core::DealNote)), security(("bearer" = [])))]
pub async fn evidence(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<AddEvidence>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .add_evidence(&c, m, d, b.body.body, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/resolve", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = ResolveDispute, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn resolve(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<ResolveDispute>,
) -> Result<Json> {
    Ok(Json(
        s.svc.resolve(&c, m, d, b.body, b.idem.as_ref()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/inspection", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = ReportInspection, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn inspection(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<ReportInspection>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .report_inspection(&c, m, d, b.body.mismatched, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/approval", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = DecideApproval, responses((status = 200, body = haggle_core::Deal)), security(("bearer" = [])))]
pub async fn approval(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<DecideApproval>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .decide_approval(&c, m, d, b.body.approve, b.idem.as_ref())
            .await?,
    ))
}

/// Rates the counterparty of a finished deal: the participant's agent or its principal.
#[utoipa::path(post, path = "/v1/markets/{market}/deals/{deal}/ratings", params(("market" = i64, Path), ("deal" = i64, Path)), request_body = RateDeal, responses((status = 201, body = haggle_core::Rating)), security(("bearer" = [])))]
pub async fn rate(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    b: Mutation<RateDeal>,
) -> Result<Json> {
    let RateDeal { score, comment } = b.body;
    Ok(Json(
        s.svc
            .rate(&c, m, d, score, comment, b.idem.as_ref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/markets/{market}/deals/{deal}/ratings", params(("market" = i64, Path), ("deal" = i64, Path)), responses((status = 200, body = Vec<haggle_core::Rating>)), security(("bearer" = [])))]
pub async fn ratings(State(s): S, Auth(c): Auth, Path((m, d)): Path<(i64, i64)>) -> Result<Json> {
    Ok(ok(&s.svc.deal_ratings(&c, m, d).await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/deals/{deal}/notes", params(("market" = i64, Path), ("deal" = i64, Path), PageParams), responses((status = 200, body = NotePage)), security(("bearer" = [])))]
/// A deal's notes, newest first, a page at a time.
pub async fn notes(
    State(s): S,
    Auth(c): Auth,
    Path((m, d)): Path<(i64, i64)>,
    Query(q): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .deal_notes(&c, m, d, q.cursor.as_deref(), q.limit)
        .await?))
}

#[utoipa::path(get, path = "/v1/markets/{market}/participants/{participant}/reputation", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = haggle_core::lifecycle::Reputation)), security(("bearer" = [])))]
pub async fn reputation(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
) -> Result<Json> {
    Ok(ok(&s.svc.reputation(&c, m, p).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SettlementParams {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// With `format=csv`: `deals` (default, the handover list), `positions`, or in a market with
    /// a payment provider `payouts` (per deal, what the provider charged for the seller, with its
    /// reference) and `payout_totals` (per seller).
    pub table: Option<String>,
}

#[utoipa::path(get, path = "/v1/markets/{market}/settlement", params(("market" = i64, Path), SettlementParams), responses((status = 200, body = haggle_core::settlement::Settlement)), security(("bearer" = [])))]
pub async fn settlement(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<SettlementParams>,
) -> Result<Response> {
    if q.format.as_deref() == Some("csv")
        && let Some(table @ ("payouts" | "payout_totals")) = q.table.as_deref()
    {
        let payouts = s.svc.payouts(&c, m).await?;
        let body = if table == "payouts" {
            haggle_core::settlement::payouts_csv(&payouts)
        } else {
            haggle_core::settlement::payout_totals_csv(&payouts)
        };
        let mut r = body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(r);
    }
    let report = s.svc.settlement(&c, m).await?;
    match (
        q.format.as_deref().unwrap_or("json"),
        q.table.as_deref().unwrap_or("deals"),
    ) {
        ("json", _) => Ok(ok(&report).into_response()),
        ("csv", table @ ("deals" | "positions")) => {
            let body = if table == "deals" {
                report.deals_csv()
            } else {
                report.positions_csv()
            };
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(r)
        }
        (f, t) => Err(Failure(haggle_service::ApiError::new(
            haggle_core::ErrorCode::InvalidRequest,
            format!(
                "format must be json or csv and table deals, positions, payouts or payout_totals, got {f}/{t}"
            ),
        ))),
    }
}
