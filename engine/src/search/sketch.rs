//! The sign-sketch prefilter: the rows nearest the probe in Hamming distance
//! of their 1-bit sign sketches, re-scored in f32. Approximate: it carries no
//! guarantee and is measured by the benches as an alternative to the
//! quantised scan.

use super::compact::{sketch_of, CompactCopy};
use super::exact::{self, Candidate};
use super::query::{admissible, SearchQuery};
use super::top_k::{Scored, TopK};
use crate::kernels;
use crate::storage::Snapshot;
use crate::template::Template;

/// Rows per parallel task.
const CHUNK_ROWS: usize = 8192;

/// The `rescore_rows` rows nearest in Hamming distance (at least `top_k`),
/// re-scored in f32. Rows of `snap` not yet in `store` are scanned in f32.
pub(crate) fn search(
    snap: &Snapshot,
    store: &CompactCopy,
    probe: &Template,
    query: &SearchQuery,
    rescore_rows: usize,
) -> Vec<Candidate> {
    let covered = store.rows().min(snap.count as usize);
    let ps = sketch_of(probe.as_slice());
    let keep = rescore_rows.max(query.top_k);
    let scan = |range: std::ops::Range<usize>| {
        let mut top = TopK::new(keep);
        for row in range {
            let d = kernels::hamming(store.sketch(row), &ps);
            let score = -(d as f32);
            if score >= top.floor() && admissible(snap, query, row as u64) {
                top.push(Scored {
                    score,
                    row: row as u64,
                });
            }
        }
        top
    };
    let near = exact::in_chunks(covered, CHUNK_ROWS, scan, || TopK::new(keep), TopK::merge);
    let top = exact::rescore(
        snap,
        probe,
        query.top_k,
        near.into_sorted().into_iter().map(|s| s.row),
    );
    exact::finish_past(snap, probe, query, top, covered as u64)
}
