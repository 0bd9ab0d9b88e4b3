//! The market page: its summary and the feed of listings, offers, counters and deals as they
//! happen (like a chat channel), with filters. The page renders the newest events; a live stream
//! of rendered entries (SSE, swapped in by htmx) continues from the newest one the page showed.

use crate::Web;
use crate::format::{self, FeedEntry, Names, describe, kinds_of, money};
use crate::page::{Failure, Ids, PageResult, Params, ctx, render};
use crate::session::Signed;
use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use haggle_api::MarketSummary;
use haggle_core::ClockMode;
use haggle_core::limits::STREAM_BATCH;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

/// How often a live stream also looks for events when no wake-up came (wake-ups come from this
/// process and, on PostgreSQL, from other replicas' announcements).
const POLL: Duration = Duration::from_millis(500);
const PAGE: u32 = 50;

/// The summary as the page shows it.
pub struct SummaryView {
    pub deals: u64,
    pub volume: String,
    pub median: String,
    pub open_deals: u64,
    pub completed_deals: u64,
    pub disputed_deals: u64,
    pub participants: u64,
    pub clock_label: &'static str,
    pub now: String,
    /// "2 d 4 h", "Closed at …" or "No closing time".
    pub time_left: String,
    /// When it closes, while it is still open ("until …"); empty otherwise.
    pub closes: String,
    pub closed: bool,
}

pub fn summary_view(s: &MarketSummary) -> SummaryView {
    SummaryView {
        deals: s.deals,
        volume: money(s.volume, &s.currency),
        median: s
            .median_price
            .map_or("—".to_string(), |p| money(p, &s.currency)),
        open_deals: s.open_deals,
        completed_deals: s.completed_deals,
        disputed_deals: s.disputed_deals,
        participants: s.participants,
        clock_label: match s.clock_mode {
            ClockMode::Simulated => "Simulated clock",
            ClockMode::Real => "Market clock",
        },
        now: format::time(s.now),
        time_left: match (s.closes_at, s.time_left_ms) {
            (Some(at), _) if s.closed => format!("Closed at {}", format::time(at)),
            (Some(_), Some(left)) => format::span(left),
            _ => "No closing time".into(),
        },
        closes: match s.closes_at {
            Some(at) if !s.closed => format!("until {}", format::time(at)),
            _ => String::new(),
        },
        closed: s.closed,
    }
}

/// Events after which the summary is sent again: deals moved, the clock moved, the close.
fn moves_summary(kind: &str) -> bool {
    format::group_of(kind) == "deals"
        || matches!(
            kind,
            "clock_advanced" | "market_closing_set" | "listing_expired"
        )
}

/// Idle polls (of at most `POLL` each) between summaries while a real clock counts down.
const COUNTDOWN_POLLS: u32 = 120;

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryFragment {
    s: SummaryView,
}

#[derive(Template)]
#[template(path = "feed_entry.html")]
struct EntryFragment {
    e: FeedEntry,
}

#[derive(Template)]
#[template(path = "market.html")]
struct MarketPage {
    nav: crate::page::Nav,
    market_id: i64,
    market_name: String,
    s: SummaryView,
    entries: Vec<FeedEntry>,
    /// (value, label, aria-current)
    filters: Vec<(&'static str, &'static str, &'static str)>,
    show: String,
    older: Option<i64>,
    live: bool,
    live_url: String,
    charts: crate::charts::MarketCharts,
}

#[derive(Deserialize)]
pub struct FeedParams {
    #[serde(default)]
    show: String,
    before: Option<i64>,
}

fn show_of(s: &str) -> &'static str {
    match s {
        "listings" => "listings",
        "offers" => "offers",
        "deals" => "deals",
        _ => "all",
    }
}

pub async fn market_page(
    State(web): State<Web>,
    s: Signed,
    Ids(m): Ids<i64>,
    Params(q): Params<FeedParams>,
) -> PageResult {
    let c = ctx(&web.svc, &s, m, "Feed", "feed").await?;
    let show = show_of(&q.show);
    let summary = web.svc.summary(&s.caller, m).await?;
    let events = web
        .svc
        .recent_events(&s.caller, m, kinds_of(show), q.before, Some(PAGE))
        .await?;
    // The stream continues after the newest event this viewer may see, of any kind.
    let head = web
        .svc
        .recent_events(&s.caller, m, &[], None, Some(1))
        .await?
        .first()
        .map_or(0, |e| e.seq);
    let mut names = Names::new(&web.svc, &s.caller, m);
    let mut entries = Vec::with_capacity(events.len());
    for e in &events {
        entries.push(describe(e, &mut names, m, &c.market.currency).await);
    }
    let older = (events.len() as u32 == PAGE)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    let filters = [
        ("all", "Everything"),
        ("listings", "Listings"),
        ("offers", "Offers and counters"),
        ("deals", "Deals"),
    ]
    .into_iter()
    .map(|(v, l)| (v, l, if v == show { "true" } else { "false" }))
    .collect();
    let charts = crate::charts::market(&web.svc, &s.caller, m, &c.market.currency).await?;
    Ok(render(&MarketPage {
        charts,
        nav: c.nav,
        market_id: m,
        market_name: c.market.name.clone(),
        s: summary_view(&summary),
        entries,
        filters,
        show: show.to_string(),
        older,
        live: q.before.is_none(),
        live_url: format!("/m/{m}/live?show={show}&after={head}"),
    }))
}

