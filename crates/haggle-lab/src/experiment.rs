//! Experiment files (spec: experiments.md, Run design): one scenario, named brain **arms**, and
//! groups of runs that say how the arms are assigned to participants — all one arm, a seeded
//! balanced split per participant, or an explicit table — each run with its own seed. Also the
//! scheduler, how many markets run at once, the shared LLM limits (concurrency, estimated and
//! hard maximum spend) and the resampling settings of the analysis.
//!
//! [`Experiment::from_toml_str`] reads and validates; every error names the field
//! (`runs[1].split[0]: no arm named 'boulwre' (arms: boulware, conceder)`). [`Experiment::plan`]
//! expands the run groups into [`RunPlan`]s with their seeds, which the runner stores and the
//! analysis reads back; [`RunPlan::assignment`] gives each participant's arm.
//!
//! ```toml
//! name = "boulware-vs-conceder"
//! seed = 1                                   # run seeds derive from it
//! [scenario]
//! generate = { seed = 42, participants = 20, budget = 10000 }   # or: file = "market.toml"
//! [arms]
//! boulware = "rule:boulware"
//! conceder = "rule:conceder"
//! [[runs]]
//! name = "split"
//! count = 8
//! split = ["boulware", "conceder"]           # or: arm = "boulware"; or: table = {...}, default_arm
//! [market]
//! mode = "rounds"                            # or "events"
//! max_rounds = 168
//! [execution]
//! concurrency = 2                            # markets at once
//! [llm]
//! concurrency = 4                            # model calls at once, shared by all markets
//! estimated_spend_usd = "0"
//! max_spend_usd = "25.00"                    # required when an arm uses a language model
//! [analysis]
//! seed = 2026
//! ```
//!
//! Repeated markets: top-level `sessions = 5` (default 1) and `session_budget = "fresh"` (the
//! default: cash topped up to the budget each session) or `"carry"` (see [`SessionBudget`]).

use crate::scenario::Scenario;
use crate::stats::Resampling;
use haggle_api::haggle_core::MarketRules;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One experiment file, as written (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Base seed: every run's seed is derived from it and the run's position.
    #[serde(default)]
    pub seed: u64,
    pub scenario: ScenarioSource,
    /// Arm name → brain config name (`rule:boulware`, later `anthropic:<model>`, ...).
    pub arms: BTreeMap<String, String>,
    pub runs: Vec<RunGroup>,
    #[serde(default)]
    pub market: MarketSettings,
    #[serde(default)]
    pub execution: Execution,
    #[serde(default)]
    pub llm: LlmLimits,
    #[serde(default)]
    pub analysis: AnalysisSettings,
    /// Repeated markets: each run's participants trade in this many consecutive sessions of
    /// the same market (1: a one-off market). Omitted from the stored JSON while 1, so folders of
    /// earlier experiments stay as they were.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub sessions: u32,
    /// With `sessions` > 1: the cash a participant has when a later session starts.
    #[serde(default, skip_serializing_if = "SessionBudget::is_fresh")]
    pub session_budget: SessionBudget,
    /// Participants driven from outside (arms whose brain is `human` or `external`): where the
    /// run's market is served and how long each of their turns waits (absent: a free port and
    /// the brain's default). Omitted from the stored JSON when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<OutsideSettings>,
}

/// How a market with participants driven from outside serves them: the settings of `haggle
/// demo --listen --turn-budget-ms`, under the same names in an experiment's `[outside]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideSettings {
    /// Where the market is served (port 0: a free port for each run, named in its invitation).
    #[serde(default = "any_port")]
    pub listen: std::net::SocketAddr,
    /// Real time (ms) one outside turn may take; absent: 300000 with a `human`, else 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_budget_ms: Option<u64>,
}

fn any_port() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

impl Default for OutsideSettings {
    fn default() -> OutsideSettings {
        OutsideSettings {
            listen: any_port(),
            turn_budget_ms: None,
        }
    }
}

impl OutsideSettings {
    /// A fixed port is one market's at a time: runs serving on it cannot overlap.
    pub fn fixed_port(&self) -> bool {
        self.listen.port() != 0
    }

    /// The turn budget within `1 ms ..= MAX_TURN_BUDGET_MS`.
    pub fn validate(&self) -> Result<(), String> {
        let max = haggle_api::haggle_core::limits::MAX_TURN_BUDGET_MS;
        match self.turn_budget_ms {
            Some(b) if b == 0 || b > max => Err(format!(
                "turn_budget_ms must be between 1 and {max} (got {b})"
            )),
            _ => Ok(()),
        }
    }
}

