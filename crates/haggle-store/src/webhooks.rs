//! Webhooks as stored: an operator's endpoints per market and the deliveries of that market's
//! events to them. None of this is market state: it is written outside the market's write lock, so
//! a slow or failing receiver never delays a command. The SQL is `webhooks_backend.rs`, compiled
//! into both backends like `backend.rs`.

use crate::{Store, StoreResult};
use haggle_core::Timestamp;
use serde::{Deserialize, Serialize};

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: i64,
    pub market_id: i64,
    pub url: String,
    /// The HMAC-SHA256 key deliveries are signed with (plain text: signing needs it).
    pub secret: String,
    /// Event kinds to deliver; empty = every event.
    pub event_types: Vec<String>,
    /// What a delivery's body is: the signed event, or a chat line (a channel).
    pub format: WebhookFormat,
    pub active: bool,
    /// The market's events up to this sequence number have been enqueued or filtered out.
    pub cursor_seq: i64,
    pub created_at: Timestamp,
}

impl WebhookRecord {
    /// Whether an event of this kind goes to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub market_id: i64,
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
    pub format: WebhookFormat,
}

/// What a webhook's deliveries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON, signed (`Haggle-Signature`).
    Event,
    /// A chat channel: `{"text": ...}`, the event told in a sentence with a link, as Slack's
    /// and Mattermost's incoming webhooks take it. Its URL is the secret.
    Chat,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Event => "event",
            WebhookFormat::Chat => "chat",
        }
    }
    pub fn parse(s: &str) -> Option<WebhookFormat> {
        [WebhookFormat::Event, WebhookFormat::Chat]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: due at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (too many failed attempts, or the webhook was deactivated).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub webhook_id: i64,
    pub market_id: i64,
    pub event_seq: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// A delivery claimed for one attempt (leased until its `next_attempt_at`), with its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRecord,
    pub webhook: WebhookRecord,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status_code: i64,
    },
    Failed {
        status_code: Option<i64>,
        error: String,
        /// When to try again; `None` gives up (the delivery becomes `failed`).
        retry_at: Option<Timestamp>,
    },
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
    /// Registers an endpoint; it receives the market's events from now on. `None`: no such market.
    pub async fn create_webhook(
        &self,
        w: &NewWebhook,
        now: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        on_backend!(self, b => b.create_webhook(w, now).await)
    }
    pub async fn webhook(&self, market: i64, id: i64) -> StoreResult<Option<WebhookRecord>> {
        on_backend!(self, b => b.webhook(market, id).await)
    }
    pub async fn webhooks(
        &self,
        market: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<WebhookRecord>> {
        on_backend!(self, b => b.webhooks(market, after, limit).await)
    }
    /// Active endpoints of every market, by id, for the delivery worker.
    pub async fn active_webhooks(&self, after: i64, limit: u32) -> StoreResult<Vec<WebhookRecord>> {
        on_backend!(self, b => b.active_webhooks(after, limit).await)
    }
    /// Stops deliveries to an endpoint; its pending deliveries become `failed`.
    pub async fn deactivate_webhook(
        &self,
        market: i64,
        id: i64,
        now: Timestamp,
    ) -> StoreResult<Option<WebhookRecord>> {
        on_backend!(self, b => b.deactivate_webhook(market, id, now).await)
    }
    /// Moves a webhook's cursor from `from` to `to` and enqueues `events` (`(seq, kind)`, each
    /// in `from < seq <= to`). Returns how many were enqueued; 0 when another worker moved the
    /// cursor first.
    pub async fn enqueue_webhook_deliveries(
        &self,
        webhook: &WebhookRecord,
        to: i64,
        events: &[(i64, String)],
        now: Timestamp,
    ) -> StoreResult<usize> {
        on_backend!(self, b => b.enqueue_webhook_deliveries(webhook, to, events, now).await)
    }
    /// Claims up to `limit` pending deliveries due at `now` of active webhooks, leasing each until
    /// `lease_until` so no other worker attempts it meanwhile.
    pub async fn claim_webhook_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        on_backend!(self, b => b.claim_webhook_deliveries(now, lease_until, limit).await)
    }
    pub async fn record_webhook_attempt(
        &self,
        delivery: i64,
        attempt: &Attempt,
        now: Timestamp,
    ) -> StoreResult<()> {
        on_backend!(self, b => b.record_webhook_attempt(delivery, attempt, now).await)
    }
    pub async fn webhook_deliveries(
        &self,
        market: i64,
        webhook: i64,
        status: Option<DeliveryStatus>,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        on_backend!(self, b => b.webhook_deliveries(market, webhook, status, after, limit).await)
    }
}
