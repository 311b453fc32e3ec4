//! Build time, peak build memory and search quality of one graph builder on
//! a peer benchmark dump (`peers.py gen`), measured by the engine alone.
//!
//! ```sh
//! cargo run --release -p palmlink-engine --example graph_quality -- \
//!     <dump> <work dir> <native|hnsw_rs> [efConstruction] [rows]
//! ```
//!
//! The first run copies the dump's gallery (its first `rows` templates, all
//! by default) into `<work dir>/gallery-<rows>`; later runs reuse it. Then:
//! the exact top 10 of every probe by the f32 scan; one graph build with the
//! builder asked for (`M` 16, save included), timed, with the peak of the
//! process's anonymous memory sampled every 20 ms (the rows are mapped, so
//! they are not counted); and for each `ef`, the genuine probes whose mate
//! exact search finds at rank 1 but the graph search does not, recall@10
//! against exact search, and the median single-query time. Run it once per
//! builder, alternately, for figures that compare.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ndarray::Array2;
use palmlink_engine::{
    Candidate, Gallery, GraphBuilder, IndexPolicy, Layout, MatchSettings, PalmSide, RecordIds,
    SearchQuery, Strategy, Template,
};

const EFS: [usize; 11] = [8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128];

/// The payload of a peer benchmark `.npy` file (its header is 128 bytes).
fn npy_payload(path: &Path, dtype: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x93NUMPY") && bytes.len() >= 128);
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains(dtype), "{}: not {dtype}", path.display());
    bytes[128..].to_vec()
}

