//! Erasure that leaves nothing: after a delete, no copy of the template
//! remains in any file under the gallery directory (the bytes of every file
//! are scanned) nor in the gallery's memory (the compact copy and the graph
//! are looked at); and an erasure a crash interrupted after its commit is
//! finished by the next open, one whose commit never happened forgotten.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::Gallery;
use crate::ids::{PalmSide, RecordIds, RowId};
use crate::search::graph::key_of;
use crate::search::lifecycle::IndexPolicy;
use crate::search::test_support::uniform_templates as templates;
use crate::storage::format::{
    ErasureIntent, HeaderSlot, ERASURE_FILE, RECORDS_FILE, SLOT_B_OFFSET,
};
use crate::template::{Layout, Template};

const WINDOW: usize = 64;

fn ids(i: u64) -> RecordIds {
    RecordIds {
        feature_id: 1000 + u128::from(i),
        user_key: u128::from(i),
        palm: PalmSide::Left,
    }
}

/// `templates` numbered from 0 with [`ids`], as a batch insert takes them.
fn items(templates: &[Template]) -> Vec<(RecordIds, &Template)> {
    templates
        .iter()
        .enumerate()
        .map(|(i, t)| (ids(i as u64), t))
        .collect()
}

/// A gallery of `n` templates whose graph index is built and saved (the
/// policy builds none at open, so the test decides when), by `hnsw_rs`:
/// the builder that leaves the most files holding keys.
fn gallery_with_graph(dir: &Path, n: usize) -> (Gallery, Vec<Template>) {
    let mut policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    policy.params.builder = crate::GraphBuilder::HnswRs;
    drop(Gallery::create(dir, Layout::DEFAULT).unwrap());
    let g = Gallery::open_with(dir, policy).unwrap();
    let t = templates(n, 0x5eed_0001);
    g.insert_batch_logged(&items(&t), 1).unwrap();
    g.rebuild_index().unwrap();
    (g, t)
}

/// The byte patterns a template leaves in files: its normalised f32 values
/// (`vectors.bin`) and its i8 graph key (the flat graph, the builder's data).
/// The lead block and the quantised copy never reach a file.
fn patterns(t: &Template) -> Vec<Vec<u8>> {
    let key = key_of(t.as_slice());
    vec![
        bytemuck::cast_slice(t.as_slice()).to_vec(),
        bytemuck::cast_slice(&key).to_vec(),
    ]
}

/// Every file under `dir` (recursively) holding any 64-byte window of any of
/// `patterns`, with the pattern's index.
fn files_holding(dir: &Path, patterns: &[Vec<u8>]) -> Vec<(String, usize)> {
    let mut windows: HashMap<&[u8], usize> = HashMap::new();
    for (i, p) in patterns.iter().enumerate() {
        for w in p.windows(WINDOW) {
            windows.insert(w, i);
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let hits: Vec<usize> = bytes
                .windows(WINDOW)
                .filter_map(|w| windows.get(w).copied())
                .collect();
            for i in 0..patterns.len() {
                if hits.contains(&i) {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    found.push((name, i));
                }
            }
        }
    }
    found.sort();
    found
}

/// What the compact copy holds of an erased row: zero values, scales and
/// sketch, lead-block codes 0 (nibbles 0x88) and a zero lead scale.
fn erased_compact_row() -> Vec<u8> {
    let layout = Layout::DEFAULT;
    let mut out = vec![0u8; layout.len() + 4 * layout.blocks + layout.len().div_ceil(64) * 8];
    out.extend(std::iter::repeat_n(0x88u8, layout.dim / 2));
    out.extend([0u8; 4]);
    out
}

fn assert_erased_in_memory(g: &Gallery, row: u64) {
    assert_eq!(
        g.accel.compact().row_bytes(row as usize),
        erased_compact_row(),
        "compact copy of row {row}"
    );
    let slot = g.accel.graph();
    if let Some(key) = slot.as_ref().and_then(|ix| ix.key_of_row(row)) {
        assert!(key.iter().all(|&v| v == 0), "graph key of row {row}");
    }
}