/// Whether a brain is driven from outside the simulation (`human`, `external`).
pub fn is_outside_brain(brain: &str) -> bool {
    haggle_agents::registry::OUTSIDE_BRAINS.contains(&brain.trim())
}

/// Repeated markets: the cash each participant starts a later session with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionBudget {
    /// Topped up to the session's budget (the scenario's, e.g. $100): what was spent is given
    /// back; takings above the budget are kept (the ledger takes no money back).
    #[default]
    Fresh,
    /// What was left at the end of the last session, takings included; no new money.
    Carry,
}

impl SessionBudget {
    pub fn is_fresh(&self) -> bool {
        *self == SessionBudget::Fresh
    }
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSource {
    /// The seeded office-market generator.
    #[serde(default)]
    pub generate: Option<Generate>,
    /// A scenario file (TOML, JSON, CSV), relative to the experiment file.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub seed: u64,
    pub participants: usize,
    /// Budget per participant, minor units.
    #[serde(default = "default_budget")]
    pub budget: i64,
}

fn default_budget() -> i64 {
    10_000
}

/// A group of runs sharing one way of assigning arms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunGroup {
    /// Run ids are `<name>-01`, `<name>-02`, ...
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    /// Every participant in this arm.
    #[serde(default)]
    pub arm: Option<String>,
    /// A seeded balanced split of the participants between these arms (sizes differ by at
    /// most one), drawn anew for every run.
    #[serde(default)]
    pub split: Option<Vec<String>>,
    /// Participant name → arm; the others get `default_arm`.
    #[serde(default)]
    pub table: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub default_arm: Option<String>,
    /// The run whose deals are honoured (at most one run in the experiment).
    #[serde(default)]
    pub real: bool,
    /// Market rules these runs change (any field of the market's rules, e.g.
    /// `strict_alternation = true`, `max_offers_per_thread = 4`): a market-structure arm.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, serde_json::Value>,
    /// Items shipped instead of handed over, with seeded delivery times and losses (absent: in
    /// person, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<crate::shipping::ShippingModel>,
}

/// `base` with `changes` applied, checked as the market checks rules: an unknown field, a value
/// of the wrong type or out of range is an error naming it.
pub fn rules_over(
    base: &MarketRules,
    changes: &BTreeMap<String, serde_json::Value>,
) -> Result<MarketRules, String> {
    let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
    if let Some(o) = v.as_object_mut() {
        for (k, x) in changes {
            o.insert(k.clone(), x.clone());
        }
    }
    let rules: MarketRules = serde_json::from_value(v).map_err(|e| e.to_string())?;
    rules.validate().map_err(|e| e.message)?;
    Ok(rules)
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSettings {
    /// `rounds` (seeded order each round, exact replay) or `events` (agents wake on news).
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default = "default_rounds")]
    pub max_rounds: u64,
}

fn default_mode() -> String {
    "rounds".into()
}
fn default_rounds() -> u64 {
    168
}

