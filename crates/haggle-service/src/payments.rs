//! Payments behind the escrow (issue 23; spec, trust.md: Payments): the provider adapter
//! (`PaymentProvider`, and Stripe's API over HTTP) and the driver that moves each deal's payment
//! to what its ledger state asks (`haggle_core::payment`), recording every step before the call.
//!
//! Order of a step: record it as pending → call the provider with the step's idempotency key →
//! record the provider's answer. A process that stops in between finds the step pending and asks
//! the provider for the intent before acting again, so a retry never captures twice even against
//! a provider that ignores idempotency keys (localstripe does). Nothing here touches the market's
//! ledger: the payment record holds only what the provider confirmed, and each write of it is a
//! market command (`RecordPayment`) that puts each change on the chain as a `payment_*` event.

use crate::{ApiError, ApiResult, Caller, Service};
use futures_util::future::BoxFuture;
pub use haggle_api::{AttachPaymentMethod, PaymentDifference, Reconciliation};
use haggle_core::ErrorCode;
use haggle_core::model::{Deal, Market, Money};
use haggle_core::payment::{
    Failure, IntentStatus, Observed, Payment, PaymentStep, PaymentVia, PaymentView, Target, target,
};
use haggle_store::payments::PaymentMethod;
use haggle_store::{Command, Ran};
use std::sync::Arc;

/// Why a provider call did not confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider answered no (card declined, authorisation expired, a bad request): the
    /// provider's code and message. Nothing moved.
    Refused { code: String, message: String },
    /// No answer (network, timeout, 5xx, 429): whether it moved money is unknown until asked.
    Unavailable(String),
}

/// What a hold needs: who pays, how much, and the ids the provider tags the intent with.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub key: String,
    pub amount: Money,
    /// ISO 4217, as the market states it.
    pub currency: String,
    pub method: PaymentMethod,
    pub market: i64,
    pub deal: i64,
}

pub type ProviderResult = Result<Observed, ProviderError>;

/// A payment provider: each call moves money (or asks), carries its idempotency key, and answers
/// with the intent as the provider now holds it.
pub trait PaymentProvider: Send + Sync {
    /// Authorises `amount` on the buyer's payment method, to capture later (the hold).
    fn hold<'a>(&'a self, r: &'a HoldRequest) -> BoxFuture<'a, ProviderResult>;
    /// Captures `amount` (all or part) of the hold; the rest is released.
    fn capture<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, ProviderResult>;
    /// Cancels the hold.
    fn cancel<'a>(&'a self, key: &'a str, intent: &'a str) -> BoxFuture<'a, ProviderResult>;
    /// Refunds `amount` of what was captured.
    fn refund<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, ProviderResult>;
    /// The intent as the provider holds it now.
    fn retrieve<'a>(&'a self, intent: &'a str) -> BoxFuture<'a, ProviderResult>;
}

/// Stripe's API (or a Stripe-compatible server such as localstripe) over HTTP. The secret key is
/// read from the environment and kept only in memory; `Debug` never shows it.
pub struct Stripe {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("base", &self.base)
            .field("key", &"(redacted)")
            .finish()
    }
}

/// The environment variable holding Stripe's secret key.
pub const STRIPE_KEY_ENV: &str = "HAGGLE_STRIPE_SECRET_KEY";
/// The environment variable naming Stripe's base URL (default `https://api.stripe.com`).
pub const STRIPE_BASE_ENV: &str = "HAGGLE_STRIPE_BASE_URL";
/// The environment variable holding the webhook endpoint's signing secret (`whsec_...`).
pub const STRIPE_WEBHOOK_SECRET_ENV: &str = "HAGGLE_STRIPE_WEBHOOK_SECRET";

impl Stripe {
    pub fn new(base: &str, key: &str) -> Stripe {
        Stripe {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: haggle_tls::client_builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .expect("an HTTP client with default settings"),
        }
    }

