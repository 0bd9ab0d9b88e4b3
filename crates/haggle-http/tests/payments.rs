//! Payments behind the escrow, end to end through the HTTP API against localstripe (a
//! Stripe-compatible server): hold at agreement, capture at completion, partial capture for a
//! split, cancel before capture, refund after a capture made outside Haggle, a declined card, a
//! lost answer after a capture (recovered without a second capture), reconciliation finding an
//! intent changed at the provider, and a webhook; and each of those steps as one `payment_*`
//! event on the market's chain, in order with the deal's events, seen by the parties and
//! operators only. `HAGGLE_TEST_LOCALSTRIPE_URL` names a running
//! localstripe (`.ci/run` starts one); without it the tests start `localstripe` themselves, and
//! without that they say NOT RUN (and fail under `CI`).

mod support;

use haggle_core::payment::PaymentStep;
use haggle_service::payments::Stripe;
use serde_json::{Value, json};
use std::sync::Arc;
use support::*;

const SECRET_KEY: &str = "sk_test_haggle";
const WEBHOOK_SECRET: &str = "whsec_haggle_test";
/// Charges fine.
const GOOD_CARD: &str = "4242424242424242";
/// Attaches, then every charge is declined (`card_declined`), as on Stripe's test mode.
const DECLINED_CARD: &str = "4000000000000341";

/// The localstripe to use: the environment's, or one started for this test binary.
fn localstripe() -> Option<String> {
    haggle_testkit::localstripe("LOCALSTRIPE PAYMENT TEST")
}

/// Direct calls to localstripe, standing for the provider's own pages and dashboard.
struct Provider {
    base: String,
    http: reqwest::Client,
}

impl Provider {
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.join("&").replace('[', "%5B").replace(']', "%5D"))
            .send()
            .await
            .expect("localstripe answers");
        // `/_config` answers with an empty body.
        r.json().await.unwrap_or(Value::Null)
    }

    async fn intent(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/payment_intents/{id}", self.base))
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("JSON")
    }

    /// A customer with a card attached, as the provider's own card page would leave it.
    async fn customer_with_card(&self, number: &str) -> (String, String) {
        let cus = self
            .post("/v1/customers", &[("email", "buyer@example.com")])
            .await;
        let pm = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let (cus, pm) = (
            cus["id"].as_str().expect("customer").to_string(),
            pm["id"].as_str().expect("payment method").to_string(),
        );
        self.post(
            &format!("/v1/payment_methods/{pm}/attach"),
            &[("customer", &cus)],
        )
        .await;
        (cus, pm)
    }
}

struct Fx {
    s: Server,
    p: Provider,
    m: i64,
    alice: Party,
    bob: Party,
}

/// A market with Stripe behind its escrow; Alice sells, Bob buys with `card`.
async fn fx(card: &str) -> Option<Fx> {
    let base = localstripe()?;
    fx_on(Server::start().await, base, card).await
}

async fn fx_on(s: Server, base: String, card: &str) -> Option<Fx> {
    s.svc.set_payment_provider(
        Arc::new(Stripe::new(&base, SECRET_KEY)),
        Some(WEBHOOK_SECRET.into()),
    );
    let m = s
        .create_market(json!({"name": "Paid market", "currency": "EUR",
            "rules": {"payments": {"provider": "stripe"}}}))
        .await;
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    let p = Provider {
        base,
        http: haggle_tls::client(),
    };
    let f = Fx {
        s,
        p,
        m,
        alice,
        bob,
    };
    f.attach(card).await;
    Some(f)
}

impl Fx {
    async fn attach(&self, card: &str) {
        let (cus, pm) = self.p.customer_with_card(card).await;
        let r = self
            .s
            .put(
                &format!(
                    "/v1/markets/{}/participants/{}/payment_method",
                    self.m, self.bob.id
                ),
                &self.bob.principal,
                json!({"customer": cus, "payment_method": pm}),
            )
            .await;
        assert_status(&r, 200, "attach a payment method");
    }

    /// Alice lists at `price`, Bob bids it, Alice accepts; returns the deal id.
    async fn deal(&self, price: i64) -> i64 {
        let l = self.s.sell(self.m, &self.alice, "Lamp", price).await;
        let (_, offer) = self.s.bid(self.m, &self.bob, l, price).await;
        self.s.accept(self.m, &self.alice, offer).await["id"]
            .as_i64()
            .expect("deal id")
    }

