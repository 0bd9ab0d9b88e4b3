//! Charts on the web pages, server-rendered SVG (no JavaScript, no assets from elsewhere),
//! drawn with the lab report's primitives (`haggle_lab::charts`): deals and volume over time,
//! prices against the asking price and deals by category on the market page; a participant's
//! available cash over time on My agent. The data are the service's reads, as the pages use them.

use haggle_core::limits::{CHART_ROWS, MAX_EVENTS, MAX_PAGE};
use haggle_core::{Account, Deal, EventBody};
use haggle_lab::charts::{Plot, empty_chart, escape, tick_money, ticks};
use haggle_service::story::money;
use haggle_service::{ApiResult, Caller, Service};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const DAY_MS: f64 = 86_400_000.0;
const HOUR_MS: f64 = 3_600_000.0;

/// The market page's charts (SVG markup), and whether the deals were more than a chart reads.
pub struct MarketCharts {
    pub deals: String,
    pub volume: String,
    pub prices: String,
    pub categories: String,
    pub truncated: bool,
}

/// Hours or days, whichever reads better over `span_ms`.
fn unit(span_ms: f64) -> (&'static str, f64) {
    if span_ms > 3.0 * DAY_MS {
        ("days", DAY_MS)
    } else {
        ("hours", HOUR_MS)
    }
}

/// A step line of `(time, value)` points in time order, from the first point's time.
pub fn step_chart(
    label: &str,
    ylabel: &str,
    points: &[(i64, i64)],
    fy: &dyn Fn(f64) -> String,
) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return empty_chart(label);
    };
    let t0 = first.0;
    let (name, per) = unit((last.0 - t0) as f64);
    let xmax = ((last.0 - t0) as f64 / per).max(1.0);
    let lo = points.iter().map(|p| p.1).min().unwrap_or(0).min(0) as f64;
    let hi = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64 * 1.05;
    let plot = Plot::new((0.0, xmax), (lo, hi));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let xlabel = format!("market {name} since the first");
    plot.axes(
        &mut svg,
        &xlabel,
        ylabel,
        &|v| format!("{v}"),
        fy,
        &ticks(0.0, xmax, 6),
        &ticks(lo, hi, 5),
    );
    let mut path = format!("M{:.1},{:.1}", plot.px(0.0), plot.py(first.1 as f64));
    let mut prev = first.1;
    for &(t, v) in points {
        let x = plot.px((t - t0) as f64 / per);
        let _ = write!(
            path,
            " L{x:.1},{:.1} L{x:.1},{:.1}",
            plot.py(prev as f64),
            plot.py(v as f64)
        );
        prev = v;
    }
    let _ = write!(
        svg,
        r##"<path class="series" data-series="{}" d="{path}" fill="none" stroke="#4e79a7" stroke-width="2"/></svg>"##,
        escape(label)
    );
    svg
}

