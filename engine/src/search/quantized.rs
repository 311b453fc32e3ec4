//! A compact copy of the gallery for the exact scan: i8 values with one scale
//! per block, and a 1-bit sign sketch per value; plus, for the passing scan
//! (`passing.rs`), one block of every row ([`LEAD_BLOCK`]) again at 4 bits per
//! value, block-major and interleaved by groups of 16 rows.
//!
//! # Where it lives
//!
//! In memory, derived after the gallery is opened (in parallel, on a
//! background thread, so opening stays fast) and appended to as rows are
//! inserted. Deriving runs in two phases: first the lead block of every row
//! (one block per row, so about a tenth of the work: the passing scan runs
//! at full speed from then on), then the row-major part. Until a part is
//! derived, and for rows inserted since, searches score the rows it does not
//! cover in f32. Persisting the copy would add a second file that must be
//! kept in step with the gallery on every insert and checked at open; the f32
//! rows stay the only source of truth.
//!
//! # The guarantee of the quantised scan
//!
//! Each block `g` of a stored template is kept as `ĝ = s·q` with
//! `s = max|g_i| / 127` and `q_i = round(g_i / s)` in `-127..=127`, so
//! `|g_i - ĝ_i| <= s/2`. The probe block `p` is kept as `p̂ = t·r` with
//! `t = max|p_i| / R` (`R` = [`int_kernels::probe_max`], 32767 for 64-value
//! blocks) and `|p_i - p̂_i| <= t/2`. The integer dot `r·q` is exact, and
//!
//! ```text
//! |p·g - p̂·ĝ| <= |p·(g - ĝ)| + |(p - p̂)·ĝ| <= (s/2)·‖p‖₁ + (t/2)·‖ĝ‖₁
//!             <= s · (‖p‖₁ + 127·t·dim) / 2  =  s · w        (‖ĝ‖₁ <= 127·s·dim)
//! ```
//!
//! so the mean block score of a template lies within
//! `E = Σ_b s_b·w_b / blocks + ε` of its approximation, where `ε` covers the
//! f32 rounding of both the exact kernel and the approximation
//! (`4·(dim + blocks + 16)·f32::EPSILON`, more than the worst case of either).
//!
//! The scan keeps, for every row, the interval `[approx - E, approx + E]`. Let
//! `τ` be the k-th largest lower end. At least `k` rows score at least `τ`
//! exactly, so no row whose exact score is below `τ` can be in the exact
//! top-k; every row whose upper end reaches `τ` is re-scored in f32 with the
//! same kernel and tie-break as [`super::exact`]. Hence: **the quantised scan
//! returns exactly the candidates of the exact f32 scan, in the same order**
//! (so in particular every template whose exact scores pass the decision is
//! returned, up to `top_k`, in exact order). A unit test below checks the
//! bound; property and fixture tests in `engine/tests/search_at_scale.rs`
//! check the result against the f32 scan.

use rayon::prelude::*;

use super::int_kernels::{self, probe_max, GROUP_ROWS};
use super::top_k::{Ranked, Scored, TopK};
use super::{exact, Candidate, SearchQuery};
use crate::scoring::{kernel, mean_score};
use crate::storage::format::{palm_code, STATE_LIVE};
use crate::storage::gallery::Snapshot;
use crate::storage::Gallery;
use crate::template::{Layout, Template};

/// Rows per parallel task.
const CHUNK_ROWS: usize = 8192;
/// Below this many rows the scan runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 16_384;

/// The block that is also kept block-major, at 4 bits per value, for the
/// passing scan.
///
/// Thresholds belong to each query (a tenant's settings), so the block cannot
/// be chosen by threshold when the copy is derived; any block is valid for the
/// pruning proof, and with the default thresholds (0.685 to 0.753) every block
/// sits more than four standard deviations of an impostor's block score
/// (about 0.125 for 64 values) above zero. Keeping every block block-major
/// (to prune on the block with the largest threshold of each query) would
/// hold a second full copy: 320 MB at 1M templates instead of 36 MB.
pub(crate) const LEAD_BLOCK: usize = 0;

