//! The statistics of experiments, pure and seeded (no IO, no clock): two-group comparisons of
//! means with a stratified permutation test and the interval that inverts it, Holm's adjustment,
//! paired comparisons (sign-flip test, bootstrap), and least squares with group fixed effects (the
//! within transformation) with classical standard errors and Student-t p-values. The t
//! distribution is statrs'; the least squares stay here (a few normal equations: nalgebra, the
//! kept crate for them, is a large tree for that).
//!
//! Callers keep money as integer minor units and convert to `f64` only when they hand values
//! to these functions. Every random draw comes from a `StdRng` seeded by the caller, so the same
//! data and seed give the same interval and p-value.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One observation of a two-group comparison: its stratum (e.g. the run: labels are permuted
/// only within it, as they were randomised), whether it belongs to the second group, its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Obs {
    pub stratum: usize,
    pub second: bool,
    pub value: f64,
}

pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample variance (n − 1 in the denominator).
pub fn variance(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    Some(xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64)
}

/// Mean of the first group minus mean of the second; `None` when a group is empty.
pub fn mean_difference(obs: &[Obs]) -> Option<f64> {
    let first: Vec<f64> = obs.iter().filter(|o| !o.second).map(|o| o.value).collect();
    let second: Vec<f64> = obs.iter().filter(|o| o.second).map(|o| o.value).collect();
    Some(mean(&first)? - mean(&second)?)
}

/// The result of a permutation test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PermutationTest {
    /// Two-sided: the share of relabelings whose |difference| is at least the observed one.
    pub p_value: f64,
    /// Every relabeling enumerated (else `resamples` random ones, p = (1 + hits)/(1 + resamples)).
    pub exact: bool,
    /// Relabelings enumerated or drawn.
    pub permutations: u64,
}

/// Settings of the resampling methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resampling {
    pub seed: u64,
    /// Bootstrap resamples.
    pub bootstrap: u32,
    /// Random relabelings when exact enumeration is too large.
    pub permutations: u32,
    /// Enumerate every relabeling when there are at most this many.
    pub max_exact: u64,
}

impl Default for Resampling {
    fn default() -> Resampling {
        Resampling {
            seed: 2026,
            bootstrap: 4000,
            permutations: 9999,
            max_exact: 200_000,
        }
    }
}

/// Relative slack when comparing |T*| with |T_obs|, so that relabelings with the same
/// statistic (up to rounding) count as "at least as extreme".
fn at_least(t: f64, obs: f64) -> bool {
    t.abs() >= obs.abs() - 1e-9 * (1.0 + obs.abs())
}

