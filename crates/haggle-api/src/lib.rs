//! Haggle's shared contract: the wire types of the HTTP API (requests, responses, the error body)
//! and the error codes. The service implements it in-process; clients (HTTP, MCP, agents) speak it.

use haggle_core::model::{
    ClockMode, Deal, Listing, Mandate, MarketRules, Message, Money, Offer, Participant, Thread,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The domain types the contract speaks in (listings, offers, deals, events).
pub use haggle_core;
pub use haggle_core::views::{
    Balance, ListingQuery, ListingSort, Page, ThreadDetail, Verification,
};
pub use haggle_core::{DomainError, ErrorCode, Event};

pub mod client;
pub use client::{ClientError, MarketClient};

/// The spec's error body: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, one of the spec's codes: `unauthorized`, `forbidden`, `not_found`,
    /// `invalid_request`, `invalid_price`, `insufficient_funds`, `mandate_exceeded`,
    /// `listing_unavailable`, `offer_not_live`, `offer_expired`, `not_your_offer`,
    /// `too_many_offers`, `invalid_transition`, `idempotency_conflict`,
    /// `idempotency_in_flight`, `rate_limited`, `agent_frozen`, `thread_closed`, and Haggle's
    /// extensions `market_closed` (409: the market passed its closing time), `agent_paused` (403:
    /// the principal paused its agent), `too_many_messages` and `too_many_notes` (422: a party
    /// added as many messages to a thread, or notes to a deal, as one party may),
    /// `below_seller_minimum` (422: a price below the seller mandate's minimum, whose value is
    /// never told), `policy_violation` (422: a market policy rule, named in the message, refuses
    /// it), `participant_suspended` (403: an operator suspended the participant) and
    /// `payment_failed` (409: the payment provider refused a step, its code in the message),
    /// `not_your_turn` (409: a participant driven from outside a simulation acted, or ended a
    /// turn, outside its open turn); `internal`
    /// `awaiting_principal` (409: in trading mode `propose` the agent's offer, counter or
    /// acceptance waits as a proposal for its principal to confirm or decline); `internal`
    /// is a 5xx; `unavailable` (503) is a client's own report that the server could not be
    /// reached (status 0 in `ClientError`).
    #[schema(value_type = String)]
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

impl From<&DomainError> for ErrorBody {
    fn from(e: &DomainError) -> ErrorBody {
        ErrorBody::new(e.code, e.message.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMarket {
    pub name: String,
    /// ISO 4217 code (default `USD`); amounts are in its minor units.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// `real` (default) or `simulated` (advanced by the operator through `/clock/advance`).
    #[serde(default)]
    pub clock: Option<ClockMode>,
    /// Start of a simulated clock, ms since the epoch up to year 9999 (default: now).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub sim_start_ms: Option<i64>,
    #[serde(default)]
    pub rules: Option<MarketRules>,
}

fn default_currency() -> String {
    "USD".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterParticipant {
    pub name: String,
    /// Starting budget in minor units, funded from the market's funding account.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub budget: Money,
    #[serde(default)]
    pub mandate: Option<Mandate>,
}

/// A new participant and the two credentials made for it (shown once, stored only as hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParticipantCreated {
    pub participant: Participant,
    pub agent_token: String,
    pub principal_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fund {
    /// Minor units.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub frozen: bool,
}

/// A principal pauses (`true`) or resumes its own agent (`POST .../pause`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub paused: bool,
}

/// A principal sets how its participant trades (`PUT .../trading_mode`): `agent` (its agent
/// trades alone), `propose` (the agent's offers, counters and acceptances wait for the principal's
/// confirmation in the web UI; the agent is answered `awaiting_principal`) or `principal` (the
/// principal trades by hand; the agent is paused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTradingMode {
    pub mode: haggle_core::TradingMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `observer` (read-only view of one market) or `operator` (needs an operator token).
    pub role: String,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    /// The token's public id: the lowercase hex SHA-256 of `token` (what revocation names).
    #[serde(default)]
    pub token_id: String,
    pub role: String,
    pub market_id: Option<i64>,
}

/// A token as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The lowercase hex SHA-256 of the token's secret.
    pub token_id: String,
    pub role: String,
    pub market_id: Option<i64>,
    pub participant_id: Option<i64>,
    pub label: String,
    pub created_at: i64,
    /// When it was revoked (ms since the epoch); a revoked token no longer authenticates.
    pub revoked_at: Option<i64>,
}

/// Posts a listing: `side = sell`, or `buy` for a wanted ad.
pub type NewListing = haggle_core::negotiation::NewListing;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OpenThread {
    #[serde(default)]
    pub message: Option<String>,
    /// An opening offer, in minor units.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub price: Option<Money>,
    /// Whole milliseconds, at most the market's `offer_ttl_ms` (its default).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThreadOpened {
    pub thread: Thread,
    pub message: Option<Message>,
    pub offer: Option<Offer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeOffer {
    /// Minor units.
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub price: Money,
    /// Whole milliseconds, at most the market's `offer_ttl_ms` (its default).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Whole milliseconds, 1 ms to 366 days.
    #[schema(minimum = 1, maximum = 31_622_400_000_i64)]
    pub by_ms: i64,
}

/// Sets, moves or removes a market's closing time (`PUT /v1/markets/{market}/closes_at`,
/// operators). A time already past closes the market at the next sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetClosingTime {
    /// Ms since the epoch on the market's clock, up to year 9999; `null` makes the market
    /// open-ended. Required: an empty body must not reopen a closed market by accident.
    #[serde(deserialize_with = "present")]
    #[schema(required = true, minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub closes_at: Option<i64>,
}

/// A field that must be present even when `null` (serde treats a missing `Option` as `None`
/// unless the field has its own deserializer).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::deserialize(d)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClockReading {
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub ok: bool,
}

/// How a turn of a participant driven from outside a simulation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnEnd {
    /// The participant ended it (`end_turn`).
    Ended,
    /// Its time budget passed first (a timeout: the market went on).
    TimedOut,
}

