// Survey storage, written once for both databases: `include!`d by `lib.rs` next to `backend.rs`.
// An answer replaces the earlier one in one statement (upsert), so a resubmitted form is harmless.

mod survey_sql {
    use super::{sqlx, Backend, Db};
    use crate::survey::SurveyAnswer;
    use crate::{StoreError, StoreResult};
    use sqlx::Row;

    type DbRow = <Db as sqlx::Database>::Row;

    const COLS: &str = "market_id, participant_id, fairness, satisfaction, would_pay, comment, answered_at";

    fn scale(col: &str, v: i64) -> StoreResult<u8> {
        u8::try_from(v).ok().filter(|v| (1..=7).contains(v)).ok_or_else(|| StoreError::Corrupt(format!("column {col}: {v} is outside 1..=7")))
    }

    fn answer_row(r: &DbRow) -> StoreResult<SurveyAnswer> {
        Ok(SurveyAnswer {
            market_id: r.try_get("market_id")?,
            participant_id: r.try_get("participant_id")?,
            fairness: scale("fairness", r.try_get("fairness")?)?,
            satisfaction: scale("satisfaction", r.try_get("satisfaction")?)?,
            would_pay: r.try_get("would_pay")?,
            comment: r.try_get("comment")?,
            answered_at: r.try_get("answered_at")?,
        })
    }

    impl Backend {
        pub async fn put_survey_answer(&self, a: &SurveyAnswer) -> StoreResult<()> {
            let _w = self.write_guard().await;
            sqlx::query(
                "INSERT INTO survey_answers (market_id, participant_id, fairness, satisfaction, would_pay, comment, answered_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (market_id, participant_id) DO UPDATE SET fairness = excluded.fairness, satisfaction = excluded.satisfaction, \
                 would_pay = excluded.would_pay, comment = excluded.comment, answered_at = excluded.answered_at",
            )
            .bind(a.market_id).bind(a.participant_id).bind(a.fairness as i64).bind(a.satisfaction as i64).bind(a.would_pay).bind(&a.comment).bind(a.answered_at)
            .execute(&self.pool).await?;
            Ok(())
        }

        pub async fn survey_answer(&self, market: i64, participant: i64) -> StoreResult<Option<SurveyAnswer>> {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM survey_answers WHERE market_id = $1 AND participant_id = $2")))
                .bind(market).bind(participant).fetch_optional(&self.pool).await?;
            r.as_ref().map(answer_row).transpose()
        }

        pub async fn survey_answers(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<SurveyAnswer>> {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM survey_answers WHERE market_id = $1 AND participant_id > $2 ORDER BY participant_id LIMIT $3")))
                .bind(market).bind(after).bind(limit.clamp(1, haggle_core::limits::MAX_PAGE) as i64)
                .fetch_all(&self.pool).await?.iter().map(answer_row).collect()
        }
    }
}
