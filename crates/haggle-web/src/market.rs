//! Pages everyone in a market reads: the home page (markets the token may enter), listings and a
//! listing with its threads (as far as the viewer may see them), the deals board, one deal, and
//! the participants with their reputation.

use crate::Web;
use crate::format::{self, Names, money, time};
use crate::page::{Ids, Nav, PageResult, Params, ctx, render};
use crate::session::{MaybeSigned, Signed, new_form_key};
use askama::Template;
use axum::extract::State;
use haggle_api::{ListingQuery, ListingSort};
use haggle_core::{DealStatus, ErrorCode, ListingStatus, OfferState, Side};
use haggle_service::Role;
use serde::Deserialize;

pub struct MarketRow {
    pub id: i64,
    pub name: String,
    pub currency: String,
    pub clock: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Nav,
    signed_in: bool,
    markets: Vec<MarketRow>,
    participant: Option<i64>,
    global_operator: bool,
    next: Option<String>,
}

/// Markets shown per page of the home and operator pages.
pub const MARKETS_PER_PAGE: u32 = 100;

pub async fn home(
    State(web): State<Web>,
    signed: MaybeSigned,
    Params(p): Params<CursorParam>,
) -> PageResult {
    let Some(s) = signed.0 else {
        return Ok(render(&HomePage {
            nav: Nav {
                title: "Welcome".into(),
                current: "home",
                ..Nav::default()
            },
            signed_in: false,
            markets: Vec::new(),
            participant: None,
            global_operator: false,
            next: None,
        }));
    };
    let markets = web
        .svc
        .markets(&s.caller, p.cursor.as_deref(), Some(MARKETS_PER_PAGE))
        .await?;
    let name = match (s.caller.market, s.caller.participant) {
        (Some(m), Some(p)) => web
            .svc
            .participant(&s.caller, m, p)
            .await
            .ok()
            .map(|p| p.name),
        _ => None,
    };
    Ok(render(&HomePage {
        nav: Nav {
            title: "Markets".into(),
            who: Some(s.who(name.as_deref())),
            current: "home",
            ..Nav::default()
        },
        signed_in: true,
        next: markets
            .next_cursor
            .map(|cur| format!("/?cursor={}", format::url_encode(&cur))),
        markets: markets
            .items
            .into_iter()
            .map(|m| MarketRow {
                id: m.id,
                clock: m.clock_mode.to_string(),
                name: m.name,
                currency: m.currency,
            })
            .collect(),
        participant: s.caller.participant,
        global_operator: s.caller.role == Role::Operator && s.caller.market.is_none(),
    }))
}

pub struct ListingRow {
    pub id: i64,
    pub title: String,
    pub side: &'static str,
    pub category: String,
    pub price: String,
    pub owner: String,
    pub status: String,
    pub posted: String,
}

#[derive(Template)]
#[template(path = "listings.html")]
struct ListingsPage {
    nav: Nav,
    market_id: i64,
    q: String,
    category: String,
    side: String,
    sort: String,
    status: String,
    rows: Vec<ListingRow>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ListingParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    status: String,
    cursor: Option<String>,
}

fn side_word(s: Side) -> &'static str {
    match s {
        Side::Sell => "for sale",
        Side::Buy => "wanted",
    }
}

pub async fn listings(
    State(web): State<Web>,
    s: Signed,
    Ids(m): Ids<i64>,
    Params(p): Params<ListingParams>,
) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Listings", "listings").await?;
    let blank = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    let q = ListingQuery {
        q: blank(&p.q),
        category: blank(&p.category),
        side: Side::parse(&p.side),
        status: ListingStatus::parse(&p.status),
        sort: match p.sort.as_str() {
            "cheapest" => Some(ListingSort::Cheapest),
            "newest" => Some(ListingSort::Newest),
            // Relevance when words are given, else newest.
            _ => None,
        },
        limit: Some(50),
        cursor: p.cursor.clone(),
        ..ListingQuery::default()
    };
    let page = web.svc.search(&s.caller, m, &q).await?;
    let mut names = Names::new(&web.svc, &s.caller, m);
    let mut rows = Vec::new();
    for l in page.items {
        rows.push(ListingRow {
            id: l.id,
            side: side_word(l.side),
            price: money(l.price, &c.market.currency),
            owner: names.person(l.owner).await,
            status: l.status.to_string(),
            posted: time(l.created_at),
            category: l.category,
            title: l.title,
        });
    }
    let next = page.next_cursor.map(|cur| {
        format!(
            "/m/{m}/listings?q={}&category={}&side={}&sort={}&status={}&cursor={}",
            format::url_encode(&p.q),
            format::url_encode(&p.category),
            format::url_encode(&p.side),
            format::url_encode(&p.sort),
            format::url_encode(&p.status),
            format::url_encode(&cur)
        )
    });
    Ok(render(&ListingsPage {
        nav: c.nav,
        market_id: m,
        q: p.q,
        category: p.category,
        side: p.side,
        sort: p.sort,
        status: p.status,
        rows,
        next,
    }))
}

