//! What misdescribed items cost in a run (trust.md, issue 17): listings sold whose claims the
//! item's true state contradicts, how many inspection caught, buyer money paid, recovered and
//! lost, disputes upheld, and the misdescribers' reputation over time. Also the simulated
//! operator's ruling on a not-as-described dispute.

use haggle_agents::profile::SellItem;
use haggle_api::haggle_core::{Claims, Condition, Deal, DealStatus, DisputeGrounds, Working};
use serde::{Deserialize, Serialize};

/// Value of an item in each condition, per mille of new (the generator's condition factors).
fn factor(c: Condition) -> i64 {
    match c {
        Condition::New => 1000,
        Condition::LikeNew => 900,
        Condition::Good => 750,
        Condition::Fair => 550,
        Condition::ForParts => 250,
    }
}

/// An item's value per mille of new as described by `c`: a non-working item is worth parts.
fn worth(c: &Claims) -> i64 {
    let base = c.condition.map_or(1000, factor);
    if c.working == Some(Working::No) {
        base.min(factor(Condition::ForParts))
    } else {
        base
    }
}

/// The simulated operator's ruling on a not-as-described dispute: the buyer keeps the item and
/// gets back the difference in value between what was claimed and what was found (a partial
/// refund), never more than the price.
pub fn value_gap_refund(price: i64, claimed: &Claims, found: &Claims) -> i64 {
    let (said, real) = (worth(claimed), worth(found));
    if real >= said {
        return 0;
    }
    (price - price * real / said).clamp(0, price)
}

/// The misdescribers' record at the end of one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationPoint {
    pub round: u64,
    pub participant: String,
    pub inspected_sales: u32,
    pub accurate_sales: u32,
    pub claim_accuracy_pct: Option<u32>,
    pub upheld_not_as_described: u32,
}

/// The measures of a run with misdescribers (in `results.json` only then).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustMeasures {
    /// Deals (not cancelled or declined) on listings whose claims the true state contradicts.
    pub misdescribed_sold: u32,
    /// Of those, the ones whose inspection at handover found the contradiction.
    pub caught_at_inspection: u32,
    /// `caught_at_inspection` of `misdescribed_sold`, in percent (rounded).
    pub caught_pct: Option<u32>,
    pub not_as_described_disputes: u32,
    /// Not-as-described rulings that gave the buyer money back.
    pub disputes_upheld: u32,
    /// What buyers paid for misdescribed items, got back by rulings, and what stayed with the
    /// sellers (`paid − recovered − still held in escrow`).
    pub buyer_money_paid: i64,
    pub buyer_money_recovered: i64,
    pub buyer_money_lost: i64,
    /// Per round, each misdescriber's record as the market showed it.
    pub misdescriber_reputation: Vec<ReputationPoint>,
}

/// Measures the deals of a run, each with its listing's true state when the scenario gave one.
pub fn measure(deals: &[(Deal, Option<Claims>)], timeline: Vec<ReputationPoint>) -> TrustMeasures {
    let mut t = TrustMeasures {
        misdescribed_sold: 0,
        misdescriber_reputation: timeline,
        ..TrustMeasures::default()
    };
    for (d, truth) in deals {
        if matches!(d.status, DealStatus::Cancelled | DealStatus::Declined) {
            continue;
        }
        if d.dispute.as_ref().map(|x| x.grounds) == Some(DisputeGrounds::NotAsDescribed) {
            t.not_as_described_disputes += 1;
            if d.resolution.as_ref().is_some_and(|r| r.to_buyer > 0) {
                t.disputes_upheld += 1;
            }
        }
        let Some(truth) = truth else { continue };
        if d.snapshot.claims.contradicted_by(truth).is_empty() {
            continue;
        }
        t.misdescribed_sold += 1;
        if d.inspection.as_ref().is_some_and(|i| !i.matched()) {
            t.caught_at_inspection += 1;
        }
        t.buyer_money_paid += d.price;
        let back = d.resolution.as_ref().map_or(0, |r| r.to_buyer);
        let held = if d.resolution.is_none() { d.price } else { 0 };
        t.buyer_money_recovered += back;
        t.buyer_money_lost += d.price - back - held;
    }
    if t.misdescribed_sold > 0 {
        let (c, n) = (t.caught_at_inspection, t.misdescribed_sold);
        t.caught_pct = Some((c * 100 + n / 2) / n);
    }
    t
}

/// Whether a profile item's claims overstate its true state.
pub fn is_misdescribed(item: &SellItem) -> bool {
    item.true_state
        .as_ref()
        .is_some_and(|t| !item.claims.contradicted_by(t).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(c: Condition, w: Working) -> Claims {
        Claims {
            condition: Some(c),
            working: Some(w),
            ..Claims::default()
        }
    }

    #[test]
    fn the_ruling_refunds_the_value_gap_and_nothing_for_an_honest_item() {
        let new = said(Condition::New, Working::Yes);
        assert_eq!(
            value_gap_refund(1000, &new, &said(Condition::Fair, Working::Yes)),
            450
        );
        assert_eq!(
            value_gap_refund(1000, &new, &said(Condition::Good, Working::No)),
            750
        );
        assert_eq!(value_gap_refund(1000, &new, &new), 0);
    }
}
