//! Statistics, each with a named definition:
//! - quantiles: linear interpolation between order statistics (Hyndman–Fan type 7, as NumPy);
//! - confidence intervals: percentile bootstrap, 2000 resamples, fixed seed (reproducible);
//! - outliers: modified z-score `0.6745·(x − median)/MAD`, |z| > 3.5 (Iglewicz–Hoaglin), as hyperfine;
//! - two-sample test: Mann–Whitney U, exact when there are no ties and n₁·n₂ ≤ 2500, else the
//!   normal approximation with tie and continuity correction.

use serde::Serialize;

pub const BOOTSTRAP_RESAMPLES: usize = 2000;
const OUTLIER_Z: f64 = 3.5;

pub use crate::domain::rng::Rng;

/// Type-7 quantile of sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

pub fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(samples: &[f64]) -> f64 {
    quantile_sorted(&sorted(samples), 0.5)
}

pub fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// Sample standard deviation (n − 1).
pub fn std_dev(samples: &[f64]) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let m = mean(samples);
    (samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (samples.len() - 1) as f64).sqrt()
}

fn resample_median(samples: &[f64], rng: &mut Rng, buf: &mut Vec<f64>) -> f64 {
    buf.clear();
    buf.extend((0..samples.len()).map(|_| samples[rng.below(samples.len())]));
    buf.sort_by(f64::total_cmp);
    quantile_sorted(buf, 0.5)
}

/// 95 % percentile-bootstrap CI of the median.
pub fn bootstrap_median_ci(samples: &[f64]) -> (f64, f64) {
    if samples.len() < 2 {
        let m = median(samples);
        return (m, m);
    }
    let mut rng = Rng::new(0x5eed);
    let mut buf = Vec::with_capacity(samples.len());
    let medians: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| resample_median(samples, &mut rng, &mut buf))
        .collect();
    let medians = sorted(&medians);
    (
        quantile_sorted(&medians, 0.025),
        quantile_sorted(&medians, 0.975),
    )
}

/// 95 % percentile-bootstrap CI of median(b) / median(a).
pub fn bootstrap_ratio_ci(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng::new(0x5eed);
    let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
    let ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            resample_median(b, &mut rng, &mut buf_b) / resample_median(a, &mut rng, &mut buf_a)
        })
        .collect();
    let ratios = sorted(&ratios);
    (
        quantile_sorted(&ratios, 0.025),
        quantile_sorted(&ratios, 0.975),
    )
}

/// Fewest samples for which outlier detection means anything.
pub const MIN_SAMPLES_FOR_OUTLIERS: usize = 5;

/// Indices of outliers by modified z-score (none below [`MIN_SAMPLES_FOR_OUTLIERS`] samples).
pub fn outliers(samples: &[f64]) -> Vec<usize> {
    if samples.len() < MIN_SAMPLES_FOR_OUTLIERS {
        return Vec::new();
    }
    let m = median(samples);
    let deviations: Vec<f64> = samples.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&deviations);
    if mad == 0.0 || !mad.is_finite() {
        return Vec::new();
    }
    samples
        .iter()
        .enumerate()
        .filter(|(_, x)| (0.6745 * (*x - m) / mad).abs() > OUTLIER_Z)
        .map(|(i, _)| i)
        .collect()
}

/// Number of orderings of `m` + `n` values (no ties) with each U value, `u = 0..=m·n`.
fn u_counts(m: usize, n: usize) -> Vec<f64> {
    // c[j][u]: counts for (i, j) built row by row in i: c(i, j, u) = c(i−1, j, u−j) + c(i, j−1, u).
    let mut prev: Vec<Vec<f64>> = (0..=n).map(|_| vec![1.0]).collect(); // i = 0: U is always 0
    for i in 1..=m {
        let mut row: Vec<Vec<f64>> = vec![vec![1.0]]; // j = 0
        for j in 1..=n {
            let mut counts = vec![0.0; i * j + 1];
            for (u, c) in prev[j].iter().enumerate() {
                counts[u + j] += c;
            }
            for (u, c) in row[j - 1].iter().enumerate() {
                counts[u] += c;
            }
            row.push(counts);
        }
        prev = row;
    }
    prev.pop().unwrap_or_default()
}