impl Default for MarketSettings {
    fn default() -> MarketSettings {
        MarketSettings {
            mode: default_mode(),
            max_rounds: default_rounds(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execution {
    /// Markets run at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    2
}

impl Default for Execution {
    fn default() -> Execution {
        Execution {
            concurrency: default_concurrency(),
        }
    }
}

/// A dollar amount as written: a whole number (`25`) or a decimal text (`"25.50"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Usd {
    Whole(i64),
    Text(String),
}

impl Usd {
    /// In micro-dollars (µUSD), exactly: at most six decimals.
    pub fn micro(&self) -> Result<i64, String> {
        let bad = |s: &str| format!("not an amount in dollars (got '{s}'; write e.g. \"12.50\")");
        match self {
            Usd::Whole(n) if *n >= 0 => n.checked_mul(1_000_000).ok_or_else(|| bad(&n.to_string())),
            Usd::Whole(n) => Err(format!("must not be negative (got {n})")),
            Usd::Text(s) => {
                let t = s.trim().trim_start_matches('$');
                let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
                let digits = |x: &str| x.chars().all(|c| c.is_ascii_digit());
                if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 {
                    return Err(bad(s));
                }
                let w: i64 = whole.parse().map_err(|_| bad(s))?;
                let f: i64 = format!("{frac:0<6}").parse().map_err(|_| bad(s))?;
                w.checked_mul(1_000_000)
                    .and_then(|m| m.checked_add(f))
                    .ok_or_else(|| bad(s))
            }
        }
    }
}

/// Limits on language-model use, shared by every market of the experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmLimits {
    /// Model calls in flight at once, over all markets.
    #[serde(default = "default_llm_concurrency")]
    pub concurrency: usize,
    /// What the researcher expects the experiment to cost (shown, and checked against the max).
    #[serde(default)]
    pub estimated_spend_usd: Option<Usd>,
    /// Hard maximum: no call starts that could take the spend above it.
    #[serde(default)]
    pub max_spend_usd: Option<Usd>,
}

fn default_llm_concurrency() -> usize {
    4
}

impl Default for LlmLimits {
    fn default() -> LlmLimits {
        LlmLimits {
            concurrency: default_llm_concurrency(),
            estimated_spend_usd: None,
            max_spend_usd: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSettings {
    #[serde(default = "default_analysis_seed")]
    pub seed: u64,
    #[serde(default = "default_bootstrap")]
    pub bootstrap: u32,
    #[serde(default = "default_permutations")]
    pub permutations: u32,
    /// Fewer units than this per group (or pairs) and a comparison is flagged as too small.
    #[serde(default = "default_min_units")]
    pub min_units: usize,
}

fn default_analysis_seed() -> u64 {
    2026
}
fn default_bootstrap() -> u32 {
    4000
}
fn default_permutations() -> u32 {
    9999
}
fn default_min_units() -> usize {
    10
}

impl Default for AnalysisSettings {
    fn default() -> AnalysisSettings {
        AnalysisSettings {
            seed: default_analysis_seed(),
            bootstrap: default_bootstrap(),
            permutations: default_permutations(),
            min_units: default_min_units(),
        }
    }
}

impl AnalysisSettings {
    pub fn resampling(&self) -> Resampling {
        Resampling {
            seed: self.seed,
            bootstrap: self.bootstrap,
            permutations: self.permutations,
            ..Resampling::default()
        }
    }
}

/// An experiment file that cannot be used: the file, the field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExperimentError {
    pub file: String,
    /// The field path (`runs[0].split[1]`, `llm.max_spend_usd`), or a line for syntax errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// How one run assigns arms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Design {
    All(String),
    Split(Vec<String>),
    Table {
        table: BTreeMap<String, String>,
        default_arm: Option<String>,
    },
}

/// One market of the experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    /// `<group>-<nn>`.
    pub id: String,
    pub group: String,
    /// Position in the experiment (0-based).
    pub index: usize,
    /// Seeds the market's scheduler and brains, and the split.
    pub seed: u64,
    pub design: Design,
    pub real: bool,
    /// The market rules its group changes (see [`RunGroup::rules`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, serde_json::Value>,
    /// How its group ships items (see [`RunGroup::shipping`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<crate::shipping::ShippingModel>,
}

/// A validation error: the field and what is wrong with it.
fn invalid(field: &str, message: String) -> Result<(), (String, String)> {
    Err((field.to_string(), message))
}

/// SplitMix64: run seeds from the experiment seed, well spread even for 0, 1, 2, ...
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(n.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RunPlan {
    /// Each participant's arm, in the scenario's order. Unknown table names are refused.
    pub fn assignment(&self, participants: &[String]) -> Result<Vec<String>, String> {
        match &self.design {
            Design::All(arm) => Ok(vec![arm.clone(); participants.len()]),
            Design::Split(arms) => {
                let mut order: Vec<usize> = (0..participants.len()).collect();
                order.shuffle(&mut StdRng::seed_from_u64(mix(self.seed, 0x5eed)));
                let mut out = vec![String::new(); participants.len()];
                for (pos, &i) in order.iter().enumerate() {
                    out[i] = arms[pos % arms.len()].clone();
                }
                Ok(out)
            }
            Design::Table { table, default_arm } => {
                let known: BTreeSet<&str> = participants.iter().map(String::as_str).collect();
                if let Some(name) = table.keys().find(|n| !known.contains(n.as_str())) {
                    return Err(format!(
                        "table names '{name}', who is not a participant of the scenario"
                    ));
                }
                participants
                    .iter()
                    .map(|p| {
                        table
                            .get(p)
                            .or(default_arm.as_ref())
                            .cloned()
                            .ok_or_else(|| {
                                format!("participant '{p}' has no arm (add it or a default_arm)")
                            })
                    })
                    .collect()
            }
        }
    }
}

/// Whether a brain name is a language model (costs money, needs the spend guard).
pub fn is_llm_brain(brain: &str) -> bool {
    let b = brain.trim();
    !(b.starts_with("rule:") || b.starts_with("adversary:") || is_outside_brain(b))
}

/// Whether the brain registry knows this brain name (rule brains, adversaries and language
/// models; API keys are checked when the experiment starts).
fn check_brain(brain: &str) -> Result<(), String> {
    haggle_agents::registry::BrainSpec::parse(brain)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Experiment {
    /// Reads an experiment file; a scenario `file` is resolved against the file's folder.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Experiment, ExperimentError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
            file: file.clone(),
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let mut x = Experiment::from_toml_str(&text, &file)?;
        if let Some(f) = &x.scenario.file
            && f.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new("."));
            x.scenario.file = Some(base.join(f));
        }
        Ok(x)
    }

    /// Parses and validates (see [`Experiment::validate`]).
    pub fn from_toml_str(text: &str, file: &str) -> Result<Experiment, ExperimentError> {
        let x: Experiment = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            ExperimentError {
                file: file.into(),
                field: line.map(|l| format!("line {l}")).unwrap_or_default(),
                message: e.message().trim().to_string(),
            }
        })?;
        x.validate().map_err(|(field, message)| ExperimentError {
            file: file.into(),
            field,
            message,
        })?;
        Ok(x)
    }

