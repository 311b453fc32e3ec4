//! The exact 1:N scan, and the exact re-score every strategy ends with.
//!
//! The scan scores every live row with the fused kernel, in parallel chunks,
//! each keeping its own top-k, merged at the end. The other strategies only
//! choose which rows to re-score: [`rescore`] and [`finish`] score them here,
//! with the same kernel and tie-break, so every strategy reports the f32
//! scan's figures for the rows it returns.

use rayon::prelude::*;

use super::query::{admissible, SearchQuery};
use super::top_k::{Scored, TopK};
use crate::ids::{RecordIds, RowId};
use crate::kernels::{self, Kernel};
use crate::scoring::{self, mean_score, Comparison};
use crate::storage::Snapshot;
use crate::template::{Layout, Template};

/// Rows per parallel task.
const CHUNK_ROWS: u64 = 4096;
/// Below this many rows the scan runs on the calling thread.
const PARALLEL_THRESHOLD: u64 = 16_384;

/// One row returned by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Where it is stored.
    pub row: RowId,
    /// Its ids.
    pub ids: RecordIds,
    /// The mean block similarity (the ranking key).
    pub confidence: f32,
    /// Its per-block scores and decision.
    pub comparison: Comparison,
}

/// Scans `rows` of `snap`, keeping the best `k`.
pub(crate) fn scan_range(
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    rows: std::ops::Range<u64>,
) -> TopK {
    let layout = snap.layout;
    let kern = Kernel::best_for(layout.dim);
    let mut scores = [0.0f32; Layout::MAX_BLOCKS];
    let scores = &mut scores[..layout.blocks];
    let mut top = TopK::new(query.top_k);
    for row in rows {
        if !admissible(snap, query, row) {
            continue;
        }
        let mean = mean_of(kern, probe, snap.scanned_vector(row), layout.dim, scores);
        if mean > top.floor() || mean == top.floor() {
            top.push(Scored { score: mean, row });
        }
    }
    top
}

/// The best `query.top_k` live rows of the snapshot, best first, re-scored
/// with their per-block scores and decision.
pub(crate) fn search(snap: &Snapshot, probe: &Template, query: &SearchQuery) -> Vec<Candidate> {
    let top = if snap.count < PARALLEL_THRESHOLD {
        scan_range(snap, probe, query, 0..snap.count)
    } else {
        let chunks = snap.count.div_ceil(CHUNK_ROWS);
        (0..chunks)
            .into_par_iter()
            .map(|c| {
                let end = ((c + 1) * CHUNK_ROWS).min(snap.count);
                scan_range(snap, probe, query, c * CHUNK_ROWS..end)
            })
            .reduce(|| TopK::new(query.top_k), TopK::merge)
    };
    finish(snap, probe, query, top)
}

/// Rows of one parallel task of the batched scan, scored a block at a time:
/// the rows of a block stay in cache while every tile of probes passes over
/// them.
const BATCH_BLOCK_ROWS: u64 = 256;
/// Probes scored together against one block of rows.
const BATCH_TILE: usize = 16;

/// The exact scan of `probes` at once, in one pass over the snapshot: the
/// same candidates, in the same order, as [`search`] for each probe (the same
/// kernel, scores and tie-break), while every row is read from memory once
/// per task instead of once per probe.
pub(crate) fn search_batch(
    snap: &Snapshot,
    probes: &[Template],
    query: &SearchQuery,
) -> Vec<Vec<Candidate>> {
    let layout = snap.layout;
    let scan = |rows: std::ops::Range<u64>| {
        let kern = Kernel::best_for(layout.dim);
        let mut scores = [0.0f32; Layout::MAX_BLOCKS];
        let scores = &mut scores[..layout.blocks];
        let mut tops: Vec<TopK> = probes.iter().map(|_| TopK::new(query.top_k)).collect();
        let mut block = Vec::with_capacity(BATCH_BLOCK_ROWS as usize);
        for start in rows.clone().step_by(BATCH_BLOCK_ROWS as usize) {
            let end = (start + BATCH_BLOCK_ROWS).min(rows.end);
            block.clear();
            block.extend((start..end).filter(|&row| admissible(snap, query, row)));
            for (tile, tops) in probes.chunks(BATCH_TILE).zip(tops.chunks_mut(BATCH_TILE)) {
                for &row in &block {
                    let vector = snap.scanned_vector(row);
                    for (probe, top) in tile.iter().zip(tops.iter_mut()) {
                        let mean = mean_of(kern, probe, vector, layout.dim, scores);
                        if mean >= top.floor() {
                            top.push(Scored { score: mean, row });
                        }
                    }
                }
            }
        }
        tops
    };
    let merge =
        |a: Vec<TopK>, b: Vec<TopK>| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect();
    let tops: Vec<TopK> = if snap.count < PARALLEL_THRESHOLD {
        scan(0..snap.count)
    } else {
        (0..snap.count.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|c| scan(c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(snap.count)))
            .reduce(
                || probes.iter().map(|_| TopK::new(query.top_k)).collect(),
                merge,
            )
    };
    probes
        .iter()
        .zip(tops)
        .map(|(probe, top)| finish(snap, probe, query, top))
        .collect()
}

