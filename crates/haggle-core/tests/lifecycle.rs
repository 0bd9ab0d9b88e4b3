//! The deal lifecycle of `shared/spec/market.md` (Deal lifecycle, Ledger, Rating), one transition
//! per test, allowed and refused, against an in-memory market. Every refusal is checked for its
//! code and for leaving the market unchanged; the ledger is verified after every step.

mod support;

use haggle_core::lifecycle::{Ruling, rating_revealed};
use haggle_core::*;
use support::Mem;

const PRICE: Money = 4_000;
const BUDGET: Money = 10_000;

/// A seller with a sell ad, a buyer who bought it at `PRICE` (deal `deal`), a rival with no part
/// in it, and an arbiter the market may name.
struct Fx {
    m: Mem,
    seller: ParticipantId,
    buyer: ParticipantId,
    rival: ParticipantId,
    arbiter: ParticipantId,
    listing: ListingId,
    deal: DealId,
}

fn fx_with(rules: MarketRules, buyer_mandate: Mandate) -> Fx {
    let mut m = Mem::new(rules);
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", buyer_mandate, BUDGET);
    let rival = m.register("rival", Mandate::default(), BUDGET);
    let arbiter = m.register("arbiter", Mandate::default(), 0);
    let listing = m.list(seller, Side::Sell, "books", 5_000);
    let deal = m.deal_on(buyer, listing, PRICE).id;
    sound(&m);
    Fx {
        m,
        seller,
        buyer,
        rival,
        arbiter,
        listing,
        deal,
    }
}

fn fx() -> Fx {
    fx_with(MarketRules::default(), Mandate::default())
}

fn rules(f: impl FnOnce(&mut MarketRules)) -> MarketRules {
    let mut r = MarketRules::default();
    f(&mut r);
    r
}

/// The ledger and the event chain are sound, and escrow holds exactly the open deals' prices.
#[track_caller]
fn sound(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    let (escrow, open) = m.escrow_and_open_holds();
    assert_eq!(escrow, open, "escrow equals the open holds");
    assert_eq!(m.settlement().reconcile(), Vec::<String>::new());
}

fn cash(m: &Mem, p: ParticipantId) -> Money {
    m.balance(Account::Available(p))
}

impl Fx {
    fn status(&self) -> DealStatus {
        self.m.deals[&self.deal].status
    }
    fn handed_over(mut self) -> Fx {
        self.m.hand_over(self.seller, self.deal, None).unwrap();
        self
    }
    fn disputed(self) -> Fx {
        let mut f = self.handed_over();
        f.m.dispute(f.buyer, f.deal, "it arrived broken").unwrap();
        f
    }
    fn completed(self) -> Fx {
        let mut f = self.handed_over();
        f.m.confirm(f.buyer, f.deal).unwrap();
        f
    }
    /// Asserts how the deal closed and what each side got from its hold.
    #[track_caller]
    fn closed_as(&self, status: DealStatus, to_buyer: Money) {
        let d = &self.m.deals[&self.deal];
        assert_eq!(d.status, status);
        assert_eq!(d.finished_at, Some(self.m.now()));
        let r = d
            .resolution
            .as_ref()
            .expect("a closed deal has a resolution");
        assert_eq!((r.to_buyer, r.to_seller), (to_buyer, PRICE - to_buyer));
        assert_eq!(cash(&self.m, self.buyer), BUDGET - PRICE + to_buyer);
        assert_eq!(cash(&self.m, self.seller), PRICE - to_buyer);
        assert_eq!(self.m.balance(Account::Escrow), 0);
        // The ledger says the same: what left escrow for this deal, to whom.
        let moved = |kind: TransferKind, to: ParticipantId| -> Money {
            self.m
                .transfers
                .iter()
                .filter(|t| t.deal_id == Some(d.id) && t.kind == kind)
                .inspect(|t| {
                    assert_eq!(
                        (t.debit, t.credit),
                        (Account::Escrow, Account::Available(to))
                    )
                })
                .map(|t| t.amount)
                .sum()
        };
        assert_eq!(moved(TransferKind::Refund, self.buyer), to_buyer);
        assert_eq!(moved(TransferKind::Release, self.seller), PRICE - to_buyer);
        sound(&self.m);
    }
}

// ----- the starting point --------------------------------------------------------------------

#[test]
fn acceptance_holds_the_price_in_escrow() {
    let f = fx();
    assert_eq!(f.status(), DealStatus::Agreed);
    assert_eq!(cash(&f.m, f.buyer), BUDGET - PRICE);
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Sold);
    sound(&f.m);
}

#[test]
fn an_unknown_deal_is_not_found() {
    let Fx {
        mut m,
        seller,
        buyer,
        ..
    } = fx();
    m.refuses(ErrorCode::NotFound, |m| m.hand_over(seller, 999, None));
    m.refuses(ErrorCode::NotFound, |m| m.confirm(buyer, 999));
    m.refuses(ErrorCode::NotFound, |m| m.cancel(seller, 999, None));
    m.refuses(ErrorCode::NotFound, |m| m.dispute(buyer, 999, "?"));
    m.refuses(ErrorCode::NotFound, |m| m.evidence(None, 999, "?"));
    m.refuses(ErrorCode::NotFound, |m| {
        m.resolve(None, 999, Ruling::Refund, "")
    });
    m.refuses(ErrorCode::NotFound, |m| m.decide(buyer, 999, true));
    m.refuses(ErrorCode::NotFound, |m| m.rate(buyer, 999, 5, ""));
}

// ----- handover ------------------------------------------------------------------------------

