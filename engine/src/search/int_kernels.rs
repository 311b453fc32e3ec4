//! Integer kernels of the compact gallery copies, with runtime dispatch.
//!
//! Three kernels, each with a plain Rust version that is the reference and the
//! fallback, and an x86-64 version behind a run-time CPU check:
//!
//! * [`block_dots_i8_i16`]: per-block dot products of an i8 gallery row and an
//!   i16 probe, exact in i32 (the quantised scan);
//! * [`dot_i8`]: the dot product of two i8 keys, exact in i64 (the graph index);
//! * [`hamming`]: the Hamming distance of two bit sketches (the sign prefilter).
//!
//! Integer arithmetic is exact, so the fast and the plain versions must agree
//! bit for bit; the tests below check that on random inputs.

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
        unsafe { x86::block_dots_i8_i16(g, p, dim, out) };
        return;
    }
    block_dots_i8_i16_plain(g, p, dim, out);
}

/// The plain version of [`block_dots_i8_i16`].
pub(crate) fn block_dots_i8_i16_plain(g: &[i8], p: &[i16], dim: usize, out: &mut [i32]) {
    for ((gb, pb), o) in g.chunks_exact(dim).zip(p.chunks_exact(dim)).zip(out) {
        *o = gb
            .iter()
            .zip(pb)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum();
    }
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
        return unsafe { x86::dot_i8(a, b) };
    }
    dot_i8_plain(a, b)
}

/// The plain version of [`dot_i8`].
pub(crate) fn dot_i8_plain(a: &[i8], b: &[i8]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i64::from(i16::from(x) * i16::from(y)))
        .sum()
}

/// The number of differing bits of two equally long bit sketches.
#[inline]
pub(crate) fn hamming(a: &[u64], b: &[u64]) -> u32 {
    assert_eq!(a.len(), b.len(), "hamming: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if popcnt() {
        // SAFETY: the POPCNT instruction was detected at run time; the
        // function only iterates over the two slices.
        return unsafe { x86::hamming(a, b) };
    }
    hamming_plain(a, b)
}

/// The plain version of [`hamming`].
#[inline(always)]
pub(crate) fn hamming_plain(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn avx512bw() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn popcnt() -> bool {
    std::arch::is_x86_feature_detected!("popcnt")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_loadu_si256, _mm512_add_epi32, _mm512_cvtepi8_epi16,
        _mm512_loadu_si512, _mm512_madd_epi16, _mm512_reduce_add_epi32, _mm512_setzero_si512,
        _mm512_storeu_si512,
    };

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW, `dim` must be a multiple
    /// of 32, and `g` and `p` must each hold at least `out.len() * dim` values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn block_dots_i8_i16(g: &[i8], p: &[i16], dim: usize, out: &mut [i32]) {
        let pg = g.as_ptr();
        let pp = p.as_ptr();
        for (block, o) in out.iter_mut().enumerate() {
            let base = block * dim;
            let mut acc: __m512i = _mm512_setzero_si512();
            let mut i = 0;
            while i < dim {
                // SAFETY: base + i + 32 <= out.len() * dim (dim is a multiple
                // of 32), within both slices by the caller's contract;
                // unaligned loads need no alignment.
                unsafe {
                    let gv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                        pg.add(base + i).cast::<__m256i>(),
                    ));
                    let pv = _mm512_loadu_si512(pp.add(base + i).cast::<__m512i>());
                    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(gv, pv));
                }
                i += 32;
            }
            *o = _mm512_reduce_add_epi32(acc);
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW and `a.len() == b.len()`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
        let n = a.len();
        let whole = n - n % 32;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc: __m512i = _mm512_setzero_si512();
        let mut i = 0;
        while i < whole {
            // SAFETY: i + 32 <= whole <= n = a.len() = b.len().
            unsafe {
                let x = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pa.add(i).cast::<__m256i>()));
                let y = _mm512_cvtepi8_epi16(_mm256_loadu_si256(pb.add(i).cast::<__m256i>()));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(x, y));
            }
            i += 32;
        }
        // Each i32 lane holds at most n / 16 products of magnitude <= 128 * 128,
        // which fits for n <= 2^21; longer keys are rejected by the caller.
        let mut lanes = [0i32; 16];
        // SAFETY: `lanes` is 64 bytes, the size of one 512-bit store.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast::<__m512i>(), acc) };
        let head: i64 = lanes.iter().map(|&l| i64::from(l)).sum();
        head + super::dot_i8_plain(&a[whole..], &b[whole..])
    }

    /// # Safety
    /// The CPU must support POPCNT.
    #[target_feature(enable = "popcnt")]
    pub(super) unsafe fn hamming(a: &[u64], b: &[u64]) -> u32 {
        super::hamming_plain(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn i8_i16_blocks_match_plain(
            blocks in 1usize..6,
            dim_words in 1usize..4,
            seed in any::<u64>(),
        ) {
            let dim = dim_words * 32;
            let max = probe_max(dim);
            let mut s = seed | 1;
            let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s };
            let g: Vec<i8> = (0..blocks * dim).map(|_| (next() % 255) as i32 as i8).collect();
            let g: Vec<i8> = g.into_iter().map(|v| v.max(-127)).collect();
            let p: Vec<i16> = (0..blocks * dim)
                .map(|_| ((next() % (2 * max as u64 + 1)) as i64 - max as i64) as i16)
                .collect();
            let mut fast = vec![0; blocks];
            let mut plain = vec![0; blocks];
            block_dots_i8_i16(&g, &p, dim, &mut fast);
            block_dots_i8_i16_plain(&g, &p, dim, &mut plain);
            prop_assert_eq!(fast, plain);
        }

        #[test]
        fn i8_dot_and_hamming_match_plain(a in proptest::collection::vec(any::<i8>(), 0..700), seed in any::<u64>()) {
            let b: Vec<i8> = a.iter().enumerate().map(|(i, &x)| x.wrapping_mul(3).wrapping_add((seed >> (i % 56)) as i8)).collect();
            prop_assert_eq!(dot_i8(&a, &b), dot_i8_plain(&a, &b));
            let wa: Vec<u64> = a.iter().map(|&x| (x as u64).wrapping_mul(seed | 1)).collect();
            let wb: Vec<u64> = b.iter().map(|&x| (x as u64).wrapping_mul(seed.rotate_left(7) | 1)).collect();
            prop_assert_eq!(hamming(&wa, &wb), hamming_plain(&wa, &wb));
        }
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let dim = 64;
        let max = probe_max(dim) as i16;
        let g = vec![-127i8; dim * 2];
        let p = vec![max; dim * 2];
        let mut out = [0; 2];
        block_dots_i8_i16(&g, &p, dim, &mut out);
        assert_eq!(out[0], -127 * i32::from(max) * 64);
        let a = vec![-128i8; 640];
        assert_eq!(dot_i8(&a, &a), 640 * 128 * 128);
    }
}