/// One line of a thread: a message or an offer, in order.
pub struct ThreadLine {
    pub at: String,
    pub who: String,
    pub text: String,
}

pub struct ThreadView {
    pub id: i64,
    pub counterparty: String,
    /// The thread's state in words ("open", "agreed", "ended without a deal").
    pub status: String,
    /// The deal an agreed thread struck (its page).
    pub deal: Option<i64>,
    pub lines: Vec<ThreadLine>,
    /// What the signed-in principal may do in it by hand.
    pub actions: Option<crate::trade::ThreadActions>,
}

/// A thread's state as people read it: a thread that ended without agreement says so, whatever
/// its machine status (`broken`, `timed_out`, `void`).
fn thread_words(status: haggle_core::ThreadStatus) -> String {
    match status {
        haggle_core::ThreadStatus::Open => "open".into(),
        haggle_core::ThreadStatus::Agreed => "agreed".into(),
        haggle_core::ThreadStatus::Broken => "ended without a deal".into(),
        haggle_core::ThreadStatus::TimedOut => {
            "ended without a deal (out of time or offers)".into()
        }
        haggle_core::ThreadStatus::Void => "ended without a deal (voided)".into(),
    }
}

#[derive(Template)]
#[template(path = "listing.html")]
struct ListingPage {
    nav: Nav,
    market_id: i64,
    id: i64,
    title: String,
    description: String,
    side: &'static str,
    category: String,
    condition: String,
    price: String,
    status: String,
    owner: String,
    owner_id: i64,
    reputation: String,
    attributes: Vec<(String, String)>,
    /// The seller's claims, one line each.
    claims: Vec<String>,
    threads: Vec<ThreadView>,
    threads_note: Option<String>,
    csrf: String,
    /// The signed-in principal may make an offer: the form's key.
    offer_key: Option<String>,
    /// The page follows a by-hand step that succeeded.
    done: bool,
}

#[derive(Deserialize, Default)]
pub struct DoneParam {
    #[serde(default)]
    done: String,
}

fn reputation_words(r: &haggle_core::lifecycle::Reputation) -> String {
    let stars = r.average_x100.map_or("no ratings yet".to_string(), |a| {
        format!("{}.{:02} of 5 from {} ratings", a / 100, a % 100, r.ratings)
    });
    let mut words = format!(
        "{stars}; {} completed deals, {} cancellations, {} disputes lost",
        r.completed_deals, r.cancellations, r.disputes_lost
    );
    // The trust record (trust.md, Reputation), once there is one to show.
    if r.inspected_sales > 0 || r.disputes_against > 0 {
        words.push_str(&format!(
            "; claims matched at inspection in {} of {} sales{}; {} disputes opened against them, \
             upheld: {} not as described, {} not received, {} other",
            r.accurate_sales,
            r.inspected_sales,
            r.claim_accuracy_pct
                .map_or(String::new(), |p| format!(" ({p}%)")),
            r.disputes_against,
            r.upheld_not_as_described,
            r.upheld_not_received,
            r.upheld_other
        ));
    }
    if let Some(ms) = r.median_handover_delay_ms {
        words.push_str(&format!(
            "; median handover {:.1} hours after agreement",
            ms as f64 / 3_600_000.0
        ));
    }
    words
}

/// A listing's claims, one line each, as the seller's.
pub fn claim_lines(c: &haggle_core::Claims) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(x) = c.condition {
        out.push(format!("condition: {}", x.as_str().replace('_', " ")));
    }
    if let Some(x) = c.working {
        out.push(format!("working: {x}"));
    }
    if !c.included.is_empty() {
        out.push(format!("included: {}", c.included.join(", ")));
    }
    for (k, v) in &c.details {
        out.push(format!("{k}: {v}"));
    }
    out
}