/// An outside participant's turn, ended by it (`POST .../turns/{turn}/end`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TurnEnded {
    pub participant_id: i64,
    pub turn: u64,
    pub ended: bool,
}

/// A thread as its parties see it, with the deadline state of rule 6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThreadView {
    #[serde(flatten)]
    pub detail: ThreadDetail,
    /// Offers left before the cap (absent when the market has no cap).
    pub offers_remaining: Option<u32>,
    pub live_offer_expires_at: Option<i64>,
    /// The elapsed fraction `t` in [0, 1], in parts per million.
    pub elapsed_ppm: u32,
    /// The thread at a glance for the reader: whose move, live offer, offers and time left.
    pub summary: haggle_core::ThreadSummary,
}

/// Why an operator removes a listing or suspends a participant (shown to its owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// 1 to 2000 characters.
    pub reason: String,
}

/// A page of the moderation queue: held listings, oldest first, with the rules that held them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldListingPage {
    pub items: Vec<haggle_core::policy::HeldListing>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingPage {
    pub items: Vec<Listing>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `after` to continue.
    pub next_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThreadList {
    pub items: Vec<ThreadItem>,
    /// May come with fewer than `limit` items when a filter is set: the filter applies to each
    /// scanned page; follow it until absent.
    pub next_cursor: Option<String>,
}

/// A listed thread with its state at a glance for the reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ThreadItem {
    #[serde(flatten)]
    pub thread: Thread,
    pub summary: haggle_core::ThreadSummary,
}

/// Which threads a thread list keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadFilter {
    pub status: Option<haggle_core::model::ThreadStatus>,
    /// Only threads where it is (or is not) the reader's move; needs a participant reader.
    pub your_move: Option<bool>,
}