    async fn act(&self, who: &str, deal: i64, action: &str, body: Value) {
        let r = self
            .s
            .post(
                &format!("/v1/markets/{}/deals/{deal}/{action}", self.m),
                who,
                body,
            )
            .await;
        assert_status(&r, 200, action);
    }

    async fn payment(&self, deal: i64) -> Value {
        self.s
            .get_ok(
                &format!("/v1/markets/{}/deals/{deal}", self.m),
                &self.bob.agent,
            )
            .await["payment"]
            .clone()
    }

    /// The intent of the deal, from the stored record (the API shows no provider ids).
    async fn intent_id(&self, deal: i64) -> String {
        self.s
            .svc
            .store()
            .payment(self.m, deal)
            .await
            .expect("read")
            .and_then(|p| p.intent)
            .expect("an intent")
    }

    async fn reconcile(&self) -> Value {
        self.s
            .get_ok(
                &format!("/v1/markets/{}/payments/reconcile", self.m),
                &self.s.operator,
            )
            .await
    }

    /// The kinds of deal `d`'s events (`deal_*` and `payment_*`) in chain order, as `token` reads
    /// the market's log, with each payload.
    async fn deal_events(&self, d: i64, token: &str) -> Vec<(String, Value)> {
        self.s
            .events(self.m, token)
            .await
            .into_iter()
            .filter(|e| {
                let p = &e["payload"];
                p["deal_id"] == d || p["deal"]["id"] == d
            })
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or("").to_string(),
                    e["payload"].clone(),
                )
            })
            .collect()
    }

    /// The `payment_*` events of deal `d`, as an operator reads them.
    async fn payment_events(&self, d: i64) -> Vec<(String, Value)> {
        let mut v = self.deal_events(d, &self.s.operator).await;
        v.retain(|(k, _)| k.starts_with("payment_"));
        v
    }

    /// The ledger verifier's breaches (the chain, and each payment record against its events).
    async fn breaches(&self) -> Value {
        self.s
            .get_ok(
                &format!("/v1/markets/{}/ledger/verify", self.m),
                &self.s.operator,
            )
            .await["breaches"]
            .clone()
    }

    async fn sync(&self, retry: bool) {
        let r = self
            .s
            .post(
                &format!("/v1/markets/{}/payments/sync", self.m),
                &self.s.operator,
                json!({ "retry": retry }),
            )
            .await;
        assert_status(&r, 200, "sync");
    }

    async fn complete(&self, deal: i64) {
        self.act(
            &self.alice.agent,
            deal,
            "handover",
            json!({"note": "At the desk"}),
        )
        .await;
        self.act(&self.bob.agent, deal, "confirm", json!({})).await;
    }

    async fn dispute(&self, deal: i64) {
        self.act(
            &self.alice.agent,
            deal,
            "handover",
            json!({"note": "At the desk"}),
        )
        .await;
        self.act(
            &self.bob.agent,
            deal,
            "dispute",
            json!({"reason": "Broken"}),
        )
        .await;
    }
}

fn kinds(v: &[(String, Value)]) -> Vec<&str> {
    v.iter().map(|(k, _)| k.as_str()).collect()
}

/// The position of the first event of `kind`.
fn at(v: &[(String, Value)], kind: &str) -> usize {
    v.iter()
        .position(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} in {:?}", kinds(v)))
}

/// The charge kept on an intent as localstripe shows it (a partial capture refunds the rest).
fn kept(intent: &Value) -> i64 {
    let c = &intent["latest_charge"];
    if c["captured"] == true {
        c["amount"].as_i64().unwrap() - c["amount_refunded"].as_i64().unwrap()
    } else {
        0
    }
}