/// The compact copy: i8 values, per-block scales and sign sketches, row-major;
/// and the lead block's 4-bit codes and scales, block-major.
pub(crate) struct QuantStore {
    pub(super) layout: Layout,
    words: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    sketches: Vec<u64>,
    /// The lead block of every row, interleaved by groups of
    /// [`int_kernels::GROUP_ROWS`] rows (see [`int_kernels::Line`]); lanes past
    /// the last row are zero.
    lead: Vec<int_kernels::Line>,
    /// The lead block's scale of every row, 16 per group (zero past the last row).
    lead_scales: Vec<f32>,
    /// Rows of the row-major part.
    rows: usize,
    /// Rows of the lead-block array (derived first after open, so at least `rows`).
    lead_rows: usize,
    /// False while the copy of the rows present at open is still being
    /// derived (in the background); inserts do not append until it is.
    pub(crate) derived: bool,
}

/// One quantised row, written into caller-provided buffers.
fn quantise_row(layout: Layout, v: &[f32], q: &mut [i8], scales: &mut [f32], sketch: &mut [u64]) {
    for (b, (block, qb)) in v
        .chunks_exact(layout.dim)
        .zip(q.chunks_exact_mut(layout.dim))
        .enumerate()
    {
        let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let s = max / 127.0;
        scales[b] = s;
        if s > 0.0 && s.is_finite() {
            for (x, o) in block.iter().zip(qb.iter_mut()) {
                *o = (x / s).round().clamp(-127.0, 127.0) as i8;
            }
        } else {
            qb.fill(0);
        }
    }
    sketch.fill(0);
    for (i, x) in v.iter().enumerate() {
        if *x >= 0.0 {
            sketch[i / 64] |= 1 << (i % 64);
        }
    }
}

