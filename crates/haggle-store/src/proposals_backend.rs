// Proposal storage (trading mode `propose`), written once for both databases: `include!`d by
// `lib.rs` next to `backend.rs`. A proposal's id is the market's next one in this table; two
// servers racing for it retry on the primary key.

mod proposals_sql {
    use super::{dialect, sqlx, Backend, Db};
    use crate::proposals::{Proposal, ProposalStatus, ProposedStep};
    use crate::{StoreError, StoreResult};
    use sqlx::Row;

    type DbRow = <Db as sqlx::Database>::Row;

    const COLS: &str = "market_id, id, participant_id, step, scope, idem_key, request_hash, status, created_at, decided_at";

    fn proposal_row(r: &DbRow) -> StoreResult<Proposal> {
        let step: String = r.try_get("step")?;
        let status: String = r.try_get("status")?;
        Ok(Proposal {
            market_id: r.try_get("market_id")?,
            id: r.try_get("id")?,
            participant_id: r.try_get("participant_id")?,
            step: serde_json::from_str::<ProposedStep>(&step).map_err(|e| StoreError::Corrupt(format!("column step: {e}")))?,
            scope: r.try_get("scope")?,
            idem_key: r.try_get("idem_key")?,
            request_hash: r.try_get("request_hash")?,
            status: ProposalStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("column status: unknown value '{status}'")))?,
            created_at: r.try_get("created_at")?,
            decided_at: r.try_get("decided_at")?,
        })
    }

    impl Backend {
        pub async fn insert_proposal(&self, p: &Proposal) -> StoreResult<Proposal> {
            let _w = self.write_guard().await;
            let step = serde_json::to_string(&p.step).map_err(|e| StoreError::Invariant(e.to_string()))?;
            for _ in 0..5 {
                let id: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM proposals WHERE market_id = $1")
                    .bind(p.market_id).fetch_one(&self.pool).await?;
                let done = sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO proposals ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")))
                    .bind(p.market_id).bind(id).bind(p.participant_id).bind(&step).bind(&p.scope).bind(&p.idem_key).bind(&p.request_hash)
                    .bind(ProposalStatus::Waiting.as_str()).bind(p.created_at).bind(None::<i64>)
                    .execute(&self.pool).await;
                match done {
                    Err(e) if dialect::is_unique_violation(&e) => continue,
                    other => {
                        other?;
                        return Ok(Proposal { id, status: ProposalStatus::Waiting, decided_at: None, ..p.clone() });
                    }
                }
            }
            Err(StoreError::Invariant("no free proposal id after 5 tries".into()))
        }

        pub async fn proposal_by_key(&self, market: i64, scope: &str, key: &str) -> StoreResult<Option<Proposal>> {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM proposals WHERE market_id = $1 AND scope = $2 AND idem_key = $3 ORDER BY id LIMIT 1")))
                .bind(market).bind(scope).bind(key).fetch_optional(&self.pool).await?;
            r.as_ref().map(proposal_row).transpose()
        }

        pub async fn proposal(&self, market: i64, id: i64) -> StoreResult<Option<Proposal>> {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM proposals WHERE market_id = $1 AND id = $2")))
                .bind(market).bind(id).fetch_optional(&self.pool).await?;
            r.as_ref().map(proposal_row).transpose()
        }

        pub async fn proposals(&self, market: i64, participant: i64, status: ProposalStatus, after: i64, limit: u32) -> StoreResult<Vec<Proposal>> {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM proposals WHERE market_id = $1 AND participant_id = $2 AND status = $3 AND id > $4 ORDER BY id LIMIT $5")))
                .bind(market).bind(participant).bind(status.as_str()).bind(after).bind(limit.clamp(1, haggle_core::limits::MAX_PAGE) as i64)
                .fetch_all(&self.pool).await?.iter().map(proposal_row).collect()
        }

        pub async fn set_proposal_status(&self, market: i64, id: i64, from: ProposalStatus, to: ProposalStatus, now: i64) -> StoreResult<bool> {
            let _w = self.write_guard().await;
            let done = sqlx::query("UPDATE proposals SET status = $1, decided_at = $2 WHERE market_id = $3 AND id = $4 AND status = $5")
                .bind(to.as_str()).bind(if to == ProposalStatus::Waiting { None } else { Some(now) }).bind(market).bind(id).bind(from.as_str())
                .execute(&self.pool).await?;
            Ok(done.rows_affected() == 1)
        }
    }
}
