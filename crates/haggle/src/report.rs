//! After a simulated run: the lab's metrics and report files from the run record, the ledger's
//! own settlement (reconciled), `tokens.json` to keep trading in the finished market, the timing
//! kept apart from the deterministic results, and the summary table.

use crate::sim::SimOutput;
use anyhow::Context;
use haggle_lab::metrics::Metrics;
use haggle_lab::scenario::Scenario;
use serde_json::json;
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

fn dollars(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", c.abs() / 100, c.abs() % 100)
}

pub async fn finish(
    out: &Path,
    scenario: &Scenario,
    run: &SimOutput,
    sim_wall: Duration,
) -> anyhow::Result<Metrics> {
    let store = run.svc.store();
    let v = store.verify(run.market_id).await?;
    if !v.ok() {
        anyhow::bail!(
            "the ledger did not verify after the run: {}",
            v.breaches.join("; ")
        );
    }
    let started = std::time::Instant::now();
    let record = crate::results::record(run).await?;
    let metrics = haggle_lab::metrics::compute(scenario, &record);
    haggle_lab::report::write_report(out, scenario, &metrics)
        .with_context(|| format!("cannot write the report to {}", out.display()))?;
    // The ledger's own view: the per-deal handover list, reconciled with every balance.
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
    write(out, "settlement_deals.csv", &settlement.deals_csv())?;
    write(out, "settlement_positions.csv", &settlement.positions_csv())?;
    write(
        out,
        "tokens.json",
        &serde_json::to_string_pretty(&tokens(run))?,
    )?;
    let mut timing = haggle_lab::report::Timing {
        total_ms: (sim_wall + started.elapsed()).as_secs_f64() * 1000.0,
        ..Default::default()
    };
    timing
        .phases_ms
        .insert("simulation".into(), sim_wall.as_secs_f64() * 1000.0);
    timing
        .phases_ms
        .insert("report".into(), started.elapsed().as_secs_f64() * 1000.0);
    haggle_lab::report::write_timing(out, &timing)?;
    Ok(metrics)
}

/// The summary table printed at the end of a demo.
pub fn print_summary(m: &Metrics) {
    let k = &m.market;
    let pct = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{:.1}%", x * 100.0));
    println!();
    println!("{:<28} {:>14}", "deals", k.deals);
    println!("{:<28} {:>14}", "volume", dollars(k.gross_volume));
    println!(
        "{:<28} {:>14}",
        "median price",
        k.median_price.map_or("–".into(), dollars)
    );
    println!(
        "{:<28} {:>14}",
        "mean price",
        k.mean_price.map_or("–".into(), dollars)
    );
    println!(
        "{:<28} {:>14}",
        if k.max_welfare_exact {
            "allocative efficiency"
        } else {
            "efficiency (vs. bound)"
        },
        pct(k.allocative_efficiency)
    );
    println!("{:<28} {:>14}", "agreement rate", pct(k.agreement_rate));
    println!("{:<28} {:>14}", "wants met", pct(k.share_wants_met));
    println!("{:<28} {:>14}", "items sold", pct(k.share_items_sold));
    println!(
        "{:<28} {:>14}",
        "first-proposal bias",
        pct(k.first_proposal_bias)
    );
    println!("{:<28} {:>14}", "irrational deals", k.irrational_deals);
    println!();
    println!(
        "{:<24} {:>6} {:>6} {:>14} {:>14}",
        "surplus by brain", "sales", "buys", "as seller", "as buyer"
    );
    for (b, f) in &m.brains {
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
