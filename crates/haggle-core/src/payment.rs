//! Payments behind the escrow (spec, trust.md: Payments): what a deal's ledger state asks of the
//! payment provider, the next provider step towards it, and each step's idempotency key. Pure:
//! the provider adapter (haggle-service `payments`) makes the calls and records what they did.

use crate::event::{EventBody, PaymentFailed, PaymentMoved};
use crate::model::{Deal, DealId, DealStatus, MarketId, Money, string_enum};
use serde::{Deserialize, Serialize};

string_enum!(
    /// A deal's payment as the provider confirmed it (spec, trust.md: Payments). `failed` is the
    /// last step refused by the provider; the money stays where the last confirmed step left it.
    PaymentState {
        None => "none", Authorized => "authorized", Captured => "captured", Voided => "voided",
        Refunded => "refunded", Failed => "failed",
    }
);
string_enum!(
    /// One provider call: place the hold, capture (all or part of) it, cancel it, refund a capture.
    PaymentStep { Hold => "hold", Capture => "capture", Cancel => "cancel", Refund => "refund" }
);
string_enum!(
    /// How Haggle learnt of a payment change: the provider's answer to its own call, its reading
    /// of the intent (after a restart with a step in flight, or an operator's sync), or a
    /// provider webhook.
    PaymentVia { Call => "call", Lookup => "lookup", Webhook => "webhook" }
);
string_enum!(
    /// Payment providers Haggle speaks to.
    Provider { Stripe => "stripe" }
);

/// A market's payment configuration (`"payments": {"provider": "stripe"}` at creation). The
/// provider's secret key is never here: it comes from the server's environment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    pub provider: Provider,
}

/// What the ledger asks of the provider for one deal: the charge that should stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The hold is open: the price should be authorised, nothing charged.
    Hold,
    /// The deal closed paying the seller this much (the whole price, or a split's share).
    Charge(Money),
    /// The deal closed paying the seller nothing: no hold, no charge.
    Release,
}

/// The charge a deal's ledger state calls for.
pub fn target(deal: &Deal) -> Target {
    if deal.status.hold_is_open() {
        return Target::Hold;
    }
    let to_seller = match deal.status {
        DealStatus::Completed => deal.resolution.as_ref().map_or(deal.price, |r| r.to_seller),
        DealStatus::PartiallyRefunded => deal.resolution.as_ref().map_or(0, |r| r.to_seller),
        _ => 0,
    };
    if to_seller > 0 {
        Target::Charge(to_seller)
    } else {
        Target::Release
    }
}

/// A deal's payment as Haggle recorded it: only what the provider confirmed, plus the step in
/// flight (recorded before the call, so a restart looks at the provider before acting again).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Payment {
    pub deal_id: DealId,
    /// The last state the provider confirmed (never `failed`: see `failure`).
    pub confirmed: Confirmed,
    /// The provider's PaymentIntent id, once the hold was placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Authorised (held) with the provider.
    pub held: Money,
    /// Charged and kept: captured minus refunded.
    pub charged: Money,
    /// The step called and not yet recorded as answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PaymentStep>,
    /// The provider's refusal of the last step tried, with its code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Deliberate retries after a refusal: each gets its own idempotency key (a provider answers
    /// a key it has seen with its first answer, so the same key would only repeat the refusal).
    #[serde(default)]
    pub attempt: u32,
}

string_enum!(
    /// The confirmed part of [`PaymentState`].
    Confirmed { None => "none", Authorized => "authorized", Captured => "captured", Voided => "voided", Refunded => "refunded" }
);

#[allow(clippy::derivable_impls)]
impl Default for Confirmed {
    fn default() -> Confirmed {
        Confirmed::None
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: PaymentStep,
    /// The provider's code (`card_declined`, `expired_for_capture`, ...).
    pub code: String,
}

/// What a provider reports of a PaymentIntent, reduced to what the mapping compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub intent: String,
    pub status: IntentStatus,
    /// Authorised and still capturable (0 once captured or cancelled).
    pub capturable: Money,
    /// Captured minus refunded.
    pub charged: Money,
    /// The market and deal the intent was placed for (its metadata), when the provider says.
    pub tagged: Option<(MarketId, DealId)>,
}