#[test]
fn the_seller_hands_over_an_agreed_deal() {
    let mut f = fx();
    let d =
        f.m.hand_over(f.seller, f.deal, Some("left it at reception"))
            .unwrap();
    assert_eq!(d.status, DealStatus::HandedOver);
    assert_eq!(d.handed_over_at, Some(f.m.now()));
    assert_eq!(
        d.confirm_deadline,
        Some(f.m.now() + f.m.market.rules.confirmation_window_ms)
    );
    assert_eq!(d.handover_note.as_deref(), Some("left it at reception"));
    assert_eq!(f.m.deals[&f.deal], d);
    let notes = f.m.notes_on(f.deal);
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (
            notes[0].kind.as_str(),
            notes[0].author,
            notes[0].body.as_str()
        ),
        ("handover", Some(f.seller), "left it at reception")
    );
    assert!(f.m.event_kinds().contains(&"deal_handed_over"));
    // Handing over moves no money: the hold stays in escrow until receipt.
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    assert_eq!(cash(&f.m, f.seller), 0);
    sound(&f.m);
}

#[test]
fn only_the_seller_hands_over_and_only_once() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        deal,
        ..
    } = fx();
    m.refuses(ErrorCode::Forbidden, |m| m.hand_over(buyer, deal, None));
    m.refuses(ErrorCode::Forbidden, |m| m.hand_over(rival, deal, None));
    let long = "x".repeat(lifecycle::MAX_NOTE + 1);
    m.refuses(ErrorCode::InvalidRequest, |m| {
        m.hand_over(seller, deal, Some(&long))
    });
    m.hand_over(seller, deal, None).unwrap();
    assert!(m.notes_on(deal).is_empty(), "no note without a note");
    m.refuses(ErrorCode::InvalidTransition, |m| {
        m.hand_over(seller, deal, None)
    });
    sound(&m);
}

#[test]
fn a_frozen_seller_cannot_hand_over() {
    let Fx {
        mut m,
        seller,
        deal,
        ..
    } = fx();
    m.set_mandate(
        seller,
        Mandate {
            frozen: true,
            ..Mandate::default()
        },
    )
    .unwrap();
    m.refuses(ErrorCode::AgentFrozen, |m| m.hand_over(seller, deal, None));
}

// ----- receipt and automatic completion ------------------------------------------------------

#[test]
fn the_buyer_confirms_receipt_and_the_hold_goes_to_the_seller() {
    let mut f = fx().handed_over();
    f.m.confirm(f.buyer, f.deal).unwrap();
    f.closed_as(DealStatus::Completed, 0);
    let r = f.m.deals[&f.deal].resolution.clone().unwrap();
    assert_eq!(
        (r.by, r.note.as_str()),
        (Some(f.buyer), "receipt_confirmed")
    );
    assert!(f.m.event_kinds().contains(&"deal_completed"));
    // The listing stays sold.
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Sold);
}

#[test]
fn receipt_needs_the_buyer_and_a_handed_over_deal() {
    let Fx {
        mut m,
        seller,
        buyer,
        rival,
        deal,
        ..
    } = fx();
    m.refuses(ErrorCode::InvalidTransition, |m| m.confirm(buyer, deal));
    m.hand_over(seller, deal, None).unwrap();
    m.refuses(ErrorCode::Forbidden, |m| m.confirm(seller, deal));
    m.refuses(ErrorCode::Forbidden, |m| m.confirm(rival, deal));
    m.confirm(buyer, deal).unwrap();
    m.refuses(ErrorCode::InvalidTransition, |m| m.confirm(buyer, deal));
    sound(&m);
}

#[test]
fn a_handed_over_deal_completes_when_the_confirmation_window_passes() {
    let mut f = fx().handed_over();
    let window = f.m.market.rules.confirmation_window_ms;
    f.m.advance(window - 1);
    assert_eq!(f.m.sweep(), 0, "not due yet");
    assert_eq!(f.status(), DealStatus::HandedOver);
    f.m.advance(1);
    assert!(f.m.sweep() > 0);
    f.closed_as(DealStatus::Completed, 0);
    let r = f.m.deals[&f.deal].resolution.clone().unwrap();
    assert_eq!(
        (r.by, r.note.as_str()),
        (None, "confirmation_window_elapsed")
    );
    // Idempotent: nothing is due any more.
    assert!(f.m.due().deals_to_complete.is_empty());
    assert_eq!(f.m.sweep(), 0);
    f.m.refuses(ErrorCode::InvalidTransition, |m| m.confirm(f.buyer, f.deal));
    f.closed_as(DealStatus::Completed, 0);
}

#[test]
fn the_sweep_leaves_agreed_and_disputed_deals_alone() {
    let mut f = fx();
    f.m.advance(30 * DAY_MS);
    f.m.sweep();
    assert_eq!(
        f.status(),
        DealStatus::Agreed,
        "no window runs before handover"
    );
    let mut f = f.disputed();
    f.m.advance(30 * DAY_MS);
    f.m.sweep();
    assert_eq!(
        f.status(),
        DealStatus::Disputed,
        "a dispute freezes the hold"
    );
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    sound(&f.m);
}

// ----- cancellation --------------------------------------------------------------------------

#[test]
fn the_seller_cancels_alone_where_the_market_allows_it() {
    let mut f = fx();
    assert!(f.m.market.rules.seller_may_cancel);
    assert!(
        f.m.cancel(f.seller, f.deal, Some("sold it elsewhere"))
            .unwrap()
    );
    f.closed_as(DealStatus::Cancelled, PRICE);
    let d = &f.m.deals[&f.deal];
    assert_eq!(d.resolution.as_ref().unwrap().note, "cancelled_by_seller");
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    assert!(f.m.event_kinds().contains(&"deal_cancelled"));
    assert!(f.m.event_kinds().contains(&"listing_relisted"));
    assert_eq!(f.m.notes_on(f.deal)[0].kind, "cancel");
    // Relisted: another buyer can buy it now.
    let again = f.m.deal_on(f.rival, f.listing, 4_500);
    assert_eq!(again.status, DealStatus::Agreed);
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Sold);
    sound(&f.m);
}