pub async fn listing(
    State(web): State<Web>,
    s: Signed,
    Ids((m, id)): Ids<(i64, i64)>,
    Params(q): Params<DoneParam>,
) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Listing", "listings").await?;
    let v = web.svc.listing_view(&s.caller, m, id).await?;
    let cur = &c.market.currency;
    let mut names = Names::new(&web.svc, &s.caller, m);
    let (threads, threads_note) = match web
        .svc
        .threads(
            &s.caller,
            m,
            Some(id),
            haggle_api::ThreadFilter::default(),
            None,
            Some(100),
        )
        .await
    {
        Ok(list) => {
            let mut out = Vec::new();
            for t in list
                .items
                .iter()
                .map(|i| &i.thread)
                .filter(|t| t.listing_id == id)
            {
                if let Some(tv) = thread_view(&web, &s, m, t, &mut names, cur).await {
                    out.push(tv);
                }
            }
            let note = out.is_empty().then(|| match s.caller.role {
                Role::Agent | Role::Principal => {
                    "No negotiation of yours on this listing (other people's are private).".into()
                }
                _ => "No negotiations on this listing yet.".into(),
            });
            (out, note)
        }
        Err(e) if e.code() == ErrorCode::Forbidden => {
            (Vec::new(), Some(e.body.error.message.clone()))
        }
        Err(e) => return Err(e.into()),
    };
    let l = v.listing;
    Ok(render(&ListingPage {
        nav: c.nav,
        market_id: m,
        id: l.id,
        side: side_word(l.side),
        price: money(l.price, cur),
        status: l.status.to_string(),
        owner: names.person(l.owner).await,
        owner_id: l.owner,
        reputation: reputation_words(&v.owner_reputation),
        attributes: l.attributes.into_iter().collect(),
        claims: claim_lines(&l.claims),
        title: l.title,
        description: l.description,
        category: l.category,
        condition: l.condition,
        csrf: s.csrf.clone(),
        // A principal already negotiating here offers in its thread's own form.
        offer_key: (crate::trade::may_offer(&s, m, l.owner, l.status)
            && !threads.iter().any(|t| t.actions.is_some()))
        .then(new_form_key),
        threads,
        threads_note,
        done: !q.done.is_empty(),
    }))
}

/// One thread as the listing page shows it: its messages and offers in order, and what the
/// signed-in principal may do in it (`None` if the viewer may not read it).
async fn thread_view(
    web: &Web,
    s: &Signed,
    m: i64,
    t: &haggle_core::Thread,
    names: &mut Names<'_>,
    cur: &str,
) -> Option<ThreadView> {
    let tv = web.svc.thread(&s.caller, m, t.id).await.ok()?;
    let d = tv.detail;
    let mut lines: Vec<(i64, i64, ThreadLine)> = Vec::new();
    for msg in &d.messages {
        lines.push((
            msg.created_at,
            msg.id,
            ThreadLine {
                at: time(msg.created_at),
                who: names.person(msg.author).await,
                text: msg.body.clone(),
            },
        ));
    }
    for o in &d.offers {
        let state = if o.state == OfferState::Live {
            format!("live until {}", time(o.expires_at))
        } else {
            o.state.to_string()
        };
        lines.push((
            o.created_at,
            o.id,
            ThreadLine {
                at: time(o.created_at),
                who: names.person(o.proposer).await,
                text: format!("offers {} ({state})", money(o.price, cur)),
            },
        ));
    }
    lines.sort_by_key(|(at, id, _)| (*at, *id));
    let deal = if t.status == haggle_core::ThreadStatus::Agreed {
        web.svc
            .deal_of_thread(&s.caller, m, t.id)
            .await
            .ok()
            .flatten()
            .map(|d| d.id)
    } else {
        None
    };
    Some(ThreadView {
        id: t.id,
        counterparty: names.person(t.counterparty).await,
        status: thread_words(t.status),
        deal,
        actions: crate::trade::thread_actions(s, m, t, &d.offers, cur),
        lines: lines.into_iter().map(|(_, _, l)| l).collect(),
    })
}

pub struct DealRow {
    pub id: i64,
    pub title: String,
    pub buyer: String,
    pub seller: String,
    pub price: String,
    pub status: String,
    pub badge: &'static str,
    pub at: String,
}

