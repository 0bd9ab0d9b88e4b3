//! Payments on the web (issue 23): the operator's reconciliation of a market's payments with the
//! provider (and a sync), and the principal's payment method (the ids its card got on the
//! provider's own page, which this site links to and never replaces: no card number comes here).

use crate::Web;
use crate::format::money;
use crate::page::{Form, Ids, PageResult, render};
use crate::session::{FormOrigin, Signed, operator_of};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use serde::{Deserialize, Serialize};

pub struct DifferenceLine {
    pub deal_id: i64,
    pub deal_status: String,
    pub ledger: String,
    pub recorded: String,
    pub provider: String,
}

#[derive(Template)]
#[template(path = "payments.html")]
struct PaymentsPage {
    nav: crate::page::Nav,
    market_id: i64,
    csrf: String,
    compared: u32,
    differences: Vec<DifferenceLine>,
}

pub async fn page(State(web): State<Web>, s: Signed, Ids(m): Ids<i64>) -> PageResult {
    operator_of(&s, m)?;
    let c = crate::page::ctx(&web.svc, &s, m, "Payments", "operate").await?;
    let r = web.svc.reconcile_payments(&s.caller, m).await?;
    let cur = c.market.currency.clone();
    // The ledger's words carry amounts in minor units: shown in the market's currency.
    let amounts = |w: &str| match w.rsplit_once(' ') {
        Some((k, n)) if n.parse::<i64>().is_ok() => {
            format!("{k} {}", money(n.parse().unwrap_or(0), &cur))
        }
        _ => w.to_string(),
    };
    Ok(render(&PaymentsPage {
        nav: c.nav,
        market_id: m,
        csrf: s.csrf.clone(),
        compared: r.compared,
        differences: r
            .differences
            .iter()
            .map(|d| DifferenceLine {
                deal_id: d.deal_id,
                deal_status: d.deal_status.to_string(),
                ledger: amounts(&d.ledger),
                recorded: d.recorded.to_string(),
                provider: amounts(&d.provider),
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SyncForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    retry: Option<String>,
}

/// Drives every deal's payment again (retrying refusals when asked), then shows the page.
pub async fn sync(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<SyncForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    web.svc
        .sync_payments(&s.caller, m, f.retry.is_some())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate/payments")).into_response())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MethodForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    payment_method: String,
}

/// The principal attaches the provider's ids for its participant.
pub async fn attach(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<MethodForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    web.svc
        .attach_payment_method(
            &s.caller,
            m,
            p,
            haggle_api::AttachPaymentMethod {
                customer: f.customer.trim().to_string(),
                payment_method: f.payment_method.trim().to_string(),
            },
        )
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/p/{p}#payment")).into_response())
}

/// Where a principal enters a card: the organisation's page at the provider (a Stripe Checkout
/// session or Payment Link in setup mode), from `HAGGLE_PAYMENT_SETUP_URL`.
pub fn setup_url() -> Option<String> {
    std::env::var("HAGGLE_PAYMENT_SETUP_URL")
        .ok()
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}