/// The smallest two-sided p-value an exact Mann–Whitney test can give for these sample sizes:
/// 2 / C(n₁ + n₂, n₁). At 3 against 3 it is 0.1, so no difference can be significant at 0.05.
pub fn mann_whitney_min_p(n1: usize, n2: usize) -> f64 {
    let mut combinations = 1.0;
    for k in 0..n1.min(n2) {
        combinations = combinations * (n1 + n2 - k) as f64 / (k + 1) as f64;
    }
    (2.0 / combinations).min(1.0)
}

/// Two-sided Mann–Whitney U test: (U of `a`, p-value).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, 1.0);
    }
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|&x| (x, 0))
        .chain(b.iter().map(|&x| (x, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; all.len()];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|r| *r = rank);
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let rank_sum_a: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, g), _)| *g == 0)
        .map(|(_, r)| r)
        .sum();
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    if tie_term == 0.0 && a.len() * b.len() <= 2500 {
        let counts = u_counts(a.len(), b.len());
        let total: f64 = counts.iter().sum();
        let u_low = u.min(n1 * n2 - u) as usize;
        let tail: f64 = counts[..=u_low].iter().sum();
        return (u, (2.0 * tail / total).min(1.0));
    }
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return (u, 1.0);
    }
    let z = ((u - n1 * n2 / 2.0).abs() - 0.5).max(0.0) / variance.sqrt();
    (u, (2.0 * (1.0 - normal_cdf(z))).clamp(0.0, 1.0))
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 erf, error < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// What the tables print for a set of samples.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub outliers: Vec<usize>,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let s = sorted(samples);
        let (ci_low, ci_high) = bootstrap_median_ci(&s);
        Summary {
            n: s.len(),
            mean: if s.is_empty() { f64::NAN } else { mean(&s) },
            sd: std_dev(&s),
            median: quantile_sorted(&s, 0.5),
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            ci_low,
            ci_high,
            outliers: outliers(samples),
        }
    }

    /// Half-width of the CI relative to the median, in percent.
    pub fn ci_half_width_pct(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0 / self.median * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.25), 1.75);
        assert!((std_dev(&s) - 1.290_994_4).abs() < 1e-6);
    }

    #[test]
    fn outlier_found_by_modified_z() {
        assert_eq!(outliers(&[100.0, 101.0, 99.0, 100.5, 99.5, 40.0]), [5]);
        assert!(outliers(&[1.0, 1.0, 1.0, 1.0, 1.0]).is_empty());
        assert!(
            outliers(&[100.0, 101.0, 10.0]).is_empty(),
            "too few samples to judge"
        );
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu([1,2,3,4,5],[6,7,8,9,10], method="exact") → U=0, p=2/252≈0.00794
        let (u, p) = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(u, 0.0);
        assert!((p - 2.0 / 252.0).abs() < 1e-12, "p = {p}");
        // method="exact", [1,4,6] vs [2,3,5,7]: U=5, p=0.8571428571
        let (u, p) = mann_whitney(&[1.0, 4.0, 6.0], &[2.0, 3.0, 5.0, 7.0]);
        assert_eq!(u, 5.0);
        assert!((p - 0.857_142_857_1).abs() < 1e-9, "p = {p}");
        // With ties: the normal approximation ([1,2,2,3,4] vs [2,5,6,7,8] → p≈0.0513 asymptotic).
        let (_, p_ties) = mann_whitney(&[1.0, 2.0, 2.0, 3.0, 4.0], &[2.0, 5.0, 6.0, 7.0, 8.0]);
        assert!((0.03..0.08).contains(&p_ties), "p = {p_ties}");
        assert!((mann_whitney_min_p(3, 3) - 0.1).abs() < 1e-12);
        assert!(mann_whitney_min_p(4, 4) < 0.05);
        let (_, p_same) = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert!(p_same > 0.9);
    }

    #[test]
    fn bootstrap_ci_brackets_the_median() {
        let samples: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let summary = Summary::of(&samples);
        assert!(summary.ci_low <= summary.median && summary.median <= summary.ci_high);
        let (lo, hi) = bootstrap_ratio_ci(
            &samples,
            &samples.iter().map(|x| x * 2.0).collect::<Vec<_>>(),
        );
        assert!(lo <= 2.0 && 2.0 <= hi, "{lo}..{hi}");
    }
}
