//! Gallery behaviour: persistence, deletion, errors, concurrency and exact 1:N.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use common::{ids, noisy, random_template, rng};
use palmlink_engine::format::{RECORDS_FILE, SLOT_B_OFFSET, VECTORS_FILE};
use palmlink_engine::kernels::reference;
use palmlink_engine::{
    Gallery, GalleryError, IndexPolicy, Layout, MatchPolicy, MatchSettings, PalmSide, RowId,
    SearchFilter, SearchQuery, Template,
};
use proptest::prelude::*;

fn small_layout() -> Layout {
    Layout::new(4, 16).unwrap()
}

fn fill(gallery: &Gallery, n: u64, seed: u64) -> Vec<Template> {
    let mut r = rng(seed);
    let templates: Vec<Template> = (0..n)
        .map(|_| random_template(&mut r, gallery.layout()))
        .collect();
    let items: Vec<_> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| (ids(i as u64), t))
        .collect();
    let rows = gallery.insert_batch(&items).unwrap();
    assert_eq!(rows, (0..n).map(RowId).collect::<Vec<_>>());
    templates
}

#[test]
fn inserts_survive_reopen_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let templates = {
        let g = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
        fill(&g, 3000, 1) // past the initial capacity: exercises growth
    };
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.live_count(), 3000);
    assert_eq!(g.layout(), Layout::DEFAULT);
    for (i, t) in templates.iter().enumerate() {
        let (got_ids, got) = g.get(RowId(i as u64)).unwrap().unwrap();
        assert_eq!(got_ids, ids(i as u64));
        assert_eq!(&got, t);
    }
    assert!(matches!(
        g.get(RowId(3000)),
        Err(GalleryError::UnknownRow(RowId(3000)))
    ));
}

#[test]
fn delete_tombstones_erases_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_layout();
    {
        let g = Gallery::create(dir.path(), layout).unwrap();
        fill(&g, 10, 2);
        assert!(g.delete(RowId(3)).unwrap());
        assert!(!g.delete(RowId(3)).unwrap(), "second delete is a no-op");
        assert!(matches!(
            g.delete(RowId(10)),
            Err(GalleryError::UnknownRow(_))
        ));
        assert_eq!(g.live_count(), 9);
    }
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.live_count(), 9);
    assert_eq!(g.get(RowId(3)).unwrap(), None);
    let settings = MatchSettings::default_for(layout);
    let probe = g.get(RowId(4)).unwrap().unwrap().1;
    assert!(matches!(
        g.compare(&probe, RowId(3), &settings),
        Err(GalleryError::Deleted(RowId(3)))
    ));
    assert!(g.live_records().iter().all(|(row, _)| *row != RowId(3)));
    // Erasure: the deleted row's vector bytes are zero on disk.
    let bytes = std::fs::read(dir.path().join(VECTORS_FILE)).unwrap();
    let stride = 4 * 16 * 4;
    let start = 4096 + 3 * stride;
    assert!(bytes[start..start + stride].iter().all(|&b| b == 0));
    assert!(bytes[start + stride..start + 2 * stride]
        .iter()
        .any(|&b| b != 0));
}

#[test]
fn compare_matches_scalar_cosines() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
    let templates = fill(&g, 5, 3);
    let mut r = rng(4);
    let probe = noisy(&mut r, &templates[2], 0.3);
    let settings = MatchSettings::new(vec![0.5; 10], MatchPolicy::KOfN { k: 8 }).unwrap();
    let c = g.compare(&probe, RowId(2), &settings).unwrap();
    let expected = reference::block_scores(&probe, &templates[2]);
    for (got, want) in c.scores.iter().zip(&expected) {
        assert!((got - want).abs() < 1e-5);
    }
    assert_eq!(c.matched, settings.decide(&c.scores));
}

