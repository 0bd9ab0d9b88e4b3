//! Reports of one run (spec: experiments.md, Reports), written into an output folder:
//!
//! - `results.json`: the scenario's summary, the top-level `efficiency` (allocative efficiency,
//!   `null` without a benchmark) and every [`Metrics`] field; byte-identical for identical
//!   inputs (no clock, sorted maps);
//! - `deals.csv`: one row per deal (item, seller, buyer, brains, price, floor, valuation,
//!   surpluses, ...);
//! - `participants.csv`: one row per participant (its settlement);
//! - `report.html`: self-contained (inline CSS, SVG charts drawn with [`crate::charts`], no
//!   external assets), the askama template `templates/run_report.html` (every text escaped): summary, price against reference per deal, surplus by brain, deals
//!   over time, the distribution of the seller's share, the deal table and each participant's
//!   settlement.
//!
//! Wall-clock figures are kept out of all of these: [`write_timing`] writes them, as given by
//! the caller, to `timing.json`.

pub use crate::charts::escape;
use crate::charts::{Plot, colors_for, empty_chart, legend, tick_money, ticks};
use crate::metrics::{DealMetrics, Metrics};
use crate::scenario::Scenario;
use haggle_api::haggle_core::settlement::spreadsheet_safe;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

/// The scenario as summarised in `results.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub seed: u64,
    pub currency: String,
    pub participants: usize,
    pub items: usize,
    /// Wanted units (Σ quantity).
    pub wants: u64,
    pub budget_default: i64,
    /// Σ of the participants' budgets.
    pub total_budget: i64,
}

impl ScenarioSummary {
    pub fn of(scenario: &Scenario) -> ScenarioSummary {
        ScenarioSummary {
            name: scenario.name.clone(),
            seed: scenario.seed,
            currency: scenario.currency.clone(),
            participants: scenario.profiles.len(),
            items: scenario.item_count(),
            wants: scenario
                .profiles
                .iter()
                .flat_map(|p| p.want.iter().map(|w| u64::from(w.quantity)))
                .sum(),
            budget_default: scenario.budget_default,
            total_budget: scenario.profiles.iter().map(|p| p.budget).sum(),
        }
    }
}

/// The content of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Allocative efficiency: welfare / maximum welfare.
    pub efficiency: Option<f64>,
    pub scenario: ScenarioSummary,
    pub metrics: Metrics,
}

/// Wall-clock figures of a run, measured by the caller (kept apart from the deterministic
/// results).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Whole run, in milliseconds.
    pub total_ms: f64,
    /// Named phases (e.g. `efficiency`, `agents`, `report`), in milliseconds.
    #[serde(default)]
    pub phases_ms: BTreeMap<String, f64>,
    /// Anything else worth keeping (host, build profile, ...).
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
}

/// The files [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub results_json: PathBuf,
    pub deals_csv: PathBuf,
    pub participants_csv: PathBuf,
    pub report_html: PathBuf,
}

/// Writes `results.json`, `deals.csv`, `participants.csv` and `report.html` into `dir`
/// (created if missing).
pub fn write_report(dir: &Path, scenario: &Scenario, metrics: &Metrics) -> io::Result<ReportFiles> {
    std::fs::create_dir_all(dir)?;
    let files = ReportFiles {
        results_json: dir.join("results.json"),
        deals_csv: dir.join("deals.csv"),
        participants_csv: dir.join("participants.csv"),
        report_html: dir.join("report.html"),
    };
    std::fs::write(&files.results_json, results_json(scenario, metrics))?;
    std::fs::write(&files.deals_csv, deals_csv(metrics))?;
    std::fs::write(&files.participants_csv, participants_csv(metrics))?;
    std::fs::write(&files.report_html, report_html(scenario, metrics))?;
    Ok(files)
}

