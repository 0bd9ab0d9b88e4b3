//! What happens after two agents agree (spec, Deal lifecycle): handover, receipt, automatic
//! completion, cancellation, disputes with evidence and resolution, the principal's approval, and
//! ratings. Every close of a deal is a set of ledger transfers out of its escrow hold that sums
//! exactly to the price.

use crate::claims::{Dispute, DisputeGrounds, Inspection, InspectionSource};
use crate::error::{DomainError as E, Result};
use crate::event::*;
use crate::ledger::{Account, TransferKind};
use crate::model::*;
use crate::negotiation::{Due, Scene, check_text};
use crate::plan::{Change, Plan};
use crate::shipping::{
    MAX_CARRIER, MAX_TRACKING, ShippingStatus, arrived, delivered, missed_shipping,
};

pub const MAX_NOTE: usize = 2000;
/// Why a buyer cancelled alone: the seller missed the handover (the confirmation window after
/// the agreement) or, on a shipped deal, its shipping deadline.
pub const SELLER_DID_NOT_HAND_OVER: &str = "seller_did_not_hand_over";
pub const SELLER_DID_NOT_SHIP: &str = "seller_did_not_ship";
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
    plan.event(
        by,
        parties(d),
        EventBody::deal_closed(DealClosed {
            deal_id: d.id,
            status,
            to_buyer,
            to_seller,
            reason: why.to_string(),
        }),
    );
    if let Some((listing, to)) = relist {
        plan.change(Change::SetListingStatus {
            listing,
            status: to,
        });
        if to == ListingStatus::Active {
            plan.event(
                None,
                Visibility::Public,
                EventBody::ListingRelisted(ListingRelisted {
                    listing_id: listing,
                    deal_id: d.id,
                }),
            );
        } else {
            plan.event(
                None,
                Visibility::Public,
                EventBody::ListingExpired(ListingExpired {
                    listing_id: listing,
                    deal_id: Some(d.id),
                    title: None,
                    reason: "market_closed".into(),
                }),
            );
        }
    }
}

/// The seller says the goods were handed over (in person; a shipped deal is shipped with [`ship`]).
pub fn hand_over(s: &mut Scene, plan: &mut Plan, handover_note: Option<&str>) -> Result<Deal> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if d.seller != actor {
        return Err(E::forbidden(format!(
            "only the seller hands over deal {}",
            d.id
        )));
    }
    if d.shipping.is_some() {
        return Err(E::invalid_transition(format!(
            "deal {} is shipped, not handed over in person: record the carrier and tracking reference with ship",
            d.id
        )));
    }
    if d.status != DealStatus::Agreed {
        return Err(wrong_state(d, "handover", "agreed"));
    }
    if let Some(n) = handover_note {
        check_text("note", n, MAX_NOTE, false)?;
    }
    let mut next = handed_over(s, d);
    next.handover_note = handover_note.map(str::to_string);
    if let Some(n) = handover_note.filter(|n| !n.trim().is_empty()) {
        note(plan, d, Some(actor), "handover", n);
    }
    plan.change(Change::UpdateDeal(next.clone()));
    plan.event(
        Some(actor),
        parties(d),
        EventBody::DealHandedOver(DealHandedOver {
            deal_id: d.id,
            note: handover_note.map(str::to_string),
            confirm_deadline: next.confirm_deadline,
        }),
    );
    s.deal = Some(next.clone());
    Ok(next)
}

/// `d` once the goods have left the seller (handed over or shipped) at the scene's time: the
/// confirmation window starts, and in a simulation the buyer inspects (it finds the true state).
fn handed_over(s: &Scene, d: &Deal) -> Deal {
    let mut next = d.clone();
    next.status = DealStatus::HandedOver;
    next.handed_over_at = Some(s.now);
    next.confirm_deadline = Some(later(s.now, s.market.rules.confirmation_window_ms));
    next.cancel_requested_by = None;
    if let Some(truth) = s.listing.as_ref().and_then(|l| l.true_state.as_ref()) {
        next.inspection = Some(Inspection {
            source: InspectionSource::Simulation,
            found: Some(truth.clone()),
            mismatched: d.snapshot.claims.contradicted_by(truth),
            at: s.now,
        });
    }
    next
}

