//! Refusals of the market rules. Each carries a stable machine-readable code (the spec's list) and a
//! human message; a refusal always means "no state change".

use serde::{Deserialize, Serialize};

/// The machine-readable error codes of the spec (Errors). Adapters add none of their own meaning.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    NotFound,
    InvalidRequest,
    InvalidPrice,
    InsufficientFunds,
    MandateExceeded,
    ListingUnavailable,
    OfferNotLive,
    OfferExpired,
    NotYourOffer,
    TooManyOffers,
    InvalidTransition,
    IdempotencyConflict,
    IdempotencyInFlight,
    RateLimited,
    AgentFrozen,
    /// The principal paused its own agent (separate from an operator's freeze).
    AgentPaused,
    ThreadClosed,
    /// A party has added as many messages to a thread as one party may (spam bound).
    TooManyMessages,
    /// A party has added as many notes to a deal as one party may (spam bound).
    TooManyNotes,
    /// The market has passed its closing time: nothing new is traded (an extension of the spec).
    MarketClosed,
    /// The market could not be reached (a client's transport failure: refused connection,
    /// timeout); nothing is known about the request's effect. Never a refusal by the rules.
    Unavailable,
    /// A price below the seller's mandate minimum (listing, seller's offer, acceptance); the
    /// value of the minimum is never told (spec: trust.md).
    BelowSellerMinimum,
    /// A market policy rule refuses the listing or offer; the message names the rule.
    PolicyViolation,
    /// An operator suspended the participant: its agent tokens are refused and it can only
    /// settle the deals it already agreed.
    ParticipantSuspended,
    /// The payment provider refused a step of a deal's payment (card declined, authorisation
    /// expired); the message carries the provider's code (spec: trust.md, Payments).
    PaymentFailed,
    /// A participant driven from outside a simulated market (issue 24) acted, or ended a turn,
    /// when that turn was not open: it acts only between its `turn_started` event and the end of
    /// that turn, so a run stays replayable.
    NotYourTurn,
    /// The participant's trading mode is `propose`: the agent's offer, counter or acceptance
    /// did not run; it waits as a proposal its principal confirms or declines (issue 19).
    AwaitingPrincipal,
    /// A server fault (a 5xx): never a refusal by the rules, always a bug to report.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 30] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPrice,
        ErrorCode::InsufficientFunds,
        ErrorCode::MandateExceeded,
        ErrorCode::ListingUnavailable,
        ErrorCode::OfferNotLive,
        ErrorCode::OfferExpired,
        ErrorCode::NotYourOffer,
        ErrorCode::TooManyOffers,
        ErrorCode::InvalidTransition,
        ErrorCode::IdempotencyConflict,
        ErrorCode::IdempotencyInFlight,
        ErrorCode::RateLimited,
        ErrorCode::AgentFrozen,
        ErrorCode::AgentPaused,
        ErrorCode::ThreadClosed,
        ErrorCode::TooManyMessages,
        ErrorCode::TooManyNotes,
        ErrorCode::MarketClosed,
        ErrorCode::Unavailable,
        ErrorCode::BelowSellerMinimum,
        ErrorCode::PolicyViolation,
        ErrorCode::ParticipantSuspended,
        ErrorCode::PaymentFailed,
        ErrorCode::NotYourTurn,
        ErrorCode::AwaitingPrincipal,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPrice => "invalid_price",
            ErrorCode::InsufficientFunds => "insufficient_funds",
            ErrorCode::MandateExceeded => "mandate_exceeded",
            ErrorCode::ListingUnavailable => "listing_unavailable",
            ErrorCode::OfferNotLive => "offer_not_live",
            ErrorCode::OfferExpired => "offer_expired",
            ErrorCode::NotYourOffer => "not_your_offer",
            ErrorCode::TooManyOffers => "too_many_offers",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::IdempotencyInFlight => "idempotency_in_flight",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AgentFrozen => "agent_frozen",
            ErrorCode::AgentPaused => "agent_paused",
            ErrorCode::ThreadClosed => "thread_closed",
            ErrorCode::TooManyMessages => "too_many_messages",
            ErrorCode::TooManyNotes => "too_many_notes",
            ErrorCode::MarketClosed => "market_closed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BelowSellerMinimum => "below_seller_minimum",
            ErrorCode::PolicyViolation => "policy_violation",
            ErrorCode::ParticipantSuspended => "participant_suspended",
            ErrorCode::PaymentFailed => "payment_failed",
            ErrorCode::NotYourTurn => "not_your_turn",
            ErrorCode::AwaitingPrincipal => "awaiting_principal",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the spec's error body travels with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden
            | ErrorCode::AgentFrozen
            | ErrorCode::AgentPaused
            | ErrorCode::ParticipantSuspended => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::IdempotencyInFlight
            | ErrorCode::ListingUnavailable
            | ErrorCode::OfferNotLive
            | ErrorCode::OfferExpired
            | ErrorCode::InvalidTransition
            | ErrorCode::ThreadClosed
            | ErrorCode::MarketClosed
            | ErrorCode::PaymentFailed
            | ErrorCode::NotYourTurn => 409,
            ErrorCode::AwaitingPrincipal => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidPrice
            | ErrorCode::InsufficientFunds
            | ErrorCode::MandateExceeded
            | ErrorCode::NotYourOffer
            | ErrorCode::TooManyOffers
            | ErrorCode::TooManyMessages
            | ErrorCode::TooManyNotes
            | ErrorCode::BelowSellerMinimum
            | ErrorCode::PolicyViolation
            | ErrorCode::IdempotencyConflict => 422,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a code and a message a person (or a model) can act on.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DomainError {
    pub code: ErrorCode,
    pub message: String,
}

impl DomainError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        DomainError {
            code,
            message: message.into(),
        }
    }
}

/// Shorthand constructors, one per code, so rules read like the spec.
macro_rules! ctor {
    ($($name:ident => $code:ident),* $(,)?) => {
        impl DomainError {
            $(pub fn $name(message: impl Into<String>) -> Self { Self::new(ErrorCode::$code, message) })*
        }
    };
}
ctor! {
    forbidden => Forbidden,
    not_found => NotFound,
    invalid_request => InvalidRequest,
    invalid_price => InvalidPrice,
    insufficient_funds => InsufficientFunds,
    mandate_exceeded => MandateExceeded,
    listing_unavailable => ListingUnavailable,
    offer_not_live => OfferNotLive,
    offer_expired => OfferExpired,
    not_your_offer => NotYourOffer,
    too_many_offers => TooManyOffers,
    invalid_transition => InvalidTransition,
    agent_frozen => AgentFrozen,
    agent_paused => AgentPaused,
    too_many_messages => TooManyMessages,
    too_many_notes => TooManyNotes,
    thread_closed => ThreadClosed,
    market_closed => MarketClosed,
    below_seller_minimum => BelowSellerMinimum,
    payment_failed => PaymentFailed,
    policy_violation => PolicyViolation,
    participant_suspended => ParticipantSuspended,
    not_your_turn => NotYourTurn,
    awaiting_principal => AwaitingPrincipal,
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
