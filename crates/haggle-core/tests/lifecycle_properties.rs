//! Property tests of the deal lifecycle: random lifecycles across many deals (handover, receipt,
//! cancel requests, disputes with random splits, approvals, sweeps with clock advances), with the
//! money invariants of the spec checked after every step, and a whole simulated market whose
//! settlement report must reconcile to the ledger.

mod support;

use haggle_core::lifecycle::Ruling;
use haggle_core::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use support::{Mem, Outcome};

const PEOPLE: usize = 6;

/// Who acts on a deal: its buyer, its seller, any participant (often an outsider), or an operator.
#[derive(Debug, Clone, Copy)]
enum Who {
    Buyer,
    Seller,
    Anyone(usize),
    Operator,
}

/// How a dispute is resolved; splits are in thousandths of the price, or just outside it.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Release,
    Refund,
    Split(u16),
    Below(i64),
    Above(i64),
}

impl Verdict {
    fn ruling(self, price: Money) -> Ruling {
        match self {
            Verdict::Release => Ruling::Release,
            Verdict::Refund => Ruling::Refund,
            Verdict::Split(k) => Ruling::Split {
                to_buyer: price * k as i64 / 1000,
            },
            Verdict::Below(n) => Ruling::Split { to_buyer: -n },
            Verdict::Above(n) => Ruling::Split {
                to_buyer: price + n,
            },
        }
    }
}

/// An operation; `deal` picks among open deals when `open`, otherwise among all of them.
#[derive(Debug, Clone)]
enum Op {
    Post {
        who: usize,
        price: Money,
    },
    Buy {
        who: usize,
        listing: usize,
        price: Money,
    },
    HandOver {
        who: Who,
        deal: usize,
        open: bool,
        note: bool,
    },
    Confirm {
        who: Who,
        deal: usize,
        open: bool,
    },
    Cancel {
        who: Who,
        deal: usize,
        open: bool,
    },
    Dispute {
        who: Who,
        deal: usize,
        open: bool,
    },
    Evidence {
        who: Who,
        deal: usize,
        open: bool,
    },
    Resolve {
        who: Who,
        deal: usize,
        open: bool,
        verdict: Verdict,
    },
    Decide {
        who: Who,
        deal: usize,
        open: bool,
        approve: bool,
    },
    Rate {
        who: Who,
        deal: usize,
        score: u8,
    },
    Advance {
        ms: i64,
    },
    Sweep,
    Fund {
        who: usize,
        amount: Money,
    },
    /// The operator moves the closing time this far from now (into the past too), or removes it.
    SetClosing {
        in_ms: Option<i64>,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        5 => Just(Who::Buyer),
        5 => Just(Who::Seller),
        1 => (0..PEOPLE).prop_map(Who::Anyone),
        1 => Just(Who::Operator),
    ]
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        2 => Just(Verdict::Release),
        2 => Just(Verdict::Refund),
        6 => (0..=1000u16).prop_map(Verdict::Split),
        1 => (1..1_000i64).prop_map(Verdict::Below),
        1 => (1..1_000i64).prop_map(Verdict::Above),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..1_000usize;
    let open = prop::bool::weighted(0.85);
    prop_oneof![
        3 => (0..PEOPLE, 1..8_000i64).prop_map(|(who, price)| Op::Post { who, price }),
        6 => (0..PEOPLE, idx.clone(), 1..9_000i64)
            .prop_map(|(who, listing, price)| Op::Buy { who, listing, price }),
        5 => (who(), idx.clone(), open, any::<bool>())
            .prop_map(|(who, deal, open, note)| Op::HandOver { who, deal, open, note }),
        3 => (who(), idx.clone(), open)
            .prop_map(|(who, deal, open)| Op::Confirm { who, deal, open }),
        3 => (who(), idx.clone(), open)
            .prop_map(|(who, deal, open)| Op::Cancel { who, deal, open }),
        3 => (who(), idx.clone(), open)
            .prop_map(|(who, deal, open)| Op::Dispute { who, deal, open }),
        1 => (who(), idx.clone(), open)
            .prop_map(|(who, deal, open)| Op::Evidence { who, deal, open }),
        3 => (prop_oneof![4 => Just(Who::Operator), 1 => who()], idx.clone(), open, verdict())
            .prop_map(|(who, deal, open, verdict)| Op::Resolve { who, deal, open, verdict }),
        2 => (who(), idx.clone(), open, any::<bool>())
            .prop_map(|(who, deal, open, approve)| Op::Decide { who, deal, open, approve }),
        2 => (who(), idx, 0..7u8).prop_map(|(who, deal, score)| Op::Rate { who, deal, score }),
        3 => prop_oneof![0..6 * HOUR_MS, 0..4 * DAY_MS].prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Sweep),
        1 => (0..PEOPLE, 1..10_000i64).prop_map(|(who, amount)| Op::Fund { who, amount }),
        1 => proptest::option::of(-DAY_MS..2 * DAY_MS).prop_map(|in_ms| Op::SetClosing { in_ms }),
    ]
}

