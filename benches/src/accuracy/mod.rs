//! Verification accuracy on the synthetic population: error rates, EER, DET curves
//! and calibrated thresholds (the engine of the `accuracy` binary).

use std::path::Path;

use palmlink_engine::calibration::{
    self, all_thresholds_error_rates, calibrate, margin_scores, mean_scores, wilson_upper_bound,
    DetPoint, ErrorRates,
};
use palmlink_engine::MatchSettings;
use palmlink_fixtures::trials::{self, ImpostorKind, Trial};
use palmlink_fixtures::{CaptureCondition, Population};
use serde_json::{json, Value};

mod options;
pub mod pad;

pub use options::{Options, USAGE};

/// One-sided 99% standard-normal quantile, for the Wilson bounds reported.
const Z99: f64 = 2.326;

/// Summary statistics of a set of scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Number of scores.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Excess-free kurtosis (3 for a Gaussian).
    pub kurtosis: f64,
    /// Smallest.
    pub min: f32,
    /// 0.1st percentile.
    pub p0_1: f32,
    /// 1st percentile.
    pub p1: f32,
    /// 5th percentile.
    pub p5: f32,
    /// Median.
    pub p50: f32,
    /// 95th percentile.
    pub p95: f32,
    /// 99th percentile.
    pub p99: f32,
    /// 99.9th percentile.
    pub p99_9: f32,
    /// Largest.
    pub max: f32,
}

impl Summary {
    /// Statistics of `values` (all zero for an empty slice).
    pub fn of(values: &[f32]) -> Summary {
        let mut v: Vec<f32> = values.to_vec();
        v.sort_by(f32::total_cmp);
        let n = v.len();
        if n == 0 {
            return Summary {
                count: 0,
                mean: 0.0,
                sd: 0.0,
                kurtosis: 0.0,
                min: 0.0,
                p0_1: 0.0,
                p1: 0.0,
                p5: 0.0,
                p50: 0.0,
                p95: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let m4 = v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n as f64;
        let q = |p: f64| v[((n - 1) as f64 * p).round() as usize];
        Summary {
            count: n,
            mean,
            sd: var.sqrt(),
            kurtosis: if var > 0.0 { m4 / (var * var) } else { 0.0 },
            min: v[0],
            p0_1: q(0.001),
            p1: q(0.01),
            p5: q(0.05),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            p99_9: q(0.999),
            max: v[n - 1],
        }
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count, "mean": self.mean, "sd": self.sd, "kurtosis": self.kurtosis,
            "min": self.min, "p0_1": self.p0_1, "p1": self.p1, "p5": self.p5, "p50": self.p50,
            "p95": self.p95, "p99": self.p99, "p99_9": self.p99_9, "max": self.max,
        })
    }
}

/// Error rates of one threshold set, with the held-out check.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatingPoint {
    /// The per-block thresholds (policy `all_thresholds`).
    pub thresholds: Vec<f32>,
    /// Rates on the genuine trials and the calibration impostors.
    pub rates: ErrorRates,
    /// Rates on the held-out impostors (population `seed + 1`).
    pub holdout: ErrorRates,
    /// Rates on the related impostors.
    pub related: ErrorRates,
    /// FNMR of good, poor and misaligned captures.
    pub fnmr_by_condition: [(CaptureCondition, ErrorRates); 3],
}

