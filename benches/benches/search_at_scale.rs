//! 1:N at scale: the f32 scan, the quantised scan, the passing scan, the
//! sign-sketch prefilter and the graph index on one gallery, in one run.
//!
//! `cargo bench -p palmlink-benches --bench search_at_scale -- --warm-up-time 1 --measurement-time 3`
//!
//! Environment:
//! * `PALMLINK_ANN_N` (default 100000): gallery size (synthetic, seeded, kept
//!   under target/bench-data between runs);
//! * `PALMLINK_PEERBENCH_DIR=<dump>`: use the peer benchmark's `gallery.npy` and its
//!   probes (`probes.npy`, `probe_mate.npy`)
//!   instead, so the figures sit beside faiss/hnswlib/usearch on the same bytes;
//! * `PALMLINK_ANN_SKIP_INDEX=1`: scans only (no graph build), e.g. at 1M;
//! * `PALMLINK_ANN_TRUTH=quantised`: compute the exact top-10 of the probes
//!   with the quantised scan (the same result as the f32 scan, proved in
//!   `quantised.rs`; half the time at 1M);
//! * `PALMLINK_ANN_REUSE_INDEX=1`: no build; use the index saved by an
//!   earlier run (loaded at open) to measure searches again;
//! * `PALMLINK_ANN_EFC=<n>`: `efConstruction` of the graph build (default
//!   that of `AnnParams`, 100);
//! * `PALMLINK_ANN_BUILDER=hnsw_rs`: build with `hnsw_rs` (the reference
//!   builder, `GraphBuilder::HnswRs`) instead of the default native builder;
//!   `native` names the default.
//!
//! Before the timed part it prints (and writes to
//! `target/bench-data/search_at_scale-<n>.txt`): open, copy-derivation, build,
//! save and reload times; memory per template; and for every `ef` and sketch
//! re-score depth the mated-hit rate against exact search and recall@10; for
//! the passing scan also the mates that pass the decision (default settings)
//! and any passing row of the exact top-10 it failed to return; and the
//! single-query latency percentiles (p50, p99, max) of the scans, each query
//! timed alone. The graph is timed at the smallest `ef` whose misses stay
//! within 0.1% of the mates exact search finds at rank 1. The batch API
//! (`Gallery::search_batch_with`, `Gallery::score_matrix`) is timed beside
//! the loops of single calls it replaces.

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::Array2;
use palmlink_benches::{data_dir, ids, read_npy_f32, read_npy_i64, synthetic_templates};
use palmlink_engine::{
    Candidate, Gallery, GraphBuilder, IndexPolicy, Layout, MatchSettings, RowId, SearchQuery,
    Strategy, Template,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

const GENUINE: usize = 500;
const IMPOSTORS: usize = 500;
const EFS: [usize; 12] = [8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 384, 512];
const SKETCH_DEPTHS: [usize; 3] = [64, 256, 1024];

fn manual() -> IndexPolicy {
    let mut policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    if let Some(efc) = std::env::var("PALMLINK_ANN_EFC")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        policy.params.ef_construction = efc;
    }
    match std::env::var("PALMLINK_ANN_BUILDER").as_deref() {
        Ok("native") => policy.params.builder = GraphBuilder::Native,
        Ok("hnsw_rs") => policy.params.builder = GraphBuilder::HnswRs,
        _ => {}
    }
    policy
}

/// `probes` as the batch API's matrix, one template's values per row.
fn matrix<'a>(probes: impl IntoIterator<Item = &'a Template>) -> Array2<f32> {
    let values: Vec<f32> = probes
        .into_iter()
        .flat_map(|p| p.as_slice().iter().copied())
        .collect();
    let len = Layout::DEFAULT.len();
    Array2::from_shape_vec((values.len() / len, len), values).expect("whole templates")
}

/// The candidates of every probe of `probes` by `strategy`, as one batch.
fn batch_candidates(
    g: &Gallery,
    probes: &Array2<f32>,
    q: &SearchQuery,
    strategy: Strategy,
) -> Vec<Vec<Candidate>> {
    g.search_batch_with(probes.view(), q, strategy)
        .expect("search")
        .into_iter()
        .map(|out| out.candidates)
        .collect()
}

