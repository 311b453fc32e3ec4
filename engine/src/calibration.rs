//! Accuracy measures and threshold calibration over samples of comparison scores.
//!
//! Verification accuracy is stated as a pair of error rates at a decision threshold
//! (ISO/IEC 19795-1):
//!
//! - **FMR**, the false-match rate: the fraction of impostor comparisons (probe and
//!   reference from different palms) that the decision accepts;
//! - **FNMR**, the false-non-match rate: the fraction of genuine comparisons (probe and
//!   reference from the same palm) that it rejects.
//!
//! Sweeping the threshold traces the DET curve (FNMR against FMR); the EER is the
//! point where both rates are equal. Everything here is a pure function over score
//! samples: no I/O, no randomness.
//!
//! Two kinds of sample are used:
//!
//! - scalar scores (`&[f32]`, e.g. the mean block similarity that ranks 1:N
//!   candidates), accepted when `score >= threshold`;
//! - per-block score vectors (`&[S]` with `S: AsRef<[f32]>`, one vector of block
//!   similarities per comparison), decided by the `all_thresholds` policy: accepted
//!   when every block reaches its own threshold.
//!
//! [`calibrate`] chooses per-block thresholds for the `all_thresholds` policy that
//! meet a target FMR on a set of impostor comparisons; see its documentation for the
//! method.

use std::fmt;

/// Error rates of one decision rule on one set of genuine and impostor comparisons.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorRates {
    /// Impostor comparisons accepted.
    pub false_matches: usize,
    /// Impostor comparisons in the sample.
    pub impostors: usize,
    /// Genuine comparisons rejected.
    pub false_non_matches: usize,
    /// Genuine comparisons in the sample.
    pub genuines: usize,
}

impl ErrorRates {
    /// False-match rate: `false_matches / impostors` (0 for an empty sample).
    pub fn fmr(&self) -> f64 {
        ratio(self.false_matches, self.impostors)
    }

    /// False-non-match rate: `false_non_matches / genuines` (0 for an empty sample).
    pub fn fnmr(&self) -> f64 {
        ratio(self.false_non_matches, self.genuines)
    }
}

/// One point of a DET curve: the error rates when accepting `score >= threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetPoint {
    /// Decision threshold on the scalar score.
    pub threshold: f32,
    /// False-match rate at this threshold.
    pub fmr: f64,
    /// False-non-match rate at this threshold.
    pub fnmr: f64,
}

/// The equal error rate and where it lies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eer {
    /// The rate at which FMR and FNMR cross (linearly interpolated between the two
    /// DET points that bracket the crossing).
    pub rate: f64,
    /// The threshold at the crossing (interpolated like `rate`).
    pub threshold: f32,
}

/// Why a calibration could not be computed.
#[derive(Clone, Debug, PartialEq)]
pub enum CalibrationError {
    /// No impostor comparison was given.
    NoImpostors,
    /// A score vector had no block.
    NoBlocks,
    /// Score vector `index` had `actual` blocks where the first had `expected`.
    InconsistentBlocks {
        /// Position of the offending vector in the sample.
        index: usize,
        /// Block count of the first vector.
        expected: usize,
        /// Block count of this vector.
        actual: usize,
    },
    /// A score was NaN.
    NonFinite {
        /// Position of the offending vector in the sample.
        index: usize,
    },
    /// The target FMR was not a number in `0..=1`.
    InvalidTarget(f64),
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrationError::NoImpostors => write!(f, "no impostor comparisons to calibrate on"),
            CalibrationError::NoBlocks => write!(f, "score vectors have no blocks"),
            CalibrationError::InconsistentBlocks {
                index,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "score vector {index} has {actual} blocks, expected {expected}"
                )
            }
            CalibrationError::NonFinite { index } => write!(f, "score vector {index} holds a NaN"),
            CalibrationError::InvalidTarget(t) => write!(f, "target FMR {t} is not in 0..=1"),
        }
    }
}

impl std::error::Error for CalibrationError {}

/// Per-block thresholds chosen by [`calibrate`], with what they achieve on the
/// calibration sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    /// One threshold per block, each in `-1..=1` (usable as `MatchSettings` thresholds
    /// with the `all_thresholds` policy).
    pub thresholds: Vec<f32>,
    /// The common per-block level: at most this many impostor scores of each block
    /// reach that block's threshold (ties aside).
    pub level: usize,
    /// The target FMR asked for.
    pub target_fmr: f64,
    /// Impostor comparisons accepted by `thresholds` under `all_thresholds`.
    pub false_matches: usize,
    /// Impostor comparisons in the calibration sample.
    pub impostors: usize,
}

