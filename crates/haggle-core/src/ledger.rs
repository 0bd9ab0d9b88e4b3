//! The double-entry ledger: accounts, transfers and the invariants of the spec (Ledger).
//! A balance is credits minus debits; every transfer moves a positive amount between two accounts,
//! so the sum of all balances is zero by construction and `verify` proves it on stored data.

use crate::model::{Deal, DealId, DealStatus, MarketId, Money, ParticipantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "participant")]
pub enum Account {
    /// A participant's spendable cash.
    Available(ParticipantId),
    /// The market's escrow account; holds are tracked per deal through the transfers' deal ids.
    Escrow,
    /// Where budgets come from.
    Funding,
    /// Where settled money goes when paid out of the market.
    Payout,
}

impl Account {
    /// Stable text key used in storage (`available:12`, `escrow`, ...).
    pub fn key(self) -> String {
        match self {
            Account::Available(p) => format!("available:{p}"),
            Account::Escrow => "escrow".into(),
            Account::Funding => "funding".into(),
            Account::Payout => "payout".into(),
        }
    }
    pub fn parse(s: &str) -> Option<Account> {
        match s {
            "escrow" => Some(Account::Escrow),
            "funding" => Some(Account::Funding),
            "payout" => Some(Account::Payout),
            _ => s
                .strip_prefix("available:")?
                .parse()
                .ok()
                .map(Account::Available),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// Budget from `funding` into a participant's available account.
    Fund,
    /// Deal price from the buyer into escrow.
    Hold,
    /// Escrow to the seller (deal completed).
    Release,
    /// Escrow back to the buyer (cancelled, declined, refunded).
    Refund,
    /// Money leaves the market to be settled outside.
    Payout,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Fund => "fund",
            TransferKind::Hold => "hold",
            TransferKind::Release => "release",
            TransferKind::Refund => "refund",
            TransferKind::Payout => "payout",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            TransferKind::Fund,
            TransferKind::Hold,
            TransferKind::Release,
            TransferKind::Refund,
            TransferKind::Payout,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: i64,
    pub market_id: MarketId,
    pub debit: Account,
    pub credit: Account,
    pub amount: Money,
    pub kind: TransferKind,
    pub deal_id: Option<DealId>,
    pub at: Timestamp,
    /// Unique per market: a retried movement can never be booked twice.
    pub idempotency_id: String,
}

/// Balances computed from transfers, applied one at a time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balances(pub BTreeMap<Account, Money>);

impl Balances {
    pub fn get(&self, a: Account) -> Money {
        self.0.get(&a).copied().unwrap_or(0)
    }
    pub fn apply(&mut self, t: &Transfer) {
        *self.0.entry(t.debit).or_default() -= t.amount;
        *self.0.entry(t.credit).or_default() += t.amount;
    }
}

/// A breach of a ledger invariant found by [`verify`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    pub invariant: &'static str,
    pub detail: String,
}

/// Checks every ledger invariant of the spec over one market's stored transfers (in id order), its
/// deals, and the balances the store materialised. Returns every breach found, empty if sound.
pub fn verify(
    transfers: &[Transfer],
    deals: &[Deal],
    stored: &BTreeMap<Account, Money>,
) -> Vec<Breach> {
    let mut breaches = Vec::new();
    let (balances, per_deal) = check_transfers(transfers, &mut breaches);
    let mut b =
        |invariant: &'static str, detail: String| breaches.push(Breach { invariant, detail });
    let sum: Money = balances.0.values().sum();
    if sum != 0 {
        b("sum_is_zero", format!("balances sum to {sum}"));
    }
    let open_holds = check_deals(deals, per_deal, &mut breaches);
    let mut b =
        |invariant: &'static str, detail: String| breaches.push(Breach { invariant, detail });
    if balances.get(Account::Escrow) != open_holds {
        b(
            "escrow_equals_open_holds",
            format!(
                "escrow {} but open holds {}",
                balances.get(Account::Escrow),
                open_holds
            ),
        );
    }
    let accounts: std::collections::BTreeSet<_> =
        balances.0.keys().chain(stored.keys()).copied().collect();
    for a in accounts {
        let (want, got) = (balances.get(a), stored.get(&a).copied().unwrap_or(0));
        if want != got {
            b(
                "stored_balance_matches_transfers",
                format!("{}: stored {got}, transfers say {want}", a.key()),
            );
        }
    }
    breaches
}

/// What moved in and out of escrow for each deal: held, returned, and the number of holds.
type Escrowed = BTreeMap<DealId, (Money, Money, u32)>;

/// The per-transfer invariants, in id order (breaches appended to `breaches`); the balances the
/// transfers add up to and what each deal's escrow saw.
fn check_transfers(transfers: &[Transfer], breaches: &mut Vec<Breach>) -> (Balances, Escrowed) {
    let mut b =
        |invariant: &'static str, detail: String| breaches.push(Breach { invariant, detail });
    let mut balances = Balances::default();
    let mut ids = std::collections::BTreeSet::new();
    let mut per_deal = Escrowed::new();
    let mut last_id = i64::MIN;
    for t in transfers {
        if t.id <= last_id {
            b(
                "transfers_in_order",
                format!("transfer {} follows {}", t.id, last_id),
            );
        }
        last_id = t.id;
        if t.amount <= 0 {
            b(
                "amount_positive",
                format!("transfer {} moves {}", t.id, t.amount),
            );
        }
        if t.debit == t.credit {
            b(
                "distinct_accounts",
                format!("transfer {} debits and credits {}", t.id, t.debit.key()),
            );
        }
        if !ids.insert(t.idempotency_id.clone()) {
            b(
                "unique_transfer_ids",
                format!("idempotency id {} booked twice", t.idempotency_id),
            );
        }
        balances.apply(t);
        if let Account::Available(p) = t.debit
            && balances.get(t.debit) < 0
        {
            b(
                "available_never_negative",
                format!(
                    "participant {p} at {} after transfer {}",
                    balances.get(t.debit),
                    t.id
                ),
            );
        }
        let escrow_in = t.credit == Account::Escrow;
        let escrow_out = t.debit == Account::Escrow;
        if escrow_in || escrow_out {
            let Some(deal) = t.deal_id else {
                b(
                    "escrow_moves_name_a_deal",
                    format!("transfer {} touches escrow without a deal", t.id),
                );
                continue;
            };
            let e = per_deal.entry(deal).or_default();
            if escrow_in {
                e.0 += t.amount;
                e.2 += 1;
            } else {
                e.1 += t.amount;
                if e.1 > e.0 {
                    b(
                        "hold_released_once",
                        format!("deal {deal} released {} of a hold of {}", e.1, e.0),
                    );
                }
            }
        }
    }
    (balances, per_deal)
}

/// Each deal's hold against its escrow moves, and escrow moved for no known deal (breaches
/// appended to `breaches`); the sum of the holds still open.
fn check_deals(deals: &[Deal], mut per_deal: Escrowed, breaches: &mut Vec<Breach>) -> Money {
    let mut b =
        |invariant: &'static str, detail: String| breaches.push(Breach { invariant, detail });
    let mut open_holds = 0;
    for d in deals {
        let (held, returned, holds) = per_deal.remove(&d.id).unwrap_or_default();
        if holds != 1 || held != d.price {
            b(
                "hold_taken_once",
                format!(
                    "deal {} has {holds} holds totalling {held} for a price of {}",
                    d.id, d.price
                ),
            );
        }
        if d.status.hold_is_open() {
            open_holds += d.price;
            if returned != 0 {
                b(
                    "open_hold_untouched",
                    format!("deal {} is {} but {returned} left escrow", d.id, d.status),
                );
            }
        } else if returned != held {
            b(
                "hold_released_once",
                format!(
                    "deal {} is {} but {returned} of {held} left escrow",
                    d.id, d.status
                ),
            );
        }
        if d.status == DealStatus::Cancelled && returned != held {
            b("cancel_returns_hold", format!("deal {}", d.id));
        }
    }
    for deal in per_deal.keys() {
        b(
            "escrow_moves_name_a_deal",
            format!("escrow moved for unknown deal {deal}"),
        );
    }
    open_holds
}