pub struct SaleRow {
    pub listing: i64,
    pub title: String,
    pub price: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "deals.html")]
struct DealsPage {
    nav: Nav,
    market_id: i64,
    everything: bool,
    rows: Vec<DealRow>,
    sales: Vec<SaleRow>,
    next: Option<String>,
}

pub fn badge(s: DealStatus) -> &'static str {
    match s {
        DealStatus::Completed => "ok",
        DealStatus::Disputed | DealStatus::Refunded | DealStatus::PartiallyRefunded => "bad",
        DealStatus::Cancelled | DealStatus::Declined => "bad",
        _ => "warn",
    }
}

#[derive(Deserialize)]
pub struct CursorParam {
    pub cursor: Option<String>,
}

pub async fn deal_rows(
    names: &mut Names<'_>,
    deals: &[haggle_core::Deal],
    currency: &str,
) -> Vec<DealRow> {
    let mut rows = Vec::new();
    for d in deals {
        rows.push(DealRow {
            id: d.id,
            title: d.snapshot.title.clone(),
            buyer: names.person(d.buyer).await,
            seller: names.person(d.seller).await,
            price: money(d.price, currency),
            status: format::words(d.status.as_str()),
            badge: badge(d.status),
            at: time(d.created_at),
        });
    }
    rows
}

pub async fn deals(
    State(web): State<Web>,
    s: Signed,
    Ids(m): Ids<i64>,
    Params(p): Params<CursorParam>,
) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Deals", "deals").await?;
    let list = web
        .svc
        .deals(&s.caller, m, p.cursor.as_deref(), Some(100))
        .await?;
    let mut names = Names::new(&web.svc, &s.caller, m);
    let rows = deal_rows(&mut names, &list.items, &c.market.currency).await;
    let everything = matches!(s.caller.role, Role::Operator | Role::Observer);
    // Participants see their own deals in full and everyone's sales as the public log shows them.
    let mut sales = Vec::new();
    if !everything {
        for e in web
            .svc
            .recent_events(&s.caller, m, &["listing_sold"], None, Some(100))
            .await?
        {
            // The query asks for `listing_sold` only.
            if let haggle_core::EventBody::ListingSold(p) = e.body {
                sales.push(SaleRow {
                    listing: p.listing_id,
                    title: p.title,
                    price: money(p.price, &c.market.currency),
                    at: time(e.at),
                });
            }
        }
    }
    Ok(render(&DealsPage {
        nav: c.nav,
        market_id: m,
        everything,
        rows,
        sales,
        next: list
            .next_cursor
            .map(|cur| format!("/m/{m}/deals?cursor={}", format::url_encode(&cur))),
    }))
}

pub struct NoteRow {
    pub kind: String,
    pub author: String,
    pub body: String,
    pub at: String,
}

#[derive(Template)]
#[template(path = "deal.html")]
struct DealPage {
    nav: Nav,
    market_id: i64,
    d: DealRow,
    listing_id: i64,
    description: String,
    handover_note: Option<String>,
    confirm_deadline: Option<String>,
    approval_deadline: Option<String>,
    resolution: Option<String>,
    notes: Vec<NoteRow>,
    ratings: Vec<String>,
    can_resolve: bool,
    price_input: String,
    csrf: String,
    form_key: String,
    evidence_key: String,
    /// The seller's claims as they stood when the deal was agreed.
    claims: Vec<String>,
    /// What the inspection found, in words.
    inspection: Option<String>,
    /// The buyer's principal may inspect now: the claims it can report contradicted.
    inspect: Option<Vec<String>>,
    inspect_key: String,
    /// The steps the signed-in principal may take by hand.
    actions: Option<crate::trade::DealActions>,
}