    /// From `HAGGLE_STRIPE_SECRET_KEY` and `HAGGLE_STRIPE_BASE_URL`; `None` without a key.
    pub fn from_env() -> Option<Stripe> {
        let key = std::env::var(STRIPE_KEY_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())?;
        let base = std::env::var(STRIPE_BASE_ENV)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "https://api.stripe.com".into());
        Some(Stripe::new(&base, key.trim()))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        form: &[(&str, String)],
    ) -> ProviderResult {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.key);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if method == reqwest::Method::POST {
            req = req
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form_body(form));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("cannot reach the provider: {e}")))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.map_err(|e| {
            ProviderError::Unavailable(format!("the provider's answer is not JSON: {e}"))
        })?;
        if (200..300).contains(&status) {
            return observed(&body);
        }
        let err = &body["error"];
        let code = err["code"]
            .as_str()
            .or(err["decline_code"].as_str())
            .or(err["type"].as_str())
            .unwrap_or("provider_error")
            .to_string();
        let message = err["message"].as_str().unwrap_or("").to_string();
        // Rate limits, in-flight idempotency conflicts and server faults say nothing final.
        if status == 429 || status == 409 || status >= 500 {
            return Err(ProviderError::Unavailable(format!(
                "the provider answered {status}: {code}"
            )));
        }
        Err(ProviderError::Refused { code, message })
    }
}

/// `application/x-www-form-urlencoded`, percent-encoding everything but unreserved characters.
fn form_body(form: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A PaymentIntent (with `latest_charge` expanded) reduced to what escrow compares. Stripe gives
/// `amount_capturable` and the charge's `amount_captured`; localstripe only the charge's `amount`,
/// `captured` and `amount_refunded` (a partial capture there refunds the rest), so both are read.
pub fn observed(v: &serde_json::Value) -> ProviderResult {
    let Some(id) = v["id"].as_str() else {
        return Err(ProviderError::Unavailable(
            "the provider's answer names no PaymentIntent".into(),
        ));
    };
    let status = match v["status"].as_str() {
        Some("requires_capture") => IntentStatus::RequiresCapture,
        Some("succeeded") => IntentStatus::Succeeded,
        Some("canceled") => IntentStatus::Canceled,
        _ => IntentStatus::Other,
    };
    let amount = v["amount"].as_i64().unwrap_or(0);
    let charge = &v["latest_charge"];
    let capturable = match status {
        IntentStatus::RequiresCapture => v["amount_capturable"].as_i64().unwrap_or(amount),
        _ => 0,
    };
    let charged = match status {
        IntentStatus::Succeeded => {
            let captured = charge["amount_captured"]
                .as_i64()
                .or_else(|| (charge["captured"] == true).then(|| charge["amount"].as_i64())?)
                .or(v["amount_received"].as_i64())
                .unwrap_or(0);
            captured - charge["amount_refunded"].as_i64().unwrap_or(0)
        }
        _ => 0,
    };
    let meta = |k: &str| {
        let v = &v["metadata"][k];
        v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64())
    };
    Ok(Observed {
        intent: id.to_string(),
        status,
        capturable,
        charged,
        tagged: meta("haggle_market").zip(meta("haggle_deal")),
    })
}

const EXPAND: (&str, &str) = ("expand[]", "latest_charge");

impl PaymentProvider for Stripe {
    fn hold<'a>(&'a self, r: &'a HoldRequest) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let form = [
                ("amount", r.amount.to_string()),
                ("currency", r.currency.to_lowercase()),
                ("customer", r.method.customer.clone()),
                ("payment_method", r.method.payment_method.clone()),
                ("capture_method", "manual".into()),
                ("confirm", "true".into()),
                ("off_session", "true".into()),
                ("metadata[haggle_market]", r.market.to_string()),
                ("metadata[haggle_deal]", r.deal.to_string()),
                (EXPAND.0, EXPAND.1.into()),
            ];
            self.send(
                reqwest::Method::POST,
                "/v1/payment_intents",
                Some(&r.key),
                &form,
            )
            .await
        })
    }

    fn capture<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let path = format!("/v1/payment_intents/{}/capture", path_id(intent)?);
            let form = [
                ("amount_to_capture", amount.to_string()),
                (EXPAND.0, EXPAND.1.into()),
            ];
            self.send(reqwest::Method::POST, &path, Some(key), &form)
                .await
        })
    }

    fn cancel<'a>(&'a self, key: &'a str, intent: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let path = format!("/v1/payment_intents/{}/cancel", path_id(intent)?);
            self.send(
                reqwest::Method::POST,
                &path,
                Some(key),
                &[(EXPAND.0, EXPAND.1.into())],
            )
            .await
        })
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        intent: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let form = [
                ("payment_intent", path_id(intent)?.to_string()),
                ("amount", amount.to_string()),
            ];
            // A refund answers with the refund, not the intent: read the intent after it.
            let url = format!("{}/v1/refunds", self.base);
            let resp = self
                .http
                .post(&url)
                .bearer_auth(&self.key)
                .header("Idempotency-Key", key)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form_body(&form))
                .send()
                .await
                .map_err(|e| {
                    ProviderError::Unavailable(format!("cannot reach the provider: {e}"))
                })?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let code = body["error"]["code"]
                    .as_str()
                    .or(body["error"]["type"].as_str())
                    .unwrap_or("provider_error")
                    .to_string();
                if status == 429 || status == 409 || status >= 500 {
                    return Err(ProviderError::Unavailable(format!(
                        "the provider answered {status}: {code}"
                    )));
                }
                let message = body["error"]["message"].as_str().unwrap_or("").to_string();
                return Err(ProviderError::Refused { code, message });
            }
            self.retrieve(intent).await
        })
    }

    fn retrieve<'a>(&'a self, intent: &'a str) -> BoxFuture<'a, ProviderResult> {
        Box::pin(async move {
            let path = format!(
                "/v1/payment_intents/{}?expand[]=latest_charge",
                path_id(intent)?
            );
            self.send(reqwest::Method::GET, &path, None, &[]).await
        })
    }
}

