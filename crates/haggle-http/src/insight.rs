//! Routes for people watching and running a market: the market summary, disputes waiting for a
//! ruling, and the principals' survey. Each is one service call.

use crate::AppState;
use crate::extract::{Auth, Json, Mutation, Path, Query, Result, ok};
use crate::routes::PageParams;
use axum::extract::State;
use haggle_api::*;

type S = State<AppState>;

/// Deals, volume, median price and participants at a glance (every reader of the market).
#[utoipa::path(get, path = "/v1/markets/{market}/summary", params(("market" = i64, Path)), responses((status = 200, body = MarketSummary)), security(("bearer" = [])))]
pub async fn summary(State(s): S, Auth(c): Auth, Path(m): Path<i64>) -> Result<Json> {
    Ok(ok(&s.svc.summary(&c, m).await?))
}

/// Disputed deals waiting for a ruling (the market's operators and arbiter).
#[utoipa::path(get, path = "/v1/markets/{market}/disputes", params(("market" = i64, Path), PageParams), responses((status = 200, body = DealList)), security(("bearer" = [])))]
pub async fn disputes(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .disputes(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

/// Every survey answer of the market (operators and observers).
#[utoipa::path(get, path = "/v1/markets/{market}/survey", params(("market" = i64, Path), PageParams), responses((status = 200, body = SurveyAnswerList)), security(("bearer" = [])))]
pub async fn survey_answers(
    State(s): S,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(p): Query<PageParams>,
) -> Result<Json> {
    Ok(ok(&s
        .svc
        .survey_answers(&c, m, p.cursor.as_deref(), p.limit)
        .await?))
}

/// One participant's survey answer (`null` before it answered).
#[utoipa::path(get, path = "/v1/markets/{market}/participants/{participant}/survey", params(("market" = i64, Path), ("participant" = i64, Path)), responses((status = 200, body = Option<SurveyAnswer>)), security(("bearer" = [])))]
pub async fn survey_answer(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
) -> Result<Json> {
    Ok(ok(&s.svc.survey_answer(&c, m, p).await?))
}

/// The principal answers the survey; answering again replaces the answer.
#[utoipa::path(put, path = "/v1/markets/{market}/participants/{participant}/survey", params(("market" = i64, Path), ("participant" = i64, Path)), request_body = AnswerSurvey, responses((status = 200, body = SurveyAnswer)), security(("bearer" = [])))]
pub async fn answer_survey(
    State(s): S,
    Auth(c): Auth,
    Path((m, p)): Path<(i64, i64)>,
    b: Mutation<AnswerSurvey>,
) -> Result<Json> {
    Ok(Json(
        s.svc
            .answer_survey(&c, m, p, b.body, b.idem.as_ref())
            .await?,
    ))
}