/// n choose k, saturating.
fn choose(n: u64, k: u64) -> u64 {
    let k = k.min(n - k.min(n));
    let mut r: u128 = 1;
    for i in 0..k {
        r = r * u128::from(n - i) / u128::from(i + 1);
        if r > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    r as u64
}

/// Per stratum: its values with whether each is in the first group.
fn labelled_strata(obs: &[Obs]) -> Vec<Vec<(f64, bool)>> {
    let mut by: BTreeMap<usize, Vec<(f64, bool)>> = BTreeMap::new();
    for o in obs {
        by.entry(o.stratum).or_default().push((o.value, !o.second));
    }
    by.into_values().collect()
}

/// For every `k`-subset of `xs` (in lexicographic order of the subsets): the sum of its values
/// and how many of its members are in the first group.
fn subset_sums(xs: &[(f64, bool)], k: usize) -> Vec<(f64, u32)> {
    fn go(xs: &[(f64, bool)], k: usize, start: usize, acc: (f64, u32), out: &mut Vec<(f64, u32)>) {
        if k == 0 {
            out.push(acc);
            return;
        }
        for i in start..=xs.len() - k {
            let (v, first) = xs[i];
            go(xs, k - 1, i + 1, (acc.0 + v, acc.1 + u32::from(first)), out);
        }
    }
    let mut out = Vec::new();
    go(xs, k, 0, (0.0, 0), &mut out);
    out
}

/// The relabelings of a permutation test, each as the difference in means it gives when the
/// first group's values are shifted by `-δ`: `a + b·δ` (linear in δ, since a relabeling only
/// decides which values count for which group). One set serves the test (δ = 0) and its
/// inversion into an interval, so the two always agree.
struct Relabelings {
    /// `(a, b)` per relabeling.
    forms: Vec<(f64, f64)>,
    exact: bool,
    /// The observed difference in means (δ = 0).
    observed: f64,
}

impl Relabelings {
    /// Every relabeling within strata when they number at most `r.max_exact`, else
    /// `r.permutations` seeded random ones. `None` when a group is empty.
    fn new(obs: &[Obs], r: &Resampling) -> Option<Relabelings> {
        let observed = mean_difference(obs)?;
        let cells = labelled_strata(obs);
        let n1 = obs.iter().filter(|o| !o.second).count();
        let n2 = obs.len() - n1;
        let total: f64 = obs.iter().map(|o| o.value).sum();
        let (f1, f2) = (n1 as f64, n2 as f64);
        // A relabeling putting values summing to `s`, `c` of them first-group ones, in the first
        // group: a = s/n1 − (total − s)/n2, and the shift moves it by δ·(−c/n1 + (n1 − c)/n2).
        let form = |s: f64, c: u32| {
            let c = f64::from(c);
            (s / f1 - (total - s) / f2, -c / f1 + (f1 - c) / f2)
        };
        let k_of = |xs: &[(f64, bool)]| xs.iter().filter(|x| x.1).count();
        let count = cells.iter().try_fold(1u64, |acc, xs| {
            acc.checked_mul(choose(xs.len() as u64, k_of(xs) as u64))
        });
        let mut forms = Vec::new();
        let exact = matches!(count, Some(c) if c <= r.max_exact);
        if exact {
            // An odometer over each stratum's subset sums.
            let sums: Vec<Vec<(f64, u32)>> =
                cells.iter().map(|xs| subset_sums(xs, k_of(xs))).collect();
            let mut idx = vec![0usize; sums.len()];
            'all: loop {
                let (s, c) = idx
                    .iter()
                    .zip(&sums)
                    .fold((0.0, 0u32), |(s, c), (&i, v)| (s + v[i].0, c + v[i].1));
                forms.push(form(s, c));
                let mut j = 0;
                loop {
                    if j == idx.len() {
                        break 'all;
                    }
                    idx[j] += 1;
                    if idx[j] < sums[j].len() {
                        break;
                    }
                    idx[j] = 0;
                    j += 1;
                }
            }
        } else {
            let mut rng = StdRng::seed_from_u64(r.seed);
            let mut work = cells.clone();
            let ks: Vec<usize> = cells.iter().map(|xs| k_of(xs)).collect();
            for _ in 0..r.permutations {
                let (mut s, mut c) = (0.0, 0u32);
                for (xs, k) in work.iter_mut().zip(&ks) {
                    // A partial Fisher–Yates shuffle: the first k are a uniform k-subset.
                    for i in 0..*k {
                        let j = rng.random_range(i..xs.len());
                        xs.swap(i, j);
                        s += xs[i].0;
                        c += u32::from(xs[i].1);
                    }
                }
                forms.push(form(s, c));
            }
        }
        Some(Relabelings {
            forms,
            exact,
            observed,
        })
    }

    /// The two-sided p-value of "the first group's values are the second's shifted by δ".
    fn p_value(&self, delta: f64) -> f64 {
        let obs = self.observed - delta;
        let hits = self
            .forms
            .iter()
            .filter(|(a, b)| at_least(a + b * delta, obs))
            .count() as u64;
        let n = self.forms.len() as u64;
        if self.exact {
            hits as f64 / n as f64
        } else {
            (1 + hits) as f64 / (1 + n) as f64
        }
    }

    /// The shifts δ not rejected at `1 − level`: from the observed difference (p = 1 there),
    /// outward to where the test first rejects, on each side, and widened to hold 0 when 0 is
    /// not rejected. Bounded loops: at most 64 doublings of the step and 100 halvings of the
    /// bracket.
    fn interval(&self, level: f64, scale: f64) -> (f64, f64) {
        let alpha = 1.0 - level;
        let centre = self.observed;
        let accepted = |d: f64| self.p_value(d) >= alpha - 1e-12;
        let step0 = if scale > 0.0 { scale } else { 1.0 };
        let tolerance = 1e-9 * (1.0 + centre.abs() + step0);
        let bound = |dir: f64| {
            let (mut inside, mut step) = (centre, step0);
            let mut outside = None;
            for _ in 0..64 {
                let d = centre + dir * step;
                if accepted(d) {
                    inside = d;
                    step *= 2.0;
                } else {
                    outside = Some(d);
                    break;
                }
            }
            // No shift rejected (a test with too few relabelings to ever reach alpha).
            let Some(mut outside) = outside else {
                return dir * f64::INFINITY;
            };
            for _ in 0..100 {
                if (outside - inside).abs() <= tolerance {
                    break;
                }
                let mid = 0.5 * (inside + outside);
                if accepted(mid) {
                    inside = mid;
                } else {
                    outside = mid;
                }
            }
            inside
        };
        let (mut lo, mut hi) = (bound(-1.0), bound(1.0));
        // With tied values (counts, shares of 0 and 1) p(δ) is not monotone: exactly at a tie
        // the relabelings that match the observed statistic all count, so a shift such as 0 can
        // be accepted while shifts beside it are not. The interval holds every shift found
        // accepted, 0 included when the test does not reject it, so it excludes 0 exactly when
        // p(0) is below the level's alpha.
        if accepted(0.0) {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
        }
        (lo, hi)
    }
}