#[test]
fn wrong_layouts_and_queries_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
    fill(&g, 2, 5);
    let other = random_template(&mut rng(1), small_layout());
    assert!(matches!(
        g.insert(ids(9), &other),
        Err(GalleryError::LayoutMismatch { .. })
    ));
    let probe = random_template(&mut rng(1), Layout::DEFAULT);
    let bad = MatchSettings::new(vec![0.5; 4], MatchPolicy::AllThresholds).unwrap();
    assert!(matches!(
        g.compare(&probe, RowId(0), &bad),
        Err(GalleryError::InvalidQuery(_))
    ));
    let settings = MatchSettings::default_for(Layout::DEFAULT);
    for k in [0, 1001] {
        assert!(matches!(
            g.search(&probe, &SearchQuery::new(k, settings.clone())),
            Err(GalleryError::InvalidQuery(_))
        ));
    }
    assert!(matches!(
        Gallery::create(dir.path(), Layout::DEFAULT),
        Err(GalleryError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Gallery::open(&dir.path().join("nothing")),
        Err(GalleryError::NotFound { .. })
    ));
}

#[test]
fn a_second_handle_on_one_gallery_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), small_layout()).unwrap();
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::Locked { .. })
    ));
    drop(g);
    Gallery::open(dir.path()).unwrap();
}

#[test]
fn a_gallery_created_with_a_policy_is_open_under_it_and_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = IndexPolicy::default();
    policy.params.ef_search = 333;
    let g = Gallery::create_with(dir.path(), small_layout(), policy).unwrap();
    assert_eq!(g.ann_params().ef_search, 333);
    // Never let go of between the create and the use: no other handle gets it.
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::Locked { .. })
    ));
    let t = random_template(&mut rng(5), small_layout());
    g.insert(ids(1), &t).unwrap();
    assert_eq!(g.live_count(), 1);
    drop(g);

    // Opened when it is there, created open when it is not, under the policy either way.
    let g = Gallery::open_or_create_with(dir.path(), small_layout(), policy).unwrap();
    assert_eq!((g.live_count(), g.ann_params().ef_search), (1, 333));
    let fresh = dir.path().join("fresh");
    let h = Gallery::open_or_create_with(&fresh, small_layout(), policy).unwrap();
    assert_eq!((h.live_count(), h.ann_params().ef_search), (0, 333));
    assert!(matches!(
        Gallery::open(&fresh),
        Err(GalleryError::Locked { .. })
    ));
}

#[test]
fn empty_batch_and_empty_gallery_search() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), small_layout()).unwrap();
    assert_eq!(g.insert_batch(&[]).unwrap(), vec![]);
    let probe = random_template(&mut rng(1), small_layout());
    let out = g
        .search(
            &probe,
            &SearchQuery::new(5, MatchSettings::default_for(small_layout())),
        )
        .unwrap();
    assert!(out.candidates.is_empty());
    assert_eq!(out.gallery_size, 0);
}

// ---- corruption ----------------------------------------------------------

fn corrupt_at(path: &std::path::Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn made_gallery(rows: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), small_layout()).unwrap();
    fill(&g, rows, 7);
    dir
}

#[test]
fn truncated_files_are_corrupt_not_a_panic() {
    for (file, len) in [
        (RECORDS_FILE, 100u64),
        (VECTORS_FILE, 100),
        (VECTORS_FILE, 4096 + 256 * 3),
        (RECORDS_FILE, 4096 + 64 * 3),
    ] {
        let dir = made_gallery(8);
        let f = OpenOptions::new()
            .write(true)
            .open(dir.path().join(file))
            .unwrap();
        f.set_len(len).unwrap();
        drop(f);
        match Gallery::open(dir.path()) {
            Err(GalleryError::Corrupt { reason, .. }) => {
                assert!(reason.contains("truncated"), "{file} {len}: {reason}")
            }
            other => panic!("{file} truncated to {len}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn missing_vectors_file_is_corrupt() {
    let dir = made_gallery(2);
    std::fs::remove_file(dir.path().join(VECTORS_FILE)).unwrap();
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::Corrupt { .. })
    ));
}

#[test]
fn flipped_header_bytes_are_detected() {
    // Vector header: magic, layout, checksum.
    for offset in [0u64, 12, 60] {
        let dir = made_gallery(2);
        corrupt_at(&dir.path().join(VECTORS_FILE), offset, &[0xFF]);
        assert!(
            matches!(Gallery::open(dir.path()), Err(GalleryError::Corrupt { .. })),
            "vectors header byte {offset}"
        );
    }
    // Both commit slots damaged: nothing to trust.
    let dir = made_gallery(2);
    corrupt_at(&dir.path().join(RECORDS_FILE), 30, &[0xAA]);
    corrupt_at(
        &dir.path().join(RECORDS_FILE),
        SLOT_B_OFFSET as u64 + 30,
        &[0xAA],
    );
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::Corrupt { .. })
    ));
}

