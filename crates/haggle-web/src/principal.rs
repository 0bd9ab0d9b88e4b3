//! The participant's page, for its principal (and readable by its agent, operators and
//! observers): the agent's activity, deals and what to hand over or collect, approvals waiting,
//! the mandate (edit, pause), balance and settlement, rating counterparties, and the survey.
//! Every action is the service's own command, with the form's idempotency key.

use crate::Web;
use crate::format::{Names, describe, money, money_input, parse_money, time};
use crate::market::{DealRow, deal_rows};
use crate::page::{Failure, Form, Ids, Nav, PageResult, Params, bad_request, ctx, render};
use crate::session::{FormOrigin, Signed, idem_key, new_form_key};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use haggle_api::AnswerSurvey;
use haggle_core::{BelowMin, DealStatus, Mandate};
use haggle_service::Role;
use serde::{Deserialize, Serialize};

pub struct Todo {
    pub deal: i64,
    pub text: String,
}

pub struct Approval {
    pub deal: i64,
    pub text: String,
    pub deadline: String,
    pub key_yes: String,
    pub key_no: String,
}

pub struct ToRate {
    pub deal: i64,
    pub text: String,
    pub key: String,
}

#[derive(Template)]
#[template(path = "principal.html")]
struct PrincipalPage {
    nav: Nav,
    /// The market has a payment provider: the payment method section is shown.
    pays: bool,
    /// The attached method (`customer / payment_method`), if any.
    payment_method: Option<String>,
    /// The organisation's card page at the provider.
    setup_url: Option<String>,
    market_id: i64,
    participant: i64,
    name: String,
    done: Option<&'static str>,
    is_principal: bool,
    may_set_mandate: bool,
    csrf: String,
    available: String,
    held_in_escrow: String,
    committed: String,
    total: String,
    net: Option<String>,
    received: Option<String>,
    paid: Option<String>,
    spend_cap: String,
    per_deal_cap: String,
    approval_above: String,
    /// Seller side (spec: trust.md): the lowest price of any sale, whether a lower price is
    /// refused or asked about, and how many per-listing and per-item minimums are set.
    min_sale: String,
    below_min_ask: bool,
    item_minimums: usize,
    categories: String,
    expires: Option<String>,
    frozen: bool,
    paused: bool,
    /// Why and since when an operator suspended the participant (its principal sees why).
    suspended: Option<String>,
    mandate_key: String,
    pause_key: String,
    /// The participant's open turn, when it is driven from outside a simulation (a person taking
    /// its place, the `human` brain) and the market waits for it: shown to its principal.
    open_turn: Option<u64>,
    approvals: Vec<Approval>,
    /// Available cash over time (SVG).
    balance_chart: String,
    /// The Trade section, for the participant's own principal.
    trade: Option<crate::trade::TradeSection>,
    todos: Vec<Todo>,
    deals: Vec<DealRow>,
    to_rate: Vec<ToRate>,
    activity: Vec<crate::format::FeedEntry>,
    survey_key: String,
    /// (value, checked) for each point of the 1–7 scales.
    fairness: Vec<(u8, bool)>,
    satisfaction: Vec<(u8, bool)>,
    scores: Vec<u8>,
    would_pay: String,
    comment: String,
    answered: Option<String>,
}

#[derive(Deserialize)]
pub struct DoneParam {
    #[serde(default)]
    done: String,
    /// Where the Trade section's list of proposals continues.
    proposals: Option<String>,
}

fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "mandate" => "Mandate saved.",
        "mode" => "Trading mode saved.",
        "confirmed" => "Confirmed: your agent's step ran.",
        "declined_proposal" => "Declined: your agent's step will not run.",
        "withdrawn" => "Withdrawn: its live offers are void and its negotiations ended.",
        "paused" => "Your agent is paused: it can read but not act until you resume it.",
        "resumed" => "Your agent may act again.",
        "approved" => "Deal approved.",
        "declined" => "Deal declined: the funds are released and the listing is available again.",
        "rated" => {
            "Rating stored. It is revealed when both sides have rated or the rating window closes."
        }
        "survey" => "Thank you: your survey answer is saved.",
        "turn_ended" => "Turn ended: the market goes on; your next turn comes next round.",
        "as_described" => "Inspection stored: the item is as described.",
        "mismatch" => {
            "Mismatch reported: your agent may now dispute the deal as not as described, naming \
             those claims."
        }
        _ => return None,
    })
}