/// Two-sided permutation test of the difference in means, relabeling within strata (the
/// group sizes of every stratum stay fixed). Exact when the relabelings number at most
/// `r.max_exact`, else `r.permutations` seeded random ones. `None` when a group is empty.
pub fn permutation_test(obs: &[Obs], r: &Resampling) -> Option<PermutationTest> {
    let t = Relabelings::new(obs, r)?;
    Some(PermutationTest {
        p_value: t.p_value(0.0),
        exact: t.exact,
        permutations: t.forms.len() as u64,
    })
}

/// The `level` interval of the difference in means that inverts the permutation test: every
/// shift δ of the first group that the test (the same relabelings) does not reject at
/// `1 − level`. Under randomisation within strata it covers the true shift with probability
/// `level` whatever the units do to each other (exactly, when there is no effect), and it
/// excludes 0 exactly when the test's p-value is below `1 − level`. `None` when a group is
/// empty.
pub fn permutation_interval(obs: &[Obs], level: f64, r: &Resampling) -> Option<(f64, f64)> {
    let t = Relabelings::new(obs, r)?;
    let values: Vec<f64> = obs.iter().map(|o| o.value).collect();
    let scale = variance(&values).map_or(0.0, f64::sqrt);
    Some(t.interval(level, scale))
}

/// The `level` percentile interval of sorted draws (nearest rank).
fn percentile_interval(sorted: &[f64], level: f64) -> (f64, f64) {
    let n = sorted.len();
    let a = (1.0 - level) / 2.0;
    let lo = ((n as f64 * a).ceil() as usize).clamp(1, n) - 1;
    let hi = ((n as f64 * (1.0 - a)).ceil() as usize).clamp(1, n) - 1;
    (sorted[lo], sorted[hi])
}

/// A comparison of two groups: sizes, means, difference, interval and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub n_first: usize,
    pub n_second: usize,
    pub mean_first: Option<f64>,
    pub mean_second: Option<f64>,
    /// First minus second.
    pub difference: Option<f64>,
    /// 95% interval of the difference: the permutation test inverted (see
    /// [`permutation_interval`]); it excludes 0 exactly when `p < 0.05`.
    pub ci95: Option<(f64, f64)>,
    pub test: Option<PermutationTest>,
}

/// Difference in means with its permutation p-value and the interval that inverts the test.
pub fn compare(obs: &[Obs], r: &Resampling) -> Comparison {
    let first: Vec<f64> = obs.iter().filter(|o| !o.second).map(|o| o.value).collect();
    let second: Vec<f64> = obs.iter().filter(|o| o.second).map(|o| o.value).collect();
    let relabelings = Relabelings::new(obs, r);
    let values: Vec<f64> = obs.iter().map(|o| o.value).collect();
    let scale = variance(&values).map_or(0.0, f64::sqrt);
    Comparison {
        n_first: first.len(),
        n_second: second.len(),
        mean_first: mean(&first),
        mean_second: mean(&second),
        difference: mean_difference(obs),
        ci95: relabelings.as_ref().map(|t| t.interval(0.95, scale)),
        test: relabelings.map(|t| PermutationTest {
            p_value: t.p_value(0.0),
            exact: t.exact,
            permutations: t.forms.len() as u64,
        }),
    }
}

/// Holm's step-down adjustment of p-values tested together (the family's error rate held at
/// the level): the k-th smallest becomes max over j ≤ k of min(1, (m − j + 1)·p_(j)). `None`
/// stays `None` and does not count in the family.
pub fn holm(ps: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut order: Vec<(usize, f64)> = ps
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let m = order.len();
    let mut out = vec![None; ps.len()];
    let mut running: f64 = 0.0;
    for (rank, (i, p)) in order.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        out[i] = Some(running);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Paired differences

/// Paired differences (e.g. one item's price under two arms): their mean, a bootstrap interval
/// over pairs and a sign-flip permutation test (exact for up to 16 pairs with a nonzero
/// difference, else seeded random flips).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub n: usize,
    pub mean_difference: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    pub test: Option<PermutationTest>,
}