#[test]
fn a_damaged_current_slot_falls_back_to_the_previous_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let g = Gallery::create(dir.path(), small_layout()).unwrap();
        fill(&g, 4, 1); // commit seq 2 -> slot B
        g.insert(ids(4), &random_template(&mut rng(9), small_layout()))
            .unwrap(); // seq 3 -> slot A
    }
    corrupt_at(&dir.path().join(RECORDS_FILE), 40, &[0x55]); // slot A's count
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.row_count(), 4, "previous commit (slot B) is current");
}

#[test]
fn wrong_version_is_reported() {
    let dir = made_gallery(1);
    // Rewrite the vector header with version 99 and a valid checksum.
    let path = dir.path().join(VECTORS_FILE);
    let mut header = std::fs::read(&path).unwrap()[..64].to_vec();
    header[8..12].copy_from_slice(&99u32.to_le_bytes());
    let crc = crc32fast::hash(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    corrupt_at(&path, 0, &header);
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::UnsupportedVersion { found: 99, .. })
    ));
}

#[test]
fn a_flipped_row_is_isolated_and_reported() {
    let dir = made_gallery(6);
    let stride = 4 * 16 * 4;
    // A flipped vector byte in row 2; a flipped record byte in row 4.
    corrupt_at(
        &dir.path().join(VECTORS_FILE),
        4096 + 2 * stride as u64 + 17,
        &[0x7F],
    );
    corrupt_at(&dir.path().join(RECORDS_FILE), 4096 + 4 * 64 + 3, &[0x7F]);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(matches!(g.get(RowId(2)), Err(GalleryError::Corrupt { .. })));
    assert!(matches!(g.get(RowId(4)), Err(GalleryError::Corrupt { .. })));
    let report = g.scrub();
    assert_eq!(report.damaged, vec![RowId(2), RowId(4)]);
    let probe = g.get(RowId(0)).unwrap().unwrap().1;
    let out = g
        .search(
            &probe,
            &SearchQuery::new(10, MatchSettings::default_for(small_layout())),
        )
        .unwrap();
    assert!(out
        .candidates
        .iter()
        .all(|c| c.row != RowId(4) && c.row != RowId(2)));
    assert_eq!(out.candidates.len(), 4);
    assert!(g.get(RowId(5)).unwrap().is_some());
}

#[test]
fn garbage_state_word_is_damage() {
    let dir = made_gallery(3);
    corrupt_at(&dir.path().join(RECORDS_FILE), 4096 + 64 + 40, b"ZZZZ");
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.damaged_rows(), vec![RowId(1)]);
    assert!(matches!(g.get(RowId(1)), Err(GalleryError::Corrupt { .. })));
    assert!(matches!(
        g.delete(RowId(1)),
        Err(GalleryError::Corrupt { .. })
    ));
}

// ---- concurrency ---------------------------------------------------------

