//! What happens after two agents agree (spec, Deal lifecycle): handover, receipt, automatic
//! completion, cancellation, disputes with evidence and resolution, the principal's approval, and
//! ratings. Every close of a deal is a set of ledger transfers out of its escrow hold that sums
//! exactly to the price.

use crate::error::{DomainError as E, Result};
use crate::event::Visibility;
use crate::ledger::{Account, TransferKind};
use crate::model::*;
use crate::negotiation::{Due, Scene, check_text};
use crate::plan::{Change, Plan};
use serde_json::json;

pub const MAX_NOTE: usize = 2000;
/// Evidence notes one party may add to one deal, so neither side can bury the other's evidence
/// (a deal's other notes come once per step of its lifecycle).
pub const MAX_NOTES_PER_PARTY: u32 = 100;

fn deal(s: &Scene) -> Result<&Deal> {
    s.deal
        .as_ref()
        .ok_or_else(|| E::not_found("deal not found"))
}

fn parties(d: &Deal) -> Visibility {
    Visibility::Parties(vec![d.buyer, d.seller])
}

fn wrong_state(d: &Deal, action: &str, need: &str) -> E {
    E::invalid_transition(format!(
        "deal {} is {}: {action} needs {need}",
        d.id, d.status
    ))
}

fn note(plan: &mut Plan, d: &Deal, author: Option<ParticipantId>, kind: &str, body: &str) {
    let n = DealNote {
        id: plan.alloc_id(),
        market_id: d.market_id,
        deal_id: d.id,
        author,
        kind: kind.into(),
        body: body.into(),
        created_at: plan.now,
    };
    plan.change(Change::InsertDealNote(n));
}

/// Where a listing goes when its deal is undone: on the market again, or `expired` once the
/// market has closed (a closed market takes nothing new).
fn back(s: &Scene, l: &Listing) -> (ListingId, ListingStatus) {
    let status = if s.market.is_closed(s.now) {
        ListingStatus::Expired
    } else {
        ListingStatus::Active
    };
    (l.id, status)
}

/// Closes a deal: pays `to_buyer` back and `to_seller` out of its hold (they sum to the price),
/// sets its final status, and puts the listing back (`relist`, see [`back`]) when nothing was sold.
fn close(
    plan: &mut Plan,
    d: &Deal,
    status: DealStatus,
    to_buyer: Money,
    by: Option<ParticipantId>,
    why: &str,
    relist: Option<(ListingId, ListingStatus)>,
) {
    assert!(
        to_buyer >= 0 && to_buyer <= d.price,
        "a split never exceeds the hold"
    );
    let to_seller = d.price - to_buyer;
    if to_seller > 0 {
        plan.transfer(
            Account::Escrow,
            Account::Available(d.seller),
            to_seller,
            TransferKind::Release,
            Some(d.id),
            format!("release:deal:{}", d.id),
        );
    }
    if to_buyer > 0 {
        plan.transfer(
            Account::Escrow,
            Account::Available(d.buyer),
            to_buyer,
            TransferKind::Refund,
            Some(d.id),
            format!("refund:deal:{}", d.id),
        );
    }
    let mut closed = d.clone();
    closed.status = status;
    closed.finished_at = Some(plan.now);
    closed.resolution = Some(Resolution {
        to_buyer,
        to_seller,
        by,
        note: why.to_string(),
    });
    plan.change(Change::UpdateDeal(closed.clone()));
    plan.event(&format!("deal_{status}"), by, parties(d), json!({"deal_id": d.id, "status": status, "to_buyer": to_buyer, "to_seller": to_seller, "reason": why}));
    if let Some((listing, to)) = relist {
        plan.change(Change::SetListingStatus {
            listing,
            status: to,
        });
        if to == ListingStatus::Active {
            plan.event(
                "listing_relisted",
                None,
                Visibility::Public,
                json!({"listing_id": listing, "deal_id": d.id}),
            );
        } else {
            plan.event(
                "listing_expired",
                None,
                Visibility::Public,
                json!({"listing_id": listing, "deal_id": d.id, "reason": "market_closed"}),
            );
        }
    }
}

