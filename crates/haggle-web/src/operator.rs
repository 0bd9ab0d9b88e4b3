//! The operator's pages: markets (and creating one), a market's closing time, its participants
//! and tokens, funding, disputes to resolve (the deal page carries the ruling form and the evidence), webhook
//! deliveries (the chat channel's form: `channel.rs`), ledger verification, survey answers and the settlement export. Each action is the
//! service's own command with the form's idempotency key.

use crate::Web;
use crate::format::{Names, money, parse_money, span, time, words};
use crate::market::{CursorParam, DealRow, MARKETS_PER_PAGE, deal_rows};
use crate::page::{Form, Ids, Nav, PageResult, Params, bad_request, ctx, render};
use crate::session::{FormOrigin, Signed, idem_key, new_form_key, operator_of};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use haggle_api::{CreateMarket, CreateToken, Fund, RegisterParticipant, ResolveDispute};
use haggle_core::ClockMode;
use haggle_core::lifecycle::Ruling;
use haggle_core::model::{parse_duration, parse_utc};
use haggle_service::Role;
use serde::{Deserialize, Serialize};

pub struct MarketLine {
    pub id: i64,
    pub name: String,
    pub currency: String,
    pub clock: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "operator_markets.html")]
struct MarketsPage {
    nav: Nav,
    markets: Vec<MarketLine>,
    csrf: String,
    form_key: String,
    global: bool,
    next: Option<String>,
}

pub async fn markets_page(
    State(web): State<Web>,
    s: Signed,
    Params(p): Params<CursorParam>,
) -> PageResult {
    if s.caller.role != Role::Operator {
        return Err(crate::page::forbidden("this page needs an operator token"));
    }
    let markets = web
        .svc
        .markets(&s.caller, p.cursor.as_deref(), Some(MARKETS_PER_PAGE))
        .await?;
    Ok(render(&MarketsPage {
        nav: Nav {
            title: "Operator".into(),
            who: Some(s.who(None)),
            current: "operate",
            ..Nav::default()
        },
        next: markets
            .next_cursor
            .map(|cur| format!("/operator?cursor={}", crate::format::url_encode(&cur))),
        markets: markets
            .items
            .into_iter()
            .map(|m| MarketLine {
                id: m.id,
                clock: m.clock_mode.to_string(),
                created: time(m.created_at),
                name: m.name,
                currency: m.currency,
            })
            .collect(),
        csrf: s.csrf.clone(),
        form_key: new_form_key(),
        global: s.caller.market.is_none(),
    }))
}

#[derive(Deserialize, Serialize)]
pub struct MarketForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    name: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    clock: String,
}

pub async fn create_market(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Form(f): Form<MarketForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(&f.idem, "/operator/markets", &f)?;
    let req = CreateMarket {
        name: f.name.clone(),
        currency: if f.currency.trim().is_empty() {
            "USD".into()
        } else {
            f.currency.clone()
        },
        clock: ClockMode::parse(&f.clock),
        sim_start_ms: None,
        rules: None,
    };
    let reply = web.svc.create_market(&s.caller, req, idem.as_ref()).await?;
    let id = serde_json::from_str::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v["id"].as_i64());
    Ok(match id {
        Some(id) => Redirect::to(&format!("/m/{id}/operate")).into_response(),
        None => Redirect::to("/operator").into_response(),
    })
}

pub struct PersonLine {
    pub id: i64,
    pub name: String,
    pub available: String,
    pub held: String,
    pub frozen: bool,
}

pub struct HookLine {
    pub id: i64,
    pub url: String,
    pub events: String,
    pub active: bool,
    pub deliveries: Vec<DeliveryLine>,
}

pub struct DeliveryLine {
    pub id: i64,
    pub event: String,
    pub status: String,
    pub badge: &'static str,
    pub attempts: i64,
    pub last: String,
}

pub struct SurveyLine {
    pub name: String,
    pub fairness: u8,
    pub satisfaction: u8,
    pub would_pay: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "operate.html")]
