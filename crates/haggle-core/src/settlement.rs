//! The settlement report (spec, Ledger): every deal with who hands what to whom and how its hold
//! was split, and each participant's net position (received − paid), derived from the ledger's
//! transfers alone so real money can be settled outside exactly as the ledger says.

use crate::ledger::{Account, Transfer, TransferKind};
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementDeal {
    pub deal_id: DealId,
    pub listing_id: ListingId,
    pub title: String,
    pub seller: ParticipantId,
    pub seller_name: String,
    pub buyer: ParticipantId,
    pub buyer_name: String,
    pub price: Money,
    pub status: DealStatus,
    /// What left escrow to the seller and back to the buyer (both 0 while the hold is open).
    pub paid_to_seller: Money,
    pub refunded_to_buyer: Money,
    /// Whether the goods change hands (the seller received money for them).
    pub goods_change_hands: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub participant_id: ParticipantId,
    pub name: String,
    /// Budget received from the market's funding account.
    pub funded: Money,
    /// Released to it as a seller.
    pub received: Money,
    /// Paid as a buyer in closed deals (hold minus refunds).
    pub paid: Money,
    /// `received - paid`: what it gets (positive) or owes (negative) when settling outside.
    pub net: Money,
    /// Still held in escrow for its open deals as a buyer.
    pub held_in_escrow: Money,
    /// Its `available` ledger balance.
    pub cash: Money,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub market_id: MarketId,
    pub currency: String,
    pub deals: Vec<SettlementDeal>,
    pub positions: Vec<Position>,
}

/// Builds the report from the market's participants, deals and transfers.
pub fn settle(
    market: &Market,
    participants: &[Participant],
    deals: &[Deal],
    transfers: &[Transfer],
) -> Settlement {
    let names: BTreeMap<ParticipantId, &str> = participants
        .iter()
        .map(|p| (p.id, p.name.as_str()))
        .collect();
    let mut per_deal: BTreeMap<DealId, (Money, Money, Money)> = BTreeMap::new(); // held, to seller, to buyer
    let mut pos: BTreeMap<ParticipantId, Position> = participants
        .iter()
        .map(|p| {
            (
                p.id,
                Position {
                    participant_id: p.id,
                    name: p.name.clone(),
                    funded: 0,
                    received: 0,
                    paid: 0,
                    net: 0,
                    held_in_escrow: 0,
                    cash: 0,
                },
            )
        })
        .collect();
    for t in transfers {
        if let Account::Available(p) = t.credit
            && let Some(x) = pos.get_mut(&p)
        {
            x.cash += t.amount;
            if t.kind == TransferKind::Fund {
                x.funded += t.amount;
            }
        }
        if let Account::Available(p) = t.debit
            && let Some(x) = pos.get_mut(&p)
        {
            x.cash -= t.amount;
        }
        if let Some(d) = t.deal_id {
            let e = per_deal.entry(d).or_default();
            match t.kind {
                TransferKind::Hold => e.0 += t.amount,
                TransferKind::Release => e.1 += t.amount,
                TransferKind::Refund => e.2 += t.amount,
                TransferKind::Fund | TransferKind::Payout => {}
            }
        }
    }
    let mut out = Vec::with_capacity(deals.len());
    for d in deals {
        let (held, to_seller, to_buyer) = per_deal.get(&d.id).copied().unwrap_or_default();
        if d.status.hold_is_open() {
            if let Some(b) = pos.get_mut(&d.buyer) {
                b.held_in_escrow += held;
            }
        } else {
            if let Some(s) = pos.get_mut(&d.seller) {
                s.received += to_seller;
            }
            if let Some(b) = pos.get_mut(&d.buyer) {
                b.paid += held - to_buyer;
            }
        }
        out.push(SettlementDeal {
            deal_id: d.id,
            listing_id: d.listing_id,
            title: d.snapshot.title.clone(),
            seller: d.seller,
            seller_name: names.get(&d.seller).unwrap_or(&"?").to_string(),
            buyer: d.buyer,
            buyer_name: names.get(&d.buyer).unwrap_or(&"?").to_string(),
            price: d.price,
            status: d.status,
            paid_to_seller: to_seller,
            refunded_to_buyer: to_buyer,
            goods_change_hands: to_seller > 0,
        });
    }
    let positions = pos
        .into_values()
        .map(|mut p| {
            p.net = p.received - p.paid;
            p
        })
        .collect();
    Settlement {
        market_id: market.id,
        currency: market.currency.clone(),
        deals: out,
        positions,
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Settlement {
    /// Per-deal handover list: who hands what to whom, at what price.
    pub fn deals_csv(&self) -> String {
        let mut out = String::from(
            "deal_id,listing_id,title,seller_id,seller,buyer_id,buyer,price,status,paid_to_seller,refunded_to_buyer,goods_change_hands\n",
        );
        for d in &self.deals {
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{}\n",
                d.deal_id,
                d.listing_id,
                csv_field(&d.title),
                d.seller,
                csv_field(&d.seller_name),
                d.buyer,
                csv_field(&d.buyer_name),
                d.price,
                d.status,
                d.paid_to_seller,
                d.refunded_to_buyer,
                d.goods_change_hands
            );
        }
        out
    }

    /// Each participant's net position.
    pub fn positions_csv(&self) -> String {
        let mut out =
            String::from("participant_id,name,funded,received,paid,net,held_in_escrow,cash\n");
        for p in &self.positions {
            out += &format!(
                "{},{},{},{},{},{},{},{}\n",
                p.participant_id,
                csv_field(&p.name),
                p.funded,
                p.received,
                p.paid,
                p.net,
                p.held_in_escrow,
                p.cash
            );
        }
        out
    }

    /// The reconciliation the report promises: net positions sum to zero, and each participant's
    /// cash equals funded + net − what it still holds in escrow. Returns each mismatch.
    pub fn reconcile(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let total: Money = self.positions.iter().map(|p| p.net).sum();
        if total != 0 {
            errs.push(format!("net positions sum to {total}, not 0"));
        }
        for p in &self.positions {
            if p.cash != p.funded + p.net - p.held_in_escrow {
                errs.push(format!(
                    "participant {}: cash {} != funded {} + net {} - held {}",
                    p.participant_id, p.cash, p.funded, p.net, p.held_in_escrow
                ));
            }
        }
        errs
    }
}

/// A seller's payout for one deal in a market with a payment provider: what the provider charged
/// and kept (captured minus refunded), never what the ledger alone says (issue 23).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub seller: ParticipantId,
    pub seller_name: String,
    pub deal_id: DealId,
    /// Haggle's reference for the deal's payment (`haggle-{market}-{deal}`).
    pub reference: String,
    /// The provider's PaymentIntent id.
    pub intent: Option<String>,
    pub amount: Money,
}

