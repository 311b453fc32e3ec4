//! The exact 1:N scan: every live row scored with the fused kernel, in
//! parallel chunks, each keeping its own top-k, merged at the end.

use rayon::prelude::*;

use super::top_k::{Scored, TopK};
use super::{Candidate, SearchQuery};
use crate::scoring::{self, kernel, mean_score};
use crate::storage::format::{palm_code, STATE_LIVE};
use crate::storage::gallery::{record_ids, Snapshot};
use crate::storage::{Gallery, RecordIds, RowId};
use crate::template::Template;

/// Rows per parallel task.
const CHUNK_ROWS: u64 = 4096;
/// Below this many rows the scan runs on the calling thread.
const PARALLEL_THRESHOLD: u64 = 16_384;

/// Scans `rows` of `snap`, keeping the best `k`.
pub(crate) fn scan_range(
    gallery: &Gallery,
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    rows: std::ops::Range<u64>,
) -> TopK {
    let layout = snap.layout;
    let kern = kernel::Kernel::best_for(layout.dim);
    let want_palm = query.filter.palm.map(palm_code);
    let want_user = query.filter.user_key;
    let mut scores = [0.0f32; crate::template::Layout::MAX_BLOCKS];
    let scores = &mut scores[..layout.blocks];
    let mut top = TopK::new(query.top_k);
    for row in rows {
        if snap.state(row) != STATE_LIVE {
            continue;
        }
        if want_palm.is_some_and(|p| snap.palm_code(row) != p)
            || want_user.is_some_and(|u| snap.user_key(row) != u)
            || gallery.is_damaged(row)
        {
            continue;
        }
        kernel::block_dots_with(kern, probe.as_slice(), snap.vector(row), layout.dim, scores);
        let mean = mean_score(scores);
        if mean > top.floor() || mean == top.floor() {
            top.push(Scored { score: mean, row });
        }
    }
    top
}

/// The best `query.top_k` live rows of the snapshot, best first, re-scored
/// with their per-block scores and decision.
pub(crate) fn search(
    gallery: &Gallery,
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
) -> Vec<Candidate> {
    let top = if snap.count < PARALLEL_THRESHOLD {
        scan_range(gallery, snap, probe, query, 0..snap.count)
    } else {
        let chunks = snap.count.div_ceil(CHUNK_ROWS);
        (0..chunks)
            .into_par_iter()
            .map(|c| {
                let end = ((c + 1) * CHUNK_ROWS).min(snap.count);
                scan_range(gallery, snap, probe, query, c * CHUNK_ROWS..end)
            })
            .reduce(|| TopK::new(query.top_k), TopK::merge)
    };
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
    let ids: RecordIds = record_ids(&record, row)?;
    let vector = snap.vector(row);
    if crc32fast::hash(bytemuck::cast_slice(vector)) != record.vector_crc {
        return None;
    }
    let mut scores = vec![0.0; layout.blocks];
    kernel::block_dots(probe.as_slice(), vector, layout.dim, &mut scores);
    if snap.state(row) != STATE_LIVE {
        return None;
    }
    let comparison = scoring::comparison_from_scores(scores, &query.settings);
    Some(Candidate {
        row: RowId(row),
        ids,
        confidence: comparison.mean,
        comparison,
    })
}
