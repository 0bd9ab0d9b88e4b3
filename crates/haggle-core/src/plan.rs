//! A plan is what a command decided: rows to insert or update and events to append, in order.
//! The store applies a whole plan in one transaction or not at all.

use crate::event::{EventBody, EventDraft, TransferBooked, Visibility};
use crate::ledger::{Account, Transfer, TransferKind};
use crate::model::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replaces the market's rules (an operator moving its closing time).
    SetMarketRules(MarketRules),
    InsertParticipant(Participant),
    SetMandate {
        participant: ParticipantId,
        mandate: Mandate,
    },
    InsertListing(Listing),
    SetListingStatus {
        listing: ListingId,
        status: ListingStatus,
    },
    /// A listing a policy rule holds for review, with the rules and the reason (the moderation
    /// queue's row).
    InsertHold {
        listing: ListingId,
        rules: Vec<crate::policy::PolicyRule>,
        reason: String,
    },
    /// An operator's suspension of a participant (`Some`), or its reinstatement (`None`).
    SetSuspension {
        participant: ParticipantId,
        suspension: Option<Suspension>,
    },
    SetListingFirstOffer {
        listing: ListingId,
        at: Timestamp,
    },
    InsertThread(Thread),
    UpdateThread {
        thread: ThreadId,
        status: ThreadStatus,
        offers_made: u32,
        last_offer_by: Option<ParticipantId>,
    },
    InsertMessage(Message),
    InsertOffer(Offer),
    SetOfferState {
        offer: OfferId,
        state: OfferState,
        reason: Option<VoidReason>,
    },
    InsertDeal(Deal),
    SetDealStatus {
        deal: DealId,
        status: DealStatus,
    },
    /// Replaces a deal's lifecycle fields (status, handover, deadlines, resolution).
    UpdateDeal(Deal),
    InsertDealNote(DealNote),
    InsertRating(Rating),
    Transfer(Transfer),
}

/// The changes and events of one command, with the market's id counter it allocates from.
#[derive(Debug, Clone)]
pub struct Plan {
    pub market_id: MarketId,
    pub now: Timestamp,
    pub next_id: i64,
    pub changes: Vec<Change>,
    pub events: Vec<EventDraft>,
    /// Who acts for the command's actor: its events with an actor record it.
    pub by: ActedBy,
}

impl Plan {
    pub fn new(market_id: MarketId, now: Timestamp, next_id: i64) -> Plan {
        Plan {
            market_id,
            now,
            next_id,
            changes: Vec::new(),
            events: Vec::new(),
            by: ActedBy::Agent,
        }
    }

    pub fn alloc_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn change(&mut self, c: Change) {
        self.changes.push(c);
    }

    pub fn event(&mut self, actor: Option<ParticipantId>, visibility: Visibility, body: EventBody) {
        // The market's own events (transfers, sweeps) have no actor, so no one acted by hand.
        let by = if actor.is_some() {
            self.by
        } else {
            ActedBy::Agent
        };
        self.events.push(EventDraft {
            actor,
            by,
            visibility,
            body,
        });
    }

    /// Books a ledger transfer and its audit event (so a deleted transfer breaks the hash chain).
    pub fn transfer(
        &mut self,
        debit: Account,
        credit: Account,
        amount: Money,
        kind: TransferKind,
        deal_id: Option<DealId>,
        idempotency_id: String,
    ) {
        assert!(amount > 0, "transfers move a positive amount");
        assert!(debit != credit, "transfers move between two accounts");
        let t = Transfer {
            id: self.alloc_id(),
            market_id: self.market_id,
            debit,
            credit,
            amount,
            kind,
            deal_id,
            at: self.now,
            idempotency_id,
        };
        let visibility = match (debit, credit) {
            (Account::Available(a), Account::Available(b)) => Visibility::Parties(vec![a, b]),
            (Account::Available(a), _) | (_, Account::Available(a)) => Visibility::Parties(vec![a]),
            _ => Visibility::Operators,
        };
        self.event(
            None,
            visibility,
            EventBody::TransferBooked(TransferBooked {
                transfer_id: t.id,
                debit,
                credit,
                amount,
                kind,
                deal_id,
                idempotency_id: t.idempotency_id.clone(),
            }),
        );
        self.changes.push(Change::Transfer(t));
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events.is_empty()
    }
}
