//! The accuracy measurement: option parsing, a small run, its JSON and its SVG.

use palmlink_benches::accuracy::{run, write_det_svg, Options, Summary};
use palmlink_engine::{MatchPolicy, MatchSettings};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn parses_flags() {
    let o = Options::parse(args("--identities 500 --genuine 10 --impostors 20 --holdout 0 --related 5 --seed 9 --target-fmr 0.01 --threads 1 --json --svg x.svg")).unwrap();
    assert_eq!(
        (
            o.identities,
            o.genuine,
            o.impostors,
            o.holdout,
            o.related,
            o.seed
        ),
        (500, 10, 20, 0, 5, 9)
    );
    assert_eq!(o.target_fmr, 0.01);
    assert_eq!(o.threads, 1);
    assert!(o.json);
    assert_eq!(o.svg.as_deref(), Some("x.svg"));
    assert_eq!(Options::parse(Vec::new()).unwrap(), Options::default());
    assert!(Options::parse(args("--bogus")).is_err());
    assert!(Options::parse(args("--genuine")).is_err());
    assert!(Options::parse(args("--genuine ten")).is_err());
    assert!(Options::parse(args("--target-fmr 2")).is_err());
    assert!(Options::parse(args("--identities 3")).is_err());
}

#[test]
fn summary_statistics() {
    let v: Vec<f32> = (0..=100).map(|i| i as f32 / 100.0).collect();
    let s = Summary::of(&v);
    assert_eq!(s.count, 101);
    assert!((s.mean - 0.5).abs() < 1e-6);
    assert_eq!((s.min, s.p50, s.max), (0.0, 0.5, 1.0));
    assert!((s.p1 - 0.01).abs() < 1e-6 && (s.p99 - 0.99).abs() < 1e-6);
}

#[test]
fn small_run_reports_usable_thresholds_and_draws_the_det() {
    let o = Options::parse(args("--identities 400 --genuine 400 --impostors 3000 --holdout 1000 --related 200 --target-fmr 0.01 --threads 2")).unwrap();
    let report = run(&o).unwrap();
    let json = report.to_json();
    let thresholds: Vec<f32> =
        serde_json::from_value(json["settings"]["thresholds"].clone()).unwrap();
    assert_eq!(thresholds.len(), 10);
    assert_eq!(json["settings"]["match_policy"], "all_thresholds");
    MatchSettings::new(thresholds.clone(), MatchPolicy::AllThresholds)
        .expect("thresholds are valid settings");
    assert_eq!(thresholds, report.calibrated_point.thresholds);
    let cal = &json["calibrated"]["calibration_impostors"];
    assert!(cal["fmr"].as_f64().unwrap() <= 0.01);
    assert_eq!(cal["impostors"], 3000);
    assert_eq!(json["calibrated"]["holdout_impostors"]["impostors"], 1000);
    assert!(json["mean_score"]["eer"]["rate"].as_f64().is_some());
    // Genuine scores far above impostor scores.
    assert!(report.genuine_blocks.mean > 0.85 && report.impostor_blocks.mean.abs() < 0.05);
    // The same options give the same report, whatever the thread count.
    let single = run(&Options {
        threads: 1,
        ..o.clone()
    })
    .unwrap();
    assert_eq!(single.to_json(), json);
    let text = report.to_text();
    assert!(text.contains("calibrated for FMR") && text.contains("EER"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("det.svg");
    write_det_svg(&report, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("FMR") && svg.contains("<polyline"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}
