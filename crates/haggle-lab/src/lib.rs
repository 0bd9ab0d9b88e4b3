//! The research harness: scenarios (profiles plus the ground truth agents never see), the seeded
//! generator of office classifieds, metrics and the efficiency benchmark, and reports.
//!
//! - [`scenario`]: the [`scenario::Scenario`] and its files (TOML, JSON, CSV);
//! - [`generator`]: a realistic office market from a seed ([`generator::generate`]);
//! - [`efficiency`]: the maximum welfare under budgets ([`efficiency::max_welfare`]);
//! - [`metrics`]: what happened in a run ([`metrics::RunRecord`]) and its
//!   [`metrics::Metrics`];
//! - [`charts`]: SVG chart primitives (plot area, axes, ticks, palette, legend) the reports
//!   and the web pages draw with;
//! - [`report`]: `results.json`, `deals.csv`, `participants.csv`, `report.html`, `timing.json`;
//! - [`experiment`]: experiment files (arms, run designs, seeds, limits) and their run plan;
//! - [`experiment_report`]: an experiment's `report.html`, `analysis.json`, CSVs, comparisons;
//! - [`analysis`]: an experiment's runs → metrics per run, arm and participant, comparisons;
//! - [`stats`]: permutation tests, bootstrap intervals, paired tests, fixed-effects regression;
//! - [`sessions`]: repeated markets: each session's metrics and the learning curve;
//! - [`eval_task`] and [`scorecard`]: `haggle eval`'s task files, the best surplus by ground truth,
//!   and the scorecard (measures per run, intervals over seeds, comparisons, HTML);
//! - [`trust`]: what misdescribed items cost in a run, and the simulated not-as-described ruling.

pub mod analysis;
pub mod charts;
pub mod efficiency;
pub mod eval_task;
pub mod experiment;
pub mod experiment_report;
pub mod generator;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod scorecard;
pub mod sessions;
pub mod shipping;
pub mod stats;
pub mod trust;
