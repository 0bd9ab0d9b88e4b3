//! Trading by hand: a signed-in principal posts and withdraws listings, offers, counters,
//! accepts, rejects, messages and walks away, hands over, confirms and disputes for its own
//! participant. Every form calls the service's trading commands with the principal's token and the
//! form's idempotency key, so the agents' rules and mandate apply and the events say who acted.

use crate::Web;
use crate::format::{money, parse_money};
use crate::page::{PageResult, bad_request, forbidden};
use crate::session::{FormOrigin, Signed, idem_key, new_form_key};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use haggle_api::ListingQuery;
use haggle_core::claims::{Dispute, DisputeGrounds};
use haggle_core::negotiation::NewListing;
use haggle_core::{
    Deal, DealStatus, ListingStatus, Offer, Side, Thread, ThreadStatus, TradingMode,
};
use haggle_service::proposals::ProposedStep;
use haggle_service::{Command, NewOffer, Role};
use serde::{Deserialize, Serialize};

/// How many of the principal's own listings the Trade section shows (newest first).
const MY_LISTINGS: u32 = 50;

/// Every by-hand form's fields; each form fills the ones its command needs.
#[derive(Deserialize, Serialize, Default)]
pub struct TradeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// `sell` or `buy` (a wanted ad).
    #[serde(default)]
    side: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    price: String,
    /// A message, a handover note, or a dispute's account.
    #[serde(default)]
    text: String,
    /// A dispute's grounds (`not_received`, `not_as_described`, `other`).
    #[serde(default)]
    grounds: String,
    /// The listing page a thread's form returns to.
    #[serde(default)]
    listing: String,
    /// A trading mode (`agent`, `propose`, `principal`).
    #[serde(default)]
    mode: String,
    /// How a listing's goods change hands: `in_person` (the default) or `shipping`.
    #[serde(default)]
    fulfilment: String,
    /// With `shipping`: what the buyer pays for it on top of the price (empty: free).
    #[serde(default)]
    shipping_price: String,
}

/// The signed-in principal's participant in market `m`; anyone else is refused (agents trade
/// through the API, operators and observers do not trade).
fn principal_of(s: &Signed, m: i64) -> PageResult<i64> {
    match (s.caller.role, s.caller.market, s.caller.participant) {
        (Role::Principal, Some(mm), Some(p)) if mm == m => Ok(p),
        _ => Err(forbidden(
            "trading by hand needs the participant's principal token",
        )),
    }
}

/// Checks the form, then runs the trading command `build` makes as the caller's principal.
async fn run(
    web: &Web,
    s: &Signed,
    origin: &FormOrigin,
    m: i64,
    path: &str,
    f: &TradeForm,
    build: impl FnOnce(i64) -> Command,
) -> PageResult<serde_json::Value> {
    s.check(origin, &f.csrf)?;
    principal_of(s, m)?;
    let idem = idem_key(&f.idem, path, f)?;
    let reply = web
        .svc
        .trade_by_hand(&s.caller, m, build, idem.as_ref())
        .await?;
    Ok(serde_json::from_str(&reply.body).unwrap_or_default())
}

fn to(path: String) -> Response {
    Redirect::to(&path).into_response()
}

async fn price_of(web: &Web, s: &Signed, m: i64, input: &str) -> PageResult<i64> {
    let market = web.svc.market(&s.caller, m).await?;
    parse_money(input, &market.currency).map_err(|e| bad_request(format!("price: {e}")))
}

/// The listing form's fulfilment: in person, or shipped at the given price (the market checks
/// the amount as it does through the API).
async fn fulfilment_of(
    web: &Web,
    s: &Signed,
    m: i64,
    f: &TradeForm,
) -> PageResult<haggle_core::Fulfilment> {
    match f.fulfilment.as_str() {
        "" | "in_person" => Ok(haggle_core::Fulfilment::InPerson),
        "shipping" if f.shipping_price.trim().is_empty() => {
            Ok(haggle_core::Fulfilment::Shipping { shipping_price: 0 })
        }
        "shipping" => {
            let market = web.svc.market(&s.caller, m).await?;
            let shipping_price = parse_money(&f.shipping_price, &market.currency)
                .map_err(|e| bad_request(format!("shipping price: {e}")))?;
            Ok(haggle_core::Fulfilment::Shipping { shipping_price })
        }
        other => Err(bad_request(format!(
            "fulfilment must be in_person or shipping, got '{other}'"
        ))),
    }
}