#[test]
fn delete_leaves_no_copy_in_any_file_or_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 700);
    while g.quantised_rows() < g.row_count() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let doomed = [3u64, 250, 699];
    for &row in &doomed {
        let found = files_holding(dir.path(), &patterns(&t[row as usize]));
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"vectors.bin"), "{found:?}");
        assert!(names.contains(&"hnsw.flat"), "{found:?}");
        assert!(names.contains(&"hnsw.hnsw.data"), "{found:?}");
        assert_ne!(
            g.accel.compact().row_bytes(row as usize),
            erased_compact_row()
        );
    }
    let rows: Vec<RowId> = doomed.iter().map(|&r| RowId(r)).collect();
    assert_eq!(g.delete_logged(&rows[..2], 2).unwrap(), 2);
    assert!(g.delete(rows[2]).unwrap());
    for &row in &doomed {
        assert_eq!(
            files_holding(dir.path(), &patterns(&t[row as usize])),
            vec![]
        );
        assert_erased_in_memory(&g, row);
    }
    // The rest is untouched, and the graph and its builder's files still load.
    let kept = files_holding(dir.path(), &patterns(&t[4]));
    assert_eq!(kept.len(), 3, "{kept:?}");
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(g.wait_for_index(Duration::from_secs(60)));
    assert_eq!(g.index_info().refused, None);
    assert_eq!(g.applied_sequence(), 2);
    assert_eq!(g.index_info().tombstones, 3);
}

/// Rows erased while the graph is being built (their keys possibly read
/// before the erasure) are erased from the new graph and its files when it
/// is installed, whatever the interleaving.
#[test]
fn rows_erased_during_a_build_are_erased_from_the_new_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 600);
    g.build_index_in_background();
    let doomed: Vec<u64> = (0..600).step_by(97).collect();
    for &row in &doomed {
        g.delete(RowId(row)).unwrap();
    }
    assert!(g.wait_for_index(Duration::from_secs(60)));
    for &row in &doomed {
        assert_eq!(
            files_holding(dir.path(), &patterns(&t[row as usize])),
            vec![]
        );
        assert_erased_in_memory(&g, row);
    }
}

/// Writes the commit that follows the current one into the other slot:
/// `count` rows with log sequence `applied` (what a crash right after a
/// commit leaves).
fn write_next_commit(dir: &Path, count: u64, applied: u64) -> u64 {
    let path = dir.join(RECORDS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let slot = |at: usize| -> HeaderSlot { bytemuck::pod_read_unaligned(&bytes[at..at + 64]) };
    let (a, b) = (slot(0), slot(SLOT_B_OFFSET));
    let (current, other) = if a.seq >= b.seq {
        (a, SLOT_B_OFFSET)
    } else {
        (b, 0)
    };
    let next = HeaderSlot::new(Layout::DEFAULT, current.seq + 1, count, applied);
    let mut bytes = bytes;
    bytes[other..other + 64].copy_from_slice(bytemuck::bytes_of(&next));
    std::fs::write(&path, bytes).unwrap();
    current.seq + 1
}

fn current_commit(dir: &Path) -> u64 {
    let bytes = std::fs::read(dir.join(RECORDS_FILE)).unwrap();
    let slot = |at: usize| -> HeaderSlot { bytemuck::pod_read_unaligned(&bytes[at..at + 64]) };
    slot(0).seq.max(slot(SLOT_B_OFFSET).seq)
}

/// A crash after an erasure's commit, before any copy was erased: the open
/// finishes the erasure (rows, vectors, graph and builder files) before
/// anything reads the rows, with the erasure's sequence applied.
#[test]
fn an_erasure_interrupted_after_its_commit_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 500);
    drop(g);
    let doomed = vec![7u64, 300];
    let intent = ErasureIntent::encode(current_commit(dir.path()) + 1, &doomed);
    std::fs::write(dir.path().join(ERASURE_FILE), intent).unwrap();
    write_next_commit(dir.path(), 500, 9);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.applied_sequence(), 9);
    assert_eq!(g.live_count(), 498);
    for &row in &doomed {
        assert_eq!(g.get(RowId(row)).unwrap(), None);
        assert_eq!(g.row_of(ids(row).feature_id), None);
        assert_eq!(
            files_holding(dir.path(), &patterns(&t[row as usize])),
            vec![]
        );
    }
    assert_eq!(
        std::fs::metadata(dir.path().join(ERASURE_FILE))
            .unwrap()
            .len(),
        0
    );
    assert!(g.wait_for_index(Duration::from_secs(60)));
    let info = g.index_info();
    assert_eq!((info.refused, info.tombstones), (None, 2));
}