fn rss_anon_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// The gallery directory for this run, filled once.
fn gallery_dir(n: usize) -> std::path::PathBuf {
    let layout = Layout::DEFAULT;
    if let Ok(dump) = std::env::var("PALMLINK_PEERBENCH_DIR") {
        let values = read_npy_f32(&Path::new(&dump).join("gallery.npy"), layout.len())
            .expect("peer benchmark gallery.npy");
        let n = values.len() / layout.len();
        // Dumps of one size differ by seed and structure: the cache is keyed by both.
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(Path::new(&dump).join("meta.json")).expect("peer benchmark meta.json"),
        )
        .expect("meta.json is JSON");
        let dir = data_dir().join(format!(
            "ann-peerbench-{n}-seed{}-latent{}",
            meta["seed"], meta["latent_dim"]
        ));
        fill(&dir, n, |start, m| {
            values[start * layout.len()..(start + m) * layout.len()]
                .par_chunks(layout.len())
                .map(|v| Template::from_f32(layout, v).expect("valid peer template"))
                .collect()
        });
        return dir;
    }
    let dir = data_dir().join(format!("ann-synthetic-{n}"));
    fill(&dir, n, |start, m| synthetic_templates(m, start as u64));
    dir
}

fn fill(dir: &Path, n: usize, make: impl Fn(usize, usize) -> Vec<Template>) {
    if let Ok(g) = Gallery::open_with(dir, manual()) {
        if g.row_count() == n as u64 {
            return;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let g = Gallery::create(dir, Layout::DEFAULT).expect("create bench gallery");
    drop(g);
    let g = Gallery::open_with(dir, manual()).expect("open bench gallery");
    for start in (0..n).step_by(50_000) {
        let m = 50_000.min(n - start);
        let templates = make(start, m);
        let items: Vec<_> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (ids((start + i) as u64), t))
            .collect();
        g.insert_batch(&items).expect("fill bench gallery");
    }
}

/// Genuine probes (mate + noise, blocks renormalised) and impostors: the peer
/// benchmark's own probes (`probes.npy`, `probe_mate.npy`) with a dump, so every
/// library answers the same queries.
fn probes(g: &Gallery, n: usize) -> (Vec<(Template, u64)>, Vec<Template>) {
    if let Ok(dump) = std::env::var("PALMLINK_PEERBENCH_DIR") {
        let dump = Path::new(&dump);
        let layout = Layout::DEFAULT;
        let values = read_npy_f32(&dump.join("probes.npy"), layout.len()).expect("probes.npy");
        let mates = read_npy_i64(&dump.join("probe_mate.npy")).expect("probe_mate.npy");
        let (mut genuine, mut impostors) = (Vec::new(), Vec::new());
        for (v, mate) in values.chunks(layout.len()).zip(mates) {
            let t = Template::from_f32(layout, v).expect("valid peer probe");
            match u64::try_from(mate) {
                Ok(mate) => genuine.push((t, mate)),
                Err(_) => impostors.push(t),
            }
        }
        return (genuine, impostors);
    }
    let mut rng = StdRng::seed_from_u64(4242);
    let genuine = (0..GENUINE)
        .map(|_| {
            let mate = rng.random_range(0..n as u64);
            let (_, t) = g.get(RowId(mate)).expect("read").expect("live");
            let sigma = rng.random_range(0.041f32..0.0775);
            let v: Vec<f32> = t
                .as_slice()
                .iter()
                .map(|x| x + sigma * normal(&mut rng))
                .collect();
            (
                Template::from_f32(Layout::DEFAULT, &v).expect("probe"),
                mate,
            )
        })
        .collect();
    let impostors = synthetic_templates(IMPOSTORS, 0xdead_beef);
    (genuine, impostors)
}

struct Accuracy {
    exact_found: usize,
    missed: usize,
    recall10: f64,
    /// Mates exact search finds at rank 1 that pass the decision.
    passing_found: usize,
    /// Of those, not at the strategy's rank 1.
    passing_missed: usize,
    /// Passing rows of the exact top-10 (all probes) the strategy did not
    /// return, or returned in another order.
    passing_lost: usize,
}

fn accuracy(
    g: &Gallery,
    genuine: &[(Template, u64)],
    impostors: &[Template],
    exact: &[Vec<Candidate>],
    strategy: Strategy,
) -> Accuracy {
    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    let all = matrix(genuine.iter().map(|(t, _)| t).chain(impostors));
    let found = batch_candidates(g, &all, &q, strategy);
    let (mut exact_found, mut missed, mut overlap) = (0, 0, 0);
    let (mut passing_found, mut passing_missed, mut passing_lost) = (0, 0, 0);
    for (i, (got, truth)) in found.iter().zip(exact).enumerate() {
        let rows: Vec<u64> = got.iter().map(|c| c.row.0).collect();
        overlap += truth.iter().filter(|c| rows.contains(&c.row.0)).count();
        // The exact top-10's passing rows must lead the strategy's passing rows.
        let want: Vec<&Candidate> = truth.iter().filter(|c| c.comparison.matched).collect();
        let have: Vec<&Candidate> = got.iter().filter(|c| c.comparison.matched).collect();
        passing_lost += want
            .iter()
            .enumerate()
            .filter(|(j, c)| have.get(*j) != Some(*c))
            .count();
        if let Some((_, mate)) = genuine.get(i) {
            if truth.first().map(|c| c.row.0) == Some(*mate) {
                exact_found += 1;
                let hit = rows.first() == Some(mate);
                if !hit {
                    missed += 1;
                }
                if truth[0].comparison.matched {
                    passing_found += 1;
                    if !hit {
                        passing_missed += 1;
                    }
                }
            }
        }
    }
    Accuracy {
        exact_found,
        missed,
        recall10: overlap as f64 / (exact.len() * 10) as f64,
        passing_found,
        passing_missed,
        passing_lost,
    }
}

/// Single-query latency percentiles (p50, p99, max) in ms, each of `probes`
/// timed alone.
fn latency(g: &Gallery, probes: &[Template], q: &SearchQuery, strategy: Strategy) -> [f64; 3] {
    let mut ms: Vec<f64> = probes
        .iter()
        .map(|p| {
            let t = Instant::now();
            black_box(g.search_with(p, q, strategy).expect("search"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |f: f64| ms[((ms.len() as f64 * f).ceil() as usize).clamp(1, ms.len()) - 1];
    [at(0.5), at(0.99), at(1.0)]
}

fn search_at_scale(c: &mut Criterion) {
    let n: usize = std::env::var("PALMLINK_ANN_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let skip_index = std::env::var("PALMLINK_ANN_SKIP_INDEX").is_ok_and(|v| v == "1");
    let dir = gallery_dir(n);
    let mut report = String::new();
    macro_rules! say {
        ($($t:tt)*) => {{
            let line = format!($($t)*);
            eprintln!("{line}");
            let _ = writeln!(report, "{line}");
        }};
    }

    let t = Instant::now();
    let g = Gallery::open_with(&dir, manual()).expect("open");
    let open_s = t.elapsed().as_secs_f64();
    while g.passing_rows() < g.row_count() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let lead_s = t.elapsed().as_secs_f64();
    while g.quantised_rows() < g.row_count() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let derive_s = t.elapsed().as_secs_f64();
    let n = g.row_count() as usize;
    say!("gallery: {n} templates at {}", dir.display());
    say!(
        "open: {open_s:.3} s; lead block (passing scan at full speed) {lead_s:.3} s after open; \
         quantised copy derived {derive_s:.3} s after open"
    );
    say!(
        "memory per template: f32 rows {} B (mapped), quantised copy {} B (i8 values, scales, sketch, lead block)",
        palmlink_engine::format::row_stride(Layout::DEFAULT),
        g.quantised_bytes() / n
    );

    let (genuine, impostors) = probes(&g, n);
    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    let t = Instant::now();
    let (truth, truth_label) =
        if std::env::var("PALMLINK_ANN_TRUTH").is_ok_and(|v| v == "quantised") {
            (Strategy::QuantisedScan, "quantised scan")
        } else {
            (Strategy::F32Scan, "f32 scan")
        };
    let exact = batch_candidates(
        &g,
        &matrix(genuine.iter().map(|(t, _)| t).chain(&impostors)),
        &q,
        truth,
    );
    say!(
        "exact top-10 of {} probes ({truth_label}): {:.1} s",
        exact.len(),
        t.elapsed().as_secs_f64()
    );

    let a = accuracy(&g, &genuine, &impostors, &exact, Strategy::PassingScan);
    say!(
        "passing scan: mates missed {} of {} exact finds; passing mates missed {} of {}; \
         passing rows of the exact top-10 lost {}; recall@10 {:.3}",
        a.missed,
        a.exact_found,
        a.passing_missed,
        a.passing_found,
        a.passing_lost,
        a.recall10
    );
    assert_eq!(a.passing_lost, 0, "the passing scan lost a passing row");
    {
        let all: Vec<Template> = genuine
            .iter()
            .map(|(t, _)| t.clone())
            .chain(impostors.iter().cloned())
            .collect();
        // The scans over the whole gallery take long at 1M: fewer probes.
        let few = if n > 200_000 { 100 } else { all.len() };
        for (label, strategy, m) in [
            ("f32 scan", Strategy::F32Scan, few),
            ("quantised scan", Strategy::QuantisedScan, few),
            ("passing scan", Strategy::PassingScan, all.len()),
        ] {
            let [p50, p99, max] = latency(&g, &all[..m], &q, strategy);
            say!(
                "latency, {label}, {m} single queries: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms"
            );
        }
    }

    for depth in SKETCH_DEPTHS {
        let a = accuracy(
            &g,
            &genuine,
            &impostors,
            &exact,
            Strategy::SketchPrefilter { rescore: depth },
        );
        say!(
            "sketch prefilter, re-score {depth}: mates missed {} of {} exact finds; recall@10 {:.3}; \
             passing rows of the exact top-10 lost {}",
            a.missed,
            a.exact_found,
            a.recall10,
            a.passing_lost
        );
    }

    let mut chosen_ef = None;
    let reuse = std::env::var("PALMLINK_ANN_REUSE_INDEX").is_ok_and(|v| v == "1");
    if !skip_index && !reuse {
        let rss0 = rss_anon_bytes();
        // The peak of anonymous memory during the build, sampled every 20 ms.
        let peak = std::sync::atomic::AtomicUsize::new(rss0);
        let done = std::sync::atomic::AtomicBool::new(false);
        let t = Instant::now();
        let (info, build_s) = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    peak.fetch_max(rss_anon_bytes(), std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let info = g.rebuild_index().expect("build index");
            let build_s = t.elapsed().as_secs_f64();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (info, build_s)
        });
        let rss1 = rss_anon_bytes();
        let p = g.ann_params();
        say!(
            "index build ({:?}, M {}, efConstruction {}, 2 threads, save included): {build_s:.1} s; {} points, {} orphans",
            p.builder,
            p.max_connections,
            p.ef_construction,
            info.points,
            info.orphans
        );
        say!(
            "index memory: {} B/template by RSS growth, {} B/template peak during the build \
             (anonymous memory, sampled), {} B/template estimated",
            rss1.saturating_sub(rss0) / n,
            peak.into_inner().saturating_sub(rss0) / n,
            info.estimated_bytes / n
        );
        let t = Instant::now();
        g.save_index().expect("save");
        say!("index save: {:.2} s", t.elapsed().as_secs_f64());
        drop(g);
        let t = Instant::now();
        let g2 = Gallery::open(&dir).expect("reopen");
        let opened = t.elapsed().as_secs_f64();
        assert!(g2.wait_for_index(Duration::from_secs(3600)));
        say!(
            "reopen: {opened:.3} s; saved index loaded and checked {:.2} s after open ({:?})",
            t.elapsed().as_secs_f64(),
            g2.index_info().origin
        );
        drop(g2);
    } else {
        drop(g);
    }
    // Scans only: no index build in the background while the scans are timed.
    let g = if skip_index {
        Gallery::open_with(&dir, manual())
    } else {
        Gallery::open(&dir)
    }
    .expect("reopen");
    // Time the scans on the full compact copy, not on rows still scanned in f32.
    while g.quantised_rows() < g.row_count() {
        std::thread::sleep(Duration::from_millis(2));
    }
    if !skip_index {
        assert!(g.wait_for_index(Duration::from_secs(3600)));
        let info = g.index_info();
        say!(
            "flat graph: {} B/template ({} points, {} orphans)",
            info.estimated_bytes / n.max(1),
            info.points,
            info.orphans
        );
        let probes: Vec<Template> = genuine
            .iter()
            .map(|(t, _)| t.clone())
            .chain(impostors.iter().cloned())
            .collect();
        for ef in EFS {
            let a = accuracy(&g, &genuine, &impostors, &exact, Strategy::Hnsw { ef });
            let ok = a.missed <= a.exact_found / 1000;
            let [p50, p99, max] = latency(&g, &probes, &q, Strategy::Hnsw { ef });
            say!(
                "graph ef {ef}: mates missed {} of {} exact finds; recall@10 {:.3}; passing rows lost {}; \
                 single queries p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms{}",
                a.missed,
                a.exact_found,
                a.recall10,
                a.passing_lost,
                if ok && chosen_ef.is_none() {
                    "  <- smallest ef within 0.1%"
                } else {
                    ""
                }
            );
            if ok && chosen_ef.is_none() {
                chosen_ef = Some(ef);
            }
        }
    }
    let _ = std::fs::write(data_dir().join(format!("search_at_scale-{n}.txt")), &report);

    let name = if std::env::var("PALMLINK_PEERBENCH_DIR").is_ok() {
        format!("search_at_scale/peerbench-{n}")
    } else {
        format!("search_at_scale/{n}")
    };
    let all: Vec<Template> = genuine
        .iter()
        .map(|(t, _)| t.clone())
        .chain(impostors.iter().cloned())
        .collect();
    let mut group = c.benchmark_group(&name);
    group.sample_size(10);
    let mut strategies = vec![
        ("f32_scan".to_string(), Strategy::F32Scan),
        ("quantised_scan".to_string(), Strategy::QuantisedScan),
        ("passing_scan".to_string(), Strategy::PassingScan),
        (
            "sketch_prefilter_256".to_string(),
            Strategy::SketchPrefilter { rescore: 256 },
        ),
    ];
    if let Some(ef) = chosen_ef {
        strategies.push((format!("hnsw_ef{ef}"), Strategy::Hnsw { ef }));
    }
    for (label, strategy) in &strategies {
        let mut i = 0;
        group.bench_function(label.as_str(), |b| {
            b.iter(|| {
                i = (i + 1) % all.len();
                black_box(g.search_with(&all[i], &q, *strategy).expect("search"))
            })
        });
    }
    // Queries/s with both cores answering single queries concurrently.
    let batch = &all[..64];
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("passing_scan_64_concurrent", |b| {
        b.iter(|| {
            batch
                .par_iter()
                .map(|p| {
                    g.search_with(p, &q, Strategy::PassingScan)
                        .expect("search")
                        .candidates
                        .len()
                })
                .sum::<usize>()
        })
    });
    if let Some(ef) = chosen_ef {
        group.bench_function(format!("hnsw_ef{ef}_64_concurrent"), |b| {
            b.iter(|| {
                batch
                    .par_iter()
                    .map(|p| {
                        g.search_with(p, &q, Strategy::Hnsw { ef })
                            .expect("search")
                            .candidates
                            .len()
                    })
                    .sum::<usize>()
            })
        });
    }
    // The batch API beside the loops it replaces: the passing scan of 64
    // probes as one batch; the f32 scan of 16 probes one at a time and as
    // one pass over the gallery; 64 x 256 comparisons one at a time and as
    // one score matrix.
    let batch_matrix = matrix(batch);
    group.bench_function("passing_scan_64_batch", |b| {
        b.iter(|| {
            g.search_batch_with(batch_matrix.view(), &q, Strategy::PassingScan)
                .expect("search")
                .len()
        })
    });
    let few = &all[..16];
    let few_matrix = matrix(few);
    group.throughput(Throughput::Elements(few.len() as u64));
    group.bench_function("f32_scan_16_one_at_a_time", |b| {
        b.iter(|| {
            few.iter()
                .map(|p| {
                    g.search_with(p, &q, Strategy::F32Scan)
                        .expect("search")
                        .candidates
                        .len()
                })
                .sum::<usize>()
        })
    });
    group.bench_function("f32_scan_16_batch", |b| {
        b.iter(|| {
            g.search_batch_with(few_matrix.view(), &q, Strategy::F32Scan)
                .expect("search")
                .len()
        })
    });
    let settings = MatchSettings::default_for(Layout::DEFAULT);
    let rows: Vec<RowId> = (0..256).map(|i| RowId(i * (n as u64 / 256))).collect();
    group.throughput(Throughput::Elements((batch.len() * rows.len()) as u64));
    group.bench_function("compare_64x256_one_at_a_time", |b| {
        b.iter(|| {
            batch
                .iter()
                .flat_map(|p| rows.iter().map(move |&r| (p, r)))
                .map(|(p, r)| g.compare(p, r, &settings).expect("compare").mean)
                .sum::<f32>()
        })
    });
    group.bench_function("score_matrix_64x256", |b| {
        b.iter(|| {
            g.score_matrix(batch_matrix.view(), &rows)
                .expect("scores")
                .sum()
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("verify_1to1", |b| {
        b.iter(|| {
            i = (i + 1) % genuine.len();
            let (p, mate) = &genuine[i];
            black_box(g.compare(p, RowId(*mate), &settings).expect("compare"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = search_at_scale
}
criterion_main!(benches);