#[tokio::test]
async fn an_agreed_deal_holds_the_price_and_completion_captures_it() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(2500).await;
    let p = f.payment(d).await;
    assert_eq!(p["state"], "authorized", "{p}");
    assert_eq!(
        (p["held"].as_i64(), p["charged"].as_i64()),
        (Some(2500), Some(0))
    );
    let intent = f.p.intent(&f.intent_id(d).await).await;
    assert_eq!(intent["status"], "requires_capture");
    assert_eq!(intent["capture_method"], "manual");
    assert_eq!(intent["amount"], 2500);
    assert_eq!(intent["currency"], "eur");
    assert_eq!(f.reconcile().await["differences"], json!([]));

    f.complete(d).await;
    let p = f.payment(d).await;
    assert_eq!(p["state"], "captured", "{p}");
    assert_eq!(
        (p["held"].as_i64(), p["charged"].as_i64()),
        (Some(0), Some(2500))
    );
    let intent = f.p.intent(&f.intent_id(d).await).await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(kept(&intent), 2500);
    assert_eq!(f.reconcile().await["differences"], json!([]));
}

#[tokio::test]
async fn each_payment_step_is_one_event_on_the_chain_in_order_with_the_deals_events() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(2500).await;
    f.complete(d).await;
    // Operators' syncs look at the intent again and find nothing new: no second event.
    f.sync(false).await;
    f.sync(true).await;
    let all = f.deal_events(d, &f.s.operator).await;
    assert!(
        at(&all, "deal_created") < at(&all, "payment_authorized"),
        "{:?}",
        kinds(&all)
    );
    assert!(at(&all, "payment_authorized") < at(&all, "deal_completed"));
    assert!(at(&all, "deal_completed") < at(&all, "payment_captured"));
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_captured"]);
    let captured = &paid[1].1;
    assert_eq!(
        (
            captured["amount"].as_i64(),
            captured["charged"].as_i64(),
            captured["held"].as_i64()
        ),
        (Some(2500), Some(2500), Some(0)),
        "{captured}"
    );
    assert_eq!(captured["via"], "call");
    assert_eq!(captured["intent"], f.intent_id(d).await.as_str());
    assert!(captured.get("partial").is_none(), "{captured}");
    assert_eq!(f.breaches().await, json!([]));
}

#[tokio::test]
async fn payment_events_are_seen_by_the_buyer_the_seller_and_operators_only() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let carol = f.s.participant(f.m, "Carol", 100).await;
    let d = f.deal(800).await;
    for token in [&f.bob.agent, &f.alice.agent, &f.s.operator] {
        let seen = f.deal_events(d, token).await;
        assert_eq!(
            seen.iter()
                .filter(|(k, _)| k == "payment_authorized")
                .count(),
            1,
            "{:?}",
            kinds(&seen)
        );
    }
    let others = f.s.events(f.m, &carol.agent).await;
    assert!(
        !others.iter().any(|e| e["kind"]
            .as_str()
            .is_some_and(|k| k.starts_with("payment_"))),
        "another participant saw a payment event"
    );
}

#[tokio::test]
async fn a_refused_provider_call_is_a_payment_failed_event_with_the_providers_code() {
    let Some(f) = fx(DECLINED_CARD).await else {
        return;
    };
    let d = f.deal(700).await;
    let retry = format!("/v1/markets/{}/deals/{d}/payment/retry", f.m);
    let r = f.s.post(&retry, &f.bob.principal, json!({})).await;
    assert_refusal(&r, 409, "payment_failed");
    f.attach(GOOD_CARD).await;
    let r = f.s.post(&retry, &f.bob.principal, json!({})).await;
    assert_status(&r, 200, "retry");
    let paid = f.payment_events(d).await;
    assert_eq!(
        kinds(&paid),
        ["payment_failed", "payment_failed", "payment_authorized"]
    );
    for (i, (_, p)) in paid[..2].iter().enumerate() {
        assert_eq!(
            (
                p["step"].as_str(),
                p["code"].as_str(),
                p["attempt"].as_u64()
            ),
            (Some("hold"), Some("card_declined"), Some(i as u64)),
            "{p}"
        );
    }
    assert_eq!(f.breaches().await, json!([]));
}

#[tokio::test]
async fn a_capture_whose_answer_was_lost_is_told_once_when_found() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(3100).await;
    // The provider captures, and the process stops before recording it: no event yet, and the
    // chain still agrees with the record (a step in flight is not a change).
    f.s.svc.drop_next_payment_answer(PaymentStep::Capture);
    f.complete(d).await;
    assert_eq!(kinds(&f.payment_events(d).await), ["payment_authorized"]);
    assert_eq!(f.breaches().await, json!([]));
    f.sync(false).await;
    f.sync(true).await;
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_captured"]);
    assert_eq!(paid[1].1["via"], "lookup");
    assert_eq!(paid[1].1["amount"], 3100);
    assert_eq!(f.breaches().await, json!([]));
}

