//! The compact copy of the gallery: i8 values with one scale per block and a
//! 1-bit sign sketch per value, row-major (the quantised scan and the sketch
//! prefilter read them); plus, for the passing scan, one block of every row
//! ([`LEAD_BLOCK`]) again at 4 bits per value, block-major and interleaved by
//! groups of 16 rows.
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

use rayon::prelude::*;

use crate::kernels::{self, GROUP_ROWS};
use crate::storage::Snapshot;
use crate::template::Layout;

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
pub(crate) struct CompactCopy {
    pub(super) layout: Layout,
    words: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    sketches: Vec<u64>,
    /// The lead block of every row, interleaved by groups of
    /// [`kernels::GROUP_ROWS`] rows (see [`kernels::Line`]); lanes past
    /// the last row are zero.
    lead: Vec<kernels::Line>,
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

/// `r.round().clamp(-limit, limit)` as an integer (halves away from zero, NaN
/// to 0), computed without a call to the C library's `roundf`, so that the
/// loops over it vectorise: clamped first (the same for an integer `limit`),
/// truncated, and the exact remainder (`|r| < 2^23`) rounds the half away.
/// `limit` is an integer in `0..2^23`.
#[inline]
pub(crate) fn round_clamped(r: f32, limit: f32) -> i32 {
    let c = r.clamp(-limit, limit);
    let t = c as i32;
    let rest = c - t as f32;
    t + i32::from(rest >= 0.5) - i32::from(rest <= -0.5)
}

/// Rows appended at once from which [`CompactCopy::catch_up`] quantises them
/// in parallel (a batch insert's; one enrollment's row stays on its thread).
const PARALLEL_CATCH_UP_ROWS: usize = 256;

/// A row's place in the compact copy's arrays, numbered: its values, scales and
/// sketch words.
type RowParts<'a> = (usize, ((&'a mut [i8], &'a mut [f32]), &'a mut [u64]));

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
                *o = round_clamped(x / s, 127.0) as i8;
            }
        } else {
            qb.fill(0);
        }
    }
    sketch.fill(0);
    for (word, values) in sketch.iter_mut().zip(v.chunks(64)) {
        *word = sign_bits(values);
    }
}

/// The sign bits of up to 64 values: bit i set when value i is >= 0 (a
/// branch-free fold the compiler vectorises).
#[inline]
fn sign_bits(values: &[f32]) -> u64 {
    values
        .iter()
        .enumerate()
        .fold(0u64, |word, (i, x)| word | (u64::from(*x >= 0.0) << i))
}

/// The sign sketch of `values` (bit i set when value i is >= 0).
pub(crate) fn sketch_of(values: &[f32]) -> Vec<u64> {
    values.chunks(64).map(sign_bits).collect()
}

/// Quantises a lead block to codes in `-7..=7` (written into `codes`) and
/// returns the scale `s = max|g_i| / 7`, so that `|g_i - s·q_i| <= s/2`.
/// A zero or non-finite block gets codes 0 and its scale as computed (zero,
/// or non-finite so that the row is never pruned).
pub(super) fn lead_codes(block: &[f32], codes: &mut [i8]) -> f32 {
    let q_max = kernels::LEAD_CODE_MAX as f32;
    let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let s = max / q_max;
    if s > 0.0 && s.is_finite() {
        for (x, o) in block.iter().zip(codes.iter_mut()) {
            *o = round_clamped(x / s, q_max) as i8;
        }
    } else {
        codes.fill(0);
    }
    s
}

/// The row-major part of the copy for rows `0..rows`, derived apart from the
/// lead block (see [`CompactCopy::derive_row_major`]).
pub(crate) struct RowMajor {
    values: Vec<i8>,
    scales: Vec<f32>,
    sketches: Vec<u64>,
    rows: usize,
}

