//! Property: under random deal lifecycles and random provider faults (refusals, no answer, and
//! answers lost after the provider moved the money), the payment records never show money the
//! provider did not move, no intent is captured twice or charged above the price, and once the
//! faults stop an operator's sync (with retries) brings every deal's provider state to its ledger
//! state. The provider is an in-process fake with Stripe's idempotency-key replay: the mapping
//! and the driver are under test here; `payments.rs` runs the real adapter against localstripe.
//! At every step the chain verifies (each payment record is what its `payment_*` events say) and
//! no deal has a capture or a cancellation told twice.

mod support;

use futures_util::future::BoxFuture;
use haggle_core::payment::{IntentStatus, Observed};
use haggle_service::payments::{HoldRequest, PaymentProvider, ProviderError, ProviderResult};
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::*;

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The provider refuses; nothing moves.
    Refuse,
    /// No answer, and nothing moved.
    Silent,
    /// The provider moved the money, and its answer was lost.
    Lost,
    Fine,
}

#[derive(Debug, Clone, Default)]
struct Intent {
    amount: i64,
    capturable: i64,
    captured: i64,
    refunded: i64,
    canceled: bool,
    captures: u32,
}

#[derive(Default)]
struct FakeState {
    intents: Vec<Intent>,
    /// Idempotency key → the first answer (Stripe replays it for the same key).
    replies: HashMap<String, ProviderResult>,
    faults: Vec<Fault>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

fn id(i: usize) -> String {
    format!("pi_{i}")
}

fn look(i: usize, x: &Intent) -> Observed {
    let status = if x.canceled {
        IntentStatus::Canceled
    } else if x.captures > 0 {
        IntentStatus::Succeeded
    } else {
        IntentStatus::RequiresCapture
    };
    Observed {
        intent: id(i),
        status,
        capturable: x.capturable,
        charged: x.captured - x.refunded,
        tagged: None,
    }
}

fn refuse(code: &str) -> ProviderResult {
    Err(ProviderError::Refused {
        code: code.into(),
        message: String::new(),
    })
}

impl Fake {
    /// One keyed call: replays a key's first answer; else applies the next fault around `act`.
    fn call(
        &self,
        key: &str,
        act: impl FnOnce(&mut Vec<Intent>) -> ProviderResult,
    ) -> ProviderResult {
        let mut s = self.0.lock().unwrap();
        if let Some(r) = s.replies.get(key) {
            return r.clone();
        }
        let fault = if s.faults.is_empty() {
            Fault::Fine
        } else {
            s.faults.remove(0)
        };
        let r = match fault {
            Fault::Refuse => refuse("card_declined"),
            Fault::Silent => return Err(ProviderError::Unavailable("timeout".into())),
            Fault::Lost | Fault::Fine => act(&mut s.intents),
        };
        s.replies.insert(key.to_string(), r.clone());
        match fault {
            Fault::Lost => Err(ProviderError::Unavailable("answer lost".into())),
            _ => r,
        }
    }

    fn index(intent: &str) -> usize {
        intent.trim_start_matches("pi_").parse().unwrap()
    }
}

impl PaymentProvider for Fake {
    fn hold<'a>(&'a self, r: &'a HoldRequest) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            self.call(&r.key, |xs| {
                xs.push(Intent {
                    amount: r.amount,
                    capturable: r.amount,
                    ..Intent::default()
                });
                Ok(look(xs.len() - 1, xs.last().unwrap()))
            })
        })
    }
    fn capture<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: i64,
    ) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            self.call(key, |xs| {
                let i = Fake::index(intent);
                let x = &mut xs[i];
                if x.canceled || x.captures > 0 || amount > x.capturable {
                    return refuse("payment_intent_unexpected_state");
                }
                x.captures += 1;
                x.captured = amount;
                x.capturable = 0;
                Ok(look(i, x))
            })
        })
    }
    fn cancel<'a>(&'a self, key: &'a str, intent: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            self.call(key, |xs| {
                let i = Fake::index(intent);
                let x = &mut xs[i];
                if x.canceled || x.captures > 0 {
                    return refuse("payment_intent_unexpected_state");
                }
                x.canceled = true;
                x.capturable = 0;
                Ok(look(i, x))
            })
        })
    }
    fn refund<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: i64,
    ) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            self.call(key, |xs| {
                let i = Fake::index(intent);
                let x = &mut xs[i];
                if x.captures == 0 || amount > x.captured - x.refunded {
                    return refuse("charge_already_refunded");
                }
                x.refunded += amount;
                Ok(look(i, x))
            })
        })
    }
    fn retrieve<'a>(&'a self, intent: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let s = self.0.lock().unwrap();
            let i = Fake::index(intent);
            Ok(look(i, &s.intents[i]))
        })
    }
}