pub fn paired(diffs: &[f64], r: &Resampling) -> Paired {
    let n = diffs.len();
    let Some(m) = mean(diffs) else {
        return Paired {
            n,
            mean_difference: None,
            ci95: None,
            test: None,
        };
    };
    let mut rng = StdRng::seed_from_u64(r.seed ^ 0x5851_f42d_4c95_7f2d);
    let mut draws: Vec<f64> = (0..r.bootstrap.max(1))
        .map(|_| (0..n).map(|_| diffs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    draws.sort_by(f64::total_cmp);
    let ci = percentile_interval(&draws, 0.95);
    // Zero differences do not change under a flip: leave them out of the enumeration.
    let nz: Vec<f64> = diffs.iter().copied().filter(|d| *d != 0.0).collect();
    let observed: f64 = nz.iter().sum();
    let test = if nz.len() <= 16 {
        let count = 1u64 << nz.len();
        let hits = (0..count)
            .filter(|mask| {
                let s: f64 = nz
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if mask >> i & 1 == 1 { -d } else { *d })
                    .sum();
                at_least(s, observed)
            })
            .count() as u64;
        PermutationTest {
            p_value: hits as f64 / count as f64,
            exact: true,
            permutations: count,
        }
    } else {
        let hits = (0..r.permutations)
            .filter(|_| {
                let s: f64 = nz
                    .iter()
                    .map(|d| if rng.random::<bool>() { -d } else { *d })
                    .sum();
                at_least(s, observed)
            })
            .count() as u64;
        PermutationTest {
            p_value: (1 + hits) as f64 / (1 + u64::from(r.permutations)) as f64,
            exact: false,
            permutations: u64::from(r.permutations),
        }
    };
    Paired {
        n,
        mean_difference: Some(m),
        ci95: Some(ci),
        test: Some(test),
    }
}

// ---------------------------------------------------------------------------------------------
// Least squares with fixed effects

/// A regression that cannot be estimated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegressionError {
    #[error("rows have different lengths (row {row} has {got} regressors, expected {expected})")]
    Ragged {
        row: usize,
        got: usize,
        expected: usize,
    },
    #[error(
        "no residual degrees of freedom: {n} observations, {groups} fixed effects, {k} regressors"
    )]
    NoDegreesOfFreedom { n: usize, groups: usize, k: usize },
    #[error(
        "the regressors are collinear within the fixed effects (regressor {column} has no variation left)"
    )]
    Collinear { column: usize },
}

/// `y = α_g + X β + ε` estimated by the within transformation (each variable demeaned by its
/// group), with classical (homoskedastic) standard errors on `n − G − k` degrees of freedom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub coefficients: Vec<f64>,
    pub std_errors: Vec<f64>,
    /// Two-sided Student-t p-values of β = 0.
    pub p_values: Vec<f64>,
    /// 95% confidence intervals (Student t).
    pub ci95: Vec<(f64, f64)>,
    pub n: usize,
    /// Fixed-effect groups.
    pub groups: usize,
    pub df: usize,
    /// Residual variance σ² = SSR / df.
    pub sigma2: f64,
}

/// Least squares of `y` on the rows of `x` with a fixed effect per `group` value: the within
/// transformation (demeaned by group), the normal equations solved by inverting X̃'X̃, then
/// Student-t standard errors, p-values and intervals.
pub fn ols_fixed_effects(
    y: &[f64],
    x: &[Vec<f64>],
    group: &[usize],
) -> Result<Regression, RegressionError> {
    let n = y.len();
    let k = x.first().map_or(0, Vec::len);
    for (row, r) in x.iter().enumerate() {
        if r.len() != k {
            return Err(RegressionError::Ragged {
                row,
                got: r.len(),
                expected: k,
            });
        }
    }
    let (yt, xt, groups) = demeaned_within_groups(y, x, group, k);
    // Normal equations (X̃'X̃) β = X̃'ỹ.
    let mut a = vec![vec![0.0; k]; k];
    let mut b = vec![0.0; k];
    for i in 0..n {
        for p in 0..k {
            b[p] += xt[i][p] * yt[i];
            for q in 0..k {
                a[p][q] += xt[i][p] * xt[i][q];
            }
        }
    }
    let inv = inverse(a)?;
    // Collinearity is reported before the degrees of freedom, so callers can drop a column.
    let df = n
        .checked_sub(groups + k)
        .filter(|d| *d > 0)
        .ok_or(RegressionError::NoDegreesOfFreedom { n, groups, k })?;
    let beta: Vec<f64> = (0..k)
        .map(|p| (0..k).map(|q| inv[p][q] * b[q]).sum())
        .collect();
    let ssr: f64 = (0..n)
        .map(|i| {
            let fit: f64 = (0..k).map(|j| xt[i][j] * beta[j]).sum();
            (yt[i] - fit).powi(2)
        })
        .sum();
    let sigma2 = ssr / df as f64;
    let se: Vec<f64> = (0..k)
        .map(|j| (sigma2 * inv[j][j]).max(0.0).sqrt())
        .collect();
    let (p_values, ci95) = t_inference(&beta, &se, df);
    Ok(Regression {
        coefficients: beta,
        std_errors: se,
        p_values,
        ci95,
        n,
        groups,
        df,
        sigma2,
    })
}

