//! Payments as stored (issue 23): per deal the provider-confirmed record, per participant the
//! provider's customer and payment method ids its principal attached. A deal's record is written
//! only by the market command `Command::RecordPayment`, with its events on the chain; payment
//! methods are not market state. SQL in `payments_backend.rs`.

use crate::{Store, StoreResult};
use haggle_core::Timestamp;
use haggle_core::payment::Payment;
use serde::{Deserialize, Serialize};

/// The provider's ids for a participant's way to pay (never a card number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub customer: String,
    pub payment_method: String,
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
    pub async fn payment(&self, market: i64, deal: i64) -> StoreResult<Option<Payment>> {
        on_backend!(self, b => b.payment(market, deal).await)
    }
    /// A market's payment records by deal id, after `after`.
    pub async fn payments(&self, market: i64, after: i64, limit: u32) -> StoreResult<Vec<Payment>> {
        on_backend!(self, b => b.payments(market, after, limit).await)
    }
    pub async fn put_payment_method(
        &self,
        market: i64,
        participant: i64,
        m: &PaymentMethod,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_backend!(self, b => b.put_payment_method(market, participant, m, now).await)
    }
    pub async fn payment_method(
        &self,
        market: i64,
        participant: i64,
    ) -> StoreResult<Option<PaymentMethod>> {
        on_backend!(self, b => b.payment_method(market, participant).await)
    }
}
