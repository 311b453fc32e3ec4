//! Build time, peak build memory and search quality of one graph builder on
//! a peer benchmark dump (`peers.py gen`), measured by the engine alone; or
//! the open, search time and resident memory of a saved graph.
//!
//! ```sh
//! cargo run --release -p palmlink-engine --example graph_quality -- \
//!     <dump> <work dir> <native|hnsw_rs|saved> [efConstruction] [rows]
//! ```
//!
//! The first run copies the dump's gallery (its first `rows` templates, all
//! by default), streaming it, into `<work dir>/gallery-<rows>`; later runs
//! reuse it. The gallery holds no quantised copy (the graph is what is
//! measured). The exact top 10 of every probe by the f32 scan is taken once
//! and kept in `<work dir>/truth-<rows>.txt`. Then, with a builder: one graph
//! build (`M` 16, or `GRAPH_QUALITY_M`; save included), timed, with the peak
//! of the process's anonymous memory sampled every 20 ms (the rows are
//! mapped, so they are not counted). With `saved`: the saved graph is opened
//! as a service would open it, timed until it serves and until its keys are
//! checked (searches run on it meanwhile); one 1:1 comparison
//! per probe is timed (rows read here and there, as verifications read
//! them); and the process's resident memory is read after the searches. For
//! each `ef` (those of `GRAPH_QUALITY_EFS`, a comma list, if set), either
//! way: the single-query times (p50, p99), then the genuine probes whose mate
//! exact search finds at rank 1 but the graph search does not, and recall@10
//! against exact search. The times come first, so that with one `ef` and the
//! page cache dropped before a `saved` run they are those of rows read from
//! disk (the open reads the graph, not the rows).
//! Run builders alternately, for figures that compare.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ndarray::Array2;
use palmlink_engine::{
    Candidate, Gallery, GraphBuilder, IndexOrigin, IndexPolicy, IndexState, Layout, MatchSettings,
    PalmSide, RecordIds, RowId, SearchQuery, Strategy, Template,
};

const EFS: [usize; 11] = [8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128];

/// The header of a peer benchmark `.npy` file (128 bytes).
const NPY_HEADER: usize = 128;

/// The payload of a peer benchmark `.npy` file.
fn npy_payload(path: &Path, dtype: &str) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check_header(path, &bytes, dtype);
    bytes[NPY_HEADER..].to_vec()
}

fn check_header(path: &Path, bytes: &[u8], dtype: &str) {
    assert!(bytes.starts_with(b"\x93NUMPY") && bytes.len() >= NPY_HEADER);
    let header = String::from_utf8_lossy(&bytes[10..NPY_HEADER]);
    assert!(header.contains(dtype), "{}: not {dtype}", path.display());
}

fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

