//! Every SIMD and integer kernel of the engine, in one place: safe functions
//! that check lengths, then dispatch at run time to the version for the
//! instruction set the CPU has, or to the plain version.
//!
//! * [`block_dots`]: per-block f32 dot products (1:1 scoring, the f32 scan,
//!   every exact re-score). The fused AVX-512 kernel keeps every block's
//!   partial sums in registers and makes one pass over both templates; where
//!   the CPU lacks AVX-512 (or a block is not a multiple of 16 values) each
//!   block goes through simsimd's own dispatched `dot`.
//! * `block_dots_i8_i16`: per-block dot products of an i8 gallery row and an
//!   i16 probe, exact in i32 (the quantised scan).
//! * `dot_i8`: the dot product of two i8 keys, exact in i64 (the graph index).
//! * `hamming`: the Hamming distance of two bit sketches (the sign prefilter).
//! * `lead_scan`: one block of 16 rows at a time from the interleaved 4-bit
//!   lead-block array (`lead.rs`), with the pruning test of the passing scan
//!   applied to the 16 results at once.
//! * `prefetch`: a hint to start loading memory a search is about to read.
//! * `advise_huge_pages`: a hint to back a large buffer read at random with
//!   huge pages.
//!
//! One file per instruction set: `avx512.rs`, `avx2.rs`, `popcnt.rs`; the
//! plain versions in [`reference`], which the tests hold every other version
//! against (integer arithmetic is exact, so bit for bit; f32 within rounding).
//!
//! # Safety
//!
//! Every `unsafe` call below sits behind a run-time check of the instruction
//! set it needs and an assert on the lengths it reads; the `# Safety` section
//! of each kernel says what it relies on.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod huge_pages;
mod lead;
#[cfg(target_arch = "x86_64")]
mod popcnt;
mod prefetch;
pub mod reference;

use simsimd::SpatialSimilarity;

pub(crate) use huge_pages::advise_huge_pages;
pub(crate) use lead::{
    lead_lines, lead_put, LeadProbe, LeadTest, Line, GROUP_ROWS, LEAD_CODE_MAX, LEAD_PROBE_MAX,
};
pub(crate) use prefetch::prefetch;

/// A kernel that computes per-block dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One simsimd `dot` call per block (portable, dispatched by simsimd).
    Simsimd,
    /// One fused AVX-512F pass over all blocks (x86-64 only).
    FusedAvx512,
}

impl Kernel {
    /// The fastest kernel this CPU supports for blocks of `dim` values.
    #[inline]
    pub fn best_for(dim: usize) -> Kernel {
        if dim.is_multiple_of(16) && avx512f() {
            Kernel::FusedAvx512
        } else {
            Kernel::Simsimd
        }
    }

    /// Whether this kernel can run here for blocks of `dim` values.
    pub fn is_supported(self, dim: usize) -> bool {
        match self {
            Kernel::Simsimd => true,
            Kernel::FusedAvx512 => dim.is_multiple_of(16) && avx512f(),
        }
    }
}

#[inline]
fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Writes the dot product of each `dim`-value block of `a` and `b` into `out`,
/// with the fastest kernel available.
///
/// Panics if `a` and `b` do not both hold exactly `out.len()` blocks.
#[inline]
pub fn block_dots(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    block_dots_with(Kernel::best_for(dim), a, b, dim, out);
}

/// As [`block_dots`] with a chosen kernel; an unsupported choice falls back to simsimd.
#[inline]
pub fn block_dots_with(kernel: Kernel, a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    assert!(
        dim > 0 && a.len() == out.len() * dim && b.len() == a.len(),
        "block_dots: lengths {} and {} do not hold {} blocks of {}",
        a.len(),
        b.len(),
        out.len(),
        dim
    );
    #[cfg(target_arch = "x86_64")]
    if kernel == Kernel::FusedAvx512 && Kernel::FusedAvx512.is_supported(dim) {
        // SAFETY: AVX-512F was detected at run time just above, `dim` is a
        // multiple of 16, and the assert above guarantees `a` and `b` hold
        // exactly `out.len() * dim` values, which is all the kernel reads.
        unsafe { avx512::block_dots(a, b, dim, out) };
        return;
    }
    let _ = kernel;
    for ((x, y), o) in a.chunks_exact(dim).zip(b.chunks_exact(dim)).zip(out) {
        // Lengths are equal by construction, so simsimd always answers.
        *o = f32::dot(x, y).unwrap_or(f64::NAN) as f32;
    }
}