/// The sign sketch of `values` (bit i set when value i is >= 0).
pub(crate) fn sketch_of(values: &[f32]) -> Vec<u64> {
    let mut out = vec![0u64; values.len().div_ceil(64)];
    for (i, x) in values.iter().enumerate() {
        if *x >= 0.0 {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

/// Quantises a lead block to codes in `-7..=7` (written into `codes`) and
/// returns the scale `s = max|g_i| / 7`, so that `|g_i - s·q_i| <= s/2`.
/// A zero or non-finite block gets codes 0 and its scale as computed (zero,
/// or non-finite so that the row is never pruned).
pub(super) fn lead_codes(block: &[f32], codes: &mut [i8]) -> f32 {
    let q_max = int_kernels::LEAD_CODE_MAX as f32;
    let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let s = max / q_max;
    if s > 0.0 && s.is_finite() {
        for (x, o) in block.iter().zip(codes.iter_mut()) {
            *o = (x / s).round().clamp(-q_max, q_max) as i8;
        }
    } else {
        codes.fill(0);
    }
    s
}

/// The row-major part of the copy for rows `0..rows`, derived apart from the
/// lead block (see [`QuantStore::derive_row_major`]).
pub(crate) struct RowMajor {
    values: Vec<i8>,
    scales: Vec<f32>,
    sketches: Vec<u64>,
    rows: usize,
}

impl QuantStore {
    /// An empty store for `layout`.
    pub(crate) fn new(layout: Layout) -> QuantStore {
        QuantStore {
            layout,
            words: layout.len().div_ceil(64),
            values: Vec::new(),
            scales: Vec::new(),
            sketches: Vec::new(),
            lead: Vec::new(),
            lead_scales: Vec::new(),
            rows: 0,
            lead_rows: 0,
            derived: true,
        }
    }

    /// A store holding only the lead block of rows `0..snap.count`
    /// (`derived` false): the first, short phase of deriving the copy after
    /// open. It reads one block of every row, a tenth of the vectors.
    pub(crate) fn lead_only(snap: &Snapshot) -> QuantStore {
        let mut store = QuantStore::new(snap.layout);
        store.derived = false;
        let n = snap.count as usize;
        let dim = store.layout.dim;
        let per = int_kernels::lead_lines(dim);
        let groups = n.div_ceil(GROUP_ROWS);
        store.lead = vec![int_kernels::Line::ZERO; groups * per];
        store.lead_scales = vec![0.0; groups * GROUP_ROWS];
        store
            .lead
            .par_chunks_mut(per * 64)
            .zip(store.lead_scales.par_chunks_mut(GROUP_ROWS * 64))
            .enumerate()
            .for_each(|(c, (lines, lead_scales))| {
                let mut codes = vec![0i8; dim];
                let first = c * GROUP_ROWS * 64;
                for (r, scale) in lead_scales.iter_mut().enumerate().take(n - first) {
                    let v = snap.vector((first + r) as u64);
                    *scale = lead_codes(&v[LEAD_BLOCK * dim..(LEAD_BLOCK + 1) * dim], &mut codes);
                    let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
                    int_kernels::lead_put(&mut lines[g * per..(g + 1) * per], lane, &codes);
                }
            });
        store.lead_rows = n;
        store
    }

    /// The row-major part for rows `0..snap.count`, quantised in parallel
    /// (the second phase of deriving the copy).
    pub(crate) fn derive_row_major(snap: &Snapshot) -> RowMajor {
        let layout = snap.layout;
        let n = snap.count as usize;
        let (len, blocks, words) = (layout.len(), layout.blocks, layout.len().div_ceil(64));
        let mut out = RowMajor {
            values: vec![0; n * len],
            scales: vec![0.0; n * blocks],
            sketches: vec![0; n * words],
            rows: n,
        };
        out.values
            .par_chunks_mut(len * 1024)
            .zip(out.scales.par_chunks_mut(blocks * 1024))
            .zip(out.sketches.par_chunks_mut(words * 1024))
            .enumerate()
            .for_each(|(c, ((q, s), k))| {
                let rows = q.len() / len;
                for r in 0..rows {
                    let row = (c * 1024 + r) as u64;
                    quantise_row(
                        layout,
                        snap.vector(row),
                        &mut q[r * len..(r + 1) * len],
                        &mut s[r * blocks..(r + 1) * blocks],
                        &mut k[r * words..(r + 1) * words],
                    );
                }
            });
        out
    }

    /// Completes a [`QuantStore::lead_only`] store with its row-major part
    /// (derived from the same snapshot); the store is then `derived` and
    /// appends the rows inserted since at the next [`QuantStore::catch_up`].
    pub(crate) fn install(&mut self, part: RowMajor) {
        assert_eq!(
            part.rows, self.lead_rows,
            "row-major part of another snapshot"
        );
        self.values = part.values;
        self.scales = part.scales;
        self.sketches = part.sketches;
        self.rows = part.rows;
        self.derived = true;
    }

    /// Appends the lead block of row `lead_rows()` of `snap`.
    fn push_lead(&mut self, snap: &Snapshot) {
        let dim = self.layout.dim;
        let per = int_kernels::lead_lines(dim);
        let row = self.lead_rows;
        let (g, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
        if lane == 0 {
            self.lead
                .resize(self.lead.len() + per, int_kernels::Line::ZERO);
            self.lead_scales
                .resize(self.lead_scales.len() + GROUP_ROWS, 0.0);
        }
        let mut codes = vec![0i8; dim];
        let lead = &snap.vector(row as u64)[LEAD_BLOCK * dim..(LEAD_BLOCK + 1) * dim];
        self.lead_scales[g * GROUP_ROWS + lane] = lead_codes(lead, &mut codes);
        int_kernels::lead_put(&mut self.lead[g * per..(g + 1) * per], lane, &codes);
        self.lead_rows += 1;
    }

    /// Rows the row-major copy covers (rows `0..rows()`).
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Rows the lead-block array covers (rows `0..lead_rows()`; at least
    /// [`QuantStore::rows`]).
    pub(crate) fn lead_rows(&self) -> usize {
        self.lead_rows
    }

    /// Appends rows `self.rows()..snap.count` of `snap` to both parts.
    pub(crate) fn catch_up(&mut self, snap: &Snapshot) {
        let (len, blocks, words) = (self.layout.len(), self.layout.blocks, self.words);
        while (self.rows as u64) < snap.count {
            let row = self.rows as u64;
            let (vo, so, ko) = (self.values.len(), self.scales.len(), self.sketches.len());
            self.values.resize(vo + len, 0);
            self.scales.resize(so + blocks, 0.0);
            self.sketches.resize(ko + words, 0);
            quantise_row(
                self.layout,
                snap.vector(row),
                &mut self.values[vo..],
                &mut self.scales[so..],
                &mut self.sketches[ko..],
            );
            self.rows += 1;
        }
        while (self.lead_rows as u64) < snap.count {
            self.push_lead(snap);
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.capacity()
            + self.scales.capacity() * 4
            + self.sketches.capacity() * 8
            + self.lead.capacity() * std::mem::size_of::<int_kernels::Line>()
            + self.lead_scales.capacity() * 4
    }

    /// The interleaved lead-block lines and their scales (rows `0..lead_rows()`).
    pub(super) fn lead(&self) -> (&[int_kernels::Line], &[f32]) {
        (&self.lead, &self.lead_scales)
    }

    pub(super) fn values(&self, row: usize) -> &[i8] {
        let len = self.layout.len();
        &self.values[row * len..(row + 1) * len]
    }

    pub(super) fn scales(&self, row: usize) -> &[f32] {
        let b = self.layout.blocks;
        &self.scales[row * b..(row + 1) * b]
    }

    fn sketch(&self, row: usize) -> &[u64] {
        &self.sketches[row * self.words..(row + 1) * self.words]
    }
}

/// The probe prepared for the quantised scan.
struct QuantProbe {
    values: Vec<i16>,
    /// Per block: the probe scale `t_b` (the approximation multiplies by `s_b·t_b`).
    scales: Vec<f32>,
    /// Per block: `w_b / blocks` (the error bound is `Σ s_b · weights_b + eps`).
    weights: Vec<f32>,
    eps: f32,
}

impl QuantProbe {
    fn new(probe: &Template) -> QuantProbe {
        let layout = probe.layout();
        let r = probe_max(layout.dim) as f32;
        let mut values = vec![0i16; layout.len()];
        let mut scales = vec![0.0; layout.blocks];
        let mut weights = vec![0.0; layout.blocks];
        let blocks = layout.blocks as f64;
        for (b, (block, out)) in probe
            .as_slice()
            .chunks_exact(layout.dim)
            .zip(values.chunks_exact_mut(layout.dim))
            .enumerate()
        {
            let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let t = max / r;
            scales[b] = t;
            if t > 0.0 {
                for (x, o) in block.iter().zip(out.iter_mut()) {
                    *o = (x / t).round().clamp(-r, r) as i16;
                }
            }
            let l1: f64 = block.iter().map(|x| f64::from(x.abs())).sum();
            // w_b = (‖p‖₁ + 127·t·dim) / 2, rounded up, with a relative margin
            // for the rounding of `x / t` (at most one ulp of the quotient).
            let w = (l1 + 127.0 * f64::from(t) * layout.dim as f64) / 2.0;
            weights[b] = (w * (1.0 + 1e-6) / blocks) as f32;
        }
        let eps = 4.0 * (layout.dim + layout.blocks + 16) as f32 * f32::EPSILON;
        QuantProbe {
            values,
            scales,
            weights,
            eps,
        }
    }

    /// `(approximate mean, error bound)` of one stored row.
    #[inline]
    fn score(&self, store: &QuantStore, row: usize, dots: &mut [i32]) -> (f32, f32) {
        let layout = store.layout;
        int_kernels::block_dots_i8_i16(store.values(row), &self.values, layout.dim, dots);
        let s = store.scales(row);
        let mut approx = 0.0f32;
        let mut err = 0.0f32;
        for b in 0..layout.blocks {
            approx += dots[b] as f32 * (s[b] * self.scales[b]);
            err += s[b] * self.weights[b];
        }
        (approx / layout.blocks as f32, err + self.eps)
    }
}

/// Whether `row` is a candidate at all (live, not damaged, passes the filter).
#[inline]
pub(crate) fn admissible(
    gallery: &Gallery,
    snap: &Snapshot,
    query: &SearchQuery,
    row: u64,
) -> bool {
    snap.state(row) == STATE_LIVE
        && query
            .filter
            .palm
            .is_none_or(|p| snap.palm_code(row) == palm_code(p))
        && query
            .filter
            .user_key
            .is_none_or(|u| snap.user_key(row) == u)
        && !gallery.is_damaged(row)
}

/// Exact f32 mean of `row`, with the kernel the exact scan uses.
#[inline]
pub(crate) fn exact_mean(
    kern: kernel::Kernel,
    snap: &Snapshot,
    probe: &Template,
    row: u64,
    scores: &mut [f32],
) -> f32 {
    kernel::block_dots_with(
        kern,
        probe.as_slice(),
        snap.vector(row),
        snap.layout.dim,
        scores,
    );
    mean_score(scores)
}

/// Re-scores `rows` exactly and keeps the best `k` (same order as the exact scan).
pub(crate) fn rescore(
    snap: &Snapshot,
    probe: &Template,
    k: usize,
    rows: impl IntoIterator<Item = u64>,
) -> TopK {
    let kern = kernel::Kernel::best_for(snap.layout.dim);
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

/// Turns the final top-k into candidates (re-scored, re-checked live).
pub(crate) fn finish(
    snap: &Snapshot,
    probe: &Template,
    query: &SearchQuery,
    top: TopK,
) -> Vec<Candidate> {
    top.into_sorted()
        .into_iter()
        .filter_map(|s| exact::candidate(snap, probe, query, s.row))
        .collect()
}

/// The quantised scan: same result as [`exact::search`] (see the module docs).
/// Rows of `snap` not yet in `store` are scanned in f32.
pub(crate) fn search(
    gallery: &Gallery,
    snap: &Snapshot,
    store: &QuantStore,
    probe: &Template,
    query: &SearchQuery,
) -> Vec<Candidate> {
    let k = query.top_k;
    let covered = store.rows().min(snap.count as usize);
    let qp = QuantProbe::new(probe);
    let scan = |range: std::ops::Range<usize>| {
        let mut dots = [0i32; Layout::MAX_BLOCKS];
        let dots = &mut dots[..store.layout.blocks];
        let mut ranked = Ranked::new(k);
        for row in range {
            if !admissible(gallery, snap, query, row as u64) {
                continue;
            }
            let (approx, err) = qp.score(store, row, dots);
            ranked.push(row as u64, approx - err, approx + err, true);
        }
        ranked
    };
    let ranked = if covered < PARALLEL_THRESHOLD {
        scan(0..covered)
    } else {
        (0..covered.div_ceil(CHUNK_ROWS))
            .into_par_iter()
            .map(|c| scan(c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(covered)))
            .reduce(|| Ranked::new(k), Ranked::merge)
    };
    let mut top = rescore(snap, probe, k, ranked.finish());
    if (covered as u64) < snap.count {
        top = top.merge(exact::scan_range(
            gallery,
            snap,
            probe,
            query,
            covered as u64..snap.count,
        ));
    }
    finish(snap, probe, query, top)
}

/// The sign-sketch prefilter: the `rescore` rows nearest in Hamming distance
/// are re-scored in f32. Approximate: it carries no guarantee and is measured
/// by the benches as an alternative to the quantised scan.
pub(crate) fn sketch_search(
    gallery: &Gallery,
    snap: &Snapshot,
    store: &QuantStore,
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
            let d = int_kernels::hamming(store.sketch(row), &ps);
            let score = -(d as f32);
            if score >= top.floor() && admissible(gallery, snap, query, row as u64) {
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
    let mut top = rescore(
        snap,
        probe,
        query.top_k,
        near.into_sorted().into_iter().map(|s| s.row),
    );
    if (covered as u64) < snap.count {
        top = top.merge(exact::scan_range(
            gallery,
            snap,
            probe,
            query,
            covered as u64..snap.count,
        ));
    }
    finish(snap, probe, query, top)
}

/// Helpers shared by the unit tests of the compact copies.
#[cfg(test)]
pub(super) mod test_support {
    use crate::storage::Gallery;
    use crate::template::Template;

    /// Uniform values in `[-0.5, 0.5)` from a seed (xorshift).
    pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        }
    }

    /// Inserts `templates` as one batch; template `i` gets feature id
    /// `first + i + 1` and, with `distinct_users`, user key `first + i + 1`.
    pub(crate) fn insert_all(
        g: &Gallery,
        first: usize,
        templates: &[Template],
        distinct_users: bool,
    ) {
        let items: Vec<(crate::RecordIds, &Template)> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let id = (first + i) as u128 + 1;
                let ids = crate::RecordIds {
                    feature_id: id,
                    user_key: if distinct_users { id } else { 1 },
                    palm: crate::PalmSide::Left,
                };
                (ids, t)
            })
            .collect();
        g.insert_batch(&items).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{insert_all, uniform};
    use super::*;

    /// The stated bound holds for every block of random unit vectors, including
    /// peaky ones (one large value).
    #[test]
    fn error_bound_holds_on_random_templates() {
        let layout = Layout::DEFAULT;
        let mut next = uniform(0x9e3779b97f4a7c15);
        for trial in 0..300 {
            let mut g: Vec<f32> = (0..layout.len()).map(|_| next()).collect();
            let p: Vec<f32> = (0..layout.len()).map(|_| next()).collect();
            if trial % 3 == 0 {
                g[trial % layout.len()] = 50.0;
            }
            let g = Template::from_f32(layout, &g).unwrap();
            let p = Template::from_f32(layout, &p).unwrap();
            let mut q = vec![0; layout.len()];
            let mut sc = vec![0.0; layout.blocks];
            let mut sk = vec![0; layout.len().div_ceil(64)];
            quantise_row(layout, g.as_slice(), &mut q, &mut sc, &mut sk);
            let store = QuantStore {
                layout,
                words: sk.len(),
                values: q,
                scales: sc,
                sketches: sk,
                lead: Vec::new(),
                lead_scales: Vec::new(),
                rows: 1,
                lead_rows: 0,
                derived: true,
            };
            let qp = QuantProbe::new(&p);
            let mut dots = vec![0; layout.blocks];
            let (approx, err) = qp.score(&store, 0, &mut dots);
            let exact = mean_score(&crate::scoring::block_scores(&p, &g));
            assert!(
                (approx - exact).abs() <= err,
                "approx {approx} exact {exact} bound {err}"
            );
            // The bound is useful, not vacuous.
            assert!(err < 0.05, "bound {err}");
        }
    }

    #[test]
    fn sketch_sets_sign_bits() {
        let v = [1.0, -1.0, 0.0, -0.5];
        assert_eq!(sketch_of(&v), vec![0b0101]);
    }

    /// Deriving the copy in parallel after open (lead block first, in tasks
    /// of 64 groups, then the row-major part) gives the same bytes as
    /// appending the rows one by one, across task and group boundaries and
    /// with a partial last group; later appends continue it the same way.
    #[test]
    fn parallel_derivation_matches_appending() {
        let layout = Layout::new(3, 20).unwrap();
        let mut next = uniform(0x2545_f491_4f6c_dd1d);
        let dir = tempfile::tempdir().unwrap();
        let g = Gallery::create(dir.path(), layout).unwrap();
        let mut insert = |from: usize, to: usize| {
            let templates: Vec<Template> = (from..to)
                .map(|_| {
                    let v: Vec<f32> = (0..layout.len()).map(|_| next()).collect();
                    Template::from_f32(layout, &v).unwrap()
                })
                .collect();
            insert_all(&g, from, &templates, false);
        };
        // Two parallel tasks of 1,024 rows and a partial group of 7.
        let n = 2 * 64 * GROUP_ROWS + 7;
        insert(0, n);
        let snap = g.snapshot();
        let mut derived = QuantStore::lead_only(&snap);
        derived.install(QuantStore::derive_row_major(&snap));
        let mut appended = QuantStore::new(layout);
        appended.catch_up(&snap);
        let same = |a: &QuantStore, b: &QuantStore| {
            assert_eq!((a.rows(), a.lead_rows()), (b.rows(), b.lead_rows()));
            assert_eq!(a.lead(), b.lead());
            assert_eq!(a.values, b.values);
            assert_eq!(a.scales, b.scales);
            assert_eq!(a.sketches, b.sketches);
        };
        same(&derived, &appended);
        assert_eq!(derived.lead_rows(), n);
        insert(n, n + 30);
        let snap = g.snapshot();
        derived.catch_up(&snap);
        appended.catch_up(&snap);
        same(&derived, &appended);
        let mut rederived = QuantStore::lead_only(&snap);
        rederived.install(QuantStore::derive_row_major(&snap));
        same(&rederived, &appended);
    }
}