    /// Checks everything that does not need the scenario; errors as (field, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.validate_with(check_brain)
    }

    /// [`Experiment::validate`] with the brain check given (tests use brains this build lacks).
    /// Checks in the order of the file: name, scenario, arms, runs, market and execution, the
    /// model limits, sessions, analysis; the first problem is the error.
    fn validate_with(
        &self,
        check_brain: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(), (String, String)> {
        if !valid_name(&self.name) {
            return invalid("name", "use 1–64 letters, digits, '-' or '_'".into());
        }
        self.validate_scenario_source()?;
        if self.arms.is_empty() {
            return invalid("arms", "name at least one arm (name = \"brain\")".into());
        }
        for (arm, brain) in &self.arms {
            if !valid_name(arm) {
                return invalid(
                    &format!("arms.{arm}"),
                    "an arm's name uses 1–64 letters, digits, '-' or '_'".into(),
                );
            }
            check_brain(brain).or_else(|m| invalid(&format!("arms.{arm}"), m))?;
        }
        if self.runs.is_empty() {
            return invalid("runs", "add at least one [[runs]] group".into());
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.runs.iter().enumerate() {
            self.validate_run_group(i, g, &mut names)?;
        }
        let real: u32 = self.runs.iter().filter(|g| g.real).map(|g| g.count).sum();
        if real > 1 {
            return invalid(
                "runs",
                format!("at most one run may be real (marked: {real})"),
            );
        }
        self.validate_market_and_execution()?;
        self.validate_llm_limits()?;
        self.validate_outside()?;
        self.validate_sessions_and_analysis()
    }

    /// `[outside]` goes with an arm driven from outside, and its turn budget is in range.
    fn validate_outside(&self) -> Result<(), (String, String)> {
        let Some(o) = &self.outside else {
            return Ok(());
        };
        if !self.arms.values().any(|b| is_outside_brain(b)) {
            return invalid(
                "outside",
                "no arm's brain is human or external: drop [outside] or add such an arm".into(),
            );
        }
        o.validate().or_else(|m| invalid("outside", m))
    }

    /// Exactly one of `generate` and `file`; a generated market's size and budget in range.
    fn validate_scenario_source(&self) -> Result<(), (String, String)> {
        match (&self.scenario.generate, &self.scenario.file) {
            (Some(_), Some(_)) | (None, None) => {
                invalid("scenario", "give exactly one of generate, file".into())
            }
            (Some(g), None) => {
                if !(2..=100_000).contains(&g.participants) {
                    return invalid(
                        "scenario.generate.participants",
                        format!("must be between 2 and 100000 (got {})", g.participants),
                    );
                }
                if !(0..=crate::scenario::MAX_AMOUNT).contains(&g.budget) {
                    return invalid(
                        "scenario.generate.budget",
                        format!("must be between 0 and 10^12 minor units (got {})", g.budget),
                    );
                }
                Ok(())
            }
            (None, Some(_)) => Ok(()),
        }
    }

    /// `field` names an arm of the experiment.
    fn known_arm(&self, field: String, arm: &str) -> Result<(), (String, String)> {
        if self.arms.contains_key(arm) {
            Ok(())
        } else {
            let arms = self.arms.keys().cloned().collect::<Vec<_>>().join(", ");
            Err((field, format!("no arm named '{arm}' (arms: {arms})")))
        }
    }

    /// The `i`th `[[runs]]` group: a new name, its count, exactly one design naming known arms,
    /// its rules.
    fn validate_run_group(
        &self,
        i: usize,
        g: &RunGroup,
        names: &mut BTreeSet<String>,
    ) -> Result<(), (String, String)> {
        let at = |f: &str| format!("runs[{i}].{f}");
        if !valid_name(&g.name) {
            return invalid(&at("name"), "use 1–64 letters, digits, '-' or '_'".into());
        }
        if !names.insert(g.name.clone()) {
            return invalid(&at("name"), format!("'{}' is used twice", g.name));
        }
        if !(1..=1000).contains(&g.count) {
            return invalid(
                &at("count"),
                format!("must be between 1 and 1000 (got {})", g.count),
            );
        }
        let given = usize::from(g.arm.is_some())
            + usize::from(g.split.is_some())
            + usize::from(g.table.is_some());
        if given != 1 {
            return invalid(
                &format!("runs[{i}]"),
                "give exactly one of arm, split, table".into(),
            );
        }
        if let Some(a) = &g.arm {
            self.known_arm(at("arm"), a)?;
        }
        if let Some(s) = &g.split {
            self.validate_split(i, s)?;
        }
        if let Some(t) = &g.table {
            for (p, a) in t {
                self.known_arm(format!("runs[{i}].table.{p}"), a)?;
            }
        }
        match (&g.default_arm, &g.table) {
            (Some(a), Some(_)) => self.known_arm(at("default_arm"), a)?,
            (Some(_), None) => {
                return invalid(&at("default_arm"), "goes only with table".into());
            }
            _ => {}
        }
        if let Err(m) = rules_over(&MarketRules::default(), &g.rules) {
            return invalid(&at("rules"), m);
        }
        if let Some(Err(m)) = g.shipping.as_ref().map(|s| s.validate()) {
            return invalid(&at("shipping"), m);
        }
        Ok(())
    }

    /// A split names at least two known arms, each once.
    fn validate_split(&self, i: usize, split: &[String]) -> Result<(), (String, String)> {
        if split.len() < 2 {
            return invalid(
                &format!("runs[{i}].split"),
                "name at least two arms to split between".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, a) in split.iter().enumerate() {
            self.known_arm(format!("runs[{i}].split[{j}]"), a)?;
            if !seen.insert(a) {
                return invalid(
                    &format!("runs[{i}].split[{j}]"),
                    format!("'{a}' is named twice"),
                );
            }
        }
        Ok(())
    }

    /// The scheduler's mode and rounds, and the runs at once.
    fn validate_market_and_execution(&self) -> Result<(), (String, String)> {
        match self.market.mode.as_str() {
            "rounds" | "events" => {}
            other => {
                return invalid(
                    "market.mode",
                    format!("must be rounds or events (got '{other}')"),
                );
            }
        }
        if !(1..=100_000).contains(&self.market.max_rounds) {
            return invalid(
                "market.max_rounds",
                format!(
                    "must be between 1 and 100000 (got {})",
                    self.market.max_rounds
                ),
            );
        }
        if !(1..=64).contains(&self.execution.concurrency) {
            return invalid(
                "execution.concurrency",
                format!(
                    "must be between 1 and 64 (got {})",
                    self.execution.concurrency
                ),
            );
        }
        Ok(())
    }

    /// The model calls at once and the spend: the estimate within the maximum, a maximum
    /// whenever an arm uses a language model.
    fn validate_llm_limits(&self) -> Result<(), (String, String)> {
        if !(1..=1024).contains(&self.llm.concurrency) {
            return invalid(
                "llm.concurrency",
                format!("must be between 1 and 1024 (got {})", self.llm.concurrency),
            );
        }
        let estimated = match &self.llm.estimated_spend_usd {
            Some(u) => Some(
                u.micro()
                    .map_err(|m| ("llm.estimated_spend_usd".to_string(), m))?,
            ),
            None => None,
        };
        let max = match &self.llm.max_spend_usd {
            Some(u) => Some(
                u.micro()
                    .map_err(|m| ("llm.max_spend_usd".to_string(), m))?,
            ),
            None => None,
        };
        if let (Some(e), Some(m)) = (estimated, max)
            && e > m
        {
            return invalid(
                "llm.estimated_spend_usd",
                format!(
                    "the estimate ({}) is above llm.max_spend_usd ({}): raise the maximum or shrink the experiment",
                    usd(e),
                    usd(m)
                ),
            );
        }
        if max.is_none()
            && let Some((arm, brain)) = self.arms.iter().find(|(_, b)| is_llm_brain(b))
        {
            return invalid(
                "llm.max_spend_usd",
                format!("required when an arm uses a language model (arm '{arm}' is '{brain}')"),
            );
        }
        Ok(())
    }

    /// The sessions of a repeated market, and the analysis' resampling sizes.
    fn validate_sessions_and_analysis(&self) -> Result<(), (String, String)> {
        if !(1..=crate::scenario::MAX_SESSIONS).contains(&self.sessions) {
            return invalid(
                "sessions",
                format!(
                    "must be between 1 and {} (got {})",
                    crate::scenario::MAX_SESSIONS,
                    self.sessions
                ),
            );
        }
        let a = &self.analysis;
        if !(100..=1_000_000).contains(&a.bootstrap) {
            return invalid(
                "analysis.bootstrap",
                format!("must be between 100 and 1000000 (got {})", a.bootstrap),
            );
        }
        if !(99..=1_000_000).contains(&a.permutations) {
            return invalid(
                "analysis.permutations",
                format!("must be between 99 and 1000000 (got {})", a.permutations),
            );
        }
        Ok(())
    }

    /// The estimated and maximum spend in µUSD (`None` when not given).
    pub fn spend_limits(&self) -> (Option<i64>, Option<i64>) {
        let m = |u: &Option<Usd>| u.as_ref().and_then(|u| u.micro().ok());
        (m(&self.llm.estimated_spend_usd), m(&self.llm.max_spend_usd))
    }

    /// Loads or generates the scenario and checks the run designs against its participants.
    pub fn scenario(&self) -> Result<Scenario, ExperimentError> {
        let e = |field: &str, message: String| ExperimentError {
            file: "experiment".into(),
            field: field.into(),
            message,
        };
        let mut scenario = match (&self.scenario.generate, &self.scenario.file) {
            (Some(g), _) => crate::generator::generate(g.seed, g.participants, g.budget),
            (None, Some(f)) => {
                Scenario::from_path(f).map_err(|x| e("scenario.file", x.to_string()))?
            }
            (None, None) => return Err(e("scenario", "give exactly one of generate, file".into())),
        };
        // Repeated markets from the generator: new items and wants each session, generated
        // with the session's own seed, for the first session's participants (by position) and
        // budget. Kept in the scenario (`sessions`), so a stored run replays from its folder.
        if let Some(g) = &self.scenario.generate
            && self.sessions > 1
        {
            scenario.sessions = (2..=self.sessions)
                .map(|k| {
                    let next = crate::generator::generate(
                        mix(g.seed, u64::from(k)),
                        g.participants,
                        g.budget,
                    );
                    let profiles = next
                        .profiles
                        .into_iter()
                        .zip(&scenario.profiles)
                        // The same person: name, persona, patience and autonomy stay; the
                        // items, wants and what it already owns are the session's.
                        .map(|(p, first)| haggle_agents::profile::Profile {
                            name: first.name.clone(),
                            style: first.style.clone(),
                            autonomy: first.autonomy.clone(),
                            ..p
                        })
                        .collect();
                    crate::scenario::SessionLists { profiles }
                })
                .collect();
        }
        scenario
            .session_lists(self.sessions)
            .map_err(|m| e("sessions", m))?;
        let names: Vec<String> = scenario.profiles.iter().map(|p| p.name.clone()).collect();
        for run in self.plan() {
            run.assignment(&names)
                .map_err(|m| e(&format!("runs (group '{}')", run.group), m))?;
        }
        Ok(scenario)
    }

    /// Every run with its id and seed, in order.
    pub fn plan(&self) -> Vec<RunPlan> {
        let mut out = Vec::new();
        for g in &self.runs {
            let design = if let Some(a) = &g.arm {
                Design::All(a.clone())
            } else if let Some(s) = &g.split {
                Design::Split(s.clone())
            } else {
                Design::Table {
                    table: g.table.clone().unwrap_or_default(),
                    default_arm: g.default_arm.clone(),
                }
            };
            let width = g.count.to_string().len().max(2);
            for k in 1..=g.count {
                let index = out.len();
                out.push(RunPlan {
                    id: format!("{}-{k:0width$}", g.name),
                    group: g.name.clone(),
                    index,
                    seed: mix(self.seed, index as u64),
                    design: design.clone(),
                    real: g.real,
                    rules: g.rules.clone(),
                    shipping: g.shipping,
                });
            }
        }
        out
    }
}

/// µUSD as dollars, e.g. `$12.500000` → `$12.50`.
pub fn usd(micro: i64) -> String {
    let cents = micro / 10_000;
    let rest = micro % 10_000;
    if rest == 0 {
        format!("${}.{:02}", cents / 100, cents % 100)
    } else {
        format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "bc"
seed = 7
[scenario]
generate = { seed = 42, participants = 12 }
[arms]
boulware = "rule:boulware"
conceder = "rule:conceder"
[[runs]]
name = "split"
count = 3
split = ["boulware", "conceder"]
[[runs]]
name = "all-b"
arm = "boulware"
"#;

    fn parse(text: &str) -> Result<Experiment, ExperimentError> {
        Experiment::from_toml_str(text, "x.toml")
    }

    #[test]
    fn a_good_file_plans_runs_with_distinct_seeds_and_ids() {
        let x = parse(GOOD).unwrap();
        let plan = x.plan();
        let ids: Vec<&str> = plan.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["split-01", "split-02", "split-03", "all-b-01"]);
        let seeds: BTreeSet<u64> = plan.iter().map(|r| r.seed).collect();
        assert_eq!(seeds.len(), 4);
        assert_eq!(x.market.mode, "rounds");
        assert_eq!(x.execution.concurrency, 2);
        assert_eq!(x.spend_limits(), (None, None));
    }

    #[test]
    fn a_split_is_balanced_seeded_and_differs_between_runs() {
        let x = parse(GOOD).unwrap();
        let plan = x.plan();
        let people: Vec<String> = (0..13).map(|i| format!("p{i}")).collect();
        let a = plan[0].assignment(&people).unwrap();
        let n_b = a.iter().filter(|x| *x == "boulware").count();
        assert!(n_b == 6 || n_b == 7, "balanced: {n_b} of 13");
        assert_eq!(a, plan[0].assignment(&people).unwrap(), "seeded");
        assert_ne!(
            a,
            plan[1].assignment(&people).unwrap(),
            "a new split per run"
        );
        assert!(
            plan[3]
                .assignment(&people)
                .unwrap()
                .iter()
                .all(|x| x == "boulware")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "split = [\"boulware\", \"conceder\"]",
                "split = [\"boulware\", \"conceedr\"]",
                "runs[0].split[1]",
            ),
            (
                "conceder = \"rule:conceder\"",
                "conceder = \"rule:psychic\"",
                "arms.conceder",
            ),
            ("count = 3", "count = 0", "runs[0].count"),
            (
                "arm = \"boulware\"",
                "arm = \"boulware\"\nsplit = [\"boulware\", \"conceder\"]",
                "runs[1]",
            ),
            (
                "participants = 12",
                "participants = 1",
                "scenario.generate.participants",
            ),
            ("name = \"all-b\"", "name = \"split\"", "runs[1].name"),
        ];
        for (from, to, field) in cases {
            let text = GOOD.replace(from, to);
            let e = parse(&text).unwrap_err();
            assert_eq!(&e.field, field, "{e}");
            assert!(e.to_string().contains(field));
        }
        let e = parse(&format!("{GOOD}\n[market]\nmode = \"async\"\n")).unwrap_err();
        assert_eq!(e.field, "market.mode");
        let e = parse(&format!("{GOOD}\n[llm]\nmax_spend_usd = \"1.2.3\"\n")).unwrap_err();
        assert_eq!(e.field, "llm.max_spend_usd");
        let e = parse(&format!(
            "{GOOD}\n[llm]\nestimated_spend_usd = \"30\"\nmax_spend_usd = 20\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "llm.estimated_spend_usd");
        // Unknown keys are refused with their line.
        let e = parse(&format!("{GOOD}\n[market]\nmax_round = 5\n")).unwrap_err();
        assert!(e.field.starts_with("line "), "{e}");
        assert!(e.message.contains("max_round"), "{e}");
    }

    #[test]
    fn dollar_amounts_become_exact_micro_dollars() {
        assert_eq!(Usd::Text("12.50".into()).micro(), Ok(12_500_000));
        assert_eq!(Usd::Text("$0.000001".into()).micro(), Ok(1));
        assert_eq!(Usd::Whole(3).micro(), Ok(3_000_000));
        assert!(Usd::Text("0.0000001".into()).micro().is_err());
        assert!(Usd::Whole(-1).micro().is_err());
        assert_eq!(usd(12_500_000), "$12.50");
        assert_eq!(usd(1), "$0.000001");
    }

    #[test]
    fn language_models_need_a_hard_spend_maximum() {
        assert!(is_llm_brain("anthropic:claude-sonnet-4-5"));
        assert!(is_llm_brain("openai:gemma@http://127.0.0.1:8088/v1"));
        assert!(!is_llm_brain("rule:boulware") && !is_llm_brain("adversary:spammer"));
        let mut x = parse(GOOD).unwrap();
        x.arms
            .insert("strong".into(), "anthropic:claude-opus-4-5".into());
        let (field, message) = x.validate_with(|_| Ok(())).unwrap_err();
        assert_eq!(field, "llm.max_spend_usd", "{message}");
        x.llm.max_spend_usd = Some(Usd::Text("5".into()));
        assert_eq!(x.validate_with(|_| Ok(())), Ok(()));
    }

    #[test]
    fn outside_settings_go_with_an_outside_arm_and_are_left_out_of_the_stored_json() {
        let x = parse(GOOD).unwrap();
        assert!(!serde_json::to_string(&x).unwrap().contains("outside"));
        let e = parse(&format!("{GOOD}\n[outside]\nturn_budget_ms = 1000\n")).unwrap_err();
        assert_eq!(e.field, "outside", "{e}");
        let person = GOOD.replace("\"rule:conceder\"", "\"human\"");
        let y = parse(&format!(
            "{person}\n[outside]\nlisten = \"127.0.0.1:8090\"\nturn_budget_ms = 1000\n"
        ))
        .unwrap();
        let o = y.outside.unwrap();
        assert_eq!(
            (o.listen.port(), o.turn_budget_ms, o.fixed_port()),
            (8090, Some(1000), true)
        );
        for budget in [0, haggle_api::haggle_core::limits::MAX_TURN_BUDGET_MS + 1] {
            let text = format!("{person}\n[outside]\nturn_budget_ms = {budget}\n");
            assert_eq!(parse(&text).unwrap_err().field, "outside");
        }
        assert!(!is_llm_brain("human") && is_outside_brain("external"));
    }

    #[test]
    fn sessions_default_to_one_and_are_left_out_of_the_stored_json() {
        let x = parse(GOOD).unwrap();
        assert_eq!((x.sessions, x.session_budget), (1, SessionBudget::Fresh));
        let json = serde_json::to_string(&x).unwrap();
        assert!(!json.contains("session"), "{json}");
        let y = parse(&format!("sessions = 3\nsession_budget = \"carry\"\n{GOOD}")).unwrap();
        assert_eq!((y.sessions, y.session_budget), (3, SessionBudget::Carry));
        let back: Experiment = serde_json::from_str(&serde_json::to_string(&y).unwrap()).unwrap();
        assert_eq!(back, y);
        let e = parse(&format!("sessions = 101\n{GOOD}")).unwrap_err();
        assert_eq!(e.field, "sessions", "{e}");
    }

    #[test]
    fn generated_sessions_have_new_seeded_lists_for_the_same_participants() {
        let x = parse(&format!("sessions = 3\n{GOOD}")).unwrap();
        let s = x.scenario().unwrap();
        assert_eq!(s, x.scenario().unwrap(), "deterministic");
        assert_eq!(s.sessions.len(), 2);
        let lists = s.session_lists(3).unwrap();
        let names = |l: &Vec<haggle_agents::profile::Profile>| {
            l.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&lists[1]), names(&lists[0]), "the same participants");
        assert_eq!(
            lists[2][1].style, lists[0][1].style,
            "the same persona and patience"
        );
        assert_eq!(names(&lists[2]), names(&lists[0]));
        assert_ne!(lists[1][0].sell, lists[0][0].sell, "new items");
        assert!(
            lists[1][0]
                .sell
                .iter()
                .all(|i| i.item_id.starts_with("s2-"))
        );
        assert!(
            lists[2][0]
                .want
                .iter()
                .all(|w| w.want_id.starts_with("s3-"))
        );
        let one = parse(GOOD).unwrap().scenario().unwrap();
        assert!(
            one.sessions.is_empty(),
            "one session: the scenario as before"
        );
    }

    #[test]
    fn a_table_names_every_participant_or_a_default() {
        let text = GOOD.replace(
            "arm = \"boulware\"",
            "table = { p0 = \"conceder\" }\ndefault_arm = \"boulware\"",
        );
        let x = parse(&text).unwrap();
        let people: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
        assert_eq!(
            x.plan()[3].assignment(&people).unwrap(),
            ["conceder", "boulware", "boulware"]
        );
        let bad = GOOD.replace("arm = \"boulware\"", "table = { nobody = \"conceder\" }");
        let x = parse(&bad).unwrap();
        assert!(x.plan()[3].assignment(&people).is_err());
        assert!(x.scenario().is_err(), "checked against the scenario");
    }
}
