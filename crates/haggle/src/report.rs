//! After a simulated run: compute the results, write the output folder (`results.json`,
//! `timing.json`, `deals.csv`, `participants.csv`, `report.html`, `tokens.json`; the database is
//! already there) and print the summary table.

use crate::results::{Results, compute};
use crate::sim::SimOutput;
use anyhow::Context;
use haggle_lab::scenario::Scenario;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

fn write(out: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let path = out.join(name);
    std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))
}

/// `tokens.json`, so a person (or an outside agent) can keep trading in the finished market.
fn tokens(run: &SimOutput) -> serde_json::Value {
    json!({
        "market_id": run.market_id,
        "operator": run.operator_token,
        "observer": run.observer_token,
        "participants": run.members.iter().map(|m| json!({
            "name": m.name, "participant_id": m.participant_id, "brain": m.brain,
            "agent_token": m.agent_token, "principal_token": m.principal_token,
        })).collect::<Vec<_>>(),
    })
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn deals_csv(r: &Results) -> String {
    let mut out = String::from(
        "deal_id,item_id,item_type,title,seller,seller_brain,buyer,buyer_brain,price,ask,floor,valuation,seller_surplus,buyer_surplus,status,offers,hour,via_wanted_ad\n",
    );
    for d in &r.deal_list {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            d.deal_id,
            csv(&d.item_id),
            csv(&d.item_type),
            csv(&d.title),
            csv(&d.seller),
            d.seller_brain,
            csv(&d.buyer),
            d.buyer_brain,
            d.price,
            d.ask,
            d.floor,
            d.valuation.map_or(String::new(), |v| v.to_string()),
            d.seller_surplus,
            d.buyer_surplus.map_or(String::new(), |v| v.to_string()),
            d.status,
            d.offers,
            d.hour,
            d.via_wanted_ad
        );
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn dollars(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", c.abs() / 100, c.abs() % 100)
}

const W: f64 = 560.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

fn svg_open(title: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/><line x1=\"{PAD}\" y1=\"10\" x2=\"{PAD}\" y2=\"{}\" class=\"axis\"/>",
        esc(title),
        esc(title),
        H - PAD,
        W - 10.0,
        H - PAD,
        H - PAD
    )
}

/// Price against the asking price, one dot per deal, with the diagonal price = ask.
fn chart_price_vs_ask(r: &Results) -> String {
    let max = r
        .deal_list
        .iter()
        .map(|d| d.ask.max(d.price))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |v: i64| PAD + v as f64 / max * (W - PAD - 10.0);
    let y = |v: i64| H - PAD - v as f64 / max * (H - PAD - 10.0);
    let mut s =
        svg_open("Deal price against asking price (each dot a deal; the line is price = ask)");
    let _ = write!(
        s,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"ref\"/>",
        x(0),
        y(0),
        x(max as i64),
        y(max as i64)
    );
    for d in &r.deal_list {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" class=\"dot\"><title>{}: {} (ask {})</title></circle>",
            x(d.ask),
            y(d.price),
            esc(&d.title),
            dollars(d.price),
            dollars(d.ask)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" class=\"lbl\">ask {}</text><text x=\"4\" y=\"14\" class=\"lbl\">price</text></svg></figure>",
        W - 90.0,
        H - 8.0,
        dollars(max as i64)
    );
    s
}

/// Seller and buyer surplus by brain.
fn chart_surplus(r: &Results) -> String {
    let rows: Vec<(&String, i64, i64)> = r
        .by_brain
        .iter()
        .map(|(b, f)| (b, f.seller_surplus, f.buyer_surplus))
        .collect();
    let max = rows
        .iter()
        .map(|(_, s, b)| (*s).max(*b))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let band = (W - PAD - 10.0) / rows.len().max(1) as f64;
    let mut s = svg_open("Surplus by brain (left: as seller, right: as buyer)");
    for (i, (brain, sell, buy)) in rows.iter().enumerate() {
        let x0 = PAD + i as f64 * band + band * 0.15;
        let bw = band * 0.3;
        for (j, (v, class)) in [(*sell, "bar-s"), (*buy, "bar-b")].into_iter().enumerate() {
            let h = v.max(0) as f64 / max * (H - PAD - 20.0);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{h:.1}\" class=\"{class}\"><title>{}: {}</title></rect>",
                x0 + j as f64 * bw,
                H - PAD - h,
                esc(brain),
                dollars(v)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"lbl\">{}</text>",
            x0,
            H - PAD + 14.0,
            esc(brain.trim_start_matches("rule:"))
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// Cumulative deals over simulated hours.
fn chart_deals_over_time(r: &Results) -> String {
    let mut hours: Vec<i64> = r.deal_list.iter().map(|d| d.hour).collect();
    hours.sort_unstable();
    let max_h = hours.last().copied().unwrap_or(1).max(1) as f64;
    let n = hours.len().max(1) as f64;
    let mut s = svg_open("Deals over simulated time (cumulative)");
    let mut pts = format!("{PAD},{}", H - PAD);
    for (i, h) in hours.iter().enumerate() {
        let _ = write!(
            pts,
            " {:.1},{:.1}",
            PAD + *h as f64 / max_h * (W - PAD - 10.0),
            H - PAD - (i + 1) as f64 / n * (H - PAD - 10.0)
        );
    }
    let _ = write!(
        s,
        "<polyline points=\"{pts}\" class=\"line\"/><text x=\"{}\" y=\"{}\" class=\"lbl\">hour {}</text><text x=\"4\" y=\"14\" class=\"lbl\">{} deals</text></svg></figure>",
        W - 80.0,
        H - 8.0,
        max_h,
        hours.len()
    );
    s
}

/// Histogram of the seller's share σ = (p − r)/(v − r).
fn chart_share(r: &Results) -> String {
    let mut bins = [0u32; 10];
    for d in &r.deal_list {
        if let Some(v) = d.valuation.filter(|v| *v > d.floor) {
            let share = (d.price - d.floor) as f64 / (v - d.floor) as f64;
            bins[((share * 10.0).floor() as i64).clamp(0, 9) as usize] += 1;
        }
    }
    let max = bins.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (W - PAD - 10.0) / 10.0;
    let mut s =
        svg_open("Seller's share of the surplus (0 = all to the buyer, 1 = all to the seller)");
    for (i, b) in bins.iter().enumerate() {
        let h = *b as f64 / max * (H - PAD - 20.0);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" class=\"bar-s\"><title>{:.1}–{:.1}: {b}</title></rect>",
            PAD + i as f64 * bw + 2.0,
            H - PAD - h,
            bw - 4.0,
            i as f64 / 10.0,
            (i + 1) as f64 / 10.0
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" class=\"lbl\">{:.1}</text>",
            PAD + i as f64 * bw + 4.0,
            H - PAD + 14.0,
            i as f64 / 10.0
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn html(r: &Results, settlement: &haggle_api::haggle_core::settlement::Settlement) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Haggle report: {}</title>",
        esc(&r.scenario)
    );
    h.push_str("<style>body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}h1{margin-bottom:.2em}table{border-collapse:collapse;width:100%;margin:1em 0;font-size:13px}th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}th:first-child,td:first-child,td.t{text-align:left}.kpi{display:flex;flex-wrap:wrap;gap:1em}.kpi div{background:#f4f6f8;border-radius:6px;padding:.6em 1em}.kpi b{display:block;font-size:1.4em}figure{margin:1em 0}svg{width:100%;max-width:640px;height:auto;background:#fcfcfd}.axis{stroke:#888}.ref{stroke:#bbb;stroke-dasharray:4}.dot{fill:#2a6fdb;opacity:.7}.bar-s{fill:#2a6fdb}.bar-b{fill:#e08a1e}.line{fill:none;stroke:#2a6fdb;stroke-width:2}.lbl{font-size:10px;fill:#555}</style></head><body>");
    let _ = write!(
        h,
        "<h1>Haggle market report</h1><p>Scenario <b>{}</b> (seed {}), {} participants, {} items for sale, {} wants; {} rounds ({} simulated hours).</p>",
        esc(&r.scenario),
        r.seed,
        r.participants,
        r.items,
        r.wants,
        r.rounds,
        r.simulated_hours
    );
    let _ = write!(
        h,
        "<div class=\"kpi\"><div>deals<b>{}</b></div><div>volume<b>{}</b></div><div>median price<b>{}</b></div><div>allocative efficiency<b>{:.1}%</b></div><div>wants met<b>{:.0}%</b></div><div>items sold<b>{:.0}%</b></div><div>irrational deals<b>{}</b></div></div>",
        r.deals,
        dollars(r.volume),
        r.median_price.map_or("–".into(), dollars),
        r.efficiency * 100.0,
        r.wants_met * 100.0,
        r.items_sold * 100.0,
        r.irrational_deals
    );
    h.push_str(&chart_price_vs_ask(r));
    h.push_str(&chart_surplus(r));
    h.push_str(&chart_deals_over_time(r));
    h.push_str(&chart_share(r));
    h.push_str("<h2>By brain</h2><table><tr><th>brain</th><th>participants</th><th>sales</th><th>purchases</th><th>seller surplus</th><th>buyer surplus</th><th>mean seller share</th></tr>");
    for (b, f) in &r.by_brain {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(b),
            f.participants,
            f.deals_as_seller,
            f.deals_as_buyer,
            dollars(f.seller_surplus),
            dollars(f.buyer_surplus),
            f.mean_seller_share
                .map_or("–".into(), |x| format!("{x:.2}"))
        );
    }
    h.push_str("</table><h2>Deals</h2><table><tr><th>deal</th><th>item</th><th>seller</th><th>buyer</th><th>price</th><th>ask</th><th>floor</th><th>valuation</th><th>status</th></tr>");
    for d in &r.deal_list {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{} ({})</td><td class=\"t\">{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{}</td></tr>",
            d.deal_id,
            esc(&d.title),
            esc(&d.seller),
            esc(&d.seller_brain),
            esc(&d.buyer),
            esc(&d.buyer_brain),
            dollars(d.price),
            dollars(d.ask),
            dollars(d.floor),
            d.valuation.map_or("–".into(), dollars),
            d.status
        );
    }
    h.push_str("</table><h2>Settlement</h2><p>Each participant's net position (received − paid) as the ledger says.</p><table><tr><th>participant</th><th>funded</th><th>received</th><th>paid</th><th>net</th><th>held</th><th>cash</th></tr>");
    for p in &settlement.positions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name),
            dollars(p.funded),
            dollars(p.received),
            dollars(p.paid),
            dollars(p.net),
            dollars(p.held_in_escrow),
            dollars(p.cash)
        );
    }
    h.push_str("</table><p>Generated by Haggle. Floors and valuations are the scenario's ground truth, never shown to the agents.</p></body></html>\n");
    h
}

