//! `haggle demo`: a whole office classifieds market in one command. Generates (or reads) a
//! scenario, runs it with a mix of rule brains on an embedded SQLite file, shows progress, prints
//! a summary and writes the report, results, CSVs, the database and the tokens to browse it.

use crate::sim::{self, Mode, SimConfig};
use anyhow::Context;
use haggle_agents::llm::CallLog;
use haggle_lab::scenario::Scenario;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub const DEFAULT_BRAINS: &str =
    "rule:boulware,rule:linear,rule:conceder,rule:tit-for-tat,rule:split-difference,rule:micro";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// A scenario file (TOML, JSON or CSV) instead of the generated office market.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// The random seed: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Comma-separated brains, assigned to participants in turn.
    #[arg(long, default_value = DEFAULT_BRAINS)]
    brains: String,
    /// Participants of the generated market.
    #[arg(long, default_value_t = 69)]
    participants: usize,
    /// Budget per participant in minor units ($100).
    #[arg(long, default_value_t = 10_000)]
    budget: i64,
    /// Output folder (replaced if it holds an earlier demo).
    #[arg(long, default_value = "haggle-demo")]
    out: PathBuf,
    /// Maximum rounds (one simulated hour each).
    #[arg(long, default_value_t = 168)]
    rounds: u64,
    /// `rounds` (every agent each round) or `events` (agents wake on news).
    #[arg(long, default_value = "rounds")]
    mode: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Brains see every seller's record as empty (to measure what reputation is worth, e.g.
    /// against `adversary:misdescriber`).
    #[arg(long)]
    hide_reputation: bool,
    /// Real time (ms) the market waits for a participant driven from outside (`human`,
    /// `external`) to end a turn; default 300000 with a `human`, else 30000.
    #[arg(long)]
    turn_budget_ms: Option<u64>,
    /// Where the market is served while a participant driven from outside takes part (an
    /// experiment's `[outside]` takes the same two settings, `listen` and `turn_budget_ms`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    llm: crate::llm_args::LlmArgs,
    #[command(flatten)]
    estimate: crate::estimate::EstimateArgs,
}

