//! The passing scan against the f32 scan: every row whose exact scores pass
//! the decision is returned, up to `top_k`, in exact order, with identical
//! scores; deleted rows never; rows inserted after the compact copy was
//! derived, or not yet covered by it, are found.
//!
//! Data as in `search_at_scale.rs`: random identities, genuine probes are a
//! mate plus Gaussian noise (per-block cosine about 0.9), impostors are fresh
//! identities.

mod common;

use std::time::Duration;

use palmlink_engine::MAX_TOP_K;
use palmlink_engine::{
    Candidate, Gallery, Layout, MatchPolicy, MatchSettings, PalmSide, SearchFilter, SearchMode,
    SearchQuery, Strategy, Template,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{duplicate_and_delete, gallery, genuine, identity, ids, manual};

/// Checks the guarantee for one probe: the passing rows of the passing scan
/// are the first `min(|P|, top_k)` passing rows of the f32 scan's full
/// ranking, with identical candidates; every other candidate is the f32
/// scan's own; at most `top_k`, sorted, no row twice. Returns `|P|`.
fn check(g: &Gallery, probe: &Template, q: &SearchQuery) -> Result<usize, TestCaseError> {
    let mut all = q.clone();
    all.top_k = MAX_TOP_K;
    let full = g.search_with(probe, &all, Strategy::F32Scan).unwrap();
    if let Some(last) = full.candidates.get(MAX_TOP_K - 1) {
        // Truncated: no row below it can pass (a passing row's mean is at
        // least the mean threshold under the policies the scan serves).
        let t = q.settings.thresholds();
        let mean = t.iter().sum::<f32>() / t.len() as f32;
        prop_assert!(last.confidence < mean - 1e-4, "the ranking is too short");
    }
    let out = g.search_with(probe, q, Strategy::PassingScan).unwrap();
    prop_assert_eq!(out.mode, SearchMode::Exact);
    prop_assert_eq!(out.strategy, Strategy::PassingScan);
    let passing: Vec<&Candidate> = full
        .candidates
        .iter()
        .filter(|c| c.comparison.matched)
        .collect();
    let want: Vec<&Candidate> = passing.iter().copied().take(q.top_k).collect();
    let got: Vec<&Candidate> = out
        .candidates
        .iter()
        .filter(|c| c.comparison.matched)
        .collect();
    prop_assert_eq!(got, want);
    prop_assert!(out.candidates.len() <= q.top_k);
    for c in &out.candidates {
        match full.candidates.iter().find(|e| e.row == c.row) {
            Some(exact) => prop_assert_eq!(c, exact, "not the f32 scan's candidate"),
            None => {
                // A fill candidate ranked below the f32 ranking's end: its
                // scores are still the exact 1:1 comparison's.
                let last = full.candidates.get(MAX_TOP_K - 1);
                prop_assert!(
                    last.is_some_and(|l| c.confidence <= l.confidence),
                    "a candidate the f32 scan ranks nowhere: {c:?}"
                );
                prop_assert!(!c.comparison.matched);
                let exact = g.compare(probe, c.row, &q.settings).unwrap();
                prop_assert_eq!(&c.comparison, &exact);
            }
        }
    }
    for w in out.candidates.windows(2) {
        prop_assert!(
            w[0].confidence > w[1].confidence
                || (w[0].confidence == w[1].confidence && w[0].row.0 < w[1].row.0),
            "not in exact order"
        );
    }
    Ok(passing.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random galleries, thresholds (from ones nothing reaches to ones every
    /// row passes), both policies it serves, filters, deletions and exact
    /// duplicates (ties): the guarantee holds and deleted rows never appear.
    #[test]
    fn passing_scan_returns_every_passing_row_in_exact_order(
        n in 1usize..400,
        seed in any::<u64>(),
        top_k in 1usize..40,
        dupes in 0usize..20,
        deletes in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        palm in proptest::option::of(any::<bool>()),
        by_user in any::<bool>(),
        small_layout in any::<bool>(),
        base in prop::sample::select(vec![-1.0f32, -0.2, 0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.95]),
        jitter in proptest::collection::vec(-0.1f32..0.1, 10),
        k_of_n in any::<bool>(),
    ) {
        let layout = if small_layout { Layout::new(3, 32).unwrap() } else { Layout::DEFAULT };
        let dir = tempfile::tempdir().unwrap();
        let (g, templates) = gallery(dir.path(), n, seed, layout, manual());
        let mut rng = StdRng::seed_from_u64(seed ^ 0xabc);
        let deleted = duplicate_and_delete(&g, &templates, dupes, &deletes, &mut rng);
        let thresholds: Vec<f32> = (0..layout.blocks)
            .map(|b| (base + jitter[b]).clamp(-1.0, 1.0))
            .collect();
        let policy = if k_of_n {
            MatchPolicy::KOfN { k: layout.blocks }
        } else {
            MatchPolicy::AllThresholds
        };
        let mut q = SearchQuery::new(top_k, MatchSettings::new(thresholds, policy).unwrap());
        q.mode = SearchMode::Ann;
        let mate = rng.random_range(0..n);
        q.filter = SearchFilter {
            palm: palm.map(|l| if l { PalmSide::Left } else { PalmSide::Right }),
            user_key: by_user.then(|| ids(mate as u64).user_key),
        };
        let probes = [
            genuine(&mut rng, &templates[mate]),
            identity(&mut rng, layout),
            templates[mate].clone(),
        ];
        for probe in &probes {
            check(&g, probe, &q)?;
            let out = g.search(probe, &q).unwrap();
            prop_assert_eq!(out.mode, SearchMode::Exact);
            prop_assert_eq!(out.strategy, Strategy::PassingScan);
            prop_assert!(out.candidates.iter().all(|c| !deleted.contains(&c.row.0)));
        }
    }
}

/// On a gallery large enough for the parallel path, with the default
/// settings: every passing template is returned, in exact order, and most
/// genuine probes do pass; `SearchMode::Ann` runs the passing scan, which
/// reports itself as exact; a policy
/// it cannot serve runs the quantised scan instead.
#[test]
fn passing_scan_keeps_every_passing_mate_at_scale() {
    let n = 20_000;
    let probes = if cfg!(debug_assertions) { 30 } else { 200 };
    let dir = tempfile::tempdir().unwrap();
    let (g, templates) = gallery(dir.path(), n, 101, Layout::DEFAULT, manual());
    let mut rng = StdRng::seed_from_u64(102);
    let mut q = SearchQuery::new(10, MatchSettings::default_for(Layout::DEFAULT));
    q.mode = SearchMode::Ann;
    let (mut passing, mut mates_first) = (0, 0);
    for i in 0..probes {
        let mate = rng.random_range(0..n);
        let probe = if i % 2 == 0 {
            genuine(&mut rng, &templates[mate])
        } else {
            identity(&mut rng, Layout::DEFAULT)
        };
        let exact = g.search_with(&probe, &q, Strategy::F32Scan).unwrap();
        let out = g.search(&probe, &q).unwrap();
        assert_eq!(out.mode, SearchMode::Exact);
        assert_eq!(out.strategy, Strategy::PassingScan);
        let want: Vec<&Candidate> = exact
            .candidates
            .iter()
            .filter(|c| c.comparison.matched)
            .collect();
        let got: Vec<&Candidate> = out
            .candidates
            .iter()
            .filter(|c| c.comparison.matched)
            .collect();
        assert_eq!(got, want);
        passing += want.len();
        if i % 2 == 0 && out.candidates.first().map(|c| c.row.0) == Some(mate as u64) {
            mates_first += 1;
        }
        if i % 2 == 1 {
            assert!(want.is_empty(), "an impostor passed");
        }
    }
    assert!(
        passing >= probes / 2 * 6 / 10,
        "only {passing} passing templates"
    );
    assert!(
        mates_first >= passing * 9 / 10,
        "{mates_first} of {passing}"
    );

    // Policies it cannot serve: the quantised scan runs (exact result).
    let probe = genuine(&mut rng, &templates[5]);
    for policy in [MatchPolicy::Mean, MatchPolicy::KOfN { k: 9 }] {
        let mut q = q.clone();
        q.settings =
            MatchSettings::new(MatchSettings::DEFAULT_THRESHOLDS.to_vec(), policy).unwrap();
        let out = g.search_with(&probe, &q, Strategy::PassingScan).unwrap();
        assert_eq!(out.mode, SearchMode::Exact);
        assert_eq!(out.strategy, Strategy::QuantisedScan);
        let exact = g.search_with(&probe, &q, Strategy::F32Scan).unwrap();
        assert_eq!(out.candidates, exact.candidates);
    }
}

/// Right after a reopen the compact copy is being derived (rows it does not
/// cover are scored in f32); rows inserted afterwards, filling a partial
/// group of 16 and beyond, are appended to it: the guarantee holds throughout
/// and every new row is found by its genuine probe.
#[test]
fn rows_not_yet_copied_and_rows_inserted_later_are_found() {
    let n = 3_001;
    let dir = tempfile::tempdir().unwrap();
    let (g, mut templates) = gallery(dir.path(), n, 111, Layout::DEFAULT, manual());
    drop(g);
    let mut rng = StdRng::seed_from_u64(112);
    let q = {
        let mut q = SearchQuery::new(5, MatchSettings::default_for(Layout::DEFAULT));
        q.mode = SearchMode::Ann;
        q
    };
    let probes: Vec<Template> = (0..10)
        .map(|_| {
            let mate = rng.random_range(0..n);
            genuine(&mut rng, &templates[mate])
        })
        .collect();
    let g = Gallery::open_with(dir.path(), manual()).unwrap();
    for p in &probes {
        check(&g, p, &q).unwrap();
    }
    let start = std::time::Instant::now();
    while g.quantised_rows() < g.row_count() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "copy never derived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in &probes {
        check(&g, p, &q).unwrap();
    }
    for i in 0..37 {
        let t = identity(&mut rng, Layout::DEFAULT);
        g.insert(ids((n + i) as u64), &t).unwrap();
        templates.push(t);
    }
    assert_eq!(g.quantised_rows(), g.row_count());
    for (row, t) in templates.iter().enumerate().skip(n) {
        // The template itself: every block scores 1.
        let out = g.search(t, &q).unwrap();
        assert_eq!(out.candidates[0].row.0, row as u64);
        assert!(out.candidates[0].comparison.matched);
        let p = genuine(&mut rng, t);
        let passes = check(&g, &p, &q).unwrap();
        if passes > 0 {
            let out = g.search(&p, &q).unwrap();
            assert_eq!(out.candidates[0].row.0, row as u64);
        }
    }
}