impl ThreadFilter {
    /// From query-string text; the error names the parameter and its allowed values. `state` is
    /// the parameter's name; `status` is its older alias, accepted alone (both at once is
    /// refused, so a caller never wonders which one won).
    pub fn parse(
        state: Option<&str>,
        status: Option<&str>,
        your_move: Option<&str>,
    ) -> Result<ThreadFilter, String> {
        let (name, state) = match (state, status) {
            (Some(_), Some(_)) => {
                return Err("give state or its alias status, not both".into());
            }
            (Some(s), None) => ("state", Some(s)),
            (None, Some(s)) => ("status", Some(s)),
            (None, None) => ("state", None),
        };
        let status = match state {
            None => None,
            Some(s) => Some(haggle_core::model::ThreadStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = haggle_core::model::ThreadStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                format!("{name} must be one of {}, got '{s}'", all.join(", "))
            })?),
        };
        let your_move = match your_move {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => return Err(format!("your_move must be true or false, got '{v}'")),
        };
        Ok(ThreadFilter { status, your_move })
    }
    pub fn keeps(&self, item: &ThreadItem) -> bool {
        self.status.is_none_or(|s| item.thread.status == s)
            && self
                .your_move
                .is_none_or(|m| item.summary.your_move == Some(m))
    }
}

/// Threads a thread list reads to order them, at most (one store page of 500 at a time): a
/// reader's threads beyond the first 50,000 (by id) are left out of the list.
pub const THREAD_SCAN: usize = 50_000;

/// A thread's place in every thread list (HTTP, MCP, the web pages): open threads first, then
/// ended ones, each by newest activity first (`summary.last_activity_at`), the higher id first on
/// a tie. The one order of thread lists, and the key their cursors hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ThreadOrder {
    ended: bool,
    last_activity: std::cmp::Reverse<i64>,
    id: std::cmp::Reverse<i64>,
}

impl ThreadOrder {
    pub fn of(item: &ThreadItem) -> ThreadOrder {
        ThreadOrder {
            ended: item.thread.status != haggle_core::model::ThreadStatus::Open,
            last_activity: std::cmp::Reverse(item.summary.last_activity_at),
            id: std::cmp::Reverse(item.thread.id),
        }
    }

    /// Sorts a list into the order.
    pub fn sort(items: &mut [ThreadItem]) {
        items.sort_by_key(ThreadOrder::of);
    }

    /// The cursor of a page ending at this place: the next page holds the threads after it.
    /// Keyed, not an offset, so a thread never appears twice while a reader pages; a thread
    /// with new activity meanwhile moves ahead of the cursor, to the top of the next poll.
    pub fn cursor(&self) -> String {
        format!(
            "{}.{}.{}",
            u8::from(self.ended),
            self.last_activity.0,
            self.id.0
        )
    }

    /// A cursor `cursor` made, or None for any other text.
    pub fn parse_cursor(c: &str) -> Option<ThreadOrder> {
        let mut parts = c.split('.');
        let ended = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let last_activity = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ThreadOrder {
            ended,
            last_activity: std::cmp::Reverse(last_activity),
            id: std::cmp::Reverse(id),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DealList {
    pub items: Vec<Deal>,
    pub next_cursor: Option<String>,
}

/// A deal's notes (handover, dispute, evidence, ruling), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotePage {
    pub items: Vec<haggle_core::DealNote>,
    pub next_cursor: Option<String>,
}

/// A thread's messages, newest first (`GET .../threads/{thread}/messages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<haggle_core::Message>,
    pub next_cursor: Option<String>,
}

/// A page of the markets the caller may see, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MarketList {
    pub items: Vec<haggle_core::Market>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ParticipantList {
    pub items: Vec<Participant>,
    pub next_cursor: Option<String>,
}

/// Who the caller is (`GET /v1/me`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub role: String,
    pub market_id: Option<i64>,
    pub participant_id: Option<i64>,
}