/// Everything the `accuracy` binary reports.
#[derive(Clone, Debug)]
pub struct Report {
    /// The options it ran with.
    pub options: Options,
    /// All genuine block scores.
    pub genuine_blocks: Summary,
    /// Genuine block scores of good captures only.
    pub genuine_good_blocks: Summary,
    /// Random-impostor block scores.
    pub impostor_blocks: Summary,
    /// Related-impostor block scores.
    pub related_blocks: Summary,
    /// Mean quality per capture condition, with the number of captures.
    pub quality: [(CaptureCondition, usize, f64); 3],
    /// The API's default thresholds.
    pub default_point: OperatingPoint,
    /// Thresholds calibrated for `target_fmr` on the calibration impostors.
    pub calibrated_point: OperatingPoint,
    /// DET curve and EER of the mean score.
    pub mean_det: Vec<DetPoint>,
    /// EER of the mean score.
    pub mean_eer: Option<calibration::Eer>,
    /// DET curve of `all_thresholds` as the calibrated thresholds shift together.
    pub policy_det: Vec<DetPoint>,
    /// EER of that family.
    pub policy_eer: Option<calibration::Eer>,
    /// APCER and BPCER at `min_liveness`.
    pub pad: pad::PadReport,
}

fn parallel<F>(total: usize, threads: usize, job: F) -> Vec<Trial>
where
    F: Fn(usize, usize, u64) -> Vec<Trial> + Sync,
{
    // Fixed chunks (independent of the thread count) keep results deterministic.
    const CHUNK: usize = 4096;
    let chunks: Vec<(usize, usize)> = (0..total)
        .step_by(CHUNK)
        .map(|s| (s, CHUNK.min(total - s)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(usize, Vec<Trial>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(start, len)) = chunks.get(i) else {
                            break;
                        };
                        done.push((i, job(start, len, i as u64)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, t)| t).collect()
}

fn blocks(trials: &[Trial]) -> Vec<f32> {
    trials
        .iter()
        .flat_map(|t| t.scores.iter().copied())
        .collect()
}

const CONDITIONS: [CaptureCondition; 3] = [
    CaptureCondition::Good,
    CaptureCondition::Poor,
    CaptureCondition::Misaligned,
];

fn operating_point(
    thresholds: Vec<f32>,
    genuine: &[Trial],
    imp: &[Vec<f32>],
    holdout: &[Vec<f32>],
    related: &[Vec<f32>],
) -> OperatingPoint {
    let gen = trials::block_score_vectors(genuine);
    let none: [Vec<f32>; 0] = [];
    let by = |c: CaptureCondition| {
        let g: Vec<Vec<f32>> = genuine
            .iter()
            .filter(|t| t.condition == c)
            .map(|t| t.scores.clone())
            .collect();
        (c, all_thresholds_error_rates(&g, &none, &thresholds))
    };
    OperatingPoint {
        rates: all_thresholds_error_rates(&gen, imp, &thresholds),
        holdout: all_thresholds_error_rates(&none, holdout, &thresholds),
        related: all_thresholds_error_rates(&none, related, &thresholds),
        fnmr_by_condition: CONDITIONS.map(by),
        thresholds,
    }
}

/// Runs the measurement.
///
/// # Errors
/// If the calibration fails (e.g. no impostor trials).
pub fn run(o: &Options) -> Result<Report, String> {
    let population = Population::with_seed(o.seed, o.identities);
    let held_out = Population::with_seed(o.seed.wrapping_add(1), o.identities);
    // Capture indices: genuine trials use 0.., impostor probes 1<<40.., so no capture
    // is used twice.
    let imp_base = 1u64 << 40;
    let genuine = parallel(o.genuine, o.threads, |start, len, chunk| {
        trials::genuine(&population, len, o.seed ^ (chunk << 8) ^ 0x67, start as u64)
    });
    let impostor = parallel(o.impostors, o.threads, |start, len, chunk| {
        trials::impostor(
            &population,
            len,
            ImpostorKind::Random,
            o.seed ^ (chunk << 8) ^ 0x69,
            imp_base + start as u64,
        )
    });
    let holdout = parallel(o.holdout, o.threads, |start, len, chunk| {
        trials::impostor(
            &held_out,
            len,
            ImpostorKind::Random,
            o.seed ^ (chunk << 8) ^ 0x68,
            imp_base + start as u64,
        )
    });
    let related = parallel(o.related, o.threads, |start, len, chunk| {
        trials::impostor(
            &population,
            len,
            ImpostorKind::Related,
            o.seed ^ (chunk << 8) ^ 0x72,
            imp_base + start as u64,
        )
    });
    let imp_vectors = trials::block_score_vectors(&impostor);
    let holdout_vectors = trials::block_score_vectors(&holdout);
    let related_vectors = trials::block_score_vectors(&related);
    let cal = calibrate(&imp_vectors, o.target_fmr).map_err(|e| e.to_string())?;

    let default_point = operating_point(
        MatchSettings::DEFAULT_THRESHOLDS.to_vec(),
        &genuine,
        &imp_vectors,
        &holdout_vectors,
        &related_vectors,
    );
    let calibrated_point = operating_point(
        cal.thresholds.clone(),
        &genuine,
        &imp_vectors,
        &holdout_vectors,
        &related_vectors,
    );

    let gen_vectors = trials::block_score_vectors(&genuine);
    let (gen_mean, imp_mean) = (mean_scores(&gen_vectors), mean_scores(&imp_vectors));
    let (gen_margin, imp_margin) = (
        margin_scores(&gen_vectors, &cal.thresholds),
        margin_scores(&imp_vectors, &cal.thresholds),
    );
    let good: Vec<Trial> = genuine
        .iter()
        .filter(|t| t.condition == CaptureCondition::Good)
        .cloned()
        .collect();
    let quality = CONDITIONS.map(|c| {
        let q: Vec<f64> = genuine
            .iter()
            .filter(|t| t.condition == c)
            .map(|t| t.quality as f64)
            .collect();
        (
            c,
            q.len(),
            if q.is_empty() {
                0.0
            } else {
                q.iter().sum::<f64>() / q.len() as f64
            },
        )
    });
    // Attack and bona fide presentations use capture indices 1<<41.., unused above.
    let pad = pad::measure(
        &population,
        o.attacks,
        1 << 41,
        o.min_liveness,
        &default_point.thresholds,
    );
    Ok(Report {
        pad,
        options: o.clone(),
        genuine_blocks: Summary::of(&blocks(&genuine)),
        genuine_good_blocks: Summary::of(&blocks(&good)),
        impostor_blocks: Summary::of(&blocks(&impostor)),
        related_blocks: Summary::of(&blocks(&related)),
        quality,
        default_point,
        calibrated_point,
        mean_eer: calibration::eer(&gen_mean, &imp_mean),
        mean_det: calibration::det_curve(&gen_mean, &imp_mean),
        policy_eer: calibration::eer(&gen_margin, &imp_margin),
        policy_det: calibration::det_curve(&gen_margin, &imp_margin),
    })
}

fn condition_name(c: CaptureCondition) -> &'static str {
    match c {
        CaptureCondition::Good => "good",
        CaptureCondition::Poor => "poor",
        CaptureCondition::Misaligned => "misaligned",
    }
}

fn rates_json(r: &ErrorRates) -> Value {
    json!({
        "fmr": r.fmr(), "false_matches": r.false_matches, "impostors": r.impostors,
        "fmr_upper_99": wilson_upper_bound(r.false_matches, r.impostors, Z99),
        "fnmr": r.fnmr(), "false_non_matches": r.false_non_matches, "genuines": r.genuines,
    })
}

/// `f32` values as JSON numbers in their shortest decimal form (which parse back to
/// the same `f32`).
fn f32_json(values: &[f32]) -> Value {
    values
        .iter()
        .map(|v| {
            v.to_string()
                .parse::<f64>()
                .map_or(Value::Null, Value::from)
        })
        .collect()
}

fn point_json(p: &OperatingPoint) -> Value {
    let by: serde_json::Map<String, Value> = p
        .fnmr_by_condition
        .iter()
        .map(|(c, r)| {
            (
                condition_name(*c).to_string(),
                json!({"fnmr": r.fnmr(), "captures": r.genuines}),
            )
        })
        .collect();
    json!({
        "thresholds": f32_json(&p.thresholds),
        "match_policy": "all_thresholds",
        "fmr": p.rates.fmr(),
        "fnmr": p.rates.fnmr(),
        "calibration_impostors": rates_json(&p.rates),
        "holdout_impostors": rates_json(&p.holdout),
        "related_impostors": rates_json(&p.related),
        "fnmr_by_condition": by,
    })
}

fn eer_json(e: &Option<calibration::Eer>) -> Value {
    e.map_or(
        Value::Null,
        |e| json!({"rate": e.rate, "threshold": e.threshold}),
    )
}

impl Report {
    /// The report as one JSON object. `calibrated.thresholds` is directly usable as
    /// the `thresholds` of `PUT /v1/settings/matching` (with `"match_policy":
    /// "all_thresholds"`).
    pub fn to_json(&self) -> Value {
        let o = &self.options;
        let at_target = |det: &[DetPoint]| {
            det.iter()
                .find(|p| p.fmr <= o.target_fmr)
                .map(|p| json!({"threshold": p.threshold, "fmr": p.fmr, "fnmr": p.fnmr}))
        };
        json!({
            "population": {"identities": o.identities, "seed": o.seed, "holdout_seed": o.seed.wrapping_add(1)},
            "trials": {"genuine": o.genuine, "impostors": o.impostors, "holdout": o.holdout, "related": o.related},
            "target_fmr": o.target_fmr,
            "block_scores": {
                "genuine": self.genuine_blocks.to_json(),
                "genuine_good_captures": self.genuine_good_blocks.to_json(),
                "impostor": self.impostor_blocks.to_json(),
                "related_impostor": self.related_blocks.to_json(),
            },
            "quality": self.quality.iter().map(|(c, n, q)| (condition_name(*c).to_string(), json!({"captures": n, "mean_quality": q}))).collect::<serde_json::Map<_, _>>(),
            "default": point_json(&self.default_point),
            "calibrated": point_json(&self.calibrated_point),
            "settings": {"thresholds": f32_json(&self.calibrated_point.thresholds), "match_policy": "all_thresholds"},
            "mean_score": {"eer": eer_json(&self.mean_eer), "at_target_fmr": at_target(&self.mean_det)},
            "all_thresholds_shifted": {"eer": eer_json(&self.policy_eer), "at_target_fmr": at_target(&self.policy_det)},
            "presentation_attacks": self.pad.to_json(),
        })
    }

    /// The report as text.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let o = &self.options;
        let mut s = String::new();
        let sum = |s: &mut String, name: &str, x: &Summary| {
            let _ = writeln!(
                s,
                "  {name:<22} n={:<8} mean {:.3} sd {:.3} kurt {:.2} | p0.1 {:.3} p1 {:.3} p5 {:.3} p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
                x.count, x.mean, x.sd, x.kurtosis, x.p0_1, x.p1, x.p5, x.p50, x.p99, x.p99_9, x.max
            );
        };
        let _ = writeln!(
            s,
            "population: {} identities, seed {} (held-out seed {}); trials: {} genuine, {} impostor, {} held-out impostor, {} related impostor",
            o.identities, o.seed, o.seed.wrapping_add(1), o.genuine, o.impostors, o.holdout, o.related
        );
        let _ = writeln!(s, "per-block cosine scores:");
        sum(&mut s, "genuine", &self.genuine_blocks);
        sum(&mut s, "genuine (good capture)", &self.genuine_good_blocks);
        sum(&mut s, "impostor", &self.impostor_blocks);
        sum(&mut s, "related impostor", &self.related_blocks);
        let _ = write!(s, "capture quality:");
        for (c, n, q) in &self.quality {
            let _ = write!(s, "  {} {:.3} (n={n})", condition_name(*c), q);
        }
        let _ = writeln!(s);
        let point = |s: &mut String, name: &str, p: &OperatingPoint| {
            let _ = writeln!(
                s,
                "{name}: thresholds {:?}",
                p.thresholds
                    .iter()
                    .map(|t| (t * 1e4).round() / 1e4)
                    .collect::<Vec<_>>()
            );
            let r = |r: &ErrorRates| {
                format!(
                    "{:.2e} ({}/{}, 99% upper {:.2e})",
                    r.fmr(),
                    r.false_matches,
                    r.impostors,
                    wilson_upper_bound(r.false_matches, r.impostors, Z99)
                )
            };
            let _ = writeln!(s, "  FMR calibration set {}", r(&p.rates));
            let _ = writeln!(s, "  FMR held-out set    {}", r(&p.holdout));
            let _ = writeln!(s, "  FMR related         {}", r(&p.related));
            let _ = write!(
                s,
                "  FNMR {:.4} ({}/{})",
                p.rates.fnmr(),
                p.rates.false_non_matches,
                p.rates.genuines
            );
            for (c, r) in &p.fnmr_by_condition {
                let _ = write!(s, "  {} {:.4}", condition_name(*c), r.fnmr());
            }
            let _ = writeln!(s);
        };
        point(
            &mut s,
            "default thresholds (all_thresholds)",
            &self.default_point,
        );
        point(
            &mut s,
            &format!("calibrated for FMR {:e} (all_thresholds)", o.target_fmr),
            &self.calibrated_point,
        );
        let eer = |e: &Option<calibration::Eer>| {
            e.map_or("n/a".to_string(), |e| {
                format!("{:.2e} at {:.4}", e.rate, e.threshold)
            })
        };
        let at = |det: &[DetPoint]| {
            det.iter()
                .find(|p| p.fmr <= o.target_fmr)
                .map_or("n/a".to_string(), |p| {
                    format!(
                        "FNMR {:.4} (FMR {:.2e}, threshold {:.4})",
                        p.fnmr, p.fmr, p.threshold
                    )
                })
        };
        let _ = writeln!(
            s,
            "mean block score: EER {}; at FMR {:e}: {}",
            eer(&self.mean_eer),
            o.target_fmr,
            at(&self.mean_det)
        );
        let _ = writeln!(
            s,
            "all_thresholds, calibrated thresholds shifted together: EER {}; at FMR {:e}: {}",
            eer(&self.policy_eer),
            o.target_fmr,
            at(&self.policy_det)
        );
        s.push_str(&self.pad.to_text());
        s
    }
}