#[test]
fn readers_see_consistent_snapshots_while_a_writer_grows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_layout();
    let g = Arc::new(Gallery::create(dir.path(), layout).unwrap());
    let first = random_template(&mut rng(11), layout);
    g.insert(ids(0), &first).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (g, stop, first) = (g.clone(), stop.clone(), first.clone());
            std::thread::spawn(move || {
                let settings = MatchSettings::default_for(layout);
                let mut searches = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = g
                        .search(&first, &SearchQuery::new(3, settings.clone()))
                        .unwrap();
                    assert_eq!(out.candidates[0].row, RowId(0));
                    assert!((out.candidates[0].confidence - 1.0).abs() < 1e-5);
                    assert!(g.compare(&first, RowId(0), &settings).unwrap().matched);
                    searches += 1;
                }
                searches
            })
        })
        .collect();
    let mut r = rng(12);
    for batch in 0..40u64 {
        let ts: Vec<Template> = (0..200).map(|_| random_template(&mut r, layout)).collect();
        let items: Vec<_> = ts
            .iter()
            .enumerate()
            .map(|(i, t)| (ids(1 + batch * 200 + i as u64), t))
            .collect();
        g.insert_batch(&items).unwrap();
        if batch % 4 == 0 {
            g.delete(RowId(1 + batch * 200)).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert_eq!(g.row_count(), 8001);
    assert_eq!(g.live_count(), 8001 - 10);
}

// ---- exact 1:N -------------------------------------------------------------

/// The plain answer: score every live row with the scalar reference.
fn brute_force(
    templates: &[Option<(palmlink_engine::RecordIds, Template)>],
    probe: &Template,
    k: usize,
    filter: &SearchFilter,
) -> Vec<(f32, u64)> {
    let mut all: Vec<(f32, u64)> = templates
        .iter()
        .enumerate()
        .filter_map(|(row, t)| t.as_ref().map(|t| (row, t)))
        .filter(|(_, (ids, _))| {
            filter.palm.is_none_or(|p| ids.palm == p)
                && filter.user_key.is_none_or(|u| ids.user_key == u)
        })
        .map(|(row, (_, t))| {
            let s = reference::block_scores(probe, t);
            (s.iter().sum::<f32>() / s.len() as f32, row as u64)
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn exact_search_equals_a_brute_force_scalar_search(
        n in 1u64..400,
        k in 1usize..20,
        seed in 0u64..1000,
        deletions in proptest::collection::vec(0u64..400, 0..30),
        filter_palm in proptest::option::of(prop_oneof![Just(PalmSide::Left), Just(PalmSide::Right)]),
        filter_user in proptest::option::of(0u128..200),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let layout = small_layout();
        let g = Gallery::create(dir.path(), layout).unwrap();
        let templates = fill(&g, n, seed);
        let mut model: Vec<_> = templates.iter().enumerate().map(|(i, t)| Some((ids(i as u64), t.clone()))).collect();
        for d in deletions.into_iter().filter(|&d| d < n) {
            g.delete(RowId(d)).unwrap();
            model[d as usize] = None;
        }
        let probe = noisy(&mut rng(seed + 1), &templates[(seed % n) as usize], 0.5);
        let settings = MatchSettings::new(vec![0.3; layout.blocks], MatchPolicy::Mean).unwrap();
        let filter = SearchFilter { palm: filter_palm, user_key: filter_user };
        let mut query = SearchQuery::new(k, settings.clone());
        query.filter = filter.clone();
        let out = g.search(&probe, &query).unwrap();
        let expected = brute_force(&model, &probe, k, &filter);
        prop_assert_eq!(out.candidates.len(), expected.len());
        let kth = expected.last().map_or(f32::NEG_INFINITY, |e| e.0);
        for (i, c) in out.candidates.iter().enumerate() {
            // Same rows up to float near-ties; every returned row at least as good as the k-th.
            let (_, t) = model[c.row.0 as usize].as_ref().expect("deleted row returned");
            let scalar = reference::block_scores(&probe, t);
            let scalar_mean = scalar.iter().sum::<f32>() / scalar.len() as f32;
            prop_assert!((c.confidence - scalar_mean).abs() < 1e-5);
            prop_assert!(scalar_mean >= kth - 1e-5);
            prop_assert!((c.confidence - expected[i].0).abs() < 1e-5);
            for (a, b) in c.comparison.scores.iter().zip(&scalar) {
                prop_assert!((a - b).abs() < 1e-5);
            }
            prop_assert_eq!(c.comparison.matched, settings.decide(&c.comparison.scores));
            prop_assert_eq!(c.ids, model[c.row.0 as usize].as_ref().unwrap().0);
            if i > 0 {
                let prev = &out.candidates[i - 1];
                prop_assert!(prev.confidence > c.confidence
                    || (prev.confidence == c.confidence && prev.row < c.row));
            }
        }
    }
}

#[test]
fn parallel_scan_finds_the_mate_and_orders_ties_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let layout = small_layout();
    let g = Gallery::create(dir.path(), layout).unwrap();
    let templates = fill(&g, 20_000, 21); // above the parallel threshold
                                          // Three identical copies of one template: a three-way tie.
    let twin = templates[123].clone();
    g.insert_batch(&[(ids(20_000), &twin), (ids(20_001), &twin)])
        .unwrap();
    let settings = MatchSettings::default_for(layout);
    let out = g.search(&twin, &SearchQuery::new(3, settings)).unwrap();
    let rows: Vec<u64> = out.candidates.iter().map(|c| c.row.0).collect();
    assert_eq!(rows, vec![123, 20_000, 20_001]);
    assert!(out.candidates.iter().all(|c| c.comparison.matched));
    assert_eq!(out.gallery_size, 20_002);
}
