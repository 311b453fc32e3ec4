//! The files `hnsw_rs`, the reference builder, keeps beside the gallery
//! (`hnsw.meta`, `hnsw.hnsw.graph`, `hnsw.hnsw.data`) and the flat graph it
//! is flattened into: damage to either is never trusted and never causes a
//! panic, a stale index is rebuilt, and a flat graph that cannot be saved
//! still serves.

mod common;

use std::time::Duration;

use palmlink_engine::{
    Gallery, GraphBuilder, IndexOrigin, IndexPolicy, Layout, MatchPolicy, MatchSettings,
    SearchMode, SearchQuery, Template,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{gallery, genuine, identity, manual};

/// A query under the `mean` policy, which the passing scan cannot serve, so
/// that [`SearchMode::Ann`] runs the graph index.
fn graph_query(top_k: usize) -> SearchQuery {
    let settings = MatchSettings::new(
        MatchSettings::DEFAULT_THRESHOLDS.to_vec(),
        MatchPolicy::Mean,
    )
    .unwrap();
    SearchQuery::new(top_k, settings)
}

/// `policy` with `hnsw_rs` as the builder: the tests of the builder's own
/// files (`hnsw.meta`, `hnsw.hnsw.*`, which the native builder does not
/// write) use it.
fn by_hnsw_rs(policy: IndexPolicy) -> IndexPolicy {
    let mut policy = policy;
    policy.params.builder = GraphBuilder::HnswRs;
    policy
}

/// A gallery of `n` identities whose graph `hnsw_rs` built and saved, with
/// its own files beside the flat graph.
fn saved_reference_index(n: usize, seed: u64) -> (tempfile::TempDir, Vec<Template>) {
    let dir = tempfile::tempdir().unwrap();
    let policy = by_hnsw_rs(manual());
    let (g, templates) = gallery(dir.path(), n, seed, Layout::DEFAULT, policy);
    g.rebuild_index().unwrap();
    drop(g);
    (dir, templates)
}

/// Opens the gallery, waits for its index and checks how it came to be, that
/// the saved files were refused for a reason, and that it answers correctly;
/// then that the next open maps the saved flat graph without complaint
/// (both opens building with `hnsw_rs`).
fn assert_remade(dir: &std::path::Path, templates: &[Template], origin: IndexOrigin) {
    let open = || Gallery::open_with(dir, by_hnsw_rs(IndexPolicy::default())).unwrap();
    let g = open();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(info.origin, Some(origin), "{info:?}");
    assert!(info.refused.is_some());
    let mut q = graph_query(1);
    q.mode = SearchMode::Ann;
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let mate = rng.random_range(0..templates.len());
        let out = g.search(&genuine(&mut rng, &templates[mate]), &q).unwrap();
        assert_eq!(out.candidates[0].row.0, mate as u64);
    }
    drop(g);
    let g = open();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(info.origin, Some(IndexOrigin::Loaded));
    assert_eq!(info.refused, None, "{info:?}");
}

type Harm = fn(&std::path::Path);

/// Damage to the flat graph (`hnsw.flat`): flipped bytes in its header, its
/// keys and its links, a truncated file, garbage, a missing file.
const FLAT_DAMAGE: [(&str, Harm); 6] = [
    ("flat header", |p| flip(&p.join("hnsw.flat"), 20)),
    ("flat keys", |p| flip(&p.join("hnsw.flat"), 4000)),
    ("flat links", |p| flip_from_end(&p.join("hnsw.flat"), 300)),
    ("flat truncated", |p| truncate(&p.join("hnsw.flat"), 4000)),
    ("flat garbage", |p| {
        std::fs::write(p.join("hnsw.flat"), [0x5au8; 4096]).unwrap()
    }),
    ("flat missing", |p| {
        std::fs::remove_file(p.join("hnsw.flat")).unwrap()
    }),
];

/// Damage to the builder's graph files.
const BUILDER_DAMAGE: [(&str, Harm); 5] = [
    ("graph bytes", |p| flip(&p.join("hnsw.hnsw.graph"), 200)),
    ("data bytes", |p| flip(&p.join("hnsw.hnsw.data"), 5000)),
    ("meta truncated", |p| truncate(&p.join("hnsw.meta"), 40)),
    ("meta garbage", |p| {
        std::fs::write(p.join("hnsw.meta"), [0x5au8; 80]).unwrap()
    }),
    ("graph missing", |p| {
        std::fs::remove_file(p.join("hnsw.hnsw.graph")).unwrap()
    }),
];