/// The points of a 1–7 scale, the given one checked (none before an answer).
fn scale(answer: Option<u8>) -> Vec<(u8, bool)> {
    (1..=7).map(|n| (n, answer == Some(n))).collect()
}

fn amount_or_blank(v: Option<i64>, currency: &str) -> String {
    v.map_or(String::new(), |a| money_input(a, currency))
}

pub async fn page(
    State(web): State<Web>,
    s: Signed,
    Ids((m, p)): Ids<(i64, i64)>,
    Params(q): Params<DoneParam>,
) -> PageResult {
    // The balance is the participant's private data: reading it is the access check.
    let balance = web.svc.balance(&s.caller, m, p).await?;
    let current = if s.caller.participant == Some(p) {
        "me"
    } else {
        "people"
    };
    let c = ctx(&web.svc, &s, m, "Participant", current).await?;
    let cur = c.market.currency.clone();
    let person = web.svc.participant(&s.caller, m, p).await?;
    let mut names = Names::new(&web.svc, &s.caller, m);
    names.remember(p, &person.name);
    let is_principal = s.caller.role == Role::Principal && s.caller.participant == Some(p);
    let mine: Vec<haggle_core::Deal> = web
        .svc
        .deals(&s.caller, m, None, Some(haggle_core::limits::MAX_PAGE))
        .await?
        .items
        .into_iter()
        .filter(|d| d.is_party(p))
        .collect();
    let Tasks {
        approvals,
        todos,
        to_rate,
    } = tasks(&web, &s, &mut names, &mine, (m, p), &cur).await?;
    let deals = deal_rows(&mut names, &mine, &cur).await;
    let mut activity = Vec::new();
    for e in web
        .svc
        .recent_activity(&s.caller, m, p, None, Some(30))
        .await?
    {
        if crate::format::told_elsewhere(e.kind()) {
            continue;
        }
        activity.push(describe(&e, &mut names, m, &cur).await);
    }
    let settlement = web.svc.settlement(&s.caller, m).await?;
    let position = settlement.positions.iter().find(|x| x.participant_id == p);
    let survey = web.svc.survey_answer(&s.caller, m, p).await?;
    let md = &person.mandate;
    let trade = crate::trade::section(&web, &s, (m, p), &cur, q.proposals.as_deref()).await?;
    let pays = c.market.rules.payments.is_some();
    let payment_method = if pays && is_principal_or_operator(&s, m, p) {
        web.svc
            .payment_method(&s.caller, m, p)
            .await
            .ok()
            .map(|x| format!("{} / {}", x.customer, x.payment_method))
    } else {
        None
    };
    let balance_chart = crate::charts::balance(&web.svc, &s.caller, m, p, &cur).await?;
    Ok(render(&PrincipalPage {
        balance_chart,
        pays,
        payment_method,
        setup_url: crate::payments::setup_url(),
        nav: c.nav,
        market_id: m,
        participant: p,
        name: person.name.clone(),
        done: done_text(&q.done),
        is_principal,
        may_set_mandate: is_principal || s.caller.is_operator_of(m),
        csrf: s.csrf.clone(),
        available: money(balance.available, &cur),
        held_in_escrow: money(balance.held_in_escrow, &cur),
        committed: money(balance.committed_to_offers, &cur),
        total: money(balance.total, &cur),
        net: position.map(|x| money(x.net, &cur)),
        received: position.map(|x| money(x.received, &cur)),
        paid: position.map(|x| money(x.paid, &cur)),
        spend_cap: amount_or_blank(md.spend_cap, &cur),
        per_deal_cap: amount_or_blank(md.per_deal_cap, &cur),
        approval_above: amount_or_blank(md.approval_above, &cur),
        min_sale: amount_or_blank(md.min_sale, &cur),
        below_min_ask: md.below_min == BelowMin::Ask,
        item_minimums: md.min_price_by_listing.len() + md.min_price_by_item.len(),
        categories: md
            .categories
            .as_ref()
            .map_or(String::new(), |c| c.join(", ")),
        expires: md.expires_at.map(time),
        frozen: md.frozen,
        paused: md.paused,
        suspended: person
            .suspension
            .as_ref()
            .map(|x| format!("{} (since {})", x.reason, time(x.at))),
        mandate_key: new_form_key(),
        pause_key: new_form_key(),
        open_turn: is_principal.then(|| web.svc.open_turn(m, p)).flatten(),
        approvals,
        trade,
        todos,
        deals,
        to_rate,
        activity,
        survey_key: new_form_key(),
        fairness: scale(survey.as_ref().map(|a| a.fairness)),
        satisfaction: scale(survey.as_ref().map(|a| a.satisfaction)),
        scores: (1..=5).collect(),
        would_pay: survey
            .as_ref()
            .map_or(String::new(), |a| money_input(a.would_pay, &cur)),
        comment: survey.as_ref().map_or(String::new(), |a| a.comment.clone()),
        answered: survey.as_ref().map(|a| time(a.answered_at)),
    }))
}