#[tokio::test]
async fn a_restart_after_a_lost_capture_answer_captures_once_and_tells_it_once() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(2000).await;
    f.s.svc.drop_next_payment_answer(PaymentStep::Capture);
    f.complete(d).await;
    let intent = f.intent_id(d).await;
    // The process stops: a new one on the same database knows only what was committed.
    let r = f.s.restarted().await;
    r.svc.set_payment_provider(
        Arc::new(Stripe::new(&f.p.base, SECRET_KEY)),
        Some(WEBHOOK_SECRET.into()),
    );
    for retry in [false, true] {
        let done = r
            .post(
                &format!("/v1/markets/{}/payments/sync", f.m),
                &r.operator,
                json!({ "retry": retry }),
            )
            .await;
        assert_status(&done, 200, "sync after the restart");
        assert_eq!(done.1["differences"], json!([]), "{}", done.1);
    }
    // One capture at the provider (a second would have been refused and shown as failed).
    assert_eq!(kept(&f.p.intent(&intent).await), 2000);
    let paid: Vec<Value> = r
        .events(f.m, &r.operator)
        .await
        .into_iter()
        .filter(|e| e["payload"]["deal_id"] == d)
        .filter(|e| {
            e["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("payment_"))
        })
        .collect();
    let kinds: Vec<&str> = paid.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["payment_authorized", "payment_captured"]);
    assert_eq!(paid[1]["payload"]["via"], "lookup");
    let v = r
        .get_ok(&format!("/v1/markets/{}/ledger/verify", f.m), &r.operator)
        .await;
    assert_eq!(v["breaches"], json!([]), "{v}");
}

#[tokio::test]
async fn on_postgresql_a_hold_is_captured_and_recorded() {
    let Some(base) = localstripe() else { return };
    let Some(s) = Server::postgres().await else {
        return;
    };
    let f = fx_on(s, base, GOOD_CARD).await.expect("fixture");
    let d = f.deal(1700).await;
    assert_eq!(f.payment(d).await["state"], "authorized");
    f.complete(d).await;
    let p = f.payment(d).await;
    assert_eq!(
        (p["state"].as_str(), p["charged"].as_i64()),
        (Some("captured"), Some(1700)),
        "{p}"
    );
    assert_eq!(f.reconcile().await["differences"], json!([]));
    f.sync(false).await;
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_captured"]);
    assert_eq!(f.breaches().await, json!([]));
}

#[tokio::test]
async fn a_split_ruling_captures_the_sellers_share_only() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(4000).await;
    f.dispute(d).await;
    assert_eq!(f.payment(d).await["state"], "authorized");
    let r =
        f.s.post(
            &format!("/v1/markets/{}/deals/{d}/resolve", f.m),
            &f.s.operator,
            json!({"ruling": {"outcome": "split", "to_buyer": 1500}, "note": "shared fault"}),
        )
        .await;
    assert_status(&r, 200, "resolve");
    let p = f.payment(d).await;
    assert_eq!(
        (p["state"].as_str(), p["charged"].as_i64()),
        (Some("captured"), Some(2500))
    );
    assert_eq!(kept(&f.p.intent(&f.intent_id(d).await).await), 2500);
    assert_eq!(f.reconcile().await["differences"], json!([]));
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_captured"]);
    assert_eq!(
        (paid[1].1["amount"].as_i64(), paid[1].1["partial"].as_bool()),
        (Some(2500), Some(true))
    );
}

#[tokio::test]
async fn a_cancellation_before_capture_cancels_the_hold() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(1200).await;
    f.act(
        &f.bob.agent,
        d,
        "cancel",
        json!({"reason": "Changed my mind"}),
    )
    .await;
    f.act(&f.alice.agent, d, "cancel", json!({"reason": "Fine"}))
        .await;
    let p = f.payment(d).await;
    assert_eq!(
        (p["state"].as_str(), p["held"].as_i64()),
        (Some("voided"), Some(0)),
        "{p}"
    );
    assert_eq!(
        f.p.intent(&f.intent_id(d).await).await["status"],
        "canceled"
    );
    assert_eq!(f.reconcile().await["differences"], json!([]));
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_voided"]);
    assert_eq!(paid[1].1["amount"], 1200);
}