/// Draws the DET curves (FNMR against FMR, both on log axes) as an SVG file.
///
/// # Errors
/// If the file cannot be written.
pub fn write_det_svg(report: &Report, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let floor = 1e-5f64;
    let clip = |det: &[DetPoint]| -> Vec<(f64, f64)> {
        det.iter()
            .filter(|p| p.fmr >= floor && p.fnmr >= floor)
            .map(|p| (p.fmr, p.fnmr))
            .collect()
    };
    let root = SVGBackend::new(path, (720, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "DET, synthetic palms ({} genuine / {} impostor comparisons)",
        report.options.genuine, report.options.impostors
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((floor..1.0f64).log_scale(), (floor..1.0f64).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("FMR (false-match rate)")
        .y_desc("FNMR (false-non-match rate)")
        .x_label_formatter(&|x| format!("{x:.0e}"))
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()
        .map_err(|e| err(&e))?;
    let series = [
        (
            clip(&report.mean_det),
            BLUE,
            "mean block score (1:N ranking score)",
        ),
        (
            clip(&report.policy_det),
            RED,
            "all_thresholds, calibrated thresholds shifted together",
        ),
    ];
    for (points, color, label) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    let target = report.options.target_fmr;
    if target >= floor {
        chart
            .draw_series(LineSeries::new(
                vec![(target, floor), (target, 0.99)],
                GREEN.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("target FMR {target:e}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