/// Bars, one per `(name, value, title)`, in the order given.
pub fn bar_chart(
    label: &str,
    ylabel: &str,
    bars: &[(String, i64, String)],
    fy: &dyn Fn(f64) -> String,
) -> String {
    if bars.is_empty() {
        return empty_chart(label);
    }
    let hi = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let plot = Plot::new((0.0, bars.len() as f64), (0.0, hi));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    plot.axes(
        &mut svg,
        "",
        ylabel,
        &|_| String::new(),
        fy,
        &[],
        &ticks(0.0, hi, 5),
    );
    let w = plot.px(1.0) - plot.px(0.0);
    for (k, (name, v, title)) in bars.iter().enumerate() {
        let (x, y) = (plot.px(k as f64), plot.py(*v as f64));
        let _ = write!(
            svg,
            r##"<rect class="bar" data-series="{}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#59a14f"><title>{}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            escape(name),
            x + 1.0,
            (w - 2.0).max(1.0),
            plot.py(0.0) - y,
            escape(title),
            x + w / 2.0,
            plot.h - plot.bottom + 16.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One dot per deal: its price against the listing's asking price (the market keeps no other
/// reference for an item), with the diagonal price = ask.
fn price_chart(deals: &[&Deal], cur: &str) -> String {
    let label = "Prices against the asking price";
    if deals.is_empty() {
        return empty_chart(label);
    }
    let max = deals
        .iter()
        .map(|d| d.price.max(d.snapshot.price))
        .max()
        .unwrap_or(1) as f64
        * 1.05;
    let plot = Plot::new((0.0, max), (0.0, max));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let fmt = |v: f64| tick_money(v.round() as i64, cur);
    let t = ticks(0.0, max, 6);
    plot.axes(&mut svg, "asking price", "price agreed", &fmt, &fmt, &t, &t);
    let _ = write!(
        svg,
        r##"<line class="ref" stroke="#aaa" stroke-dasharray="4 3" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"##,
        plot.px(0.0),
        plot.py(0.0),
        plot.px(max),
        plot.py(max)
    );
    for d in deals {
        let _ = write!(
            svg,
            r##"<circle class="dot" data-series="deal" cx="{:.1}" cy="{:.1}" r="3.5" fill="#4e79a7"><title>{}</title></circle>"##,
            plot.px(d.snapshot.price as f64),
            plot.py(d.price as f64),
            escape(&format!(
                "deal {}: “{}” for {} (asked {})",
                d.id,
                d.snapshot.title,
                money(d.price, cur),
                money(d.snapshot.price, cur)
            ))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Deals and their volume per day (or hour) of the market clock, from the first deal.
fn volume_bars(deals: &[&Deal], cur: &str) -> Vec<(String, i64, String)> {
    let (Some(first), Some(last)) = (deals.first(), deals.last()) else {
        return Vec::new();
    };
    let (name, per) = unit((last.created_at - first.created_at) as f64);
    let mut by: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
    for d in deals {
        let slot = by
            .entry(((d.created_at - first.created_at) as f64 / per) as i64)
            .or_default();
        slot.0 += d.price;
        slot.1 += 1;
    }
    let unit = name.trim_end_matches('s');
    by.into_iter()
        .map(|(k, (v, n))| {
            (
                format!("{}", k + 1),
                v,
                format!("{unit} {}: {n} deals, {}", k + 1, money(v, cur)),
            )
        })
        .collect()
}

/// Deals per category, most first.
fn category_bars(deals: &[&Deal], cur: &str) -> Vec<(String, i64, String)> {
    let mut by: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for d in deals {
        let slot = by.entry(d.snapshot.category.as_str()).or_default();
        slot.0 += 1;
        slot.1 += d.price;
    }
    let mut bars: Vec<(String, i64, String)> = by
        .into_iter()
        .map(|(c, (n, v))| {
            (
                c.to_string(),
                n,
                format!("{c}: {n} deals, {}", money(v, cur)),
            )
        })
        .collect();
    bars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    bars
}

/// The market page's charts, from the deals the viewer may read (at most `CHART_ROWS`).
pub async fn market(svc: &Service, caller: &Caller, m: i64, cur: &str) -> ApiResult<MarketCharts> {
    let mut all: Vec<Deal> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = svc
            .deals(caller, m, cursor.as_deref(), Some(MAX_PAGE))
            .await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(c) if all.len() < CHART_ROWS => cursor = Some(c),
            Some(_) => break,
            None => break,
        }
    }
    let truncated = all.len() >= CHART_ROWS;
    let mut deals: Vec<&Deal> = all.iter().filter(|d| d.status.is_spent()).collect();
    deals.sort_by_key(|d| (d.created_at, d.id));
    let cumulative: Vec<(i64, i64)> = deals
        .iter()
        .enumerate()
        .map(|(k, d)| (d.created_at, k as i64 + 1))
        .collect();
    let count = |v: f64| format!("{v}");
    let money_tick = |v: f64| tick_money(v.round() as i64, cur);
    Ok(MarketCharts {
        deals: step_chart("Deals over time", "deals (cumulative)", &cumulative, &count),
        volume: bar_chart(
            "Volume over time",
            "volume",
            &volume_bars(&deals, cur),
            &money_tick,
        ),
        prices: price_chart(&deals, cur),
        categories: bar_chart(
            "Deals by category",
            "deals",
            &category_bars(&deals, cur),
            &count,
        ),
        truncated,
    })
}

/// A participant's available cash over time, from its ledger transfers in its own feed (the
/// newest `CHART_ROWS` events), as a step line.
pub async fn balance(
    svc: &Service,
    caller: &Caller,
    m: i64,
    p: i64,
    cur: &str,
) -> ApiResult<String> {
    let mut moves: Vec<(i64, i64)> = Vec::new();
    let (mut before, mut read) = (None, 0);
    while read < CHART_ROWS {
        let page = svc
            .recent_activity(caller, m, p, before, Some(MAX_EVENTS))
            .await?;
        read += page.len();
        for e in &page {
            if let EventBody::TransferBooked(t) = &e.body {
                let sign = i64::from(t.credit == Account::Available(p))
                    - i64::from(t.debit == Account::Available(p));
                moves.push((e.at, sign * t.amount));
            }
        }
        match page.last() {
            Some(e) if page.len() == MAX_EVENTS as usize => before = Some(e.seq),
            _ => break,
        }
    }
    moves.reverse();
    // Older transfers than the chart read are unknown: the line starts from today's balance
    // worked backwards, so its end is the participant's available cash now.
    let now = svc.balance(caller, m, p).await?.available;
    let mut level = now - moves.iter().map(|m| m.1).sum::<i64>();
    let mut points = Vec::with_capacity(moves.len());
    for (at, delta) in moves {
        level += delta;
        points.push((at, level));
    }
    Ok(step_chart(
        "Available cash over time",
        "available",
        &points,
        &|v| tick_money(v.round() as i64, cur),
    ))
}