/// `y` and the `k` columns of `x`, each less its mean within the row's group; and the number
/// of groups.
fn demeaned_within_groups(
    y: &[f64],
    x: &[Vec<f64>],
    group: &[usize],
    k: usize,
) -> (Vec<f64>, Vec<Vec<f64>>, usize) {
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, g) in group.iter().enumerate().take(y.len()) {
        members.entry(*g).or_default().push(i);
    }
    let mut yt = y.to_vec();
    let mut xt: Vec<Vec<f64>> = x.to_vec();
    for rows in members.values() {
        let len = rows.len() as f64;
        let my = rows.iter().map(|&i| y[i]).sum::<f64>() / len;
        rows.iter().for_each(|&i| yt[i] -= my);
        for j in 0..k {
            let mx = rows.iter().map(|&i| x[i][j]).sum::<f64>() / len;
            rows.iter().for_each(|&i| xt[i][j] -= mx);
        }
    }
    (yt, xt, members.len())
}

/// The inverse of the square matrix `m` by Gauss–Jordan with partial pivoting; a pivot below
/// 10⁻¹⁰ of the largest diagonal entry is collinearity in that column.
fn inverse(m: Vec<Vec<f64>>) -> Result<Vec<Vec<f64>>, RegressionError> {
    let k = m.len();
    let scale: f64 = (0..k).map(|p| m[p][p]).fold(0.0, f64::max).max(1.0);
    // [M | I], reduced to [I | M⁻¹].
    let mut a: Vec<Vec<f64>> = m
        .into_iter()
        .enumerate()
        .map(|(p, mut row)| {
            row.resize(2 * k, 0.0);
            row[k + p] = 1.0;
            row
        })
        .collect();
    for col in 0..k {
        let pivot = (col..k)
            .max_by(|&r1, &r2| a[r1][col].abs().total_cmp(&a[r2][col].abs()))
            .unwrap_or(col);
        if a[pivot][col].abs() <= 1e-10 * scale {
            return Err(RegressionError::Collinear { column: col });
        }
        a.swap(col, pivot);
        let d = a[col][col];
        a[col].iter_mut().for_each(|v| *v /= d);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[col];
            if r != col && f != 0.0 {
                row.iter_mut()
                    .zip(&pivot_row)
                    .for_each(|(v, p)| *v -= f * p);
            }
        }
    }
    Ok(a.iter().map(|row| row[k..].to_vec()).collect())
}

