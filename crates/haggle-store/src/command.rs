//! The commands the store runs inside one write transaction, and what they return.
//! These are the market's verbs; the store loads each command's scene, asks the core, and applies
//! the plan.

use haggle_core::lifecycle::Ruling;
use haggle_core::model::*;
use haggle_core::negotiation::NewListing;
use haggle_core::policy::MarketPolicy;

/// Serialisable so that the commands of a participant driven from outside a simulation can be
/// recorded and applied again by the run's replay (issue 24).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    RegisterParticipant {
        name: String,
        mandate: Mandate,
        budget: Money,
    },
    Fund {
        participant: ParticipantId,
        amount: Money,
    },
    SetMandate {
        participant: ParticipantId,
        mandate: Mandate,
        author: MandateAuthor,
    },
    /// Its principal sets how a participant trades (`agent`, `propose`, `principal`).
    SetTradingMode {
        participant: ParticipantId,
        mode: TradingMode,
    },
    CreateListing {
        actor: ParticipantId,
        listing: NewListing,
    },
    WithdrawListing {
        actor: ParticipantId,
        listing: ListingId,
    },
    /// Opens (or reuses) the actor's thread on a listing, optionally with a message and an offer.
    OpenThread {
        actor: ParticipantId,
        listing: ListingId,
        message: Option<String>,
        offer: Option<NewOffer>,
    },
    PostMessage {
        actor: ParticipantId,
        thread: ThreadId,
        body: String,
    },
    MakeOffer {
        actor: ParticipantId,
        thread: ThreadId,
        offer: NewOffer,
    },
    AcceptOffer {
        actor: ParticipantId,
        offer: OfferId,
    },
    RejectOffer {
        actor: ParticipantId,
        offer: OfferId,
    },
    WithdrawOffer {
        actor: ParticipantId,
        offer: OfferId,
    },
    WalkAway {
        actor: ParticipantId,
        thread: ThreadId,
    },
    HandOver {
        actor: ParticipantId,
        deal: DealId,
        note: Option<String>,
    },
    /// The seller of a shipped deal records its carrier and tracking reference.
    Ship {
        actor: ParticipantId,
        deal: DealId,
        carrier: String,
        tracking: String,
    },
    ConfirmReceipt {
        actor: ParticipantId,
        deal: DealId,
    },
    CancelDeal {
        actor: ParticipantId,
        deal: DealId,
        reason: Option<String>,
    },
    Dispute {
        actor: ParticipantId,
        deal: DealId,
        reason: String,
        /// The grounds (`other` for a plain dispute) and, for `not_as_described`, the claims.
        grounds: haggle_core::claims::Dispute,
    },
    /// The buyer's principal inspects a handed-over deal (real markets).
    ReportInspection {
        principal: ParticipantId,
        deal: DealId,
        mismatched: Vec<String>,
    },
    /// Evidence from a party's agent, the arbiter, or an operator (`author = None`).
    AddEvidence {
        author: Option<ParticipantId>,
        deal: DealId,
        body: String,
    },
    /// By an operator (`arbiter = None`) or the market's arbiter participant.
    ResolveDispute {
        arbiter: Option<ParticipantId>,
        deal: DealId,
        ruling: Ruling,
        note: String,
    },
    /// The buyer's principal approves or declines a deal awaiting approval.
    DecideApproval {
        principal: ParticipantId,
        deal: DealId,
        approve: bool,
    },
    Rate {
        actor: ParticipantId,
        deal: DealId,
        score: u8,
        comment: String,
    },
    /// Moves a simulated clock forward, then sweeps.
    AdvanceClock {
        by_ms: i64,
    },
    /// Expires offers and times out threads that are due by the market clock (and, once the
    /// market has closed, ends every negotiation and expires every active listing).
    Sweep,
    /// The operator sets, moves or removes the market's closing time.
    SetClosingTime {
        closes_at: Option<Timestamp>,
    },
    /// The operator replaces the market policy.
    SetPolicy {
        policy: MarketPolicy,
    },
    /// The operator approves a held listing.
    ApproveListing {
        listing: ListingId,
    },
    /// The operator removes a held or active listing.
    RemoveListing {
        listing: ListingId,
        reason: String,
    },
    /// The operator suspends a participant.
    Suspend {
        participant: ParticipantId,
        reason: String,
    },
    /// The operator lifts a participant's suspension.
    Reinstate {
        participant: ParticipantId,
    },
    /// The simulation's scheduler notes on a participant's feed that its turn started or timed
    /// out (participants driven from outside, issue 24). No state changes beside the event.
    MarkTurn {
        participant: ParticipantId,
        turn: u64,
        mark: TurnMark,
    },
    /// The payment driver records a deal's payment (issue 23): the record replaces the stored
    /// one if that is still `read` (the record the writer started from; a fresh record when
    /// none was stored), else `invalid_transition` and nothing changes; each confirmed change
    /// or refusal between them is an event on the chain, in the same transaction. Never from a
    /// client (`Service::apply_recorded` refuses it).
    RecordPayment {
        deal: DealId,
        read: haggle_core::payment::Payment,
        payment: haggle_core::payment::Payment,
        via: haggle_core::payment::PaymentVia,
    },
}

