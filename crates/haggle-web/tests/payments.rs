//! Payments on the web: the principal attaches its payment method on its own page (which says
//! the card is entered at the provider), and the operator's Payments page shows the deals whose
//! provider state differs from the ledger. The provider is an in-process stand-in here; the
//! Stripe adapter is tested against localstripe in haggle-http's `payments.rs`.

mod support;

use futures_util::future::BoxFuture;
use haggle_core::payment::{IntentStatus, Observed};
use haggle_service::payments::{HoldRequest, PaymentProvider, ProviderResult};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::*;

/// Holds whatever is asked; an intent can be cancelled "at the provider" by the test.
#[derive(Clone, Default)]
struct Holds(Arc<Mutex<HashMap<String, Observed>>>);

impl Holds {
    fn answer(&self, intent: &str) -> ProviderResult {
        Ok(self.0.lock().unwrap()[intent].clone())
    }
}

impl PaymentProvider for Holds {
    fn hold<'a>(&'a self, r: &'a HoldRequest) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let id = format!("pi_{}", r.deal);
            let o = Observed {
                intent: id.clone(),
                status: IntentStatus::RequiresCapture,
                capturable: r.amount,
                charged: 0,
                tagged: Some((r.market, r.deal)),
            };
            self.0.lock().unwrap().insert(id, o.clone());
            Ok(o)
        })
    }
    fn capture<'a>(&'a self, _: &'a str, i: &'a str, _: i64) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move { self.answer(i) })
    }
    fn cancel<'a>(&'a self, _: &'a str, i: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move { self.answer(i) })
    }
    fn refund<'a>(&'a self, _: &'a str, i: &'a str, _: i64) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move { self.answer(i) })
    }
    fn retrieve<'a>(&'a self, i: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move { self.answer(i) })
    }
}

async fn paid_market(s: &Server) -> (i64, Party, Party) {
    let m = s
        .post(
            "/v1/markets",
            &s.operator,
            json!({"name": "Paid market", "rules": {"payments": {"provider": "stripe"}}}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let alice = s.participant(m, "Alice", 0).await;
    let bob = s.participant(m, "Bob", 10_000).await;
    (m, alice, bob)
}

#[tokio::test]
async fn a_principal_attaches_its_payment_method_on_its_page() {
    let s = Server::start().await;
    s.svc.set_payment_provider(Arc::new(Holds::default()), None);
    let (m, _, bob) = paid_market(&s).await;
    let path = format!("/m/{m}/p/{}", bob.id);
    let page = s.page(&path, Some(&bob.principal)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("never sees card numbers"),
        "{}",
        page.body
    );
    assert!(page.body.contains("No payment method attached yet"));
    let csrf = page.hidden("csrf");
    let r = s
        .form(
            &format!("{path}/payment_method"),
            &bob.principal,
            &[
                ("csrf", &csrf),
                ("customer", "cus_Bob1"),
                ("payment_method", "pm_Card1"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = s.page(&path, Some(&bob.principal)).await;
    assert!(page.body.contains("cus_Bob1 / pm_Card1"), "{}", page.body);
}

#[tokio::test]
async fn the_operators_payments_page_lists_a_deal_changed_at_the_provider() {
    let s = Server::start().await;
    let holds = Holds::default();
    s.svc.set_payment_provider(Arc::new(holds.clone()), None);
    let (m, alice, bob) = paid_market(&s).await;
    s.put(
        &format!("/v1/markets/{m}/participants/{}/payment_method", bob.id),
        &bob.principal,
        json!({"customer": "cus_Bob1", "payment_method": "pm_Card1"}),
    )
    .await;
    let l = s.sell(m, &alice, "Lamp", 2_000).await;
    let offer = s.bid(m, &bob, l, 2_000).await;
    let d = s.accept(m, &alice, offer).await["id"].as_i64().unwrap();
    let page = s
        .page(&format!("/m/{m}/operate/payments"), Some(&s.operator))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("All 1 deal(s) agree"), "{}", page.body);
    holds
        .0
        .lock()
        .unwrap()
        .get_mut(&format!("pi_{d}"))
        .unwrap()
        .status = IntentStatus::Canceled;
    let page = s
        .page(&format!("/m/{m}/operate/payments"), Some(&s.operator))
        .await;
    assert!(
        page.body.contains(&format!("payment-diff-{d}")),
        "{}",
        page.body
    );
    assert!(page.body.contains("canceled"), "{}", page.body);
    let operate = s.page(&format!("/m/{m}/operate"), Some(&s.operator)).await;
    assert!(operate.body.contains("payments-link"));
}
