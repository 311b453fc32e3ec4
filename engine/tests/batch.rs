//! The batch API against the one-at-a-time API it batches: the score matrix
//! against `compare`, entry by entry and bit for bit; a batch of searches
//! against one search per probe, outcome by outcome, with every strategy;
//! and malformed matrices as typed errors.

mod common;

use ndarray::Array2;
use palmlink_engine::{
    Gallery, GalleryError, Layout, MatchSettings, PalmSide, RowId, SearchFilter, SearchMode,
    SearchQuery, Strategy, Template, TemplateError,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{duplicate_and_delete, gallery, genuine, identity, ids, manual};

/// `probes` as a matrix, one template's values per row.
fn matrix(layout: Layout, probes: &[Template]) -> Array2<f32> {
    let values: Vec<f32> = probes.iter().flat_map(|p| p.as_slice().to_vec()).collect();
    Array2::from_shape_vec((probes.len(), layout.len()), values).unwrap()
}

/// The templates the batch API makes of the rows of `matrix(layout, probes)`: the probes
/// the one-at-a-time calls take as the reference. A row is normalised as it is read, and a
/// template's values normalised again may differ from them in the last bit.
fn as_read(layout: Layout, probes: &[Template]) -> Vec<Template> {
    probes
        .iter()
        .map(|p| Template::from_f32(layout, p.as_slice()).unwrap())
        .collect()
}

/// Genuine probes of random rows and fresh identities, alternately.
fn probes(rng: &mut StdRng, templates: &[Template], count: usize, layout: Layout) -> Vec<Template> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                let mate = rng.random_range(0..templates.len());
                genuine(rng, &templates[mate])
            } else {
                identity(rng, layout)
            }
        })
        .collect()
}

