//! The market contract as an agent uses it: one trait, implemented in-process by the service
//! (for fast simulations) and over HTTP by `haggle-client`. A client is bound to one market and
//! one credential, so it can only do what that credential may.

use crate::*;
use haggle_core::lifecycle::Reputation;
use haggle_core::{Deal, Listing, Mandate, Market, Message, Offer, Participant, Rating};
use std::future::Future;

/// A refusal by the market (status and the spec's error body) or a transport failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// HTTP status (0 when the request never got an answer).
    pub status: u16,
    pub body: ErrorBody,
}

impl ClientError {
    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }
    pub fn transport(message: impl Into<String>) -> ClientError {
        ClientError {
            status: 0,
            body: ErrorBody::new(ErrorCode::InvalidRequest, message),
        }
    }
    /// The market could not be reached (refused connection, timeout, dropped answer): nothing is
    /// known about the request's effect, and a retry with the same idempotency key is safe.
    pub fn unavailable(message: impl Into<String>) -> ClientError {
        ClientError {
            status: 0,
            body: ErrorBody::new(ErrorCode::Unavailable, message),
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.body.error.code, self.status, self.body.error.message
        )
    }
}

impl std::error::Error for ClientError {}

pub type ClientResult<T> = Result<T, ClientError>;

/// Everything an agent does in a market. Mutating calls carry an idempotency key the client
/// makes (retries are safe).
pub trait MarketClient: Send + Sync {
    /// The same client, whose mutating calls all carry `key` as their idempotency key (1 to 200
    /// characters, visible ASCII): a call repeated through it, from this process or another,
    /// answers with the first call's result. For one mutation (a tool call), not a session.
    fn with_idempotency_key(&self, key: &str) -> Self
    where
        Self: Sized;

    fn market_id(&self) -> i64;
    /// The participant this client acts for.
    fn participant_id(&self) -> i64;

    /// The market traded in: name, currency, clock and its rules.
    fn market(&self) -> impl Future<Output = ClientResult<Market>> + Send;
    /// The participant this client acts for, with its mandate.
    fn participant(&self) -> impl Future<Output = ClientResult<Participant>> + Send;

    fn search(&self, q: &ListingQuery) -> impl Future<Output = ClientResult<ListingPage>> + Send;
    fn listing(&self, id: i64) -> impl Future<Output = ClientResult<ListingView>> + Send;
    fn create_listing(&self, l: &NewListing) -> impl Future<Output = ClientResult<Listing>> + Send;
    fn withdraw_listing(&self, id: i64) -> impl Future<Output = ClientResult<Done>> + Send;
    fn open_thread(
        &self,
        listing: i64,
        req: &OpenThread,
    ) -> impl Future<Output = ClientResult<ThreadOpened>> + Send;
    /// A page of at most `limit` (1..=500) of the caller's threads that `filter` keeps, in
    /// `ThreadOrder`.
    fn threads(
        &self,
        filter: ThreadFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = ClientResult<ThreadList>> + Send;
    fn thread(&self, id: i64) -> impl Future<Output = ClientResult<ThreadView>> + Send;
    fn post_message(
        &self,
        thread: i64,
        body: &str,
    ) -> impl Future<Output = ClientResult<Message>> + Send;
    fn make_offer(
        &self,
        thread: i64,
        req: &MakeOffer,
    ) -> impl Future<Output = ClientResult<Offer>> + Send;
    fn accept(&self, offer: i64) -> impl Future<Output = ClientResult<Deal>> + Send;
    fn reject(&self, offer: i64) -> impl Future<Output = ClientResult<Done>> + Send;
    fn withdraw_offer(&self, offer: i64) -> impl Future<Output = ClientResult<Done>> + Send;
    fn walk_away(&self, thread: i64) -> impl Future<Output = ClientResult<Done>> + Send;
    /// Ends the participant's open turn `turn` (a participant driven from outside a simulation).
    fn end_turn(&self, turn: u64) -> impl Future<Output = ClientResult<crate::TurnEnded>> + Send;
    fn deals(&self, cursor: Option<&str>) -> impl Future<Output = ClientResult<DealList>> + Send;
    fn hand_over(
        &self,
        deal: i64,
        note: Option<&str>,
    ) -> impl Future<Output = ClientResult<Deal>> + Send;
    /// The seller of a shipped deal records its carrier and tracking reference.
    fn ship(
        &self,
        deal: i64,
        carrier: &str,
        tracking: &str,
    ) -> impl Future<Output = ClientResult<Deal>> + Send;
    fn confirm_receipt(&self, deal: i64) -> impl Future<Output = ClientResult<Deal>> + Send;
    fn cancel_deal(
        &self,
        deal: i64,
        reason: Option<&str>,
    ) -> impl Future<Output = ClientResult<Deal>> + Send;
    /// Opens a dispute on grounds `other` (see [`MarketClient::open_dispute`]).
    fn dispute(&self, deal: i64, reason: &str) -> impl Future<Output = ClientResult<Deal>> + Send {
        let req = crate::OpenDispute::other(reason);
        async move { self.open_dispute(deal, &req).await }
    }
    /// Opens a dispute with its grounds (`not_as_described` names the contradicted claims).
    fn open_dispute(
        &self,
        deal: i64,
        req: &crate::OpenDispute,
    ) -> impl Future<Output = ClientResult<Deal>> + Send;
    fn rate(
        &self,
        deal: i64,
        score: u8,
        comment: &str,
    ) -> impl Future<Output = ClientResult<Rating>> + Send;
    fn reputation(&self, participant: i64)
    -> impl Future<Output = ClientResult<Reputation>> + Send;
    fn balance(&self) -> impl Future<Output = ClientResult<Balance>> + Send;
    fn mandate(&self) -> impl Future<Output = ClientResult<Mandate>> + Send;
    /// Events after `after`; with `mine`, only those naming this participant (no public feed).
    fn events(
        &self,
        after: i64,
        limit: u32,
        mine: bool,
    ) -> impl Future<Output = ClientResult<EventPage>> + Send;
}
