// Webhook storage, written once for both databases: `include!`d by `lib.rs` next to `backend.rs`
// into the `sqlite` and `postgres` modules. Its own module, so its imports never collide with
// `backend.rs`'s. None of these statements touch the market row: webhooks never take a market's
// write lock (SQLite's single writer is held only for each short statement, never across a send).

mod webhook_sql {
    use super::{dialect, sqlx, Backend, Db};
    use crate::row::{json, parsed, to_json};
    use crate::webhooks::{Attempt, ClaimedDelivery, DeliveryRecord, DeliveryStatus, NewWebhook, WebhookFormat, WebhookRecord};
    use crate::{StoreError, StoreResult};
    use sqlx::Row;

    type DbRow = <Db as sqlx::Database>::Row;

    const WEBHOOK_COLS: &str = "id, market_id, url, secret, event_types, format, active, cursor_seq, created_at";
    const DELIVERY_COLS: &str = "id, webhook_id, market_id, event_seq, event_type, status, attempts, next_attempt_at, last_status_code, last_error, delivered_at, created_at";

    fn q(s: String) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(s)
    }

    fn webhook_row(r: &DbRow) -> StoreResult<WebhookRecord> {
        Ok(WebhookRecord {
            id: r.try_get("id")?,
            market_id: r.try_get("market_id")?,
            url: r.try_get("url")?,
            secret: r.try_get("secret")?,
            event_types: json("event_types", &r.try_get::<String, _>("event_types")?)?,
            format: parsed("format", &r.try_get::<String, _>("format")?, WebhookFormat::parse)?,
            active: r.try_get("active")?,
            cursor_seq: r.try_get("cursor_seq")?,
            created_at: r.try_get("created_at")?,
        })
    }

    fn delivery_row(r: &DbRow) -> StoreResult<DeliveryRecord> {
        Ok(DeliveryRecord {
            id: r.try_get("id")?,
            webhook_id: r.try_get("webhook_id")?,
            market_id: r.try_get("market_id")?,
            event_seq: r.try_get("event_seq")?,
            event_type: r.try_get("event_type")?,
            status: parsed("status", &r.try_get::<String, _>("status")?, DeliveryStatus::parse)?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_status_code: r.try_get("last_status_code")?,
            last_error: r.try_get("last_error")?,
            delivered_at: r.try_get("delivered_at")?,
            created_at: r.try_get("created_at")?,
        })
    }

    /// At most this many rows per batch insert (8 binds each stays far below both databases' limits).
    const ENQUEUE_CHUNK: usize = 500;

    impl Backend {
        pub async fn create_webhook(&self, w: &NewWebhook, now: i64) -> StoreResult<Option<WebhookRecord>> {
            for _attempt in 0..20 {
                let _w = self.write_guard().await;
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
                // Deliveries start after the market's current head: a new endpoint gets new events.
                let head: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM markets WHERE id = $1").bind(w.market_id).fetch_optional(&mut *tx).await?;
                let Some(cursor_seq) = head else { return Ok(None) };
                let id: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM webhooks").fetch_one(&mut *tx).await?;
                let rec = WebhookRecord { id, market_id: w.market_id, url: w.url.clone(), secret: w.secret.clone(), event_types: w.event_types.clone(), format: w.format, active: true, cursor_seq, created_at: now };
                let inserted = sqlx::query("INSERT INTO webhooks (id, market_id, url, secret, event_types, format, active, cursor_seq, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                    .bind(rec.id).bind(rec.market_id).bind(&rec.url).bind(&rec.secret).bind(to_json(&rec.event_types)).bind(rec.format.as_str()).bind(true).bind(rec.cursor_seq).bind(now)
                    .execute(&mut *tx).await;
                match inserted {
                    // Another replica took this id first: try the next one.
                    Err(err) if dialect::is_unique_violation(&err) => continue,
                    other => {
                        other?;
                    }
                }
                tx.commit().await?;
                return Ok(Some(rec));
            }
            Err(StoreError::Invariant("could not allocate a webhook id after 20 attempts".into()))
        }

        pub async fn webhook(&self, market: i64, id: i64) -> StoreResult<Option<WebhookRecord>> {
            let r = sqlx::query(q(format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE market_id = $1 AND id = $2")))
                .bind(market).bind(id).fetch_optional(&self.pool).await?;
            r.as_ref().map(webhook_row).transpose()
        }

        pub async fn webhooks(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<WebhookRecord>> {
            sqlx::query(q(format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE market_id = $1 AND id > $2 ORDER BY id LIMIT $3")))
                .bind(market).bind(after).bind(limit.clamp(1, haggle_core::limits::MAX_PAGE) as i64)
                .fetch_all(&self.pool).await?.iter().map(webhook_row).collect()
        }

        pub async fn active_webhooks(&self, after: i64, limit: u32) -> StoreResult<Vec<WebhookRecord>> {
            sqlx::query(q(format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE active AND id > $1 ORDER BY id LIMIT $2")))
                .bind(after).bind(limit.clamp(1, haggle_core::limits::MAX_PAGE) as i64)
                .fetch_all(&self.pool).await?.iter().map(webhook_row).collect()
        }

        pub async fn deactivate_webhook(&self, market: i64, id: i64, now: i64) -> StoreResult<Option<WebhookRecord>> {
            let _w = self.write_guard().await;
            let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
            let done = sqlx::query("UPDATE webhooks SET active = $1 WHERE market_id = $2 AND id = $3")
                .bind(false).bind(market).bind(id).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            sqlx::query("UPDATE webhook_deliveries SET status = 'failed', last_error = $1, next_attempt_at = $2 WHERE webhook_id = $3 AND status = 'pending'")
                .bind("webhook deactivated").bind(now).bind(id).execute(&mut *tx).await?;
            let r = sqlx::query(q(format!("SELECT {WEBHOOK_COLS} FROM webhooks WHERE id = $1"))).bind(id).fetch_one(&mut *tx).await?;
            let rec = webhook_row(&r)?;
            tx.commit().await?;
            Ok(Some(rec))
        }

        pub async fn enqueue_webhook_deliveries(&self, w: &WebhookRecord, to: i64, events: &[(i64, String)], now: i64) -> StoreResult<usize> {
            'attempt: for _attempt in 0..20 {
                let _w = self.write_guard().await;
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
                // Moving the cursor first both claims these events (a second worker that read the
                // same cursor moves nothing) and, on PostgreSQL, locks the webhook's row.
                let moved = sqlx::query("UPDATE webhooks SET cursor_seq = $1 WHERE id = $2 AND cursor_seq = $3 AND active")
                    .bind(to).bind(w.id).bind(w.cursor_seq).execute(&mut *tx).await?;
                if moved.rows_affected() == 0 {
                    return Ok(0);
                }
                let first: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM webhook_deliveries").fetch_one(&mut *tx).await?;
                let mut next = first;
                for chunk in events.chunks(ENQUEUE_CHUNK) {
                    let mut b = sqlx::QueryBuilder::<Db>::new("INSERT INTO webhook_deliveries (id, webhook_id, market_id, event_seq, event_type, status, attempts, next_attempt_at, created_at) ");
                    b.push_values(chunk, |mut row, (seq, kind)| {
                        row.push_bind(next).push_bind(w.id).push_bind(w.market_id).push_bind(*seq).push_bind(kind.clone())
                            .push_bind(DeliveryStatus::Pending.as_str()).push_bind(0_i64).push_bind(now).push_bind(now);
                        next += 1;
                    });
                    match b.build().execute(&mut *tx).await {
                        // Another replica allocated these ids first: start over.
                        Err(err) if dialect::is_unique_violation(&err) => continue 'attempt,
                        other => {
                            other?;
                        }
                    }
                }
                tx.commit().await?;
                return Ok(events.len());
            }
            Err(StoreError::Invariant("could not allocate webhook delivery ids after 20 attempts".into()))
        }

        pub async fn claim_webhook_deliveries(&self, now: i64, lease_until: i64, limit: u32) -> StoreResult<Vec<ClaimedDelivery>> {
            let claimed: Vec<DeliveryRecord> = {
                let _w = self.write_guard().await;
                // The outer conditions are checked again on the row a concurrent claimer may have
                // just leased (PostgreSQL re-evaluates them after the row lock), so each delivery
                // is claimed by one worker.
                sqlx::query(q(format!(
                    "UPDATE webhook_deliveries SET next_attempt_at = $1 \
                     WHERE status = 'pending' AND next_attempt_at <= $2 AND id IN (\
                       SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                       WHERE d.status = 'pending' AND d.next_attempt_at <= $2 AND w.active \
                       ORDER BY d.next_attempt_at, d.id LIMIT $3) \
                     RETURNING {DELIVERY_COLS}"
                )))
                .bind(lease_until).bind(now).bind(limit.clamp(1, haggle_core::limits::DELIVERY_CLAIM_ROWS) as i64)
                .fetch_all(&self.pool).await?.iter().map(delivery_row).collect::<StoreResult<_>>()?
            };
            let mut hooks: std::collections::BTreeMap<i64, WebhookRecord> = std::collections::BTreeMap::new();
            let mut out = Vec::with_capacity(claimed.len());
            for d in claimed {
                let webhook = match hooks.get(&d.webhook_id) {
                    Some(w) => w.clone(),
                    None => {
                        let Some(w) = self.webhook(d.market_id, d.webhook_id).await? else {
                            return Err(StoreError::Corrupt(format!("delivery {} names missing webhook {}", d.id, d.webhook_id)));
                        };
                        hooks.insert(w.id, w.clone());
                        w
                    }
                };
                out.push(ClaimedDelivery { delivery: d, webhook });
            }
            out.sort_by_key(|c| c.delivery.id);
            Ok(out)
        }

        pub async fn record_webhook_attempt(&self, delivery: i64, attempt: &Attempt, now: i64) -> StoreResult<()> {
            let _w = self.write_guard().await;
            match attempt {
                Attempt::Delivered { status_code } => {
                    sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_status_code = $1, last_error = NULL, delivered_at = $2, next_attempt_at = $2 WHERE id = $3")
                        .bind(*status_code).bind(now).bind(delivery).execute(&self.pool).await?;
                }
                Attempt::Failed { status_code, error, retry_at } => {
                    let (status, next) = match retry_at {
                        Some(at) => (DeliveryStatus::Pending, *at),
                        None => (DeliveryStatus::Failed, now),
                    };
                    // Only while still pending: a deactivation meanwhile has the last word.
                    sqlx::query("UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status_code = $2, last_error = $3, next_attempt_at = $4 WHERE id = $5 AND status = 'pending'")
                        .bind(status.as_str()).bind(*status_code).bind(error).bind(next).bind(delivery).execute(&self.pool).await?;
                }
            }
            Ok(())
        }

        pub async fn webhook_deliveries(&self, market: i64, webhook: i64, status: Option<DeliveryStatus>, after: i64, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
            let mut b = sqlx::QueryBuilder::<Db>::new(format!("SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE market_id = "));
            b.push_bind(market).push(" AND webhook_id = ").push_bind(webhook).push(" AND id > ").push_bind(after);
            if let Some(s) = status {
                b.push(" AND status = ").push_bind(s.as_str());
            }
            b.push(format!(" ORDER BY id LIMIT {}", limit.clamp(1, haggle_core::limits::MAX_PAGE)));
            b.build().fetch_all(&self.pool).await?.iter().map(delivery_row).collect()
        }
    }
}