fn listing_back(m: i64, f: &TradeForm) -> Response {
    match f.listing.parse::<i64>() {
        Ok(l) => to(format!("/m/{m}/listings/{l}?done=1")),
        Err(_) => to(format!("/m/{m}/listings")),
    }
}

fn optional_text(t: &str) -> Option<String> {
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Posts a listing or a wanted ad for the principal's participant.
pub async fn post_listing(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids(m): crate::page::Ids<i64>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let side = Side::parse(&f.side).ok_or_else(|| bad_request("choose for sale or wanted"))?;
    let price = price_of(&web, &s, m, &f.price).await?;
    let fulfilment = fulfilment_of(&web, &s, m, &f).await?;
    let listing = NewListing {
        side,
        title: f.title.trim().to_string(),
        description: f.description.trim().to_string(),
        category: f.category.trim().to_string(),
        condition: f.condition.trim().to_string(),
        price,
        attributes: Default::default(),
        claims: Default::default(),
        true_state: None,
        fulfilment,
        true_transit: None,
    };
    let path = format!("/m/{m}/listings");
    let made = run(&web, &s, &origin, m, &path, &f, |actor| {
        Command::CreateListing { actor, listing }
    })
    .await?;
    Ok(match made["id"].as_i64() {
        Some(l) => to(format!("/m/{m}/listings/{l}?done=1")),
        None => to(path),
    })
}

pub async fn withdraw_listing(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, l)): crate::page::Ids<(i64, i64)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let path = format!("/m/{m}/listings/{l}/withdraw");
    run(&web, &s, &origin, m, &path, &f, |actor| {
        Command::WithdrawListing { actor, listing: l }
    })
    .await?;
    let p = principal_of(&s, m)?;
    Ok(to(format!("/m/{m}/p/{p}?done=withdrawn")))
}

/// Makes an offer on a listing: opens (or reuses) the principal's thread on it with the price
/// and an optional message.
pub async fn make_offer(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, l)): crate::page::Ids<(i64, i64)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let price = price_of(&web, &s, m, &f.price).await?;
    let path = format!("/m/{m}/listings/{l}/offer");
    let message = optional_text(&f.text);
    run(&web, &s, &origin, m, &path, &f, |actor| {
        Command::OpenThread {
            actor,
            listing: l,
            message,
            offer: Some(NewOffer {
                price,
                expires_in_ms: None,
            }),
        }
    })
    .await?;
    Ok(to(format!("/m/{m}/listings/{l}?done=1")))
}

/// A thread's action: `message`, `counter` (a new offer) or `walk_away`.
pub async fn thread_action(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, t, action)): crate::page::Ids<(i64, i64, String)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let path = format!("/m/{m}/threads/{t}/{action}");
    let cmd: Box<dyn FnOnce(i64) -> Command + Send> = match action.as_str() {
        "message" => {
            let body = f.text.trim().to_string();
            Box::new(move |actor| Command::PostMessage {
                actor,
                thread: t,
                body,
            })
        }
        "counter" => {
            let price = price_of(&web, &s, m, &f.price).await?;
            Box::new(move |actor| Command::MakeOffer {
                actor,
                thread: t,
                offer: NewOffer {
                    price,
                    expires_in_ms: None,
                },
            })
        }
        "walk_away" => Box::new(move |actor| Command::WalkAway { actor, thread: t }),
        other => return Err(bad_request(format!("unknown thread action '{other}'"))),
    };
    run(&web, &s, &origin, m, &path, &f, cmd).await?;
    Ok(listing_back(m, &f))
}

/// An offer's answer: `accept` (a deal, shown on its page) or `reject`.
pub async fn offer_action(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, o, action)): crate::page::Ids<(i64, i64, String)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let path = format!("/m/{m}/offers/{o}/{action}");
    let accept = match action.as_str() {
        "accept" => true,
        "reject" => false,
        other => return Err(bad_request(format!("unknown offer action '{other}'"))),
    };
    let done = run(&web, &s, &origin, m, &path, &f, |actor| {
        if accept {
            Command::AcceptOffer { actor, offer: o }
        } else {
            Command::RejectOffer { actor, offer: o }
        }
    })
    .await?;
    Ok(match done["deal"]["id"].as_i64().or(done["id"].as_i64()) {
        Some(d) if accept => to(format!("/m/{m}/deals/{d}")),
        _ => listing_back(m, &f),
    })
}

