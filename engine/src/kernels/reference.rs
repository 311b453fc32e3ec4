//! The plain versions of every kernel: what each instruction set's version
//! is tested against, and the fallback where a CPU has none of them.
//!
//! The f32 [`block_dots`] sums each block in f64 and rounds once: the most
//! accurate answer, not the fastest (the f32 fallback is simsimd's dispatched
//! `dot`). The integer versions are exact, so every fast version must agree
//! with them bit for bit.

use super::lead::{LeadProbe, LeadTest, Line, GROUP_ROWS, NIBBLE_OFFSET};
use crate::template::Template;

/// Per-block dot products of two equally laid out value slices, each block
/// summed in f64 and rounded once: the most accurate answer, not the fastest.
pub fn block_dots(a: &[f32], b: &[f32], dim: usize) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "slices must have the same length");
    a.chunks_exact(dim)
        .zip(b.chunks_exact(dim))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum::<f64>() as f32
        })
        .collect()
}

/// Per-block cosine similarities of two templates of one layout.
pub fn block_scores(probe: &Template, enrolled: &Template) -> Vec<f32> {
    assert_eq!(probe.layout(), enrolled.layout(), "layouts must match");
    block_dots(probe.as_slice(), enrolled.as_slice(), probe.layout().dim)
}

/// The plain version of [`lead_scan`](super::lead_scan).
pub(crate) fn lead_scan(
    lines: &[Line],
    scales: &[f32],
    probe: &LeadProbe,
    test: LeadTest,
    groups: std::ops::Range<usize>,
    out: &mut Vec<(usize, u16)>,
) {
    let per = probe.low.len();
    for g in groups {
        let group = &lines[g * per..(g + 1) * per];
        let mut mask = 0u16;
        for lane in 0..GROUP_ROWS {
            let mut dot = 0i32;
            for (j, line) in group.iter().enumerate() {
                for k in 0..4 {
                    let byte = line.0[4 * lane + k];
                    let (low, high) = (i32::from(byte & 0x0f), i32::from(byte >> 4));
                    dot += probe.signed[8 * j + k] * (low - NIBBLE_OFFSET);
                    dot += probe.signed[8 * j + 4 + k] * (high - NIBBLE_OFFSET);
                }
            }
            let s = scales[g * GROUP_ROWS + lane];
            let hi = ((dot as f32) * test.t + test.w) * s + test.eps;
            // Not below the threshold, NaN included.
            if hi.partial_cmp(&test.thr) != Some(std::cmp::Ordering::Less) {
                mask |= 1 << lane;
            }
        }
        if mask != 0 {
            out.push((g, mask));
        }
    }
}

/// The plain version of [`block_dots_i8_i16`](super::block_dots_i8_i16).
pub(crate) fn block_dots_i8_i16(g: &[i8], p: &[i16], dim: usize, out: &mut [i32]) {
    for ((gb, pb), o) in g.chunks_exact(dim).zip(p.chunks_exact(dim)).zip(out) {
        *o = gb
            .iter()
            .zip(pb)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
    }
}

/// The plain version of [`dot_i8`](super::dot_i8).
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i64::from(i16::from(x) * i16::from(y)))
        .sum()
}

/// The plain version of [`hamming`](super::hamming).
#[inline(always)]
pub(crate) fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}
