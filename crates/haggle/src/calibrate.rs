//! `haggle experiment calibrate FILE --seeds N` (issue 20): how honest the experiment's
//! statistics are on this experiment's own markets. Its A/A version (every arm given the first
//! arm's brain, so the arms cannot differ) runs over N seeds; per compared outcome it reports the
//! share of p < 0.05 (false positives, nominally 5%) and of 95% intervals covering 0 (nominally
//! 95%), each with a Wilson 95% interval, and flags a nominal value outside it. With `--effect`
//! the experiment as written runs over the same seeds too: how often each difference is found.

use crate::experiment::{Ran, load_runs, run_runs};
use anyhow::{Context, bail};
use haggle_lab::analysis::{self, Analysis};
use haggle_lab::experiment::{Experiment, mix};
use haggle_lab::stats::Comparison;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The most seeds one calibration runs (each is a whole experiment).
pub const MAX_SEEDS: u32 = 10_000;

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// The experiment file (TOML) to calibrate.
    pub file: PathBuf,
    /// How many seeds (each a whole A/A experiment).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=MAX_SEEDS as i64))]
    pub seeds: u32,
    /// Output folder (default: experiments/<name>-calibration).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also run the experiment as written over the same seeds: how often each difference is found.
    #[arg(long)]
    pub effect: bool,
    /// Keep every seed's runs (databases, event logs); by default a seed's folder is removed
    /// once analysed (each seed is reproducible from the experiment and its number).
    #[arg(long)]
    pub keep_runs: bool,
}

/// One compared outcome over the seeds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// Seeds in which the comparison could be made.
    pub n: u32,
    /// p < 0.05.
    pub rejected: u32,
    /// Holm-adjusted p < 0.05.
    pub rejected_holm: u32,
    /// The 95% interval held 0.
    pub covered: u32,
}

/// `(kind, outcome, first, second)`: `arms` or `run groups`.
type Key = (String, String, String, String);

/// What a variant (A/A, or the experiment as written) gave over the seeds.
#[derive(Debug, Serialize)]
pub struct Calibration {
    pub variant: String,
    pub seeds: u32,
    pub outcomes: Vec<(Key, Tally)>,
    /// Seeds in which some outcome of a family (a pair of arms or groups) had Holm p < 0.05.
    pub families: Vec<((String, String, String), u32)>,
}

/// The experiment with every arm given the first arm's brain: any difference is noise.
pub fn aa_version(x: &Experiment) -> Experiment {
    let mut aa = x.clone();
    if let Some(brain) = x.arms.values().next().cloned() {
        for b in aa.arms.values_mut() {
            *b = brain.clone();
        }
    }
    aa.name = format!("{}-aa", x.name);
    aa
}

/// The `k`-th seed's experiment: its own base seed, so every run and split is drawn anew.
fn seeded(x: &Experiment, k: u32) -> Experiment {
    let mut s = x.clone();
    // Kept below 2^63: an experiment file's integers are TOML's (signed 64-bit).
    s.seed = mix(x.seed, 1_000_000 + u64::from(k)) >> 1;
    s
}