impl Calibration {
    /// FMR achieved on the calibration sample (at most `target_fmr`).
    pub fn fmr(&self) -> f64 {
        ratio(self.false_matches, self.impostors)
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Error rates of the scalar rule `score >= threshold`.
pub fn error_rates(genuine: &[f32], impostor: &[f32], threshold: f32) -> ErrorRates {
    ErrorRates {
        false_matches: impostor.iter().filter(|&&s| s >= threshold).count(),
        impostors: impostor.len(),
        false_non_matches: genuine
            .iter()
            .filter(|&&s| s < threshold || s.is_nan())
            .count(),
        genuines: genuine.len(),
    }
}

/// Whether the `all_thresholds` policy accepts `scores`: every block score reaches its
/// threshold. Blocks beyond the shorter of the two slices are ignored.
pub fn accepts_all(scores: &[f32], thresholds: &[f32]) -> bool {
    scores.iter().zip(thresholds).all(|(s, t)| s >= t)
}

/// Error rates of the `all_thresholds` policy with `thresholds` on per-block samples.
pub fn all_thresholds_error_rates<G, I>(
    genuine: &[G],
    impostor: &[I],
    thresholds: &[f32],
) -> ErrorRates
where
    G: AsRef<[f32]>,
    I: AsRef<[f32]>,
{
    ErrorRates {
        false_matches: impostor
            .iter()
            .filter(|s| accepts_all(s.as_ref(), thresholds))
            .count(),
        impostors: impostor.len(),
        false_non_matches: genuine
            .iter()
            .filter(|s| !accepts_all(s.as_ref(), thresholds))
            .count(),
        genuines: genuine.len(),
    }
}

/// The mean of each per-block score vector (the 1:N ranking score).
pub fn mean_scores<S: AsRef<[f32]>>(block_scores: &[S]) -> Vec<f32> {
    block_scores
        .iter()
        .map(|s| {
            let s = s.as_ref();
            if s.is_empty() {
                0.0
            } else {
                s.iter().sum::<f32>() / s.len() as f32
            }
        })
        .collect()
}

/// The `all_thresholds` margin of each per-block score vector: `min_b(score_b -
/// threshold_b)`.
///
/// The policy accepts a comparison exactly when its margin is `>= 0`, and with every
/// threshold raised by the same offset `d` exactly when its margin is `>= d`. The DET
/// curve of the margins is therefore the DET curve of the policy as its thresholds
/// shift together.
pub fn margin_scores<S: AsRef<[f32]>>(block_scores: &[S], thresholds: &[f32]) -> Vec<f32> {
    block_scores
        .iter()
        .map(|s| {
            s.as_ref()
                .iter()
                .zip(thresholds)
                .map(|(s, t)| s - t)
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

/// The DET curve of the scalar rule `score >= threshold`.
///
/// One point per distinct score value in either sample (the threshold set to that
/// value), in increasing threshold order, plus a final point just above the largest
/// score where nothing is accepted (FMR 0, FNMR 1). FMR is non-increasing and FNMR
/// non-decreasing along the curve. NaN scores count as never accepted. Empty samples
/// give rates of 0.
pub fn det_curve(genuine: &[f32], impostor: &[f32]) -> Vec<DetPoint> {
    let mut gen: Vec<f32> = genuine.iter().copied().filter(|s| !s.is_nan()).collect();
    let mut imp: Vec<f32> = impostor.iter().copied().filter(|s| !s.is_nan()).collect();
    gen.sort_by(f32::total_cmp);
    imp.sort_by(f32::total_cmp);
    let gen_nan = genuine.len() - gen.len();
    let mut thresholds: Vec<f32> = gen.iter().chain(&imp).copied().collect();
    thresholds.sort_by(f32::total_cmp);
    thresholds.dedup();
    let (mut gi, mut ii) = (0, 0);
    let mut points = Vec::with_capacity(thresholds.len() + 1);
    for &t in &thresholds {
        // Scores below t are rejected.
        while gi < gen.len() && gen[gi] < t {
            gi += 1;
        }
        while ii < imp.len() && imp[ii] < t {
            ii += 1;
        }
        points.push(DetPoint {
            threshold: t,
            fmr: ratio(imp.len() - ii, impostor.len()),
            fnmr: ratio(gi + gen_nan, genuine.len()),
        });
    }
    let top = thresholds.last().map_or(f32::INFINITY, |&t| next_up(t));
    points.push(DetPoint {
        threshold: top,
        fmr: 0.0,
        fnmr: if genuine.is_empty() { 0.0 } else { 1.0 },
    });
    points
}

/// The equal error rate of the scalar rule `score >= threshold`.
///
/// Walks the DET curve to the first point where FNMR reaches FMR and interpolates
/// linearly between it and the point before. `None` when either sample is empty.
pub fn eer(genuine: &[f32], impostor: &[f32]) -> Option<Eer> {
    if genuine.is_empty() || impostor.is_empty() {
        return None;
    }
    let curve = det_curve(genuine, impostor);
    let first = curve.iter().position(|p| p.fnmr >= p.fmr)?;
    let b = curve[first];
    if first == 0 {
        return Some(Eer {
            rate: (b.fmr + b.fnmr) / 2.0,
            threshold: b.threshold,
        });
    }
    let a = curve[first - 1];
    // d(x) = fnmr - fmr goes from negative at a to non-negative at b.
    let (da, db) = (a.fnmr - a.fmr, b.fnmr - b.fmr);
    let w = if db - da > 0.0 { -da / (db - da) } else { 0.0 };
    let lerp = |x: f64, y: f64| x + w * (y - x);
    Some(Eer {
        rate: lerp(a.fmr, b.fmr),
        threshold: lerp(a.threshold as f64, b.threshold as f64) as f32,
    })
}

/// The FNMR at the strictest point of the DET curve whose FMR is at most `target_fmr`
/// (`None` when either sample is empty).
pub fn fnmr_at_fmr(genuine: &[f32], impostor: &[f32], target_fmr: f64) -> Option<DetPoint> {
    if genuine.is_empty() || impostor.is_empty() {
        return None;
    }
    det_curve(genuine, impostor)
        .into_iter()
        .find(|p| p.fmr <= target_fmr)
}

/// Chooses per-block thresholds for the `all_thresholds` policy so that its FMR on
/// `impostors` is at most `target_fmr`; see [`calibrate`].
pub fn calibrate_thresholds<S: AsRef<[f32]>>(
    impostors: &[S],
    target_fmr: f64,
) -> Result<Vec<f32>, CalibrationError> {
    calibrate(impostors, target_fmr).map(|c| c.thresholds)
}

/// Chooses per-block thresholds for the `all_thresholds` policy from impostor
/// comparisons (one per-block score vector each).
///
/// # Method
///
/// The thresholds are a **common per-block impostor quantile**. For a level `k`
/// (`0..=n`, `n` impostor comparisons), block `b`'s threshold is the `k`-th largest
/// impostor score of that block, so that (ties aside) exactly `k` impostor scores of
/// every block reach it; `k = 0` puts every threshold just above the block's largest
/// impostor score. Each block then has the same marginal false-match rate `k / n`, so
/// no block is favoured, and blocks whose impostor scores spread wider get higher
/// thresholds.
///
/// The policy's joint FMR (the fraction of impostor comparisons whose every block
/// reaches its threshold) can only grow with `k`, because every threshold can only
/// fall. A bisection on `k` finds the largest level whose joint FMR is at most
/// `target_fmr`: about `log2(n)` evaluations of `n x blocks` comparisons after one
/// sort per block. The joint FMR is usually far below the marginal `k / n` because a
/// false match needs every block at once; how far depends on how strongly an
/// impostor pair's block scores go together.
///
/// The result meets the target on this sample by construction. On fresh impostors
/// the FMR is an estimate with binomial uncertainty (`n * target_fmr` false matches
/// give a relative standard error of about `1 / sqrt(n * target_fmr)`), so calibrate
/// on enough comparisons for several dozen false matches at the target, and check
/// on a held-out set (see [`wilson_upper_bound`]).
///
/// Thresholds are clamped to `-1..=1`, the range settings accept.
pub fn calibrate<S: AsRef<[f32]>>(
    impostors: &[S],
    target_fmr: f64,
) -> Result<Calibration, CalibrationError> {
    if !(0.0..=1.0).contains(&target_fmr) {
        return Err(CalibrationError::InvalidTarget(target_fmr));
    }
    let first = impostors.first().ok_or(CalibrationError::NoImpostors)?;
    let blocks = first.as_ref().len();
    if blocks == 0 {
        return Err(CalibrationError::NoBlocks);
    }
    for (index, s) in impostors.iter().enumerate() {
        let s = s.as_ref();
        if s.len() != blocks {
            return Err(CalibrationError::InconsistentBlocks {
                index,
                expected: blocks,
                actual: s.len(),
            });
        }
        if s.iter().any(|x| x.is_nan()) {
            return Err(CalibrationError::NonFinite { index });
        }
    }
    let n = impostors.len();
    // Per block, the impostor scores from largest to smallest.
    let sorted: Vec<Vec<f32>> = (0..blocks)
        .map(|b| {
            let mut v: Vec<f32> = impostors.iter().map(|s| s.as_ref()[b]).collect();
            v.sort_by(|x, y| y.total_cmp(x));
            v
        })
        .collect();
    let thresholds_at = |k: usize| -> Vec<f32> {
        sorted
            .iter()
            .map(|v| if k == 0 { next_up(v[0]) } else { v[k - 1] }.clamp(-1.0, 1.0))
            .collect()
    };
    let false_matches = |t: &[f32]| {
        impostors
            .iter()
            .filter(|s| accepts_all(s.as_ref(), t))
            .count()
    };
    let allowed = |count: usize| count as f64 <= target_fmr * n as f64;
    // Invariant: level `lo` meets the target; level `hi` does not (or is past the end).
    let (mut lo, mut hi) = (0usize, n + 1);
    let mut lo_count = false_matches(&thresholds_at(0));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let count = false_matches(&thresholds_at(mid));
        if allowed(count) {
            lo = mid;
            lo_count = count;
        } else {
            hi = mid;
        }
    }
    Ok(Calibration {
        thresholds: thresholds_at(lo),
        level: lo,
        target_fmr,
        false_matches: lo_count,
        impostors: n,
    })
}

/// Upper end of the Wilson score interval for a binomial proportion: with `successes`
/// out of `trials`, the true rate is below this bound with the confidence that the
/// standard-normal quantile `z` gives (e.g. `z = 2.326` for one-sided 99%).
/// Returns 1 when `trials` is 0.
pub fn wilson_upper_bound(successes: usize, trials: usize, z: f64) -> f64 {
    if trials == 0 {
        return 1.0;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z2 / n)).min(1.0)
}

/// The smallest `f32` above `x` (for finite `x`; infinities and NaN are returned as is).
fn next_up(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let bits = x.to_bits();
    if x > 0.0 {
        f32::from_bits(bits + 1)
    } else {
        f32::from_bits(bits - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn error_rates_count_ties_as_accepted() {
        let r = error_rates(&[0.9, 0.5, 0.4], &[0.1, 0.5, 0.6, -0.2], 0.5);
        assert_eq!(r.false_matches, 2);
        assert_eq!(r.false_non_matches, 1);
        assert!((r.fmr() - 0.5).abs() < 1e-12);
        assert!((r.fnmr() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn all_thresholds_needs_every_block() {
        let t = [0.5, 0.5, 0.5];
        assert!(accepts_all(&[0.5, 0.9, 0.6], &t));
        assert!(!accepts_all(&[0.9, 0.49, 0.9], &t));
        let gen = vec![vec![0.9, 0.9, 0.9], vec![0.9, 0.1, 0.9]];
        let imp = vec![
            vec![0.6, 0.6, 0.6],
            vec![0.6, 0.6, 0.4],
            vec![0.0, 0.0, 0.0],
        ];
        let r = all_thresholds_error_rates(&gen, &imp, &t);
        assert_eq!((r.false_matches, r.false_non_matches), (1, 1));
        let m = margin_scores(&imp, &t);
        assert_eq!(m.iter().filter(|&&x| x >= 0.0).count(), 1);
        assert!((m[1] + 0.1).abs() < 1e-6);
    }

    #[test]
    fn det_curve_ends_and_separable_eer() {
        let gen = [0.8, 0.9, 0.95];
        let imp = [0.1, 0.2, 0.3, 0.4];
        let curve = det_curve(&gen, &imp);
        assert_eq!(curve.len(), 8);
        assert_eq!((curve[0].fmr, curve[0].fnmr), (1.0, 0.0));
        let last = curve.last().unwrap();
        assert_eq!((last.fmr, last.fnmr), (0.0, 1.0));
        let e = eer(&gen, &imp).unwrap();
        assert!(
            e.rate.abs() < 1e-12,
            "separable samples have EER 0, got {e:?}"
        );
        assert!(e.threshold > 0.4 && e.threshold <= 0.8);
    }

    #[test]
    fn eer_of_mirrored_uniform_samples() {
        // Genuine uniform on [0.25, 1.25), impostor on [0, 1): crossing at 0.625 with
        // both rates 0.375.
        let n = 1000;
        let imp: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let gen: Vec<f32> = imp.iter().map(|x| x + 0.25).collect();
        let e = eer(&gen, &imp).unwrap();
        assert!((e.rate - 0.375).abs() < 0.002, "{e:?}");
        assert!((e.threshold - 0.625).abs() < 0.002, "{e:?}");
        let p = fnmr_at_fmr(&gen, &imp, 0.1).unwrap();
        assert!(p.fmr <= 0.1 && (p.fnmr - 0.65).abs() < 0.002, "{p:?}");
    }

    #[test]
    fn calibration_rejects_bad_input() {
        let none: Vec<Vec<f32>> = Vec::new();
        assert_eq!(calibrate(&none, 0.01), Err(CalibrationError::NoImpostors));
        assert_eq!(
            calibrate(&[vec![0.1]], 1.5),
            Err(CalibrationError::InvalidTarget(1.5))
        );
        assert_eq!(
            calibrate(&[vec![0.1, 0.2], vec![0.3]], 0.01),
            Err(CalibrationError::InconsistentBlocks {
                index: 1,
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            calibrate(&[vec![0.1, f32::NAN]], 0.01),
            Err(CalibrationError::NonFinite { index: 0 })
        );
    }

    #[test]
    fn calibration_on_independent_blocks() {
        // Two blocks; impostor i has block scores (x_i, y_i) on a grid so that
        // exactly the top-right corner is accepted.
        let side = 100;
        let imp: Vec<Vec<f32>> = (0..side * side)
            .map(|i| {
                vec![
                    (i % side) as f32 / side as f32,
                    (i / side) as f32 / side as f32,
                ]
            })
            .collect();
        let c = calibrate(&imp, 0.01).unwrap();
        assert!(c.fmr() <= 0.01);
        // A 10x10 corner holds 1% of the grid: the thresholds are the 0.9 marginal quantile.
        assert_eq!(c.false_matches, 100);
        for t in &c.thresholds {
            assert!((t - 0.9).abs() < 1e-6, "{c:?}");
        }
        // Zero target: nothing accepted.
        let z = calibrate(&imp, 0.0).unwrap();
        assert_eq!(z.false_matches, 0);
        assert_eq!(
            all_thresholds_error_rates::<Vec<f32>, _>(&[], &imp, &z.thresholds).false_matches,
            0
        );
    }

    #[test]
    fn wilson_bound_brackets_the_estimate() {
        let u = wilson_upper_bound(10, 10_000, 2.326);
        assert!(u > 0.0019 && u < 0.0022, "{u}");
        assert_eq!(wilson_upper_bound(0, 0, 2.0), 1.0);
        assert!(wilson_upper_bound(0, 1000, 2.326) > 0.0);
    }

    proptest! {
        #[test]
        fn fmr_non_increasing_fnmr_non_decreasing(
            gen in proptest::collection::vec(-1.0f32..1.0, 1..50),
            imp in proptest::collection::vec(-1.0f32..1.0, 1..50),
            a in -1.0f32..1.0, b in -1.0f32..1.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (rl, rh) = (error_rates(&gen, &imp, lo), error_rates(&gen, &imp, hi));
            prop_assert!(rh.fmr() <= rl.fmr());
            prop_assert!(rh.fnmr() >= rl.fnmr());
            let curve = det_curve(&gen, &imp);
            for w in curve.windows(2) {
                prop_assert!(w[1].threshold > w[0].threshold);
                prop_assert!(w[1].fmr <= w[0].fmr && w[1].fnmr >= w[0].fnmr);
            }
            for p in &curve {
                let r = error_rates(&gen, &imp, p.threshold);
                prop_assert_eq!((r.fmr(), r.fnmr()), (p.fmr, p.fnmr));
            }
        }

        #[test]
        fn calibration_meets_target_and_is_the_loosest_common_level(
            imp in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 3), 1..80),
            target in 0.0f64..0.5,
        ) {
            let c = calibrate(&imp, target).unwrap();
            let none: [Vec<f32>; 0] = [];
            let fm = all_thresholds_error_rates(&none, &imp, &c.thresholds).false_matches;
            prop_assert_eq!(fm, c.false_matches);
            prop_assert!(fm as f64 <= target * imp.len() as f64);
            prop_assert!(c.thresholds.iter().all(|t| (-1.0..=1.0).contains(t)));
            // One level looser breaks the target (unless every level is allowed).
            if c.level < imp.len() {
                let looser: Vec<f32> = (0..3)
                    .map(|b| {
                        let mut v: Vec<f32> = imp.iter().map(|s| s[b]).collect();
                        v.sort_by(|x, y| y.total_cmp(x));
                        v[c.level]
                    })
                    .collect();
                let fm2 = all_thresholds_error_rates(&none, &imp, &looser).false_matches;
                prop_assert!(fm2 as f64 > target * imp.len() as f64);
            }
        }
    }
}
