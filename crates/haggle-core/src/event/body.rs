//! What an event says happened: one variant per kind, each with a typed payload whose fields are
//! exactly the keys the event has always carried (so stored events parse and hash as before).
//! A field an old event lacks must be optional and skipped when absent, or the chain breaks.

use crate::claims::DisputeGrounds;
use crate::ledger::{Account, TransferKind};
use crate::model::*;
use crate::payment::{PaymentStep, PaymentVia};
use crate::policy::{MarketPolicy, PolicyRule};
use serde::{Deserialize, Serialize};

/// Why an event could not be read back: a kind this version does not know, or a payload that
/// does not fit its kind. Both are refused loudly: a reader that skipped them would undercount,
/// and a payload that does not round-trip would no longer verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventParseError {
    #[error("unknown event kind `{0}` (written by a newer version?)")]
    UnknownKind(String),
    #[error("the payload of a `{kind}` event does not parse: {error}")]
    Payload { kind: &'static str, error: String },
}

macro_rules! event_bodies {
    ($( $(#[$doc:meta])* $variant:ident($payload:ty) = $kind:literal, )*) => {
        /// What happened, by kind, with its payload.
        // Unboxed: each body is built once and moved into its event; boxing the few large
        // payloads (a deal, a listing) would cost an allocation per event, and the untyped
        // payload it replaces was a heap tree larger than the widest variant.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum EventBody {
            $( $(#[$doc])* $variant($payload), )*
        }

        impl EventBody {
            /// Every kind, as the wire names them.
            pub const KINDS: &[&str] = &[$($kind),*];

            /// The kind as the wire names it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( EventBody::$variant(_) => $kind, )*
                }
            }

            /// The payload in its wire form (object keys sorted, as stored and hashed).
            pub fn payload_json(&self) -> serde_json::Value {
                match self {
                    $( EventBody::$variant(p) => serde_json::to_value(p), )*
                }
                .expect("event payloads serialise")
            }

            /// Reads a stored event's kind and payload back.
            pub fn from_parts(
                kind: &str,
                payload: serde_json::Value,
            ) -> Result<EventBody, EventParseError> {
                match kind {
                    $( $kind => serde_json::from_value(payload)
                        .map(EventBody::$variant)
                        .map_err(|e| EventParseError::Payload { kind: $kind, error: e.to_string() }), )*
                    other => Err(EventParseError::UnknownKind(other.to_string())),
                }
            }

            /// [`EventBody::from_parts`] from the payload's stored text, typed straight from it
            /// (no `serde_json::Value` in between: reading events back is a hot path).
            pub fn from_stored(kind: &str, payload: &str) -> Result<EventBody, EventParseError> {
                match kind {
                    $( $kind => serde_json::from_str(payload)
                        .map(EventBody::$variant)
                        .map_err(|e| EventParseError::Payload { kind: $kind, error: e.to_string() }), )*
                    other => Err(EventParseError::UnknownKind(other.to_string())),
                }
            }
        }
    };
}

event_bodies! {
    /// The store's first event of a market.
    MarketCreated(MarketCreated) = "market_created",
    /// A simulated clock moved on.
    ClockAdvanced(ClockAdvanced) = "clock_advanced",
    MarketClosingSet(MarketClosingSet) = "market_closing_set",
    PolicyChanged(PolicyChanged) = "policy_changed",
    ParticipantJoined(ParticipantJoined) = "participant_joined",
    ParticipantSuspended(ParticipantSuspended) = "participant_suspended",
    ParticipantReinstated(ParticipantOnly) = "participant_reinstated",
    MandateChanged(MandateChanged) = "mandate_changed",
    /// Its principal changed how a participant trades (issue 19).
    TradingModeChanged(TradingModeChanged) = "trading_mode_changed",
    ListingPosted(ListingPosted) = "listing_posted",
    ListingHeld(ListingHeld) = "listing_held",
    ListingApproved(ListingOnly) = "listing_approved",
    ListingWithdrawn(ListingWithdrawn) = "listing_withdrawn",
    ListingRemoved(ListingRemoved) = "listing_removed",
    ListingSold(ListingSold) = "listing_sold",
    ListingExpired(ListingExpired) = "listing_expired",
    ListingRelisted(ListingRelisted) = "listing_relisted",
    ThreadOpened(ThreadOpened) = "thread_opened",
    ThreadClosed(ThreadClosed) = "thread_closed",
    MessagePosted(MessagePosted) = "message_posted",
    OfferMade(OfferMade) = "offer_made",
    OfferCountered(OfferRef) = "offer_countered",
    OfferSuperseded(OfferRef) = "offer_superseded",
    OfferAccepted(OfferRef) = "offer_accepted",
    OfferRejected(OfferRef) = "offer_rejected",
    OfferWithdrawn(OfferRef) = "offer_withdrawn",
    OfferVoided(OfferVoided) = "offer_voided",
    OfferExpired(OfferExpired) = "offer_expired",
    DealCreated(DealCreated) = "deal_created",
    DealHandedOver(DealHandedOver) = "deal_handed_over",
    /// The seller of a shipped deal recorded its carrier and tracking reference.
    DealShipped(DealShipped) = "deal_shipped",
    /// A simulated carrier delivered a shipped deal (its ground truth's delivery time).
    DealDelivered(DealDelivered) = "deal_delivered",
    DealInspected(DealInspected) = "deal_inspected",
    DealCancelRequested(DealCancelRequested) = "deal_cancel_requested",
    DealDisputed(DealDisputed) = "deal_disputed",
    DisputeEvidenceAdded(DisputeEvidenceAdded) = "dispute_evidence_added",
    DealApprovalGiven(DealApprovalGiven) = "deal_approval_given",
    DealApproved(DealOnly) = "deal_approved",
    DealRated(DealRated) = "deal_rated",
    DealCompleted(DealClosed) = "deal_completed",
    DealCancelled(DealClosed) = "deal_cancelled",
    DealDeclined(DealClosed) = "deal_declined",
    DealRefunded(DealClosed) = "deal_refunded",
    DealPartiallyRefunded(DealClosed) = "deal_partially_refunded",
    TransferBooked(TransferBooked) = "transfer_booked",
    /// The provider holds the deal's price on the buyer's card (spec, trust.md: Payments).
    PaymentAuthorized(PaymentMoved) = "payment_authorized",
    /// The provider charged (all or part of) the hold.
    PaymentCaptured(PaymentMoved) = "payment_captured",
    /// The hold was cancelled at the provider: nothing charged.
    PaymentVoided(PaymentMoved) = "payment_voided",
    /// The provider refunded (all or part of) a charge.
    PaymentRefunded(PaymentMoved) = "payment_refunded",
    /// The provider refused a step, with its code; the money stays where the last confirmed step
    /// left it.
    PaymentFailed(PaymentFailed) = "payment_failed",
    /// A participant driven from outside a simulated market may act now, until it ends the turn
    /// or the turn's time budget passes (issue 24). On that participant's feed only.
    TurnStarted(TurnStarted) = "turn_started",
    /// The turn's time budget passed before the participant ended it: the market went on.
    TurnTimedOut(TurnRef) = "turn_timed_out",
}

impl EventBody {
    /// A deal's closing event; its kind follows the final status (`deal_completed`, ...).
    pub fn deal_closed(p: DealClosed) -> EventBody {
        match p.status {
            DealStatus::Completed => EventBody::DealCompleted(p),
            DealStatus::Cancelled => EventBody::DealCancelled(p),
            DealStatus::Declined => EventBody::DealDeclined(p),
            DealStatus::Refunded => EventBody::DealRefunded(p),
            DealStatus::PartiallyRefunded => EventBody::DealPartiallyRefunded(p),
            other => panic!("a deal does not close as {other}"),
        }
    }

    /// An offer superseded, countered or expired by a newer offer in its thread.
    pub fn offer_replaced(state: OfferState, p: OfferRef) -> EventBody {
        match state {
            OfferState::Countered => EventBody::OfferCountered(p),
            OfferState::Superseded => EventBody::OfferSuperseded(p),
            OfferState::Expired => EventBody::OfferExpired(OfferExpired {
                offer_id: p.offer_id,
                thread_id: p.thread_id,
                reason: None,
            }),
            other => panic!("a new offer does not leave the old one {other}"),
        }
    }

    /// The deal whose payment a `payment_*` event tells of (issue 23); `None` for every other
    /// kind.
    pub fn payment_deal(&self) -> Option<DealId> {
        match self {
            EventBody::PaymentAuthorized(p)
            | EventBody::PaymentCaptured(p)
            | EventBody::PaymentVoided(p)
            | EventBody::PaymentRefunded(p) => Some(p.deal_id),
            EventBody::PaymentFailed(p) => Some(p.deal_id),
            _ => None,
        }
    }

    /// The deal an event is about, when it is about one.
    pub fn deal_id(&self) -> Option<DealId> {
        match self {
            EventBody::DealCreated(p) => Some(p.deal.id),
            EventBody::ListingSold(p) => Some(p.deal_id),
            EventBody::ListingRelisted(p) => Some(p.deal_id),
            EventBody::ListingExpired(p) => p.deal_id,
            EventBody::DealHandedOver(p) => Some(p.deal_id),
            EventBody::DealShipped(p) => Some(p.deal_id),
            EventBody::DealDelivered(p) => Some(p.deal_id),
            EventBody::DealInspected(p) => Some(p.deal_id),
            EventBody::DealCancelRequested(p) => Some(p.deal_id),
            EventBody::DealDisputed(p) => Some(p.deal_id),
            EventBody::DisputeEvidenceAdded(p) => Some(p.deal_id),
            EventBody::DealApprovalGiven(p) => Some(p.deal_id),
            EventBody::DealApproved(p) => Some(p.deal_id),
            EventBody::DealRated(p) => Some(p.deal_id),
            EventBody::DealCompleted(p)
            | EventBody::DealCancelled(p)
            | EventBody::DealDeclined(p)
            | EventBody::DealRefunded(p)
            | EventBody::DealPartiallyRefunded(p) => Some(p.deal_id),
            EventBody::TransferBooked(p) => p.deal_id,
            EventBody::PaymentAuthorized(p)
            | EventBody::PaymentCaptured(p)
            | EventBody::PaymentVoided(p)
            | EventBody::PaymentRefunded(p) => Some(p.deal_id),
            EventBody::PaymentFailed(p) => Some(p.deal_id),
            _ => None,
        }
    }

    /// The offer and thread of an event about an offer already made (its counter, acceptance,
    /// rejection, withdrawal, supersession, voiding or expiry; not `offer_made`).
    pub fn offer_ref(&self) -> Option<(OfferId, ThreadId)> {
        match self {
            EventBody::OfferCountered(p)
            | EventBody::OfferSuperseded(p)
            | EventBody::OfferAccepted(p)
            | EventBody::OfferRejected(p)
            | EventBody::OfferWithdrawn(p) => Some((p.offer_id, p.thread_id)),
            EventBody::OfferVoided(p) => Some((p.offer_id, p.thread_id)),
            EventBody::OfferExpired(p) => Some((p.offer_id, p.thread_id)),
            _ => None,
        }
    }

    /// The thread an event is about, when it is about one.
    pub fn thread_id(&self) -> Option<ThreadId> {
        match self {
            EventBody::ThreadOpened(p) => Some(p.thread.id),
            EventBody::ThreadClosed(p) => Some(p.thread_id),
            EventBody::MessagePosted(p) => Some(p.message.thread_id),
            EventBody::OfferMade(p) => Some(p.offer.thread_id),
            EventBody::OfferCountered(p)
            | EventBody::OfferSuperseded(p)
            | EventBody::OfferAccepted(p)
            | EventBody::OfferRejected(p)
            | EventBody::OfferWithdrawn(p) => Some(p.thread_id),
            EventBody::OfferVoided(p) => Some(p.thread_id),
            EventBody::OfferExpired(p) => Some(p.thread_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketCreated {
    pub market: Market,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvanced {
    pub now: Timestamp,
    pub by_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketClosingSet {
    pub closes_at: Option<Timestamp>,
    pub previous: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChanged {
    pub policy: MarketPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantJoined {
    pub participant_id: ParticipantId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantSuspended {
    pub participant_id: ParticipantId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnStarted {
    pub participant_id: ParticipantId,
    /// The participant's turn, counted from 1 (end it with `POST .../turns/{turn}/end`).
    pub turn: u64,
    /// The scheduler's round.
    pub round: u64,
    /// How long the scheduler waits for the end of the turn, in real (wall-clock) ms; the market's
    /// clock does not move meanwhile.
    pub budget_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnRef {
    pub participant_id: ParticipantId,
    pub turn: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantOnly {
    pub participant_id: ParticipantId,
}

/// The agent's view of the new mandate (the seller side's values stay out of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandateChanged {
    pub participant_id: ParticipantId,
    pub mandate: Mandate,
    pub by: MandateAuthor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingModeChanged {
    pub participant_id: ParticipantId,
    pub mode: TradingMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingPosted {
    pub listing: Listing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingHeld {
    pub listing: Listing,
    pub rules: Vec<PolicyRule>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingOnly {
    pub listing_id: ListingId,
}

/// By its owner (no reason), or with the owner's suspension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingWithdrawn {
    pub listing_id: ListingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<VoidReason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingRemoved {
    pub listing_id: ListingId,
    pub owner: ParticipantId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingSold {
    pub listing_id: ListingId,
    pub deal_id: DealId,
    pub price: Money,
    pub title: String,
}

/// At the market's close: an active listing (with its title), or one whose deal fell through
/// after the close (with the deal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingExpired {
    pub listing_id: ListingId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal_id: Option<DealId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingRelisted {
    pub listing_id: ListingId,
    pub deal_id: DealId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadOpened {
    pub thread: Thread,
}

/// `reason` is a [`VoidReason`] or one of `offer_cap_reached`, `deadline_passed`,
/// `market_closed`, kept as the text stored events carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadClosed {
    pub thread_id: ThreadId,
    pub status: ThreadStatus,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagePosted {
    pub message: Message,
    pub listing_id: ListingId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferMade {
    pub offer: Offer,
    pub offers_made: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRef {
    pub offer_id: OfferId,
    pub thread_id: ThreadId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferVoided {
    pub offer_id: OfferId,
    pub thread_id: ThreadId,
    pub reason: VoidReason,
}

/// Past its own expiry (no reason), or at the market's close (`market_closed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferExpired {
    pub offer_id: OfferId,
    pub thread_id: ThreadId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealCreated {
    pub deal: Deal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealHandedOver {
    pub deal_id: DealId,
    pub note: Option<String>,
    pub confirm_deadline: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealShipped {
    pub deal_id: DealId,
    pub carrier: String,
    pub tracking: String,
    pub confirm_deadline: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealDelivered {
    pub deal_id: DealId,
    pub delivered_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealInspected {
    pub deal_id: DealId,
    pub mismatched: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealCancelRequested {
    pub deal_id: DealId,
    pub by: ParticipantId,
}

/// An `other` dispute carries no grounds nor claims (as before grounds existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealDisputed {
    pub deal_id: DealId,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounds: Option<DisputeGrounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeEvidenceAdded {
    pub deal_id: DealId,
    pub note_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealApprovalGiven {
    pub deal_id: DealId,
    pub awaiting: Approver,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealOnly {
    pub deal_id: DealId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealRated {
    pub deal_id: DealId,
    pub rater: ParticipantId,
}

/// `reason` is the resolution's note (`receipt_confirmed`, `dispute_resolved`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealClosed {
    pub deal_id: DealId,
    pub status: DealStatus,
    pub to_buyer: Money,
    pub to_seller: Money,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferBooked {
    pub transfer_id: i64,
    #[serde(with = "account_key")]
    pub debit: Account,
    #[serde(with = "account_key")]
    pub credit: Account,
    pub amount: Money,
    pub kind: TransferKind,
    pub deal_id: Option<DealId>,
    pub idempotency_id: String,
}

/// A payment step the provider confirmed, or a change it reported (issue 23): `amount` is what
/// this change moved (held, charged, released or refunded); `held` and `charged` are the deal's
/// payment after it. `partial`: a capture of less than the price, or a refund of less than the
/// charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentMoved {
    pub deal_id: DealId,
    pub intent: String,
    pub amount: Money,
    pub held: Money,
    pub charged: Money,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    pub via: PaymentVia,
}

/// A provider's refusal of a step (`attempt` counts deliberate retries, each a new key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFailed {
    pub deal_id: DealId,
    pub step: PaymentStep,
    pub code: String,
    pub attempt: u32,
}

/// Accounts appear in transfer events by their storage key (`available:12`, `escrow`).
mod account_key {
    use crate::ledger::Account;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Account, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.key())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Account, D::Error> {
        let key = String::deserialize(d)?;
        Account::parse(&key)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown account `{key}`")))
    }
}