/// The seller of a shipped deal records the carrier and tracking reference before its shipping
/// deadline: the deal is handed over (`shipping.status` = `shipped`) and the confirmation window
/// starts, within which the buyer confirms delivery or disputes (`not_received`, ...).
pub fn ship(s: &mut Scene, plan: &mut Plan, carrier: &str, tracking: &str) -> Result<Deal> {
    let actor = s.settler()?.id;
    let d = deal(s)?;
    if d.seller != actor {
        return Err(E::forbidden(format!("only the seller ships deal {}", d.id)));
    }
    let Some(shipping) = &d.shipping else {
        return Err(E::invalid_transition(format!(
            "deal {} is handed over in person, not shipped: use hand_over",
            d.id
        )));
    };
    if d.status != DealStatus::Agreed {
        return Err(wrong_state(d, "shipping", "agreed"));
    }
    if shipping.ship_by <= s.now {
        return Err(E::invalid_transition(format!(
            "the shipping deadline of deal {} passed at {}",
            d.id,
            utc(shipping.ship_by)
        )));
    }
    check_text("carrier", carrier, MAX_CARRIER, true)?;
    check_text("tracking", tracking, MAX_TRACKING, true)?;
    let (carrier, tracking) = (carrier.trim().to_string(), tracking.trim().to_string());
    let mut next = handed_over(s, d);
    if let Some(sh) = next.shipping.as_mut() {
        sh.status = ShippingStatus::Shipped;
        sh.carrier = Some(carrier.clone());
        sh.tracking = Some(tracking.clone());
        sh.shipped_at = Some(s.now);
    }
    // In a simulation the carrier's ground truth decides when (or whether) it arrives.
    next.arrives_at = s
        .listing
        .as_ref()
        .and_then(|l| l.true_transit)
        .filter(|t| !t.lost)
        .map(|t| later(s.now, t.delivery_ms));
    plan.change(Change::UpdateDeal(next.clone()));
    plan.event(
        Some(actor),
        parties(d),
        EventBody::DealShipped(DealShipped {
            deal_id: d.id,
            carrier,
            tracking,
            confirm_deadline: next.confirm_deadline,
        }),
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
        &delivered(d, s.now),
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
    // A seller who has not handed over within the confirmation window of the agreement (or not
    // shipped by the shipping deadline) cannot hold the buyer's money hostage: the buyer may then
    // cancel alone.
    let unshipped = missed_shipping(d, s.now);
    let late = actor == d.buyer
        && match &d.shipping {
            Some(_) => unshipped,
            None => s.now >= d.created_at + s.market.rules.confirmation_window_ms,
        };
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
            if late && unshipped {
                SELLER_DID_NOT_SHIP
            } else if late {
                SELLER_DID_NOT_HAND_OVER
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
        Some(actor),
        parties(d),
        EventBody::DealCancelRequested(DealCancelRequested {
            deal_id: d.id,
            by: actor,
        }),
    );
    Ok(false)
}

/// The buyer disputes a handed-over deal within the confirmation window (grounds `other`).
pub fn dispute(s: &mut Scene, plan: &mut Plan, reason: &str) -> Result<()> {
    let grounds = Dispute {
        grounds: DisputeGrounds::Other,
        claims: Vec::new(),
    };
    dispute_on(s, plan, reason, grounds)
}

/// The buyer's principal inspects a handed-over deal in a real market: an empty `mismatched`
/// confirms the item is as described, otherwise it names the seller's claims it contradicts.
pub fn report_inspection(s: &mut Scene, plan: &mut Plan, mismatched: Vec<String>) -> Result<Deal> {
    let principal = s.actor()?.id;
    let d = deal(s)?;
    if d.buyer != principal {
        return Err(E::forbidden(format!(
            "only the buyer's principal inspects deal {}",
            d.id
        )));
    }
    if d.status != DealStatus::HandedOver {
        return Err(wrong_state(d, "inspecting", "handed_over"));
    }
    if d.inspection.is_some() {
        return Err(E::invalid_transition(format!(
            "deal {} has already been inspected",
            d.id
        )));
    }
    let made = d.snapshot.claims.names();
    if let Some(c) = mismatched.iter().find(|c| !made.contains(c)) {
        return Err(E::invalid_request(format!(
            "the listing of deal {} makes no claim `{c}` (its claims: {})",
            d.id,
            if made.is_empty() {
                "none".to_string()
            } else {
                made.join(", ")
            }
        )));
    }
    let mut named: Vec<String> = Vec::new();
    for c in mismatched {
        if !named.contains(&c) {
            named.push(c);
        }
    }
    let mut next = d.clone();
    next.inspection = Some(Inspection {
        source: InspectionSource::Principal,
        found: None,
        mismatched: named,
        at: s.now,
    });
    plan.change(Change::UpdateDeal(next.clone()));
    plan.event(
        Some(principal),
        parties(d),
        EventBody::DealInspected(DealInspected {
            deal_id: d.id,
            mismatched: next.inspection.as_ref().map(|i| i.mismatched.clone()),
        }),
    );
    s.deal = Some(next.clone());
    Ok(next)
}

/// The buyer disputes a handed-over deal within the confirmation window: the hold is frozen.
/// `not_as_described` must name claims the inspection found contradicted.
pub fn dispute_on(s: &mut Scene, plan: &mut Plan, reason: &str, grounds: Dispute) -> Result<()> {
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
    match grounds.grounds {
        DisputeGrounds::NotAsDescribed => {
            let found = d
                .inspection
                .as_ref()
                .map(|i| &i.mismatched[..])
                .unwrap_or(&[]);
            if found.is_empty() {
                return Err(E::invalid_transition(format!(
                    "deal {} has no inspection that found a claim contradicted: not_as_described needs one",
                    d.id
                )));
            }
            if grounds.claims.is_empty() {
                return Err(E::invalid_request(format!(
                    "not_as_described names the contradicted claims (found: {})",
                    found.join(", ")
                )));
            }
            if let Some(c) = grounds.claims.iter().find(|c| !found.contains(c)) {
                return Err(E::invalid_request(format!(
                    "the inspection of deal {} did not find claim `{c}` contradicted (found: {})",
                    d.id,
                    found.join(", ")
                )));
            }
        }
        DisputeGrounds::NotReceived | DisputeGrounds::Other if !grounds.claims.is_empty() => {
            return Err(E::invalid_request(
                "only a not_as_described dispute names claims",
            ));
        }
        _ => {}
    }
    note(plan, d, Some(actor), "dispute", reason);
    let mut next = d.clone();
    next.status = DealStatus::Disputed;
    // The payload of an `other` dispute stays as it was before grounds existed.
    let payload = if grounds.grounds == DisputeGrounds::Other {
        DealDisputed {
            deal_id: d.id,
            reason: reason.to_string(),
            grounds: None,
            claims: None,
        }
    } else {
        DealDisputed {
            deal_id: d.id,
            reason: reason.to_string(),
            grounds: Some(grounds.grounds),
            claims: Some(grounds.claims.clone()),
        }
    };
    next.dispute = Some(grounds);
    plan.change(Change::UpdateDeal(next));
    plan.event(Some(actor), parties(d), EventBody::DealDisputed(payload));
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
        author,
        parties(d),
        EventBody::DisputeEvidenceAdded(DisputeEvidenceAdded {
            deal_id: d.id,
            note_id: n.id,
        }),
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
            Some(principal),
            parties(d),
            EventBody::DealApprovalGiven(DealApprovalGiven {
                deal_id: d.id,
                awaiting: next.approval_from,
            }),
        );
    } else if approve {
        let mut next = d.clone();
        next.status = DealStatus::Agreed;
        next.approval_deadline = None;
        next.approval_from = Approver::Buyer;
        plan.change(Change::UpdateDeal(next));
        plan.event(
            Some(principal),
            parties(d),
            EventBody::DealApproved(DealOnly { deal_id: d.id }),
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
        Some(actor),
        parties(d),
        EventBody::DealRated(DealRated {
            deal_id: d.id,
            rater: actor,
        }),
    );
    Ok(r)
}