#[tokio::test]
async fn a_refund_ruling_before_capture_cancels_the_hold() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(900).await;
    f.dispute(d).await;
    let r =
        f.s.post(
            &format!("/v1/markets/{}/deals/{d}/resolve", f.m),
            &f.s.operator,
            json!({"ruling": {"outcome": "refund"}}),
        )
        .await;
    assert_status(&r, 200, "resolve");
    assert_eq!(f.payment(d).await["state"], "voided");
    assert_eq!(
        f.p.intent(&f.intent_id(d).await).await["status"],
        "canceled"
    );
}

#[tokio::test]
async fn a_refund_ruling_after_a_capture_refunds_it() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(1800).await;
    f.dispute(d).await;
    // Someone captured at the provider's dashboard; the operator's sync takes the provider's word.
    let intent = f.intent_id(d).await;
    f.p.post(&format!("/v1/payment_intents/{intent}/capture"), &[])
        .await;
    let rec = f.reconcile().await;
    assert_eq!(rec["differences"][0]["provider"], "succeeded 1800", "{rec}");
    let r =
        f.s.post(
            &format!("/v1/markets/{}/payments/sync", f.m),
            &f.s.operator,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "sync");
    assert_eq!(f.payment(d).await["state"], "captured");
    let r =
        f.s.post(
            &format!("/v1/markets/{}/deals/{d}/resolve", f.m),
            &f.s.operator,
            json!({"ruling": {"outcome": "refund"}}),
        )
        .await;
    assert_status(&r, 200, "resolve");
    let p = f.payment(d).await;
    assert_eq!(
        (p["state"].as_str(), p["charged"].as_i64()),
        (Some("refunded"), Some(0)),
        "{p}"
    );
    assert_eq!(kept(&f.p.intent(&intent).await), 0);
    assert_eq!(f.reconcile().await["differences"], json!([]));
    // The capture made at the dashboard was found by the sync; the refund was Haggle's call.
    let paid = f.payment_events(d).await;
    assert_eq!(
        kinds(&paid),
        ["payment_authorized", "payment_captured", "payment_refunded"]
    );
    assert_eq!(paid[1].1["via"], "lookup");
    assert_eq!(
        (paid[2].1["amount"].as_i64(), paid[2].1["via"].as_str()),
        (Some(1800), Some("call"))
    );
    assert_eq!(f.breaches().await, json!([]));
}

#[tokio::test]
async fn a_declined_card_marks_the_payment_failed_with_the_providers_code() {
    let Some(f) = fx(DECLINED_CARD).await else {
        return;
    };
    let d = f.deal(700).await;
    let p = f.payment(d).await;
    assert_eq!(p["state"], "failed", "{p}");
    assert_eq!(p["failure_code"], "card_declined");
    assert_eq!(
        (p["held"].as_i64(), p["charged"].as_i64()),
        (Some(0), Some(0))
    );
    let rec = f.reconcile().await;
    assert_eq!(rec["differences"][0]["deal_id"], d, "{rec}");
    // Retrying with the same card is refused again, answered `payment_failed`.
    let retry = format!("/v1/markets/{}/deals/{d}/payment/retry", f.m);
    let r = f.s.post(&retry, &f.bob.principal, json!({})).await;
    assert_refusal(&r, 409, "payment_failed");
    // With a good card attached, the retry holds the price.
    f.attach(GOOD_CARD).await;
    let r = f.s.post(&retry, &f.bob.principal, json!({})).await;
    assert_status(&r, 200, "retry");
    assert_eq!(r.1["state"], "authorized", "{}", r.1);
    assert_eq!(f.reconcile().await["differences"], json!([]));
}