struct OperatePage {
    nav: Nav,
    market_id: i64,
    csrf: String,
    verified: bool,
    transfers: usize,
    events: usize,
    breaches: Vec<String>,
    people: Vec<PersonLine>,
    more_people: bool,
    disputes: Vec<DealRow>,
    evidence_counts: Vec<usize>,
    hooks: Vec<HookLine>,
    survey: Vec<SurveyLine>,
    register_key: String,
    fund_key: String,
    revoke_key: String,
    /// The closing time in words, and as the form's editable value (empty when open-ended).
    closing: String,
    closes_value: String,
    closing_key: String,
    /// Listings waiting in the moderation queue (up to a page).
    held_count: String,
    /// The market has a payment provider behind its escrow (a link to the payments page).
    pays: bool,
    /// The chat channel in a sentence, and its kinds for the form.
    channel: String,
    channel_kinds: String,
    channel_key: String,
}

pub async fn market_page(State(web): State<Web>, s: Signed, Ids(m): Ids<i64>) -> PageResult {
    operator_of(&s, m)?;
    let c = ctx(&web.svc, &s, m, "Operate", "operate").await?;
    let cur = c.market.currency.clone();
    let v = web.svc.verify(&s.caller, m).await?;
    let now = c.market.now(web.svc.now());
    let closing = match c.market.rules.closes_at {
        None => "No closing time: the market is open-ended.".to_string(),
        Some(at) if c.market.is_closed(now) => format!(
            "Closed at {}: nothing new is traded; agreed deals still settle.",
            time(at)
        ),
        Some(at) => format!(
            "Closes at {} ({} left).",
            time(at),
            span(c.market.time_left(now).unwrap_or(0))
        ),
    };
    let closes_value = c
        .market
        .rules
        .closes_at
        .map(|at| time(at).trim_end_matches(" UTC").to_string())
        .unwrap_or_default();
    let held = web.svc.held_listings(&s.caller, m, None, Some(100)).await?;
    let held_count = if held.next_cursor.is_some() {
        "100 or more".to_string()
    } else {
        held.items.len().to_string()
    };
    let list = web.svc.participants(&s.caller, m, None, Some(200)).await?;
    let mut people = Vec::new();
    let mut names = Names::new(&web.svc, &s.caller, m);
    for p in &list.items {
        names.remember(p.id, &p.name);
        let b = web.svc.balance(&s.caller, m, p.id).await?;
        people.push(PersonLine {
            id: p.id,
            name: p.name.clone(),
            available: money(b.available, &cur),
            held: money(b.held, &cur),
            frozen: p.mandate.frozen,
        });
    }
    let disputed = web.svc.disputes(&s.caller, m, None, Some(100)).await?.items;
    let mut evidence_counts = Vec::new();
    for d in &disputed {
        // Parties add at most MAX_NOTES_PER_PARTY notes each, so one full page holds them all.
        let notes = web
            .svc
            .deal_notes(
                &s.caller,
                m,
                d.id,
                None,
                Some(haggle_core::limits::MAX_PAGE),
            )
            .await?;
        evidence_counts.push(notes.items.len());
    }
    let disputes = deal_rows(&mut names, &disputed, &cur).await;
    let mut hooks = Vec::new();
    for w in web.svc.webhooks(&s.caller, m, None, Some(50)).await?.items {
        let deliveries = web
            .svc
            .webhook_deliveries(
                &s.caller,
                m,
                w.id,
                None,
                None,
                Some(haggle_core::limits::MAX_PAGE),
            )
            .await?
            .items;
        hooks.push(HookLine {
            id: w.id,
            events: if w.event_types.is_empty() {
                "every event".into()
            } else {
                w.event_types.join(", ")
            },
            url: w.url,
            active: w.active,
            deliveries: deliveries
                .iter()
                .rev()
                .take(20)
                .map(|d| {
                    let status = serde_json::to_value(d.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    DeliveryLine {
                        id: d.id,
                        event: format!("#{} {}", d.event_seq, words(&d.event_type)),
                        badge: match status.as_str() {
                            "delivered" => "ok",
                            "failed" => "bad",
                            _ => "warn",
                        },
                        status,
                        attempts: d.attempts,
                        last: match (&d.last_status_code, &d.last_error) {
                            (_, Some(e)) => e.clone(),
                            (Some(code), None) => format!("HTTP {code}"),
                            _ => String::new(),
                        },
                    }
                })
                .collect(),
        });
    }
    let mut survey = Vec::new();
    for a in web
        .svc
        .survey_answers(&s.caller, m, None, Some(haggle_core::limits::MAX_PAGE))
        .await?
        .items
    {
        survey.push(SurveyLine {
            name: names.person(a.participant_id).await,
            fairness: a.fairness,
            satisfaction: a.satisfaction,
            would_pay: money(a.would_pay, &cur),
            comment: a.comment,
        });
    }
    let (channel, channel_kinds) = crate::channel::summary(&web.svc, &s.caller, m).await?;
    Ok(render(&OperatePage {
        nav: c.nav,
        market_id: m,
        csrf: s.csrf.clone(),
        verified: v.ok(),
        transfers: v.transfers,
        events: v.events,
        breaches: v.breaches,
        more_people: list.next_cursor.is_some(),
        people,
        disputes,
        evidence_counts,
        hooks,
        survey,
        register_key: new_form_key(),
        fund_key: new_form_key(),
        revoke_key: new_form_key(),
        closing,
        closes_value,
        closing_key: new_form_key(),
        held_count,
        pays: c.market.rules.payments.is_some(),
        channel,
        channel_kinds,
        channel_key: new_form_key(),
    }))
}

#[derive(Deserialize, Serialize)]
pub struct ClosingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// `2026-01-12 09:00` (UTC), `+7d` from the market's clock now, or empty for none.
    #[serde(default)]
    closes_at: String,
}

