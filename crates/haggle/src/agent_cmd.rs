//! `haggle agent run`: one agent, with its profile and brain, joins a market on any Haggle server
//! over HTTP and trades until its rounds are used up (or Ctrl-C), printing what happens to it in
//! words (`agent_lines.rs`) and a summary however the run ends.

use crate::agent_lines::Tally;
use anyhow::Context;
use haggle_agents::llm::CallLog;
use haggle_agents::profile::Profile;
use haggle_agents::runtime::Agent;
use haggle_api::MarketClient;
use haggle_client::HttpClient;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct AgentArgs {
    /// The profile (TOML or JSON).
    #[arg(long)]
    profile: std::path::PathBuf,
    /// The brain, e.g. `rule:boulware`.
    #[arg(long, default_value = "rule:linear")]
    brain: String,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The agent token of the participant this agent trades for.
    #[arg(long, env = "HAGGLE_AGENT_TOKEN")]
    token: Option<String>,
    /// How many turns to take (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    turns: u64,
    /// Real time between turns.
    #[arg(long, default_value_t = 2000)]
    interval_ms: u64,
    /// The random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where an LLM brain's calls are logged (JSON lines).
    #[arg(long, default_value = "llm_calls.jsonl")]
    llm_log: std::path::PathBuf,
    #[command(flatten)]
    llm: crate::llm_args::LlmArgs,
}

pub fn read_profile(path: &std::path::Path) -> anyhow::Result<Profile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read profile {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        Profile::from_json(&text)
    } else {
        Profile::from_toml(&text)
    };
    parsed.map_err(|e| anyhow::anyhow!("invalid profile {}: {e}", path.display()))
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let profile = read_profile(&args.profile)?;
    // The name and its API key are checked before joining the market.
    args.llm
        .factory(Arc::new(CallLog::discard()), &profile.currency)?
        .check(&args.brain)
        .map_err(|e| anyhow::anyhow!("--brain: {e}"))?;
    let token = agent_token(args.token.as_deref())?;
    let client = HttpClient::connect(&args.server, token)
        .await
        .map_err(|e| anyhow::anyhow!("cannot join {}: {e}", args.server))?;
    let currency = client
        .market()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the market: {e}"))?
        .currency;
    let brains = [args.brain.clone()];
    let log = if crate::llm_args::any_llm(&brains) {
        Arc::new(
            CallLog::create(&args.llm_log)
                .with_context(|| format!("cannot create {}", args.llm_log.display()))?,
        )
    } else {
        Arc::new(CallLog::discard())
    };
    let brain = args
        .llm
        .factory(log, &currency)?
        .make(&args.brain, args.seed, &profile.name)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "haggle: {} trades in market {} as participant {} with {}",
        profile.name,
        client.market_id(),
        client.participant_id(),
        args.brain
    );
    let name = profile.name.clone();
    let mut tally = Tally::new(client.participant_id(), &currency);
    let mut agent = Agent::new(profile, client, brain).withhold_leaks(args.llm.withhold_leaks);
    // Installed before the first turn, so Ctrl-C at any moment ends the run with its summary.
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let outcome = tokio::select! {
        r = trade(&args, &mut agent, &mut tally) => r,
        _ = &mut stop => {
            println!("interrupted (Ctrl-C)");
            Ok(())
        }
    };
    // The last news (a deal the final turn closed) before the summary; not after an error.
    if outcome.is_ok() {
        let _ = news(&agent.client, &mut tally, true).await;
    }
    println!("{}", tally.summary(&name, &agent.stats));
    eprintln!(
        "haggle: private-number leaks: {} ({} withheld)",
        agent.stats.leaks, agent.stats.leaks_withheld
    );
    if let Some(s) = agent.brain.llm_stats() {
        eprintln!(
            "haggle: {}: {} (calls logged to {})",
            args.brain,
            crate::llm_args::describe(&s),
            args.llm_log.display()
        );
    }
    outcome
}

/// Turns until `--turns` are used up, printing what happened after each.
async fn trade(
    args: &AgentArgs,
    agent: &mut Agent<HttpClient>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    // What happened before this run counts in the tally but is not printed again.
    news(&agent.client, tally, false).await?;
    let mut turn = 0u64;
    loop {
        let actions = agent.turn(0, turn).await;
        tracing::debug!(turn, ?actions, "turn taken");
        news(&agent.client, tally, true).await?;
        turn += 1;
        if args.turns != 0 && turn >= args.turns {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(args.interval_ms)).await;
    }
}

/// Reads the events the agent has not seen yet (at most 20 pages) into the tally, printing a
/// line for each that concerns the agent when `print`.
async fn news(client: &HttpClient, tally: &mut Tally, print: bool) -> anyhow::Result<()> {
    use haggle_core::limits::MAX_EVENTS;
    for _ in 0..20 {
        let page = client
            .events(tally.seen, MAX_EVENTS, false)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the market's events: {e}"))?;
        tally.seen = page.next_after;
        for e in &page.events {
            if let Some(line) = tally.see(e)
                && print
            {
                println!("{line}");
            }
        }
        if page.events.len() < MAX_EVENTS as usize {
            break;
        }
    }
    Ok(())
}

/// The agent token given by `--token` or `HAGGLE_AGENT_TOKEN`; without one the error names both.
pub fn agent_token(token: Option<&str>) -> anyhow::Result<&str> {
    token.filter(|t| !t.is_empty()).ok_or_else(|| {
        anyhow::anyhow!(
            "no agent token: pass --token TOKEN or set the environment variable HAGGLE_AGENT_TOKEN \
             (the agent token of the participant, from `haggle token create --role agent`)"
        )
    })
}
