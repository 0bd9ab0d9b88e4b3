//! Reports of a whole experiment (spec: experiments.md, Reports), in the experiment's folder:
//!
//! - `analysis.json`: the [`Analysis`] (every run's market metrics, arms, participants,
//!   comparisons with sample sizes, intervals and p-values, same-item pairs, regression,
//!   warnings);
//! - `runs.csv`, `arms.csv`, `comparisons.csv`, `same_item.csv`, `participants_by_arm.csv`;
//!   with repeated markets also `sessions.csv` (per run and session) and `learning_curve.csv`;
//! - `report.html`: self-contained (inline CSS, SVG charts, the one-run report's style; the
//!   askama template `templates/experiment_report.html`):
//!   warnings first, the arms, the comparisons, charts (seller share by arm, surplus
//!   distributions, deals over time per run, same-item price pairs), the same-item table, the
//!   regression, with repeated markets the learning curve (surplus per participant by session and
//!   arm, efficiency by session and run group, and its table), the runs and the participants by
//!   arm, with links to each run's own report.
//!
//! [`write_comparison`] puts several experiments side by side (`compare.html`, from
//! `templates/compare.html`, and `compare.json`).

use crate::analysis::{Analysis, ArmSummary, OUTCOMES, RUN_OUTCOMES, RunData};
use crate::charts::{
    Plot, colors_for, distinct_colors, empty_chart, escape, legend, tick_money, ticks,
};
use crate::experiment::{Experiment, usd};
use crate::report::{CSS, Cell, Figure, Row, Table, csv, money, num, opt_f, opt_i, pct, render};
use crate::stats::{Comparison, PermutationTest};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

fn json_text<T: serde::Serialize>(v: &T) -> io::Result<String> {
    let mut s = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    s.push('\n');
    Ok(s)
}

fn outcome_label(name: &str) -> &str {
    OUTCOMES
        .iter()
        .chain(RUN_OUTCOMES)
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, l)| l)
}

/// Whether an outcome is money (shown as such).
fn is_money(name: &str) -> bool {
    matches!(
        name,
        "seller_surplus" | "buyer_surplus" | "surplus" | "welfare" | "mean_price"
    )
}

fn value(name: &str, v: Option<f64>, cur: &str) -> String {
    match v {
        None => "–".into(),
        Some(x) if is_money(name) => money(x.round() as i64, cur),
        Some(x) if matches!(name, "efficiency" | "agreement_rate") => pct(Some(x)),
        Some(x) => format!("{x:.3}"),
    }
}

fn p_text(t: &Option<PermutationTest>) -> String {
    match t {
        None => "–".into(),
        Some(t) => format!(
            "{:.4} ({})",
            t.p_value,
            if t.exact {
                format!("exact, {}", t.permutations)
            } else {
                format!("{} random", t.permutations)
            }
        ),
    }
}

fn holm_text(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p:.4}"))
}