fn f32s(path: &Path) -> Vec<f32> {
    npy_payload(path, "'<f4'")
        .chunks_exact(4)
        .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

fn i64s(path: &Path) -> Vec<i64> {
    npy_payload(path, "'<i8'")
        .chunks_exact(8)
        .map(|w| i64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect()
}

fn ids(i: u64) -> RecordIds {
    RecordIds {
        feature_id: u128::from(i) + 1,
        user_key: u128::from(i / 2) + 1,
        palm: if i.is_multiple_of(2) {
            PalmSide::Left
        } else {
            PalmSide::Right
        },
    }
}

fn rss_anon() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("RssAnon:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn policy(builder: GraphBuilder, efc: Option<usize>) -> IndexPolicy {
    let mut policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    policy.params.builder = builder;
    if let Some(efc) = efc {
        policy.params.ef_construction = efc;
    }
    policy
}

/// The gallery of the dump's first `rows` templates, made once.
fn gallery(dump: &Path, work: &Path, rows: Option<usize>, policy: IndexPolicy) -> Gallery {
    let len = Layout::DEFAULT.len();
    let path = dump.join("gallery.npy");
    let size = std::fs::metadata(&path).expect("gallery.npy").len() as usize;
    let all = (size - 128) / (4 * len);
    let n = rows.unwrap_or(all).min(all);
    let dir: PathBuf = work.join(format!("gallery-{n}"));
    if let Ok(g) = Gallery::open_with(&dir, policy) {
        if g.row_count() == n as u64 {
            return g;
        }
    }
    let values = f32s(&path);
    let _ = std::fs::remove_dir_all(&dir);
    drop(Gallery::create(&dir, Layout::DEFAULT).expect("create gallery"));
    let g = Gallery::open_with(&dir, policy).expect("open gallery");
    for start in (0..n).step_by(50_000) {
        let end = (start + 50_000).min(n);
        let templates: Vec<Template> = values[start * len..end * len]
            .chunks(len)
            .map(|v| Template::from_f32(Layout::DEFAULT, v).expect("valid template"))
            .collect();
        let items: Vec<(RecordIds, &Template)> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (ids((start + i) as u64), t))
            .collect();
        g.insert_batch(&items).expect("insert");
    }
    g
}

fn candidates(g: &Gallery, probes: &Array2<f32>, strategy: Strategy) -> Vec<Vec<Candidate>> {
    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    g.search_batch_with(probes.view(), &q, strategy)
        .expect("search")
        .into_iter()
        .map(|out| out.candidates)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dump, work, builder, rest @ ..] = args.as_slice() else {
        panic!("usage: graph_quality <dump> <work dir> <native|hnsw_rs> [efC] [rows]");
    };
    let builder = match builder.as_str() {
        "native" => GraphBuilder::Native,
        "hnsw_rs" => GraphBuilder::HnswRs,
        other => panic!("unknown builder {other}"),
    };
    let efc = rest.first().map(|v| v.parse().expect("efConstruction"));
    let rows = rest.get(1).map(|v| v.parse().expect("rows"));
    let (dump, work) = (Path::new(dump), Path::new(work));
    let g = gallery(dump, work, rows, policy(builder, efc));
    while g.quantised_rows() < g.row_count() || g.passing_rows() < g.row_count() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let n = g.row_count() as usize;

    let len = Layout::DEFAULT.len();
    let values = f32s(&dump.join("probes.npy"));
    let mates = i64s(&dump.join("probe_mate.npy"));
    let probes = Array2::from_shape_vec((values.len() / len, len), values).expect("probes");
    // A mate beyond the rows taken is no mate.
    let mates: Vec<Option<u64>> = mates
        .iter()
        .map(|&m| u64::try_from(m).ok().filter(|&m| m < n as u64))
        .collect();
    let t = Instant::now();
    let exact = candidates(&g, &probes, Strategy::F32Scan);
    println!(
        "{n} templates, {} probes ({} with a mate in the gallery); exact top 10 in {:.1} s",
        mates.len(),
        mates.iter().flatten().count(),
        t.elapsed().as_secs_f64()
    );

    let rss0 = rss_anon();
    let peak = AtomicUsize::new(rss0);
    let done = AtomicBool::new(false);
    let t = Instant::now();
    let info = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_anon(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let info = g.rebuild_index().expect("build");
        done.store(true, Ordering::Relaxed);
        info
    });
    let build_s = t.elapsed().as_secs_f64();
    let p = g.ann_params();
    println!(
        "build {:?}, M {}, efConstruction {}, save included: {build_s:.1} s; {} points, {} \
         unreachable; peak build memory {} B/template beyond the rows; graph {} B/template",
        p.builder,
        p.max_connections,
        p.ef_construction,
        info.points,
        info.orphans,
        peak.into_inner().saturating_sub(rss0) / n,
        info.estimated_bytes / n
    );

    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    let mut smallest = None;
    for ef in EFS {
        let got = candidates(&g, &probes, Strategy::Hnsw { ef });
        let (mut found, mut missed, mut overlap) = (0, 0, 0);
        for ((got, truth), mate) in got.iter().zip(&exact).zip(&mates) {
            overlap += truth
                .iter()
                .filter(|c| got.iter().any(|h| h.row == c.row))
                .count();
            if let Some(mate) = mate {
                if truth.first().map(|c| c.row.0) == Some(*mate) {
                    found += 1;
                    if got.first().map(|c| c.row.0) != Some(*mate) {
                        missed += 1;
                    }
                }
            }
        }
        let mut ms: Vec<f64> = probes
            .rows()
            .into_iter()
            .map(|row| {
                let probe = Template::from_f32(Layout::DEFAULT, row.as_slice().expect("row"))
                    .expect("probe");
                let t = Instant::now();
                std::hint::black_box(g.search_with(&probe, &q, Strategy::Hnsw { ef }).ok());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        if missed == 0 && smallest.is_none() {
            smallest = Some(ef);
        }
        println!(
            "ef {ef}: mates missed {missed} of {found} exact finds; recall@10 {:.3}; \
             single query p50 {:.3} ms",
            overlap as f64 / (10 * exact.len()) as f64,
            ms[ms.len() / 2]
        );
    }
    match smallest {
        Some(ef) => println!("smallest ef missing no mate: {ef}"),
        None => println!("smallest ef missing no mate: above {}", EFS[EFS.len() - 1]),
    }
}