/// A Wilson score interval (95%) of `x` successes in `n`.
pub fn wilson(x: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (
        f64::from(n),
        f64::from(x) / f64::from(n),
        1.959_963_984_540_054,
    );
    let d = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / d;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn tally(into: &mut BTreeMap<Key, Tally>, key: Key, c: &Comparison, holm: Option<f64>) {
    let (Some(t), Some((lo, hi))) = (c.test, c.ci95) else {
        return;
    };
    let e = into.entry(key).or_default();
    e.n += 1;
    e.rejected += u32::from(t.p_value < 0.05);
    e.rejected_holm += u32::from(holm.is_some_and(|p| p < 0.05));
    e.covered += u32::from(lo <= 0.0 && 0.0 <= hi);
}

/// Adds one seed's analysis to the tallies.
fn add(
    a: &Analysis,
    outcomes: &mut BTreeMap<Key, Tally>,
    families: &mut BTreeMap<(String, String, String), u32>,
) {
    let mut hit: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    for c in &a.comparisons {
        let key = (
            "arms".to_string(),
            c.outcome.clone(),
            c.first.clone(),
            c.second.clone(),
        );
        tally(outcomes, key, &c.comparison, c.p_holm);
        let fam = ("arms".to_string(), c.first.clone(), c.second.clone());
        *hit.entry(fam).or_default() |= c.p_holm.is_some_and(|p| p < 0.05);
    }
    for c in &a.group_comparisons {
        let key = (
            "run groups".to_string(),
            c.outcome.clone(),
            c.first.clone(),
            c.second.clone(),
        );
        tally(outcomes, key, &c.comparison, c.p_holm);
        let fam = ("run groups".to_string(), c.first.clone(), c.second.clone());
        *hit.entry(fam).or_default() |= c.p_holm.is_some_and(|p| p < 0.05);
    }
    for (fam, any) in hit {
        *families.entry(fam).or_default() += u32::from(any);
    }
}

/// Runs `x` over `seeds` seeds into `dir/seed-NNNN` and tallies each seed's analysis.
async fn over_seeds(
    x: &Experiment,
    variant: &str,
    seeds: u32,
    dir: &Path,
    keep_runs: bool,
) -> anyhow::Result<Calibration> {
    let mut outcomes = BTreeMap::new();
    let mut families = BTreeMap::new();
    let started = Instant::now();
    for k in 0..seeds {
        let xs = seeded(x, k);
        let text = toml::to_string(&xs).context("cannot write the seed's experiment file")?;
        let sd = dir.join(format!("seed-{:04}", k + 1));
        let Ran { failed, .. } = run_runs(&xs, &text, &sd, None, None, false).await?;
        if !failed.is_empty() {
            bail!(
                "{variant} seed {}: run(s) failed: {}",
                k + 1,
                failed.join(", ")
            );
        }
        let (xx, runs, _) = load_runs(&sd)?;
        let a = analysis::analyse(
            &xx.name,
            &xx.arms,
            &runs,
            &xx.analysis.resampling(),
            xx.analysis.min_units,
        );
        add(&a, &mut outcomes, &mut families);
        if !keep_runs {
            std::fs::remove_dir_all(&sd)
                .with_context(|| format!("cannot remove {}", sd.display()))?;
        }
        eprintln!(
            "{variant}: seed {}/{seeds} done ({} runs; {:.0} s so far)",
            k + 1,
            runs.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Calibration {
        variant: variant.to_string(),
        seeds,
        outcomes: outcomes.into_iter().collect(),
        families: families.into_iter().collect(),
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A rate, its Wilson interval, and whether the nominal value lies inside it.
fn rate(x: u32, n: u32, nominal: Option<f64>) -> String {
    let (lo, hi) = wilson(x, n);
    let r = if n == 0 {
        0.0
    } else {
        f64::from(x) / f64::from(n)
    };
    // Which side the nominal value falls on says how the method errs: fewer false positives
    // than nominal is conservative (valid, less power), more is liberal (invalid).
    let flag = match nominal {
        Some(v) if (lo..=hi).contains(&v) => "     ok",
        Some(v) if v > hi => "  BELOW",
        Some(_) => "  ABOVE",
        None => "",
    };
    format!("{:>6} [{:>5}, {:>5}]{flag}", pct(r), pct(lo), pct(hi))
}

/// The printed table of one variant.
pub fn render(c: &Calibration, aa: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} over {} seeds{}",
        c.variant,
        c.seeds,
        if aa {
            ": false positives (nominal 5%) and intervals covering 0 (nominal 95%), Wilson 95% intervals; BELOW/ABOVE = the rate is below/above the nominal value beyond chance"
        } else {
            ": how often each difference is found (p < 0.05)"
        }
    );
    let _ = writeln!(
        out,
        "{:<11} {:<20} {:<22} {:>4}  {:<26} {:<26} {:<8}",
        "compared",
        "outcome",
        "pair",
        "n",
        "p < 0.05",
        if aa {
            "interval covers 0"
        } else {
            "Holm p < 0.05"
        },
        "±2 pts"
    );
    for ((kind, outcome, first, second), t) in &c.outcomes {
        let r = f64::from(t.rejected) / f64::from(t.n.max(1));
        let cov = f64::from(t.covered) / f64::from(t.n.max(1));
        let within = (r - 0.05).abs() <= 0.02 && (cov - 0.95).abs() <= 0.02;
        let _ = writeln!(
            out,
            "{:<11} {:<20} {:<22} {:>4}  {:<26} {:<26} {:<8}",
            kind,
            outcome,
            format!("{first} − {second}"),
            t.n,
            rate(t.rejected, t.n, aa.then_some(0.05)),
            if aa {
                rate(t.covered, t.n, Some(0.95))
            } else {
                rate(t.rejected_holm, t.n, None)
            },
            if !aa {
                ""
            } else if within {
                "yes"
            } else {
                "no"
            }
        );
    }
    for ((kind, first, second), hits) in &c.families {
        let _ = writeln!(
            out,
            "{kind} {first} − {second}: some outcome with Holm p < 0.05 in {} ({} of {} seeds){}",
            rate(*hits, c.seeds, aa.then_some(0.05)).trim(),
            hits,
            c.seeds,
            if aa {
                "; Holm holds this at most 5%"
            } else {
                ""
            }
        );
    }
    out
}

pub async fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let x = Experiment::from_path(&args.file)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("experiments").join(format!("{}-calibration", x.name)));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let aa = aa_version(&x);
    let brain = aa.arms.values().next().cloned().unwrap_or_default();
    eprintln!(
        "calibrating {}: its A/A version (every arm {brain}) over {} seeds{}; runs in {}",
        x.name,
        args.seeds,
        if args.effect {
            ", then the experiment as written"
        } else {
            ""
        },
        out.display()
    );
    let mut all = vec![over_seeds(&aa, "A/A", args.seeds, &out.join("aa"), args.keep_runs).await?];
    if args.effect {
        all.push(
            over_seeds(
                &x,
                "as written",
                args.seeds,
                &out.join("effect"),
                args.keep_runs,
            )
            .await?,
        );
    }
    let mut text = String::new();
    for (i, c) in all.iter().enumerate() {
        text.push_str(&render(c, i == 0));
        text.push('\n');
    }
    print!("{text}");
    std::fs::write(out.join("calibration.txt"), &text)?;
    let json = serde_json::to_string_pretty(&all)? + "\n";
    std::fs::write(out.join("calibration.json"), json)?;
    println!("written: {}", out.join("calibration.json").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_r() {
        // The Wilson score interval, as R's prop.test(10, 200, correct = FALSE)$conf.int:
        // 0.02738265 0.08957815.
        let (lo, hi) = wilson(10, 200);
        assert!(
            (lo - 0.027_382_65).abs() < 1e-7 && (hi - 0.089_578_15).abs() < 1e-7,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(0, 20);
        assert_eq!(lo, 0.0);
        assert!(hi > 0.1 && hi < 0.2);
    }
}