impl CompactCopy {
    /// An empty store for `layout`.
    pub(crate) fn new(layout: Layout) -> CompactCopy {
        CompactCopy {
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
    pub(crate) fn lead_only(snap: &Snapshot) -> CompactCopy {
        let mut store = CompactCopy::new(snap.layout);
        store.derived = false;
        let n = snap.count as usize;
        let dim = store.layout.dim;
        let per = kernels::lead_lines(dim);
        let groups = n.div_ceil(GROUP_ROWS);
        store.lead = vec![kernels::Line::ZERO; groups * per];
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
                    let v = snap.scanned_vector((first + r) as u64);
                    *scale = lead_codes(&v[LEAD_BLOCK * dim..(LEAD_BLOCK + 1) * dim], &mut codes);
                    let (g, lane) = (r / GROUP_ROWS, r % GROUP_ROWS);
                    kernels::lead_put(&mut lines[g * per..(g + 1) * per], lane, &codes);
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
                        snap.scanned_vector(row),
                        &mut q[r * len..(r + 1) * len],
                        &mut s[r * blocks..(r + 1) * blocks],
                        &mut k[r * words..(r + 1) * words],
                    );
                }
            });
        out
    }

    /// Completes a [`CompactCopy::lead_only`] store with its row-major part
    /// (derived from the same snapshot); the store is then `derived` and
    /// appends the rows inserted since at the next [`CompactCopy::catch_up`].
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

    /// The i8 values, scales and sketch of `row` and its lead-block codes and
    /// scale, as bytes (for the tests of erasure).
    #[cfg(test)]
    pub(crate) fn row_bytes(&self, row: usize) -> Vec<u8> {
        let mut out: Vec<u8> = bytemuck::cast_slice(self.values(row)).to_vec();
        out.extend_from_slice(bytemuck::cast_slice(self.scales(row)));
        out.extend_from_slice(bytemuck::cast_slice(self.sketch(row)));
        let per = kernels::lead_lines(self.layout.dim);
        let (g, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
        for line in &self.lead[g * per..(g + 1) * per] {
            out.extend_from_slice(&line.0[4 * lane..4 * lane + 4]);
        }
        out.extend_from_slice(&self.lead_scales[g * GROUP_ROWS + lane].to_le_bytes());
        out
    }

    /// Appends the lead block of row `lead_rows()` of `snap`.
    fn push_lead(&mut self, snap: &Snapshot) {
        let dim = self.layout.dim;
        let per = kernels::lead_lines(dim);
        let row = self.lead_rows;
        let (g, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
        if lane == 0 {
            self.lead.resize(self.lead.len() + per, kernels::Line::ZERO);
            self.lead_scales
                .resize(self.lead_scales.len() + GROUP_ROWS, 0.0);
        }
        let mut codes = vec![0i8; dim];
        let lead = &snap.vector(row as u64)[LEAD_BLOCK * dim..(LEAD_BLOCK + 1) * dim];
        self.lead_scales[g * GROUP_ROWS + lane] = lead_codes(lead, &mut codes);
        kernels::lead_put(&mut self.lead[g * per..(g + 1) * per], lane, &codes);
        self.lead_rows += 1;
    }

    /// Erases every copy of `row`: its i8 values, scales and sketch become
    /// zero, its lead-block codes code 0 and its lead scale zero (a row with a
    /// zero scale never survives the passing scan's pruning).
    pub(crate) fn erase(&mut self, row: usize) {
        if row < self.rows {
            let (len, blocks, words) = (self.layout.len(), self.layout.blocks, self.words);
            self.values[row * len..(row + 1) * len].fill(0);
            self.scales[row * blocks..(row + 1) * blocks].fill(0.0);
            self.sketches[row * words..(row + 1) * words].fill(0);
        }
        if row < self.lead_rows {
            let per = kernels::lead_lines(self.layout.dim);
            let (g, lane) = (row / GROUP_ROWS, row % GROUP_ROWS);
            let zeros = vec![0i8; self.layout.dim];
            kernels::lead_put(&mut self.lead[g * per..(g + 1) * per], lane, &zeros);
            self.lead_scales[g * GROUP_ROWS + lane] = 0.0;
        }
    }

    /// Erases the rows of `snap` that are deleted (see [`CompactCopy::erase`]):
    /// run when a part derived in the background is installed, since a row
    /// erased while it was being derived may have been read before.
    pub(crate) fn erase_deleted(&mut self, snap: &Snapshot) {
        let covered = self.lead_rows.max(self.rows).min(snap.count as usize);
        for row in 0..covered {
            if snap.is_dead(row as u64) {
                self.erase(row);
            }
        }
    }

    /// A copy of the one row `values` (row-major part only).
    #[cfg(test)]
    pub(super) fn of_row(layout: Layout, values: &[f32]) -> CompactCopy {
        let mut copy = CompactCopy::new(layout);
        copy.values = vec![0; layout.len()];
        copy.scales = vec![0.0; layout.blocks];
        copy.sketches = vec![0; copy.words];
        quantise_row(
            layout,
            values,
            &mut copy.values,
            &mut copy.scales,
            &mut copy.sketches,
        );
        copy.rows = 1;
        copy
    }

    /// Rows the row-major copy covers (rows `0..rows()`).
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Rows the lead-block array covers (rows `0..lead_rows()`; at least
    /// [`CompactCopy::rows`]).
    pub(crate) fn lead_rows(&self) -> usize {
        self.lead_rows
    }

    /// Appends rows `self.rows()..snap.count` of `snap` to both parts.
    pub(crate) fn catch_up(&mut self, snap: &Snapshot) {
        let (len, blocks, words) = (self.layout.len(), self.layout.blocks, self.words);
        let new = usize::try_from(snap.count)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.rows);
        if new > 0 {
            let (vo, so, ko) = (self.values.len(), self.scales.len(), self.sketches.len());
            self.values.resize(vo + new * len, 0);
            self.scales.resize(so + new * blocks, 0.0);
            self.sketches.resize(ko + new * words, 0);
            let (layout, first) = (self.layout, self.rows);
            let quantise = |(i, ((q, scales), sketch)): RowParts<'_>| {
                quantise_row(
                    layout,
                    snap.scanned_vector((first + i) as u64),
                    q,
                    scales,
                    sketch,
                );
            };
            let values = &mut self.values[vo..];
            let scales = &mut self.scales[so..];
            let sketches = &mut self.sketches[ko..];
            if new >= PARALLEL_CATCH_UP_ROWS {
                values
                    .par_chunks_mut(len)
                    .zip(scales.par_chunks_mut(blocks))
                    .zip(sketches.par_chunks_mut(words))
                    .enumerate()
                    .for_each(quantise);
            } else {
                values
                    .chunks_mut(len)
                    .zip(scales.chunks_mut(blocks))
                    .zip(sketches.chunks_mut(words))
                    .enumerate()
                    .for_each(quantise);
            }
            self.rows += new;
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
            + self.lead.capacity() * std::mem::size_of::<kernels::Line>()
            + self.lead_scales.capacity() * 4
    }

    /// The interleaved lead-block lines and their scales (rows `0..lead_rows()`).
    pub(super) fn lead(&self) -> (&[kernels::Line], &[f32]) {
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

    pub(super) fn sketch(&self, row: usize) -> &[u64] {
        &self.sketches[row * self.words..(row + 1) * self.words]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::search::test_support::{insert_all, store as row_store, uniform};
    use crate::template::Template;

    /// The plain rounding `round_clamped` stands for.
    fn round_reference(r: f32, limit: f32) -> i32 {
        r.round().clamp(-limit, limit) as i32
    }

    #[test]
    fn round_clamped_matches_the_library_rounding_at_halves_and_their_neighbours() {
        for limit in [7.0f32, 127.0] {
            for k in -300..=300 {
                let half = k as f32 + 0.5;
                for r in [
                    half,
                    half.next_up(),
                    half.next_down(),
                    k as f32,
                    (k as f32).next_up(),
                    (k as f32).next_down(),
                ] {
                    assert_eq!(round_clamped(r, limit), round_reference(r, limit), "{r}");
                }
            }
            for r in [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                f32::MAX,
                f32::MIN,
            ] {
                assert_eq!(round_clamped(r, limit), round_reference(r, limit), "{r}");
            }
        }
    }

    proptest! {
        #[test]
        fn round_clamped_matches_the_library_rounding(bits in any::<u32>(), wide in any::<bool>()) {
            let r = f32::from_bits(bits);
            let limit = if wide { 127.0 } else { 7.0 };
            prop_assert_eq!(round_clamped(r, limit), round_reference(r, limit));
        }

        #[test]
        fn round_clamped_matches_in_the_quantiser_range(r in -130.0f32..130.0) {
            prop_assert_eq!(round_clamped(r, 127.0), round_reference(r, 127.0));
            prop_assert_eq!(round_clamped(r, 7.0), round_reference(r, 7.0));
        }
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
        let g = row_store(dir.path(), layout);
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
        let mut derived = CompactCopy::lead_only(&snap);
        derived.install(CompactCopy::derive_row_major(&snap));
        let mut appended = CompactCopy::new(layout);
        appended.catch_up(&snap);
        let same = |a: &CompactCopy, b: &CompactCopy| {
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
        let mut rederived = CompactCopy::lead_only(&snap);
        rederived.install(CompactCopy::derive_row_major(&snap));
        same(&rederived, &appended);
    }

    #[test]
    fn sketch_sets_sign_bits() {
        let v = [1.0, -1.0, 0.0, -0.5, -0.0, f32::NAN];
        assert_eq!(sketch_of(&v), vec![0b010101]);
    }

    /// The plain sign sketch: bit i of word i / 64 set when value i is >= 0.
    fn sketch_reference(values: &[f32]) -> Vec<u64> {
        let mut out = vec![0u64; values.len().div_ceil(64)];
        for (i, x) in values.iter().enumerate() {
            if *x >= 0.0 {
                out[i / 64] |= 1 << (i % 64);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn sketches_match_the_plain_sign_sketch(
            bits in proptest::collection::vec(any::<u32>(), 0..300),
        ) {
            let values: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
            prop_assert_eq!(sketch_of(&values), sketch_reference(&values));
        }

        #[test]
        fn a_quantised_row_carries_the_plain_sign_sketch(
            values in proptest::collection::vec(-2.0f32..2.0, 3 * 20),
        ) {
            let layout = Layout::new(3, 20).unwrap();
            let (mut q, mut scales, mut sketch) = (vec![0i8; 60], vec![0.0f32; 3], vec![u64::MAX; 1]);
            quantise_row(layout, &values, &mut q, &mut scales, &mut sketch);
            prop_assert_eq!(sketch, sketch_reference(&values));
            for (b, block) in values.chunks(20).enumerate() {
                for (x, q) in block.iter().zip(&q[b * 20..(b + 1) * 20]) {
                    prop_assert!((x - scales[b] * f32::from(*q)).abs() <= scales[b] * 0.5 + 1e-6);
                }
            }
        }
    }
}