#[test]
fn without_the_sellers_right_cancelling_is_mutual() {
    for first_is_seller in [true, false] {
        let mut f = fx_with(rules(|r| r.seller_may_cancel = false), Mandate::default());
        let (first, second) = if first_is_seller {
            (f.seller, f.buyer)
        } else {
            (f.buyer, f.seller)
        };
        assert!(!f.m.cancel(first, f.deal, None).unwrap(), "only a request");
        let d = &f.m.deals[&f.deal];
        assert_eq!(d.status, DealStatus::Agreed);
        assert_eq!(d.cancel_requested_by, Some(first));
        assert_eq!(f.m.balance(Account::Escrow), PRICE, "the hold stays");
        assert!(f.m.event_kinds().contains(&"deal_cancel_requested"));
        sound(&f.m);
        // Asking twice is not agreeing.
        f.m.refuses(ErrorCode::InvalidTransition, |m| {
            m.cancel(first, f.deal, None)
        });
        f.m.refuses(ErrorCode::Forbidden, |m| m.cancel(f.rival, f.deal, None));
        assert!(f.m.cancel(second, f.deal, None).unwrap());
        f.closed_as(DealStatus::Cancelled, PRICE);
        assert_eq!(
            f.m.deals[&f.deal].resolution.as_ref().unwrap().note,
            "cancelled_by_both"
        );
        assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    }
}

#[test]
fn the_buyer_alone_only_asks_to_cancel() {
    let mut f = fx();
    assert!(!f.m.cancel(f.buyer, f.deal, None).unwrap());
    assert_eq!(f.status(), DealStatus::Agreed);
    // The seller agreeing cancels.
    assert!(f.m.cancel(f.seller, f.deal, None).unwrap());
    f.closed_as(DealStatus::Cancelled, PRICE);
}

#[test]
fn the_buyer_cancels_alone_when_the_seller_never_hands_over_within_the_window() {
    let mut f = fx_with(rules(|r| r.seller_may_cancel = false), Mandate::default());
    let window = f.m.market.rules.confirmation_window_ms;
    f.m.advance(window - 1);
    assert!(
        !f.m.cancel(f.buyer, f.deal, None).unwrap(),
        "too early: only a request"
    );
    f.m.advance(1);
    assert!(f.m.cancel(f.buyer, f.deal, None).unwrap());
    f.closed_as(DealStatus::Cancelled, PRICE);
    assert_eq!(
        f.m.deals[&f.deal].resolution.as_ref().unwrap().note,
        "seller_did_not_hand_over"
    );
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    sound(&f.m);
    // The cancellation is the seller's failure, not the buyer's.
    let deals: Vec<_> = f.m.deals.values().cloned().collect();
    assert_eq!(
        haggle_core::lifecycle::reputation(f.seller, &deals, &[]).cancellations,
        1
    );
    assert_eq!(
        haggle_core::lifecycle::reputation(f.buyer, &deals, &[]).cancellations,
        0
    );
}

#[test]
fn no_cancelling_after_handover() {
    let mut f = fx_with(rules(|r| r.seller_may_cancel = false), Mandate::default());
    f.m.cancel(f.buyer, f.deal, None).unwrap();
    // Handing over ends the pending request.
    f.m.hand_over(f.seller, f.deal, None).unwrap();
    assert_eq!(f.m.deals[&f.deal].cancel_requested_by, None);
    for who in [f.seller, f.buyer] {
        f.m.refuses(ErrorCode::InvalidTransition, |m| {
            m.cancel(who, f.deal, None)
        });
    }
    f.m.refuses(ErrorCode::Forbidden, |m| m.cancel(f.rival, f.deal, None));
    let mut f = fx().completed();
    for who in [f.seller, f.buyer] {
        f.m.refuses(ErrorCode::InvalidTransition, |m| {
            m.cancel(who, f.deal, None)
        });
    }
}

// ----- disputes ------------------------------------------------------------------------------

#[test]
fn the_buyer_disputes_within_the_window_and_the_hold_freezes() {
    let mut f = fx().handed_over();
    f.m.advance(f.m.market.rules.confirmation_window_ms - 1);
    f.m.dispute(f.buyer, f.deal, "the spine is torn").unwrap();
    assert_eq!(f.status(), DealStatus::Disputed);
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    let notes = f.m.notes_on(f.deal);
    assert_eq!(
        (notes[0].kind.as_str(), notes[0].author),
        ("dispute", Some(f.buyer))
    );
    assert!(f.m.event_kinds().contains(&"deal_disputed"));
    // A disputed deal is not confirmed, cancelled, handed over or disputed again.
    f.m.refuses(ErrorCode::InvalidTransition, |m| m.confirm(f.buyer, f.deal));
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.dispute(f.buyer, f.deal, "again")
    });
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.cancel(f.seller, f.deal, None)
    });
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.hand_over(f.seller, f.deal, None)
    });
    sound(&f.m);
}

#[test]
fn disputes_need_the_buyer_a_reason_a_handover_and_the_window() {
    let mut f = fx();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.dispute(f.buyer, f.deal, "not yet sent")
    });
    let mut f = f.handed_over();
    f.m.refuses(ErrorCode::Forbidden, |m| m.dispute(f.seller, f.deal, "x"));
    f.m.refuses(ErrorCode::Forbidden, |m| m.dispute(f.rival, f.deal, "x"));
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.dispute(f.buyer, f.deal, " ")
    });
    // At the deadline the window is closed, even before a sweep completed the deal.
    f.m.advance(f.m.market.rules.confirmation_window_ms);
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.dispute(f.buyer, f.deal, "too late")
    });
    f.m.sweep();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.dispute(f.buyer, f.deal, "too late")
    });
    sound(&f.m);
}