/// Two-sided p-values of β = 0 and 95% intervals, Student t with `df` degrees of freedom.
fn t_inference(beta: &[f64], se: &[f64], df: usize) -> (Vec<f64>, Vec<(f64, f64)>) {
    let tcrit = student_t_quantile(0.975, df as f64);
    let p_values = beta
        .iter()
        .zip(se)
        .map(|(b, s)| {
            if *s > 0.0 {
                2.0 * student_t_sf((b / s).abs(), df as f64)
            } else if *b == 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let ci95 = beta
        .iter()
        .zip(se)
        .map(|(b, s)| (b - tcrit * s, b + tcrit * s))
        .collect();
    (p_values, ci95)
}

// ---------------------------------------------------------------------------------------------
// Student t distribution (statrs; the permutation and bootstrap code above stays ours)

/// Student's t with `df` degrees of freedom, or `None` when `df` is not positive.
fn student_t(df: f64) -> Option<statrs::distribution::StudentsT> {
    statrs::distribution::StudentsT::new(0.0, 1.0, df).ok()
}

/// P(T > t) for Student's t with `df` degrees of freedom (NaN for a `df` that is not positive).
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    use statrs::distribution::ContinuousCDF;
    student_t(df).map_or(f64::NAN, |d| d.sf(t))
}

/// The `q` quantile (0 < q < 1) of Student's t with `df` degrees of freedom (NaN for a `df`
/// that is not positive).
pub fn student_t_quantile(q: f64, df: f64) -> f64 {
    use statrs::distribution::ContinuousCDF;
    student_t(df).map_or(f64::NAN, |d| d.inverse_cdf(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(first: &[f64], second: &[f64]) -> Vec<Obs> {
        first
            .iter()
            .map(|&v| Obs {
                stratum: 0,
                second: false,
                value: v,
            })
            .chain(second.iter().map(|&v| Obs {
                stratum: 0,
                second: true,
                value: v,
            }))
            .collect()
    }

    fn r() -> Resampling {
        Resampling::default()
    }

    #[test]
    fn mean_difference_is_first_minus_second() {
        let obs = groups(&[10.0, 20.0, 30.0], &[5.0, 7.0]);
        assert_eq!(mean_difference(&obs), Some(14.0));
        assert_eq!(mean_difference(&groups(&[1.0], &[])), None);
        assert_eq!(variance(&[1.0, 2.0, 3.0, 4.0]), Some(5.0 / 3.0));
    }

    #[test]
    fn exact_permutation_p_matches_the_hand_count() {
        // 20 ways to pick 3 of 6; |T| ≥ 3 only for {1,2,3} and {4,5,6}: p = 2/20.
        let t = permutation_test(&groups(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), &r()).unwrap();
        assert!(t.exact);
        assert_eq!(t.permutations, 20);
        assert!((t.p_value - 0.1).abs() < 1e-12);
        // Sum of the first group 7: |2s − 21| ≥ 7 for sums 6, 7, 14, 15: p = 4/20.
        let t = permutation_test(&groups(&[1.0, 2.0, 4.0], &[3.0, 5.0, 6.0]), &r()).unwrap();
        assert!((t.p_value - 0.2).abs() < 1e-12);
    }

    #[test]
    fn permutation_of_identical_groups_gives_p_one() {
        let t = permutation_test(
            &groups(&[3.0, 5.0, 8.0, 13.0], &[3.0, 5.0, 8.0, 13.0]),
            &r(),
        )
        .unwrap();
        assert_eq!(t.p_value, 1.0);
        // Large identical groups take the random path: still p = 1.
        let xs: Vec<f64> = (0..40).map(|i| f64::from(i % 7)).collect();
        let t = permutation_test(&groups(&xs, &xs), &r()).unwrap();
        assert!(!t.exact);
        assert_eq!(t.p_value, 1.0);
    }

    #[test]
    fn permutations_stay_within_strata() {
        // Stratum 0: {1 | 2}, stratum 1: {10 | 20}: 2 × 2 relabelings, diffs −5.5, −0.5, +0.5, +5.5
        // (first-group sums 11, 21, 12, 22 against the rest).
        let obs = vec![
            Obs {
                stratum: 0,
                second: false,
                value: 1.0,
            },
            Obs {
                stratum: 0,
                second: true,
                value: 2.0,
            },
            Obs {
                stratum: 1,
                second: false,
                value: 10.0,
            },
            Obs {
                stratum: 1,
                second: true,
                value: 20.0,
            },
        ];
        let t = permutation_test(&obs, &r()).unwrap();
        assert_eq!(t.permutations, 4);
        assert!((t.p_value - 0.5).abs() < 1e-12);
    }

    #[test]
    fn monte_carlo_permutation_agrees_with_exact() {
        let a: Vec<f64> = (0..9).map(|i| f64::from(i * 3 % 11)).collect();
        let b: Vec<f64> = (0..9).map(|i| f64::from(i * 5 % 13) + 2.0).collect();
        let obs = groups(&a, &b);
        let exact = permutation_test(&obs, &r()).unwrap();
        let mc = permutation_test(
            &obs,
            &Resampling {
                max_exact: 0,
                permutations: 20_000,
                ..r()
            },
        )
        .unwrap();
        assert!(exact.exact && !mc.exact);
        assert!(
            (exact.p_value - mc.p_value).abs() < 0.01,
            "{exact:?} {mc:?}"
        );
    }

    #[test]
    fn the_permutation_test_matches_scipy() {
        // scipy.stats.permutation_test(([1, 2, 3, 4], [5, 6, 7, 8, 9]), lambda x, y:
        // np.mean(x) - np.mean(y), permutation_type="independent", n_resamples=np.inf,
        // alternative="two-sided").pvalue == 0.015873015873015872 (2 of 126 relabelings).
        let t = permutation_test(&groups(&[1.0, 2.0, 3.0, 4.0], &[5., 6., 7., 8., 9.]), &r());
        let t = t.unwrap();
        assert!(t.exact);
        assert_eq!(t.permutations, 126);
        assert!((t.p_value - 0.015_873_015_873_015_872).abs() < 1e-15);
    }

    #[test]
    fn holm_matches_r() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") == c(0.03, 0.06, 0.06, 0.02).
        let got = holm(&[Some(0.01), Some(0.04), None, Some(0.03), Some(0.005)]);
        let want = [Some(0.03), Some(0.06), None, Some(0.06), Some(0.02)];
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{got:?}"),
                (g, w) => assert_eq!(*g, w),
            }
        }
        // Adjusted values never pass 1.
        assert_eq!(holm(&[Some(0.6), Some(0.7)]), vec![Some(1.0), Some(1.0)]);
    }

    /// Standard normal draws (Box–Muller).
    fn normal(rng: &mut StdRng) -> f64 {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Data with a shift inside three strata, for the interval tests.
    fn stratified(rng: &mut StdRng, shift: f64) -> Vec<Obs> {
        let mut obs = Vec::new();
        for stratum in 0..3 {
            let level = 10.0 * stratum as f64;
            for i in 0..12 {
                let second = i % 2 == 1;
                let effect = if second { 0.0 } else { shift };
                let value = level + effect + 2.0 * normal(rng);
                obs.push(Obs {
                    stratum,
                    second,
                    value,
                });
            }
        }
        obs
    }

    #[test]
    fn the_inverted_interval_excludes_zero_exactly_when_p_is_below_5_percent() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut rejected, mut checked) = (0, 0);
        for t in 0..60 {
            let obs = stratified(&mut rng, 0.4 * (t % 5) as f64);
            let res = Resampling {
                seed: t,
                permutations: 999,
                ..r()
            };
            let c = compare(&obs, &res);
            let (lo, hi) = c.ci95.unwrap();
            let p = c.test.unwrap().p_value;
            assert!(lo <= c.difference.unwrap() && c.difference.unwrap() <= hi);
            assert_eq!(
                p < 0.05,
                lo > 0.0 || hi < 0.0,
                "p {p}, interval ({lo}, {hi})"
            );
            rejected += usize::from(p < 0.05);
            checked += 1;
            // The ends are where the test turns: just inside is accepted, just outside not.
            let rl = Relabelings::new(&obs, &res).unwrap();
            let eps = 1e-6 * (1.0 + hi - lo);
            assert!(rl.p_value(lo) >= 0.05 - 1e-12 && rl.p_value(hi) >= 0.05 - 1e-12);
            assert!(rl.p_value(lo - eps) < 0.05 && rl.p_value(hi + eps) < 0.05);
        }
        assert!(
            rejected > 0 && rejected < checked,
            "{rejected} of {checked}"
        );
    }

    #[test]
    fn with_tied_counts_the_interval_still_excludes_zero_exactly_when_p_is_below_5_percent() {
        // Deals per participant: small integers, many ties.
        let mut rng = StdRng::seed_from_u64(5);
        for t in 0..80 {
            let obs: Vec<Obs> = (0..36)
                .map(|i| {
                    let second = i % 2 == 1;
                    let bump = u32::from(!second && t % 3 == 0);
                    Obs {
                        stratum: i / 12,
                        second,
                        value: f64::from(rng.random_range(0..3u32) + bump),
                    }
                })
                .collect();
            let c = compare(
                &obs,
                &Resampling {
                    seed: t,
                    permutations: 999,
                    ..r()
                },
            );
            let (lo, hi) = c.ci95.unwrap();
            let p = c.test.unwrap().p_value;
            assert_eq!(
                p < 0.05,
                lo > 0.0 || hi < 0.0,
                "seed {t}: p {p}, ({lo}, {hi})"
            );
        }
    }

    #[test]
    fn inverted_intervals_cover_the_true_shift_about_95_percent_of_the_time() {
        // 300 simulated stratified experiments with a true shift of 1; binomial standard error
        // of 300 trials at 95% is 1.26 points: [91%, 98.5%] is about a 3-SE band.
        let mut rng = StdRng::seed_from_u64(11);
        let trials = 300;
        let mut covered = 0;
        for t in 0..trials {
            let obs = stratified(&mut rng, 1.0);
            let res = Resampling {
                seed: t,
                permutations: 499,
                ..r()
            };
            let (lo, hi) = permutation_interval(&obs, 0.95, &res).unwrap();
            covered += usize::from(lo <= 1.0 && 1.0 <= hi);
        }
        let share = covered as f64 / trials as f64;
        eprintln!("coverage {share}");
        assert!((0.91..=0.985).contains(&share), "coverage {share}");
    }

    #[test]
    fn sign_flip_test_of_paired_differences_is_exact_for_few_pairs() {
        // Differences 1, 2, 3: of 8 sign patterns only +++ and −−− reach |sum| ≥ 6: p = 1/4.
        let p = paired(&[1.0, 2.0, 3.0], &r());
        assert_eq!(p.mean_difference, Some(2.0));
        let t = p.test.unwrap();
        assert!(t.exact);
        assert!((t.p_value - 0.25).abs() < 1e-12);
        // Zero differences drop out; all zeros give p = 1.
        assert_eq!(paired(&[0.0, 0.0], &r()).test.unwrap().p_value, 1.0);
        let (lo, hi) = p.ci95.unwrap();
        assert!((1.0..=3.0).contains(&lo) && (1.0..=3.0).contains(&hi) && lo <= hi);
    }

    #[test]
    fn fixed_effects_regression_matches_the_hand_solved_case() {
        // Item 1: A 10, B 14; item 2: A 20, B 22. Demeaned: x̃ = ±½, ỹ = ±2 and ±1:
        // β = Σx̃ỹ / Σx̃² = 3 / 1 = 3; residuals ±½, SSR = 1, df = 4 − 2 − 1 = 1, σ² = 1,
        // se = √(σ²/Σx̃²) = 1; t = 3 on 1 df (Cauchy): p = 1 − (2/π)·atan 3.
        let y = [10.0, 14.0, 20.0, 22.0];
        let x = vec![vec![0.0], vec![1.0], vec![0.0], vec![1.0]];
        let g = [1, 1, 2, 2];
        let reg = ols_fixed_effects(&y, &x, &g).unwrap();
        assert!((reg.coefficients[0] - 3.0).abs() < 1e-12);
        assert!((reg.std_errors[0] - 1.0).abs() < 1e-12);
        assert_eq!((reg.n, reg.groups, reg.df), (4, 2, 1));
        let p = 1.0 - 2.0 / std::f64::consts::PI * 3f64.atan();
        assert!((reg.p_values[0] - p).abs() < 1e-9, "{}", reg.p_values[0]);
        // t(0.975, 1) = tan(0.475 π) = 12.706.
        assert!((reg.ci95[0].1 - (3.0 + 12.706_204_736)).abs() < 1e-6);
    }

    #[test]
    fn two_regressors_recover_known_coefficients_exactly() {
        // y = α_g + 2·x1 − 5·x2 without noise: exact coefficients, zero residual variance.
        let rows: Vec<(usize, f64, f64)> = vec![
            (0, 0.0, 0.0),
            (0, 1.0, 0.0),
            (0, 0.0, 1.0),
            (1, 1.0, 1.0),
            (1, 0.0, 0.0),
            (1, 1.0, 0.0),
            (2, 0.0, 1.0),
            (2, 1.0, 1.0),
        ];
        let alpha = [100.0, 50.0, -7.0];
        let y: Vec<f64> = rows
            .iter()
            .map(|(g, a, b)| alpha[*g] + 2.0 * a - 5.0 * b)
            .collect();
        let x: Vec<Vec<f64>> = rows.iter().map(|(_, a, b)| vec![*a, *b]).collect();
        let g: Vec<usize> = rows.iter().map(|r| r.0).collect();
        let reg = ols_fixed_effects(&y, &x, &g).unwrap();
        assert!((reg.coefficients[0] - 2.0).abs() < 1e-9);
        assert!((reg.coefficients[1] + 5.0).abs() < 1e-9);
        assert!(reg.sigma2 < 1e-18);
    }

    #[test]
    fn a_regressor_without_variation_inside_the_groups_is_refused() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let x = vec![vec![0.0], vec![0.0], vec![1.0], vec![1.0]];
        let g = [0, 0, 1, 1];
        assert_eq!(
            ols_fixed_effects(&y, &x, &g),
            Err(RegressionError::Collinear { column: 0 })
        );
        assert!(matches!(
            ols_fixed_effects(&[1.0, 2.0], &[vec![0.0], vec![1.0]], &[0, 0]),
            Err(RegressionError::NoDegreesOfFreedom { .. })
        ));
    }

    #[test]
    fn student_t_tail_matches_known_values() {
        // df = 1 is Cauchy; large df approaches the normal (P(Z > 1.96) = 0.025).
        assert!((student_t_sf(1.0, 1.0) - 0.25).abs() < 1e-12);
        assert!((student_t_sf(1.96, 1e6) - 0.024_997_9).abs() < 1e-5);
        // t(0.975, 10) = 2.228139.
        assert!((student_t_quantile(0.975, 10.0) - 2.228_139).abs() < 1e-5);
    }
}