/// Writes `timing.json` into `dir` (created if missing).
pub fn write_timing(dir: &Path, timing: &Timing) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("timing.json");
    let mut text = serde_json::to_string_pretty(timing).map_err(io::Error::other)?;
    text.push('\n');
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The text of `results.json`.
pub fn results_json(scenario: &Scenario, metrics: &Metrics) -> String {
    let results = Results {
        efficiency: metrics.market.allocative_efficiency,
        scenario: ScenarioSummary::of(scenario),
        metrics: metrics.clone(),
    };
    let mut s = serde_json::to_string_pretty(&results).expect("results serialise");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// CSV

pub(crate) fn opt_i(x: Option<i64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

pub(crate) fn opt_f(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// CSV text of `header` and `rows` (the csv crate's quoting, `\n` line ends). Every cell is
/// spreadsheet-safe: text that a spreadsheet would run as a formula (an arm, brain or participant
/// name beginning with `=`, `+`, `-`, `@`) gets a leading `'`; numbers, negative ones too, stay.
pub(crate) fn csv(header: &[&str], rows: Vec<Vec<String>>) -> String {
    // Not flexible: a row of another length than its header is a bug in the table's writer
    // (`runs.csv` once named three per-arm columns its rows never had); writing to memory
    // cannot fail otherwise.
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(header).expect("CSV header");
    for row in rows {
        w.write_record(row.iter().map(|c| spreadsheet_safe(c).into_owned()))
            .expect("CSV row");
    }
    String::from_utf8(w.into_inner().expect("CSV to memory")).expect("CSV of UTF-8 is UTF-8")
}

/// The text of `deals.csv`: money in minor units, shares as fractions.
pub fn deals_csv(metrics: &Metrics) -> String {
    let header = [
        "deal_id",
        "listing_id",
        "item_id",
        "item_type",
        "want_id",
        "seller",
        "seller_brain",
        "buyer",
        "buyer_brain",
        "status",
        "counted",
        "price",
        "floor",
        "valuation",
        "ask",
        "reference",
        "seller_surplus",
        "buyer_surplus",
        "welfare",
        "seller_share",
        "nash_distance",
        "irrational",
        "unwanted",
        "created_at",
        "offers",
        "time_to_deal_ms",
    ];
    let rows = metrics
        .deals
        .iter()
        .map(|d| {
            vec![
                d.deal_id.to_string(),
                d.listing_id.to_string(),
                d.item_id.clone().unwrap_or_default(),
                d.item_type.clone().unwrap_or_default(),
                d.want_id.clone().unwrap_or_default(),
                d.seller.clone(),
                d.seller_brain.clone(),
                d.buyer.clone(),
                d.buyer_brain.clone(),
                d.status.as_str().to_string(),
                d.counted.to_string(),
                d.price.to_string(),
                opt_i(d.floor),
                d.valuation.to_string(),
                opt_i(d.ask),
                opt_i(d.reference),
                opt_i(d.seller_surplus),
                d.buyer_surplus.to_string(),
                opt_i(d.welfare),
                opt_f(d.seller_share),
                opt_i(d.nash_distance),
                d.irrational.to_string(),
                d.unwanted.to_string(),
                d.created_at.to_string(),
                d.offers.to_string(),
                opt_i(d.time_to_deal_ms),
            ]
        })
        .collect();
    csv(&header, rows)
}

/// The text of `participants.csv`: each participant's settlement (minor units).
pub fn participants_csv(metrics: &Metrics) -> String {
    let header = [
        "participant",
        "participant_id",
        "brain",
        "budget",
        "items",
        "items_sold",
        "revenue",
        "seller_surplus",
        "wants",
        "wants_met",
        "bought",
        "spent",
        "buyer_surplus",
        "net_cash",
        "final_cash",
        "irrational_deals",
        "unwanted_deals",
        "refusals",
    ];
    let rows = metrics
        .participants
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                opt_i(p.participant_id),
                p.brain.clone(),
                p.budget.to_string(),
                p.items.to_string(),
                p.items_sold.to_string(),
                p.revenue.to_string(),
                p.seller_surplus.to_string(),
                p.wants.to_string(),
                p.wants_met.to_string(),
                p.bought.to_string(),
                p.spent.to_string(),
                p.buyer_surplus.to_string(),
                p.net_cash.to_string(),
                p.final_cash.to_string(),
                p.irrational_deals.to_string(),
                p.unwanted_deals.to_string(),
                p.refusals.values().sum::<u64>().to_string(),
            ]
        })
        .collect();
    csv(&header, rows)
}

// ---------------------------------------------------------------------------------------------
// HTML

/// Money in minor units as text, e.g. `$12.50`, `-€3.00`, `12.50 CHF`.
pub fn money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    let body = format!("{}.{:02}", a / 100, a % 100);
    match currency {
        "USD" => format!("{sign}${body}"),
        "EUR" => format!("{sign}€{body}"),
        "GBP" => format!("{sign}£{body}"),
        other => format!("{sign}{body} {other}"),
    }
}

