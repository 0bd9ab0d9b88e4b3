//! `haggle experiment run | replay | report | compare` (spec: experiments.md; issue 8): the
//! markets of an experiment side by side, each on its own SQLite file, seed and simulated clock,
//! a bounded number at once; resumable (a run whose `record.json` exists is finished and never
//! redone); every run's config, seeds, rendered prompts, brain ids, events, record and LLM-call
//! log stored; exact replay of a run; the analysis and its reports.
//!
//! Folder layout (`--out`, default `experiments/<name>`):
//! `experiment.toml` (as given), `experiment.json`, `scenario.json`, `plan.json`, `journal.jsonl`
//! (run started / finished / kept, appended; a shard of `--shard I/N` keeps
//! `journal-shard-I-of-N.jsonl`), `runs/<id>/` with `run.json`, `prompts.json`,
//! `llm_calls.jsonl`, `haggle.db`, `events.jsonl`, the one-run report files, `timing.json`, with
//! repeated markets (`sessions = K`) `sessions.json` and `memory.json` (LLM brains' notes), and,
//! written last, `record.json`; then `analysis.json`, `report.html` and the CSVs of the analysis.

use crate::sim::{self, SimConfig};
use anyhow::{Context, bail};
use haggle_agents::llm::log::Record;
use haggle_agents::llm::replay::Recording;
use haggle_agents::spend::SpendGuard;
use haggle_api::haggle_core::MarketRules;
use haggle_lab::analysis::{self, LlmUsage, RunData};
use haggle_lab::experiment::{
    Experiment, OutsideSettings, RunPlan, SessionBudget, is_llm_brain, is_outside_brain, usd,
};
use haggle_lab::metrics::RunRecord;
use haggle_lab::scenario::Scenario;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum ExperimentCmd {
    /// Run every market of an experiment file (finished runs in --out are kept, not redone).
    Run {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Output folder (default: experiments/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Start at most this many runs now (the rest stay for the next invocation).
        #[arg(long)]
        max_runs: Option<usize>,
        /// Run only shard I of N (1-based): the plan's runs at positions I, I+N, I+2N, ...,
        /// into the same folder layout; `experiment report` merges the shards found there.
        #[arg(long, value_parser = Shard::parse)]
        shard: Option<Shard>,
        #[command(flatten)]
        estimate: crate::estimate::EstimateArgs,
    },
    /// Re-run one finished run from its stored config and check it is identical.
    Replay {
        /// The experiment's output folder.
        dir: PathBuf,
        /// The run's id (its folder under runs/).
        run: String,
    },
    /// Analyse the finished runs and write report.html, analysis.json and CSVs into the folder.
    Report {
        /// The experiment's output folder.
        dir: PathBuf,
    },
    /// How honest the statistics are here: the experiment's A/A version over many seeds, the
    /// false-positive rate and interval coverage of every compared outcome.
    Calibrate(crate::calibrate::CalibrateArgs),
    /// Put several experiments side by side (compare.html, compare.json).
    Compare {
        /// The experiments' output folders, two or more.
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Where compare.html and compare.json go.
        #[arg(long, default_value = "experiment-comparison")]
        out: PathBuf,
    },
}

pub async fn run(cmd: ExperimentCmd) -> anyhow::Result<()> {
    match cmd {
        ExperimentCmd::Run {
            file,
            out,
            max_runs,
            shard,
            estimate,
        } => match estimate.estimate {
            true => estimate_experiment(&file, &estimate),
            false => run_experiment(&file, out, max_runs, shard).await,
        },
        ExperimentCmd::Replay { dir, run } => replay(&dir, &run).await,
        ExperimentCmd::Report { dir } => report(&dir).map(|_| ()),
        ExperimentCmd::Compare { dirs, out } => compare(&dirs, &out),
        ExperimentCmd::Calibrate(args) => crate::calibrate::calibrate(args).await,
    }
}

/// One of N slices of an experiment's runs, for many machines sharing one folder (a cluster's
/// job array): shard I takes the plan's runs at positions I, I+N, I+2N, ... (1-based), so the
/// slices are disjoint, cover the plan, and do not depend on which machine runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The most shards an experiment is cut into (a bound, like every count).
    pub const MAX: usize = 10_000;

    /// `I/N` with 1 ≤ I ≤ N ≤ 10,000.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("'{s}': expected I/N with 1 <= I <= N <= {}", Shard::MAX);
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if index == 0 || index > count || count > Shard::MAX {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the plan's run at `position` (0-based) is this shard's.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The shard's journal: shards on different machines never append to one file.
    fn journal_name(&self) -> String {
        format!("journal-shard-{}-of-{}.jsonl", self.index, self.count)
    }
}

/// What `run.json` holds: everything needed to run the market again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub experiment: String,
    pub plan: RunPlan,
    pub mode: String,
    pub max_rounds: u64,
    pub tick_ms: i64,
    pub sim_start_ms: i64,
    /// The seed of each participant's brain, as the simulation derives it.
    pub brain_seed_rule: String,
    pub prompt_template: String,
    /// Per participant, in the scenario's order.
    pub participants: Vec<Assigned>,
    /// The market's rules: the simulation's, with the changes of the run's group (absent in
    /// runs stored before groups could change them: those ran on the simulation's rules).
    #[serde(default)]
    pub rules: Option<MarketRules>,
    /// Repeated markets: the sessions of the run's market (omitted while 1).
    #[serde(default = "one_session", skip_serializing_if = "is_one_session")]
    pub sessions: u32,
    #[serde(default, skip_serializing_if = "SessionBudget::is_fresh")]
    pub session_budget: SessionBudget,
    /// With participants driven from outside (`human`, `external`): where the market is served
    /// and how long their turns wait (the experiment's `[outside]`, or the defaults). A replay
    /// needs neither: their recorded commands are applied at their turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<OutsideSettings>,
}