string_enum!(
    /// A PaymentIntent's status as far as escrow cares: awaiting capture, done, cancelled, or
    /// anything else (needs a payment method, processing, failed).
    IntentStatus { RequiresCapture => "requires_capture", Succeeded => "succeeded", Canceled => "canceled", Other => "other" }
);

impl Payment {
    pub fn new(deal_id: DealId) -> Payment {
        Payment {
            deal_id,
            ..Payment::default()
        }
    }

    /// The state shown to parties, operators and agents.
    pub fn state(&self) -> PaymentState {
        if self.failure.is_some() {
            return PaymentState::Failed;
        }
        match self.confirmed {
            Confirmed::None => PaymentState::None,
            Confirmed::Authorized => PaymentState::Authorized,
            Confirmed::Captured => PaymentState::Captured,
            Confirmed::Voided => PaymentState::Voided,
            Confirmed::Refunded => PaymentState::Refunded,
        }
    }

    /// Takes the provider's word for the intent: after a confirmed step, after a restart with a
    /// step in flight, and when a webhook says the intent changed.
    pub fn observe(&mut self, o: &Observed) {
        let was_charged = self.charged;
        self.intent = Some(o.intent.clone());
        self.pending = None;
        match o.status {
            IntentStatus::RequiresCapture => {
                self.confirmed = Confirmed::Authorized;
                self.held = o.capturable;
                self.charged = 0;
            }
            IntentStatus::Succeeded => {
                // Less kept than after an earlier capture: refunded (all or part) since.
                let refunded = self.confirmed == Confirmed::Refunded
                    || (self.confirmed == Confirmed::Captured && o.charged < was_charged);
                self.held = 0;
                self.charged = o.charged;
                self.confirmed = if refunded {
                    Confirmed::Refunded
                } else {
                    Confirmed::Captured
                };
            }
            IntentStatus::Canceled => {
                self.confirmed = Confirmed::Voided;
                self.held = 0;
                self.charged = 0;
            }
            IntentStatus::Other => {
                self.held = 0;
            }
        }
    }

    /// The next provider step towards `target` (with the amount it moves), or `None` when the
    /// provider already holds what the ledger says, or nothing more can be done by Haggle: a
    /// refused step waits for a deliberate retry (`retry`), a charge cannot grow after capture,
    /// and a cancelled hold cannot be charged (reconciliation reports both).
    pub fn next_step(
        &self,
        target: Target,
        price: Money,
        retry: bool,
    ) -> Option<(PaymentStep, Money)> {
        if self.failure.is_some() && !retry {
            return None;
        }
        match (self.confirmed, target) {
            (Confirmed::None, Target::Hold) => Some((PaymentStep::Hold, price)),
            (Confirmed::None, Target::Charge(_)) => Some((PaymentStep::Hold, price)),
            (Confirmed::None, Target::Release) => None,
            (Confirmed::Authorized, Target::Hold) => None,
            (Confirmed::Authorized, Target::Charge(a)) => Some((PaymentStep::Capture, a)),
            (Confirmed::Authorized, Target::Release) => Some((PaymentStep::Cancel, self.held)),
            (Confirmed::Captured | Confirmed::Refunded, Target::Charge(a)) if a < self.charged => {
                Some((PaymentStep::Refund, self.charged - a))
            }
            (Confirmed::Captured | Confirmed::Refunded, Target::Release) if self.charged > 0 => {
                Some((PaymentStep::Refund, self.charged))
            }
            _ => None,
        }
    }