/// Checks every outcome of a batch against the one-at-a-time search.
fn same_as_one_at_a_time(
    g: &Gallery,
    probes: &[Template],
    q: &SearchQuery,
    strategy: Strategy,
) -> Result<(), TestCaseError> {
    let layout = g.layout();
    let batch = g
        .search_batch_with(matrix(layout, probes).view(), q, strategy)
        .unwrap();
    prop_assert_eq!(batch.len(), probes.len());
    for (probe, out) in as_read(layout, probes).iter().zip(&batch) {
        let one = g.search_with(probe, q, strategy).unwrap();
        prop_assert_eq!(&out.candidates, &one.candidates);
        prop_assert_eq!((out.mode, out.strategy), (one.mode, one.strategy));
        prop_assert_eq!(out.gallery_size, one.gallery_size);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every entry of the score matrix is the mean `compare` reports for
    /// that probe and row, bit for bit, on random galleries with duplicates
    /// and deletions; a deleted row among the columns is an error.
    #[test]
    fn score_matrix_is_compare_entry_by_entry(
        n in 1usize..120,
        seed in any::<u64>(),
        count in 0usize..7,
        columns in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        deletes in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        small_layout in any::<bool>(),
    ) {
        let layout = if small_layout { Layout::new(3, 20).unwrap() } else { Layout::DEFAULT };
        let dir = tempfile::tempdir().unwrap();
        let (g, templates) = gallery(dir.path(), n, seed, layout, manual());
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let deleted = duplicate_and_delete(&g, &templates, 3, &deletes, &mut rng);
        let live: Vec<RowId> = (0..g.row_count())
            .filter(|r| !deleted.contains(r))
            .map(RowId)
            .collect();
        let rows: Vec<RowId> = columns.iter().map(|c| live[c.index(live.len())]).collect();
        let probes = probes(&mut rng, &templates, count, layout);
        let settings = MatchSettings::default_for(layout);
        let scores = g.score_matrix(matrix(layout, &probes).view(), &rows).unwrap();
        prop_assert_eq!(scores.dim(), (probes.len(), rows.len()));
        for (i, probe) in as_read(layout, &probes).iter().enumerate() {
            for (j, &row) in rows.iter().enumerate() {
                let one = g.compare(probe, row, &settings).unwrap();
                prop_assert_eq!(scores[[i, j]].to_bits(), one.mean.to_bits());
            }
        }
        if let Some(&gone) = deleted.first() {
            let mut with_gone = rows.clone();
            with_gone.push(RowId(gone));
            prop_assert!(matches!(
                g.score_matrix(matrix(layout, &probes).view(), &with_gone),
                Err(GalleryError::Deleted(RowId(r))) if r == gone
            ));
        }
    }

    /// A batch of searches gives, probe by probe, the outcome of one search
    /// per probe, with every strategy, filters, deletions and ties.
    #[test]
    fn a_batch_of_searches_is_one_search_per_probe(
        n in 1usize..300,
        seed in any::<u64>(),
        count in 0usize..20,
        top_k in 1usize..30,
        dupes in 0usize..10,
        deletes in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        palm in proptest::option::of(any::<bool>()),
        by_user in any::<bool>(),
    ) {
        let layout = Layout::DEFAULT;
        let dir = tempfile::tempdir().unwrap();
        let (g, templates) = gallery(dir.path(), n, seed, layout, manual());
        let mut rng = StdRng::seed_from_u64(seed ^ 0xba7c);
        duplicate_and_delete(&g, &templates, dupes, &deletes, &mut rng);
        let mut q = SearchQuery::new(top_k, MatchSettings::default_for(layout));
        q.filter = SearchFilter {
            palm: palm.map(|l| if l { PalmSide::Left } else { PalmSide::Right }),
            user_key: by_user.then(|| ids(rng.random_range(0..n) as u64).user_key),
        };
        let probes = probes(&mut rng, &templates, count, layout);
        for strategy in [
            Strategy::F32Scan,
            Strategy::QuantisedScan,
            Strategy::PassingScan,
            Strategy::SketchPrefilter { rescore: 32 },
        ] {
            same_as_one_at_a_time(&g, &probes, &q, strategy)?;
        }
    }
}

/// On a gallery large enough for the parallel paths, the batched f32 scan
/// (one pass for every probe) gives each probe's own f32 scan, and a batch
/// in `Auto` mode runs what one search runs.
#[test]
fn the_batched_f32_scan_matches_at_scale() {
    let layout = Layout::DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let (g, templates) = gallery(dir.path(), 20_000, 7, layout, manual());
    let mut rng = StdRng::seed_from_u64(8);
    let probes = probes(&mut rng, &templates, 40, layout);
    let q = SearchQuery::new(10, MatchSettings::default_for(layout));
    same_as_one_at_a_time(&g, &probes, &q, Strategy::F32Scan).unwrap();
    let batch = g.search_batch(matrix(layout, &probes).view(), &q).unwrap();
    for (probe, out) in as_read(layout, &probes).iter().zip(&batch) {
        let one = g.search(probe, &q).unwrap();
        assert_eq!(out.candidates, one.candidates);
        assert_eq!((out.mode, out.strategy), (SearchMode::Exact, one.strategy));
    }
}

/// A matrix of the wrong width, and rows that are not templates, are typed
/// errors naming what is wrong; an empty matrix is an empty answer.
#[test]
fn malformed_matrices_are_typed_errors() {
    let layout = Layout::new(2, 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (g, _) = gallery(dir.path(), 5, 1, layout, manual());
    let q = SearchQuery::new(3, MatchSettings::default_for(layout));
    let rows = [RowId(0), RowId(4)];
    let narrow = Array2::<f32>::ones((2, 7));
    assert!(matches!(
        g.score_matrix(narrow.view(), &rows),
        Err(GalleryError::ProbeWidth {
            expected: 8,
            actual: 7
        })
    ));
    assert!(matches!(
        g.search_batch(narrow.view(), &q),
        Err(GalleryError::ProbeWidth {
            expected: 8,
            actual: 7
        })
    ));
    let mut bad = Array2::<f32>::ones((3, 8));
    bad[[1, 6]] = f32::NAN;
    assert!(matches!(
        g.score_matrix(bad.view(), &rows),
        Err(GalleryError::InvalidProbe {
            index: 1,
            source: TemplateError::NonFinite { block: 1, index: 2 }
        })
    ));
    let mut zero = Array2::<f32>::ones((3, 8));
    zero.row_mut(2).fill(0.0);
    assert!(matches!(
        g.search_batch(zero.view(), &q),
        Err(GalleryError::InvalidProbe {
            index: 2,
            source: TemplateError::ZeroNormBlock { block: 0 }
        })
    ));
    assert!(matches!(
        g.score_matrix(Array2::<f32>::ones((1, 8)).view(), &[RowId(99)]),
        Err(GalleryError::UnknownRow(RowId(99)))
    ));
    let none = Array2::<f32>::zeros((0, 8));
    assert_eq!(g.score_matrix(none.view(), &rows).unwrap().dim(), (0, 2));
    assert!(g.search_batch(none.view(), &q).unwrap().is_empty());
    // A view that is not in standard order (a transpose) reads the same.
    let probes = Array2::from_shape_fn((8, 3), |(v, p)| (v * 3 + p) as f32 + 1.0);
    let by_rows = probes.t().to_owned();
    assert_eq!(
        g.score_matrix(probes.t(), &rows).unwrap(),
        g.score_matrix(by_rows.view(), &rows).unwrap()
    );
}