/// What the participant's deals ask of its principal: approvals, handovers and collections,
/// and finished deals to rate.
struct Tasks {
    approvals: Vec<Approval>,
    todos: Vec<Todo>,
    to_rate: Vec<ToRate>,
}

async fn tasks(
    web: &Web,
    s: &Signed,
    names: &mut Names<'_>,
    mine: &[haggle_core::Deal],
    (m, p): (i64, i64),
    cur: &str,
) -> PageResult<Tasks> {
    let mut approvals = Vec::new();
    let mut todos = Vec::new();
    let mut to_rate = Vec::new();
    for d in mine.iter().rev() {
        let title = format!("“{}”", d.snapshot.title);
        let other = names
            .person(if d.buyer == p { d.seller } else { d.buyer })
            .await;
        let price = money(d.price, cur);
        let i_buy = d.buyer == p;
        if let Some(text) = todo_text(d, p, &title, &other, &price) {
            todos.push(Todo { deal: d.id, text });
        } else if d.status == DealStatus::AwaitingApproval && d.awaits_approval_of(p) {
            approvals.push(Approval {
                deal: d.id,
                text: if i_buy {
                    format!("Buy {title} from {other} for {price}")
                } else {
                    format!("Sell {title} to {other} for {price}, below your lowest price")
                },
                deadline: d.approval_deadline.map_or(String::new(), time),
                key_yes: new_form_key(),
                key_no: new_form_key(),
            })
        }
        if d.is_finished() {
            let rated = web
                .svc
                .deal_ratings(&s.caller, m, d.id)
                .await?
                .iter()
                .any(|r| r.rater == p);
            if !rated {
                to_rate.push(ToRate {
                    deal: d.id,
                    text: format!(
                        "{title} ({}) with {other}",
                        if i_buy { "bought" } else { "sold" }
                    ),
                    key: new_form_key(),
                });
            }
        }
    }
    Ok(Tasks {
        approvals,
        todos,
        to_rate,
    })
}

/// What a deal asks of its party `p` that is not an approval (those have their own forms).
fn todo_text(
    d: &haggle_core::Deal,
    p: i64,
    title: &str,
    other: &str,
    price: &str,
) -> Option<String> {
    let i_buy = d.buyer == p;
    Some(match (d.status, i_buy) {
        (DealStatus::AwaitingApproval, _) if d.awaits_approval_of(p) => return None,
        (DealStatus::AwaitingApproval, _) => format!(
            "{title} {} {other} for {price}: waiting for the {}'s principal to approve",
            if i_buy { "from" } else { "to" },
            if i_buy { "seller" } else { "buyer" }
        ),
        (DealStatus::Agreed, false) => {
            format!("Hand over {title} to {other} ({price} is held in escrow for you)")
        }
        (DealStatus::Agreed, true) => {
            format!("Collect {title} from {other} once handed over (you paid {price} into escrow)")
        }
        (DealStatus::HandedOver, true) => format!(
            "Collect {title} from {other}: handed over{}; check it before {}",
            d.handover_note
                .as_ref()
                .map_or(String::new(), |n| format!(" (“{n}”)")),
            d.confirm_deadline.map_or(String::new(), time)
        ),
        (DealStatus::HandedOver, false) => {
            format!("{title} handed over to {other}: waiting for confirmation")
        }
        (DealStatus::Disputed, _) => {
            format!("{title} with {other} is disputed: an operator will rule")
        }
        _ => return None,
    })
}