fn rules() -> impl Strategy<Value = MarketRules> {
    (
        any::<bool>(),
        HOUR_MS..3 * DAY_MS,
        HOUR_MS..2 * DAY_MS,
        HOUR_MS..7 * DAY_MS,
    )
        .prop_map(
            |(seller_may_cancel, confirm, approval, rating)| MarketRules {
                seller_may_cancel,
                confirmation_window_ms: confirm,
                approval_window_ms: approval,
                rating_window_ms: rating,
                ..MarketRules::default()
            },
        )
}

fn nth<V>(m: &BTreeMap<i64, V>, keep: impl Fn(&V) -> bool, i: usize) -> Option<&V> {
    let n = m.values().filter(|v| keep(v)).count();
    (n > 0).then(|| m.values().filter(|v| keep(v)).nth(i % n).unwrap())
}

fn done<T>(r: Outcome<T>) -> Option<Outcome<()>> {
    Some(r.map(|_| ()))
}

/// The participant `who` names on `d`; `None` for an operator.
fn actor(people: &[ParticipantId], who: Who, d: &Deal) -> Option<ParticipantId> {
    match who {
        Who::Buyer => Some(d.buyer),
        Who::Seller => Some(d.seller),
        Who::Anyone(i) => Some(people[i % people.len()]),
        Who::Operator => None,
    }
}

/// Runs one operation; `None` when it had nothing to act on, else the command's outcome.
fn step(m: &mut Mem, people: &[ParticipantId], op: &Op) -> Option<Outcome<()>> {
    let pick = |m: &Mem, deal: usize, open: bool| {
        nth(&m.deals, |d| !open || d.status.hold_is_open(), deal).cloned()
    };
    match *op {
        Op::Post { who, price } => done(m.post(
            people[who],
            support::new_listing(Side::Sell, "books", price),
        )),
        Op::Buy {
            who,
            listing,
            price,
        } => {
            let l = nth(&m.listings, |l| l.status == ListingStatus::Active, listing)?.clone();
            let bid = m.open_with_offer(people[who], l.id, price);
            let Ok(o) = bid else { return done(bid) };
            done(m.accept(l.owner, o.id))
        }
        Op::HandOver {
            who,
            deal,
            open,
            note,
        } => {
            let d = pick(m, deal, open)?;
            let a = actor(people, who, &d)?;
            done(m.hand_over(a, d.id, note.then_some("shipped, tracking 42")))
        }
        Op::Confirm { who, deal, open } => {
            let d = pick(m, deal, open)?;
            done(m.confirm(actor(people, who, &d)?, d.id))
        }
        Op::Cancel { who, deal, open } => {
            let d = pick(m, deal, open)?;
            done(m.cancel(actor(people, who, &d)?, d.id, Some("changed my mind")))
        }
        Op::Dispute { who, deal, open } => {
            let d = pick(m, deal, open)?;
            done(m.dispute(actor(people, who, &d)?, d.id, "not as described"))
        }
        Op::Evidence { who, deal, open } => {
            let d = pick(m, deal, open)?;
            done(m.evidence(actor(people, who, &d), d.id, "a photo"))
        }
        Op::Resolve {
            who,
            deal,
            open,
            verdict,
        } => {
            let d = pick(m, deal, open)?;
            done(m.resolve(
                actor(people, who, &d),
                d.id,
                verdict.ruling(d.price),
                "ruled",
            ))
        }
        Op::Decide {
            who,
            deal,
            open,
            approve,
        } => {
            let d = pick(m, deal, open)?;
            done(m.decide(actor(people, who, &d)?, d.id, approve))
        }
        Op::Rate { who, deal, score } => {
            let d = pick(m, deal, false)?;
            done(m.rate(actor(people, who, &d)?, d.id, score, ""))
        }
        Op::Advance { ms } => {
            m.advance(ms);
            None
        }
        Op::Sweep => {
            m.sweep();
            let due = m.due();
            assert!(
                due.deals_to_complete.is_empty() && due.approvals_expired.is_empty(),
                "{due:?}"
            );
            // After a close the sweep leaves nothing open: no listing, thread or live offer.
            assert!(
                due.listings.is_empty() && due.threads.is_empty() && due.offers.is_empty(),
                "{due:?}"
            );
            assert_eq!(m.sweep(), 0, "a second sweep changed something");
            None
        }
        Op::Fund { who, amount } => done(m.fund(people[who], amount)),
        Op::SetClosing { in_ms } => {
            let at = in_ms.map(|d| m.now() + d);
            done(m.set_closing_time(at))
        }
    }
}