#[test]
fn evidence_from_the_parties_the_arbiter_and_the_operator() {
    let mut f = fx();
    f.m.market.rules.arbiter = Some(f.arbiter);
    let mut f = f.disputed();
    let by_buyer =
        f.m.evidence(Some(f.buyer), f.deal, "photo of the box")
            .unwrap();
    let by_seller =
        f.m.evidence(Some(f.seller), f.deal, "tracking: it was fine")
            .unwrap();
    let by_arbiter =
        f.m.evidence(Some(f.arbiter), f.deal, "asked the courier")
            .unwrap();
    let by_operator = f.m.evidence(None, f.deal, "noted").unwrap();
    let authors: Vec<_> =
        f.m.notes_on(f.deal)
            .iter()
            .filter(|n| n.kind == "evidence")
            .map(|n| (n.id, n.author))
            .collect();
    assert_eq!(
        authors,
        [
            (by_buyer.id, Some(f.buyer)),
            (by_seller.id, Some(f.seller)),
            (by_arbiter.id, Some(f.arbiter)),
            (by_operator.id, None),
        ]
    );
    assert_eq!(by_buyer.created_at, f.m.now());
    f.m.refuses(ErrorCode::Forbidden, |m| {
        m.evidence(Some(f.rival), f.deal, "I saw it")
    });
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.evidence(Some(f.buyer), f.deal, "")
    });
    let long = "x".repeat(lifecycle::MAX_NOTE + 1);
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.evidence(Some(f.buyer), f.deal, &long)
    });
    assert_eq!(f.status(), DealStatus::Disputed, "evidence moves nothing");
    sound(&f.m);
}

/// Issue 15: a buyer posting 1,005 notes hid the seller's evidence. Each party's evidence is
/// bounded; the operator's is not; the other party can still add its own.
#[test]
fn each_party_adds_at_most_max_notes_per_party_evidence_notes() {
    let mut f = fx().disputed();
    let before = f.m.notes_on(f.deal).len();
    let own =
        f.m.notes_on(f.deal)
            .iter()
            .filter(|n| n.author == Some(f.buyer))
            .count() as u32;
    for i in own..lifecycle::MAX_NOTES_PER_PARTY {
        f.m.evidence(Some(f.buyer), f.deal, &format!("photo {i}"))
            .unwrap();
    }
    f.m.refuses(ErrorCode::TooManyNotes, |m| {
        m.evidence(Some(f.buyer), f.deal, "one more")
    });
    f.m.evidence(Some(f.seller), f.deal, "it was fine").unwrap();
    f.m.evidence(None, f.deal, "the operator is not bounded")
        .unwrap();
    assert_eq!(
        f.m.notes_on(f.deal).len(),
        before + (lifecycle::MAX_NOTES_PER_PARTY - own) as usize + 2
    );
    sound(&f.m);
}

#[test]
fn evidence_only_while_disputed() {
    let mut f = fx();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.evidence(Some(f.buyer), f.deal, "early")
    });
    let mut f = f.handed_over();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.evidence(None, f.deal, "early")
    });
    f.m.confirm(f.buyer, f.deal).unwrap();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.evidence(Some(f.seller), f.deal, "late")
    });
}

#[test]
fn a_frozen_party_cannot_add_evidence() {
    let mut f = fx().disputed();
    f.m.set_mandate(
        f.buyer,
        Mandate {
            frozen: true,
            ..Mandate::default()
        },
    )
    .unwrap();
    f.m.refuses(ErrorCode::AgentFrozen, |m| {
        m.evidence(Some(f.buyer), f.deal, "more photos")
    });
}

#[test]
fn resolving_releases_refunds_or_splits_the_hold_exactly() {
    let cases = [
        (Ruling::Release, DealStatus::Completed, 0),
        (Ruling::Refund, DealStatus::Refunded, PRICE),
        (
            Ruling::Split { to_buyer: 1 },
            DealStatus::PartiallyRefunded,
            1,
        ),
        (
            Ruling::Split { to_buyer: 1_333 },
            DealStatus::PartiallyRefunded,
            1_333,
        ),
        (
            Ruling::Split {
                to_buyer: PRICE - 1,
            },
            DealStatus::PartiallyRefunded,
            PRICE - 1,
        ),
        (Ruling::Split { to_buyer: 0 }, DealStatus::Completed, 0),
        (
            Ruling::Split { to_buyer: PRICE },
            DealStatus::Refunded,
            PRICE,
        ),
    ];
    for (ruling, status, to_buyer) in cases {
        let mut f = fx().disputed();
        f.m.resolve(None, f.deal, ruling, "looked at the photos")
            .unwrap();
        f.closed_as(status, to_buyer);
        let r = f.m.deals[&f.deal].resolution.clone().unwrap();
        assert_eq!((r.by, r.note.as_str()), (None, "dispute_resolved"));
        let note = f.m.notes_on(f.deal).into_iter().last().unwrap();
        assert_eq!((note.kind.as_str(), note.author), ("resolution", None));
        assert!(f.m.event_kinds().contains(&&*format!("deal_{status}")));
        // Resolved once.
        f.m.refuses(ErrorCode::InvalidTransition, |m| {
            m.resolve(None, f.deal, Ruling::Refund, "")
        });
        // The listing stays sold: something changed hands (or the buyer kept it after a refund).
        assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Sold);
    }
}

#[test]
fn a_split_outside_the_hold_is_invalid_price() {
    let mut f = fx().disputed();
    for to_buyer in [-1, PRICE + 1, MAX_AMOUNT, i64::MIN, i64::MAX] {
        f.m.refuses(ErrorCode::InvalidPrice, |m| {
            m.resolve(None, f.deal, Ruling::Split { to_buyer }, "")
        });
    }
    assert_eq!(f.status(), DealStatus::Disputed);
    sound(&f.m);
}