fn back(m: i64, p: i64, done: &str) -> axum::response::Response {
    Redirect::to(&format!("/m/{m}/p/{p}?done={done}")).into_response()
}

#[derive(Deserialize, Serialize)]
pub struct MandateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    spend_cap: String,
    #[serde(default)]
    per_deal_cap: String,
    #[serde(default)]
    approval_above: String,
    #[serde(default)]
    min_sale: String,
    /// `ask` when a sale below a seller minimum waits for approval instead of being refused.
    #[serde(default)]
    below_min: String,
    #[serde(default)]
    categories: String,
}

fn optional_amount(field: &str, v: &str, currency: &str) -> PageResult<Option<i64>> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    parse_money(v, currency)
        .map(Some)
        .map_err(|e| bad_request(format!("{field}: {e}")))
}

pub async fn set_mandate(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<MandateForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let cur = &market.currency;
    let current = web.svc.mandate(&s.caller, m, p).await?;
    let categories: Vec<String> = f
        .categories
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    // The form edits the limits; expiry, the operator's freeze and the pause stay as they are.
    let mandate = Mandate {
        spend_cap: optional_amount("spending cap", &f.spend_cap, cur)?,
        per_deal_cap: optional_amount("cap per deal", &f.per_deal_cap, cur)?,
        approval_above: optional_amount("approval above", &f.approval_above, cur)?,
        categories: (!categories.is_empty()).then_some(categories),
        expires_at: current.expires_at,
        frozen: current.frozen,
        paused: current.paused,
        min_sale: optional_amount("lowest sale", &f.min_sale, cur)?,
        below_min: if f.below_min == "ask" {
            BelowMin::Ask
        } else {
            BelowMin::Refuse
        },
        // Per-listing and per-item minimums are set through the API (or from the profile).
        min_price_by_listing: current.min_price_by_listing,
        min_price_by_item: current.min_price_by_item,
        has_minimum: false,
        trading_mode: current.trading_mode,
    };
    let path = format!("/m/{m}/p/{p}/mandate");
    let idem = idem_key(&f.idem, &path, &f)?;
    web.svc
        .set_mandate(&s.caller, m, p, mandate, idem.as_ref())
        .await?;
    Ok(back(m, p, "mandate"))
}

#[derive(Deserialize, Serialize)]
pub struct PauseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    paused: String,
}

#[derive(Deserialize, Serialize)]
pub struct EndTurnForm {
    #[serde(default)]
    csrf: String,
}

/// The person taking the participant's place ends its open turn (the `human` brain): the
/// simulation's market goes on.
pub async fn end_turn(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p, turn)): Ids<(i64, i64, u64)>,
    Form(f): Form<EndTurnForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    if s.caller.participant != Some(p) {
        return Err(bad_request(
            "only the participant's principal ends its turn",
        ));
    }
    web.svc.end_turn(&s.caller, m, turn).await?;
    Ok(back(m, p, "turn_ended"))
}

/// The principal pauses or resumes its agent (an operator's freeze is separate and stays).
pub async fn pause(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<PauseForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let paused = f.paused == "true";
    let idem = idem_key(&f.idem, &format!("/m/{m}/p/{p}/pause"), &f)?;
    web.svc
        .pause(&s.caller, m, p, paused, idem.as_ref())
        .await?;
    Ok(back(m, p, if paused { "paused" } else { "resumed" }))
}