#[derive(Deserialize)]
pub struct LiveParams {
    #[serde(default)]
    show: String,
    #[serde(default)]
    after: i64,
}

struct LiveState {
    web: Web,
    signed: Signed,
    market: i64,
    currency: String,
    show: &'static str,
    after: i64,
    rx: tokio::sync::broadcast::Receiver<i64>,
    out: VecDeque<SseEvent>,
    /// A real-clock market that has yet to close: its time left changes without any event.
    counting_down: bool,
    idle_polls: u32,
}

/// The live feed: each new event the viewer may see (of the filter's kinds) as a rendered entry
/// (`entry`), and the summary again after deals move (`summary`). Reconnects resume from
/// `Last-Event-ID`.
pub async fn live(
    State(web): State<Web>,
    signed: Signed,
    Ids(m): Ids<i64>,
    Params(q): Params<LiveParams>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let market = web.svc.market(&signed.caller, m).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let counting_down =
        market.clock_mode == ClockMode::Real && market.time_left(web.svc.now()).unwrap_or(0) > 0;
    let revoked = web.svc.clone().until_revoked(signed.caller.scope.clone());
    let state = LiveState {
        counting_down,
        idle_polls: 0,
        rx: web.svc.subscribe(),
        web,
        signed,
        market: m,
        currency: market.currency,
        show: show_of(&q.show),
        after: resume.unwrap_or(q.after),
        out: VecDeque::new(),
    };
    // A signed-out session keeps its token; a revoked one ends the stream within seconds.
    Ok(Sse::new(live_stream(state).take_until(revoked))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn live_stream(state: LiveState) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.out.pop_front() {
                return Some((Ok(e), st));
            }
            // Every read goes through the service with the visitor's rights, as the page did.
            let page = match st
                .web
                .svc
                .events(&st.signed.caller, st.market, st.after, Some(STREAM_BATCH))
                .await
            {
                Ok(p) => p,
                // Signed out, revoked or the store is down: end; the browser reconnects.
                Err(_) => return None,
            };
            if page.events.is_empty() {
                let _ = tokio::time::timeout(POLL, st.rx.recv()).await;
                st.idle_polls += 1;
                if st.counting_down && st.idle_polls >= COUNTDOWN_POLLS {
                    st.idle_polls = 0;
                    if let Some(e) = summary_event(&mut st).await {
                        st.out.push_back(e);
                    }
                }
                continue;
            }
            st.after = page.next_after;
            let kinds = kinds_of(st.show);
            let mut names = Names::new(&st.web.svc, &st.signed.caller, st.market);
            let mut summary_moved = false;
            for e in &page.events {
                summary_moved |= moves_summary(e.kind());
                if !kinds.contains(&e.kind()) {
                    continue;
                }
                let entry = describe(e, &mut names, st.market, &st.currency).await;
                let Ok(html) = (EntryFragment { e: entry }).render() else {
                    return None;
                };
                st.out.push_back(
                    SseEvent::default()
                        .event("entry")
                        .id(e.seq.to_string())
                        .data(html),
                );
            }
            if summary_moved && let Some(e) = summary_event(&mut st).await {
                st.out.push_back(e);
            }
        }
    })
}

/// The summary rendered for the live stream (`summary`), read with the visitor's rights.
async fn summary_event(st: &mut LiveState) -> Option<SseEvent> {
    let s = st
        .web
        .svc
        .summary(&st.signed.caller, st.market)
        .await
        .ok()?;
    st.counting_down = s.clock_mode == ClockMode::Real && !s.closed && s.closes_at.is_some();
    let html = (SummaryFragment {
        s: summary_view(&s),
    })
    .render()
    .ok()?;
    Some(SseEvent::default().event("summary").data(html))
}