/// The seller of a shipped deal records how it was sent (spec trust.md, Shipping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Ship {
    /// The carrier ("DHL", "La Poste"), at most 100 characters.
    pub carrier: String,
    /// The carrier's tracking reference, at most 200 characters.
    pub tracking: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HandOver {
    /// What the buyer should know ("left at reception", a tracking number).
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelDeal {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDispute {
    /// The buyer's own words.
    pub reason: String,
    /// The spec's dispute reason: `not_as_described`, `not_received` or `other` (default).
    #[serde(default = "other_grounds")]
    pub grounds: haggle_core::DisputeGrounds,
    /// For `not_as_described`: the claims the inspection found contradicted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
}

fn other_grounds() -> haggle_core::DisputeGrounds {
    haggle_core::DisputeGrounds::Other
}

impl OpenDispute {
    /// A dispute on grounds `other`, as before grounds existed.
    pub fn other(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
            grounds: haggle_core::DisputeGrounds::Other,
            claims: Vec::new(),
        }
    }
}

/// The buyer's principal's inspection of a handed-over deal in a real market: no `mismatched`
/// claims confirms the item is as described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReportInspection {
    #[serde(default)]
    pub mismatched: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEvidence {
    pub body: String,
}

/// `{"ruling": {"outcome": "release" | "refund" | "split", "to_buyer": N}, "note": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDispute {
    pub ruling: haggle_core::lifecycle::Ruling,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideApproval {
    pub approve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateDeal {
    /// 1 to 5.
    #[schema(minimum = 1, maximum = 5)]
    pub score: u8,
    #[serde(default)]
    pub comment: String,
}

/// A listing with its owner's reputation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListingView {
    #[serde(flatten)]
    pub listing: Listing,
    pub owner_reputation: haggle_core::lifecycle::Reputation,
}

/// Registers a webhook: the market's events (from now on) are POSTed to `url`, signed with the
/// secret returned once at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `http://` endpoint (at most 2,000 characters). `https://` needs a build with TLS.
    pub url: String,
    /// Event kinds to deliver (`deal_created`, `offer_made`, ...); empty or absent = every event.
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// A webhook as listed (its secret is shown only at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub market_id: i64,
    pub url: String,
    /// Empty = every event.
    pub event_types: Vec<String>,
    /// `event` (the signed event JSON) or `chat` (the market's chat channel: its URL is shown
    /// shortened, since it is the channel's secret).
    #[serde(default)]
    pub format: WebhookFormat,
    pub active: bool,
    pub created_at: i64,
}

/// What a webhook's deliveries carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// One event as JSON, signed (`Haggle-Signature`).
    #[default]
    Event,
    /// A chat line `{"text": ...}` (Slack's and Mattermost's incoming webhooks), set with
    /// `PUT /v1/markets/{market}/channel`.
    Chat,
}

/// Sets the market's chat channel (one per market; setting it again replaces it): the chosen
/// event kinds are posted to an incoming-webhook URL as `{"text": ...}` lines with Slack-style
/// links (`<url|label>`, which Mattermost also reads) back to the web pages, retried like
/// webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetChannel {
    /// The incoming-webhook URL (`http://` or `https://`, at most 2,000 characters). It is the
    /// channel's secret: stored, and shown back shortened only.
    pub url: String,
    /// Event kinds to post (`listing_posted`, `deal_created`, `deal_disputed`, ...); empty or
    /// absent = those three.
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// The market's chat channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Channel {
    /// The webhook behind it (its deliveries: `GET .../webhooks/{webhook}/deliveries`).
    pub webhook_id: i64,
    pub market_id: i64,
    /// The URL shortened to its host and last characters (`https://hooks.slack.com/…x7Qa`).
    pub url: String,
    pub kinds: Vec<String>,
    /// Whether lines carry links to the web pages (the server knows its public URL:
    /// `haggle serve --public-url`).
    pub links: bool,
    pub created_at: i64,
}

/// The market's chat channel, if one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelState {
    pub channel: Option<Channel>,
}