/// A deal's step by hand: `hand_over` (with a note), `confirm` receipt or `dispute`.
pub async fn deal_step(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, d, step)): crate::page::Ids<(i64, i64, String)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    let path = format!("/m/{m}/deals/{d}/{step}");
    let text = optional_text(&f.text);
    let cmd: Box<dyn FnOnce(i64) -> Command + Send> = match step.as_str() {
        "hand_over" => Box::new(move |actor| Command::HandOver {
            actor,
            deal: d,
            note: text,
        }),
        "confirm" => Box::new(move |actor| Command::ConfirmReceipt { actor, deal: d }),
        "dispute" => {
            let grounds = DisputeGrounds::parse(&f.grounds)
                .ok_or_else(|| bad_request("choose the dispute's grounds"))?;
            let reason = text.ok_or_else(|| bad_request("say what went wrong"))?;
            Box::new(move |actor| Command::Dispute {
                actor,
                deal: d,
                reason,
                grounds: Dispute {
                    grounds,
                    claims: Vec::new(),
                },
            })
        }
        other => return Err(bad_request(format!("unknown deal step '{other}'"))),
    };
    run(&web, &s, &origin, m, &path, &f, cmd).await?;
    Ok(to(format!("/m/{m}/deals/{d}")))
}

/// One of the principal's own active listings, with its withdraw form's key.
pub struct MyListing {
    pub id: i64,
    pub title: String,
    pub side: &'static str,
    pub price: String,
    pub withdraw_key: String,
}

/// A proposal (trading mode `propose`) waiting for the principal's decision.
pub struct ProposalRow {
    pub id: i64,
    pub text: String,
    pub listing: Option<i64>,
    pub key_yes: String,
    pub key_no: String,
}

/// The principal page's Trade section: the trading mode, the proposals waiting, the post form's
/// key and the participant's listings.
pub struct TradeSection {
    /// The trading mode's wire name, and the mode form's key.
    pub mode: &'static str,
    pub mode_key: String,
    pub proposals: Vec<ProposalRow>,
    /// The next page of proposals.
    pub more_proposals: Option<String>,
    pub post_key: String,
    pub listings: Vec<MyListing>,
}

/// The Trade section for the signed-in principal of `p`, `None` for anyone else.
pub async fn section(
    web: &Web,
    s: &Signed,
    (m, p): (i64, i64),
    currency: &str,
    proposals_cursor: Option<&str>,
) -> PageResult<Option<TradeSection>> {
    if principal_of(s, m).ok() != Some(p) {
        return Ok(None);
    }
    let q = ListingQuery {
        owner: Some(p),
        status: Some(ListingStatus::Active),
        limit: Some(MY_LISTINGS),
        ..ListingQuery::default()
    };
    let listings = web
        .svc
        .search(&s.caller, m, &q)
        .await?
        .items
        .into_iter()
        .map(|l| MyListing {
            id: l.id,
            side: if l.side == Side::Buy {
                "wanted"
            } else {
                "for sale"
            },
            price: money(l.price, currency),
            title: l.title,
            withdraw_key: new_form_key(),
        })
        .collect();
    let person = web.svc.participant(&s.caller, m, p).await?;
    let page = web
        .svc
        .proposals(&s.caller, m, p, proposals_cursor, Some(MY_LISTINGS))
        .await?;
    Ok(Some(TradeSection {
        mode: person.mandate.trading_mode.as_str(),
        mode_key: new_form_key(),
        proposals: page
            .items
            .iter()
            .map(|v| proposal_row(v, currency))
            .collect(),
        more_proposals: page.next_cursor.map(|c| {
            format!(
                "/m/{m}/p/{p}?proposals={}#trade",
                crate::format::url_encode(&c)
            )
        }),
        post_key: new_form_key(),
        listings,
    }))
}

