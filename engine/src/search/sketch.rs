//! The sign-sketch prefilter: the rows nearest the probe in Hamming distance
//! of their 1-bit sign sketches, re-scored in f32. Approximate: it carries no
//! guarantee and is measured by the benches as an alternative to the
//! quantised scan.

use rayon::prelude::*;

use super::compact::{sketch_of, CompactCopy};
use super::exact::{self, Candidate};
use super::query::{admissible, SearchQuery};
use super::top_k::{Scored, TopK};
use crate::kernels;
use crate::storage::Snapshot;
use crate::template::Template;

/// Rows per parallel task.
const CHUNK_ROWS: usize = 8192;
/// Below this many rows the scan runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 16_384;

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
    let near = if covered < PARALLEL_THRESHOLD {
        scan(0..covered)
    } else {
        (0..covered.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|c| scan(c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(covered)))
            .reduce(|| TopK::new(keep), TopK::merge)
    };
    let mut top = exact::rescore(
        snap,
        probe,
        query.top_k,
        near.into_sorted().into_iter().map(|s| s.row),
    );
    if (covered as u64) < snap.count {
        top = top.merge(exact::scan_range(
            snap,
            probe,
            query,
            covered as u64..snap.count,
        ));
    }
    exact::finish(snap, probe, query, top)
}
