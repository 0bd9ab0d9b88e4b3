//! The analysis of an experiment (spec: experiments.md, Metrics and comparisons): from each
//! run's [`Metrics`] and its assignment of arms to participants, the metrics per run, per arm
//! and per participant, and the honest comparisons between arms.
//!
//! - **Arm comparisons** take the participant-run as the unit (its seller surplus, buyer
//!   surplus, deals, mean seller share...). Where runs split participants between arms, labels
//!   are compared *within* those runs: the permutation test relabels participants inside each
//!   run, as the seeded split assigned them, and the bootstrap resamples within each (run, arm)
//!   cell. Where arms only ever meet in separate runs (all-A runs against all-B runs), the run
//!   is the unit (the mean over its participants).
//! - **Run-group comparisons** compare market-level outcomes (efficiency, mean price, ...)
//!   between groups of runs, runs as units.
//! - **Same-item comparisons**: an item sold in several runs by sellers (or bought by buyers)
//!   of different arms gives one paired difference of its mean prices; sign-flip test and
//!   bootstrap over items.
//! - **Regression**: price on the seller's and the buyer's arm with item fixed effects, over
//!   every counted deal of a known item (the within transformation), classical standard errors.
//!   Deals in one run are not independent: read its p-values beside the permutation tests.
//!
//! Every comparison carries its sample sizes; those below the experiment's `min_units` add a
//! warning. Money stays integer minor units until a statistic is computed. Pure: no IO, no
//! clock; resampling is seeded.

use crate::experiment::RunPlan;
use crate::metrics::{MarketMetrics, Metrics};
use crate::stats::{self, Comparison, Obs, Paired, Regression, Resampling};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Language-model use of one agent (or a run, an arm): from the run's call log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmUsage {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// µUSD over calls with a known price.
    pub cost_micro_usd: i64,
    pub calls_without_price: u64,
    pub failed_calls: u64,
}

impl LlmUsage {
    pub fn add(&mut self, o: &LlmUsage) {
        self.calls += o.calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cost_micro_usd += o.cost_micro_usd;
        self.calls_without_price += o.calls_without_price;
        self.failed_calls += o.failed_calls;
    }
}

/// Per agent name: its calls, from the text of a run's `llm_calls.jsonl` (one JSON object per
/// line; `kind: "call"` records carry `agent`, `usage`, `cost_micro_usd`, `error`). Lines that
/// are not call records are skipped; a line that is not JSON is an error naming it.
pub fn llm_usage_from_jsonl(text: &str) -> Result<BTreeMap<String, LlmUsage>, String> {
    let mut out: BTreeMap<String, LlmUsage> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if v["kind"] != "call" {
            continue;
        }
        let agent = v["agent"].as_str().unwrap_or("unknown").to_string();
        let u = &v["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        let e = out.entry(agent).or_default();
        e.calls += 1;
        e.input_tokens += n("input_tokens");
        e.output_tokens += n("output_tokens");
        e.cached_tokens += n("cache_read_tokens") + n("cache_write_tokens");
        match v["cost_micro_usd"].as_i64() {
            Some(c) => e.cost_micro_usd += c,
            None => e.calls_without_price += 1,
        }
        e.failed_calls += u64::from(!v["error"].is_null());
    }
    Ok(out)
}

/// One finished run, as the analysis needs it.
#[derive(Debug, Clone)]
pub struct RunData {
    pub plan: RunPlan,
    /// Participant name → arm.
    pub arms: BTreeMap<String, String>,
    pub metrics: Metrics,
    /// Agent name → its model use.
    pub llm: BTreeMap<String, LlmUsage>,
    /// Agent name → the rounds in which the market applied its action first (the order's
    /// fairness, issue 16; empty for runs recorded before it was counted).
    pub first_movers: BTreeMap<String, u64>,
    /// Repeated markets: each session's figures (empty for a one-session run).
    pub sessions: Vec<crate::sessions::SessionMetrics>,
}

/// One run's line in the analysis: its plan, its arms' sizes, every market metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub group: String,
    pub seed: u64,
    pub real: bool,
    /// Arm → participants in it.
    pub arm_sizes: BTreeMap<String, usize>,
    pub market: MarketMetrics,
    pub llm: LlmUsage,
    /// µUSD per counted deal.
    pub llm_cost_per_deal: Option<i64>,
}

/// An arm over every run it appears in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    pub brain: String,
    pub runs: usize,
    /// Participant-runs in the arm.
    pub participant_runs: usize,
    pub deals_as_seller: usize,
    pub deals_as_buyer: usize,
    pub volume_sold: i64,
    pub volume_bought: i64,
    pub seller_surplus: i64,
    pub buyer_surplus: i64,
    pub mean_seller_surplus_per_sale: Option<f64>,
    pub mean_buyer_surplus_per_purchase: Option<f64>,
    /// Mean σ over its sales, mean 1 − σ over its purchases.
    pub mean_share_as_seller: Option<f64>,
    pub mean_share_as_buyer: Option<f64>,
    pub mean_nash_distance_as_seller: Option<f64>,
    /// Deals per participant-run (sales plus purchases).
    pub deals_per_participant: Option<f64>,
    /// Sold below its floor / paid above its valuation.
    pub irrational_deals: usize,
    pub unwanted_purchases: usize,
    pub refusals: u64,
    /// Rounds in which the market applied one of the arm's actions first, of the rounds with an
    /// action in the runs it appears in; a fair order gives about the arm's share of the agents.
    #[serde(default)]
    pub first_mover_rounds: u64,
    #[serde(default)]
    pub rounds_with_actions: u64,
    /// The arm's participant-runs over all participant-runs of the runs it appears in.
    #[serde(default)]
    pub share_of_agents: Option<f64>,
    pub wants: u64,
    pub wants_met: u64,
    pub items: usize,
    pub items_sold: usize,
    pub llm: LlmUsage,
}