/// A crash after an erasure's intent was written but before its commit: the
/// rows stay live, the sequence stays, and the intent is forgotten (a later
/// commit of the same number does not revive it).
#[test]
fn an_erasure_whose_commit_never_happened_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 200);
    drop(g);
    let next = current_commit(dir.path()) + 1;
    std::fs::write(
        dir.path().join(ERASURE_FILE),
        ErasureIntent::encode(next, &[5]),
    )
    .unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!((g.applied_sequence(), g.live_count()), (1, 200));
    assert_eq!(g.get(RowId(5)).unwrap().unwrap().1, t[5]);
    g.advance_sequence(2).unwrap();
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!((g.applied_sequence(), g.live_count()), (2, 200));
    assert_eq!(g.row_of(ids(5).feature_id), Some(RowId(5)));
}

/// Files a save left under a temporary name when a crash interrupted it are
/// removed at open: no erasure would reach the keys in them.
#[test]
fn leftovers_of_an_interrupted_save_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 300);
    drop(g);
    let flat = std::fs::read(dir.path().join("hnsw.flat")).unwrap();
    std::fs::write(dir.path().join("hnsw.flat.tmp"), &flat).unwrap();
    std::fs::create_dir(dir.path().join("hnsw.tmp")).unwrap();
    std::fs::write(dir.path().join("hnsw.tmp/hnsw.hnsw.data"), &flat).unwrap();
    std::fs::write(dir.path().join("hnsw.meta.tmp"), b"meta").unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    g.delete(RowId(12)).unwrap();
    assert_eq!(files_holding(dir.path(), &patterns(&t[12])), vec![]);
    for name in ["hnsw.flat.tmp", "hnsw.tmp", "hnsw.meta.tmp"] {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
}

/// A gallery opened without loading its saved graph (or before a background
/// load has installed it) still leaves no copy of an erased key in the saved
/// flat graph when `delete` returns.
#[test]
fn delete_before_the_saved_graph_is_loaded_scrubs_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let (g, t) = gallery_with_graph(dir.path(), 300);
    drop(g);
    assert!(!files_holding(dir.path(), &patterns(&t[21])).is_empty());
    let policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    let g = Gallery::open_with(dir.path(), policy).unwrap();
    g.delete(RowId(21)).unwrap();
    assert_eq!(files_holding(dir.path(), &patterns(&t[21])), vec![]);
    // The scrubbed file still loads and searches without the erased row.
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(g.wait_for_index(std::time::Duration::from_secs(60)));
    assert!(g.get(RowId(21)).unwrap().is_none());
}

#[test]
fn every_caller_waiting_for_the_quantised_copy_finds_it_covering_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    {
        let g = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
        g.insert_batch(&items(&templates(n, 41))).unwrap();
    }
    let g = Gallery::open_with(
        dir.path(),
        IndexPolicy {
            at_open: false,
            ..IndexPolicy::default()
        },
    )
    .unwrap();
    // Two callers at once: each returns only once the copy covers every row.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                g.wait_for_quantised_copy();
                assert_eq!(g.quantised_rows(), n as u64);
                assert_eq!(g.passing_rows(), n as u64);
            });
        }
    });
    // Waiting again returns at once.
    g.wait_for_quantised_copy();
}
