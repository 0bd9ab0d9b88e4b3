// Payment storage, written once for both databases: `include!`d by `lib.rs` next to `backend.rs`.
// A deal's record is written by the market command `RecordPayment` (`record_in`, under the
// market's write lock, with its events); the payment driver records a step before and after each
// provider call, so a record is never ahead of what the provider confirmed.

mod payment_sql {
    use super::{sqlx, Backend, Conn};
    use crate::command::Outcome;
    use crate::payments::PaymentMethod;
    use crate::row::{json, to_json};
    use crate::StoreResult;
    use haggle_core::payment::{self, Payment, PaymentVia};
    use haggle_core::{Deal, DomainError, ErrorCode, Plan, Visibility};
    use sqlx::Row;

    /// Replaces a deal's payment record inside the command's transaction, if it is still the one
    /// the writer read (two writers of one deal, a driver and a webhook, never overwrite each
    /// other's news with an older record), and plans one event per change from the stored record
    /// (none when it is written again unchanged). The buyer, the seller and operators see them.
    pub(super) async fn record_in(c: &mut Conn, market: i64, deal: &Deal, (read, p): (&Payment, &Payment), via: PaymentVia, now: i64, plan: &mut Plan) -> StoreResult<Result<Outcome, DomainError>> {
        let old = sqlx::query("SELECT record FROM payments WHERE market_id = $1 AND deal_id = $2")
            .bind(market).bind(deal.id).fetch_optional(&mut *c).await?
            .map(|r| json::<Payment>("record", &r.try_get::<String, _>("record")?)).transpose()?
            .unwrap_or_else(|| Payment::new(deal.id));
        if &old != read {
            return Ok(Err(DomainError::new(ErrorCode::InvalidTransition, format!(
                "the payment of deal {} changed since it was read (now {}); read it again", deal.id, old.state()))));
        }
        let mut p = p.clone();
        p.deal_id = deal.id;
        for body in payment::events(&old, &p, deal.price, via) {
            plan.event(None, Visibility::Parties(vec![deal.buyer, deal.seller]), body);
        }
        sqlx::query(
            "INSERT INTO payments (market_id, deal_id, state, record, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (market_id, deal_id) DO UPDATE SET state = excluded.state, record = excluded.record, updated_at = excluded.updated_at",
        )
        .bind(market).bind(p.deal_id).bind(p.state().as_str().to_string()).bind(to_json(&p)).bind(now)
        .execute(&mut *c).await?;
        Ok(Ok(Outcome::Done))
    }

    impl Backend {
        pub async fn payment(&self, market: i64, deal: i64) -> StoreResult<Option<Payment>> {
            let r = sqlx::query("SELECT record FROM payments WHERE market_id = $1 AND deal_id = $2")
                .bind(market).bind(deal).fetch_optional(&self.pool).await?;
            r.map(|r| json("record", &r.try_get::<String, _>("record")?)).transpose()
        }

        pub async fn payments(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<Payment>> {
            sqlx::query("SELECT record FROM payments WHERE market_id = $1 AND deal_id > $2 ORDER BY deal_id LIMIT $3")
                .bind(market).bind(after).bind(limit.clamp(1, 500) as i64)
                .fetch_all(&self.pool).await?
                .iter().map(|r| json("record", &r.try_get::<String, _>("record")?)).collect()
        }

        pub async fn put_payment_method(&self, market: i64, participant: i64, m: &PaymentMethod, now: i64) -> StoreResult<()> {
            let _w = self.write_guard().await;
            sqlx::query(
                "INSERT INTO payment_methods (market_id, participant_id, customer, payment_method, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (market_id, participant_id) DO UPDATE SET customer = excluded.customer, payment_method = excluded.payment_method, updated_at = excluded.updated_at",
            )
            .bind(market).bind(participant).bind(m.customer.clone()).bind(m.payment_method.clone()).bind(now)
            .execute(&self.pool).await?;
            Ok(())
        }

        pub async fn payment_method(&self, market: i64, participant: i64) -> StoreResult<Option<PaymentMethod>> {
            let r = sqlx::query("SELECT customer, payment_method FROM payment_methods WHERE market_id = $1 AND participant_id = $2")
                .bind(market).bind(participant).fetch_optional(&self.pool).await?;
            r.map(|r| Ok(PaymentMethod { customer: r.try_get("customer")?, payment_method: r.try_get("payment_method")? })).transpose()
        }
    }
}