pub fn load_scenario(
    path: Option<&std::path::Path>,
    seed: u64,
    participants: usize,
    budget: i64,
) -> anyhow::Result<Scenario> {
    match path {
        Some(p) => {
            let s = Scenario::from_path(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            warn_truncated(&s);
            Ok(s)
        }
        None => {
            if !(2..=100_000).contains(&participants) {
                anyhow::bail!("--participants must be between 2 and 100000");
            }
            Ok(haggle_lab::generator::generate(seed, participants, budget))
        }
    }
}

/// Says what loading a scenario cut to the market's limits (it asked for `truncate_long_text`).
pub fn warn_truncated(s: &Scenario) {
    for line in &s.truncated {
        eprintln!("warning: scenario {}: {line}", s.name);
    }
}

pub fn parse_mode(mode: &str) -> anyhow::Result<Mode> {
    match mode {
        "rounds" => Ok(Mode::Rounds),
        "events" => Ok(Mode::Events),
        other => anyhow::bail!("--mode must be rounds or events, got '{other}'"),
    }
}

fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let scenario = load_scenario(
        args.scenario.as_deref(),
        args.seed,
        args.participants,
        args.budget,
    )?;
    let brains: Vec<String> = args
        .brains
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    // Names and API keys are checked before anything is written.
    let check = args
        .llm
        .factory(Arc::new(CallLog::discard()), &scenario.currency)?;
    if args.estimate.estimate {
        return estimate(&args, &scenario, &brains, &check);
    }
    for b in brains.iter().filter(|b| !crate::external::is_outside(b)) {
        check
            .check(b)
            .map_err(|e| anyhow::anyhow!("--brains: {e}"))?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let log = crate::llm_args::call_log(&args.out, &brains)?;
    let factory = args.llm.factory(log, &scenario.currency)?;
    let private = crate::report::private_dir(&args.out)?;
    let db = private.join("haggle.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let listings: usize = scenario.profiles.iter().map(|p| p.sell.len()).sum();
    eprintln!(
        "haggle demo: {} participants, {} items for sale, brains {}",
        scenario.profiles.len(),
        listings,
        brains.join(", ")
    );
    let cfg = SimConfig {
        scenario: scenario.clone(),
        brains,
        seed: args.seed,
        max_rounds: args.rounds.clamp(1, 100_000),
        tick_ms: haggle_api::haggle_core::HOUR_MS,
        mode: parse_mode(&args.mode)?,
        database: format!("sqlite://{}", db.display()),
        factory,
        withhold_leaks: args.llm.withhold_leaks,
        rules: sim::market_rules(),
        hide_reputation: args.hide_reputation,
        sessions: Vec::new(),
        session_budget: Default::default(),
        outside: crate::external::inviting(
            &haggle_lab::experiment::OutsideSettings {
                listen: args.listen,
                turn_budget_ms: args.turn_budget_ms,
            },
            None,
        ),
        shipping: None,
    };
    // The progress bar redraws a line: only on a terminal.
    let quiet = args.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out = sim::run(cfg, |p| {
        if !quiet {
            progress_bar(p);
        }
    })
    .await?;
    if !quiet {
        eprintln!();
    }
    let sim_wall = started.elapsed();
    let results = crate::report::finish(&args.out, &scenario, &out, sim_wall).await?;
    crate::report::print_summary(&results);
    crate::report::print_conduct(&out);
    let total = started.elapsed();
    println!(
        "wall time {:.2} s ({} rounds)",
        total.as_secs_f64(),
        out.rounds
    );
    println!("report:  {}", args.out.join("report.html").display());
    println!("tokens:  {}", private.join("tokens.json").display());
    print!("{}", next_steps(&args.out, &db, out.market_id));
    Ok(())
}

/// `--estimate`: what the run would cost, without running it (the brains must parse).
fn estimate(
    args: &DemoArgs,
    scenario: &haggle_lab::scenario::Scenario,
    brains: &[String],
    check: &haggle_agents::registry::BrainFactory,
) -> anyhow::Result<()> {
    for b in brains {
        haggle_agents::registry::BrainSpec::parse(b)
            .map_err(|e| anyhow::anyhow!("--brains: {e}"))?;
    }
    crate::estimate::print(
        &args.estimate,
        scenario,
        &[(0..scenario.profiles.len())
            .map(|i| brains[i % brains.len()].clone())
            .collect()],
        check,
        args.rounds.clamp(1, 100_000),
        args.llm.llm_concurrency as usize,
    );
    Ok(())
}

/// Redraws the progress line on stderr.
fn progress_bar(p: &sim::Progress) {
    let width = 30;
    let filled = (p.round as usize * width / p.max_rounds.max(1) as usize).min(width);
    eprint!(
        "\r[{}{}] round {:>4}/{}  day {:>4.1}  deals {:>4}  volume {:>10}",
        "#".repeat(filled),
        " ".repeat(width - filled),
        p.round,
        p.max_rounds,
        p.sim_ms as f64 / 86_400_000.0,
        p.deals,
        dollars(p.volume)
    );
    let _ = std::io::stderr().flush();
}

/// What to do next, with the exact command (absolute paths, so it works from any folder), the
/// address, which token opens which view, and how the served market's simulated clock moves.
fn next_steps(out: &std::path::Path, db: &std::path::Path, market: i64) -> String {
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let tokens = abs(&db.with_file_name("tokens.json"));
    format!(
        "\nNext steps:\n\
         1. Serve the finished market and its report:\n\
         \x20    haggle serve --database sqlite://{db} --reports {out}\n\
         2. Open http://127.0.0.1:8080/signin and paste a token from {tokens}:\n\
         \x20    \"operator\"  everything: the feed, Operate (tokens, funds, disputes) and Reports\n\
         \x20    \"observer\"  watch the market and read the reports\n\
         \x20    a participant's \"principal_token\"  that participant's My agent page (approvals, mandate, ratings)\n\
         \x20    a participant's \"agent_token\"  trade as that agent: haggle agent run --token TOKEN --profile FILE,\n\
         \x20        haggle mcp --token TOKEN, or the HTTP API (http://127.0.0.1:8080/openapi.json)\n\
         3. The market (id {market}) runs on a simulated clock: it moves only when the operator\n\
         \x20  advances it, e.g. by an hour:\n\
         \x20    curl -X POST -H \"Authorization: Bearer OPERATOR_TOKEN\" -H 'Content-Type: application/json' \\\n\
         \x20      -d '{{\"by_ms\": 3600000}}' http://127.0.0.1:8080/v1/markets/{market}/clock/advance\n",
        db = abs(db).display(),
        out = abs(out).display(),
        tokens = tokens.display(),
    )
}