/// A new webhook and its signing secret (shown once; stored to sign deliveries).
///
/// Each delivery is a `POST` of one event as JSON with headers `Haggle-Event-Type`,
/// `Haggle-Delivery-Id`, `Haggle-Timestamp` (ms since the epoch) and
/// `Haggle-Signature: v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    pub webhook: Webhook,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<Webhook>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; due at `next_attempt_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after the last attempt, or the webhook was deactivated.
    Failed,
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_seq: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When a pending delivery is next attempted (absent once delivered or failed).
    pub next_attempt_at: Option<i64>,
    /// The HTTP status of the last attempt (absent when it got no answer).
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub items: Vec<WebhookDelivery>,
    pub next_cursor: Option<String>,
}

/// A market at a glance (`GET /v1/markets/{market}/summary`): aggregates every participant may
/// see, since each sale's price is already public (`listing_sold` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MarketSummary {
    pub market_id: i64,
    pub name: String,
    pub currency: String,
    #[schema(value_type = String)]
    pub clock_mode: ClockMode,
    /// The market's clock now (simulated or real), ms since the epoch.
    pub now: i64,
    pub participants: u64,
    /// Deals that stand as trades (cancelled, declined and refunded ones excluded), as the
    /// experiment report counts them (`haggle_core::figures::counts_as_trade`).
    pub deals: u64,
    /// Sum of those deals' prices, in minor units.
    pub volume: Money,
    /// Median price of those deals (of an even count the mean of the middle two, rounded down:
    /// `haggle_core::figures::median`, the report's); absent with none.
    pub median_price: Option<Money>,
    /// Deals whose escrow hold is still open (awaiting approval, agreed, handed over, disputed).
    pub open_deals: u64,
    pub completed_deals: u64,
    pub disputed_deals: u64,
    /// When the market closes (ms since the epoch, market clock); absent when open-ended.
    pub closes_at: Option<i64>,
    /// Ms until the close by the market's clock: 0 once closed, absent when open-ended.
    pub time_left_ms: Option<i64>,
    /// The market has closed: nothing new is traded, agreed deals still settle.
    pub closed: bool,
}

/// A principal's survey answer (`PUT .../participants/{participant}/survey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerSurvey {
    /// How fair the outcome felt: 1 (not at all) to 7 (completely).
    #[schema(minimum = 1, maximum = 7)]
    pub fairness: u8,
    /// Satisfaction with the agent: 1 to 7.
    #[schema(minimum = 1, maximum = 7)]
    pub satisfaction: u8,
    /// What you would pay to be represented this way again, in minor units (0 = nothing).
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub would_pay: Money,
    #[serde(default)]
    pub comment: String,
}

/// A stored survey answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SurveyAnswer {
    pub market_id: i64,
    pub participant_id: i64,
    pub fairness: u8,
    pub satisfaction: u8,
    pub would_pay: Money,
    pub comment: String,
    pub answered_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SurveyAnswerList {
    pub items: Vec<SurveyAnswer>,
    pub next_cursor: Option<String>,
}

// ---- payments (issue 23) ----

/// The payment provider's ids for a participant's way to pay, attached by its principal after
/// entering the card on the provider's own page (Haggle never sees card numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachPaymentMethod {
    /// The provider's customer id (`cus_...`).
    pub customer: String,
    /// The provider's payment method id (`pm_...`), attached to that customer.
    pub payment_method: String,
}

/// One deal whose provider state differs from the ledger's (reconciliation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentDifference {
    pub deal_id: i64,
    pub deal_status: haggle_core::DealStatus,
    /// What the ledger says should stand: `hold 1000`, `charge 600`, `release`.
    pub ledger: String,
    /// What Haggle recorded as confirmed.
    pub recorded: haggle_core::payment::PaymentState,
    /// What the provider holds now (`requires_capture 1000`, `succeeded 600`, `canceled`, or
    /// `no intent`), or why it could not be asked.
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    pub market_id: i64,
    /// Deals compared (every deal of the market, up to the limit).
    pub compared: u32,
    pub differences: Vec<PaymentDifference>,
}