fn f32s(path: &Path) -> Vec<f32> {
    le_f32s(&npy_payload(path, "'<f4'"))
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

fn policy(builder: GraphBuilder, efc: Option<usize>, at_open: bool) -> IndexPolicy {
    let mut policy = IndexPolicy {
        at_open,
        quantised_copy: false,
        ..IndexPolicy::default()
    };
    policy.params.builder = builder;
    if let Some(efc) = efc {
        policy.params.ef_construction = efc;
    }
    if let Ok(m) = std::env::var("GRAPH_QUALITY_M") {
        policy.params.max_connections = m.parse().expect("M");
    }
    policy
}

/// The gallery of the dump's first `rows` templates, made once, streaming
/// the dump 50,000 rows at a time.
fn gallery(dump: &Path, work: &Path, rows: Option<usize>, policy: IndexPolicy) -> Gallery {
    let len = Layout::DEFAULT.len();
    let path = dump.join("gallery.npy");
    let size = std::fs::metadata(&path).expect("gallery.npy").len() as usize;
    let all = (size - NPY_HEADER) / (4 * len);
    let n = rows.unwrap_or(all).min(all);
    let dir: PathBuf = work.join(format!("gallery-{n}"));
    if let Ok(g) = Gallery::open_with(&dir, policy) {
        if g.row_count() == n as u64 {
            return g;
        }
    }
    let mut file = std::fs::File::open(&path).expect("gallery.npy");
    let mut header = [0u8; NPY_HEADER];
    file.read_exact(&mut header).expect("header");
    check_header(&path, &header, "'<f4'");
    let _ = std::fs::remove_dir_all(&dir);
    drop(Gallery::create(&dir, Layout::DEFAULT).expect("create gallery"));
    let g = Gallery::open_with(&dir, policy).expect("open gallery");
    let t = Instant::now();
    let mut bytes = vec![0u8; 50_000 * len * 4];
    for start in (0..n).step_by(50_000) {
        let end = (start + 50_000).min(n);
        let chunk = &mut bytes[..(end - start) * len * 4];
        file.read_exact(chunk).expect("gallery rows");
        let values = le_f32s(chunk);
        let templates: Vec<Template> = values
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
    println!("{n} templates copied in {:.1} s", t.elapsed().as_secs_f64());
    g
}

/// The exact top 10 rows of every probe by the f32 scan, kept in
/// `<work>/truth-<n>.txt` (one line of rows a probe) once taken.
fn exact_rows(g: &Gallery, work: &Path, probes: &Array2<f32>) -> Vec<Vec<u64>> {
    let path = work.join(format!("truth-{}.txt", g.row_count()));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let rows: Vec<Vec<u64>> = text
            .lines()
            .map(|l| l.split(' ').filter_map(|r| r.parse().ok()).collect())
            .collect();
        if rows.len() == probes.nrows() {
            return rows;
        }
    }
    let t = Instant::now();
    let rows: Vec<Vec<u64>> = candidates(g, probes, Strategy::F32Scan)
        .iter()
        .map(|c| c.iter().map(|c| c.row.0).collect())
        .collect();
    println!("exact top 10 in {:.1} s", t.elapsed().as_secs_f64());
    let text: Vec<String> = rows
        .iter()
        .map(|r| r.iter().map(u64::to_string).collect::<Vec<_>>().join(" "))
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").expect("truth file");
    rows
}

/// Anonymous resident memory of this process, from `/proc/self/status`.
fn resident_anon() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident bytes of each file of `dir` mapped by this process, from
/// `/proc/self/smaps`, by file name: the largest of its mappings (the rows'
/// file is mapped twice, both views sharing its page cache, so a sum would
/// count a page read through both twice).
fn resident_files(dir: &Path) -> Vec<(String, usize)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut by_file: std::collections::BTreeMap<String, usize> = Default::default();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            current = words
                .nth(4)
                .map(Path::new)
                .filter(|p| p.parent() == Some(dir.as_path()))
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned());
        } else if first == "Rss:" {
            if let (Some(name), Some(kb)) = (&current, words.next()) {
                let bytes = by_file.entry(name.clone()).or_default();
                *bytes = (*bytes).max(kb.parse::<usize>().unwrap_or(0) * 1024);
            }
        }
    }
    by_file.into_iter().collect()
}

/// Prints the process's resident memory per template, and the mapped
/// files' share of it.
fn print_resident(when: &str, g: &Gallery) {
    let n = g.row_count().max(1) as usize;
    let anon = resident_anon();
    let files = resident_files(g.dir());
    let file: usize = files.iter().map(|(_, bytes)| bytes).sum();
    let files: Vec<String> = files
        .iter()
        .map(|(name, bytes)| format!("{name} {}", bytes / n))
        .collect();
    println!(
        "resident {when}: {} B/template anonymous, {} B/template of the gallery's files ({})",
        anon / n,
        file / n,
        files.join(", ")
    );
}

fn candidates(g: &Gallery, probes: &Array2<f32>, strategy: Strategy) -> Vec<Vec<Candidate>> {
    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    g.search_batch_with(probes.view(), &q, strategy)
        .expect("search")
        .into_iter()
        .map(|out| out.candidates)
        .collect()
}