impl ArmSummary {
    /// The share of rounds in which the market applied one of the arm's actions first (`None`
    /// without rounds counted).
    pub fn first_mover_share(&self) -> Option<f64> {
        (self.rounds_with_actions > 0)
            .then(|| self.first_mover_rounds as f64 / self.rounds_with_actions as f64)
    }
}

/// One participant's results under one arm, over the runs that gave it that arm.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantArm {
    pub participant: String,
    pub arm: String,
    pub runs: usize,
    pub sales: usize,
    pub purchases: usize,
    pub seller_surplus: i64,
    pub buyer_surplus: i64,
    /// (sales + purchases) / runs.
    pub deals_per_run: f64,
    pub surplus_per_run: f64,
}

/// The outcomes compared between arms, one value per participant-run.
pub const OUTCOMES: &[(&str, &str)] = &[
    ("seller_surplus", "seller surplus per participant"),
    ("buyer_surplus", "buyer surplus per participant"),
    ("surplus", "total surplus per participant"),
    ("deals", "deals per participant (sales + purchases)"),
    ("seller_share", "mean seller share σ of its sales"),
    ("buyer_share", "mean buyer share 1 − σ of its purchases"),
];

/// Arm `first` against arm `second` on one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmComparison {
    pub outcome: String,
    pub first: String,
    pub second: String,
    /// `within runs` (participants randomised inside runs) or `between runs`.
    pub design: String,
    /// Runs contributing.
    pub runs: usize,
    pub comparison: Comparison,
    /// The p-value adjusted by Holm's method over the outcomes compared for this pair of arms
    /// (they are tested together: read this one before claiming any single outcome).
    #[serde(default)]
    pub p_holm: Option<f64>,
    pub too_small: bool,
}

/// Two groups of runs on a market-level outcome (runs as units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupComparison {
    pub outcome: String,
    pub first: String,
    pub second: String,
    pub comparison: Comparison,
    /// Holm-adjusted over the outcomes compared for this pair of groups.
    #[serde(default)]
    pub p_holm: Option<f64>,
    pub too_small: bool,
}

/// The market-level outcomes compared between run groups.
pub const RUN_OUTCOMES: &[(&str, &str)] = &[
    ("efficiency", "allocative efficiency"),
    ("welfare", "welfare"),
    ("deals", "deals"),
    ("mean_price", "mean price"),
    ("agreement_rate", "agreement rate"),
    ("mean_seller_share", "mean seller share σ"),
    ("time_to_deal_h", "median time to deal (hours)"),
];

/// One item traded under both arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemPair {
    pub item_id: String,
    pub item_type: Option<String>,
    /// Prices (minor units) when the side's party was in the first / second arm, one per run.
    pub prices_first: Vec<i64>,
    pub prices_second: Vec<i64>,
    pub mean_first: f64,
    pub mean_second: f64,
    pub difference: f64,
}

/// Same-item comparison of two arms on one side (`seller` or `buyer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SameItem {
    pub side: String,
    pub first: String,
    pub second: String,
    pub pairs: Vec<ItemPair>,
    pub paired: Paired,
    pub too_small: bool,
}

/// Price on arm dummies with item fixed effects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceRegression {
    /// The arm every coefficient is measured against.
    pub reference_arm: String,
    /// Regressor names (`seller arm X`, `buyer arm X`), aligned with the result's vectors.
    pub regressors: Vec<String>,
    /// Regressors left out for want of variation within items.
    pub dropped: Vec<String>,
    pub result: Option<Regression>,
    pub error: Option<String>,
    /// Items with deals under more than one arm combination (they identify the coefficients).
    pub items_with_variation: usize,
}

/// The whole analysis of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub experiment: String,
    pub currency: String,
    /// Arm → brain.
    pub arms: BTreeMap<String, String>,
    pub resampling: Resampling,
    pub min_units: usize,
    pub runs: Vec<RunSummary>,
    pub arm_summaries: BTreeMap<String, ArmSummary>,
    pub participants: Vec<ParticipantArm>,
    pub comparisons: Vec<ArmComparison>,
    pub group_comparisons: Vec<GroupComparison>,
    pub same_item: Vec<SameItem>,
    pub regression: Option<PriceRegression>,
    pub llm: LlmUsage,
    pub warnings: Vec<String>,
    /// Repeated markets: each outcome by session, per arm and per run group (absent with one
    /// session a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_curve: Option<crate::sessions::LearningCurve>,
}

/// One participant in one run.
struct Unit<'a> {
    run: usize,
    participant: &'a str,
    arm: &'a str,
    sales: Vec<&'a crate::metrics::DealMetrics>,
    purchases: Vec<&'a crate::metrics::DealMetrics>,
}

impl Unit<'_> {
    fn seller_surplus(&self) -> i64 {
        self.sales.iter().filter_map(|d| d.seller_surplus).sum()
    }
    fn buyer_surplus(&self) -> i64 {
        self.purchases.iter().map(|d| d.buyer_surplus).sum()
    }
    /// The outcome's value (money as integer minor units turned into a number here, for the
    /// statistic); `None` when the unit has nothing to measure (a share without deals).
    fn outcome(&self, name: &str) -> Option<f64> {
        let mean_of = |xs: Vec<f64>| stats::mean(&xs);
        match name {
            "seller_surplus" => Some(self.seller_surplus() as f64),
            "buyer_surplus" => Some(self.buyer_surplus() as f64),
            "surplus" => Some((self.seller_surplus() + self.buyer_surplus()) as f64),
            "deals" => Some((self.sales.len() + self.purchases.len()) as f64),
            "seller_share" => mean_of(self.sales.iter().filter_map(|d| d.seller_share).collect()),
            "buyer_share" => mean_of(
                self.purchases
                    .iter()
                    .filter_map(|d| d.seller_share.map(|s| 1.0 - s))
                    .collect(),
            ),
            _ => None,
        }
    }
}