    /// Whether the provider holds exactly what the ledger says (reconciliation). A step in
    /// flight or a refusal is a difference until it is resolved.
    pub fn agrees_with(&self, target: Target, price: Money) -> bool {
        if self.pending.is_some() || self.failure.is_some() {
            return false;
        }
        match target {
            Target::Hold => self.confirmed == Confirmed::Authorized && self.held == price,
            Target::Charge(a) => {
                matches!(self.confirmed, Confirmed::Captured | Confirmed::Refunded)
                    && self.charged == a
            }
            Target::Release => self.held == 0 && self.charged == 0,
        }
    }

    /// The idempotency key of `step` (spec: `haggle-{market}-{deal}-{step}`); a deliberate retry
    /// after a refusal appends its attempt number.
    pub fn key(&self, market: MarketId, step: PaymentStep) -> String {
        idempotency_key(market, self.deal_id, step, self.attempt)
    }
}

/// `haggle-{market}-{deal}-{step}`, and `-{attempt}` for a deliberate retry after a refusal.
pub fn idempotency_key(market: MarketId, deal: DealId, step: PaymentStep, attempt: u32) -> String {
    if attempt == 0 {
        format!("haggle-{market}-{deal}-{step}")
    } else {
        format!("haggle-{market}-{deal}-{step}-{attempt}")
    }
}

/// The events a change of a deal's payment record from `old` to `new` puts on the market's chain
/// (issue 23): one per confirmed state reached (or per change of the amount kept), and one per
/// refusal recorded. A record written again unchanged (a retry, a replayed webhook, a lookup
/// after a restart that finds what was recorded) yields none, so each step appears once.
pub fn events(old: &Payment, new: &Payment, price: Money, via: PaymentVia) -> Vec<EventBody> {
    let mut out = Vec::new();
    let moved = |amount: Money, partial: bool| PaymentMoved {
        deal_id: new.deal_id,
        intent: new.intent.clone().unwrap_or_default(),
        amount,
        held: new.held,
        charged: new.charged,
        partial,
        via,
    };
    // Any change of what the provider holds or charged is told, so the last event always says
    // what the record says (`disagreement`).
    let changed = new.confirmed != old.confirmed
        || (new.confirmed != Confirmed::None
            && (new.held != old.held || new.charged != old.charged || new.intent != old.intent));
    if changed {
        match new.confirmed {
            Confirmed::None => {}
            Confirmed::Authorized => out.push(EventBody::PaymentAuthorized(moved(new.held, false))),
            Confirmed::Captured => {
                // A capture after a refund (never by Haggle) is still told as a capture.
                let amount = new.charged - old.charged.min(new.charged);
                out.push(EventBody::PaymentCaptured(moved(
                    amount,
                    new.charged < price,
                )))
            }
            Confirmed::Voided => out.push(EventBody::PaymentVoided(moved(old.held, false))),
            Confirmed::Refunded => {
                let amount = (old.charged - new.charged).max(0);
                out.push(EventBody::PaymentRefunded(moved(amount, new.charged > 0)))
            }
        }
    }
    if let Some(f) = &new.failure
        && (old.failure.as_ref() != Some(f) || old.attempt != new.attempt)
    {
        out.push(EventBody::PaymentFailed(PaymentFailed {
            deal_id: new.deal_id,
            step: f.step,
            code: f.code.clone(),
            attempt: new.attempt,
        }));
    }
    out
}