/// An intent id as a path segment: the provider's own ids are `[A-Za-z0-9_]`; anything else
/// (a corrupted record) is refused rather than sent.
fn path_id(intent: &str) -> Result<&str, ProviderError> {
    if !intent.is_empty()
        && intent.len() <= 255
        && intent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(intent)
    } else {
        Err(ProviderError::Refused {
            code: "invalid_intent_id".into(),
            message: format!("'{intent}' is not a PaymentIntent id"),
        })
    }
}

/// Checks Stripe's `Stripe-Signature` header (`t=TIMESTAMP,v1=HEX[,v1=HEX]`): HMAC-SHA256 with the
/// endpoint's secret over `"{t}.{body}"`, compared in constant time. No timestamp tolerance: a
/// replayed event only makes Haggle read the intent from the provider again.
pub fn verify_stripe_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut signed = Vec::with_capacity(t.len() + 1 + body.len());
    signed.extend_from_slice(t.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let expected = crate::webhooks::hmac_sha256(secret.as_bytes(), &signed);
    sigs.iter().any(|s| {
        hex::decode(s).is_ok_and(|got| {
            got.len() == expected.len()
                && got
                    .iter()
                    .zip(expected.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    })
}

/// What a service drives payments with: the provider, the webhook signing secret, and faults a
/// test injects to stand for a crash between a provider call and its record.
#[derive(Default)]
pub(crate) struct Payments {
    pub provider: Option<Arc<dyn PaymentProvider>>,
    pub webhook_secret: Option<String>,
    /// Steps whose next answer is dropped after the provider answered, as if the process had
    /// stopped before recording it (tests of the recovery; never set by the server).
    pub drop_answer_of: Vec<PaymentStep>,
}

/// The most deals one reconciliation or sync pass looks at.
pub const MAX_DEALS_PER_PASS: usize = 10_000;

fn ledger_words(t: Target, price: Money) -> String {
    match t {
        Target::Hold => format!("hold {price}"),
        Target::Charge(a) => format!("charge {a}"),
        Target::Release => "release".into(),
    }
}

fn provider_words(o: &Observed) -> String {
    match o.status {
        IntentStatus::RequiresCapture => format!("requires_capture {}", o.capturable),
        IntentStatus::Succeeded => format!("succeeded {}", o.charged),
        IntentStatus::Canceled => "canceled".into(),
        IntentStatus::Other => "not authorised".into(),
    }
}

/// Whether what the provider holds is what the ledger asks.
fn provider_agrees(o: Option<&Observed>, t: Target, price: Money) -> bool {
    match (o, t) {
        (Some(o), Target::Hold) => {
            o.status == IntentStatus::RequiresCapture && o.capturable == price
        }
        (Some(o), Target::Charge(a)) => o.status == IntentStatus::Succeeded && o.charged == a,
        (Some(o), Target::Release) => {
            matches!(o.status, IntentStatus::Canceled | IntentStatus::Other)
                || (o.status == IntentStatus::Succeeded && o.charged == 0)
        }
        (None, Target::Release) => true,
        (None, _) => false,
    }
}

fn unavailable(e: ProviderError) -> ApiError {
    match e {
        ProviderError::Unavailable(m) => ApiError::new(ErrorCode::Unavailable, m),
        ProviderError::Refused { code, message } => {
            ApiError::new(ErrorCode::PaymentFailed, format!("{code}: {message}"))
        }
    }
}

impl Service {
    /// Puts a payment provider behind the escrow of every market created with `payments`.
    pub fn set_payment_provider(
        &self,
        provider: Arc<dyn PaymentProvider>,
        webhook_secret: Option<String>,
    ) {
        let mut p = self.payments.lock().expect("payments");
        p.provider = Some(provider);
        p.webhook_secret = webhook_secret;
    }

    /// Test hook: the provider's next answer to `step` is dropped after the call, as if the
    /// process had stopped before recording it; the step stays pending.
    pub fn drop_next_payment_answer(&self, step: PaymentStep) {
        self.payments
            .lock()
            .expect("payments")
            .drop_answer_of
            .push(step);
    }

    pub(crate) fn payment_provider(&self) -> Option<Arc<dyn PaymentProvider>> {
        self.payments.lock().expect("payments").provider.clone()
    }

    fn take_dropped_answer(&self, step: PaymentStep) -> bool {
        let mut p = self.payments.lock().expect("payments");
        match p.drop_answer_of.iter().position(|s| *s == step) {
            Some(i) => {
                p.drop_answer_of.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether a market has a provider behind its escrow (and this server one to drive it).
    pub(crate) fn pays(&self, market: &Market) -> bool {
        market.rules.payments.is_some()
    }

    /// After a command: drives the payment of every deal its events name (markets with a
    /// provider only). Errors are recorded on the deals' payments, not returned: the command
    /// already committed.
    pub(crate) async fn drive_payments_after(&self, market: i64, events: &[haggle_core::Event]) {
        if self.payment_provider().is_none() {
            return;
        }
        let mut deals: Vec<i64> = events.iter().filter_map(|e| e.body.deal_id()).collect();
        if deals.is_empty() {
            return;
        }
        deals.sort_unstable();
        deals.dedup();
        let Ok(Some(m)) = self.store.market(market).await else {
            return;
        };
        if !self.pays(&m) {
            return;
        }
        for d in deals {
            if let Ok(Some(deal)) = self.store.deal(market, d).await
                && let Err(e) = self.drive_deal(&m, &deal, false, false).await
            {
                tracing::info!(market, deal = d, code = %e.code(), "payment step not done");
            }
        }
    }

    /// Moves one deal's payment towards what its ledger state asks, step by step; returns the
    /// record. A refusal is recorded (`failed`, with the provider's code) and answered
    /// `payment_failed`; a provider that does not answer leaves the step pending (`unavailable`).
    pub(crate) async fn drive_deal(
        &self,
        m: &Market,
        deal: &Deal,
        retry: bool,
        look: bool,
    ) -> ApiResult<Payment> {
        let provider = self.payment_provider().ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "this server has no payment provider ({} is not set)",
                    STRIPE_KEY_ENV
                ),
            )
        })?;
        // `stored`: the record as stored, which each write must still find (see `record`).
        let mut stored = self.stored_payment(m.id, deal.id).await?;
        let mut p = stored.clone();
        if retry && p.failure.is_some() {
            p.failure = None;
            p.attempt += 1;
        }
        // A step called but not recorded (the process stopped, or no answer came): ask the
        // provider what it did before doing anything again. A hold without an intent id is sent
        // again with its key, which the provider answers with the first intent.
        // An operator's sync also takes the provider's word first (something may have changed
        // at the provider's dashboard).
        // (Whatever the deal's target is now: a hold the provider placed must be found to be
        // released, or it would stay on the buyer's card.)
        let mut resend_hold = false;
        if p.pending.is_some() || (look && p.intent.is_some()) {
            if let Some(intent) = p.intent.clone() {
                let o = provider.retrieve(&intent).await.map_err(unavailable)?;
                p.observe(&o);
            } else if p.pending == Some(PaymentStep::Hold) {
                resend_hold = true;
            } else {
                p.pending = None;
            }
            self.record(m.id, &mut stored, &p, PaymentVia::Lookup)
                .await?;
        }
        let t = target(deal);
        // Three steps at most reach any target (hold, capture, refund), after a re-sent hold.
        for _ in 0..4 {
            let next = if std::mem::take(&mut resend_hold) {
                Some((PaymentStep::Hold, deal.price))
            } else {
                p.next_step(t, deal.price, false)
            };
            let Some((step, amount)) = next else {
                break;
            };
            let key = p.key(m.id, step);
            let method = if step == PaymentStep::Hold {
                match self.store.payment_method(m.id, deal.buyer).await? {
                    Some(pm) => Some(pm),
                    None => {
                        return self
                            .refused(
                                (m.id, stored),
                                p,
                                step,
                                "no_payment_method",
                                "the buyer's principal has attached no payment method",
                            )
                            .await;
                    }
                }
            } else {
                None
            };
            p.pending = Some(step);
            self.record(m.id, &mut stored, &p, PaymentVia::Call).await?;
            let intent = p.intent.clone().unwrap_or_default();
            let answer = match step {
                PaymentStep::Hold => {
                    let r = HoldRequest {
                        key: key.clone(),
                        amount,
                        currency: m.currency.clone(),
                        method: method.expect("fetched for a hold"),
                        market: m.id,
                        deal: deal.id,
                    };
                    provider.hold(&r).await
                }
                PaymentStep::Capture => provider.capture(&key, &intent, amount).await,
                PaymentStep::Cancel => provider.cancel(&key, &intent).await,
                PaymentStep::Refund => provider.refund(&key, &intent, amount).await,
            };
            if self.take_dropped_answer(step) {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the answer to the {step} step was dropped (injected fault)"),
                ));
            }
            match answer {
                Ok(o) => {
                    p.observe(&o);
                    p.failure = None;
                    self.record(m.id, &mut stored, &p, PaymentVia::Call).await?;
                }
                Err(ProviderError::Refused { code, message }) => {
                    return self.refused((m.id, stored), p, step, &code, &message).await;
                }
                Err(e @ ProviderError::Unavailable(_)) => return Err(unavailable(e)),
            }
        }
        Ok(p)
    }

    /// A deal's payment record as stored (a fresh one when none is).
    async fn stored_payment(&self, market: i64, deal: i64) -> ApiResult<Payment> {
        let p = self.store.payment(market, deal).await?;
        Ok(p.unwrap_or_else(|| Payment::new(deal)))
    }

    /// Writes a deal's payment record through the market command `RecordPayment`: under the
    /// market's write lock, with an event per confirmed change or refusal in the same
    /// transaction, so the record and the chain never disagree. The write is refused
    /// (`invalid_transition`) when the stored record is no longer `stored` (another writer, a
    /// webhook or a second driver, recorded news meanwhile): nothing older overwrites it, and
    /// the next drive starts from what is stored. On success `stored` becomes `p`. Live readers
    /// are woken.
    async fn record(
        &self,
        market: i64,
        stored: &mut Payment,
        p: &Payment,
        via: PaymentVia,
    ) -> ApiResult<()> {
        let cmd = Command::RecordPayment {
            deal: p.deal_id,
            read: stored.clone(),
            payment: p.clone(),
            via,
        };
        match self.store.run(market, self.now(), cmd, None).await? {
            Ran::Fresh { result, events } => {
                if let Some(last) = events.last() {
                    let _ = self.feed.send(last.market_id);
                }
                result?;
                *stored = p.clone();
                Ok(())
            }
            // Only a command with an idempotency key is ever replayed or in conflict.
            Ran::Replayed(_) | Ran::Conflict => Ok(()),
        }
    }

    async fn refused(
        &self,
        (market, mut stored): (i64, Payment),
        mut p: Payment,
        step: PaymentStep,
        code: &str,
        message: &str,
    ) -> ApiResult<Payment> {
        p.pending = None;
        p.failure = Some(Failure {
            step,
            code: code.to_string(),
        });
        self.record(market, &mut stored, &p, PaymentVia::Call)
            .await?;
        Err(ApiError::new(
            ErrorCode::PaymentFailed,
            format!(
                "the payment provider refused the {step} of deal {}: {code} {message}",
                p.deal_id
            )
            .trim_end()
            .to_string(),
        ))
    }

    /// Every deal of the market (up to [`MAX_DEALS_PER_PASS`]).
    async fn all_deals(&self, market: i64) -> ApiResult<Vec<Deal>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.deals(market, None, after, 500).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.id;
            }
            out.extend(page);
            if n < 500 || out.len() >= MAX_DEALS_PER_PASS {
                break;
            }
        }
        out.truncate(MAX_DEALS_PER_PASS);
        Ok(out)
    }

    async fn payments_market(&self, caller: &Caller, market: i64) -> ApiResult<Market> {
        Self::require_operator(caller, Some(market))?;
        let m = self.market_or_404(market).await?;
        if !self.pays(&m) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("market {market} has no payment provider"),
            ));
        }
        Ok(m)
    }

    /// Operators: every deal whose provider state differs from its ledger state, asking the
    /// provider for each intent (not only Haggle's record of it).
    pub async fn reconcile_payments(
        &self,
        caller: &Caller,
        market: i64,
    ) -> ApiResult<Reconciliation> {
        let m = self.payments_market(caller, market).await?;
        let provider = self.payment_provider();
        let deals = self.all_deals(market).await?;
        let mut differences = Vec::new();
        for d in &deals {
            let p = self
                .store
                .payment(market, d.id)
                .await?
                .unwrap_or_else(|| Payment::new(d.id));
            let t = target(d);
            let (observed, words) = match (&p.intent, &provider) {
                (None, _) => (None, "no intent".to_string()),
                (Some(_), None) => (None, "no provider configured".to_string()),
                (Some(i), Some(pr)) => match pr.retrieve(i).await {
                    Ok(o) => {
                        let w = provider_words(&o);
                        (Some(o), w)
                    }
                    Err(e) => (None, format!("unreadable: {e:?}")),
                },
            };
            let agrees = provider_agrees(observed.as_ref(), t, d.price)
                && p.pending.is_none()
                && (p.failure.is_none() || t == Target::Release);
            if !agrees {
                differences.push(PaymentDifference {
                    deal_id: d.id,
                    deal_status: d.status,
                    ledger: ledger_words(t, d.price),
                    recorded: p.state(),
                    provider: words,
                });
            }
        }
        let _ = m;
        Ok(Reconciliation {
            market_id: market,
            compared: deals.len() as u32,
            differences,
        })
    }

    /// Operators: drives every deal's payment again (pending steps are looked up first; with
    /// `retry`, refused steps are tried again under a new idempotency key). Answers the
    /// reconciliation after the pass.
    pub async fn sync_payments(
        &self,
        caller: &Caller,
        market: i64,
        retry: bool,
    ) -> ApiResult<Reconciliation> {
        let m = self.payments_market(caller, market).await?;
        for d in self.all_deals(market).await? {
            if let Err(e) = self.drive_deal(&m, &d, retry, true).await {
                tracing::info!(market, deal = d.id, code = %e.code(), "payment step not done");
            }
        }
        self.reconcile_payments(caller, market).await
    }

    /// A party's agent or principal, or an operator: one deal's payment retried now (a refused
    /// step under a new key). `payment_failed` when the provider refuses again.
    pub async fn retry_payment(
        &self,
        caller: &Caller,
        market: i64,
        deal: i64,
    ) -> ApiResult<PaymentView> {
        let d = self.deal(caller, market, deal).await?;
        let m = self.market_or_404(market).await?;
        if !self.pays(&m) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("market {market} has no payment provider"),
            ));
        }
        let p = self.drive_deal(&m, &d, true, true).await?;
        Ok(PaymentView::from(&p))
    }

    /// Fills in each deal's payment (markets with a provider only).
    /// Without a provider on this server nothing is read (simulations pay nothing for it).
    pub(crate) async fn with_payments(&self, market: i64, deals: &mut [Deal]) -> ApiResult<()> {
        if deals.is_empty() || self.payment_provider().is_none() {
            return Ok(());
        }
        let m = self.market_or_404(market).await?;
        if !self.pays(&m) {
            return Ok(());
        }
        for d in deals.iter_mut() {
            let p = self
                .store
                .payment(market, d.id)
                .await?
                .unwrap_or_else(|| Payment::new(d.id));
            d.payment = Some(PaymentView::from(&p));
        }
        Ok(())
    }

    /// The principal (or an operator) attaches the provider's customer and payment method ids
    /// for a participant. Haggle never sees card numbers: the card is entered on the provider's
    /// own page, which gives these ids.
    pub async fn attach_payment_method(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
        method: AttachPaymentMethod,
    ) -> ApiResult<AttachPaymentMethod> {
        Self::require_principal_or_operator(caller, market, participant)?;
        let m = self.market_or_404(market).await?;
        if !self.pays(&m) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("market {market} has no payment provider"),
            ));
        }
        check_provider_id("customer", &method.customer, &["cus_"])?;
        check_provider_id(
            "payment_method",
            &method.payment_method,
            &["pm_", "card_", "src_"],
        )?;
        self.participant_or_404(market, participant).await?;
        let stored = PaymentMethod {
            customer: method.customer.clone(),
            payment_method: method.payment_method.clone(),
        };
        self.store
            .put_payment_method(market, participant, &stored, self.now())
            .await?;
        Ok(method)
    }

    pub async fn payment_method(
        &self,
        caller: &Caller,
        market: i64,
        participant: i64,
    ) -> ApiResult<AttachPaymentMethod> {
        Self::require_principal_or_operator(caller, market, participant)?;
        self.store
            .payment_method(market, participant)
            .await?
            .map(|m| AttachPaymentMethod {
                customer: m.customer,
                payment_method: m.payment_method,
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("participant {participant} has no payment method"),
                )
            })
    }

    /// A provider webhook: the signature is checked against the endpoint's secret, then the
    /// intent it names is read from the provider (the payload is not trusted for amounts) and
    /// the deal's payment record follows it. Events about other objects are acknowledged.
    pub async fn stripe_webhook(&self, signature: Option<&str>, body: &[u8]) -> ApiResult<()> {
        let (provider, secret) = {
            let p = self.payments.lock().expect("payments");
            (p.provider.clone(), p.webhook_secret.clone())
        };
        let (Some(provider), Some(secret)) = (provider, secret) else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "this server takes no payment webhooks ({STRIPE_WEBHOOK_SECRET_ENV} is not set)"
                ),
            ));
        };
        if !signature.is_some_and(|s| verify_stripe_signature(&secret, s, body)) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the Stripe-Signature header does not verify",
            ));
        }
        let event: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the event is not JSON: {e}"),
            )
        })?;
        let obj = &event["data"]["object"];
        let intent = match obj["object"].as_str() {
            Some("payment_intent") => obj["id"].as_str(),
            Some("charge") | Some("refund") => obj["payment_intent"].as_str(),
            _ => None,
        };
        let Some(intent) = intent else {
            return Ok(());
        };
        let o = provider.retrieve(intent).await.map_err(unavailable)?;
        // The intent's own metadata, as the provider holds it, names the deal.
        let Some((market, deal)) = o.tagged else {
            return Ok(());
        };
        let Some(mut p) = self.store.payment(market, deal).await? else {
            return Ok(());
        };
        if p.intent.as_deref() != Some(o.intent.as_str()) {
            return Ok(());
        }
        let mut stored = p.clone();
        p.observe(&o);
        self.record(market, &mut stored, &p, PaymentVia::Webhook)
            .await?;
        Ok(())
    }
}