/// Scans groups `groups` of the interleaved array `lines` (with 16 scales per
/// group in `scales`): for every group with a surviving row, pushes the
/// group and the mask of its surviving lanes onto `out`. Lanes past the
/// last row have scale 0 and are masked by the caller.
#[inline]
pub(crate) fn lead_scan(
    lines: &[Line],
    scales: &[f32],
    probe: &LeadProbe,
    test: LeadTest,
    groups: std::ops::Range<usize>,
    out: &mut Vec<(usize, u16)>,
) {
    let per = probe.low.len();
    assert!(
        groups.end * per <= lines.len() && groups.end * GROUP_ROWS <= scales.len(),
        "lead_scan: groups {groups:?} out of range"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512vnni() {
        // SAFETY: AVX-512F, AVX-512BW and AVX-512 VNNI were detected at run
        // time; the assert above guarantees that every group read (its `per`
        // lines and 16 scales) is within `lines` and `scales`.
        unsafe { avx512::lead_scan(lines, scales, probe, test, groups, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 was detected at run time; the assert above guarantees
        // that every group read (its `per` lines and 16 scales) is within
        // `lines` and `scales`.
        unsafe { avx2::lead_scan(lines, scales, probe, test, groups, out) };
        return;
    }
    reference::lead_scan(lines, scales, probe, test, groups, out);
}

/// Largest magnitude of a quantised probe value for blocks of `dim` values:
/// small enough that a block's i8 x i16 dot product cannot overflow i32
/// (`dim * 127 * max <= i32::MAX`), and at most `i16::MAX`.
pub(crate) fn probe_max(dim: usize) -> i32 {
    let bound = i32::MAX as i64 / (127 * dim as i64);
    bound.min(i16::MAX as i64) as i32
}

/// Writes the dot product of each `dim`-value block of `g` (i8) and `p` (i16)
/// into `out`. Panics unless both hold exactly `out.len()` blocks; the caller
/// keeps `|p| <= probe_max(dim)` so no sum overflows.
#[inline]
pub(crate) fn block_dots_i8_i16(g: &[i8], p: &[i16], dim: usize, out: &mut [i32]) {
    assert!(
        dim > 0 && g.len() == out.len() * dim && p.len() == g.len(),
        "block_dots_i8_i16: lengths {} and {} do not hold {} blocks of {dim}",
        g.len(),
        p.len(),
        out.len()
    );
    #[cfg(target_arch = "x86_64")]
    if dim.is_multiple_of(32) && avx512bw() {
        // SAFETY: AVX-512F and AVX-512BW were detected at run time, `dim` is a
        // multiple of 32, and the assert above guarantees `g` and `p` hold
        // exactly `out.len() * dim` values, which is all the kernel reads.
        unsafe { avx512::block_dots_i8_i16(g, p, dim, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if dim.is_multiple_of(16) && avx2() {
        // SAFETY: AVX2 was detected at run time, `dim` is a multiple of 16,
        // and the assert above guarantees `g` and `p` hold exactly
        // `out.len() * dim` values, which is all the kernel reads.
        unsafe { avx2::block_dots_i8_i16(g, p, dim, out) };
        return;
    }
    reference::block_dots_i8_i16(g, p, dim, out);
}

/// The dot product of two equally long i8 vectors (exact).
#[inline]
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
    assert_eq!(a.len(), b.len(), "dot_i8: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if avx512bw() {
        // SAFETY: AVX-512F and AVX-512BW were detected at run time and the
        // assert above guarantees equal lengths; the kernel reads whole
        // 32-value chunks only within `a.len()` and finishes the rest in
        // plain code.
        return unsafe { avx512::dot_i8(a, b) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 was detected at run time and the assert above
        // guarantees equal lengths; the kernel reads whole 16-value chunks
        // only within `a.len()` and finishes the rest in plain code.
        return unsafe { avx2::dot_i8(a, b) };
    }
    reference::dot_i8(a, b)
}

/// The number of differing bits of two equally long bit sketches.
#[inline]
pub(crate) fn hamming(a: &[u64], b: &[u64]) -> u32 {
    assert_eq!(a.len(), b.len(), "hamming: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if popcnt() {
        // SAFETY: the POPCNT instruction was detected at run time; the
        // function only iterates over the two slices.
        return unsafe { popcnt::hamming(a, b) };
    }
    reference::hamming(a, b)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn avx512bw() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn avx512vnni() -> bool {
    avx512bw() && std::arch::is_x86_feature_detected!("avx512vnni")
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn popcnt() -> bool {
    std::arch::is_x86_feature_detected!("popcnt")
}

#[cfg(test)]
mod tests;