/// What left escrow for a deal: (back to the buyer, out to the seller), from the transfers alone.
fn paid_out(m: &Mem, d: &Deal) -> (Money, Money) {
    let mut out = (0, 0);
    for t in m.transfers.iter().filter(|t| t.deal_id == Some(d.id)) {
        match (t.kind, t.debit, t.credit) {
            (TransferKind::Hold, Account::Available(b), Account::Escrow) => {
                assert_eq!(b, d.buyer, "deal {} held from its buyer", d.id)
            }
            (TransferKind::Refund, Account::Escrow, Account::Available(b)) => {
                assert_eq!(b, d.buyer, "deal {} refunded to its buyer", d.id);
                out.0 += t.amount;
            }
            (TransferKind::Release, Account::Escrow, Account::Available(s)) => {
                assert_eq!(s, d.seller, "deal {} released to its seller", d.id);
                out.1 += t.amount;
            }
            _ => panic!("unexpected transfer {t:?} for deal {}", d.id),
        }
    }
    out
}

/// Every invariant, the event chain included.
fn check(m: &Mem) {
    assert_eq!(m.chain_breaks(), Vec::<String>::new(), "event chain break");
    money(m);
}

/// Every money invariant of the spec, and the lifecycle's own.
fn money(m: &Mem) {
    assert_eq!(m.ledger_breaches(), vec![], "ledger breach");
    let (escrow, open) = m.escrow_and_open_holds();
    assert_eq!(escrow, open, "escrow equals the open holds");
    // Money is neither created nor lost: what was funded is in cash or in escrow.
    let cash: Money = m
        .participants
        .keys()
        .map(|p| m.balance(Account::Available(*p)))
        .sum();
    assert_eq!(cash + escrow, -m.balance(Account::Funding));
    for d in m.deals.values() {
        let (to_buyer, to_seller) = paid_out(m, d);
        if d.status.hold_is_open() {
            assert_eq!((to_buyer, to_seller), (0, 0), "open deal {} paid out", d.id);
            assert!(d.resolution.is_none() && d.finished_at.is_none());
        } else {
            let r = d
                .resolution
                .as_ref()
                .expect("a closed deal has a resolution");
            assert_eq!(r.to_buyer + r.to_seller, d.price, "deal {} split", d.id);
            assert!(r.to_buyer >= 0 && r.to_seller >= 0);
            assert_eq!(
                (to_buyer, to_seller),
                (r.to_buyer, r.to_seller),
                "deal {}",
                d.id
            );
            assert!(d.finished_at.is_some());
            match d.status {
                DealStatus::Completed => assert_eq!(r.to_buyer, 0),
                DealStatus::Refunded | DealStatus::Cancelled | DealStatus::Declined => {
                    assert_eq!(r.to_seller, 0)
                }
                DealStatus::PartiallyRefunded => {
                    assert!(r.to_buyer > 0 && r.to_seller > 0, "deal {}: {r:?}", d.id)
                }
                s => unreachable!("{s} holds"),
            }
        }
        match d.status {
            DealStatus::HandedOver | DealStatus::Disputed => {
                let at = d.handed_over_at.expect("handed over");
                assert_eq!(
                    d.confirm_deadline,
                    Some(at + m.market.rules.confirmation_window_ms)
                );
            }
            DealStatus::AwaitingApproval => assert!(d.approval_deadline.is_some()),
            _ => {}
        }
        let ratings = m.ratings_on(d.id);
        assert!(ratings.len() <= 2);
        if !ratings.is_empty() {
            assert!(d.is_finished(), "deal {} is {} but rated", d.id, d.status);
        }
        for r in &ratings {
            assert!(d.is_party(r.rater) && d.is_party(r.ratee) && r.rater != r.ratee);
            assert!((1..=5).contains(&r.score));
        }
        if ratings.len() == 2 {
            assert_ne!(ratings[0].rater, ratings[1].rater);
        }
    }
    for l in m.listings.values() {
        let deals: Vec<&Deal> = m.deals.values().filter(|d| d.listing_id == l.id).collect();
        let standing = deals
            .iter()
            .filter(|d| !matches!(d.status, DealStatus::Cancelled | DealStatus::Declined))
            .count();
        assert!(standing <= 1, "listing {} sold {standing} times", l.id);
        if standing == 1 {
            assert_eq!(l.status, ListingStatus::Sold, "listing {}", l.id);
        } else if !deals.is_empty() {
            // Undone deals relist; a closed market expires the listing instead (now or at the
            // sweep), and reopening does not revive it.
            assert!(
                matches!(l.status, ListingStatus::Active | ListingStatus::Expired),
                "listing {} relisted, not {}",
                l.id,
                l.status
            );
        }
    }
    settles(m);
}

