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

/// A text cell a spreadsheet opens as text, not as a formula: a cell beginning with `=`, `+`,
/// `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP's advice against CSV
/// injection: titles and names are written by agents). A cell that is a whole number (`-12`,
/// `+3.5`) is a number, not a formula, and stays as it is.
pub fn spreadsheet_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err() {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// CSV text of `header` and the `rows` (each serialised by its `Serialize` type, in field
/// order), with the csv crate's quoting and `\n` line ends.
fn csv_text<R: Serialize>(header: &[&str], rows: impl IntoIterator<Item = R>) -> String {
    // Writing to memory fails only on a type csv cannot write (none here) or on a row of another
    // length than the header (every row is the same struct).
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(header).expect("CSV header");
    for row in rows {
        w.serialize(row).expect("CSV row");
    }
    let bytes = w.into_inner().expect("CSV to memory");
    String::from_utf8(bytes).expect("CSV of UTF-8 text is UTF-8")
}

impl Settlement {
    /// Per-deal handover list: who hands what to whom, at what price. Titles and names are
    /// spreadsheet-safe ([`spreadsheet_safe`]).
    pub fn deals_csv(&self) -> String {
        let header = [
            "deal_id",
            "listing_id",
            "title",
            "seller_id",
            "seller",
            "buyer_id",
            "buyer",
            "price",
            "status",
            "paid_to_seller",
            "refunded_to_buyer",
            "goods_change_hands",
        ];
        csv_text(
            &header,
            self.deals.iter().map(|d| SettlementDeal {
                title: spreadsheet_safe(&d.title).into_owned(),
                seller_name: spreadsheet_safe(&d.seller_name).into_owned(),
                buyer_name: spreadsheet_safe(&d.buyer_name).into_owned(),
                ..d.clone()
            }),
        )
    }

    /// Each participant's net position. Names are spreadsheet-safe ([`spreadsheet_safe`]).
    pub fn positions_csv(&self) -> String {
        let header = [
            "participant_id",
            "name",
            "funded",
            "received",
            "paid",
            "net",
            "held_in_escrow",
            "cash",
        ];
        csv_text(
            &header,
            self.positions.iter().map(|p| Position {
                name: spreadsheet_safe(&p.name).into_owned(),
                ..p.clone()
            }),
        )
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

/// Payouts per deal, for a finance team: one row per deal with its reference. Names are
/// spreadsheet-safe ([`spreadsheet_safe`]).
pub fn payouts_csv(payouts: &[Payout]) -> String {
    let header = [
        "seller_id",
        "seller",
        "deal_id",
        "reference",
        "intent",
        "amount",
    ];
    csv_text(
        &header,
        payouts.iter().map(|p| Payout {
            seller_name: spreadsheet_safe(&p.seller_name).into_owned(),
            ..p.clone()
        }),
    )
}

/// Payouts per seller: the sum to pay each, and over how many deals.
pub fn payout_totals_csv(payouts: &[Payout]) -> String {
    let mut totals: BTreeMap<ParticipantId, (&str, Money, u32)> = BTreeMap::new();
    for p in payouts {
        let e = totals.entry(p.seller).or_insert((&p.seller_name, 0, 0));
        e.1 += p.amount;
        e.2 += 1;
    }
    csv_text(
        &["seller_id", "seller", "amount", "deals"],
        totals
            .into_iter()
            .map(|(id, (name, amount, deals))| (id, spreadsheet_safe(name), amount, deals)),
    )
}