#[tokio::test]
async fn a_lost_answer_after_the_capture_is_recovered_without_a_second_capture() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(3100).await;
    // The provider captures, and the process stops before recording it.
    f.s.svc.drop_next_payment_answer(PaymentStep::Capture);
    f.complete(d).await;
    let stored = f.s.svc.store().payment(f.m, d).await.unwrap().unwrap();
    assert_eq!(stored.pending, Some(PaymentStep::Capture));
    assert_eq!(
        stored.charged, 0,
        "the record never shows money it did not see moved"
    );
    let intent = f.intent_id(d).await;
    assert_eq!(kept(&f.p.intent(&intent).await), 3100);
    assert_eq!(f.reconcile().await["differences"][0]["deal_id"], d);
    // The retry looks at the provider first: no second capture (which localstripe would refuse,
    // leaving the payment failed), and the record catches up.
    let r =
        f.s.post(
            &format!("/v1/markets/{}/payments/sync", f.m),
            &f.s.operator,
            json!({}),
        )
        .await;
    assert_status(&r, 200, "sync");
    assert_eq!(r.1["differences"], json!([]), "{}", r.1);
    let p = f.payment(d).await;
    assert_eq!(
        (p["state"].as_str(), p["charged"].as_i64()),
        (Some("captured"), Some(3100)),
        "{p}"
    );
    assert_eq!(kept(&f.p.intent(&intent).await), 3100);
}

#[tokio::test]
async fn reconciliation_finds_an_intent_changed_at_the_provider() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let kept_deal = f.deal(500).await;
    let changed = f.deal(600).await;
    assert_eq!(f.reconcile().await["differences"], json!([]));
    let intent = f.intent_id(changed).await;
    f.p.post(&format!("/v1/payment_intents/{intent}/cancel"), &[])
        .await;
    let rec = f.reconcile().await;
    let diffs = rec["differences"].as_array().expect("differences");
    assert_eq!(diffs.len(), 1, "{rec}");
    assert_eq!(diffs[0]["deal_id"], changed);
    assert_eq!(diffs[0]["ledger"], "hold 600");
    assert_eq!(diffs[0]["recorded"], "authorized");
    assert_eq!(diffs[0]["provider"], "canceled");
    assert_eq!(rec["compared"], 2);
    assert_ne!(diffs[0]["deal_id"], kept_deal);
}

#[tokio::test]
async fn a_signed_provider_webhook_updates_the_deal_and_a_forged_one_is_refused() {
    let Some(f) = fx(GOOD_CARD).await else { return };
    let d = f.deal(1500).await;
    let intent = f.intent_id(d).await;
    // localstripe signs its events like Stripe (`Stripe-Signature: t=...,v1=...`).
    f.p.post(
        &format!(
            "/_config/webhooks/haggle-{}",
            f.s.base.replace(['.', ':', '/'], "")
        ),
        &[
            ("url", &format!("{}/v1/payments/stripe/webhook", f.s.base)),
            ("secret", WEBHOOK_SECRET),
        ],
    )
    .await;
    f.p.post(&format!("/v1/payment_intents/{intent}/capture"), &[])
        .await;
    let mut state = Value::Null;
    for _ in 0..100 {
        state = f.payment(d).await["state"].clone();
        if state == "captured" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, "captured", "the webhook did not arrive");
    let paid = f.payment_events(d).await;
    assert_eq!(kinds(&paid), ["payment_authorized", "payment_captured"]);
    assert_eq!(paid[1].1["via"], "webhook");
    let forged = f
        .s
        .client
        .post(f.s.url("/v1/payments/stripe/webhook"))
        .header("Stripe-Signature", "t=1,v1=00")
        .body(json!({"data": {"object": {"object": "payment_intent", "id": intent}}}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status().as_u16(), 401);
}

#[tokio::test]
async fn a_market_without_payments_shows_no_payment_and_takes_no_payment_method() {
    let s = Server::start().await;
    let (m, people) = s.market_with(&[("Alice", 0), ("Bob", 5000)]).await;
    let l = s.sell(m, &people[0], "Chair", 800).await;
    let (_, offer) = s.bid(m, &people[1], l, 800).await;
    let d = s.accept(m, &people[0], offer).await["id"].as_i64().unwrap();
    let deal = s
        .get_ok(&format!("/v1/markets/{m}/deals/{d}"), &people[1].agent)
        .await;
    assert!(deal.get("payment").is_none(), "{deal}");
    let r = s
        .put(
            &format!(
                "/v1/markets/{m}/participants/{}/payment_method",
                people[1].id
            ),
            &people[1].principal,
            json!({"customer": "cus_A1", "payment_method": "pm_B2"}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
    // A market asking for payments on a server without a provider is refused.
    let r = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "Paid", "rules": {"payments": {"provider": "stripe"}}}),
        )
        .await;
    assert_refusal(&r, 422, "invalid_request");
}