/// Sets, moves or removes the market's closing time.
pub async fn closing_time(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<ClosingForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let input = f.closes_at.trim();
    let closes_at = if input.is_empty() {
        None
    } else if let Some(d) = input.strip_prefix('+') {
        let d = parse_duration(d).ok_or_else(|| {
            bad_request(format!(
                "'{input}' is not a duration from now: write +7d, +12h or +30m"
            ))
        })?;
        Some(market.now(web.svc.now()).saturating_add(d))
    } else {
        Some(parse_utc(input).ok_or_else(|| {
            bad_request(format!(
                "'{input}' is not a time: write 2026-01-12 09:00 (UTC) or +7d"
            ))
        })?)
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/closes_at"), &f)?;
    web.svc
        .set_closing_time(&s.caller, m, closes_at, idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate#closing")).into_response())
}

#[derive(Template)]
#[template(path = "secret.html")]
struct SecretPage {
    nav: Nav,
    market_id: i64,
    heading: String,
    secrets: Vec<(String, String)>,
}

#[derive(Deserialize, Serialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    name: String,
    #[serde(default)]
    budget: String,
}

pub async fn register(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<RegisterForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let c = ctx(&web.svc, &s, m, "New participant", "operate").await?;
    let budget = if f.budget.trim().is_empty() {
        0
    } else {
        parse_money(&f.budget, &c.market.currency).map_err(bad_request)?
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/participants"), &f)?;
    let req = RegisterParticipant {
        name: f.name.clone(),
        budget,
        mandate: None,
    };
    let reply = web
        .svc
        .register_participant(&s.caller, m, req, idem.as_ref())
        .await?;
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    Ok(render(&SecretPage {
        nav: c.nav,
        market_id: m,
        heading: format!(
            "{} joined (participant {})",
            v["participant"]["name"].as_str().unwrap_or(""),
            v["participant"]["id"]
        ),
        secrets: vec![
            ("Agent token".into(), text("agent_token")),
            ("Principal token".into(), text("principal_token")),
        ],
    }))
}

#[derive(Deserialize, Serialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    role: String,
    #[serde(default)]
    participant: String,
    #[serde(default)]
    label: String,
}

pub async fn token(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<TokenForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let c = ctx(&web.svc, &s, m, "New token", "operate").await?;
    let participant = match f.participant.trim() {
        "" => None,
        p => Some(
            p.parse::<i64>()
                .map_err(|_| bad_request("choose a participant"))?,
        ),
    };
    let reply = web
        .svc
        .create_market_token(
            &s.caller,
            m,
            CreateToken {
                role: f.role.clone(),
                label: f.label.clone(),
            },
            participant,
        )
        .await?;
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    Ok(render(&SecretPage {
        nav: c.nav,
        market_id: m,
        heading: format!("A new {} token", f.role),
        secrets: vec![(
            "Token".into(),
            v["token"].as_str().unwrap_or("").to_string(),
        )],
    }))
}

#[derive(Deserialize, Serialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// The token's id, or the secret itself (hashed here, never stored or echoed).
    token: String,
}