/// A provider id: its prefix, then `[A-Za-z0-9_]`, at most 255 characters (never a card number).
fn check_provider_id(field: &str, v: &str, prefixes: &[&str]) -> ApiResult<()> {
    let ok = v.len() <= 255
        && prefixes
            .iter()
            .any(|p| v.starts_with(p) && v.len() > p.len())
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "{field} must be a provider id starting with {} (letters, digits, _), got '{}'",
                prefixes.join(" or "),
                v.chars().take(40).collect::<String>()
            ),
        ))
    }
}

impl Service {
    /// The payouts of the settlement (markets with a provider): per deal, what the provider
    /// charged and kept for the seller. Readers as for the settlement.
    pub async fn payouts(
        &self,
        caller: &Caller,
        market: i64,
    ) -> ApiResult<Vec<haggle_core::settlement::Payout>> {
        let report = self.settlement(caller, market).await?;
        let m = self.market_or_404(market).await?;
        if !self.pays(&m) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("market {market} has no payment provider, so no payouts"),
            ));
        }
        let mut payments = std::collections::BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.store.payments(market, after, 500).await?;
            let n = page.len();
            for p in page {
                after = p.deal_id;
                payments.insert(p.deal_id, p);
            }
            if n < 500 {
                break;
            }
        }
        Ok(report.payouts(&payments))
    }
}