/// The deal clock: a simulated carrier delivers shipped deals; handed-over deals past their window
/// complete; approvals past their deadline are declined.
pub fn sweep_deals(s: &Scene, plan: &mut Plan, due: &Due) {
    // A deal whose window has passed completes below (delivered then) instead.
    for d in due
        .deliveries
        .iter()
        .filter(|d| arrived(d, s.now) && d.confirm_deadline.is_some_and(|x| x > s.now))
    {
        let at = d.arrives_at.unwrap_or(s.now);
        let mut next = delivered(d, at);
        next.arrives_at = None;
        plan.change(Change::UpdateDeal(next));
        plan.event(
            None,
            parties(d),
            EventBody::DealDelivered(DealDelivered {
                deal_id: d.id,
                delivered_at: at,
            }),
        );
    }
    for d in &due.deals_to_complete {
        if d.status == DealStatus::HandedOver && d.confirm_deadline.is_some_and(|x| x <= s.now) {
            close(
                plan,
                &delivered(d, s.now),
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
    /// Settled deals (completed, refunded, partially refunded) as the seller and as the buyer.
    #[serde(default)]
    pub deals_as_seller: u32,
    #[serde(default)]
    pub deals_as_buyer: u32,
    /// Disputes buyers opened against it as the seller, on settled deals.
    #[serde(default)]
    pub disputes_against: u32,
    /// Of those, the rulings that gave the buyer money back, by the dispute's grounds.
    #[serde(default)]
    pub upheld_not_as_described: u32,
    #[serde(default)]
    pub upheld_not_received: u32,
    #[serde(default)]
    pub upheld_other: u32,
    /// Its settled sales that were inspected, and of those the ones that matched every claim.
    #[serde(default)]
    pub inspected_sales: u32,
    #[serde(default)]
    pub accurate_sales: u32,
    /// Claim accuracy: `accurate_sales` of `inspected_sales` in percent (rounded); absent with
    /// no inspected sale.
    #[serde(default)]
    pub claim_accuracy_pct: Option<u32>,
    /// Median time from agreement to handover over its settled sales; absent with none.
    #[serde(default)]
    pub median_handover_delay_ms: Option<i64>,
}

impl Reputation {
    /// Whether the record shows the seller misdescribing: a sale whose inspection contradicted a
    /// claim, or a not-as-described ruling upheld against it. A clean or empty record is not poor.
    pub fn misdescribes(&self) -> bool {
        self.accurate_sales < self.inspected_sales || self.upheld_not_as_described > 0
    }
}

/// Computes a reputation from the participant's deals and the revealed ratings it received.
pub fn reputation<D: std::borrow::Borrow<Deal>>(
    p: ParticipantId,
    deals: &[D],
    revealed: &[Rating],
) -> Reputation {
    let mine: Vec<&Rating> = revealed.iter().filter(|r| r.ratee == p).collect();
    let sum: i64 = mine.iter().map(|r| r.score as i64).sum();
    let mut rep = Reputation {
        participant_id: p,
        average_x100: (!mine.is_empty())
            .then(|| (sum * 100 + mine.len() as i64 / 2) / mine.len() as i64),
        ratings: mine.len() as u32,
        ..Reputation::default()
    };
    for d in deals.iter().map(D::borrow).filter(|d| d.is_party(p)) {
        // A seller who never handed over caused the cancellation the buyer had to make.
        let seller_failed = d
            .resolution
            .as_ref()
            .is_some_and(|r| r.note == SELLER_DID_NOT_HAND_OVER || r.note == SELLER_DID_NOT_SHIP);
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
    settled_record(p, deals, &mut rep);
    rep
}

/// The trust part of a reputation (trust.md, Reputation), from settled deals only: an open
/// dispute or an uninspected handover says nothing yet.
fn settled_record<D: std::borrow::Borrow<Deal>>(
    p: ParticipantId,
    deals: &[D],
    rep: &mut Reputation,
) {
    let mut delays = Vec::new();
    for d in deals
        .iter()
        .map(D::borrow)
        .filter(|d| d.is_party(p) && d.is_finished())
    {
        if d.buyer == p {
            rep.deals_as_buyer += 1;
        }
        if d.seller != p {
            continue;
        }
        rep.deals_as_seller += 1;
        if let Some(at) = d.handed_over_at {
            delays.push(at - d.created_at);
        }
        if let Some(i) = &d.inspection {
            rep.inspected_sales += 1;
            if i.matched() {
                rep.accurate_sales += 1;
            }
        }
        let r = d.resolution.as_ref();
        if r.is_some_and(|r| r.note == "dispute_resolved") {
            rep.disputes_against += 1;
            if r.is_some_and(|r| r.to_buyer > 0) {
                match d
                    .dispute
                    .as_ref()
                    .map_or(DisputeGrounds::Other, |x| x.grounds)
                {
                    DisputeGrounds::NotAsDescribed => rep.upheld_not_as_described += 1,
                    DisputeGrounds::NotReceived => rep.upheld_not_received += 1,
                    DisputeGrounds::Other => rep.upheld_other += 1,
                }
            }
        }
    }
    if rep.inspected_sales > 0 {
        let (a, n) = (rep.accurate_sales, rep.inspected_sales);
        rep.claim_accuracy_pct = Some((a * 100 + n / 2) / n);
    }
    if !delays.is_empty() {
        delays.sort_unstable();
        rep.median_handover_delay_ms = Some(delays[delays.len() / 2]);
    }
}