/// Revokes one of the market's tokens, named by its id or its secret.
pub async fn revoke(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<RevokeForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let token = f.token.trim();
    let is_id = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let id = if is_id {
        token.to_ascii_lowercase()
    } else {
        haggle_service::hash_token(token)
    };
    // The key covers the id, so the secret never reaches the idempotency record's hash input.
    let keyed = RevokeForm {
        csrf: String::new(),
        idem: f.idem.clone(),
        token: id.clone(),
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/revoke"), &keyed)?;
    web.svc
        .revoke_token(&s.caller, m, &id, idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate#people")).into_response())
}

#[derive(Deserialize, Serialize)]
pub struct FundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    participant: String,
    amount: String,
}

pub async fn fund(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids(m): Ids<i64>,
    Form(f): Form<FundForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let p: i64 = f
        .participant
        .parse()
        .map_err(|_| bad_request("choose a participant"))?;
    let amount = parse_money(&f.amount, &market.currency).map_err(bad_request)?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/operate/fund"), &f)?;
    web.svc
        .fund(&s.caller, m, p, Fund { amount }, idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/operate#people")).into_response())
}

#[derive(Deserialize, Serialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    to_buyer: String,
    #[serde(default)]
    note: String,
}

pub async fn resolve(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, d)): Ids<(i64, i64)>,
    Form(f): Form<ResolveForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let market = web.svc.market(&s.caller, m).await?;
    let ruling = match f.outcome.as_str() {
        "release" => Ruling::Release,
        "refund" => Ruling::Refund,
        "split" => Ruling::Split {
            to_buyer: parse_money(&f.to_buyer, &market.currency)
                .map_err(|e| bad_request(format!("back to the buyer: {e}")))?,
        },
        _ => return Err(bad_request("choose a ruling: release, refund or split")),
    };
    let idem = idem_key(&f.idem, &format!("/m/{m}/deals/{d}/resolve"), &f)?;
    web.svc
        .resolve(
            &s.caller,
            m,
            d,
            ResolveDispute {
                ruling,
                note: f.note.trim().to_string(),
            },
            idem.as_ref(),
        )
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/deals/{d}")).into_response())
}

#[derive(Deserialize, Serialize)]
pub struct EvidenceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    body: String,
}

pub async fn evidence(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    Ids((m, d)): Ids<(i64, i64)>,
    Form(f): Form<EvidenceForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/deals/{d}/evidence"), &f)?;
    web.svc
        .add_evidence(&s.caller, m, d, f.body.clone(), idem.as_ref())
        .await?;
    Ok(Redirect::to(&format!("/m/{m}/deals/{d}")).into_response())
}

#[derive(Deserialize)]
pub struct CsvParams {
    #[serde(default)]
    table: String,
}

/// The settlement report as CSV (the handover list, or net positions), as the caller may read it.
pub async fn settlement_csv(
    State(web): State<Web>,
    s: Signed,
    Ids(m): Ids<i64>,
    crate::page::Params(q): crate::page::Params<CsvParams>,
) -> PageResult<Response> {
    let report = web.svc.settlement(&s.caller, m).await?;
    let (body, name) = match q.table.as_str() {
        "positions" => (report.positions_csv(), "positions"),
        "" | "deals" => (report.deals_csv(), "deals"),
        other => {
            return Err(bad_request(format!(
                "table must be deals or positions, got '{other}'"
            )));
        }
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"market-{m}-{name}.csv\""))
            .expect("ASCII"),
    );
    Ok(r)
}