#[test]
fn only_an_operator_or_a_neutral_arbiter_resolves() {
    // No arbiter named: no participant may resolve.
    let mut f = fx().disputed();
    for who in [f.buyer, f.seller, f.rival, f.arbiter] {
        f.m.refuses(ErrorCode::Forbidden, |m| {
            m.resolve(Some(who), f.deal, Ruling::Refund, "")
        });
    }
    // The named arbiter resolves.
    let mut f = fx();
    f.m.market.rules.arbiter = Some(f.arbiter);
    let mut f = f.disputed();
    f.m.refuses(ErrorCode::Forbidden, |m| {
        m.resolve(Some(f.rival), f.deal, Ruling::Refund, "")
    });
    // A frozen arbiter reads but does not rule.
    let frozen = Mandate {
        frozen: true,
        ..Mandate::default()
    };
    f.m.set_mandate(f.arbiter, frozen).unwrap();
    f.m.refuses(ErrorCode::AgentFrozen, |m| {
        m.resolve(Some(f.arbiter), f.deal, Ruling::Refund, "")
    });
    f.m.set_mandate(f.arbiter, Mandate::default()).unwrap();
    f.m.resolve(
        Some(f.arbiter),
        f.deal,
        Ruling::Split { to_buyer: 500 },
        "half a chapter missing",
    )
    .unwrap();
    f.closed_as(DealStatus::PartiallyRefunded, 500);
    assert_eq!(
        f.m.deals[&f.deal].resolution.as_ref().unwrap().by,
        Some(f.arbiter)
    );
    // An arbiter who is a party to the deal may not rule on it.
    for party_is_seller in [true, false] {
        let mut f = fx();
        let party = if party_is_seller { f.seller } else { f.buyer };
        f.m.market.rules.arbiter = Some(party);
        let mut f = f.disputed();
        f.m.refuses(ErrorCode::Forbidden, |m| {
            m.resolve(Some(party), f.deal, Ruling::Release, "mine")
        });
        // But the operator still can.
        f.m.resolve(None, f.deal, Ruling::Release, "").unwrap();
        f.closed_as(DealStatus::Completed, 0);
    }
}

#[test]
fn resolving_needs_a_disputed_deal() {
    let mut f = fx();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.resolve(None, f.deal, Ruling::Refund, "")
    });
    let mut f = f.handed_over();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.resolve(None, f.deal, Ruling::Release, "")
    });
}

// ----- the principal's approval --------------------------------------------------------------

fn approval_fx() -> Fx {
    let f = fx_with(
        MarketRules::default(),
        Mandate {
            approval_above: Some(PRICE - 1),
            ..Mandate::default()
        },
    );
    assert_eq!(f.status(), DealStatus::AwaitingApproval);
    f
}

#[test]
fn a_deal_above_the_mandate_waits_for_approval_with_the_funds_held() {
    let mut f = approval_fx();
    let d = f.m.deals[&f.deal].clone();
    assert_eq!(
        d.approval_deadline,
        Some(f.m.now() + f.m.market.rules.approval_window_ms)
    );
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Sold);
    // Nothing happens to it but the decision.
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.hand_over(f.seller, f.deal, None)
    });
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.cancel(f.seller, f.deal, None)
    });
    f.m.refuses(ErrorCode::InvalidTransition, |m| m.confirm(f.buyer, f.deal));
    f.m.refuses(ErrorCode::Forbidden, |m| m.decide(f.seller, f.deal, true));
    f.m.refuses(ErrorCode::Forbidden, |m| m.decide(f.rival, f.deal, true));
    f.m.decide(f.buyer, f.deal, true).unwrap();
    let d = &f.m.deals[&f.deal];
    assert_eq!(d.status, DealStatus::Agreed);
    assert_eq!(d.approval_deadline, None);
    assert!(f.m.event_kinds().contains(&"deal_approved"));
    assert_eq!(f.m.balance(Account::Escrow), PRICE);
    sound(&f.m);
    // Decided once; the deal goes on as any agreed deal.
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.decide(f.buyer, f.deal, false)
    });
    let mut f = f.completed();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.decide(f.buyer, f.deal, true)
    });
    f.closed_as(DealStatus::Completed, 0);
}

#[test]
fn a_declined_deal_returns_the_hold_and_relists() {
    let mut f = approval_fx();
    f.m.decide(f.buyer, f.deal, false).unwrap();
    f.closed_as(DealStatus::Declined, PRICE);
    let r = f.m.deals[&f.deal].resolution.clone().unwrap();
    assert_eq!(
        (r.by, r.note.as_str()),
        (Some(f.buyer), "declined_by_principal")
    );
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.decide(f.buyer, f.deal, true)
    });
    // A declined deal is not finished: nobody rates it.
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.seller, f.deal, 1, "")
    });
}

#[test]
fn an_approval_times_out_into_a_decline() {
    let mut f = approval_fx();
    let window = f.m.market.rules.approval_window_ms;
    f.m.advance(window - 1);
    assert_eq!(f.m.sweep(), 0);
    f.m.advance(1);
    // Past the deadline it can no longer be approved, even before the sweep ran.
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.decide(f.buyer, f.deal, true)
    });
    assert!(f.m.sweep() > 0);
    f.closed_as(DealStatus::Declined, PRICE);
    let r = f.m.deals[&f.deal].resolution.clone().unwrap();
    assert_eq!((r.by, r.note.as_str()), (None, "approval_timed_out"));
    assert_eq!(f.m.listings[&f.listing].status, ListingStatus::Active);
    assert_eq!(f.m.sweep(), 0);
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.decide(f.buyer, f.deal, true)
    });
}

// ----- ratings -------------------------------------------------------------------------------