pub(crate) fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", v * 100.0))
}

pub(crate) fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
}

fn brain_colors(metrics: &Metrics) -> BTreeMap<String, &'static str> {
    colors_for(metrics.brains.keys())
}

/// Price against the item type's reference price (or the asking price), one dot per deal,
/// coloured by the seller's brain; the diagonal is price = reference.
fn chart_price_vs_reference(metrics: &Metrics) -> String {
    let label = "Price against reference price";
    let deals: Vec<(&DealMetrics, i64)> = metrics
        .deals
        .iter()
        .filter(|d| d.counted)
        .filter_map(|d| Some((d, d.reference.or(d.ask)?)))
        .collect();
    if deals.is_empty() {
        return empty_chart(label);
    }
    let cur = &metrics.currency;
    let max = deals
        .iter()
        .map(|(d, r)| d.price.max(*r))
        .max()
        .unwrap_or(1) as f64
        * 1.05;
    let plot = Plot::new((0.0, max), (0.0, max));
    let t = ticks(0.0, max, 6);
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let fmt = |v: f64| tick_money(v.round() as i64, cur);
    plot.axes(
        &mut svg,
        "reference price (or ask)",
        "price",
        &fmt,
        &fmt,
        &t,
        &t,
    );
    let _ = write!(
        svg,
        r##"<line class="ref" stroke="#aaa" stroke-dasharray="4 3" x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"##,
        plot.px(0.0),
        plot.py(0.0),
        plot.px(max),
        plot.py(max)
    );
    let colors = brain_colors(metrics);
    for (d, r) in deals {
        let c = colors.get(&d.seller_brain).copied().unwrap_or("#333");
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{}</title></circle>"#,
            plot.px(r as f64),
            plot.py(d.price as f64),
            escape(&format!(
                "deal {}: {} — {} (ref {})",
                d.deal_id,
                d.item_id.as_deref().unwrap_or("?"),
                money(d.price, cur),
                money(r, cur)
            ))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Total seller and buyer surplus of each brain (bars; negative below the axis).
fn chart_surplus_by_brain(metrics: &Metrics) -> String {
    let label = "Surplus by brain";
    if metrics.brains.is_empty() || metrics.market.deals == 0 {
        return empty_chart(label);
    }
    let cur = &metrics.currency;
    let vals: Vec<i64> = metrics
        .brains
        .values()
        .flat_map(|a| [a.seller_surplus, a.buyer_surplus])
        .collect();
    let lo = (*vals.iter().min().unwrap_or(&0)).min(0) as f64;
    let hi = (*vals.iter().max().unwrap_or(&0)).max(0) as f64;
    let pad = (hi - lo).max(1.0) * 0.05;
    let n = metrics.brains.len() as f64;
    let plot = Plot::new((0.0, n), (lo - if lo < 0.0 { pad } else { 0.0 }, hi + pad));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let yt = ticks(plot.y.0, plot.y.1, 6);
    let fy = |v: f64| tick_money(v.round() as i64, cur);
    plot.axes(
        &mut svg,
        "brain",
        "surplus",
        &|_| String::new(),
        &fy,
        &[],
        &yt,
    );
    let zero = plot.py(0.0);
    let _ = write!(
        svg,
        r##"<line class="axis0" stroke="#444" x1="{}" y1="{zero:.1}" x2="{}" y2="{zero:.1}"/>"##,
        plot.left,
        plot.w - plot.right
    );
    let slot = (plot.px(1.0) - plot.px(0.0)).max(1.0);
    let bar = slot * 0.35;
    for (k, (brain, a)) in metrics.brains.iter().enumerate() {
        let x = plot.px(k as f64) + slot * 0.12;
        for (j, (v, color, what)) in [
            (a.seller_surplus, "#4e79a7", "as seller"),
            (a.buyer_surplus, "#f28e2b", "as buyer"),
        ]
        .into_iter()
        .enumerate()
        {
            let y = plot.py(v as f64);
            let (top, height) = if y < zero {
                (y, zero - y)
            } else {
                (zero, y - zero)
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{top:.1}" width="{bar:.1}" height="{height:.1}" fill="{color}"><title>{}</title></rect>"#,
                x + j as f64 * bar,
                escape(&format!("{brain} {what}: {}", money(v, cur)))
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + bar,
            plot.h - plot.bottom + 16.0,
            escape(brain)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Cumulative number of deals over the market clock.
fn chart_deals_over_time(metrics: &Metrics) -> String {
    let label = "Deals over time";
    let mut times: Vec<i64> = metrics
        .deals
        .iter()
        .filter(|d| d.counted)
        .map(|d| d.created_at)
        .collect();
    if times.is_empty() {
        return empty_chart(label);
    }
    times.sort_unstable();
    let t0 = metrics.market.started_at.min(times[0]);
    let end = times[times.len() - 1].max(t0 + metrics.market.simulated_ms);
    let span = (end - t0).max(1) as f64;
    let (unit, unit_ms) = if span > 3.0 * 86_400_000.0 {
        ("days", 86_400_000.0)
    } else {
        ("hours", 3_600_000.0)
    };
    let xmax = span / unit_ms;
    let plot = Plot::new((0.0, xmax), (0.0, times.len() as f64 * 1.05));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let xt = ticks(0.0, xmax, 6);
    let yt: Vec<f64> = ticks(0.0, times.len() as f64, 5)
        .into_iter()
        .filter(|v| v.fract() == 0.0)
        .collect();
    plot.axes(
        &mut svg,
        &format!("simulated {unit} since the start"),
        "deals (cumulative)",
        &|v| format!("{v}"),
        &|v| format!("{v}"),
        &xt,
        &yt,
    );
    let mut path = format!("M{:.1},{:.1}", plot.px(0.0), plot.py(0.0));
    for (k, &t) in times.iter().enumerate() {
        let x = plot.px((t - t0) as f64 / unit_ms);
        let _ = write!(
            path,
            " L{x:.1},{:.1} L{x:.1},{:.1}",
            plot.py(k as f64),
            plot.py((k + 1) as f64)
        );
    }
    let _ = write!(
        svg,
        r##"<path d="{path}" fill="none" stroke="#4e79a7" stroke-width="2"/></svg>"##
    );
    svg
}

/// Histogram of the seller's share σ: ten bins over [0, 1], plus below 0 and above 1
/// (irrational prices).
fn chart_share_histogram(metrics: &Metrics) -> String {
    let label = "Distribution of the seller's share";
    let shares: Vec<f64> = metrics
        .deals
        .iter()
        .filter(|d| d.counted)
        .filter_map(|d| d.seller_share)
        .collect();
    if shares.is_empty() {
        return empty_chart(label);
    }
    let mut bins = [0usize; 12];
    for s in &shares {
        let b = if *s < 0.0 {
            0
        } else if *s > 1.0 {
            11
        } else {
            1 + ((s * 10.0).floor() as usize).min(9)
        };
        bins[b] += 1;
    }
    let names: Vec<String> = std::iter::once("<0".to_string())
        .chain((0..10).map(|i| format!("{:.1}", i as f64 / 10.0)))
        .chain(std::iter::once(">1".to_string()))
        .collect();
    let top = *bins.iter().max().unwrap_or(&1) as f64;
    let plot = Plot::new((0.0, 12.0), (0.0, top * 1.1));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let yt: Vec<f64> = ticks(0.0, top, 5)
        .into_iter()
        .filter(|v| v.fract() == 0.0)
        .collect();
    plot.axes(
        &mut svg,
        "seller's share σ = (p − r)/(v − r)",
        "deals",
        &|_| String::new(),
        &|v| format!("{v}"),
        &[],
        &yt,
    );
    let w = plot.px(1.0) - plot.px(0.0);
    for (k, &n) in bins.iter().enumerate() {
        let x = plot.px(k as f64);
        let y = plot.py(n as f64);
        let color = if k == 0 || k == 11 {
            "#e15759"
        } else {
            "#59a14f"
        };
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + 1.0,
            (w - 2.0).max(1.0),
            plot.py(0.0) - y,
            escape(&format!("{}: {n} deals", names[k])),
            x + w / 2.0,
            plot.h - plot.bottom + 16.0,
            escape(&names[k])
        );
    }
    svg.push_str("</svg>");
    svg
}

pub(crate) const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6;position:sticky;top:0}td.t,th.t{text-align:left}tr.bad td{background:#fdecea}tr.void td{color:#999}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.5em}
figure{margin:0}figcaption{font-weight:600;margin-bottom:.3em}svg{width:100%;height:auto;font-size:11px}
svg .axis line{stroke:#888}svg line.grid{stroke:#eee}svg line.ref{stroke:#aaa;stroke-dasharray:4 3}svg line.axis0{stroke:#444}
svg text{fill:#444}.legend span{margin-right:1em}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.note{color:#666}.scroll{overflow-x:auto;max-width:100%}td{white-space:nowrap}";

/// A table of a report page: its head, which columns are text (left-aligned), its rows.
pub(crate) struct Table {
    pub(crate) head: Vec<String>,
    pub(crate) left: Vec<usize>,
    pub(crate) rows: Vec<Row>,
}

impl Table {
    /// A table whose first column is text.
    pub(crate) fn new(head: &[&str], rows: Vec<Row>) -> Table {
        Table {
            head: head.iter().map(|h| h.to_string()).collect(),
            left: vec![0],
            rows,
        }
    }

    pub(crate) fn is_left(&self, column: &usize) -> bool {
        self.left.contains(column)
    }
}

/// A table row: its class (`bad`, `void`) and cells.
pub(crate) struct Row {
    pub(crate) class: Option<&'static str>,
    pub(crate) cells: Vec<Cell>,
}

impl Row {
    pub(crate) fn new(cells: Vec<String>) -> Row {
        Row {
            class: None,
            cells: cells.into_iter().map(Cell::from).collect(),
        }
    }

    pub(crate) fn with_class(mut self, class: Option<&'static str>) -> Row {
        self.class = class;
        self
    }
}

/// A table cell: text, a link when `href` is given, and a suffix after it.
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) href: Option<String>,
    pub(crate) after: &'static str,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell {
            text,
            href: None,
            after: "",
        }
    }
}

/// A chart of a report page: the SVG and legend are HTML (made by [`crate::charts`]), the
/// caption text.
pub(crate) struct Figure {
    pub(crate) caption: String,
    pub(crate) svg: String,
    pub(crate) legend: String,
    pub(crate) caption_after: bool,
}

impl Figure {
    pub(crate) fn new(caption: &str, svg: String, legend: String) -> Figure {
        Figure {
            caption: caption.to_string(),
            svg,
            legend,
            caption_after: false,
        }
    }
}

/// A legend of fixed entries (name, colour).
fn fixed_legend(entries: &[(&str, &str)]) -> String {
    let spans: Vec<String> = entries
        .iter()
        .map(|(name, c)| format!(r#"<span><i style="background:{c}"></i>{name}</span>"#))
        .collect();
    format!(r#"<p class="legend">{}</p>"#, spans.join(" "))
}

/// The page `report.html` (templates/run_report.html).
#[derive(askama::Template)]
#[template(path = "run_report.html")]
struct RunReport<'a> {
    css: &'a str,
    title: String,
    scenario_name: &'a str,
    seed: u64,
    participants: usize,
    items: usize,
    currency: &'a str,
    summary: Vec<(&'static str, String)>,
    brains: Table,
    charts: Vec<Figure>,
    deals: Table,
    settlement: Table,
}

/// The self-contained `report.html`.
pub fn report_html(scenario: &Scenario, metrics: &Metrics) -> String {
    let page = RunReport {
        css: CSS,
        title: format!("Haggle run report: {}", metrics.scenario),
        scenario_name: &scenario.name,
        seed: scenario.seed,
        participants: scenario.profiles.len(),
        items: scenario.item_count(),
        currency: &metrics.currency,
        summary: summary_rows(metrics),
        brains: brains_table(metrics),
        charts: run_charts(metrics),
        deals: deals_table(metrics),
        settlement: settlement_table(metrics),
    };
    render(&page)
}

/// A page's HTML, ending in a newline like every file the lab writes.
pub(crate) fn render(page: &impl askama::Template) -> String {
    // Rendering writes into a String and the templates call no fallible filter.
    let mut html = page.render().expect("a report page renders into a String");
    html.push('\n');
    html
}

fn money_or(v: Option<i64>, cur: &str, none: &str) -> String {
    v.map_or(none.into(), |v| money(v, cur))
}

/// The summary: the market's figures, one row each.
fn summary_rows(metrics: &Metrics) -> Vec<(&'static str, String)> {
    let m = &metrics.market;
    let cur = &metrics.currency;
    let bound_note = if m.max_welfare_exact {
        "exact".to_string()
    } else {
        format!(
            "not proven optimal; bound {}",
            money(m.max_welfare_upper_bound, cur)
        )
    };
    let mut rows: Vec<(&'static str, String)> = vec![
        ("Allocative efficiency", pct(m.allocative_efficiency)),
        ("Welfare (sum of v − r)", money(m.welfare, cur)),
        (
            "Maximum welfare",
            format!("{} ({})", money(m.max_welfare, cur), bound_note),
        ),
        (
            "Deals (not counted)",
            format!("{} ({})", m.deals, m.deals_not_counted),
        ),
        ("Gross volume", money(m.gross_volume, cur)),
        (
            "Seller / buyer surplus",
            format!(
                "{} / {}",
                money(m.seller_surplus, cur),
                money(m.buyer_surplus, cur)
            ),
        ),
    ];
    rows.extend(activity_rows(&metrics.market));
    rows.extend(conduct_rows(metrics));
    // Shown with adversaries in the market (a reckless seller) or once any such refusal
    // happened, so a default run's report keeps its rows.
    if m.sales_refused_below_seller_minimum > 0
        || metrics.brains.keys().any(|b| b.starts_with("adversary:"))
    {
        rows.push((
            "Sales attempted below seller limits (refused)",
            m.sales_refused_below_seller_minimum.to_string(),
        ));
    }
    rows
}

/// The summary's rows on the market's activity: listings, threads, wants met, items sold.
fn activity_rows(m: &crate::metrics::MarketMetrics) -> Vec<(&'static str, String)> {
    vec![
        (
            "Listings (sell / wanted)",
            format!("{} ({} / {})", m.listings, m.sell_listings, m.buy_listings),
        ),
        (
            "Threads ending in a deal",
            format!(
                "{} of {} ({})",
                m.threads_with_deal,
                m.threads,
                pct(m.agreement_rate)
            ),
        ),
        (
            "… of feasible pairs (v ≥ r)",
            format!(
                "{} of {} ({})",
                m.feasible_threads_with_deal,
                m.feasible_threads,
                pct(m.agreement_rate_feasible)
            ),
        ),
        (
            "Wants met",
            format!(
                "{} of {} ({})",
                m.wants_met,
                m.wants,
                pct(m.share_wants_met)
            ),
        ),
        (
            "Items sold",
            format!(
                "{} of {} ({})",
                m.items_sold,
                m.items,
                pct(m.share_items_sold)
            ),
        ),
    ]
}

/// The summary's rows on how deals were struck: prices, irrational and unwanted deals,
/// first offers, time, refusals.
fn conduct_rows(metrics: &Metrics) -> Vec<(&'static str, String)> {
    let m = &metrics.market;
    let cur = &metrics.currency;
    vec![
        ("Mean seller share σ", num(m.mean_seller_share)),
        (
            "Mean distance to the Nash price",
            money_or(m.mean_nash_distance, cur, "–"),
        ),
        (
            "Median / mean price",
            format!(
                "{} / {}",
                money_or(m.median_price, cur, "–"),
                money_or(m.mean_price, cur, "–")
            ),
        ),
        (
            "Irrational deals (p < r or p > v)",
            format!(
                "{} ({} below floor, {} above valuation)",
                m.irrational_deals, m.below_floor_deals, m.above_valuation_deals
            ),
        ),
        (
            "Unwanted / duplicate-type deals",
            format!("{} / {}", m.unwanted_deals, m.owned_type_deals),
        ),
        (
            "First-proposal bias",
            format!(
                "{} ({} of {})",
                pct(m.first_proposal_bias),
                m.first_offer_wins,
                m.first_offer_deals
            ),
        ),
        (
            "First offer / ask; correlation with price",
            format!(
                "{}; {}",
                num(m.mean_first_offer_to_ask),
                num(m.first_offer_price_correlation)
            ),
        ),
        (
            "Offers; mean per deal",
            format!("{}; {}", m.offers, num(m.mean_offers_per_deal)),
        ),
        (
            "Time to deal (median / mean)",
            format!(
                "{} / {}",
                duration(m.median_time_to_deal_ms),
                duration(m.mean_time_to_deal_ms)
            ),
        ),
        (
            "Rounds; simulated time",
            format!("{}; {}", m.rounds, duration(Some(m.simulated_ms))),
        ),
        (
            "Refusals",
            format!(
                "{} {}",
                m.refusals,
                m.refusals_by_code
                    .iter()
                    .map(|(c, n)| format!("{c}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ]
}

fn brains_table(metrics: &Metrics) -> Table {
    let cur = &metrics.currency;
    let head = [
        "brain",
        "participants",
        "deals as seller",
        "seller surplus",
        "mean σ as seller",
        "deals as buyer",
        "buyer surplus",
        "mean 1 − σ as buyer",
        "irrational",
        "refusals",
    ];
    let rows = metrics.brains.iter().map(|(b, a)| {
        Row::new(vec![
            b.clone(),
            a.participants.to_string(),
            a.deals_as_seller.to_string(),
            money(a.seller_surplus, cur),
            num(a.mean_share_as_seller),
            a.deals_as_buyer.to_string(),
            money(a.buyer_surplus, cur),
            num(a.mean_share_as_buyer),
            a.irrational_deals.to_string(),
            a.refusals.to_string(),
        ])
    });
    Table::new(&head, rows.collect())
}

fn run_charts(metrics: &Metrics) -> Vec<Figure> {
    let colors = brain_colors(metrics);
    vec![
        Figure::new(
            "Price against reference, by deal",
            chart_price_vs_reference(metrics),
            legend(&colors, "seller's brain"),
        ),
        Figure::new(
            "Surplus by brain",
            chart_surplus_by_brain(metrics),
            fixed_legend(&[("as seller", "#4e79a7"), ("as buyer", "#f28e2b")]),
        ),
        Figure::new(
            "Deals over time",
            chart_deals_over_time(metrics),
            String::new(),
        ),
        Figure::new(
            "Seller's share of the deal's welfare",
            chart_share_histogram(metrics),
            fixed_legend(&[("irrational (outside 0–1)", "#e15759")]),
        ),
    ]
}

fn deals_table(metrics: &Metrics) -> Table {
    let cur = &metrics.currency;
    let head = [
        "deal",
        "item",
        "seller (brain)",
        "buyer (brain)",
        "price",
        "floor r",
        "valuation v",
        "seller surplus",
        "buyer surplus",
        "σ",
        "offers",
        "status",
    ];
    let rows = metrics.deals.iter().map(|d| {
        let class = if !d.counted {
            Some("void")
        } else if d.irrational || d.unwanted {
            Some("bad")
        } else {
            None
        };
        let item = format!(
            "{}{}",
            d.item_id.as_deref().unwrap_or("?"),
            d.item_type
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
        Row::new(vec![
            d.deal_id.to_string(),
            item,
            format!("{} ({})", d.seller, d.seller_brain),
            format!("{} ({})", d.buyer, d.buyer_brain),
            money(d.price, cur),
            money_or(d.floor, cur, "?"),
            money(d.valuation, cur),
            money_or(d.seller_surplus, cur, "?"),
            money(d.buyer_surplus, cur),
            num(d.seller_share),
            d.offers.to_string(),
            d.status.as_str().to_string(),
        ])
        .with_class(class)
    });
    Table {
        left: vec![1, 2, 3, 11],
        ..Table::new(&head, rows.collect())
    }
}

fn settlement_table(metrics: &Metrics) -> Table {
    let cur = &metrics.currency;
    let head = [
        "participant",
        "brain",
        "budget",
        "sold",
        "revenue",
        "seller surplus",
        "bought",
        "spent",
        "buyer surplus",
        "wants met",
        "net cash",
        "final cash",
        "refusals",
    ];
    let rows = metrics.participants.iter().map(|(name, p)| {
        Row::new(vec![
            name.clone(),
            p.brain.clone(),
            money(p.budget, cur),
            format!("{} of {}", p.items_sold, p.items),
            money(p.revenue, cur),
            money(p.seller_surplus, cur),
            p.bought.to_string(),
            money(p.spent, cur),
            money(p.buyer_surplus, cur),
            format!("{} of {}", p.wants_met, p.wants),
            money(p.net_cash, cur),
            money(p.final_cash, cur),
            p.refusals.values().sum::<u64>().to_string(),
        ])
    });
    Table {
        left: vec![0, 1],
        ..Table::new(&head, rows.collect())
    }
}

pub(crate) fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms.abs() >= 86_400_000 => format!("{:.1} d", ms as f64 / 86_400_000.0),
        Some(ms) if ms.abs() >= 3_600_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        Some(ms) if ms.abs() >= 60_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}