pub async fn finish(
    out: &Path,
    scenario: &Scenario,
    run: &SimOutput,
    sim_wall: Duration,
) -> anyhow::Result<Results> {
    let store = run.svc.store();
    let v = store.verify(run.market_id).await?;
    if !v.ok() {
        anyhow::bail!(
            "the ledger did not verify after the run: {}",
            v.breaches.join("; ")
        );
    }
    let started = std::time::Instant::now();
    let results = compute(scenario, run).await?;
    let settlement = store
        .settlement(run.market_id)
        .await?
        .context("the market vanished")?;
    let problems = settlement.reconcile();
    if !problems.is_empty() {
        anyhow::bail!(
            "the settlement does not reconcile with the ledger: {}",
            problems.join("; ")
        );
    }
    write(
        out,
        "results.json",
        &(serde_json::to_string_pretty(&results)? + "\n"),
    )?;
    write(out, "deals.csv", &deals_csv(&results))?;
    write(out, "participants.csv", &settlement.positions_csv())?;
    write(out, "settlement_deals.csv", &settlement.deals_csv())?;
    write(out, "report.html", &html(&results, &settlement))?;
    write(
        out,
        "tokens.json",
        &serde_json::to_string_pretty(&tokens(run))?,
    )?;
    let timing = json!({"simulation_s": sim_wall.as_secs_f64(), "report_s": started.elapsed().as_secs_f64(), "rounds": run.rounds});
    write(out, "timing.json", &serde_json::to_string_pretty(&timing)?)?;
    Ok(results)
}