fn run_outcome(m: &MarketMetrics, name: &str) -> Option<f64> {
    match name {
        "efficiency" => m.allocative_efficiency,
        "welfare" => Some(m.welfare as f64),
        "deals" => Some(m.deals as f64),
        "mean_price" => m.mean_price.map(|p| p as f64),
        "agreement_rate" => m.agreement_rate,
        "mean_seller_share" => m.mean_seller_share,
        "time_to_deal_h" => m.median_time_to_deal_ms.map(|ms| ms as f64 / 3_600_000.0),
        _ => None,
    }
}

/// Compares two arms on values given per (run, arm): within the runs that hold both arms,
/// else between runs (each run's mean as one unit).
pub fn compare_arms(
    values: &[(usize, &str, f64)],
    first: &str,
    second: &str,
    r: &Resampling,
) -> (String, usize, Comparison) {
    let mut arms_in_run: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for (run, arm, _) in values {
        arms_in_run.entry(*run).or_default().insert(arm);
    }
    let mixed: BTreeSet<usize> = arms_in_run
        .iter()
        .filter(|(_, a)| a.contains(first) && a.contains(second))
        .map(|(r, _)| *r)
        .collect();
    if !mixed.is_empty() {
        let obs: Vec<Obs> = values
            .iter()
            .filter(|(run, arm, _)| mixed.contains(run) && (*arm == first || *arm == second))
            .map(|(run, arm, v)| Obs {
                stratum: *run,
                second: *arm == second,
                value: *v,
            })
            .collect();
        ("within runs".into(), mixed.len(), stats::compare(&obs, r))
    } else {
        let mut sums: BTreeMap<(usize, bool), (f64, usize)> = BTreeMap::new();
        for (run, arm, v) in values {
            if *arm == first || *arm == second {
                let e = sums.entry((*run, *arm == second)).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
        let obs: Vec<Obs> = sums
            .iter()
            .map(|((_, second), (s, n))| Obs {
                stratum: 0,
                second: *second,
                value: s / *n as f64,
            })
            .collect();
        ("between runs".into(), sums.len(), stats::compare(&obs, r))
    }
}

/// An item's type and its prices under the first and the second arm.
type ItemPrices<'a> = (Option<&'a str>, Vec<i64>, Vec<i64>);

/// Analyses the runs of one experiment: its units (every participant of every run), each run,
/// each arm, each participant per arm, then the comparisons of arms, of run groups and of the
/// same items under two arms, and the price regression. Warnings come in that order.
pub fn analyse(
    experiment: &str,
    arms: &BTreeMap<String, String>,
    runs: &[RunData],
    r: &Resampling,
    min_units: usize,
) -> Analysis {
    let mut warnings = Vec::new();
    let currency = runs
        .first()
        .map_or_else(|| "USD".to_string(), |x| x.metrics.currency.clone());
    let units = units(runs);
    let (run_summaries, total_llm) = run_summaries(runs);
    let arm_summaries = arms
        .iter()
        .map(|(arm, brain)| (arm.clone(), arm_summary(arm, brain, &units, runs)))
        .collect();
    let arm_names: Vec<&String> = arms.keys().collect();
    let mut arm_pairs = Vec::new();
    for (i, a) in arm_names.iter().enumerate() {
        for b in &arm_names[i + 1..] {
            arm_pairs.push((a.as_str(), b.as_str()));
        }
    }
    let comparisons = arm_comparisons(&arm_pairs, &units, r, min_units, &mut warnings);
    let group_comparisons = group_comparisons(runs, r, &mut warnings);
    let same_item = same_item_comparisons(&arm_pairs, runs, r, min_units, &mut warnings);
    let regression = (arms.len() >= 2).then(|| price_regression(arms, runs, &mut warnings));
    Analysis {
        experiment: experiment.to_string(),
        currency,
        arms: arms.clone(),
        resampling: *r,
        min_units,
        runs: run_summaries,
        arm_summaries,
        participants: participant_arms(&units),
        comparisons,
        group_comparisons,
        same_item,
        regression,
        llm: total_llm,
        warnings,
        learning_curve: crate::sessions::learning_curve(
            &runs
                .iter()
                .map(|r| crate::sessions::RunSessions {
                    group: &r.plan.group,
                    arms: &r.arms,
                    sessions: &r.sessions,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// The units: every participant (with an arm) of every run, with its counted deals.
fn units(runs: &[RunData]) -> Vec<Unit<'_>> {
    let mut units: Vec<Unit> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        for name in run.metrics.participants.keys() {
            let Some(arm) = run.arms.get(name) else {
                continue;
            };
            let counted = run.metrics.deals.iter().filter(|d| d.counted);
            units.push(Unit {
                run: i,
                participant: name,
                arm,
                sales: counted.clone().filter(|d| &d.seller == name).collect(),
                purchases: counted.filter(|d| &d.buyer == name).collect(),
            });
        }
    }
    units
}

/// Each run's line, and the model use of all of them.
fn run_summaries(runs: &[RunData]) -> (Vec<RunSummary>, LlmUsage) {
    let mut total_llm = LlmUsage::default();
    let summaries = runs
        .iter()
        .map(|run| {
            let mut llm = LlmUsage::default();
            run.llm.values().for_each(|u| llm.add(u));
            total_llm.add(&llm);
            let mut arm_sizes: BTreeMap<String, usize> = BTreeMap::new();
            for a in run.arms.values() {
                *arm_sizes.entry(a.clone()).or_default() += 1;
            }
            let deals = run.metrics.market.deals as i64;
            RunSummary {
                id: run.plan.id.clone(),
                group: run.plan.group.clone(),
                seed: run.plan.seed,
                real: run.plan.real,
                arm_sizes,
                market: run.metrics.market.clone(),
                llm,
                llm_cost_per_deal: (deals > 0 && llm.calls > 0).then(|| llm.cost_micro_usd / deals),
            }
        })
        .collect();
    (summaries, total_llm)
}

/// One arm over every run: its deals, then its participants' settlements, model use and turns.
fn arm_summary(arm: &str, brain: &str, units: &[Unit], runs: &[RunData]) -> ArmSummary {
    let mine: Vec<&Unit> = units.iter().filter(|u| u.arm == arm).collect();
    let mut s = arm_deals(brain, &mine);
    for u in &mine {
        let run = &runs[u.run];
        if let Some(p) = run.metrics.participants.get(u.participant) {
            s.refusals += p.refusals.values().sum::<u64>();
            s.wants += p.wants;
            s.wants_met += p.wants_met;
            s.items += p.items;
            s.items_sold += p.items_sold;
        }
        if let Some(l) = run.llm.get(u.participant) {
            s.llm.add(l);
        }
        s.first_mover_rounds += run.first_movers.get(u.participant).copied().unwrap_or(0);
    }
    let arm_runs: BTreeSet<usize> = mine.iter().map(|u| u.run).collect();
    s.rounds_with_actions = arm_runs
        .iter()
        .map(|&r| runs[r].first_movers.values().sum::<u64>())
        .sum();
    let agents_in_runs: usize = arm_runs.iter().map(|&r| runs[r].arms.len()).sum();
    s.share_of_agents = (agents_in_runs > 0).then(|| mine.len() as f64 / agents_in_runs as f64);
    s
}

/// An arm's figures from its units' deals (the rest left at zero).
fn arm_deals(brain: &str, mine: &[&Unit]) -> ArmSummary {
    let sales: Vec<_> = mine.iter().flat_map(|u| u.sales.iter().copied()).collect();
    let buys: Vec<_> = mine
        .iter()
        .flat_map(|u| u.purchases.iter().copied())
        .collect();
    let ss: Vec<f64> = sales
        .iter()
        .filter_map(|d| d.seller_surplus.map(|x| x as f64))
        .collect();
    let bs: Vec<f64> = buys.iter().map(|d| d.buyer_surplus as f64).collect();
    let mean_of = |xs: Vec<f64>| stats::mean(&xs);
    ArmSummary {
        brain: brain.to_string(),
        runs: mine.iter().map(|u| u.run).collect::<BTreeSet<_>>().len(),
        participant_runs: mine.len(),
        deals_as_seller: sales.len(),
        deals_as_buyer: buys.len(),
        volume_sold: sales.iter().map(|d| d.price).sum(),
        volume_bought: buys.iter().map(|d| d.price).sum(),
        seller_surplus: sales.iter().filter_map(|d| d.seller_surplus).sum(),
        buyer_surplus: buys.iter().map(|d| d.buyer_surplus).sum(),
        mean_seller_surplus_per_sale: stats::mean(&ss),
        mean_buyer_surplus_per_purchase: stats::mean(&bs),
        mean_share_as_seller: mean_of(sales.iter().filter_map(|d| d.seller_share).collect()),
        mean_share_as_buyer: mean_of(
            buys.iter()
                .filter_map(|d| d.seller_share.map(|s| 1.0 - s))
                .collect(),
        ),
        mean_nash_distance_as_seller: mean_of(
            sales
                .iter()
                .filter_map(|d| d.nash_distance.map(|x| x as f64))
                .collect(),
        ),
        deals_per_participant: (!mine.is_empty())
            .then(|| (sales.len() + buys.len()) as f64 / mine.len() as f64),
        irrational_deals: sales
            .iter()
            .filter(|d| d.floor.is_some_and(|f| d.price < f))
            .count()
            + buys.iter().filter(|d| d.price > d.valuation).count(),
        unwanted_purchases: buys.iter().filter(|d| d.unwanted).count(),
        ..ArmSummary::default()
    }
}

/// Each participant in each arm it was in: its deals and surplus per run.
fn participant_arms(units: &[Unit]) -> Vec<ParticipantArm> {
    let mut per: BTreeMap<(&str, &str), ParticipantArm> = BTreeMap::new();
    for u in units {
        let e = per
            .entry((u.participant, u.arm))
            .or_insert_with(|| ParticipantArm {
                participant: u.participant.to_string(),
                arm: u.arm.to_string(),
                ..ParticipantArm::default()
            });
        e.runs += 1;
        e.sales += u.sales.len();
        e.purchases += u.purchases.len();
        e.seller_surplus += u.seller_surplus();
        e.buyer_surplus += u.buyer_surplus();
    }
    per.into_values()
        .map(|mut p| {
            p.deals_per_run = (p.sales + p.purchases) as f64 / p.runs as f64;
            p.surplus_per_run = (p.seller_surplus + p.buyer_surplus) as f64 / p.runs as f64;
            p
        })
        .collect()
}

/// Every pair of arms on every outcome, Holm-adjusted over the pair's outcomes; a warning per
/// comparison with too few units.
fn arm_comparisons(
    arm_pairs: &[(&str, &str)],
    units: &[Unit],
    r: &Resampling,
    min_units: usize,
    warnings: &mut Vec<String>,
) -> Vec<ArmComparison> {
    let mut comparisons = Vec::new();
    for &(a, b) in arm_pairs {
        for (k, (outcome, _)) in OUTCOMES.iter().enumerate() {
            let values: Vec<(usize, &str, f64)> = units
                .iter()
                .filter_map(|u| Some((u.run, u.arm, u.outcome(outcome)?)))
                .collect();
            let present = |arm: &str| values.iter().any(|v| v.1 == arm);
            if !present(a) || !present(b) {
                continue;
            }
            let rr = Resampling {
                seed: stats_seed(r.seed, k as u64),
                ..*r
            };
            let (design, n_runs, comparison) = compare_arms(&values, a, b, &rr);
            let too_small = comparison.n_first < min_units || comparison.n_second < min_units;
            if too_small {
                warnings.push(format!(
                    "{a} vs {b}, {outcome}: too few samples ({} and {} {}; at least {min_units} each are needed to trust the interval and p-value)",
                    comparison.n_first,
                    comparison.n_second,
                    if design == "within runs" { "participant-runs" } else { "runs" }
                ));
            }
            comparisons.push(ArmComparison {
                outcome: outcome.to_string(),
                first: a.to_string(),
                second: b.to_string(),
                design,
                runs: n_runs,
                comparison,
                p_holm: None,
                too_small,
            });
        }
        let family = comparisons
            .iter_mut()
            .filter(|c| c.first == a && c.second == b);
        adjust_holm(family.map(|c| (&c.comparison, &mut c.p_holm)));
    }
    comparisons
}

/// Every pair of run groups (in the order they first appear) on the market outcomes, runs as
/// units, Holm-adjusted over the pair's outcomes; a warning for a group of fewer than two runs.
fn group_comparisons(
    runs: &[RunData],
    r: &Resampling,
    warnings: &mut Vec<String>,
) -> Vec<GroupComparison> {
    let mut groups: Vec<&str> = Vec::new();
    for run in runs {
        if !groups.contains(&run.plan.group.as_str()) {
            groups.push(run.plan.group.as_str());
        }
    }
    let mut comparisons = Vec::new();
    for (i, g1) in groups.iter().enumerate() {
        for g2 in &groups[i + 1..] {
            for (k, (outcome, _)) in RUN_OUTCOMES.iter().enumerate() {
                let rr = Resampling {
                    seed: stats_seed(r.seed, 100 + k as u64),
                    ..*r
                };
                let comparison = stats::compare(&group_obs(runs, g1, g2, outcome), &rr);
                let too_small = comparison.n_first < 2 || comparison.n_second < 2;
                comparisons.push(GroupComparison {
                    outcome: outcome.to_string(),
                    first: g1.to_string(),
                    second: g2.to_string(),
                    comparison,
                    p_holm: None,
                    too_small,
                });
            }
            let family = comparisons
                .iter_mut()
                .filter(|c| c.first == *g1 && c.second == *g2);
            adjust_holm(family.map(|c| (&c.comparison, &mut c.p_holm)));
            let size = |g: &str| runs.iter().filter(|x| x.plan.group == g).count();
            if size(g1) < 2 || size(g2) < 2 {
                warnings.push(format!(
                    "run groups {g1} vs {g2}: fewer than two runs in a group, so no interval or p-value can be trusted (runs are the units)"
                ));
            }
        }
    }
    comparisons
}

/// One observation per run of the two groups: the run's market outcome.
fn group_obs(runs: &[RunData], g1: &str, g2: &str, outcome: &str) -> Vec<Obs> {
    runs.iter()
        .filter(|x| x.plan.group == g1 || x.plan.group == g2)
        .filter_map(|x| {
            Some(Obs {
                stratum: 0,
                second: x.plan.group == g2,
                value: run_outcome(&x.metrics.market, outcome)?,
            })
        })
        .collect()
}

/// Every pair of arms, as sellers and as buyers: the items traded under both, paired; a
/// warning when too few items were.
fn same_item_comparisons(
    arm_pairs: &[(&str, &str)],
    runs: &[RunData],
    r: &Resampling,
    min_units: usize,
    warnings: &mut Vec<String>,
) -> Vec<SameItem> {
    let mut same_item = Vec::new();
    for &(a, b) in arm_pairs {
        for side in ["seller", "buyer"] {
            let pairs = item_pairs(runs, a, b, side);
            let diffs: Vec<f64> = pairs.iter().map(|p| p.difference).collect();
            let rr = Resampling {
                seed: stats_seed(r.seed, if side == "seller" { 200 } else { 201 }),
                ..*r
            };
            let paired = stats::paired(&diffs, &rr);
            let too_small = pairs.len() < min_units;
            if too_small {
                warnings.push(format!(
                    "same-item prices, {a} vs {b} as {side}: only {} item(s) traded under both arms (at least {min_units} needed)",
                    pairs.len()
                ));
            }
            same_item.push(SameItem {
                side: side.into(),
                first: a.into(),
                second: b.into(),
                pairs,
                paired,
                too_small,
            });
        }
    }
    same_item
}

/// The items sold (or bought) under arm `a` and under arm `b` (the `side`'s arm), with their
/// prices under each, by item id.
fn item_pairs(runs: &[RunData], a: &str, b: &str, side: &str) -> Vec<ItemPair> {
    let mut prices: BTreeMap<&str, ItemPrices> = BTreeMap::new();
    for run in runs {
        for d in run.metrics.deals.iter().filter(|d| d.counted) {
            let Some(item) = d.item_id.as_deref() else {
                continue;
            };
            let party = if side == "seller" {
                &d.seller
            } else {
                &d.buyer
            };
            let arm = run.arms.get(party).map(String::as_str);
            let e = prices
                .entry(item)
                .or_insert((d.item_type.as_deref(), Vec::new(), Vec::new()));
            if arm == Some(a) {
                e.1.push(d.price);
            } else if arm == Some(b) {
                e.2.push(d.price);
            }
        }
    }
    prices
        .into_iter()
        .filter(|(_, (_, x, y))| !x.is_empty() && !y.is_empty())
        .map(|(item, (t, x, y))| {
            let mean = |v: &[i64]| v.iter().sum::<i64>() as f64 / v.len() as f64;
            let (m1, m2) = (mean(&x), mean(&y));
            ItemPair {
                item_id: item.to_string(),
                item_type: t.map(str::to_string),
                prices_first: x,
                prices_second: y,
                mean_first: m1,
                mean_second: m2,
                difference: m1 - m2,
            }
        })
        .collect()
}

/// Sets each comparison's Holm-adjusted p-value over the family given.
fn adjust_holm<'a>(family: impl Iterator<Item = (&'a Comparison, &'a mut Option<f64>)>) {
    let (ps, slots): (Vec<Option<f64>>, Vec<&mut Option<f64>>) = family
        .map(|(c, slot)| (c.test.map(|t| t.p_value), slot))
        .unzip();
    for (slot, adjusted) in slots.into_iter().zip(stats::holm(&ps)) {
        *slot = adjusted;
    }
}

fn stats_seed(seed: u64, k: u64) -> u64 {
    crate::experiment::mix(seed, k)
}

/// Price on seller-arm and buyer-arm dummies (the first arm is the reference) with item fixed
/// effects; regressors without variation inside items are dropped one by one.
fn price_regression(
    arms: &BTreeMap<String, String>,
    runs: &[RunData],
    warnings: &mut Vec<String>,
) -> PriceRegression {
    let names: Vec<&String> = arms.keys().collect();
    let reference = names[0].clone();
    let mut columns: Vec<(String, &str, bool)> = Vec::new(); // (name, arm, seller side)
    for arm in &names[1..] {
        columns.push((format!("seller arm {arm}"), arm.as_str(), true));
        columns.push((format!("buyer arm {arm}"), arm.as_str(), false));
    }
    let mut y = Vec::new();
    let mut rows: Vec<(usize, &str, &str)> = Vec::new(); // (item, seller arm, buyer arm)
    let mut items: BTreeMap<&str, usize> = BTreeMap::new();
    for run in runs {
        for d in run.metrics.deals.iter().filter(|d| d.counted) {
            let (Some(item), Some(sa), Some(ba)) = (
                d.item_id.as_deref(),
                run.arms.get(&d.seller),
                run.arms.get(&d.buyer),
            ) else {
                continue;
            };
            let next = items.len();
            let g = *items.entry(item).or_insert(next);
            y.push(d.price as f64);
            rows.push((g, sa, ba));
        }
    }
    let mut combos: BTreeMap<usize, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for (g, sa, ba) in &rows {
        combos.entry(*g).or_default().insert((sa, ba));
    }
    let items_with_variation = combos.values().filter(|c| c.len() > 1).count();
    let group: Vec<usize> = rows.iter().map(|r| r.0).collect();
    let mut dropped = Vec::new();
    loop {
        let x: Vec<Vec<f64>> = rows
            .iter()
            .map(|(_, sa, ba)| {
                columns
                    .iter()
                    .map(|(_, arm, seller)| {
                        f64::from(u8::from(if *seller { sa == arm } else { ba == arm }))
                    })
                    .collect()
            })
            .collect();
        let regressors: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
        if columns.is_empty() {
            return PriceRegression {
                reference_arm: reference,
                regressors,
                dropped,
                result: None,
                error: Some("no regressor varies within items".into()),
                items_with_variation,
            };
        }
        match stats::ols_fixed_effects(&y, &x, &group) {
            Ok(reg) => {
                if reg.df < 10 {
                    warnings.push(format!(
                        "price regression: only {} residual degrees of freedom",
                        reg.df
                    ));
                }
                return PriceRegression {
                    reference_arm: reference,
                    regressors,
                    dropped,
                    result: Some(reg),
                    error: None,
                    items_with_variation,
                };
            }
            Err(stats::RegressionError::Collinear { column }) => {
                dropped.push(columns.remove(column).0);
            }
            Err(e) => {
                warnings.push(format!("price regression not estimated: {e}"));
                return PriceRegression {
                    reference_arm: reference,
                    regressors,
                    dropped,
                    result: None,
                    error: Some(e.to_string()),
                    items_with_variation,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Design, RunPlan};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn plan(i: usize, seed: u64) -> RunPlan {
        RunPlan {
            id: format!("split-{i:02}"),
            group: "split".into(),
            index: i,
            seed,
            design: Design::Split(vec!["a".into(), "b".into()]),
            real: false,
            rules: BTreeMap::new(),
            shipping: None,
        }
    }

    #[test]
    fn within_run_comparisons_use_only_runs_holding_both_arms() {
        // Run 0 mixes both arms; run 1 is all `a` and must not enter.
        let v = vec![
            (0, "a", 10.0),
            (0, "a", 12.0),
            (0, "b", 4.0),
            (0, "b", 6.0),
            (1, "a", 1000.0),
        ];
        let (design, runs, c) = compare_arms(&v, "a", "b", &Resampling::default());
        assert_eq!(design, "within runs");
        assert_eq!(runs, 1);
        assert_eq!((c.n_first, c.n_second), (2, 2));
        assert_eq!(c.difference, Some(6.0));
        // C(4, 2) = 6 relabelings; |diff| ≥ 6 for {10,12} and {4,6}: p = 2/6.
        let t = c.test.unwrap();
        assert!(t.exact && (t.p_value - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn arms_that_never_share_a_run_are_compared_between_runs() {
        let v = vec![
            (0, "a", 10.0),
            (0, "a", 20.0),
            (1, "a", 30.0),
            (2, "b", 1.0),
            (3, "b", 3.0),
        ];
        let (design, units, c) = compare_arms(&v, "a", "b", &Resampling::default());
        assert_eq!(design, "between runs");
        assert_eq!(units, 4);
        // Run means 15 and 30 against 1 and 3.
        assert_eq!(c.difference, Some(22.5 - 2.0));
    }

    /// A market-like A/A dataset: per run 20 participants split 10/10 by the experiment's own
    /// seeded split; a participant's seller surplus is zero-inflated, skewed, in whole cents,
    /// with a run effect — and does not depend on the arm.
    fn aa_dataset(rng: &mut StdRng, seed: u64, runs: usize) -> Vec<(usize, String, f64)> {
        let people: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        let mut out = Vec::new();
        for r in 0..runs {
            let arms = plan(r, crate::experiment::mix(seed, r as u64))
                .assignment(&people)
                .unwrap();
            let run_effect = rng.random_range(0..3000i64);
            for arm in arms {
                let sales = rng.random_range(0..4);
                let cents: i64 = (0..sales)
                    .map(|_| {
                        let u: f64 = rng.random::<f64>().max(1e-12);
                        (-u.ln() * 1500.0) as i64 + run_effect / 4
                    })
                    .sum();
                out.push((r, arm, cents as f64));
            }
        }
        out
    }

    #[test]
    fn across_many_seeded_aa_experiments_about_five_percent_are_significant() {
        // 400 A/A experiments of 4 runs × 20 participants; the within-run permutation test is
        // exact in distribution under A/A, so the share of p < 0.05 is Binomial(400, ≤ 0.05):
        // mean 20, sd 4.4. Accept 8..=34 (about ±3 sd).
        let mut rng = StdRng::seed_from_u64(7);
        let r = Resampling {
            bootstrap: 100,
            permutations: 199,
            ..Resampling::default()
        };
        let mut significant = 0;
        for e in 0..400u64 {
            let data = aa_dataset(&mut rng, e, 4);
            let v: Vec<(usize, &str, f64)> =
                data.iter().map(|(r, a, x)| (*r, a.as_str(), *x)).collect();
            let rr = Resampling { seed: e, ..r };
            let (_, _, c) = compare_arms(&v, "a", "b", &rr);
            significant += usize::from(c.test.unwrap().p_value < 0.05);
        }
        eprintln!("A/A: {significant} of 400 significant");
        assert!(
            (8..=34).contains(&significant),
            "{significant} of 400 A/A experiments had p < 0.05"
        );
    }

    #[test]
    fn a_real_effect_in_market_like_data_is_detected() {
        let mut rng = StdRng::seed_from_u64(8);
        let data = aa_dataset(&mut rng, 1, 4);
        let v: Vec<(usize, &str, f64)> = data
            .iter()
            .map(|(r, a, x)| (*r, a.as_str(), if a == "a" { x + 1500.0 } else { *x }))
            .collect();
        let (_, _, c) = compare_arms(&v, "a", "b", &Resampling::default());
        assert!(c.test.unwrap().p_value < 0.05, "{c:?}");
        let (lo, hi) = c.ci95.unwrap();
        assert!(lo < 1500.0 && 1500.0 < hi && lo > 0.0, "({lo}, {hi})");
    }

    /// Two sellers (lamp: floor 1000; kettle: floor 2000), two buyers (lamp 5000, kettle
    /// 3000), two runs with the arms swapped between them.
    const KNOWN: &str = r#"
name = "known"
[[profiles]]
name = "Sella"
budget = 0
[[profiles.sell]]
item_id = "lamp-1"
item_type = "desk lamp"
title = "Desk lamp"
category = "furniture"
asking_price = 1500
floor_price = 1000
[[profiles]]
name = "Selby"
budget = 0
[[profiles.sell]]
item_id = "kettle-1"
item_type = "kettle"
title = "Electric kettle"
category = "kitchen"
asking_price = 2600
floor_price = 2000
[[profiles]]
name = "Xavi"
budget = 10000
[[profiles.want]]
want_id = "w-lamp"
item_type = "desk lamp"
description = "a desk lamp"
category = "furniture"
max_price = 5000
[[profiles]]
name = "Yara"
budget = 10000
[[profiles.want]]
want_id = "w-kettle"
item_type = "kettle"
description = "a kettle"
category = "kitchen"
max_price = 3000
"#;

    fn known_run(i: usize, arms: [&str; 4], lamp: i64, kettle: i64) -> RunData {
        use crate::metrics::{DealRecord, ParticipantRecord, RunRecord};
        use haggle_api::haggle_core::model::DealStatus;
        let scenario = crate::scenario::Scenario::from_toml_str(KNOWN, "known.toml").unwrap();
        let names = ["Sella", "Selby", "Xavi", "Yara"];
        let deal = |id, item: &str, seller: &str, buyer: &str, price| DealRecord {
            id,
            listing_id: id,
            thread_id: None,
            item_id: Some(item.into()),
            want_id: None,
            seller: seller.into(),
            buyer: buyer.into(),
            price,
            status: DealStatus::Completed,
            created_at: 0,
            first_offer_at: None,
            offers: 2,
        };
        let record = RunRecord {
            participants: names
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    (
                        n.to_string(),
                        ParticipantRecord {
                            participant_id: k as i64 + 1,
                            brain: "rule:linear".into(),
                        },
                    )
                })
                .collect(),
            deals: vec![
                deal(10, "lamp-1", "Sella", "Xavi", lamp),
                deal(11, "kettle-1", "Selby", "Yara", kettle),
            ],
            ..RunRecord::default()
        };
        RunData {
            plan: plan(i, i as u64),
            arms: names
                .iter()
                .zip(arms)
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
            metrics: crate::metrics::compute(&scenario, &record),
            llm: BTreeMap::new(),
            // Whose action the market applied first, per round: 4 rounds in each run.
            first_movers: [[("Sella", 3), ("Xavi", 1)], [("Selby", 2), ("Yara", 2)]][i % 2]
                .iter()
                .map(|(n, k)| (n.to_string(), *k))
                .collect(),
            sessions: Vec::new(),
        }
    }

    #[test]
    fn the_analysis_of_two_swapped_runs_matches_the_hand_computation() {
        let runs = vec![
            known_run(0, ["a", "b", "a", "b"], 3000, 2500),
            known_run(1, ["b", "a", "b", "a"], 2000, 2800),
        ];
        let arms: BTreeMap<String, String> = [("a", "rule:x"), ("b", "rule:y")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let an = analyse("known", &arms, &runs, &Resampling::default(), 10);
        // Per arm: a sold the lamp at 3000 (surplus 2000) and the kettle at 2800 (800).
        let a = &an.arm_summaries["a"];
        assert_eq!(
            (a.deals_as_seller, a.seller_surplus, a.volume_sold),
            (2, 2800, 5800)
        );
        assert_eq!(an.arm_summaries["b"].seller_surplus, 500 + 1000);
        assert_eq!(a.participant_runs, 4);
        // First to act: arm a's agents in all 8 rounds, though they are half the agents.
        assert_eq!((a.first_mover_rounds, a.rounds_with_actions), (8, 8));
        assert_eq!(
            (a.first_mover_share(), a.share_of_agents),
            (Some(1.0), Some(0.5))
        );
        let b = &an.arm_summaries["b"];
        assert_eq!(
            (b.first_mover_rounds, b.first_mover_share()),
            (0, Some(0.0))
        );
        // Same item, seller side: lamp +1000, kettle +300; sign flips: p = 2/4.
        let s = &an.same_item[0];
        assert_eq!((s.side.as_str(), s.pairs.len()), ("seller", 2));
        assert_eq!(s.pairs[0].item_id, "kettle-1");
        assert_eq!(s.pairs[0].difference, 300.0);
        assert_eq!(s.pairs[1].difference, 1000.0);
        assert_eq!(s.paired.mean_difference, Some(650.0));
        assert_eq!(s.paired.test.unwrap().p_value, 0.5);
        assert!(s.too_small);
        // Regression: seller-b and buyer-b coincide here, so the buyer column is dropped; then
        // β = −650 with se 350 on 1 df (see the stats tests for the algebra).
        let reg = an.regression.as_ref().unwrap();
        assert_eq!(reg.dropped, ["buyer arm b"]);
        let res = reg.result.as_ref().unwrap();
        assert!((res.coefficients[0] + 650.0).abs() < 1e-9);
        assert!((res.std_errors[0] - 350.0).abs() < 1e-9);
        // Within-run comparison of seller surplus: per run one seller in each arm.
        let c = an
            .comparisons
            .iter()
            .find(|c| c.outcome == "seller_surplus")
            .unwrap();
        assert_eq!(c.design, "within runs");
        assert_eq!(
            (c.runs, c.comparison.n_first, c.comparison.n_second),
            (2, 4, 4)
        );
        assert!(an.warnings.iter().any(|w| w.contains("too few samples")));
        // Participants by arm: Sella sold once in each arm.
        let sella_a = an
            .participants
            .iter()
            .find(|p| p.participant == "Sella" && p.arm == "a")
            .unwrap();
        assert_eq!(
            (sella_a.runs, sella_a.sales, sella_a.seller_surplus),
            (1, 1, 2000)
        );
    }

    #[test]
    fn llm_call_logs_are_summed_per_agent() {
        let text = r#"{"kind":"prompt","agent":"Ada","brain":"x","template_version":"v","system_prompt":"..."}
{"kind":"call","agent":"Ada","usage":{"input_tokens":100,"output_tokens":20,"cache_read_tokens":5,"cache_write_tokens":0},"cost_micro_usd":450,"error":null}
{"kind":"call","agent":"Ada","usage":{"input_tokens":10,"output_tokens":2,"cache_read_tokens":0,"cache_write_tokens":1},"cost_micro_usd":null,"error":"timeout"}

{"kind":"call","agent":"Bo","usage":{"input_tokens":1,"output_tokens":1},"cost_micro_usd":3}
"#;
        let u = llm_usage_from_jsonl(text).unwrap();
        let ada = u["Ada"];
        assert_eq!(
            (
                ada.calls,
                ada.input_tokens,
                ada.output_tokens,
                ada.cached_tokens
            ),
            (2, 110, 22, 6)
        );
        assert_eq!(
            (
                ada.cost_micro_usd,
                ada.calls_without_price,
                ada.failed_calls
            ),
            (450, 1, 1)
        );
        assert_eq!(u["Bo"].cost_micro_usd, 3);
        assert!(
            llm_usage_from_jsonl("not json")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(llm_usage_from_jsonl("").unwrap().is_empty());
    }
}