fn ci_text(name: &str, c: &Comparison, cur: &str) -> String {
    c.ci95.map_or("–".into(), |(lo, hi)| {
        format!(
            "[{}, {}]",
            value(name, Some(lo), cur),
            value(name, Some(hi), cur)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// CSV

pub fn runs_csv(a: &Analysis) -> String {
    let header = [
        "run",
        "group",
        "seed",
        "real",
        "arms",
        "deals",
        "gross_volume",
        "welfare",
        "max_welfare",
        "allocative_efficiency",
        "mean_price",
        "agreement_rate",
        "mean_seller_share",
        "irrational_deals",
        "share_wants_met",
        "share_items_sold",
        "first_proposal_bias",
        "refusals",
        "rounds",
        "llm_calls",
        "llm_cost_micro_usd",
    ];
    let rows = a
        .runs
        .iter()
        .map(|r| {
            let m = &r.market;
            vec![
                r.id.clone(),
                r.group.clone(),
                r.seed.to_string(),
                r.real.to_string(),
                r.arm_sizes
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                m.deals.to_string(),
                m.gross_volume.to_string(),
                m.welfare.to_string(),
                m.max_welfare.to_string(),
                opt_f(m.allocative_efficiency),
                opt_i(m.mean_price),
                opt_f(m.agreement_rate),
                opt_f(m.mean_seller_share),
                m.irrational_deals.to_string(),
                opt_f(m.share_wants_met),
                opt_f(m.share_items_sold),
                opt_f(m.first_proposal_bias),
                m.refusals.to_string(),
                m.rounds.to_string(),
                r.llm.calls.to_string(),
                r.llm.cost_micro_usd.to_string(),
            ]
        })
        .collect();
    csv(&header, rows)
}

pub fn arms_csv(a: &Analysis) -> String {
    let header = [
        "arm",
        "brain",
        "runs",
        "participant_runs",
        "deals_as_seller",
        "deals_as_buyer",
        "volume_sold",
        "volume_bought",
        "seller_surplus",
        "buyer_surplus",
        "mean_seller_surplus_per_sale",
        "mean_buyer_surplus_per_purchase",
        "mean_share_as_seller",
        "mean_share_as_buyer",
        "mean_nash_distance_as_seller",
        "deals_per_participant",
        "irrational_deals",
        "unwanted_purchases",
        "refusals",
        "wants",
        "wants_met",
        "items",
        "items_sold",
        "llm_calls",
        "llm_cost_micro_usd",
        "first_mover_rounds",
        "rounds_with_actions",
        "share_of_agents",
    ];
    let rows = a
        .arm_summaries
        .iter()
        .map(|(arm, s)| {
            vec![
                arm.clone(),
                s.brain.clone(),
                s.runs.to_string(),
                s.participant_runs.to_string(),
                s.deals_as_seller.to_string(),
                s.deals_as_buyer.to_string(),
                s.volume_sold.to_string(),
                s.volume_bought.to_string(),
                s.seller_surplus.to_string(),
                s.buyer_surplus.to_string(),
                opt_f(s.mean_seller_surplus_per_sale),
                opt_f(s.mean_buyer_surplus_per_purchase),
                opt_f(s.mean_share_as_seller),
                opt_f(s.mean_share_as_buyer),
                opt_f(s.mean_nash_distance_as_seller),
                opt_f(s.deals_per_participant),
                s.irrational_deals.to_string(),
                s.unwanted_purchases.to_string(),
                s.refusals.to_string(),
                s.wants.to_string(),
                s.wants_met.to_string(),
                s.items.to_string(),
                s.items_sold.to_string(),
                s.llm.calls.to_string(),
                s.llm.cost_micro_usd.to_string(),
                s.first_mover_rounds.to_string(),
                s.rounds_with_actions.to_string(),
                opt_f(s.share_of_agents),
            ]
        })
        .collect();
    csv(&header, rows)
}

/// "40% of rounds (33% of agents)": how often the market applied the arm's action first in a
/// round, beside the arm's share of the agents (a fair order gives about that share).
fn first_to_act(s: &ArmSummary) -> String {
    match (s.first_mover_share(), s.share_of_agents) {
        (Some(first), Some(agents)) => format!(
            "{:.0}% of rounds ({:.0}% of agents)",
            first * 100.0,
            agents * 100.0
        ),
        _ => "–".into(),
    }
}

pub fn comparisons_csv(a: &Analysis) -> String {
    let header = [
        "kind",
        "outcome",
        "first",
        "second",
        "design",
        "n_first",
        "n_second",
        "mean_first",
        "mean_second",
        "difference",
        "ci95_low",
        "ci95_high",
        "p_value",
        "p_exact",
        "p_holm",
        "too_small",
    ];
    let row = |kind: &str,
               outcome: &str,
               f: &str,
               s: &str,
               design: &str,
               c: &Comparison,
               holm: Option<f64>,
               small| {
        vec![
            kind.to_string(),
            outcome.to_string(),
            f.to_string(),
            s.to_string(),
            design.to_string(),
            c.n_first.to_string(),
            c.n_second.to_string(),
            opt_f(c.mean_first),
            opt_f(c.mean_second),
            opt_f(c.difference),
            opt_f(c.ci95.map(|x| x.0)),
            opt_f(c.ci95.map(|x| x.1)),
            opt_f(c.test.map(|t| t.p_value)),
            c.test.map_or(String::new(), |t| t.exact.to_string()),
            opt_f(holm),
            bool::to_string(&small),
        ]
    };
    let mut rows: Vec<Vec<String>> = a
        .comparisons
        .iter()
        .map(|c| {
            row(
                "arms",
                &c.outcome,
                &c.first,
                &c.second,
                &c.design,
                &c.comparison,
                c.p_holm,
                c.too_small,
            )
        })
        .collect();
    rows.extend(a.group_comparisons.iter().map(|c| {
        row(
            "run_groups",
            &c.outcome,
            &c.first,
            &c.second,
            "runs",
            &c.comparison,
            c.p_holm,
            c.too_small,
        )
    }));
    csv(&header, rows)
}

pub fn same_item_csv(a: &Analysis) -> String {
    let header = [
        "side",
        "first",
        "second",
        "item_id",
        "item_type",
        "prices_first",
        "prices_second",
        "mean_first",
        "mean_second",
        "difference",
    ];
    let join = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
    let rows = a
        .same_item
        .iter()
        .flat_map(|s| {
            s.pairs.iter().map(move |p| {
                vec![
                    s.side.clone(),
                    s.first.clone(),
                    s.second.clone(),
                    p.item_id.clone(),
                    p.item_type.clone().unwrap_or_default(),
                    join(&p.prices_first),
                    join(&p.prices_second),
                    format!("{:.2}", p.mean_first),
                    format!("{:.2}", p.mean_second),
                    format!("{:.2}", p.difference),
                ]
            })
        })
        .collect();
    csv(&header, rows)
}

pub fn participants_csv(a: &Analysis) -> String {
    let header = [
        "participant",
        "arm",
        "runs",
        "sales",
        "purchases",
        "seller_surplus",
        "buyer_surplus",
        "deals_per_run",
        "surplus_per_run",
    ];
    let rows = a
        .participants
        .iter()
        .map(|p| {
            vec![
                p.participant.clone(),
                p.arm.clone(),
                p.runs.to_string(),
                p.sales.to_string(),
                p.purchases.to_string(),
                p.seller_surplus.to_string(),
                p.buyer_surplus.to_string(),
                format!("{:.3}", p.deals_per_run),
                format!("{:.2}", p.surplus_per_run),
            ]
        })
        .collect();
    csv(&header, rows)
}

// ---------------------------------------------------------------------------------------------
// Charts

/// A learning curve: one line per series (an arm or a run group), a value per session.
fn chart_by_session(
    label: &str,
    ylabel: &str,
    series: &[(String, Vec<(u32, f64)>)],
    colors: &BTreeMap<String, &'static str>,
    fy: &dyn Fn(f64) -> String,
) -> String {
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .collect();
    let last = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .max()
        .unwrap_or(1);
    if all.is_empty() {
        return empty_chart(label);
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = (hi - lo).max(1e-9) * 0.05;
    let plot = Plot::new((0.75, f64::from(last) + 0.25), (lo, hi + pad));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let xt: Vec<f64> = (1..=last).map(f64::from).collect();
    plot.axes(
        &mut svg,
        "session",
        ylabel,
        &|v| format!("{v}"),
        fy,
        &xt,
        &ticks(plot.y.0, plot.y.1, 6),
    );
    for (name, points) in series {
        let c = colors.get(name).copied().unwrap_or("#333");
        let path: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { " L" },
                    plot.px(f64::from(*k)),
                    plot.py(*v)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.concat()
        );
        for (k, v) in points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{}</title></circle>"#,
                plot.px(f64::from(*k)),
                plot.py(*v),
                escape(&format!("{name}, session {k}: {}", fy(*v)))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Repeated markets: the learning curve (surplus per participant by session and arm, the
/// market's efficiency by session and run group) and its table.
struct SessionsSection {
    sessions: u32,
    charts: Vec<Figure>,
    table: Table,
}

fn sessions_section(a: &Analysis, c: &crate::sessions::LearningCurve) -> SessionsSection {
    SessionsSection {
        sessions: c.sessions,
        charts: session_charts(a, c),
        table: Table::new(
            &[
                "run group",
                "session",
                "runs",
                "deals",
                "surplus",
                "efficiency",
                "irrational deals",
                "disputes",
                "settled deals on record at start",
            ],
            c.by_group
                .iter()
                .map(|p| {
                    Row::new(vec![
                        p.group.clone(),
                        p.session.to_string(),
                        p.runs.to_string(),
                        format!("{:.1}", p.deals),
                        money(p.surplus.round() as i64, &a.currency),
                        pct(p.efficiency),
                        format!("{:.2}", p.irrational_deals),
                        format!("{:.2}", p.disputes),
                        format!("{:.1}", p.completed_deals_at_start),
                    ])
                })
                .collect(),
        ),
    }
}

/// Surplus per participant by session and arm; efficiency by session and run group.
fn session_charts(a: &Analysis, c: &crate::sessions::LearningCurve) -> Vec<Figure> {
    let cur = &a.currency;
    let arm_colors = arm_colors(a);
    let mut by_arm: BTreeMap<String, Vec<(u32, f64)>> = BTreeMap::new();
    for p in &c.by_arm {
        by_arm
            .entry(p.arm.clone())
            .or_default()
            .push((p.session, p.mean_surplus));
    }
    let mut by_group: BTreeMap<String, Vec<(u32, f64)>> = BTreeMap::new();
    for p in &c.by_group {
        if let Some(e) = p.efficiency {
            by_group
                .entry(p.group.clone())
                .or_default()
                .push((p.session, e));
        }
    }
    let group_colors = colors_for(by_group.keys());
    let surplus = chart_by_session(
        "Surplus per participant by session",
        "surplus per participant",
        &by_arm.into_iter().collect::<Vec<_>>(),
        &arm_colors,
        &|v| tick_money(v.round() as i64, cur),
    );
    let efficiency = chart_by_session(
        "Efficiency by session",
        "allocative efficiency",
        &by_group.into_iter().collect::<Vec<_>>(),
        &group_colors,
        &|v| format!("{:.0}%", v * 100.0),
    );
    vec![
        Figure {
            caption_after: true,
            ..Figure::new(
                "Mean surplus per participant by session, per arm.",
                surplus,
                legend(&arm_colors, "arm"),
            )
        },
        Figure {
            caption_after: true,
            ..Figure::new(
                "Allocative efficiency by session, per run group (mean over runs).",
                efficiency,
                legend(&group_colors, "run group"),
            )
        },
    ]
}

fn arm_colors(a: &Analysis) -> BTreeMap<String, &'static str> {
    colors_for(a.arms.keys())
}

/// A strip chart: one column per arm, one dot per value, the mean as a bar.
fn strip_chart(
    label: &str,
    ylabel: &str,
    columns: &[(String, Vec<f64>)],
    colors: &BTreeMap<String, &'static str>,
    fy: &dyn Fn(f64) -> String,
) -> String {
    let all: Vec<f64> = columns.iter().flat_map(|c| c.1.iter().copied()).collect();
    if all.is_empty() {
        return empty_chart(label);
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = (hi - lo).max(1e-9) * 0.05;
    let plot = Plot::new((0.0, columns.len() as f64), (lo, hi + pad));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    let yt = ticks(plot.y.0, plot.y.1, 6);
    plot.axes(&mut svg, "arm", ylabel, &|_| String::new(), fy, &[], &yt);
    let slot = plot.px(1.0) - plot.px(0.0);
    for (k, (arm, vals)) in columns.iter().enumerate() {
        let c = colors.get(arm).copied().unwrap_or("#333");
        let x0 = plot.px(k as f64);
        for (j, v) in vals.iter().enumerate() {
            // Deterministic jitter spreads the dots over the middle half of the slot.
            let jitter = ((j * 7919) % 101) as f64 / 100.0;
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{c}" fill-opacity="0.55"/>"#,
                x0 + slot * (0.25 + 0.5 * jitter),
                plot.py(*v)
            );
        }
        if let Some(m) = crate::stats::mean(vals) {
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#222" stroke-width="2.5"><title>{}</title></line>"##,
                x0 + slot * 0.15,
                x0 + slot * 0.85,
                escape(&format!("{arm}: mean {} (n = {})", fy(m), vals.len())),
                y = plot.py(m)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + slot / 2.0,
            plot.h - plot.bottom + 16.0,
            escape(&format!("{arm} (n = {})", vals.len()))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One colour per run, each different from the others and from the arms' colours.
fn run_colors(arms: &BTreeMap<String, &'static str>, runs: &[RunData]) -> BTreeMap<String, String> {
    let taken: Vec<&str> = arms.values().copied().collect();
    runs.iter()
        .map(|r| r.plan.id.clone())
        .zip(distinct_colors(runs.len(), &taken))
        .collect()
}

/// Cumulative deals over simulated time, one line per run in the run's colour.
fn chart_deals_over_time(runs: &[RunData], colors: &BTreeMap<String, String>) -> String {
    let label = "Deals over time, per run";
    let series: Vec<(&str, Vec<f64>)> = runs
        .iter()
        .map(|r| {
            let t0 = r.metrics.market.started_at;
            let mut t: Vec<f64> = r
                .metrics
                .deals
                .iter()
                .filter(|d| d.counted)
                .map(|d| (d.created_at - t0) as f64 / 3_600_000.0)
                .collect();
            t.sort_by(f64::total_cmp);
            (r.plan.id.as_str(), t)
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|s| s.1.last().copied())
        .fold(1.0, f64::max);
    let ymax = series.iter().map(|s| s.1.len()).max().unwrap_or(0) as f64;
    if ymax == 0.0 {
        return empty_chart(label);
    }
    let plot = Plot::new((0.0, xmax * 1.02), (0.0, ymax * 1.05));
    let mut svg = String::new();
    plot.open(&mut svg, label);
    plot.axes(
        &mut svg,
        "simulated hours since the start",
        "deals (cumulative)",
        &|v| format!("{v}"),
        &|v| format!("{v}"),
        &ticks(0.0, xmax, 6),
        &ticks(0.0, ymax, 5),
    );
    for (id, times) in &series {
        let c = colors.get(*id).map_or("#333", String::as_str);
        let mut path = format!("M{:.1},{:.1}", plot.px(0.0), plot.py(0.0));
        for (n, t) in times.iter().enumerate() {
            let x = plot.px(*t);
            let _ = write!(
                path,
                " L{x:.1},{:.1} L{x:.1},{:.1}",
                plot.py(n as f64),
                plot.py((n + 1) as f64)
            );
        }
        let _ = write!(
            svg,
            r#"<path d="{path}" fill="none" stroke="{c}" stroke-width="1.5" stroke-opacity="0.8"><title>{}</title></path>"#,
            escape(&format!("{id}: {} deals", times.len()))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Same-item pairs: the item's mean price under the first arm (x) against the second (y).
fn chart_pairs(s: &crate::analysis::SameItem, cur: &str) -> String {
    let label = format!(
        "Same item, {} as {}: price under {} against {}",
        s.first, s.side, s.first, s.second
    );
    if s.pairs.is_empty() {
        return empty_chart(&label);
    }
    let max = s
        .pairs
        .iter()
        .map(|p| p.mean_first.max(p.mean_second))
        .fold(1.0, f64::max)
        * 1.05;
    let plot = Plot::new((0.0, max), (0.0, max));
    let mut svg = String::new();
    plot.open(&mut svg, &label);
    let t = ticks(0.0, max, 6);
    let f = |v: f64| tick_money(v.round() as i64, cur);
    plot.axes(
        &mut svg,
        &format!("price when the {} is {}", s.side, s.first),
        &format!("price when {}", s.second),
        &f,
        &f,
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
    for p in &s.pairs {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#4e79a7"><title>{}</title></circle>"##,
            plot.px(p.mean_first),
            plot.py(p.mean_second),
            escape(&format!(
                "{} ({}): {} vs {}",
                p.item_id,
                p.item_type.as_deref().unwrap_or("?"),
                money(p.mean_first.round() as i64, cur),
                money(p.mean_second.round() as i64, cur)
            ))
        );
    }
    svg.push_str("</svg>");
    svg
}

// ---------------------------------------------------------------------------------------------
// HTML

fn void_if(too_small: bool) -> Option<&'static str> {
    too_small.then_some("void")
}

fn too_few(too_small: bool) -> String {
    if too_small { "too few" } else { "" }.to_string()
}

fn comparison_rows(a: &Analysis) -> Vec<Row> {
    let cur = &a.currency;
    a.comparisons
        .iter()
        .map(|c| {
            let k = &c.comparison;
            let sig = k.test.is_some_and(|t| t.p_value < 0.05);
            Row::new(vec![
                outcome_label(&c.outcome).to_string(),
                format!("{} − {}", c.first, c.second),
                format!("{} ({} runs)", c.design, c.runs),
                format!("{} / {}", k.n_first, k.n_second),
                value(&c.outcome, k.mean_first, cur),
                value(&c.outcome, k.mean_second, cur),
                format!(
                    "{}{}",
                    value(&c.outcome, k.difference, cur),
                    if sig { " *" } else { "" }
                ),
                ci_text(&c.outcome, k, cur),
                p_text(&k.test),
                holm_text(c.p_holm),
                too_few(c.too_small),
            ])
            .with_class(void_if(c.too_small))
        })
        .collect()
}

const COMPARISON_HEAD: &[&str] = &[
    "outcome",
    "arms",
    "design",
    "n",
    "mean first",
    "mean second",
    "difference",
    "95% interval",
    "p (permutation)",
    "p (Holm)",
    "",
];

/// The page `report.html` of an experiment (templates/experiment_report.html).
#[derive(askama::Template)]
#[template(path = "experiment_report.html")]
struct ExperimentReport<'a> {
    css: &'a str,
    title: String,
    x: &'a Experiment,
    a: &'a Analysis,
    description: &'a str,
    finished: usize,
    planned: usize,
    participants: usize,
    arms: Table,
    comparisons: Table,
    charts: Vec<Figure>,
    same_items: Vec<SameItemSection>,
    regression: Option<RegressionSection>,
    run_groups: Option<Table>,
    sessions: Option<SessionsSection>,
    runs: Table,
    participants_by_arm: Table,
}

/// The self-contained `report.html` of an experiment.
pub fn report_html(x: &Experiment, a: &Analysis, runs: &[RunData], planned: usize) -> String {
    let page = ExperimentReport {
        css: CSS,
        title: format!("Haggle experiment: {}", x.name),
        x,
        a,
        description: x.description.trim(),
        finished: runs.len(),
        planned,
        participants: runs.first().map_or(0, |r| r.metrics.market.participants),
        arms: arms_table(a),
        comparisons: Table::new(COMPARISON_HEAD, comparison_rows(a)),
        charts: experiment_charts(a, runs),
        same_items: a
            .same_item
            .iter()
            .map(|s| same_item_section(s, &a.currency))
            .collect(),
        regression: a
            .regression
            .as_ref()
            .map(|r| regression_section(r, &a.currency)),
        run_groups: (!a.group_comparisons.is_empty()).then(|| run_groups_table(a)),
        sessions: a.learning_curve.as_ref().map(|c| sessions_section(a, c)),
        runs: runs_table(a),
        participants_by_arm: participants_by_arm_table(a),
    };
    render(&page)
}

fn arms_table(a: &Analysis) -> Table {
    let cur = &a.currency;
    let head = [
        "arm",
        "brain",
        "runs",
        "participant-runs",
        "sales",
        "purchases",
        "seller surplus",
        "buyer surplus",
        "per sale",
        "per purchase",
        "mean σ as seller",
        "mean 1 − σ as buyer",
        "deals per participant",
        "irrational",
        "unwanted",
        "refusals",
        "LLM calls",
        "LLM cost",
        "first to act",
    ];
    let rows = a.arm_summaries.iter().map(|(arm, s)| {
        Row::new(vec![
            arm.clone(),
            s.brain.clone(),
            s.runs.to_string(),
            s.participant_runs.to_string(),
            s.deals_as_seller.to_string(),
            s.deals_as_buyer.to_string(),
            money(s.seller_surplus, cur),
            money(s.buyer_surplus, cur),
            value("surplus", s.mean_seller_surplus_per_sale, cur),
            value("surplus", s.mean_buyer_surplus_per_purchase, cur),
            num(s.mean_share_as_seller),
            num(s.mean_share_as_buyer),
            num(s.deals_per_participant),
            s.irrational_deals.to_string(),
            s.unwanted_purchases.to_string(),
            s.refusals.to_string(),
            s.llm.calls.to_string(),
            usd(s.llm.cost_micro_usd),
            first_to_act(s),
        ])
    });
    Table::new(&head, rows.collect())
}

/// Per arm, one value per unit: the seller's share σ of each sale by the seller's arm, or
/// each participant's surplus in each run.
fn per_arm_values(a: &Analysis, runs: &[RunData], shares: bool) -> Vec<(String, Vec<f64>)> {
    a.arms
        .keys()
        .map(|arm| {
            let v = runs
                .iter()
                .flat_map(|r| -> Vec<f64> {
                    if shares {
                        r.metrics
                            .deals
                            .iter()
                            .filter(|d| d.counted && r.arms.get(&d.seller) == Some(arm))
                            .filter_map(|d| d.seller_share)
                            .collect()
                    } else {
                        r.metrics
                            .participants
                            .iter()
                            .filter(|(n, _)| r.arms.get(*n) == Some(arm))
                            .map(|(_, p)| (p.seller_surplus + p.buyer_surplus) as f64)
                            .collect()
                    }
                })
                .collect();
            (arm.clone(), v)
        })
        .collect()
}

fn experiment_charts(a: &Analysis, runs: &[RunData]) -> Vec<Figure> {
    let cur = &a.currency;
    let colors = arm_colors(a);
    let shares = per_arm_values(a, runs, true);
    let surplus = per_arm_values(a, runs, false);
    let run_colors = run_colors(&colors, runs);
    let mut charts = vec![
        Figure::new(
            "Seller's share σ of each sale, by the seller's arm",
            strip_chart(
                "Seller share by arm",
                "σ = (p − r)/(v − r)",
                &shares,
                &colors,
                &|v| format!("{v:.2}"),
            ),
            legend(&colors, "arm"),
        ),
        Figure::new(
            "Surplus of each participant in each run, by arm",
            strip_chart("Surplus by arm", "surplus", &surplus, &colors, &|v| {
                tick_money(v.round() as i64, cur)
            }),
            String::new(),
        ),
        Figure::new(
            "Deals over time, one line per run",
            chart_deals_over_time(runs, &run_colors),
            legend(&run_colors, "run"),
        ),
    ];
    for s in a.same_item.iter().filter(|s| s.side == "seller") {
        charts.push(Figure::new(
            &format!(
                "Same item sold by sellers of {} and of {}",
                s.first, s.second
            ),
            chart_pairs(s, cur),
            String::new(),
        ));
    }
    charts
}

/// An interval of money, or a dash.
fn money_interval(ci: Option<(f64, f64)>, cur: &str) -> String {
    ci.map_or("–".into(), |(l, u)| {
        format!(
            "[{}, {}]",
            money(l.round() as i64, cur),
            money(u.round() as i64, cur)
        )
    })
}

/// The same items sold (or bought) under two arms: the paired test and the 30 largest
/// differences.
struct SameItemSection {
    heading: String,
    summary: String,
    table: Table,
}

fn same_item_section(s: &crate::analysis::SameItem, cur: &str) -> SameItemSection {
    let mut pairs: Vec<&crate::analysis::ItemPair> = s.pairs.iter().collect();
    pairs.sort_by(|p, q| q.difference.abs().total_cmp(&p.difference.abs()));
    let prices = |v: &[i64]| {
        v.iter()
            .map(|p| money(*p, cur))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows = pairs.iter().take(30).map(|p| {
        Row::new(vec![
            p.item_id.clone(),
            p.item_type.as_deref().unwrap_or("?").to_string(),
            prices(&p.prices_first),
            prices(&p.prices_second),
            money(p.difference.round() as i64, cur),
        ])
    });
    let head = [
        "item",
        "type",
        &format!("prices, {}", s.first),
        &format!("prices, {}", s.second),
        "difference of means",
    ];
    SameItemSection {
        heading: format!(
            "{} vs {} as {}: {} items",
            s.first,
            s.second,
            s.side,
            s.pairs.len()
        ),
        summary: format!(
            "mean difference {}, 95% interval {}, p {}",
            value("surplus", s.paired.mean_difference, cur),
            money_interval(s.paired.ci95, cur),
            p_text(&s.paired.test)
        ),
        table: Table::new(&head, rows.collect()),
    }
}

/// The price regression with item fixed effects: its fit and coefficients, or why not.
struct RegressionSection {
    items_with_variation: usize,
    reference_arm: String,
    /// " Dropped for want of variation within items: …." or nothing.
    dropped: String,
    fit: Option<RegressionFit>,
    error: String,
}

struct RegressionFit {
    summary: String,
    table: Table,
}

fn regression_section(reg: &crate::analysis::PriceRegression, cur: &str) -> RegressionSection {
    let fit = reg.result.as_ref().map(|r| {
        let rows = reg.regressors.iter().enumerate().map(|(i, name)| {
            Row::new(vec![
                name.clone(),
                money(r.coefficients[i].round() as i64, cur),
                money(r.std_errors[i].round() as i64, cur),
                money_interval(Some(r.ci95[i]), cur),
                format!("{:.4}", r.p_values[i]),
            ])
        });
        RegressionFit {
            summary: format!(
                "n = {} deals, {} items, {} residual degrees of freedom, residual sd {}",
                r.n,
                r.groups,
                r.df,
                money(r.sigma2.sqrt().round() as i64, cur)
            ),
            table: Table::new(
                &[
                    "regressor",
                    "coefficient",
                    "std. error",
                    "95% interval",
                    "p (t)",
                ],
                rows.collect(),
            ),
        }
    });
    RegressionSection {
        items_with_variation: reg.items_with_variation,
        reference_arm: reg.reference_arm.clone(),
        dropped: if reg.dropped.is_empty() {
            String::new()
        } else {
            format!(
                " Dropped for want of variation within items: {}.",
                reg.dropped.join(", ")
            )
        },
        fit,
        error: reg.error.as_deref().unwrap_or("?").to_string(),
    }
}

fn run_groups_table(a: &Analysis) -> Table {
    let cur = &a.currency;
    let head = [
        "outcome",
        "groups",
        "n",
        "mean first",
        "mean second",
        "difference",
        "95% interval",
        "p (permutation)",
        "p (Holm)",
        "",
    ];
    let rows = a.group_comparisons.iter().map(|c| {
        let k = &c.comparison;
        Row::new(vec![
            outcome_label(&c.outcome).to_string(),
            format!("{} − {}", c.first, c.second),
            format!("{} / {}", k.n_first, k.n_second),
            value(&c.outcome, k.mean_first, cur),
            value(&c.outcome, k.mean_second, cur),
            value(&c.outcome, k.difference, cur),
            ci_text(&c.outcome, k, cur),
            p_text(&k.test),
            holm_text(c.p_holm),
            too_few(c.too_small),
        ])
        .with_class(void_if(c.too_small))
    });
    Table::new(&head, rows.collect())
}

fn runs_table(a: &Analysis) -> Table {
    let cur = &a.currency;
    let head = [
        "run",
        "group",
        "seed",
        "arms",
        "deals",
        "volume",
        "efficiency",
        "mean price",
        "agreement",
        "mean σ",
        "irrational",
        "wants met",
        "items sold",
        "first-proposal bias",
        "refusals",
        "rounds",
        "LLM calls",
        "LLM cost",
        "first to act",
    ];
    let rows = a.runs.iter().map(|r| {
        let m = &r.market;
        let arms: Vec<String> = r
            .arm_sizes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut row = Row::new(vec![
            r.id.clone(),
            r.group.clone(),
            r.seed.to_string(),
            arms.join(", "),
            m.deals.to_string(),
            money(m.gross_volume, cur),
            pct(m.allocative_efficiency),
            m.mean_price.map_or("–".into(), |p| money(p, cur)),
            pct(m.agreement_rate),
            num(m.mean_seller_share),
            m.irrational_deals.to_string(),
            pct(m.share_wants_met),
            pct(m.share_items_sold),
            pct(m.first_proposal_bias),
            m.refusals.to_string(),
            m.rounds.to_string(),
            r.llm.calls.to_string(),
            usd(r.llm.cost_micro_usd),
        ]);
        row.cells[0].href = Some(format!("runs/{}/report.html", r.id));
        row.cells[0].after = if r.real { " (real)" } else { "" };
        row
    });
    Table::new(&head, rows.collect())
}

/// Deals and surplus per run of each participant, per arm it was in.
fn participants_by_arm_table(a: &Analysis) -> Table {
    let cur = &a.currency;
    let mut by: BTreeMap<&str, BTreeMap<&str, &crate::analysis::ParticipantArm>> = BTreeMap::new();
    for p in &a.participants {
        by.entry(&p.participant).or_default().insert(&p.arm, p);
    }
    let arms: Vec<&String> = a.arms.keys().collect();
    let mut head: Vec<String> = vec!["participant".into()];
    for arm in &arms {
        head.push(format!("{arm}: runs"));
        head.push(format!("{arm}: deals/run"));
        head.push(format!("{arm}: surplus/run"));
    }
    let head_ref: Vec<&str> = head.iter().map(String::as_str).collect();
    let rows = by.iter().map(|(name, m)| {
        let mut row = vec![name.to_string()];
        for arm in &arms {
            match m.get(arm.as_str()) {
                Some(p) => {
                    row.push(p.runs.to_string());
                    row.push(format!("{:.2}", p.deals_per_run));
                    row.push(money(p.surplus_per_run.round() as i64, cur));
                }
                None => row.extend(["–".into(), "–".into(), "–".into()]),
            }
        }
        Row::new(row)
    });
    Table::new(&head_ref, rows.collect())
}

/// Writes `analysis.json`, the CSVs and `report.html` into `dir`; returns the HTML's path.
pub fn write(
    dir: &Path,
    x: &Experiment,
    a: &Analysis,
    runs: &[RunData],
    planned: usize,
) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("analysis.json"), json_text(a)?)?;
    std::fs::write(dir.join("runs.csv"), runs_csv(a))?;
    std::fs::write(dir.join("arms.csv"), arms_csv(a))?;
    std::fs::write(dir.join("comparisons.csv"), comparisons_csv(a))?;
    std::fs::write(dir.join("same_item.csv"), same_item_csv(a))?;
    std::fs::write(dir.join("participants_by_arm.csv"), participants_csv(a))?;
    if let Some(c) = &a.learning_curve {
        let per_run: Vec<(&str, &str, &[crate::sessions::SessionMetrics])> = runs
            .iter()
            .map(|r| {
                (
                    r.plan.id.as_str(),
                    r.plan.group.as_str(),
                    r.sessions.as_slice(),
                )
            })
            .collect();
        std::fs::write(
            dir.join("sessions.csv"),
            crate::sessions::sessions_csv(&per_run),
        )?;
        std::fs::write(
            dir.join("learning_curve.csv"),
            crate::sessions::learning_curve_csv(c),
        )?;
    }
    let html = dir.join("report.html");
    std::fs::write(&html, report_html(x, a, runs, planned))?;
    Ok(html)
}

/// One experiment in a comparison: its folder, its file, its analysis, its planned runs.
pub type Compared = (String, Experiment, Analysis, usize);

/// `compare.html` and `compare.json` in `out`: the experiments side by side.
pub fn write_comparison(out: &Path, all: &[Compared]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let analyses: Vec<&Analysis> = all.iter().map(|c| &c.2).collect();
    std::fs::write(out.join("compare.json"), json_text(&analyses)?)?;
    let mut head = vec!["experiment"];
    head.extend_from_slice(COMPARISON_HEAD);
    let comparisons = all.iter().flat_map(|(_, x, a, _)| {
        comparison_rows(a).into_iter().map(|mut row| {
            row.cells.insert(0, Cell::from(x.name.clone()));
            row
        })
    });
    let page = ComparePage {
        css: CSS,
        experiments: experiments_table(all),
        comparisons: Table::new(&head, comparisons.collect()),
        same_items: compared_same_items_table(all),
    };
    let path = out.join("compare.html");
    std::fs::write(&path, render(&page))?;
    Ok(path)
}

/// The page `compare.html` (templates/compare.html).
#[derive(askama::Template)]
#[template(path = "compare.html")]
struct ComparePage<'a> {
    css: &'a str,
    experiments: Table,
    comparisons: Table,
    same_items: Table,
}

/// One row per experiment: its arms, runs and mean market outcomes.
fn experiments_table(all: &[Compared]) -> Table {
    let mean_of = |a: &Analysis, f: &dyn Fn(&crate::metrics::MarketMetrics) -> Option<f64>| {
        crate::stats::mean(
            &a.runs
                .iter()
                .filter_map(|r| f(&r.market))
                .collect::<Vec<_>>(),
        )
    };
    let head = [
        "experiment",
        "folder",
        "arms",
        "runs",
        "participants",
        "mean deals",
        "mean efficiency",
        "mean price",
        "warnings",
        "LLM cost",
    ];
    let rows = all.iter().map(|(dir, x, a, planned)| {
        let arms: Vec<String> = a.arms.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let mean_price = mean_of(a, &|m| m.mean_price.map(|p| p as f64));
        Row::new(vec![
            x.name.clone(),
            dir.clone(),
            arms.join(", "),
            format!("{} of {planned}", a.runs.len()),
            a.runs
                .first()
                .map_or(0, |r| r.market.participants)
                .to_string(),
            num(mean_of(a, &|m| Some(m.deals as f64))),
            pct(mean_of(a, &|m| m.allocative_efficiency)),
            value("mean_price", mean_price, &a.currency),
            a.warnings.len().to_string(),
            usd(a.llm.cost_micro_usd),
        ])
    });
    Table::new(&head, rows.collect())
}

/// Every experiment's same-item comparisons, one row each.
fn compared_same_items_table(all: &[Compared]) -> Table {
    let head = [
        "experiment",
        "arms",
        "side",
        "items",
        "mean difference",
        "95% interval",
        "p",
    ];
    let rows = all.iter().flat_map(|(_, x, a, _)| {
        a.same_item.iter().map(move |s| {
            Row::new(vec![
                x.name.clone(),
                format!("{} − {}", s.first, s.second),
                s.side.clone(),
                s.pairs.len().to_string(),
                value("surplus", s.paired.mean_difference, &a.currency),
                money_interval(s.paired.ci95, &a.currency),
                p_text(&s.paired.test),
            ])
            .with_class(void_if(s.too_small))
        })
    });
    Table::new(&head, rows.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Design, RunPlan};

    /// `n` runs of the stored run in tests/fixtures/run, named `r-01`, `r-02`, ...
    fn runs(n: usize) -> Vec<RunData> {
        let scenario: crate::scenario::Scenario =
            serde_json::from_str(include_str!("../tests/fixtures/run/scenario.json")).unwrap();
        let record: crate::metrics::RunRecord =
            serde_json::from_str(include_str!("../tests/fixtures/run/record.json")).unwrap();
        let metrics = crate::metrics::compute(&scenario, &record);
        (1..=n)
            .map(|k| RunData {
                plan: RunPlan {
                    id: format!("r-{k:02}"),
                    group: "r".into(),
                    index: k - 1,
                    seed: k as u64,
                    design: Design::All("a".into()),
                    real: false,
                    rules: BTreeMap::new(),
                    shipping: None,
                },
                arms: BTreeMap::new(),
                metrics: metrics.clone(),
                llm: BTreeMap::new(),
                first_movers: BTreeMap::new(),
                sessions: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn every_run_has_its_own_colour_in_the_deals_over_time_chart() {
        let arms = colors_for(["a".to_string(), "b".to_string(), "c".to_string()].iter());
        for n in [3, 12] {
            let runs = runs(n);
            let svg = chart_deals_over_time(&runs, &run_colors(&arms, &runs));
            let strokes: Vec<&str> = svg
                .split("<path d=")
                .skip(1)
                .map(|p| {
                    p.split("stroke=\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                })
                .collect();
            let distinct: std::collections::BTreeSet<&&str> = strokes.iter().collect();
            assert_eq!((strokes.len(), distinct.len()), (n, n), "{strokes:?}");
            assert!(
                strokes.iter().all(|c| !arms.values().any(|a| a == c)),
                "a run shares an arm's colour: {strokes:?}"
            );
        }
    }
}