pub async fn deal(State(web): State<Web>, s: Signed, Ids((m, id)): Ids<(i64, i64)>) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Deal", "deals").await?;
    let d = web.svc.deal(&s.caller, m, id).await?;
    let cur = &c.market.currency;
    let mut names = Names::new(&web.svc, &s.caller, m);
    let row = deal_rows(&mut names, std::slice::from_ref(&d), cur)
        .await
        .remove(0);
    let mut notes = Vec::new();
    // Newest first, so the latest evidence is never pushed off the page (each party's notes are
    // bounded, so one page of 500 holds a whole deal's).
    for n in web
        .svc
        .deal_notes(&s.caller, m, id, None, Some(haggle_core::limits::MAX_PAGE))
        .await?
        .items
    {
        notes.push(NoteRow {
            kind: n.kind,
            author: match n.author {
                Some(a) => names.person(a).await,
                None => "operator".into(),
            },
            body: n.body,
            at: time(n.created_at),
        });
    }
    let mut ratings = Vec::new();
    for r in web.svc.deal_ratings(&s.caller, m, id).await? {
        ratings.push(format!(
            "{} rated {}: {} of 5{}",
            names.person(r.rater).await,
            names.person(r.ratee).await,
            r.score,
            if r.comment.is_empty() {
                String::new()
            } else {
                format!(" — “{}”", r.comment)
            }
        ));
    }
    Ok(render(&DealPage {
        nav: c.nav,
        market_id: m,
        listing_id: d.listing_id,
        description: d.snapshot.description.clone(),
        handover_note: d.handover_note.clone(),
        confirm_deadline: d.confirm_deadline.map(time),
        approval_deadline: d.approval_deadline.map(time),
        resolution: d.resolution.as_ref().map(|r| {
            format!(
                "{} back to the buyer, {} to the seller{}",
                money(r.to_buyer, cur),
                money(r.to_seller, cur),
                if r.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.note)
                }
            )
        }),
        can_resolve: d.status == DealStatus::Disputed && s.caller.is_operator_of(m),
        price_input: format::money_input(d.price, cur),
        d: row,
        notes,
        ratings,
        csrf: s.csrf.clone(),
        form_key: new_form_key(),
        evidence_key: new_form_key(),
        claims: claim_lines(&d.snapshot.claims),
        inspection: d.inspection.as_ref().map(|i| {
            let by = match i.source {
                haggle_core::InspectionSource::Simulation => "the simulation",
                haggle_core::InspectionSource::Principal => "the buyer's principal",
            };
            if i.matched() {
                format!("inspected by {by}: as described")
            } else {
                format!(
                    "inspected by {by}: not as described ({})",
                    i.mismatched.join(", ")
                )
            }
        }),
        inspect: (s.caller.role == Role::Principal
            && s.caller.participant == Some(d.buyer)
            && d.status == DealStatus::HandedOver
            && d.inspection.is_none())
        .then(|| d.snapshot.claims.names()),
        inspect_key: new_form_key(),
        actions: crate::trade::deal_actions(&s, m, &d),
    }))
}

pub struct PersonRow {
    pub id: i64,
    /// The viewer may open this participant's page (its own, or as operator or observer).
    pub readable: bool,
    pub name: String,
    pub rating: String,
    pub completed: u32,
    pub cancellations: u32,
    pub disputes_lost: u32,
    /// Inspected sales whose inspection matched every claim, of those inspected.
    pub claim_accuracy: String,
    /// Not-as-described rulings upheld against it.
    pub upheld_not_as_described: u32,
}

#[derive(Template)]
#[template(path = "participants.html")]
struct PeoplePage {
    nav: Nav,
    market_id: i64,
    rows: Vec<PersonRow>,
    next: Option<String>,
}

pub async fn participants(
    State(web): State<Web>,
    s: Signed,
    Ids(m): Ids<i64>,
    Params(p): Params<CursorParam>,
) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Participants", "people").await?;
    let list = web
        .svc
        .participants(&s.caller, m, p.cursor.as_deref(), Some(100))
        .await?;
    let mut rows = Vec::new();
    for person in list.items {
        let r = web.svc.reputation(&s.caller, m, person.id).await?;
        rows.push(PersonRow {
            readable: s.caller.may_read_participant(m, person.id),
            id: person.id,
            name: person.name,
            rating: r.average_x100.map_or("—".into(), |a| {
                format!("{}.{:02} ({})", a / 100, a % 100, r.ratings)
            }),
            completed: r.completed_deals,
            cancellations: r.cancellations,
            disputes_lost: r.disputes_lost,
            claim_accuracy: r.claim_accuracy_pct.map_or("—".into(), |p| {
                format!("{p}% ({} of {})", r.accurate_sales, r.inspected_sales)
            }),
            upheld_not_as_described: r.upheld_not_as_described,
        });
    }
    Ok(render(&PeoplePage {
        nav: c.nav,
        market_id: m,
        rows,
        next: list
            .next_cursor
            .map(|cur| format!("/m/{m}/participants?cursor={}", format::url_encode(&cur))),
    }))
}