/// A damaged flat graph is never trusted and never causes a panic: it is
/// flattened again from the builder's saved graph (as for a gallery saved
/// before the flat form existed), and saved.
#[test]
fn a_damaged_flat_graph_is_flattened_again() {
    for (what, harm) in FLAT_DAMAGE {
        let (dir, templates) = saved_reference_index(600, 41);
        harm(dir.path());
        eprintln!("damage: {what}");
        assert_remade(dir.path(), &templates, IndexOrigin::Loaded);
    }
}

/// With the flat graph and the builder's files both damaged, the index is
/// rebuilt from the gallery: flipped bytes in the graph and the data, a
/// truncated or garbage metadata file, a missing file.
#[test]
fn damaged_index_files_are_rebuilt() {
    for (what, harm) in BUILDER_DAMAGE {
        let (dir, templates) = saved_reference_index(600, 41);
        FLAT_DAMAGE[1].1(dir.path());
        harm(dir.path());
        eprintln!("damage: {what}");
        assert_remade(dir.path(), &templates, IndexOrigin::Built);
    }
}

/// An intact flat graph is used even when the builder's files are damaged;
/// the damage only shows when the tail is folded in, which then rebuilds.
#[test]
fn builder_damage_waits_for_the_next_fold() {
    let (dir, mut templates) = saved_reference_index(600, 42);
    BUILDER_DAMAGE[0].1(dir.path());
    let policy = by_hnsw_rs(IndexPolicy {
        fold_rows: 50,
        ..IndexPolicy::default()
    });
    let g = Gallery::open_with(dir.path(), policy).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    assert_eq!(g.index_info().origin, Some(IndexOrigin::Loaded));
    assert_eq!(g.index_info().refused, None);
    let mut rng = StdRng::seed_from_u64(43);
    let more: Vec<Template> = (0..60)
        .map(|_| identity(&mut rng, Layout::DEFAULT))
        .collect();
    common::insert(&g, &more, 600);
    templates.extend(more);
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(info.origin, Some(IndexOrigin::Built), "{info:?}");
    assert!(info.refused.is_some_and(|r| r.contains("checksum")));
    assert_eq!((info.rows, info.tail_rows, info.points), (660, 0, 660));
}

/// A flat graph that cannot be saved (here its path is a non-empty
/// directory) still serves from memory; the next open, finding no flat file,
/// flattens the saved builder graph again.
#[test]
fn an_unsaved_flat_graph_still_serves() {
    let n = 600;
    let dir = tempfile::tempdir().unwrap();
    let (g, templates) = gallery(dir.path(), n, 44, Layout::DEFAULT, by_hnsw_rs(manual()));
    let blocker = dir.path().join("hnsw.flat");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), b"x").unwrap();
    let info = g.rebuild_index().unwrap();
    assert_eq!((info.origin, info.points), (Some(IndexOrigin::Built), n));
    assert!(
        blocker.is_dir(),
        "the save cannot have replaced the directory"
    );
    let mut rng = StdRng::seed_from_u64(45);
    let mut q = graph_query(1);
    q.mode = SearchMode::Ann;
    for (r, t) in templates.iter().enumerate().step_by(37) {
        let out = g.search(&genuine(&mut rng, t), &q).unwrap();
        assert_eq!(out.mode, SearchMode::Ann);
        assert_eq!(out.candidates[0].row.0, r as u64);
    }
    drop(g);
    std::fs::remove_dir_all(&blocker).unwrap();
    assert_remade(dir.path(), &templates, IndexOrigin::Loaded);
}

/// An index saved for other records (a copied or replaced gallery) or for more
/// rows than the gallery holds is stale and rebuilt.
#[test]
fn stale_index_files_are_rebuilt() {
    let (other, _) = saved_reference_index(700, 51);
    let (mine, templates) = saved_reference_index(600, 52);
    for f in [
        "hnsw.flat",
        "hnsw.meta",
        "hnsw.hnsw.graph",
        "hnsw.hnsw.data",
    ] {
        std::fs::copy(other.path().join(f), mine.path().join(f)).unwrap();
    }
    assert_remade(mine.path(), &templates, IndexOrigin::Built);
}

fn flip(path: &std::path::Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

fn flip_from_end(path: &std::path::Path, back: usize) {
    let len = std::fs::metadata(path).unwrap().len() as usize;
    flip(path, len.saturating_sub(back));
}

fn truncate(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}