/// Exact f32 mean of `row`, with the kernel the exact scan uses (for rows
/// read here and there: candidates and survivors).
#[inline]
pub(crate) fn exact_mean(
    kern: Kernel,
    snap: &Snapshot,
    probe: &Template,
    row: u64,
    scores: &mut [f32],
) -> f32 {
    mean_of(kern, probe, snap.vector(row), snap.layout.dim, scores)
}

/// Exact f32 mean of `vector`, with the kernel the exact scan uses.
#[inline]
fn mean_of(kern: Kernel, probe: &Template, vector: &[f32], dim: usize, scores: &mut [f32]) -> f32 {
    kernels::block_dots_with(kern, probe.as_slice(), vector, dim, scores);
    mean_score(scores)
}

/// Re-scores `rows` exactly and keeps the best `k` (same order as the exact scan).
pub(crate) fn rescore(
    snap: &Snapshot,
    probe: &Template,
    k: usize,
    rows: impl IntoIterator<Item = u64>,
) -> TopK {
    let kern = Kernel::best_for(snap.layout.dim);
    let mut scores = [0.0f32; Layout::MAX_BLOCKS];
    let scores = &mut scores[..snap.layout.blocks];
    let mut top = TopK::new(k);
    for row in rows {
        let mean = exact_mean(kern, snap, probe, row, scores);
        if mean >= top.floor() {
            top.push(Scored { score: mean, row });
        }
    }
    top
}

/// Runs `scan` over rows `0..rows`: on the calling thread below
/// [`PARALLEL_THRESHOLD`] rows, else in chunks of `chunk` rows on the rayon
/// pool, the chunks' results merged with `merge` (`empty` is the result of
/// no rows).
pub(crate) fn in_chunks<T: Send>(
    rows: usize,
    chunk: usize,
    scan: impl Fn(std::ops::Range<usize>) -> T + Sync,
    empty: impl Fn() -> T + Sync + Send,
    merge: impl Fn(T, T) -> T + Sync + Send,
) -> T {
    if (rows as u64) < PARALLEL_THRESHOLD {
        scan(0..rows)
    } else {
        (0..rows.div_ceil(chunk))
            .into_par_iter()
            .map(|c| scan(c * chunk..((c + 1) * chunk).min(rows)))
            .reduce(empty, merge)
    }
}

/// Turns the final top-k into candidates, after adding the rows of `snap`
/// from `covered` on (rows an accelerator does not cover yet), scanned in
/// f32.
pub(crate) fn finish_past(
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    mut top: TopK,
    covered: u64,
) -> Vec<Candidate> {
    if covered < snap.count {
        top = top.merge(scan_range(snap, probe, query, covered..snap.count));
    }
    finish(snap, probe, query, top)
}

/// Turns the final top-k into candidates (re-scored, re-checked live).
pub(crate) fn finish(
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    top: TopK,
) -> Vec<Candidate> {
    top.into_sorted()
        .into_iter()
        .filter_map(|s| candidate(snap, probe, query, s.row))
        .collect()
}

/// Re-scores `row` into a candidate; `None` if it died during the search or
/// its record or vector fails its checksum (checked for the few candidates
/// only, so a damaged row is never returned).
pub(crate) fn candidate(
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    row: u64,
) -> Option<Candidate> {
    let layout = snap.layout;
    let record = snap.record(row);
    let ids: RecordIds = record.intact_ids(row)?;
    let vector = snap.vector(row);
    if crc32fast::hash(bytemuck::cast_slice(vector)) != record.vector_crc {
        return None;
    }
    let mut scores = vec![0.0; layout.blocks];
    kernels::block_dots(probe.as_slice(), vector, layout.dim, &mut scores);
    if !snap.is_live(row) {
        return None;
    }
    let comparison: Comparison = scoring::comparison_from_scores(scores, &query.settings);
    Some(Candidate {
        row: RowId(row),
        ids,
        confidence: comparison.mean,
        comparison,
    })
}