impl RunConfig {
    /// Whether the run serves on a fixed port (so no other such run may overlap it).
    fn holds_port(&self) -> bool {
        self.outside.is_some_and(|o| o.fixed_port())
    }
}

fn one_session() -> u32 {
    1
}

fn is_one_session(n: &u32) -> bool {
    *n == 1
}

/// What a run's sessions are measured against, made once per experiment: each session's lists
/// and efficient allocation, and the whole run's (one session: the scenario's own).
pub struct Setup {
    pub lists: Vec<Vec<haggle_agents::profile::Profile>>,
    pub scenarios: Vec<Scenario>,
    pub effs: Vec<haggle_lab::efficiency::Efficiency>,
    pub whole: Scenario,
    pub eff: haggle_lab::efficiency::Efficiency,
}

impl Setup {
    pub fn new(scenario: &Scenario, sessions: u32) -> anyhow::Result<Setup> {
        if sessions <= 1 {
            let eff = haggle_lab::efficiency::max_welfare(scenario);
            return Ok(Setup {
                lists: vec![scenario.profiles.clone()],
                scenarios: vec![scenario.clone()],
                effs: vec![eff.clone()],
                whole: scenario.clone(),
                eff,
            });
        }
        let lists = scenario
            .session_lists(sessions)
            .map_err(|e| anyhow::anyhow!("sessions: {e}"))?;
        let scenarios: Vec<Scenario> = lists
            .iter()
            .map(|l| scenario.with_profiles(l.clone()))
            .collect();
        let effs: Vec<_> = scenarios
            .iter()
            .map(haggle_lab::efficiency::max_welfare)
            .collect();
        Ok(Setup {
            whole: haggle_lab::sessions::whole_run_scenario(scenario, &lists),
            eff: haggle_lab::efficiency::Efficiency::sum(&effs),
            lists,
            scenarios,
            effs,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    pub name: String,
    pub arm: String,
    pub brain: String,
    /// For language-model brains: the provider's model id (`<provider>:<model>`); none for rules.
    pub model: Option<String>,
}

/// What `record.json` holds: the run's record plus the end of its event hash chain. Its
/// presence marks the run finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub record: RunRecord,
    pub events: u64,
    pub chain_head: String,
}

/// Writes a whole file at once (a temporary beside it, then renamed): shards starting together
/// on a shared folder never read each other's half-written files.
fn write(path: &Path, body: &str) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn json<T: Serialize>(v: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    Ok(s)
}

/// Appends one line to the journal (what happened when, for resume audits); a shard keeps its
/// own.
fn journal(
    dir: &Path,
    shard: Option<Shard>,
    run: &str,
    event: &str,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    use std::io::Write;
    let path = dir.join(shard.map_or("journal.jsonl".into(), |s| s.journal_name()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let line = serde_json::json!({"run": run, "event": event, "detail": extra});
    writeln!(f, "{line}").with_context(|| format!("cannot write {}", path.display()))
}

fn run_dir(dir: &Path, id: &str) -> PathBuf {
    dir.join("runs").join(id)
}

/// A finished run's stored record, if it is complete.
fn finished(dir: &Path, id: &str) -> Option<Finished> {
    let text = std::fs::read_to_string(run_dir(dir, id).join("record.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn llm_usage(run: &Path) -> anyhow::Result<BTreeMap<String, LlmUsage>> {
    let path = run.join("llm_calls.jsonl");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    analysis::llm_usage_from_jsonl(&read(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Per agent, the rounds in which the market applied its action first (`conduct.json`; a run
/// recorded before the figure existed has none).
fn first_movers(run: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let path = run.join("conduct.json");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let conduct: serde_json::Value =
        serde_json::from_str(&read(&path)?).with_context(|| format!("{}", path.display()))?;
    Ok(conduct["first_movers"]["by_agent"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(agent, n)| (agent.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default())
}

fn model_id(brain: &str) -> Option<String> {
    is_llm_brain(brain).then(|| brain.split('@').next().unwrap_or(brain).to_string())
}

/// The run's config: each participant's arm and brain from the plan.
fn run_config(x: &Experiment, scenario: &Scenario, plan: &RunPlan) -> anyhow::Result<RunConfig> {
    let names: Vec<String> = scenario.profiles.iter().map(|p| p.name.clone()).collect();
    let arms = plan
        .assignment(&names)
        .map_err(|e| anyhow::anyhow!("run {}: {e}", plan.id))?;
    let participants: Vec<Assigned> = names
        .into_iter()
        .zip(arms)
        .map(|(name, arm)| {
            let brain = x.arms[&arm].clone();
            Assigned {
                name,
                arm,
                model: model_id(&brain),
                brain,
            }
        })
        .collect();
    Ok(RunConfig {
        experiment: x.name.clone(),
        plan: plan.clone(),
        mode: x.market.mode.clone(),
        max_rounds: x.market.max_rounds,
        tick_ms: haggle_api::haggle_core::HOUR_MS,
        sim_start_ms: sim::SIM_START_MS,
        brain_seed_rule: "run seed × 1000003 + participant index".into(),
        prompt_template: haggle_agents::prompt::PROMPT_TEMPLATE_VERSION.into(),
        rules: Some(
            haggle_lab::experiment::rules_over(&sim::market_rules(), &plan.rules)
                .map_err(|e| anyhow::anyhow!("run {}: rules: {e}", plan.id))?,
        ),
        sessions: x.sessions,
        session_budget: x.session_budget,
        outside: participants
            .iter()
            .any(|a| is_outside_brain(&a.brain))
            .then(|| x.outside.unwrap_or_default()),
        participants,
    })
}

/// Runs one market from its config into `dir` (emptied first) and stores everything. Returns
/// the record and the one-run metrics' summary line.
async fn execute(
    dir: &Path,
    scenario: &Scenario,
    setup: &Setup,
    cfg: &RunConfig,
    spend: Option<Arc<SpendGuard>>,
    replay: Option<Arc<Recording>>,
    mut progress: impl FnMut(&sim::Progress) + Send,
) -> anyhow::Result<(Finished, haggle_lab::metrics::Metrics)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    write(&dir.join("run.json"), &json(cfg)?)?;
    write_prompts(dir, scenario, cfg)?;
    let config = sim_config(dir, scenario, setup, cfg, spend, replay)?;
    let out = sim::run(config, &mut progress).await?;
    let store = out.svc.store();
    let v = store.verify(out.market_id).await?;
    if !v.ok() {
        bail!(
            "run {}: the ledger did not verify: {}",
            cfg.plan.id,
            v.breaches.join("; ")
        );
    }
    let sim_wall = started.elapsed();
    // Conduct and the first-mover figure of the order (not compared by a replay: timings aside,
    // it follows from the same order).
    write(
        &dir.join("conduct.json"),
        &serde_json::to_string_pretty(&crate::report::conduct(&out))?,
    )?;
    let record = crate::results::record(&out).await?;
    let metrics = haggle_lab::metrics::compute_with(&setup.whole, &record, &setup.eff);
    haggle_lab::report::write_report(dir, &setup.whole, &metrics)
        .with_context(|| format!("cannot write the report to {}", dir.display()))?;
    if out.sessions.len() > 1 {
        write_sessions(dir, setup, &record, &out.sessions)?;
    }
    let (count, head) = write_events(dir, store, out.market_id).await?;
    let mut timing = haggle_lab::report::Timing {
        total_ms: started.elapsed().as_secs_f64() * 1000.0,
        ..Default::default()
    };
    timing
        .phases_ms
        .insert("simulation".into(), sim_wall.as_secs_f64() * 1000.0);
    haggle_lab::report::write_timing(dir, &timing)?;
    let done = Finished {
        record,
        events: count,
        chain_head: head,
    };
    // Written last, through a rename: its presence means the run is complete.
    let tmp = dir.join("record.json.tmp");
    write(&tmp, &json(&done)?)?;
    std::fs::rename(&tmp, dir.join("record.json"))
        .with_context(|| format!("cannot finish {}", dir.display()))?;
    Ok((done, metrics))
}

/// The system prompt each participant's brain would get, with its brain (`prompts.json`).
fn write_prompts(dir: &Path, scenario: &Scenario, cfg: &RunConfig) -> anyhow::Result<()> {
    let prompts: BTreeMap<&str, serde_json::Value> = scenario
        .profiles
        .iter()
        .zip(&cfg.participants)
        .map(|(p, a)| {
            (
                p.name.as_str(),
                serde_json::json!({
                    "brain": a.brain,
                    "template_version": cfg.prompt_template,
                    "system_prompt": haggle_agents::prompt::render_system_prompt(p, &scenario.currency),
                }),
            )
        })
        .collect();
    write(&dir.join("prompts.json"), &json(&prompts)?)
}

/// The market of one run: its brains (LLM ones log every call to `llm_calls.jsonl` in `dir`)
/// on a fresh SQLite file in `dir`.
fn sim_config(
    dir: &Path,
    scenario: &Scenario,
    setup: &Setup,
    cfg: &RunConfig,
    spend: Option<Arc<SpendGuard>>,
    replay: Option<Arc<Recording>>,
) -> anyhow::Result<SimConfig> {
    // The LLM-call log: LLM brains append one record per call; rule brains make none.
    let log_path = dir.join("llm_calls.jsonl");
    let log = Arc::new(
        haggle_agents::llm::CallLog::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?,
    );
    let mut factory = haggle_agents::registry::BrainFactory::new(
        haggle_agents::registry::LlmEnv::from_env(),
        log,
        &scenario.currency,
    );
    // A live run with outside participants invites them; a replay serves nobody.
    let outside = match (&cfg.outside, &replay) {
        (Some(o), None) => crate::external::inviting(o, Some(cfg.plan.id.clone())),
        _ => Default::default(),
    };
    factory.spend = spend;
    factory.replay = replay;
    let db = dir.join("haggle.db");
    Ok(SimConfig {
        scenario: scenario.clone(),
        brains: cfg.participants.iter().map(|a| a.brain.clone()).collect(),
        seed: cfg.plan.seed,
        max_rounds: cfg.max_rounds,
        tick_ms: cfg.tick_ms,
        mode: crate::demo::parse_mode(&cfg.mode)?,
        database: format!("sqlite://{}", db.display()),
        factory,
        withhold_leaks: false,
        rules: cfg.rules.clone().unwrap_or_else(sim::market_rules),
        hide_reputation: false,
        sessions: setup
            .lists
            .iter()
            .skip(1)
            .map(|profiles| sim::Session {
                profiles: profiles.clone(),
            })
            .collect(),
        session_budget: cfg.session_budget,
        outside,
        shipping: cfg.plan.shipping,
    })
}

/// Every event of the market (the operator's view) into `events.jsonl`; their count and the
/// head of the hash chain.
async fn write_events(
    dir: &Path,
    store: &haggle_service::Store,
    market: i64,
) -> anyhow::Result<(u64, String)> {
    let mut events = String::new();
    let (mut after, mut count, mut head) = (0i64, 0u64, String::new());
    loop {
        let page = store
            .events(
                market,
                haggle_service::Viewer::All,
                after,
                haggle_core::limits::MAX_EVENTS,
            )
            .await?;
        for e in &page {
            events.push_str(&serde_json::to_string(e)?);
            events.push('\n');
            after = e.seq;
            head = e.hash.clone();
            count += 1;
        }
        if page.len() < 1000 {
            break;
        }
    }
    write(&dir.join("events.jsonl"), &events)?;
    Ok((count, head))
}

/// Repeated markets: each session's figures (`sessions.json`) and the notes agents carried
/// from one session to the next (`memory.json`, when any).
fn write_sessions(
    dir: &Path,
    setup: &Setup,
    record: &RunRecord,
    marks: &[sim::SessionMark],
) -> anyhow::Result<()> {
    use haggle_lab::sessions::{Carried, measure, session_record};
    let mut out = Vec::new();
    for (k, mark) in marks.iter().enumerate() {
        let to = marks.get(k + 1).map(|m| m.started_at);
        let part = session_record(record, mark.started_at, to);
        let m = haggle_lab::metrics::compute_with(&setup.scenarios[k], &part, &setup.effs[k]);
        let carried = Carried {
            completed_deals: mark.completed_deals_at_start,
            ratings: mark.ratings_at_start,
            participants_with_record: mark.participants_with_record,
        };
        out.push(measure(mark.session, mark.rounds, carried, &m));
    }
    write(&dir.join("sessions.json"), &json(&out)?)?;
    let memories: BTreeMap<u32, &BTreeMap<String, String>> = marks
        .iter()
        .filter(|m| !m.memories.is_empty())
        .map(|m| (m.session, &m.memories))
        .collect();
    if !memories.is_empty() {
        // Keyed by the session that read the note (written at the end of the one before).
        write(&dir.join("memory.json"), &json(&memories)?)?;
    }
    Ok(())
}

/// `experiment run --estimate`: the LLM calls, tokens, cost and wall time of every run of the
/// plan, printed without calling a model or writing anything.
fn estimate_experiment(file: &Path, a: &crate::estimate::EstimateArgs) -> anyhow::Result<()> {
    let x = Experiment::from_path(file)?;
    let scenario = x.scenario()?;
    let mut markets = Vec::new();
    for p in &x.plan() {
        let cfg = run_config(&x, &scenario, p)?;
        markets.push(cfg.participants.into_iter().map(|a| a.brain).collect());
    }
    let factory = haggle_agents::registry::BrainFactory::new(
        haggle_agents::registry::LlmEnv::default(),
        Arc::new(haggle_agents::llm::CallLog::discard()),
        &scenario.currency,
    );
    crate::estimate::print(
        a,
        &scenario,
        &markets,
        &factory,
        // Every session of a repeated market runs up to max_rounds.
        x.market.max_rounds * u64::from(x.sessions),
        x.llm.concurrency,
    );
    Ok(())
}

/// The experiment's folder: new, or one holding this same experiment (else refused).
fn prepare(dir: &Path, x: &Experiment, text: &str, scenario: &Scenario) -> anyhow::Result<()> {
    let plan = json(&x.plan())?;
    let exp = json(x)?;
    let scen = scenario.to_json();
    if dir.join("plan.json").exists() {
        for (name, now) in [
            ("plan.json", &plan),
            ("experiment.json", &exp),
            ("scenario.json", &scen),
        ] {
            let before = read(&dir.join(name))?;
            if before.trim() != now.trim() {
                bail!(
                    "{} holds runs of a different experiment ({name} differs); choose another --out or delete the folder",
                    dir.display()
                );
            }
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("runs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    write(&dir.join("experiment.toml"), text)?;
    write(&dir.join("experiment.json"), &exp)?;
    write(&dir.join("scenario.json"), &scen)?;
    write(&dir.join("plan.json"), &plan)?;
    Ok(())
}

/// What one invocation did with an experiment's runs.
pub struct Ran {
    pub failed: Vec<String>,
    /// The runs (of this shard) not finished yet.
    pub remaining: usize,
}

/// Runs the experiment `x` (its file's text `text`) into `dir`: the runs of `shard` (all
/// without), at most `max_runs` of them now, `concurrency` markets at once; `verbose` prints a
/// line per run and progress.
pub async fn run_runs(
    x: &Experiment,
    text: &str,
    dir: &Path,
    max_runs: Option<usize>,
    shard: Option<Shard>,
    verbose: bool,
) -> anyhow::Result<Ran> {
    let say = |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    let scenario = x.scenario()?;
    crate::demo::warn_truncated(&scenario);
    let dir = dir.to_path_buf();
    prepare(&dir, x, text, &scenario)?;
    let plan: Vec<RunPlan> = x
        .plan()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.takes(*i)))
        .map(|(_, p)| p)
        .collect();
    if let Some(s) = shard {
        say(format!(
            "shard {}/{}: {} of the experiment's runs",
            s.index,
            s.count,
            plan.len()
        ));
    }
    let (_, max) = x.spend_limits();
    let spent_before = spent_before(&dir, &plan)?;
    let guard = Arc::new(SpendGuard::new(x.llm.concurrency, max, spent_before));
    check_arms(x, &scenario.currency)?;
    announce(x, plan.len(), &scenario, &dir, spent_before, &say)?;

    let shared = Shared {
        dir: dir.clone(),
        shard,
        eff: Arc::new(Setup::new(&scenario, x.sessions)?),
        scenario: Arc::new(scenario),
        guard,
        verbose,
    };
    let mut pending = VecDeque::new();
    for p in &plan {
        if finished(&dir, &p.id).is_some() {
            say(format!("{}: finished earlier, kept", p.id));
            journal(&dir, shard, &p.id, "kept", serde_json::json!({}))?;
        } else {
            pending.push_back(run_config(x, &shared.scenario, p)?);
        }
    }
    let started_at = Instant::now();
    let (done, failed) =
        run_pending(&shared, x, pending, max_runs.unwrap_or(usize::MAX), &say).await?;
    let remaining = plan
        .iter()
        .filter(|p| finished(&dir, &p.id).is_none())
        .count();
    say(format!(
        "{done} run(s) finished now in {:.1} s; {} of {} finished in all",
        started_at.elapsed().as_secs_f64(),
        plan.len() - remaining,
        plan.len()
    ));
    Ok(Ran { failed, remaining })
}

/// What every run of one invocation shares.
struct Shared {
    dir: PathBuf,
    shard: Option<Shard>,
    scenario: Arc<Scenario>,
    eff: Arc<Setup>,
    guard: Arc<SpendGuard>,
    verbose: bool,
}

/// Runs the `pending` runs, at most `limit` of them, `x.execution.concurrency` at once; runs
/// serving participants driven from outside on a fixed port one at a time (the port is one
/// market's). Returns how many finished and the ids of those that failed.
async fn run_pending(
    s: &Shared,
    x: &Experiment,
    mut pending: VecDeque<RunConfig>,
    limit: usize,
    say: &dyn Fn(String),
) -> anyhow::Result<(usize, Vec<String>)> {
    if pending.iter().filter(|c| c.holds_port()).count() > 1 && x.execution.concurrency > 1 {
        say(
            "runs with participants driven from outside share one port: they run one at a time"
                .into(),
        );
    }
    // Each market runs on its own thread and single-threaded runtime: agents hold their brains
    // across awaits and brains need not be `Sync`, so a run cannot move between threads.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut running, mut started, mut done) = (0usize, 0usize, 0usize);
    let mut failed = Vec::new();
    // The run serving on the fixed port, if one is.
    let mut port_held: Option<String> = None;
    let mut stop = false;
    loop {
        while !stop && running < x.execution.concurrency && started < limit {
            let free = |c: &RunConfig| !(c.holds_port() && port_held.is_some());
            let Some(cfg) = pending
                .iter()
                .position(free)
                .and_then(|at| pending.remove(at))
            else {
                break;
            };
            started += 1;
            running += 1;
            if cfg.holds_port() {
                port_held = Some(cfg.plan.id.clone());
            }
            journal(
                &s.dir,
                s.shard,
                &cfg.plan.id,
                "started",
                serde_json::json!({}),
            )?;
            say(format!("{}: started (seed {})", cfg.plan.id, cfg.plan.seed));
            spawn_run(s, cfg, tx.clone());
        }
        if running == 0 {
            break;
        }
        let Some(joined) = rx.recv().await else {
            break;
        };
        running -= 1;
        if port_held.as_deref() == Some(joined.0.as_str()) {
            port_held = None;
        }
        match finish(&s.dir, s.shard, joined, say)? {
            Some(failed_id) => failed.push(failed_id),
            None => done += 1,
        }
        if s.guard.refused() > 0 && !stop {
            stop = true;
            say(format!(
                "the LLM spend maximum was reached ({} spent): no further runs start",
                usd(s.guard.spent())
            ));
        }
    }
    Ok((done, failed))
}

/// What a run's thread sends back: its id, how long it took, and its outcome.
type Joined = (
    String,
    std::time::Duration,
    anyhow::Result<(Finished, haggle_lab::metrics::Metrics)>,
);

/// The LLM spend of the runs finished in earlier sessions (it counts against the maximum).
fn spent_before(dir: &Path, plan: &[RunPlan]) -> anyhow::Result<i64> {
    let mut spent_before = 0;
    for p in plan {
        if finished(dir, &p.id).is_some() {
            spent_before += llm_usage(&run_dir(dir, &p.id))?
                .values()
                .map(|u| u.cost_micro_usd)
                .sum::<i64>();
        }
    }
    Ok(spent_before)
}

/// Every arm's brain can be made (API keys set) before any run starts.
fn check_arms(x: &Experiment, currency: &str) -> anyhow::Result<()> {
    let check = haggle_agents::registry::BrainFactory::new(
        haggle_agents::registry::LlmEnv::from_env(),
        Arc::new(haggle_agents::llm::CallLog::discard()),
        currency,
    );
    for (arm, brain) in &x.arms {
        check
            .check(brain)
            .map_err(|e| anyhow::anyhow!("arm {arm}: {e}"))?;
    }
    Ok(())
}

/// Says what the experiment will run and spend; fails when earlier runs used up the maximum.
fn announce(
    x: &Experiment,
    runs: usize,
    scenario: &Scenario,
    dir: &Path,
    spent_before: i64,
    say: &dyn Fn(String),
) -> anyhow::Result<()> {
    let (estimated, max) = x.spend_limits();
    let uses_llm = x.arms.values().any(|b| is_llm_brain(b));
    say(format!(
        "experiment {}: {} runs of {} participants, arms {}; {} markets at once; results in {}",
        x.name,
        runs,
        scenario.profiles.len(),
        x.arms
            .iter()
            .map(|(a, b)| format!("{a}={b}"))
            .collect::<Vec<_>>()
            .join(", "),
        x.execution.concurrency,
        dir.display()
    ));
    if uses_llm {
        say(format!(
            "LLM spend: estimated {}, maximum {}, already spent {}; {} calls at once",
            estimated.map_or("not given".into(), usd),
            max.map_or("none".into(), usd),
            usd(spent_before),
            x.llm.concurrency
        ));
    } else {
        say("LLM spend: none (rule brains only)".into());
    }
    if let Some(m) = max
        && uses_llm
        && spent_before >= m
    {
        bail!(
            "the LLM spend maximum ({}) is used up by earlier runs; raise llm.max_spend_usd to continue",
            usd(m)
        );
    }
    Ok(())
}

/// The stack of a run's thread: a market's future is deep (the simulation, its outside seats,
/// agents, the service and the store), and a debug build's frames are large.
const RUN_THREAD_STACK: usize = 16 * 1024 * 1024;

/// Runs one market on a thread and single-threaded runtime of its own, sending back what it
/// [`Joined`] with.
fn spawn_run(s: &Shared, cfg: RunConfig, tx: tokio::sync::mpsc::UnboundedSender<Joined>) {
    let (dir, scenario, eff) = (s.dir.clone(), s.scenario.clone(), s.eff.clone());
    let (guard, verbose) = (s.guard.clone(), s.verbose);
    let failed = (tx.clone(), cfg.plan.id.clone());
    let spawned = std::thread::Builder::new()
        .stack_size(RUN_THREAD_STACK)
        .spawn(move || {
            let t = Instant::now();
            let id = cfg.plan.id.clone();
            let mut last_line = 0u64;
            let label = id.clone();
            let work = std::panic::AssertUnwindSafe(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start a run's runtime")
                    .and_then(|rt| {
                        // On the heap: the future is larger than a thread's stack likes.
                        rt.block_on(Box::pin(execute(
                            &run_dir(&dir, &id),
                            &scenario,
                            &eff,
                            &cfg,
                            Some(guard.clone()),
                            None,
                            move |p| {
                                if verbose && p.round >= last_line + 24 {
                                    last_line = p.round;
                                    eprintln!(
                                        "{label}: round {:>4}/{}  deals {:>4}  volume {}",
                                        p.round,
                                        p.max_rounds,
                                        p.deals,
                                        haggle_lab::report::money(p.volume, "USD")
                                    );
                                }
                            },
                        )))
                    })
            });
            // A panicking run is reported like a failed one, so the others go on.
            let result = std::panic::catch_unwind(work).unwrap_or_else(|_| {
                Err(anyhow::anyhow!("the run panicked (see the message above)"))
            });
            let _ = tx.send((id, t.elapsed(), result));
        });
    if let Err(e) = spawned {
        let (tx, id) = failed;
        let _ = tx.send((
            id,
            std::time::Duration::ZERO,
            Err(anyhow::anyhow!("cannot start the run's thread: {e}")),
        ));
    }
}

/// Journals a run that ended and says how it went; the run's id when it failed.
fn finish(
    dir: &Path,
    shard: Option<Shard>,
    (id, took, result): Joined,
    say: &dyn Fn(String),
) -> anyhow::Result<Option<String>> {
    match result {
        Ok((f, m)) => {
            journal(
                dir,
                shard,
                &id,
                "finished",
                serde_json::json!({"events": f.events, "deals": m.market.deals, "wall_ms": took.as_millis() as u64}),
            )?;
            say(format!(
                "{id}: finished in {:.1} s: {} deals, volume {}, efficiency {}",
                took.as_secs_f64(),
                m.market.deals,
                haggle_lab::report::money(m.market.gross_volume, &m.currency),
                m.market
                    .allocative_efficiency
                    .map_or("–".into(), |e| format!("{:.1}%", e * 100.0))
            ));
        }
        Err(e) => {
            journal(
                dir,
                shard,
                &id,
                "failed",
                serde_json::json!({"error": e.to_string()}),
            )?;
            eprintln!("{id}: FAILED: {e:#}");
            return Ok(Some(id));
        }
    }
    Ok(None)
}

async fn run_experiment(
    file: &Path,
    out: Option<PathBuf>,
    max_runs: Option<usize>,
    shard: Option<Shard>,
) -> anyhow::Result<()> {
    let x = Experiment::from_path(file)?;
    let text = read(file)?;
    let dir = out.unwrap_or_else(|| PathBuf::from("experiments").join(&x.name));
    let Ran { failed, remaining } = run_runs(&x, &text, &dir, max_runs, shard, true).await?;
    if !failed.is_empty() {
        bail!(
            "{} run(s) failed: {}; run the same command again to retry them",
            failed.len(),
            failed.join(", ")
        );
    }
    let again = shard.map_or(String::new(), |s| {
        format!(" --shard {}/{}", s.index, s.count)
    });
    if remaining > 0 {
        println!(
            "{remaining} run(s) not started yet: run `haggle experiment run {} --out {}{again}` again to continue",
            file.display(),
            dir.display()
        );
    }
    // Shards finish at different times on different machines: the report is one step, run once
    // every shard is done (it reads every finished run in the folder).
    if shard.is_some() {
        println!(
            "shard done; once every shard has finished: haggle experiment report {}",
            dir.display()
        );
        return Ok(());
    }
    let html = report(&dir)?;
    println!("report:  {}", html.display());
    Ok(())
}

/// The finished runs of an experiment folder, for the analysis.
pub fn load_runs(dir: &Path) -> anyhow::Result<(Experiment, Vec<RunData>, usize)> {
    let x: Experiment = serde_json::from_str(&read(&dir.join("experiment.json"))?)
        .with_context(|| format!("{} is not an experiment folder", dir.display()))?;
    let plan: Vec<RunPlan> = serde_json::from_str(&read(&dir.join("plan.json"))?)?;
    let mut runs = Vec::new();
    for p in &plan {
        if finished(dir, &p.id).is_none() {
            continue;
        }
        let rd = run_dir(dir, &p.id);
        let cfg: RunConfig = serde_json::from_str(&read(&rd.join("run.json"))?)
            .with_context(|| format!("{}", rd.join("run.json").display()))?;
        let results: haggle_lab::report::Results =
            serde_json::from_str(&read(&rd.join("results.json"))?)
                .with_context(|| format!("{}", rd.join("results.json").display()))?;
        runs.push(RunData {
            plan: p.clone(),
            arms: cfg
                .participants
                .iter()
                .map(|a| (a.name.clone(), a.arm.clone()))
                .collect(),
            metrics: results.metrics,
            llm: llm_usage(&rd)?,
            first_movers: first_movers(&rd)?,
            sessions: match rd.join("sessions.json") {
                p if p.exists() => {
                    serde_json::from_str(&read(&p)?).with_context(|| format!("{}", p.display()))?
                }
                _ => Vec::new(),
            },
        });
    }
    Ok((x, runs, plan.len()))
}

/// Analyses the finished runs and writes the report files; returns the HTML's path.
fn report(dir: &Path) -> anyhow::Result<PathBuf> {
    let (x, runs, planned) = load_runs(dir)?;
    if runs.is_empty() {
        bail!("{} has no finished run yet", dir.display());
    }
    let a = analysis::analyse(
        &x.name,
        &x.arms,
        &runs,
        &x.analysis.resampling(),
        x.analysis.min_units,
    );
    let files = haggle_lab::experiment_report::write(dir, &x, &a, &runs, planned)
        .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    Ok(files)
}

/// Re-runs one finished run and compares what it produced with what was stored.
async fn replay(dir: &Path, id: &str) -> anyhow::Result<()> {
    let rd = run_dir(dir, id);
    let stored = finished(dir, id).with_context(|| {
        format!(
            "run {id} has not finished in {} (no runs/{id}/record.json)",
            dir.display()
        )
    })?;
    let cfg: RunConfig = serde_json::from_str(&read(&rd.join("run.json"))?)?;
    let scenario: Scenario = serde_json::from_str(&read(&dir.join("scenario.json"))?)?;
    // Language-model brains are answered from the run's call log, never from the provider.
    let log_path = rd.join("llm_calls.jsonl");
    let recording = if log_path.exists() {
        Recording::read(&log_path).with_context(|| format!("cannot read {}", log_path.display()))?
    } else {
        Recording::default()
    };
    let recording = Arc::new(recording);
    let eff = Setup::new(&scenario, cfg.sessions)?;
    let scratch = dir.join("replay").join(id);
    let t = Instant::now();
    let (again, _) = execute(
        &scratch,
        &scenario,
        &eff,
        &cfg,
        None,
        Some(recording.clone()),
        |_| {},
    )
    .await?;
    let mut cmp = Comparison {
        rows: Vec::new(),
        same: true,
    };
    cmp.check(
        "events",
        stored.events.to_string(),
        again.events.to_string(),
    );
    cmp.check(
        "event chain head",
        stored.chain_head.clone(),
        again.chain_head.clone(),
    );
    cmp.files(&rd, &scratch)?;
    let divergences = cmp.calls(&recording, &log_path, &scratch)?;
    println!(
        "replay of {id} (seed {}, {} participants) in {:.1} s:",
        cfg.plan.seed,
        cfg.participants.len(),
        t.elapsed().as_secs_f64()
    );
    for r in cmp.rows {
        println!("  {r}");
    }
    for d in divergences.iter().skip(1).take(9) {
        println!("  {:<22} {d}", "");
    }
    if !cmp.same {
        bail!(
            "the replay of {id} differs from the stored run (kept in {} for inspection)",
            scratch.display()
        );
    }
    std::fs::remove_dir_all(dir.join("replay")).ok();
    println!("identical");
    Ok(())
}

/// The rows of a replay's comparison with the stored run, and whether every one is identical.
struct Comparison {
    rows: Vec<String>,
    same: bool,
}

impl Comparison {
    fn check(&mut self, what: &str, a: String, b: String) {
        let ok = a == b;
        self.same &= ok;
        self.rows.push(format!(
            "{:<22} {:<12} {}",
            what,
            if ok { "identical" } else { "DIFFERS" },
            if ok { a } else { format!("{a} ≠ {b}") }
        ));
    }

    /// The stored run's files against the replay's (`rd` against `scratch`), byte for byte.
    fn files(&mut self, rd: &Path, scratch: &Path) -> anyhow::Result<()> {
        let repeated = ["sessions.json", "memory.json"]
            .into_iter()
            .filter(|f| rd.join(f).exists());
        for f in [
            "record.json",
            "results.json",
            "deals.csv",
            "participants.csv",
            "events.jsonl",
        ]
        .into_iter()
        .chain(repeated)
        {
            let a = std::fs::read(rd.join(f)).with_context(|| format!("cannot read {f}"))?;
            let b = std::fs::read(scratch.join(f))?;
            self.check(
                f,
                format!("{} bytes", a.len()),
                if a == b {
                    format!("{} bytes", a.len())
                } else {
                    format!("{} bytes, other content", b.len())
                },
            );
        }
        Ok(())
    }

    /// The model calls: asked for in the same order with the same request, answered the same;
    /// the divergences.
    fn calls(
        &mut self,
        recording: &Recording,
        log_path: &Path,
        scratch: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let divergences = recording.divergences();
        let replayed = match recording.spend_refusals() {
            0 => format!("{} replayed", recording.len()),
            n => format!(
                "{} replayed, {n} refused by the spend guard",
                recording.len()
            ),
        };
        self.check(
            "llm calls",
            replayed.clone(),
            match divergences.first() {
                None => replayed,
                Some(d) => format!("{} divergence(s), first: {d}", divergences.len()),
            },
        );
        self.check(
            "llm_calls.jsonl",
            "same records (latency aside)".into(),
            if same_calls(log_path, &scratch.join("llm_calls.jsonl"))? {
                "same records (latency aside)".into()
            } else {
                "other records".into()
            },
        );
        Ok(divergences)
    }
}

/// Whether two call logs hold the same records apart from wall-clock latency and the order in
/// which concurrent agents' calls were logged (a missing log
/// is an empty one: runs of rule brains only may predate it).
fn same_calls(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let load = |p: &Path| -> anyhow::Result<Vec<Record>> {
        if !p.exists() {
            return Ok(Vec::new());
        }
        let mut records = haggle_agents::llm::CallLog::read(p)
            .with_context(|| format!("cannot read {}", p.display()))?;
        for r in &mut records {
            if let Record::Call { exchange, .. } = r {
                exchange.latency_ms = 0;
            }
        }
        // Concurrent turns log their calls as replies arrive: each agent's calls, and the
        // market's order of turns, are what must be the same.
        records.sort_by_key(|r| match r {
            Record::Prompt { agent, .. } => (0, agent.clone()),
            Record::Call { agent, .. } | Record::SpendRefused { agent, .. } => (1, agent.clone()),
            Record::Market { .. } => (2, String::new()),
            Record::Memory { agent, session, .. } => (3, format!("{session:09} {agent}")),
            Record::Turn { agent, turn, .. } => (4, format!("{agent} {turn:09}")),
        });
        Ok(records)
    };
    Ok(load(a)? == load(b)?)
}

fn compare(dirs: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for d in dirs {
        let (x, runs, planned) = load_runs(d)?;
        if runs.is_empty() {
            bail!("{} has no finished run yet", d.display());
        }
        let a = analysis::analyse(
            &x.name,
            &x.arms,
            &runs,
            &x.analysis.resampling(),
            x.analysis.min_units,
        );
        all.push((d.display().to_string(), x, a, planned));
    }
    let path = haggle_lab::experiment_report::write_comparison(out, &all)
        .with_context(|| format!("cannot write into {}", out.display()))?;
    println!("comparison: {}", path.display());
    Ok(())
}
