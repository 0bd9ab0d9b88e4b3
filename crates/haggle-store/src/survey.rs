//! The principals' survey as stored: one answer per participant and market (fairness and
//! satisfaction on 1–7 scales, what they would pay), research data joined to outcomes. Not market
//! state: written outside the market's write lock, never in the event log or the ledger. The SQL is
//! `survey_backend.rs`, compiled into both backends like `backend.rs`.

use crate::{Store, StoreResult};
use haggle_core::Timestamp;
use serde::{Deserialize, Serialize};

/// One principal's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyAnswer {
    pub market_id: i64,
    pub participant_id: i64,
    /// How fair the market's outcome felt, 1 (not at all) to 7 (completely).
    pub fairness: u8,
    /// Satisfaction with the agent, 1 to 7.
    pub satisfaction: u8,
    /// What the principal would pay to be represented this way again, in minor units (0 = nothing).
    pub would_pay: i64,
    pub comment: String,
    pub answered_at: Timestamp,
}

macro_rules! on_backend {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            Store::Sqlite($b) => $e,
            Store::Postgres($b) => $e,
        }
    };
}

impl Store {
    /// Stores an answer, replacing the participant's earlier one in that market.
    pub async fn put_survey_answer(&self, a: &SurveyAnswer) -> StoreResult<()> {
        on_backend!(self, b => b.put_survey_answer(a).await)
    }
    pub async fn survey_answer(
        &self,
        market: i64,
        participant: i64,
    ) -> StoreResult<Option<SurveyAnswer>> {
        on_backend!(self, b => b.survey_answer(market, participant).await)
    }
    /// A market's answers by participant id, after `after`.
    pub async fn survey_answers(
        &self,
        market: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<SurveyAnswer>> {
        on_backend!(self, b => b.survey_answers(market, after, limit).await)
    }
}
