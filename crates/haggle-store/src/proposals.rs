//! Proposals of trading mode `propose` (issue 19): an agent's binding step (an offer, a counter,
//! an acceptance) stored instead of run, until its principal confirms or declines it. Not market
//! state: written outside the market's write lock; a confirmed step runs as the command it names.
//! The SQL is `proposals_backend.rs`, compiled into both backends like `backend.rs`.

use crate::command::{Command, NewOffer};
use crate::{Store, StoreResult};
use haggle_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The step an agent proposed: what its command would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProposedStep {
    /// Open (or reuse) the thread on a listing with an offer.
    Offer {
        listing: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        price: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<i64>,
    },
    /// A new offer (a counter) in an open thread.
    Counter {
        thread: i64,
        price: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_in_ms: Option<i64>,
    },
    Accept {
        offer: i64,
    },
}

impl ProposedStep {
    /// The binding step a command takes, if it is one (`None`: it runs as it is).
    pub fn of(cmd: &Command) -> Option<ProposedStep> {
        match cmd {
            Command::OpenThread {
                listing,
                message,
                offer: Some(o),
                ..
            } => Some(ProposedStep::Offer {
                listing: *listing,
                message: message.clone(),
                price: o.price,
                expires_in_ms: o.expires_in_ms,
            }),
            Command::MakeOffer { thread, offer, .. } => Some(ProposedStep::Counter {
                thread: *thread,
                price: offer.price,
                expires_in_ms: offer.expires_in_ms,
            }),
            Command::AcceptOffer { offer, .. } => Some(ProposedStep::Accept { offer: *offer }),
            _ => None,
        }
    }

    /// The command the step runs as, for `actor`.
    pub fn command(&self, actor: i64) -> Command {
        match self.clone() {
            ProposedStep::Offer {
                listing,
                message,
                price,
                expires_in_ms,
            } => Command::OpenThread {
                actor,
                listing,
                message,
                offer: Some(NewOffer {
                    price,
                    expires_in_ms,
                }),
            },
            ProposedStep::Counter {
                thread,
                price,
                expires_in_ms,
            } => Command::MakeOffer {
                actor,
                thread,
                offer: NewOffer {
                    price,
                    expires_in_ms,
                },
            },
            ProposedStep::Accept { offer } => Command::AcceptOffer { actor, offer },
        }
    }
}

/// Where a proposal stands: `waiting` for its principal, then `confirmed` (it ran) or `declined`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    Waiting,
    Confirmed,
    Declined,
}

impl ProposalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Waiting => "waiting",
            ProposalStatus::Confirmed => "confirmed",
            ProposalStatus::Declined => "declined",
        }
    }
    pub fn parse(s: &str) -> Option<ProposalStatus> {
        match s {
            "waiting" => Some(ProposalStatus::Waiting),
            "confirmed" => Some(ProposalStatus::Confirmed),
            "declined" => Some(ProposalStatus::Declined),
            _ => None,
        }
    }
}

/// One proposal, with the agent's idempotency scope and key its command runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub market_id: i64,
    pub id: i64,
    pub participant_id: i64,
    pub step: ProposedStep,
    /// The agent token's hash: the idempotency scope its command runs in.
    #[serde(skip)]
    pub scope: String,
    #[serde(skip)]
    pub idem_key: Option<String>,
    #[serde(skip)]
    pub request_hash: Option<String>,
    pub status: ProposalStatus,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
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
    /// Stores a new waiting proposal (its `id` is allocated here; the given one is ignored).
    pub async fn insert_proposal(&self, p: &Proposal) -> StoreResult<Proposal> {
        on_backend!(self, b => b.insert_proposal(p).await)
    }
    /// The proposal an agent's idempotency key made, if any.
    pub async fn proposal_by_key(
        &self,
        market: i64,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<Proposal>> {
        on_backend!(self, b => b.proposal_by_key(market, scope, key).await)
    }
    pub async fn proposal(&self, market: i64, id: i64) -> StoreResult<Option<Proposal>> {
        on_backend!(self, b => b.proposal(market, id).await)
    }
    /// A participant's proposals in `status`, by id after `after`.
    pub async fn proposals(
        &self,
        market: i64,
        participant: i64,
        status: ProposalStatus,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<Proposal>> {
        on_backend!(self, b => b.proposals(market, participant, status, after, limit).await)
    }
    /// Moves a proposal from `from` to `to`; `false` if it was not in `from` (another decision
    /// came first).
    pub async fn set_proposal_status(
        &self,
        market: i64,
        id: i64,
        from: ProposalStatus,
        to: ProposalStatus,
        now: Timestamp,
    ) -> StoreResult<bool> {
        on_backend!(self, b => b.set_proposal_status(market, id, from, to, now).await)
    }
}