/// The settlement report reconciles to the ledger.
fn settles(m: &Mem) {
    let s = m.settlement();
    assert_eq!(s.reconcile(), Vec::<String>::new(), "settlement reconciles");
    assert_eq!(s.positions.iter().map(|p| p.net).sum::<Money>(), 0);
    for p in &s.positions {
        assert_eq!(p.cash, m.balance(Account::Available(p.participant_id)));
        let held: Money = m
            .deals
            .values()
            .filter(|d| d.buyer == p.participant_id && d.status.hold_is_open())
            .map(|d| d.price)
            .sum();
        assert_eq!(p.held_in_escrow, held);
    }
    assert_eq!(s.deals.len(), m.deals.len());
    for row in &s.deals {
        let d = &m.deals[&row.deal_id];
        assert_eq!(row.status, d.status);
        let (to_buyer, to_seller) = d
            .resolution
            .as_ref()
            .map_or((0, 0), |r| (r.to_buyer, r.to_seller));
        assert_eq!(
            (row.refunded_to_buyer, row.paid_to_seller),
            (to_buyer, to_seller)
        );
        assert_eq!(row.goods_change_hands, to_seller > 0);
    }
}

fn mandate() -> impl Strategy<Value = Mandate> {
    proptest::option::weighted(0.4, 0..6_000i64).prop_map(|approval_above| Mandate {
        approval_above,
        ..Mandate::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn money_invariants_hold_across_random_lifecycles(
        rules in rules(),
        people in prop::collection::vec((mandate(), 0..30_000i64), PEOPLE),
        arbiter in proptest::option::of(0..PEOPLE),
        ops in prop::collection::vec(op(), 1..250),
    ) {
        let mut m = Mem::new(rules);
        let ids: Vec<ParticipantId> = people
            .into_iter()
            .enumerate()
            .map(|(i, (mandate, budget))| m.register(&format!("p{i}"), mandate, budget))
            .collect();
        m.market.rules.arbiter = arbiter.map(|i| ids[i]);
        check(&m);
        for op in &ops {
            let before = m.clone();
            if let Some(Err(e)) = step(&mut m, &ids, op) {
                prop_assert!(m == before, "refused {op:?} ({e}) but changed the market");
            }
            check(&m);
        }
    }
}

// ----- a whole simulated market through to the end -------------------------------------------

/// What becomes of one deal.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Confirmed,
    /// Handed over, then the confirmation window passes.
    AutoCompleted,
    CancelledBySeller,
    CancelledByBoth,
    Resolved(Verdict),
    Approved,
    Declined,
    ApprovalTimedOut,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        4 => Just(Fate::Confirmed),
        2 => Just(Fate::AutoCompleted),
        1 => Just(Fate::CancelledBySeller),
        1 => Just(Fate::CancelledByBoth),
        4 => verdict().prop_filter("a valid verdict", |v| matches!(v, Verdict::Release | Verdict::Refund | Verdict::Split(_)))
            .prop_map(Fate::Resolved),
        1 => Just(Fate::Approved),
        1 => Just(Fate::Declined),
        1 => Just(Fate::ApprovalTimedOut),
    ]
}

