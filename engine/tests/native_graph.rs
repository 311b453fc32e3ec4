//! The native graph builder through the gallery: a build reaches every
//! point and finds every mate, it leaves no file of the other builder, it
//! folds the tail into its own saved graph, and damaged or missing graph
//! files are refused and rebuilt, never trusted; a gallery served by its
//! graph alone holds no quantised copy.

mod common;

use std::path::Path;
use std::time::Duration;

use palmlink_engine::{
    Gallery, GraphBuilder, IndexOrigin, IndexPolicy, Layout, MatchPolicy, MatchSettings,
    SearchMode, SearchQuery, Strategy, Template,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{gallery, genuine, identity, manual};

/// A policy that builds with the native builder.
fn native(policy: IndexPolicy) -> IndexPolicy {
    let mut policy = policy;
    policy.params.builder = GraphBuilder::Native;
    policy
}

/// An approximate query the graph serves (the `mean` policy).
fn graph_query() -> SearchQuery {
    let settings = MatchSettings::new(
        MatchSettings::DEFAULT_THRESHOLDS.to_vec(),
        MatchPolicy::Mean,
    )
    .unwrap();
    let mut q = SearchQuery::new(1, settings);
    q.mode = SearchMode::Ann;
    q
}

/// Every one of `mates` (rows of `templates`) is found at rank 1 by a
/// genuine probe.
fn assert_mates_found(g: &Gallery, templates: &[Template], mates: &[usize], seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let q = graph_query();
    for &mate in mates {
        let out = g.search(&genuine(&mut rng, &templates[mate]), &q).unwrap();
        assert_eq!(out.mode, SearchMode::Ann);
        assert_eq!(out.candidates[0].row.0, mate as u64);
    }
}

/// A gallery of `n` identities with a native graph built and saved.
fn saved_native(n: usize, seed: u64) -> (tempfile::TempDir, Vec<Template>) {
    let dir = tempfile::tempdir().unwrap();
    let (g, templates) = gallery(dir.path(), n, seed, Layout::DEFAULT, native(manual()));
    let info = g.rebuild_index().unwrap();
    assert_eq!((info.points, info.orphans), (n, 0), "{info:?}");
    drop(g);
    (dir, templates)
}

#[test]
fn a_native_build_finds_every_mate_and_leaves_no_other_builder_files() {
    let (dir, templates) = saved_native(1000, 71);
    for name in ["hnsw.meta", "hnsw.hnsw.graph", "hnsw.hnsw.data"] {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
    let g = Gallery::open_with(dir.path(), native(IndexPolicy::default())).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(info.origin, Some(IndexOrigin::Loaded));
    assert_eq!((info.points, info.orphans, info.refused), (1000, 0, None));
    let all: Vec<usize> = (0..templates.len()).collect();
    assert_mates_found(&g, &templates, &all, 72);
}

#[test]
fn the_tail_is_folded_into_the_native_graph() {
    let n = 800;
    let (dir, mut templates) = saved_native(n, 73);
    let policy = native(IndexPolicy {
        fold_rows: 100,
        ..IndexPolicy::default()
    });
    let g = Gallery::open_with(dir.path(), policy).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let mut rng = StdRng::seed_from_u64(74);
    let more: Vec<Template> = (0..150)
        .map(|_| identity(&mut rng, Layout::DEFAULT))
        .collect();
    common::insert(&g, &more, n);
    templates.extend(more);
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(info.origin, Some(IndexOrigin::Loaded), "extended: {info:?}");
    assert_eq!((info.rows, info.tail_rows), (templates.len() as u64, 0));
    assert_eq!((info.points, info.orphans), (templates.len(), 0));
    let newest: Vec<usize> = (n - 50..templates.len()).collect();
    assert_mates_found(&g, &templates, &newest, 75);
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(
        (info.rows, info.tail_rows, info.refused),
        (templates.len() as u64, 0, None)
    );
}

type Harm = fn(&Path);

/// Damage to the flat graph: flipped bytes in its header, its keys and its
/// links, a truncated file, garbage, a missing file.
const FLAT_DAMAGE: [(&str, Harm); 6] = [
    ("flat header", |p| flip(&p.join("hnsw.flat"), 20)),
    ("flat keys", |p| flip(&p.join("hnsw.flat"), 4000)),
    ("flat links", |p| {
        let len = std::fs::metadata(p.join("hnsw.flat")).unwrap().len() as usize;
        flip(&p.join("hnsw.flat"), len - 300)
    }),
    ("flat truncated", |p| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(p.join("hnsw.flat"))
            .unwrap()
            .set_len(4000)
            .unwrap()
    }),
    ("flat garbage", |p| {
        std::fs::write(p.join("hnsw.flat"), [0x5au8; 4096]).unwrap()
    }),
    ("flat missing", |p| {
        std::fs::remove_file(p.join("hnsw.flat")).unwrap()
    }),
];

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

/// The native builder has no files but the flat graph: a damaged one is
/// refused (never a panic) and the graph rebuilt from the gallery, saved,
/// and mapped without complaint at the next open; a missing one is built
/// like that of a gallery never indexed.
#[test]
fn a_damaged_native_graph_is_rebuilt() {
    let mut rng = StdRng::seed_from_u64(77);
    for (what, harm) in FLAT_DAMAGE {
        let (dir, templates) = saved_native(500, 76);
        harm(dir.path());
        eprintln!("damage: {what}");
        let g = Gallery::open_with(dir.path(), native(IndexPolicy::default())).unwrap();
        let missing = what == "flat missing";
        if missing {
            // Nothing is saved, and the gallery is below the size built at
            // open: the first approximate search starts the build.
            assert!(!g.wait_for_index(Duration::from_secs(120)));
            g.search(&templates[0], &graph_query()).unwrap();
        }
        assert!(g.wait_for_index(Duration::from_secs(120)), "{what}");
        let info = g.index_info();
        assert_eq!(info.origin, Some(IndexOrigin::Built), "{what}: {info:?}");
        assert_eq!(info.refused.is_some(), !missing, "{what}");
        assert_eq!((info.points, info.orphans), (500, 0), "{what}");
        let some: Vec<usize> = (0..20).map(|_| rng.random_range(0..500)).collect();
        assert_mates_found(&g, &templates, &some, 78);
        drop(g);
        let g = Gallery::open_with(dir.path(), native(IndexPolicy::default())).unwrap();
        assert!(g.wait_for_index(Duration::from_secs(120)), "{what}");
        let info = g.index_info();
        assert_eq!(
            (info.origin, info.refused),
            (Some(IndexOrigin::Loaded), None)
        );
    }
}

/// An open that fails after taking the directory (its vectors file gone)
/// while the saved graph's own checks run beside it gives the directory
/// back and leaves the graph as it was: once the file is back, the next
/// open maps the saved graph.
#[test]
fn an_open_that_fails_beside_the_graph_check_leaves_the_graph_intact() {
    let (dir, templates) = saved_native(500, 81);
    let vectors = dir.path().join(palmlink_engine::format::VECTORS_FILE);
    let aside = dir.path().join("vectors.aside");
    std::fs::rename(&vectors, &aside).unwrap();
    assert!(Gallery::open_with(dir.path(), native(IndexPolicy::default())).is_err());
    std::fs::rename(&aside, &vectors).unwrap();
    let g = Gallery::open_with(dir.path(), native(IndexPolicy::default())).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    let info = g.index_info();
    assert_eq!(
        (info.origin, info.refused, info.points),
        (Some(IndexOrigin::Loaded), None, 500)
    );
    assert_mates_found(&g, &templates, &[0, 250, 499], 82);
}

/// Both builders write the same search form: a gallery whose graph
/// `hnsw_rs` made is rebuilt natively (the other builder's files removed),
/// and a gallery building with `hnsw_rs` then maps that graph.
#[test]
fn a_graph_of_either_builder_serves_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut reference = manual();
    reference.params.builder = GraphBuilder::HnswRs;
    let (g, mut templates) = gallery(dir.path(), 600, 79, Layout::DEFAULT, reference);
    g.rebuild_index().unwrap();
    assert!(dir.path().join("hnsw.meta").exists());
    drop(g);
    let g = Gallery::open_with(dir.path(), native(manual())).unwrap();
    let mut rng = StdRng::seed_from_u64(80);
    let more: Vec<Template> = (0..10)
        .map(|_| identity(&mut rng, Layout::DEFAULT))
        .collect();
    common::insert(&g, &more, 600);
    templates.extend(more);
    assert!(
        g.save_index().is_ok_and(|saved| !saved),
        "no index loaded yet"
    );
    g.rebuild_index().unwrap();
    assert_eq!(g.index_info().origin, Some(IndexOrigin::Built));
    assert!(!dir.path().join("hnsw.meta").exists());
    drop(g);
    let mut policy = IndexPolicy::default();
    policy.params.builder = GraphBuilder::HnswRs;
    let g = Gallery::open_with(dir.path(), policy).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    assert_eq!(
        g.index_info().origin,
        Some(IndexOrigin::Loaded),
        "the flat graph is shared"
    );
    let some: Vec<usize> = (590..610).collect();
    assert_mates_found(&g, &templates, &some, 81);
}