#[test]
fn only_finished_deals_are_rated() {
    let mut f = fx();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.buyer, f.deal, 5, "")
    });
    let mut f = f.handed_over();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.buyer, f.deal, 5, "")
    });
    f.m.dispute(f.buyer, f.deal, "broken").unwrap();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.seller, f.deal, 1, "")
    });
    f.m.resolve(None, f.deal, Ruling::Refund, "").unwrap();
    f.m.rate(f.seller, f.deal, 2, "unfair").unwrap();
    // Cancelled deals are not finished.
    let mut f = fx();
    f.m.cancel(f.seller, f.deal, None).unwrap();
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.buyer, f.deal, 1, "")
    });
    // Partially refunded ones are.
    let mut f = fx().disputed();
    f.m.resolve(None, f.deal, Ruling::Split { to_buyer: 10 }, "")
        .unwrap();
    f.m.rate(f.buyer, f.deal, 3, "").unwrap();
}

#[test]
fn each_side_rates_once_from_one_to_five() {
    let mut f = fx().completed();
    for score in [0, 6, 255] {
        f.m.refuses(ErrorCode::InvalidRequest, |m| {
            m.rate(f.buyer, f.deal, score, "")
        });
    }
    let long = "x".repeat(1001);
    f.m.refuses(ErrorCode::InvalidRequest, |m| {
        m.rate(f.buyer, f.deal, 4, &long)
    });
    f.m.refuses(ErrorCode::Forbidden, |m| m.rate(f.rival, f.deal, 1, ""));
    let r = f.m.rate(f.buyer, f.deal, 5, "quick and friendly").unwrap();
    assert_eq!((r.rater, r.ratee, r.score), (f.buyer, f.seller, 5));
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.buyer, f.deal, 4, "")
    });
    let r = f.m.rate(f.seller, f.deal, 1, "").unwrap();
    assert_eq!((r.rater, r.ratee, r.score), (f.seller, f.buyer, 1));
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.seller, f.deal, 2, "")
    });
    assert_eq!(f.m.ratings_on(f.deal).len(), 2);
    assert!(f.m.event_kinds().contains(&"deal_rated"));
    // The event does not give the score away before it is revealed.
    let e =
        f.m.events
            .iter()
            .find(|e| e.kind() == "deal_rated")
            .unwrap();
    let payload = e.body.payload_json();
    assert!(payload.get("score").is_none(), "{payload:?}");
    sound(&f.m);
}

#[test]
fn ratings_stay_hidden_until_both_rated() {
    let mut f = fx().completed();
    f.m.rate(f.buyer, f.deal, 4, "").unwrap();
    assert!(f.m.revealed_ratings(f.deal).is_empty());
    assert_eq!(f.m.reputation(f.seller).ratings, 0);
    assert_eq!(f.m.reputation(f.seller).average_x100, None);
    f.m.rate(f.seller, f.deal, 2, "").unwrap();
    assert_eq!(f.m.revealed_ratings(f.deal).len(), 2);
    assert_eq!(f.m.reputation(f.seller).average_x100, Some(400));
    assert_eq!(f.m.reputation(f.buyer).average_x100, Some(200));
}

#[test]
fn ratings_are_revealed_when_the_window_closes_and_none_come_after() {
    let mut f = fx().completed();
    let finished = f.m.deals[&f.deal].finished_at.unwrap();
    let window = f.m.market.rules.rating_window_ms;
    f.m.advance(window - 1);
    f.m.rate(f.buyer, f.deal, 3, "").unwrap();
    let d = f.m.deals[&f.deal].clone();
    let rules = f.m.market.rules.clone();
    assert!(!rating_revealed(&d, 1, &rules, finished + window - 1));
    assert!(rating_revealed(&d, 1, &rules, finished + window));
    assert!(rating_revealed(&d, 2, &rules, finished));
    assert!(f.m.revealed_ratings(f.deal).is_empty());
    f.m.advance(1);
    assert_eq!(f.m.revealed_ratings(f.deal).len(), 1);
    assert_eq!(f.m.reputation(f.seller).average_x100, Some(300));
    // The seller has now seen the buyer's rating: it may not answer it.
    f.m.refuses(ErrorCode::InvalidTransition, |m| {
        m.rate(f.seller, f.deal, 1, "")
    });
}

// ----- reputation ----------------------------------------------------------------------------

/// The trust record (trust.md, Reputation) counts settled deals only: sales and purchases,
/// disputes against the seller, upheld ones by grounds, claim accuracy and the median handover
/// delay.
#[test]
fn reputation_reports_the_settled_trust_record() {
    let mut m = Mem::new(rules(|_| {}));
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), 100_000);
    let l = m.list(seller, Side::Sell, "tools", 1_000);
    let base = m.deal_on(buyer, l, 1_000);
    let inspected = |mismatched: &[&str]| Inspection {
        source: InspectionSource::Simulation,
        found: None,
        mismatched: mismatched.iter().map(|s| s.to_string()).collect(),
        at: 0,
    };
    let mut deals = Vec::new();
    for (i, (status, delay, inspection, dispute)) in [
        (DealStatus::Completed, 10, Some(inspected(&[])), None),
        (
            DealStatus::Refunded,
            30,
            Some(inspected(&["condition"])),
            Some((DisputeGrounds::NotAsDescribed, 1_000)),
        ),
        (
            DealStatus::Completed,
            20,
            Some(inspected(&["working"])),
            Some((DisputeGrounds::NotAsDescribed, 0)),
        ),
        (
            DealStatus::PartiallyRefunded,
            40,
            None,
            Some((DisputeGrounds::NotReceived, 300)),
        ),
        // Not settled: says nothing yet.
        (
            DealStatus::Disputed,
            99,
            Some(inspected(&["condition"])),
            None,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = base.clone();
        d.id = 1_000 + i as i64;
        d.status = status;
        d.handed_over_at = Some(d.created_at + delay);
        d.inspection = inspection;
        if let Some((grounds, to_buyer)) = dispute {
            d.dispute = Some(Dispute {
                grounds,
                claims: Vec::new(),
            });
            d.resolution = Some(Resolution {
                to_buyer,
                to_seller: 1_000 - to_buyer,
                by: None,
                note: "dispute_resolved".into(),
            });
        }
        deals.push(d);
    }
    let r = haggle_core::lifecycle::reputation(seller, &deals, &[]);
    assert_eq!((r.deals_as_seller, r.deals_as_buyer), (4, 0));
    assert_eq!(r.disputes_against, 3);
    assert_eq!(
        (
            r.upheld_not_as_described,
            r.upheld_not_received,
            r.upheld_other
        ),
        (1, 1, 0)
    );
    assert_eq!((r.inspected_sales, r.accurate_sales), (3, 1));
    assert_eq!(r.claim_accuracy_pct, Some(33));
    assert_eq!(r.median_handover_delay_ms, Some(30));
    assert!(r.misdescribes());
    let b = haggle_core::lifecycle::reputation(buyer, &deals, &[]);
    assert_eq!(
        (b.deals_as_seller, b.deals_as_buyer, b.disputes_against),
        (0, 4, 0)
    );
    assert!(!b.misdescribes(), "an empty record is not a poor one");
}

