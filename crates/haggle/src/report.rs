//! After a simulated run: the lab's metrics and report files from the run record, the ledger's
//! own settlement (reconciled), `private/tokens.json` to keep trading in the finished market (apart
//! from the report files, which may be served), the timing kept apart from the deterministic
//! results, and the summary table.

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

/// The folder beside the report files that holds a run's secrets (its database and tokens):
/// `haggle serve --reports` never lists or serves it. Made owner-only on Unix. Secrets an older
/// demo left beside the report are removed, so the report folder holds none.
pub fn private_dir(out: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = out.join("private");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    for old in ["tokens.json", "haggle.db", "haggle.db-wal", "haggle.db-shm"] {
        let _ = std::fs::remove_file(out.join(old));
    }
    Ok(dir)
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
        &private_dir(out)?,
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
    let conduct = conduct(run);
    write(
        out,
        "conduct.json",
        &serde_json::to_string_pretty(&conduct)?,
    )?;
    Ok(metrics)
}

/// Per participant: leaks of private numbers, refusals by the market, and for LLM brains their
/// model calls, tokens, cost and malformed or failed turns (`conduct.json`, beside
/// `llm_calls.jsonl`). Kept out of `results.json`, which stays byte-identical for one seed.
pub fn conduct(run: &SimOutput) -> serde_json::Value {
    let agents: Vec<serde_json::Value> = run
        .members
        .iter()
        .zip(&run.agents)
        .map(|(m, a)| {
            json!({
                "name": m.name,
                "participant_id": m.participant_id,
                "brain": m.brain,
                "turns": a.stats.turns,
                "actions": a.stats.actions,
                "refusals": a.stats.refusals,
                "leaks": a.stats.leaks,
                "leaks_withheld": a.stats.leaks_withheld,
                "tool_calls": a.stats.tool_calls,
                "llm": a.brain.llm_stats(),
            })
        })
        .collect();
    json!({ "agents": agents, "first_movers": first_movers(run), "prices": run.prices })
}

/// Fairness of the order (issue 16): per brain, in how many rounds the market applied one of its
/// agents' actions first, beside its share of the agents (a fair order gives about that share);
/// and the rounds per agent (`by_agent`), which an experiment's analysis sums per arm.
pub fn first_movers(run: &SimOutput) -> serde_json::Value {
    let rounds: u64 = run.first_movers.values().sum();
    let mut agents: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut firsts: std::collections::BTreeMap<&str, u64> = Default::default();
    for m in &run.members {
        *agents.entry(m.brain.as_str()).or_default() += 1;
        *firsts.entry(m.brain.as_str()).or_default() +=
            run.first_movers.get(&m.name).copied().unwrap_or(0);
    }
    let total = run.members.len().max(1) as f64;
    let by_brain: serde_json::Map<String, serde_json::Value> = agents
        .iter()
        .map(|(b, n)| {
            let first = firsts.get(*b).copied().unwrap_or(0);
            let share = if rounds == 0 {
                0.0
            } else {
                first as f64 / rounds as f64
            };
            (
                b.to_string(),
                json!({"rounds_first": first, "share_first": share, "agents": n,
                       "share_of_agents": *n as f64 / total}),
            )
        })
        .collect();
    json!({ "rounds_with_actions": rounds, "by_brain": by_brain, "by_agent": run.first_movers })
}

/// The LLM and conduct lines of the summary: per LLM brain, what its agents spent and how its
/// model behaved; leaks over all agents.
pub fn print_conduct(run: &SimOutput) {
    let mut by_brain: std::collections::BTreeMap<&str, (u64, haggle_agents::llm_brain::LlmStats)> =
        Default::default();
    for (m, a) in run.members.iter().zip(&run.agents) {
        if let Some(s) = a.brain.llm_stats() {
            let e = by_brain.entry(m.brain.as_str()).or_default();
            e.0 += 1;
            let t = &mut e.1;
            t.turns += s.turns;
            t.calls += s.calls;
            t.usage.add(&s.usage);
            t.cost_micro_usd += s.cost_micro_usd;
            t.calls_without_price += s.calls_without_price;
            t.failed_calls += s.failed_calls;
            t.failed_turns += s.failed_turns;
            t.refusals += s.refusals;
            t.malformed_outputs += s.malformed_outputs;
            t.malformed_turns += s.malformed_turns;
            t.turns_ended_malformed += s.turns_ended_malformed;
            t.tool_calls += s.tool_calls;
            t.tool_errors += s.tool_errors;
            t.turns_at_call_limit += s.turns_at_call_limit;
            t.turns_over_budget += s.turns_over_budget;
        }
    }
    for (brain, (agents, s)) in &by_brain {
        println!(
            "{brain} ({agents} agents): {}",
            crate::llm_args::describe(s)
        );
    }
    let leaks: u64 = run.agents.iter().map(|a| a.stats.leaks).sum();
    let withheld: u64 = run.agents.iter().map(|a| a.stats.leaks_withheld).sum();
    let refusals: u64 = run
        .agents
        .iter()
        .map(|a| a.stats.refusals.values().sum::<u64>())
        .sum();
    let f = first_movers(run);
    let rounds = f["rounds_with_actions"].as_u64().unwrap_or(0);
    if let Some(by) = f["by_brain"].as_object().filter(|_| rounds > 0) {
        let parts: Vec<String> = by
            .iter()
            .map(|(b, x)| {
                format!(
                    "{b} {:.0}% ({:.0}% of agents)",
                    x["share_first"].as_f64().unwrap_or(0.0) * 100.0,
                    x["share_of_agents"].as_f64().unwrap_or(0.0) * 100.0
                )
            })
            .collect();
        println!(
            "first to act in a round ({rounds} rounds): {}",
            parts.join(", ")
        );
    }
    // `finish` has already refused a run whose ledger does not verify.
    println!(
        "conduct: {refusals} actions refused by the market, {leaks} private-number leaks ({withheld} withheld); ledger verified, 0 breaches"
    );
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