/// The steps of a fate after the deal exists, run one at a time interleaved with other deals'.
#[derive(Debug, Clone, Copy)]
enum Act {
    HandOver,
    Confirm,
    SellerCancels,
    BuyerCancels,
    Dispute,
    BuyerEvidence,
    SellerEvidence,
    Resolve(Verdict),
    Approve,
    Decline,
    RateBoth(u8, u8),
}

fn acts(f: Fate, scores: (u8, u8)) -> Vec<Act> {
    use Act::*;
    let rate = RateBoth(scores.0, scores.1);
    match f {
        Fate::Confirmed => vec![HandOver, Confirm, rate],
        Fate::AutoCompleted => vec![HandOver],
        Fate::CancelledBySeller => vec![SellerCancels],
        Fate::CancelledByBoth => vec![BuyerCancels, SellerCancels],
        Fate::Resolved(v) => vec![
            HandOver,
            Dispute,
            BuyerEvidence,
            SellerEvidence,
            Resolve(v),
            rate,
        ],
        Fate::Approved => vec![Approve, HandOver, Confirm],
        Fate::Declined => vec![Decline],
        Fate::ApprovalTimedOut => vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// "The settlement report of a whole simulated market reconciles to the ledger": many random
    /// deals between many participants run through to completion, refund or split, and the report
    /// then reconciles, its net positions sum to zero, and each participant's cash is its ledger
    /// balance.
    #[test]
    fn a_whole_simulated_market_settles_to_the_ledger(
        seller_may_cancel in any::<bool>(),
        budgets in prop::collection::vec(0..400_000i64, 8),
        deals in prop::collection::vec(
            (0..8usize, 0..8usize, 1..50_000i64, fate(), (1..=5u8, 1..=5u8)),
            10..60,
        ),
        schedule in prop::collection::vec((0..1_000usize, 0..3 * HOUR_MS), 0..400),
    ) {
        let mut m = Mem::new(MarketRules { seller_may_cancel, ..MarketRules::default() });
        let people: Vec<ParticipantId> = budgets
            .iter()
            .enumerate()
            .map(|(i, b)| m.register(&format!("trader {i}"), Mandate::default(), *b))
            .collect();
        // Open every deal (those whose buyer cannot afford it are refused and skipped).
        let mut plans: Vec<(DealId, Vec<Act>)> = Vec::new();
        for (s, b, price, fate, scores) in deals {
            let (seller, buyer) = (people[s], people[if b == s { (b + 1) % 8 } else { b }]);
            let needs_approval = matches!(fate, Fate::Approved | Fate::Declined | Fate::ApprovalTimedOut);
            m.set_mandate(buyer, Mandate {
                approval_above: needs_approval.then_some(price - 1),
                ..Mandate::default()
            }).unwrap();
            let l = m.list(seller, Side::Sell, "tools", price);
            let Ok(o) = m.open_with_offer(buyer, l, price) else { continue };
            let d = m.accept(seller, o.id).expect("a funded bid is accepted");
            assert_eq!(d.status == DealStatus::AwaitingApproval, needs_approval);
            plans.push((d.id, acts(fate, scores)));
            money(&m);
        }
        // Run the deals' steps interleaved, with the clock moving (refusals change nothing).
        let mut next = vec![0usize; plans.len()];
        let mut run = |m: &mut Mem, i: usize| -> bool {
            let (deal, acts) = &plans[i];
            let Some(act) = acts.get(next[i]).copied() else { return false };
            next[i] += 1;
            let d = m.deals[deal].clone();
            let before = m.clone();
            let r = match act {
                Act::HandOver => m.hand_over(d.seller, d.id, Some("sent")).map(|_| ()),
                Act::Confirm => m.confirm(d.buyer, d.id),
                Act::SellerCancels => m.cancel(d.seller, d.id, None).map(|_| ()),
                Act::BuyerCancels => m.cancel(d.buyer, d.id, None).map(|_| ()),
                Act::Dispute => m.dispute(d.buyer, d.id, "broken"),
                Act::BuyerEvidence => m.evidence(Some(d.buyer), d.id, "photo").map(|_| ()),
                Act::SellerEvidence => m.evidence(Some(d.seller), d.id, "receipt").map(|_| ()),
                Act::Resolve(v) => m.resolve(None, d.id, v.ruling(d.price), "split it"),
                Act::Approve => m.decide(d.buyer, d.id, true),
                Act::Decline => m.decide(d.buyer, d.id, false),
                Act::RateBoth(a, b) => m
                    .rate(d.buyer, d.id, a, "")
                    .and_then(|_| m.rate(d.seller, d.id, b, ""))
                    .map(|_| ()),
            };
            if r.is_err() {
                // A step the clock overtook (its window closed first) is refused and changes nothing.
                assert!(*m == before || matches!(act, Act::RateBoth(..)));
            }
            true
        };
        if !plans.is_empty() {
            for (i, ms) in &schedule {
                run(&mut m, i % plans.len());
                m.advance(*ms);
                if ms % 7 == 0 {
                    m.sweep();
                }
                money(&m);
            }
            // Then every deal finishes its steps in order.
            for i in 0..plans.len() {
                while run(&mut m, i) {
                    money(&m);
                }
            }
        }
        // The windows pass; whatever is still open (a step the clock refused) is closed by the sweep
        // or by the operator.
        m.advance(30 * DAY_MS);
        m.sweep();
        for d in m.deals.values().filter(|d| d.status.hold_is_open()).cloned().collect::<Vec<_>>() {
            match d.status {
                DealStatus::Agreed => {
                    // Both ask (one of them may have asked already).
                    for who in [d.buyer, d.seller] {
                        if m.deals[&d.id].status == DealStatus::Agreed {
                            m.cancel(who, d.id, None).ok();
                        }
                    }
                    assert_eq!(m.deals[&d.id].status, DealStatus::Cancelled);
                }
                DealStatus::Disputed => m.resolve(None, d.id, Ruling::Refund, "").unwrap(),
                s => panic!("deal {} still {s} after the sweep", d.id),
            }
        }
        check(&m);
        prop_assert_eq!(m.balance(Account::Escrow), 0);
        let s = m.settlement();
        prop_assert!(s.reconcile().is_empty(), "{:?}", s.reconcile());
        prop_assert_eq!(s.positions.iter().map(|p| p.net).sum::<Money>(), 0);
        let mut received = 0;
        for p in &s.positions {
            let ledger = m.balance(Account::Available(p.participant_id));
            prop_assert_eq!(p.cash, ledger);
            // With no hold left open, cash is exactly budget plus net position.
            prop_assert_eq!(p.held_in_escrow, 0);
            prop_assert_eq!(p.cash, p.funded + p.net);
            received += p.received;
        }
        prop_assert_eq!(received, s.deals.iter().map(|d| d.paid_to_seller).sum::<Money>());
        prop_assert_eq!(
            s.deals.iter().map(|d| d.paid_to_seller + d.refunded_to_buyer).sum::<Money>(),
            m.deals.values().map(|d| d.price).sum::<Money>()
        );
    }
}