/// A gallery kept without the quantised copy holds none (after inserts and
/// after a reopen), its scans return exactly what the f32 scan returns, and
/// `Auto` runs the graph once it is ready, even for the default policy that
/// the passing scan serves when the copy is held.
#[test]
fn a_gallery_without_the_quantised_copy_scans_in_f32_and_serves_auto_by_the_graph() {
    let n = 1500;
    let without = IndexPolicy {
        quantised_copy: false,
        auto_ann_min_rows: 1000,
        ..native(manual())
    };
    let dir = tempfile::tempdir().unwrap();
    let (g, templates) = gallery(dir.path(), n, 79, Layout::DEFAULT, without);
    assert_eq!((g.quantised_rows(), g.quantised_bytes()), (0, 0));
    let mut rng = StdRng::seed_from_u64(80);
    let probes: Vec<Template> = (0..20)
        .map(|_| {
            let mate = rng.random_range(0..n);
            genuine(&mut rng, &templates[mate])
        })
        .collect();
    let q = SearchQuery::new(5, MatchSettings::default_for(Layout::DEFAULT));
    let rows_and_scores = |g: &Gallery, p: &Template, s: Strategy| -> Vec<(u64, u32)> {
        let out = g.search_with(p, &q, s).unwrap();
        out.candidates
            .iter()
            .map(|c| (c.row.0, c.confidence.to_bits()))
            .collect()
    };
    for p in &probes {
        let exact = rows_and_scores(&g, p, Strategy::F32Scan);
        assert_eq!(rows_and_scores(&g, p, Strategy::QuantisedScan), exact);
        assert_eq!(rows_and_scores(&g, p, Strategy::PassingScan), exact);
        assert_eq!(g.search(p, &q).unwrap().strategy, Strategy::QuantisedScan);
    }
    g.rebuild_index().unwrap();
    let ef = g.ann_params().ef_search;
    assert_eq!(
        g.search(&probes[0], &q).unwrap().strategy,
        Strategy::Hnsw { ef }
    );
    drop(g);

    let g = Gallery::open_with(
        dir.path(),
        IndexPolicy {
            at_open: true,
            ..without
        },
    )
    .unwrap();
    assert!(g.wait_for_index(Duration::from_secs(120)));
    assert_eq!((g.quantised_rows(), g.quantised_bytes()), (0, 0));
    for p in &probes {
        let out = g.search(p, &q).unwrap();
        assert_eq!(out.strategy, Strategy::Hnsw { ef });
        assert_eq!(
            out.candidates[0].row,
            g.search_with(p, &q, Strategy::F32Scan).unwrap().candidates[0].row
        );
    }
    drop(g);

    // The same gallery with the copy: it is held, and the passing scan serves `Auto`.
    let g = Gallery::open_with(
        dir.path(),
        native(IndexPolicy {
            auto_ann_min_rows: 1000,
            ..manual()
        }),
    )
    .unwrap();
    g.wait_for_quantised_copy();
    assert!(g.quantised_bytes() > 0);
    assert_eq!(
        g.search(&probes[0], &q).unwrap().strategy,
        Strategy::PassingScan
    );
}