#[derive(Deserialize, Serialize)]
pub struct ApprovalForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    decision: String,
}

pub async fn approval(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, d)): Ids<(i64, i64)>,
    Form(f): Form<ApprovalForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let approve = match f.decision.as_str() {
        "approve" => true,
        "decline" => false,
        other => return Err(bad_request(format!("unknown decision '{other}'"))),
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/deals/{d}/approval"), &f)?;
    web.svc
        .decide_approval(&s.caller, m, d, approve, idem.as_ref())
        .await?;
    let p = s.caller.participant.ok_or_else(|| {
        Failure::from((
            haggle_core::ErrorCode::Forbidden,
            "approvals need a principal token".to_string(),
        ))
    })?;
    Ok(back(m, p, if approve { "approved" } else { "declined" }))
}

/// The buyer's principal inspects a handed-over deal: every checked `mismatch:<claim>` box names
/// a claim the item contradicts; none checked confirms it is as described.
pub async fn inspection(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, d)): Ids<(i64, i64)>,
    Form(f): Form<std::collections::BTreeMap<String, String>>,
) -> PageResult {
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    s.check(&origin, &field("csrf"))?;
    let mismatched: Vec<String> = f
        .keys()
        .filter_map(|k| k.strip_prefix("mismatch:").map(str::to_string))
        .collect();
    let idem = idem_key(&field("idem"), &format!("/m/{m}/deals/{d}/inspection"), &f)?;
    let found = !mismatched.is_empty();
    web.svc
        .report_inspection(&s.caller, m, d, mismatched, idem.as_ref())
        .await?;
    let p = s.caller.participant.ok_or_else(|| {
        Failure::from((
            haggle_core::ErrorCode::Forbidden,
            "inspections need a principal token".to_string(),
        ))
    })?;
    Ok(back(m, p, if found { "mismatch" } else { "as_described" }))
}

#[derive(Deserialize, Serialize)]
pub struct RateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    score: String,
    #[serde(default)]
    comment: String,
}

pub async fn rate(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, d)): Ids<(i64, i64)>,
    Form(f): Form<RateForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let score: u8 = f
        .score
        .parse()
        .map_err(|_| bad_request("choose a score from 1 to 5"))?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/deals/{d}/rate"), &f)?;
    web.svc
        .rate(
            &s.caller,
            m,
            d,
            score,
            f.comment.trim().to_string(),
            idem.as_ref(),
        )
        .await?;
    match s.caller.participant {
        Some(p) => Ok(back(m, p, "rated")),
        None => Ok(Redirect::to(&format!("/m/{m}/deals/{d}")).into_response()),
    }
}

#[derive(Deserialize, Serialize)]
pub struct SurveyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    fairness: String,
    satisfaction: String,
    #[serde(default)]
    would_pay: String,
    #[serde(default)]
    comment: String,
}

pub async fn survey(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, p)): Ids<(i64, i64)>,
    Form(f): Form<SurveyForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let scale = |name: &str, v: &str| {
        v.parse::<u8>()
            .map_err(|_| bad_request(format!("{name}: choose 1 to 7")))
    };
    let would_pay = if f.would_pay.trim().is_empty() {
        0
    } else {
        parse_money(&f.would_pay, &market.currency)
            .map_err(|e| bad_request(format!("would pay: {e}")))?
    };
    let req = AnswerSurvey {
        fairness: scale("fairness", &f.fairness)?,
        satisfaction: scale("satisfaction", &f.satisfaction)?,
        would_pay,
        comment: f.comment.clone(),
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/p/{p}/survey"), &f)?;
    web.svc
        .answer_survey(&s.caller, m, p, req, idem.as_ref())
        .await?;
    Ok(back(m, p, "survey"))
}

/// Whether the signed-in caller is this participant's principal or an operator of the market.
fn is_principal_or_operator(s: &Signed, m: i64, p: i64) -> bool {
    s.caller.is_operator_of(m)
        || (s.caller.role == haggle_service::Role::Principal
            && s.caller.market == Some(m)
            && s.caller.participant == Some(p))
}