#[test]
fn reputation_counts_ratings_completions_cancellations_and_lost_disputes() {
    let mut m = Mem::new(rules(|r| r.seller_may_cancel = false));
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), 100_000);
    let deal = |m: &mut Mem| {
        let l = m.list(seller, Side::Sell, "tools", 1_000);
        m.deal_on(buyer, l, 1_000).id
    };
    // Two completed deals, rated 5 and 4 by the buyer, 3 by the seller once.
    for (to_seller, to_buyer) in [(5, Some(3)), (4, None)] {
        let d = deal(&mut m);
        m.hand_over(seller, d, None).unwrap();
        m.confirm(buyer, d).unwrap();
        m.rate(buyer, d, to_seller, "").unwrap();
        if let Some(s) = to_buyer {
            m.rate(seller, d, s, "").unwrap();
        }
    }
    // The second deal's rating is revealed only once its window closes.
    assert_eq!(m.reputation(seller).ratings, 1);
    m.advance(m.market.rules.rating_window_ms);
    // One cancellation asked by the buyer (the seller agreed: not the seller's).
    let d = deal(&mut m);
    m.cancel(buyer, d, None).unwrap();
    m.cancel(seller, d, None).unwrap();
    // Disputes: a refund (the seller lost), a release (the buyer lost), a split (the seller lost).
    for ruling in [
        Ruling::Refund,
        Ruling::Release,
        Ruling::Split { to_buyer: 400 },
    ] {
        let d = deal(&mut m);
        m.hand_over(seller, d, None).unwrap();
        m.dispute(buyer, d, "not as described").unwrap();
        m.resolve(None, d, ruling, "").unwrap();
    }
    // An open deal counts for nothing yet.
    deal(&mut m);

    let s = m.reputation(seller);
    assert_eq!(s.participant_id, seller);
    assert_eq!(s.ratings, 2);
    assert_eq!(s.average_x100, Some(450));
    // Two confirmed plus the dispute released to the seller.
    assert_eq!(s.completed_deals, 3);
    assert_eq!(s.cancellations, 0);
    assert_eq!(s.disputes_lost, 2);
    let b = m.reputation(buyer);
    assert_eq!(b.ratings, 1);
    assert_eq!(b.average_x100, Some(300));
    assert_eq!(b.completed_deals, 3);
    assert_eq!(b.cancellations, 1);
    assert_eq!(b.disputes_lost, 1);
    sound(&m);
}

#[test]
fn a_seller_cancelling_alone_counts_against_the_seller() {
    let mut f = fx();
    f.m.cancel(f.seller, f.deal, None).unwrap();
    assert_eq!(f.m.reputation(f.seller).cancellations, 1);
    assert_eq!(f.m.reputation(f.buyer).cancellations, 0);
    let mut f = approval_fx();
    f.m.decide(f.buyer, f.deal, false).unwrap();
    // A principal's decline is no cancellation.
    assert_eq!(f.m.reputation(f.buyer).cancellations, 0);
    assert_eq!(f.m.reputation(f.seller).cancellations, 0);
}

#[test]
fn average_rounds_to_the_nearest_hundredth() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("seller", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), 100_000);
    for score in [5, 4, 4] {
        let l = m.list(seller, Side::Sell, "tools", 100);
        let d = m.deal_on(buyer, l, 100).id;
        m.hand_over(seller, d, None).unwrap();
        m.confirm(buyer, d).unwrap();
        m.rate(buyer, d, score, "").unwrap();
        m.rate(seller, d, 5, "").unwrap();
    }
    // 13 / 3 = 4.333…
    assert_eq!(m.reputation(seller).average_x100, Some(433));
    let l = m.list(seller, Side::Sell, "tools", 100);
    let d = m.deal_on(buyer, l, 100).id;
    m.hand_over(seller, d, None).unwrap();
    m.confirm(buyer, d).unwrap();
    m.rate(buyer, d, 5, "").unwrap();
    m.rate(seller, d, 5, "").unwrap();
    // 18 / 4 = 4.5
    assert_eq!(m.reputation(seller).average_x100, Some(450));
}

// ----- wanted ads ----------------------------------------------------------------------------

#[test]
fn on_a_wanted_ad_the_owner_is_the_buyer() {
    let mut m = Mem::new(MarketRules::default());
    let wanter = m.register("wanter", Mandate::default(), BUDGET);
    let offerer = m.register("offerer", Mandate::default(), 0);
    let l = m.list(wanter, Side::Buy, "games", 3_000);
    let d = m.deal_on(offerer, l, 2_500);
    assert_eq!((d.buyer, d.seller), (wanter, offerer));
    m.refuses(ErrorCode::Forbidden, |m| m.hand_over(wanter, d.id, None));
    m.hand_over(offerer, d.id, None).unwrap();
    m.confirm(wanter, d.id).unwrap();
    assert_eq!(m.balance(Account::Available(offerer)), 2_500);
    assert_eq!(m.balance(Account::Available(wanter)), BUDGET - 2_500);
    sound(&m);
}