/// The summary table printed at the end of a demo.
pub fn print_summary(r: &Results) {
    println!();
    println!("{:<28} {:>14}", "deals", r.deals);
    println!("{:<28} {:>14}", "volume", dollars(r.volume));
    println!(
        "{:<28} {:>14}",
        "median price",
        r.median_price.map_or("–".into(), dollars)
    );
    println!(
        "{:<28} {:>14}",
        "mean price",
        r.mean_price
            .map_or("–".into(), |m| dollars(m.round() as i64))
    );
    println!(
        "{:<28} {:>13.1}%{}",
        "allocative efficiency",
        r.efficiency * 100.0,
        if r.efficiency_exact { "" } else { " (bound)" }
    );
    println!("{:<28} {:>13.0}%", "wants met", r.wants_met * 100.0);
    println!("{:<28} {:>14}", "irrational deals", r.irrational_deals);
    println!();
    println!(
        "{:<24} {:>6} {:>6} {:>14} {:>14}",
        "surplus by brain", "sales", "buys", "as seller", "as buyer"
    );
    for (b, f) in &r.by_brain {
        println!(
            "{:<24} {:>6} {:>6} {:>14} {:>14}",
            b,
            f.deals_as_seller,
            f.deals_as_buyer,
            dollars(f.seller_surplus),
            dollars(f.buyer_surplus)
        );
    }
    println!();
}