/// Whether a deal's payment record says what its `payment_*` events on the chain say (the
/// ledger verifier's `payments_match_events`): the last confirmed change's intent, hold and
/// charge, and the last refusal. `None` when they agree, else what differs.
pub fn disagreement(p: &Payment, bodies: &[&EventBody]) -> Option<String> {
    let last_moved = bodies.iter().rev().find_map(|b| match b {
        EventBody::PaymentAuthorized(m)
        | EventBody::PaymentCaptured(m)
        | EventBody::PaymentVoided(m)
        | EventBody::PaymentRefunded(m) => Some(m),
        _ => None,
    });
    let last_failed = bodies.iter().rev().find_map(|b| match b {
        EventBody::PaymentFailed(f) => Some(f),
        _ => None,
    });
    let moved_agrees = match (p.confirmed, last_moved) {
        (Confirmed::None, None) => true,
        (_, Some(m)) => {
            p.intent.as_deref() == Some(m.intent.as_str())
                && p.held == m.held
                && p.charged == m.charged
        }
        _ => false,
    };
    let failure_agrees = match &p.failure {
        None => true,
        Some(f) => last_failed
            .is_some_and(|e| e.step == f.step && e.code == f.code && e.attempt == p.attempt),
    };
    if moved_agrees && failure_agrees {
        return None;
    }
    Some(format!(
        "payment of deal {} is {} (held {}, charged {}) but its events say {}",
        p.deal_id,
        p.state(),
        p.held,
        p.charged,
        match last_moved {
            Some(m) => format!("held {}, charged {}", m.held, m.charged),
            None => "nothing moved".to_string(),
        }
    ))
}