impl Settlement {
    /// One payout per deal whose provider-confirmed charge is positive, by deal id.
    pub fn payouts(&self, payments: &BTreeMap<DealId, crate::payment::Payment>) -> Vec<Payout> {
        self.deals
            .iter()
            .filter_map(|d| {
                let p = payments.get(&d.deal_id)?;
                (p.charged > 0).then(|| Payout {
                    seller: d.seller,
                    seller_name: d.seller_name.clone(),
                    deal_id: d.deal_id,
                    reference: format!("haggle-{}-{}", self.market_id, d.deal_id),
                    intent: p.intent.clone(),
                    amount: p.charged,
                })
            })
            .collect()
    }
}

/// Payouts per deal, for a finance team: one row per deal with its reference.
pub fn payouts_csv(payouts: &[Payout]) -> String {
    let mut out = String::from("seller_id,seller,deal_id,reference,intent,amount\n");
    for p in payouts {
        out += &format!(
            "{},{},{},{},{},{}\n",
            p.seller,
            csv_field(&p.seller_name),
            p.deal_id,
            p.reference,
            csv_field(p.intent.as_deref().unwrap_or("")),
            p.amount
        );
    }
    out
}

/// Payouts per seller: the sum to pay each, and over how many deals.
pub fn payout_totals_csv(payouts: &[Payout]) -> String {
    let mut totals: BTreeMap<ParticipantId, (&str, Money, u32)> = BTreeMap::new();
    for p in payouts {
        let e = totals.entry(p.seller).or_insert((&p.seller_name, 0, 0));
        e.1 += p.amount;
        e.2 += 1;
    }
    let mut out = String::from("seller_id,seller,amount,deals\n");
    for (id, (name, amount, deals)) in totals {
        out += &format!("{id},{},{amount},{deals}\n", csv_field(name));
    }
    out
}