#[derive(Debug, Clone)]
enum Op {
    Agree(i64),
    HandOver(usize),
    Confirm(usize),
    Dispute(usize),
    Refund(usize),
    Split(usize, i64),
    Cancel(usize),
    Sync(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (100i64..5_000).prop_map(Op::Agree),
        (0usize..4).prop_map(Op::HandOver),
        (0usize..4).prop_map(Op::Confirm),
        (0usize..4).prop_map(Op::Dispute),
        (0usize..4).prop_map(Op::Refund),
        ((0usize..4), (1i64..99)).prop_map(|(d, pct)| Op::Split(d, pct)),
        (0usize..4).prop_map(Op::Cancel),
        any::<bool>().prop_map(Op::Sync),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => Just(Fault::Fine),
        1 => Just(Fault::Refuse),
        1 => Just(Fault::Silent),
        1 => Just(Fault::Lost),
    ]
}

async fn run(ops: Vec<Op>, faults: Vec<Fault>) {
    let s = Server::start().await;
    let fake = Fake::default();
    fake.0.lock().unwrap().faults = faults;
    s.svc.set_payment_provider(Arc::new(fake.clone()), None);
    let m = s
        .create_market(json!({"name": "Paid", "rules": {"payments": {"provider": "stripe"}}}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 1_000_000).await;
    let r = s
        .put(
            &format!("/v1/markets/{m}/participants/{}/payment_method", bob.id),
            &bob.principal,
            json!({"customer": "cus_1", "payment_method": "pm_1"}),
        )
        .await;
    assert_status(&r, 200, "attach");
    let mut deals: Vec<(i64, i64)> = Vec::new();
    let path = |d: i64, a: &str| format!("/v1/markets/{m}/deals/{d}/{a}");
    for op in ops {
        // Refusals by the market (a step in the wrong state) are part of the game.
        match op {
            Op::Agree(price) => {
                let l = s.sell(m, &alice, "Thing", price).await;
                let (_, offer) = s.bid(m, &bob, l, price).await;
                let d = s.accept(m, &alice, offer).await["id"].as_i64().unwrap();
                deals.push((d, price));
            }
            Op::Sync(retry) => {
                let r = s
                    .post(
                        &format!("/v1/markets/{m}/payments/sync"),
                        &s.operator,
                        json!({"retry": retry}),
                    )
                    .await;
                assert_status(&r, 200, "sync");
            }
            ref other => {
                let i = match other {
                    Op::HandOver(i)
                    | Op::Confirm(i)
                    | Op::Dispute(i)
                    | Op::Refund(i)
                    | Op::Cancel(i)
                    | Op::Split(i, _) => *i,
                    _ => unreachable!(),
                };
                let Some(&(d, price)) = deals.get(i) else {
                    continue;
                };
                match other {
                    Op::HandOver(_) => {
                        s.post(&path(d, "handover"), &alice.agent, json!({"note": "here"}))
                            .await;
                    }
                    Op::Confirm(_) => {
                        s.post(&path(d, "confirm"), &bob.agent, json!({})).await;
                    }
                    Op::Dispute(_) => {
                        s.post(&path(d, "dispute"), &bob.agent, json!({"reason": "broken"}))
                            .await;
                    }
                    Op::Refund(_) => {
                        s.post(
                            &path(d, "resolve"),
                            &s.operator,
                            json!({"ruling": {"outcome": "refund"}}),
                        )
                        .await;
                    }
                    Op::Split(_, pct) => {
                        let to_buyer = price * pct / 100;
                        s.post(
                            &path(d, "resolve"),
                            &s.operator,
                            json!({"ruling": {"outcome": "split", "to_buyer": to_buyer}}),
                        )
                        .await;
                    }
                    Op::Cancel(_) => {
                        s.post(&path(d, "cancel"), &alice.agent, json!({"reason": "no"}))
                            .await;
                    }
                    _ => unreachable!(),
                }
            }
        }
        check(&s, m, &fake, &deals).await;
    }
    // The faults stop; two syncs with retries settle everything.
    fake.0.lock().unwrap().faults.clear();
    for _ in 0..2 {
        let r = s
            .post(
                &format!("/v1/markets/{m}/payments/sync"),
                &s.operator,
                json!({"retry": true}),
            )
            .await;
        assert_status(&r, 200, "sync");
    }
    check(&s, m, &fake, &deals).await;
    // No hold is left on the buyer's card that no deal knows of.
    let known: Vec<String> = {
        let mut v = Vec::new();
        for &(d, _) in &deals {
            if let Some(i) = s
                .svc
                .store()
                .payment(m, d)
                .await
                .unwrap()
                .and_then(|p| p.intent)
            {
                v.push(i);
            }
        }
        v
    };
    for (i, x) in fake.0.lock().unwrap().intents.iter().enumerate() {
        assert!(
            known.contains(&id(i)) || (x.capturable == 0 && x.captured == x.refunded),
            "a stray intent {i}: {x:?}"
        );
    }
    let rec = s
        .get_ok(&format!("/v1/markets/{m}/payments/reconcile"), &s.operator)
        .await;
    assert_eq!(rec["differences"], json!([]), "{rec}");
}

/// The invariants that hold at every moment, faults or not.
async fn check(s: &Server, m: i64, fake: &Fake, deals: &[(i64, i64)]) {
    let st = fake.0.lock().unwrap().intents.clone();
    for x in &st {
        assert!(x.captures <= 1, "an intent captured twice: {x:?}");
        assert!(x.captured <= x.amount && x.refunded <= x.captured, "{x:?}");
    }
    for &(d, _) in deals {
        let Some(p) = s.svc.store().payment(m, d).await.unwrap() else {
            continue;
        };
        let Some(intent) = &p.intent else {
            assert_eq!(
                (p.held, p.charged),
                (0, 0),
                "money recorded without an intent: {p:?}"
            );
            continue;
        };
        let x = &st[Fake::index(intent)];
        if p.pending.is_none() {
            // Settled records mirror the provider exactly.
            assert_eq!(p.held, x.capturable, "deal {d}: {p:?} vs {x:?}");
            assert_eq!(
                p.charged,
                x.captured - x.refunded,
                "deal {d}: {p:?} vs {x:?}"
            );
        } else {
            // A step in flight: the record shows at most what the provider moved.
            assert!(
                p.charged <= x.captured - x.refunded || x.refunded > 0,
                "deal {d}: {p:?} vs {x:?}"
            );
        }
    }
    // The chain verifies, and every payment record is what its deal's `payment_*` events say.
    let v = s
        .get_ok(&format!("/v1/markets/{m}/ledger/verify"), &s.operator)
        .await;
    assert_eq!(v["breaches"], json!([]), "{v}");
    // A capture or a cancellation happens once per intent, so its event appears once at most,
    // whatever was retried, lost or looked up again.
    let events = s.events(m, &s.operator).await;
    for &(d, _) in deals {
        for kind in ["payment_captured", "payment_voided"] {
            let n = events
                .iter()
                .filter(|e| e["kind"] == kind && e["payload"]["deal_id"] == d)
                .count();
            assert!(n <= 1, "deal {d}: {n} {kind} events");
        }
    }
    // Each deal has at most one intent.
    let holds = st.len();
    assert!(
        holds <= deals.len(),
        "{holds} intents for {} deals",
        deals.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn payments_follow_the_ledger_under_provider_faults(
        ops in proptest::collection::vec(op(), 1..25),
        faults in proptest::collection::vec(fault(), 0..20),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops, faults));
    }
}