/// The payment summary shown on a deal (`payment: held|captured|failed`, ...).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub state: PaymentState,
    /// Held with the provider, not yet charged.
    pub held: Money,
    /// Charged and kept (captured minus refunded).
    pub charged: Money,
    /// The provider's code when `state` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> PaymentView {
        PaymentView {
            state: p.state(),
            held: p.held,
            charged: p.charged,
            failure_code: p.failure.as_ref().map(|f| f.code.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorized(held: Money) -> Payment {
        Payment {
            confirmed: Confirmed::Authorized,
            intent: Some("pi_1".into()),
            held,
            ..Payment::new(7)
        }
    }

    #[test]
    fn an_open_hold_asks_for_an_authorisation_of_the_price() {
        assert_eq!(
            Payment::new(7).next_step(Target::Hold, 900, false),
            Some((PaymentStep::Hold, 900))
        );
        assert_eq!(authorized(900).next_step(Target::Hold, 900, false), None);
    }

    #[test]
    fn a_split_captures_the_sellers_share_and_a_release_cancels() {
        let p = authorized(900);
        assert_eq!(
            p.next_step(Target::Charge(600), 900, false),
            Some((PaymentStep::Capture, 600))
        );
        assert_eq!(
            p.next_step(Target::Release, 900, false),
            Some((PaymentStep::Cancel, 900))
        );
    }

    #[test]
    fn a_release_after_a_capture_refunds_what_was_kept() {
        let mut p = authorized(900);
        p.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Succeeded,
            capturable: 0,
            charged: 900,
            tagged: None,
        });
        assert_eq!(p.state(), PaymentState::Captured);
        assert_eq!(
            p.next_step(Target::Release, 900, false),
            Some((PaymentStep::Refund, 900))
        );
        p.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Succeeded,
            capturable: 0,
            charged: 0,
            tagged: None,
        });
        assert_eq!(p.state(), PaymentState::Refunded);
        assert!(p.agrees_with(Target::Release, 900));
    }

    #[test]
    fn a_refused_step_waits_for_a_deliberate_retry_under_a_new_key() {
        let mut p = Payment::new(7);
        p.failure = Some(Failure {
            step: PaymentStep::Hold,
            code: "card_declined".into(),
        });
        assert_eq!(p.state(), PaymentState::Failed);
        assert_eq!(p.next_step(Target::Hold, 900, false), None);
        assert_eq!(p.key(3, PaymentStep::Hold), "haggle-3-7-hold");
        p.attempt = 1;
        assert_eq!(p.key(3, PaymentStep::Hold), "haggle-3-7-hold-1");
    }

    fn kinds(v: &[EventBody]) -> Vec<&'static str> {
        v.iter().map(EventBody::kind).collect()
    }

    #[test]
    fn each_confirmed_step_is_one_event_and_a_rewrite_is_none() {
        let none = Payment::new(7);
        let held = authorized(900);
        assert_eq!(
            kinds(&events(&none, &held, 900, PaymentVia::Call)),
            ["payment_authorized"]
        );
        assert_eq!(events(&held, &held, 900, PaymentVia::Lookup), vec![]);
        let mut pending = held.clone();
        pending.pending = Some(PaymentStep::Capture);
        assert_eq!(events(&held, &pending, 900, PaymentVia::Call), vec![]);
        let mut captured = pending.clone();
        captured.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Succeeded,
            capturable: 0,
            charged: 600,
            tagged: None,
        });
        let e = events(&pending, &captured, 900, PaymentVia::Lookup);
        let EventBody::PaymentCaptured(m) = &e[0] else {
            panic!("{e:?}")
        };
        assert_eq!(
            (m.amount, m.charged, m.partial, m.via),
            (600, 600, true, PaymentVia::Lookup)
        );
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn a_refusal_is_one_event_with_the_code_and_a_retry_refused_again_another() {
        let none = Payment::new(7);
        let mut failed = none.clone();
        failed.failure = Some(Failure {
            step: PaymentStep::Hold,
            code: "card_declined".into(),
        });
        let e = events(&none, &failed, 900, PaymentVia::Call);
        assert_eq!(
            e,
            vec![EventBody::PaymentFailed(PaymentFailed {
                deal_id: 7,
                step: PaymentStep::Hold,
                code: "card_declined".into(),
                attempt: 0,
            })]
        );
        assert_eq!(events(&failed, &failed, 900, PaymentVia::Call), vec![]);
        let mut again = failed.clone();
        again.attempt = 1;
        assert_eq!(
            kinds(&events(&failed, &again, 900, PaymentVia::Call)),
            ["payment_failed"]
        );
    }

    #[test]
    fn a_void_and_a_refund_say_what_they_released() {
        let held = authorized(900);
        let mut voided = held.clone();
        voided.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Canceled,
            capturable: 0,
            charged: 0,
            tagged: None,
        });
        let e = events(&held, &voided, 900, PaymentVia::Webhook);
        assert!(matches!(&e[..], [EventBody::PaymentVoided(m)] if m.amount == 900 && m.held == 0));
        let captured = Payment {
            confirmed: Confirmed::Captured,
            charged: 900,
            held: 0,
            ..held.clone()
        };
        let mut refunded = captured.clone();
        refunded.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Succeeded,
            capturable: 0,
            charged: 300,
            tagged: None,
        });
        let e = events(&captured, &refunded, 900, PaymentVia::Call);
        assert!(
            matches!(&e[..], [EventBody::PaymentRefunded(m)] if m.amount == 600 && m.charged == 300 && m.partial),
            "{e:?}"
        );
    }

    #[test]
    fn a_record_its_events_do_not_tell_is_a_disagreement() {
        let none = Payment::new(7);
        let held = authorized(900);
        let told = events(&none, &held, 900, PaymentVia::Call);
        let told: Vec<&EventBody> = told.iter().collect();
        assert_eq!(disagreement(&held, &told), None);
        assert_eq!(disagreement(&none, &[]), None);
        assert!(disagreement(&held, &[]).is_some(), "a hold with no event");
        let mut changed = held.clone();
        changed.charged = 900;
        assert!(
            disagreement(&changed, &told).is_some(),
            "a charge no event tells"
        );
        let mut failed = held.clone();
        failed.failure = Some(Failure {
            step: PaymentStep::Capture,
            code: "expired_for_capture".into(),
        });
        assert!(
            disagreement(&failed, &told).is_some(),
            "a refusal no event tells"
        );
    }

    #[test]
    fn a_cancelled_hold_is_never_charged_by_haggle() {
        let mut p = authorized(900);
        p.observe(&Observed {
            intent: "pi_1".into(),
            status: IntentStatus::Canceled,
            capturable: 0,
            charged: 0,
            tagged: None,
        });
        assert_eq!(p.next_step(Target::Charge(900), 900, false), None);
        assert!(!p.agrees_with(Target::Charge(900), 900));
    }
}