/// Prints the times of 1:1 comparisons, one per probe, against its mate's
/// row or, for an impostor, a row spread over the gallery: rows read here
/// and there, as verifications read them (after a drop of the page cache,
/// from disk).
fn compare_times(g: &Gallery, probes: &Array2<f32>, mates: &[Option<u64>]) {
    let settings = MatchSettings::default_for(Layout::DEFAULT);
    let n = g.row_count().max(1);
    let mut ms: Vec<f64> = probes
        .rows()
        .into_iter()
        .zip(mates)
        .enumerate()
        .map(|(i, (row, mate))| {
            let probe =
                Template::from_f32(Layout::DEFAULT, row.as_slice().expect("row")).expect("probe");
            let target = mate.unwrap_or((i as u64 * 7_919_993) % n);
            let t = Instant::now();
            std::hint::black_box(g.compare(&probe, RowId(target), &settings).ok());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "1:1 comparisons of {} probes: p50 {:.3} ms, p99 {:.3} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() * 99 / 100]
    );
}

/// The time of each probe's search with `ef`, one query at a time, in ms.
fn single_query_ms(g: &Gallery, probes: &Array2<f32>, q: &SearchQuery, ef: usize) -> Vec<f64> {
    probes
        .rows()
        .into_iter()
        .map(|row| {
            let probe =
                Template::from_f32(Layout::DEFAULT, row.as_slice().expect("row")).expect("probe");
            let t = Instant::now();
            std::hint::black_box(g.search_with(&probe, q, Strategy::Hnsw { ef }).ok());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dump, work, mode, rest @ ..] = args.as_slice() else {
        panic!("usage: graph_quality <dump> <work dir> <native|hnsw_rs|saved> [efC] [rows]");
    };
    let (builder, saved) = match mode.as_str() {
        "native" => (GraphBuilder::Native, false),
        "hnsw_rs" => (GraphBuilder::HnswRs, false),
        "saved" => (GraphBuilder::Native, true),
        other => panic!("unknown mode {other}"),
    };
    let efc = rest.first().map(|v| v.parse().expect("efConstruction"));
    let rows = rest.get(1).map(|v| v.parse().expect("rows"));
    let (dump, work) = (Path::new(dump), Path::new(work));
    let t = Instant::now();
    let g = gallery(dump, work, rows, policy(builder, efc, saved));
    if saved {
        let open_s = t.elapsed().as_secs_f64();
        while g.index_info().state != IndexState::Ready {
            assert!(
                !matches!(g.index_info().state, IndexState::Failed(_)),
                "no saved graph"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let serving_s = t.elapsed().as_secs_f64();
        assert!(
            g.wait_for_index(Duration::from_secs(3600)),
            "no saved graph"
        );
        let info = g.index_info();
        assert!(
            info.keys_checked && info.origin == Some(IndexOrigin::Loaded),
            "{info:?}"
        );
        println!(
            "opened in {open_s:.2} s, saved graph ready (serving) {serving_s:.2} s and its keys \
             checked {:.2} s after the open began",
            t.elapsed().as_secs_f64(),
        );
        print_resident("when ready", &g);
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
    let exact = exact_rows(&g, work, &probes);
    println!(
        "{n} templates, {} probes ({} with a mate in the gallery)",
        mates.len(),
        mates.iter().flatten().count(),
    );

    if !saved {
        let rss0 = resident_anon();
        let peak = AtomicUsize::new(rss0);
        let done = AtomicBool::new(false);
        let t = Instant::now();
        let info = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(resident_anon(), Ordering::Relaxed);
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
    }

    if saved {
        compare_times(&g, &probes, &mates);
    }
    let q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    let efs: Vec<usize> = match std::env::var("GRAPH_QUALITY_EFS") {
        Ok(list) => list.split(',').map(|v| v.parse().expect("ef")).collect(),
        Err(_) => EFS.to_vec(),
    };
    let mut smallest = None;
    for &ef in &efs {
        let mut ms = single_query_ms(&g, &probes, &q, ef);
        let got = candidates(&g, &probes, Strategy::Hnsw { ef });
        let (mut found, mut missed, mut overlap) = (0, 0, 0);
        for ((got, truth), mate) in got.iter().zip(&exact).zip(&mates) {
            overlap += truth
                .iter()
                .filter(|&&row| got.iter().any(|h| h.row.0 == row))
                .count();
            if let Some(mate) = mate {
                if truth.first() == Some(mate) {
                    found += 1;
                    if got.first().map(|c| c.row.0) != Some(*mate) {
                        missed += 1;
                    }
                }
            }
        }
        ms.sort_by(f64::total_cmp);
        if missed == 0 && smallest.is_none() {
            smallest = Some(ef);
        }
        println!(
            "ef {ef}: mates missed {missed} of {found} exact finds; recall@10 {:.3}; \
             single query p50 {:.3} ms, p99 {:.3} ms",
            overlap as f64 / (10 * exact.len()) as f64,
            ms[ms.len() / 2],
            ms[ms.len() * 99 / 100]
        );
    }
    match smallest {
        Some(ef) => println!("smallest ef missing no mate: {ef}"),
        None => println!("smallest ef missing no mate: above {efs:?}"),
    }
    print_resident("after the searches", &g);
}