// ----- the settlement report -----------------------------------------------------------------

#[test]
fn the_settlement_report_says_who_hands_what_to_whom() {
    let mut f = fx().disputed();
    f.m.resolve(None, f.deal, Ruling::Split { to_buyer: 1_000 }, "")
        .unwrap();
    let other = f.m.list(f.seller, Side::Sell, "books", 700);
    let open = f.m.deal_on(f.rival, other, 700).id;
    let s = f.m.settlement();
    assert_eq!(s.reconcile(), Vec::<String>::new());
    assert_eq!((s.market_id, s.currency.as_str()), (1, "EUR"));
    let d = s.deals.iter().find(|d| d.deal_id == f.deal).unwrap();
    assert_eq!(
        (d.seller, d.buyer, d.price, d.status),
        (f.seller, f.buyer, PRICE, DealStatus::PartiallyRefunded)
    );
    assert_eq!(
        (d.paid_to_seller, d.refunded_to_buyer),
        (PRICE - 1_000, 1_000)
    );
    assert!(d.goods_change_hands);
    assert_eq!(
        (d.seller_name.as_str(), d.buyer_name.as_str()),
        ("seller", "buyer")
    );
    let o = s.deals.iter().find(|d| d.deal_id == open).unwrap();
    assert_eq!(
        (o.paid_to_seller, o.refunded_to_buyer, o.goods_change_hands),
        (0, 0, false)
    );
    let pos = |p: ParticipantId| s.positions.iter().find(|x| x.participant_id == p).unwrap();
    let seller = pos(f.seller);
    assert_eq!(
        (seller.received, seller.paid, seller.net),
        (PRICE - 1_000, 0, PRICE - 1_000)
    );
    let buyer = pos(f.buyer);
    assert_eq!(
        (
            buyer.funded,
            buyer.paid,
            buyer.net,
            buyer.held_in_escrow,
            buyer.cash
        ),
        (
            BUDGET,
            PRICE - 1_000,
            -(PRICE - 1_000),
            0,
            BUDGET - PRICE + 1_000
        )
    );
    let rival = pos(f.rival);
    assert_eq!(
        (rival.net, rival.held_in_escrow, rival.cash),
        (0, 700, BUDGET - 700)
    );
    assert_eq!(s.positions.iter().map(|p| p.net).sum::<Money>(), 0);
    for p in &s.positions {
        assert_eq!(p.cash, f.m.balance(Account::Available(p.participant_id)));
    }
    // The CSV tables carry the same rows.
    let deals = s.deals_csv();
    assert!(deals.starts_with("deal_id,listing_id,title,"));
    assert_eq!(deals.lines().count(), 1 + s.deals.len());
    assert!(
        deals.contains(&format!(
            "{},{},books item,{},seller,{},buyer,{PRICE},partially_refunded,3000,1000,true",
            f.deal, f.listing, f.seller, f.buyer
        )),
        "{deals}"
    );
    let positions = s.positions_csv();
    assert_eq!(positions.lines().count(), 1 + s.positions.len());
    assert!(
        positions.contains(&format!("{},buyer,{BUDGET},0,3000,-3000,0,7000", f.buyer)),
        "{positions}"
    );
}

#[test]
fn settlement_csv_quotes_awkward_names_and_titles() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("Smith, \"Jo\"", Mandate::default(), 0);
    let buyer = m.register("buyer", Mandate::default(), 1_000);
    let mut input = support::new_listing(Side::Sell, "books", 500);
    input.title = "Tea, \"Earl\" Grey\nline two".into();
    let l = m.post(seller, input).unwrap().id;
    m.deal_on(buyer, l, 500);
    let csv = m.settlement().deals_csv();
    assert!(
        csv.contains("\"Tea, \"\"Earl\"\" Grey\nline two\""),
        "{csv}"
    );
    assert!(csv.contains("\"Smith, \"\"Jo\"\"\""), "{csv}");
}

#[test]
fn settlement_csv_neutralises_formulas_in_titles_and_names_but_not_numbers() {
    let mut m = Mem::new(MarketRules::default());
    let seller = m.register("@SUM(A1:A9)", Mandate::default(), 0);
    let buyer = m.register("-buyer", Mandate::default(), 1_000);
    let mut input = support::new_listing(Side::Sell, "books", 500);
    input.title = "=HYPERLINK(\"http://evil.example\",\"click\")".into();
    let l = m.post(seller, input).unwrap().id;
    m.deal_on(buyer, l, 500);
    let s = m.settlement();
    let deals = s.deals_csv();
    // The formula arrives as text (a leading '), quoted because it holds quotes and a comma.
    assert!(
        deals.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\","),
        "{deals}"
    );
    assert!(deals.contains(",'@SUM(A1:A9),"), "{deals}");
    assert!(deals.contains(",'-buyer,"), "{deals}");
    assert!(!deals.contains(",=") && !deals.contains(",@"), "{deals}");
    // Names in the positions too (a negative amount stays a number: the settlement test above
    // reads `-3000` back).
    let positions = s.positions_csv();
    assert!(positions.contains(",'-buyer,1000,0,"), "{positions}");
}

#[test]
fn spreadsheet_safe_prefixes_formula_text_and_leaves_numbers() {
    use haggle_core::settlement::spreadsheet_safe;
    for (cell, written) in [
        ("=1+1", "'=1+1"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("-3000", "-3000"),
        ("-0.1234", "-0.1234"),
        ("+5", "+5"),
        ("Lamp", "Lamp"),
        ("", ""),
    ] {
        assert_eq!(spreadsheet_safe(cell), written, "{cell:?}");
    }
}