/// What the scheduler notes about an outside participant's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnMark {
    /// The turn started: the participant may act for up to `budget_ms` of real time.
    Started { round: u64, budget_ms: u64 },
    /// The budget passed before the participant ended the turn.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewOffer {
    pub price: Money,
    pub expires_in_ms: Option<i64>,
}

impl Command {
    /// The participant acting, if the command is a participant's (not an operator's).
    pub fn actor(&self) -> Option<ParticipantId> {
        use Command::*;
        match self {
            CreateListing { actor, .. }
            | WithdrawListing { actor, .. }
            | OpenThread { actor, .. }
            | PostMessage { actor, .. }
            | MakeOffer { actor, .. }
            | AcceptOffer { actor, .. }
            | RejectOffer { actor, .. }
            | WithdrawOffer { actor, .. }
            | WalkAway { actor, .. }
            | HandOver { actor, .. }
            | Ship { actor, .. }
            | ConfirmReceipt { actor, .. }
            | CancelDeal { actor, .. }
            | Dispute { actor, .. }
            | Rate { actor, .. }
            | DecideApproval {
                principal: actor, ..
            }
            | ReportInspection {
                principal: actor, ..
            } => Some(*actor),
            AddEvidence { author, .. } => *author,
            ResolveDispute { arbiter, .. } => *arbiter,
            RegisterParticipant { .. }
            | Fund { .. }
            | SetMandate { .. }
            | SetTradingMode { .. }
            | AdvanceClock { .. }
            | Sweep
            | SetClosingTime { .. }
            | SetPolicy { .. }
            | ApproveListing { .. }
            | RemoveListing { .. }
            | Suspend { .. }
            | Reinstate { .. }
            | MarkTurn { .. }
            | RecordPayment { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Participant(Participant),
    Listing(Listing),
    Thread {
        thread: Thread,
        message: Option<Message>,
        offer: Option<Offer>,
    },
    Message(Message),
    Offer(Offer),
    Deal(Deal),
    Note(DealNote),
    Rating(Rating),
    /// A lifecycle command changed this deal (as it is after the command).
    DealUpdated(Deal),
    /// Internal: a lifecycle command changed this deal; the store answers with `DealUpdated`.
    DealChanged(DealId),
    Clock {
        now: Timestamp,
    },
    /// The market as a command left it (its rules changed).
    Market(Box<Market>),
    /// A listing an operator's moderation changed (approved), as it is now.
    Moderated(Listing),
    /// A participant an operator suspended or reinstated, as it is now.
    ParticipantUpdated(Participant),
    Done,
}