/// The seller says the goods were handed over or shipped.
pub fn hand_over(s: &mut Scene, plan: &mut Plan, handover_note: Option<&str>) -> Result<Deal> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if d.seller != actor {
        return Err(E::forbidden(format!(
            "only the seller hands over deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::Agreed {
        return Err(wrong_state(d, "handover", "agreed"));
    }
    if let Some(n) = handover_note {
        check_text("note", n, MAX_NOTE, false)?;
    }
    let mut next = d.clone();
    next.status = DealStatus::HandedOver;
    next.handed_over_at = Some(s.now);
    next.confirm_deadline = Some(later(s.now, s.market.rules.confirmation_window_ms));
    next.handover_note = handover_note.map(str::to_string);
    next.cancel_requested_by = None;
    if let Some(n) = handover_note.filter(|n| !n.trim().is_empty()) {
        note(plan, d, Some(actor), "handover", n);
    }
    plan.change(Change::UpdateDeal(next.clone()));
    plan.event(
        "deal_handed_over",
        Some(actor),
        parties(d),
        json!({"deal_id": d.id, "note": handover_note, "confirm_deadline": next.confirm_deadline}),
    );
    s.deal = Some(next.clone());
    Ok(next)
}

/// The buyer confirms receipt: the hold is released to the seller.
pub fn confirm_receipt(s: &mut Scene, plan: &mut Plan) -> Result<()> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if d.buyer != actor {
        return Err(E::forbidden(format!(
            "only the buyer confirms receipt of deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::HandedOver {
        return Err(wrong_state(d, "confirming receipt", "handed_over"));
    }
    close(
        plan,
        d,
        DealStatus::Completed,
        0,
        Some(actor),
        "receipt_confirmed",
        None,
    );
    Ok(())
}

/// Cancels before handover: the seller alone where the market allows it, otherwise both parties
/// (the first request is recorded, the second cancels). The hold returns to the buyer and the
/// listing is active again.
pub fn cancel(s: &mut Scene, plan: &mut Plan, reason: Option<&str>) -> Result<bool> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if !d.is_party(actor) {
        return Err(E::forbidden(format!(
            "participant {actor} is not a party to deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::Agreed {
        return Err(wrong_state(d, "cancelling", "agreed (before handover)"));
    }
    if let Some(r) = reason {
        check_text("reason", r, MAX_NOTE, false)?;
    }
    let l = s
        .listing
        .as_ref()
        .ok_or_else(|| E::not_found("listing not found"))?;
    // A seller who has not handed over within the confirmation window of the agreement cannot
    // hold the buyer's money hostage: the buyer may then cancel alone.
    let late = actor == d.buyer && s.now >= d.created_at + s.market.rules.confirmation_window_ms;
    let alone = (actor == d.seller && s.market.rules.seller_may_cancel) || late;
    let mutual = d.cancel_requested_by.is_some_and(|p| p != actor);
    if let Some(r) = reason.filter(|r| !r.trim().is_empty()) {
        note(plan, d, Some(actor), "cancel", r);
    }
    if alone || mutual {
        close(
            plan,
            d,
            DealStatus::Cancelled,
            d.price,
            Some(actor),
            if late {
                "seller_did_not_hand_over"
            } else if alone {
                "cancelled_by_seller"
            } else {
                "cancelled_by_both"
            },
            Some(back(s, l)),
        );
        return Ok(true);
    }
    if d.cancel_requested_by == Some(actor) {
        return Err(E::invalid_transition(format!(
            "you already asked to cancel deal {}; the other party must agree",
            d.id
        )));
    }
    let mut next = d.clone();
    next.cancel_requested_by = Some(actor);
    plan.change(Change::UpdateDeal(next));
    plan.event(
        "deal_cancel_requested",
        Some(actor),
        parties(d),
        json!({"deal_id": d.id, "by": actor}),
    );
    Ok(false)
}

/// The buyer disputes a handed-over deal within the confirmation window: the hold is frozen.
pub fn dispute(s: &mut Scene, plan: &mut Plan, reason: &str) -> Result<()> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if d.buyer != actor {
        return Err(E::forbidden(format!(
            "only the buyer disputes deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::HandedOver {
        return Err(wrong_state(d, "disputing", "handed_over"));
    }
    if d.confirm_deadline.is_some_and(|x| x <= s.now) {
        return Err(E::invalid_transition(format!(
            "the confirmation window of deal {} has closed",
            d.id
        )));
    }
    check_text("reason", reason, MAX_NOTE, true)?;
    note(plan, d, Some(actor), "dispute", reason);
    let mut next = d.clone();
    next.status = DealStatus::Disputed;
    plan.change(Change::UpdateDeal(next));
    plan.event(
        "deal_disputed",
        Some(actor),
        parties(d),
        json!({"deal_id": d.id, "reason": reason}),
    );
    Ok(())
}

/// A party (or the operator, `actor = None`) adds evidence to a dispute.
pub fn add_evidence(s: &mut Scene, plan: &mut Plan, body: &str) -> Result<DealNote> {
    // A frozen agent can read but not act.
    let author = match &s.actor {
        Some(_) => Some(s.settler()?.id),
        None => None,
    };
    let d = deal(s)?;
    if let Some(a) = author
        && !d.is_party(a)
        && s.market.rules.arbiter != Some(a)
    {
        return Err(E::forbidden(format!(
            "participant {a} is not a party to deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::Disputed {
        return Err(wrong_state(d, "adding evidence", "disputed"));
    }
    check_text("body", body, MAX_NOTE, true)?;
    // Operators are not bounded: they rule, and no party can bury their notes.
    if author.is_some() && s.party_notes >= MAX_NOTES_PER_PARTY {
        return Err(E::too_many_notes(format!(
            "you have added {MAX_NOTES_PER_PARTY} notes to deal {}, as many as one party may",
            d.id
        )));
    }
    let n = DealNote {
        id: plan.alloc_id(),
        market_id: d.market_id,
        deal_id: d.id,
        author,
        kind: "evidence".into(),
        body: body.into(),
        created_at: s.now,
    };
    plan.change(Change::InsertDealNote(n.clone()));
    plan.event(
        "dispute_evidence_added",
        author,
        parties(d),
        json!({"deal_id": d.id, "note_id": n.id}),
    );
    Ok(n)
}

/// How a dispute ends: everything to the seller, everything back to the buyer, or a split.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Ruling {
    Release,
    Refund,
    /// `to_buyer` minor units back to the buyer, the rest of the hold to the seller.
    Split {
        to_buyer: Money,
    },
}

/// An operator (`actor = None`) or the market's arbiter resolves a dispute.
pub fn resolve(s: &mut Scene, plan: &mut Plan, ruling: Ruling, why: &str) -> Result<()> {
    let by = match &s.actor {
        Some(_) => Some(s.settler()?.id),
        None => None,
    };
    let d = deal(s)?;
    if let Some(a) = by
        && (s.market.rules.arbiter != Some(a) || d.is_party(a))
    {
        return Err(E::forbidden(
            "only an operator or the market's arbiter (not a party) resolves disputes",
        ));
    }
    if d.status != DealStatus::Disputed {
        return Err(wrong_state(d, "resolving", "disputed"));
    }
    check_text("note", why, MAX_NOTE, false)?;
    let (status, to_buyer) = match ruling {
        Ruling::Release => (DealStatus::Completed, 0),
        Ruling::Refund => (DealStatus::Refunded, d.price),
        Ruling::Split { to_buyer: 0 } => (DealStatus::Completed, 0),
        Ruling::Split { to_buyer } if to_buyer == d.price => (DealStatus::Refunded, d.price),
        Ruling::Split { to_buyer } if to_buyer > 0 && to_buyer < d.price => {
            (DealStatus::PartiallyRefunded, to_buyer)
        }
        Ruling::Split { to_buyer } => {
            return Err(E::invalid_price(format!(
                "a split must give the buyer between 0 and {} (the hold), got {to_buyer}",
                d.price
            )));
        }
    };
    if !why.trim().is_empty() {
        note(plan, d, by, "resolution", why);
    }
    close(plan, d, status, to_buyer, by, "dispute_resolved", None);
    Ok(())
}

/// A principal whose approval the deal awaits (the buyer's above `approval_above`, the seller's
/// below its seller minimum with `below_min: ask`) approves or declines it. Declined: the hold
/// returns and the listing is active again. Approved by one of two awaited principals: it waits
/// for the other.
pub fn decide_approval(s: &mut Scene, plan: &mut Plan, approve: bool) -> Result<()> {
    let principal = s.actor()?.id;
    let d = deal(s)?;
    if !d.is_party(principal) {
        return Err(E::forbidden(format!(
            "only the principal of a party approves deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::AwaitingApproval {
        return Err(wrong_state(d, "approval", "awaiting_approval"));
    }
    if !d.awaits_approval_of(principal) {
        return Err(E::forbidden(format!(
            "deal {} awaits the approval of the {}'s principal",
            d.id,
            if d.buyer == principal {
                "seller"
            } else {
                "buyer"
            }
        )));
    }
    // Past the window the deal has timed out (the sweep declines it): it can no longer be approved.
    if approve && d.approval_deadline.is_some_and(|x| x <= s.now) {
        return Err(E::invalid_transition(format!(
            "the approval window of deal {} has closed",
            d.id
        )));
    }
    if approve && d.approval_from == Approver::Both {
        // One of two: the deal keeps waiting for the other party's principal.
        let mut next = d.clone();
        next.approval_from = if d.buyer == principal {
            Approver::Seller
        } else {
            Approver::Buyer
        };
        plan.change(Change::UpdateDeal(next.clone()));
        plan.event(
            "deal_approval_given",
            Some(principal),
            parties(d),
            json!({"deal_id": d.id, "awaiting": next.approval_from}),
        );
    } else if approve {
        let mut next = d.clone();
        next.status = DealStatus::Agreed;
        next.approval_deadline = None;
        next.approval_from = Approver::Buyer;
        plan.change(Change::UpdateDeal(next));
        plan.event(
            "deal_approved",
            Some(principal),
            parties(d),
            json!({"deal_id": d.id}),
        );
    } else {
        let l = s
            .listing
            .as_ref()
            .ok_or_else(|| E::not_found("listing not found"))?;
        close(
            plan,
            d,
            DealStatus::Declined,
            d.price,
            Some(principal),
            "declined_by_principal",
            Some(back(s, l)),
        );
    }
    Ok(())
}

/// A party rates the other side of a finished deal, once.
pub fn rate(s: &mut Scene, plan: &mut Plan, score: u8, comment: &str) -> Result<Rating> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if !d.is_party(actor) {
        return Err(E::forbidden(format!(
            "participant {actor} is not a party to deal {}",
            d.id
        )));
    }
    if !d.is_finished() {
        return Err(wrong_state(
            d,
            "rating",
            "a finished deal (completed, refunded or partially_refunded)",
        ));
    }
    if !(1..=5).contains(&score) {
        return Err(E::invalid_request(format!(
            "score must be 1 to 5, got {score}"
        )));
    }
    check_text("comment", comment, 1000, false)?;
    // Once the window closes the ratings given are revealed: a late rating could retaliate.
    if d.finished_at
        .is_some_and(|f| f + s.market.rules.rating_window_ms <= s.now)
    {
        return Err(E::invalid_transition(format!(
            "the rating window of deal {} has closed",
            d.id
        )));
    }
    if s.ratings.iter().any(|r| r.rater == actor) {
        return Err(E::invalid_transition(format!(
            "you already rated deal {}",
            d.id
        )));
    }
    let r = Rating {
        id: plan.alloc_id(),
        market_id: d.market_id,
        deal_id: d.id,
        rater: actor,
        ratee: if actor == d.buyer { d.seller } else { d.buyer },
        score,
        comment: comment.to_string(),
        created_at: s.now,
    };
    plan.change(Change::InsertRating(r.clone()));
    // The score stays hidden until both sides rated or the window closes.
    plan.event(
        "deal_rated",
        Some(actor),
        parties(d),
        json!({"deal_id": d.id, "rater": actor}),
    );
    Ok(r)
}

/// The deal clock: handed-over deals past their window complete; approvals past their deadline
/// are declined.
pub fn sweep_deals(s: &Scene, plan: &mut Plan, due: &Due) {
    for d in &due.deals_to_complete {
        if d.status == DealStatus::HandedOver && d.confirm_deadline.is_some_and(|x| x <= s.now) {
            close(
                plan,
                d,
                DealStatus::Completed,
                0,
                None,
                "confirmation_window_elapsed",
                None,
            );
        }
    }
    for (d, l) in &due.approvals_expired {
        if d.status == DealStatus::AwaitingApproval
            && d.approval_deadline.is_some_and(|x| x <= s.now)
        {
            close(
                plan,
                d,
                DealStatus::Declined,
                d.price,
                None,
                "approval_timed_out",
                Some(back(s, l)),
            );
        }
    }
}

/// Whether a rating is visible to everyone yet.
pub fn rating_revealed(
    deal: &Deal,
    ratings_on_deal: usize,
    rules: &MarketRules,
    now: Timestamp,
) -> bool {
    ratings_on_deal >= 2
        || deal
            .finished_at
            .is_some_and(|f| later(f, rules.rating_window_ms) <= now)
}

/// A participant's reputation as every agent sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reputation {
    pub participant_id: ParticipantId,
    /// Mean of revealed ratings received, in hundredths (e.g. 450 = 4.5); absent with none.
    pub average_x100: Option<i64>,
    pub ratings: u32,
    pub completed_deals: u32,
    pub cancellations: u32,
    pub disputes_lost: u32,
}

/// Computes a reputation from the participant's deals and the revealed ratings it received.
pub fn reputation(p: ParticipantId, deals: &[Deal], revealed: &[Rating]) -> Reputation {
    let mine: Vec<&Rating> = revealed.iter().filter(|r| r.ratee == p).collect();
    let sum: i64 = mine.iter().map(|r| r.score as i64).sum();
    let mut rep = Reputation {
        participant_id: p,
        average_x100: (!mine.is_empty())
            .then(|| (sum * 100 + mine.len() as i64 / 2) / mine.len() as i64),
        ratings: mine.len() as u32,
        ..Reputation::default()
    };
    for d in deals.iter().filter(|d| d.is_party(p)) {
        // A seller who never handed over caused the cancellation the buyer had to make.
        let seller_failed = d
            .resolution
            .as_ref()
            .is_some_and(|r| r.note == "seller_did_not_hand_over");
        match d.status {
            DealStatus::Completed => rep.completed_deals += 1,
            DealStatus::Cancelled if seller_failed && p == d.seller => rep.cancellations += 1,
            DealStatus::Cancelled if seller_failed => {}
            // A cancellation counts against whoever asked first, not the party who agreed.
            DealStatus::Cancelled
                if d.cancel_requested_by
                    .or(d.resolution.as_ref().and_then(|r| r.by))
                    == Some(p) =>
            {
                rep.cancellations += 1
            }
            _ => {}
        }
        let disputed = d
            .resolution
            .as_ref()
            .is_some_and(|r| r.note == "dispute_resolved");
        if disputed {
            let r = d.resolution.as_ref().expect("checked");
            let lost = if p == d.seller {
                r.to_buyer > 0
            } else {
                r.to_seller > 0 && r.to_buyer == 0
            };
            if lost {
                rep.disputes_lost += 1;
            }
        }
    }
    rep
}
