//! After a simulated run: collect the run record from the market (as its operator), compute the
//! lab's metrics, write the output folder, and print the summary table.

use crate::sim::SimOutput;
use anyhow::Context;
use haggle_lab::scenario::Scenario;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Writes `tokens.json` so a person (or an outside agent) can keep trading in the finished market.
fn write_tokens(out: &Path, run: &SimOutput) -> anyhow::Result<()> {
    let tokens = json!({
        "market_id": run.market_id,
        "operator": run.operator_token,
        "observer": run.observer_token,
        "participants": run.members.iter().map(|m| json!({
            "name": m.name, "participant_id": m.participant_id, "brain": m.brain,
            "agent_token": m.agent_token, "principal_token": m.principal_token,
        })).collect::<Vec<_>>(),
    });
    let path = out.join("tokens.json");
    std::fs::write(&path, serde_json::to_string_pretty(&tokens)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub async fn finish(
    out: &Path,
    scenario: &Scenario,
    run: &SimOutput,
    sim_wall: Duration,
) -> anyhow::Result<()> {
    let v = run.svc.store().verify(run.market_id).await?;
    if !v.ok() {
        anyhow::bail!(
            "the ledger did not verify after the run: {}",
            v.breaches.join("; ")
        );
    }
    write_tokens(out, run)?;
    let deals = run
        .svc
        .store()
        .deals(run.market_id, None, 0, 10_000)
        .await?;
    let mut prices: Vec<i64> = deals.iter().map(|d| d.price).collect();
    prices.sort();
    let volume: i64 = prices.iter().sum();
    println!(
        "deals {} volume {} median {:?} rounds {} ({} participants)",
        deals.len(),
        volume,
        prices.get(prices.len() / 2),
        run.rounds,
        scenario.profiles.len()
    );
    let _ = sim_wall;
    Ok(())
}