fn proposal_row(v: &haggle_service::ProposalView, currency: &str) -> ProposalRow {
    let price = v.price.map_or(String::new(), |x| money(x, currency));
    let text = match &v.proposal.step {
        ProposedStep::Offer { message, .. } => format!(
            "Offer {price} on this listing{}",
            message
                .as_ref()
                .map_or(String::new(), |m| format!(", saying “{m}”"))
        ),
        ProposedStep::Counter { .. } => format!("Counter with {price}"),
        ProposedStep::Accept { .. } => format!("Accept the other side's {price}"),
    };
    ProposalRow {
        id: v.proposal.id,
        text,
        listing: v.listing_id,
        key_yes: new_form_key(),
        key_no: new_form_key(),
    }
}

/// The principal sets its participant's trading mode.
pub async fn set_mode(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, p)): crate::page::Ids<(i64, i64)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let mode = TradingMode::parse(&f.mode).ok_or_else(|| bad_request("choose a trading mode"))?;
    let idem = idem_key(&f.idem, &format!("/m/{m}/p/{p}/trading_mode"), &f)?;
    web.svc
        .set_trading_mode(&s.caller, m, p, mode, idem.as_ref())
        .await?;
    Ok(to(format!("/m/{m}/p/{p}?done=mode#trade")))
}

/// The principal confirms (`confirm`: the agent's step runs) or declines a proposal.
pub async fn decide(
    State(web): State<Web>,
    s: Signed,
    origin: FormOrigin,
    crate::page::Ids((m, id, decision)): crate::page::Ids<(i64, i64, String)>,
    crate::page::Form(f): crate::page::Form<TradeForm>,
) -> PageResult {
    s.check(&origin, &f.csrf)?;
    let p = principal_of(&s, m)?;
    let confirm = match decision.as_str() {
        "confirm" => true,
        "decline" => false,
        other => return Err(bad_request(format!("unknown decision '{other}'"))),
    };
    web.svc.decide_proposal(&s.caller, m, id, confirm).await?;
    let done = if confirm {
        "confirmed"
    } else {
        "declined_proposal"
    };
    Ok(to(format!("/m/{m}/p/{p}?done={done}#trade")))
}

/// What the signed-in principal may do in one of its open threads.
pub struct ThreadActions {
    /// The listing page the forms return to.
    pub listing: i64,
    /// The live offer the other side made: it may be accepted or rejected.
    pub answer: Option<(i64, String)>,
    pub message_key: String,
    pub counter_key: String,
    pub accept_key: String,
    pub reject_key: String,
    pub walk_key: String,
}

/// The actions of `t` for the signed-in principal, if it is a party and the thread is open.
pub fn thread_actions(
    s: &Signed,
    m: i64,
    t: &Thread,
    offers: &[Offer],
    currency: &str,
) -> Option<ThreadActions> {
    let p = principal_of(s, m).ok()?;
    if t.status != ThreadStatus::Open || !t.is_party(p) {
        return None;
    }
    let answer = offers
        .iter()
        .find(|o| o.state == haggle_core::OfferState::Live && o.proposer != p)
        .map(|o| (o.id, money(o.price, currency)));
    Some(ThreadActions {
        listing: t.listing_id,
        answer,
        message_key: new_form_key(),
        counter_key: new_form_key(),
        accept_key: new_form_key(),
        reject_key: new_form_key(),
        walk_key: new_form_key(),
    })
}

/// The signed-in principal may make an offer on this listing: it is active and not its own.
pub fn may_offer(s: &Signed, m: i64, owner: i64, status: ListingStatus) -> bool {
    principal_of(s, m).is_ok_and(|p| p != owner) && status == ListingStatus::Active
}

/// The deal's steps the signed-in principal may take by hand now.
pub struct DealActions {
    pub hand_over: bool,
    pub confirm: bool,
    pub dispute: bool,
    pub key: String,
    pub dispute_key: String,
}

pub fn deal_actions(s: &Signed, m: i64, d: &Deal) -> Option<DealActions> {
    let p = principal_of(s, m).ok()?;
    let (seller, buyer) = (d.seller == p, d.buyer == p);
    let hand_over = seller && d.status == DealStatus::Agreed;
    let confirm = buyer && d.status == DealStatus::HandedOver;
    let dispute = buyer && matches!(d.status, DealStatus::Agreed | DealStatus::HandedOver);
    (hand_over || confirm || dispute).then(|| DealActions {
        hand_over,
        confirm,
        dispute,
        key: new_form_key(),
        dispute_key: new_form_key(),
    })
}
