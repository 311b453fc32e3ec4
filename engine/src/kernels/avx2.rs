//! The AVX2 versions of the integer kernels (x86-64), for CPUs with AVX2 but
//! not AVX-512 (and a second implementation everywhere else that has AVX2:
//! the tests compare each with the plain version directly).

use std::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi16, _mm256_add_epi32, _mm256_add_ps, _mm256_and_si256,
    _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi16,
    _mm256_extracti128_si256, _mm256_load_si256, _mm256_loadu_ps, _mm256_loadu_si256,
    _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_movemask_ps, _mm256_mul_ps, _mm256_set1_epi16,
    _mm256_set1_epi32, _mm256_set1_epi8, _mm256_set1_ps, _mm256_setzero_si256, _mm256_srli_epi16,
    _mm256_sub_epi32, _mm_add_epi32, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_shuffle_epi32,
    _CMP_NLT_UQ,
};

use super::lead::{LeadProbe, LeadTest, Line, GROUP_ROWS};

/// The sum of the eight i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn sum_i32(v: __m256i) -> i32 {
    let x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0x4E>(x));
    let x = _mm_add_epi32(x, _mm_shuffle_epi32::<0xB1>(x));
    _mm_cvtsi128_si32(x)
}

/// # Safety
/// The CPU must support AVX2; every group in `groups` must lie within
/// `lines` (`probe.low.len()` lines per group) and `scales` (16 per
/// group).
#[target_feature(enable = "avx2")]
pub(super) unsafe fn lead_scan(
    lines: &[Line],
    scales: &[f32],
    probe: &LeadProbe,
    test: LeadTest,
    groups: std::ops::Range<usize>,
    out: &mut Vec<(usize, u16)>,
) {
    let per = probe.low.len();
    let nibble = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let bias = _mm256_set1_epi32(probe.bias);
    let (t, w, eps, thr) = (
        _mm256_set1_ps(test.t),
        _mm256_set1_ps(test.w),
        _mm256_set1_ps(test.eps),
        _mm256_set1_ps(test.thr),
    );
    for g in groups {
        let base = lines.as_ptr().wrapping_add(g * per);
        // Rows 0..8 of the group sit in the first 32 bytes of each line,
        // rows 8..16 in the second.
        let mut acc = [_mm256_setzero_si256(), _mm256_setzero_si256()];
        for j in 0..per {
            let pl = _mm256_set1_epi32(probe.low[j] as i32);
            let ph = _mm256_set1_epi32(probe.high[j] as i32);
            for (half, acc) in acc.iter_mut().enumerate() {
                // SAFETY: line g * per + j is within `lines` (caller's
                // contract) and 64-byte aligned, so both 32-byte halves
                // are in bounds and 32-byte aligned.
                let d = unsafe { _mm256_load_si256(base.add(j).cast::<__m256i>().add(half)) };
                let low = _mm256_and_si256(d, nibble);
                let high = _mm256_and_si256(_mm256_srli_epi16::<4>(d), nibble);
                // Unsigned nibbles (0..=15) times signed probe bytes
                // (|r| <= 127), adjacent pairs summed: at most 3,810 in
                // magnitude, and 7,620 for the two summed, so the i16
                // sums never saturate; then groups of four into i32.
                let pairs = _mm256_add_epi16(
                    _mm256_maddubs_epi16(low, pl),
                    _mm256_maddubs_epi16(high, ph),
                );
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(pairs, ones));
            }
        }
        let mut mask = 0u16;
        for (half, acc) in acc.iter().enumerate() {
            let dot = _mm256_sub_epi32(*acc, bias);
            // SAFETY: scales g * 16 .. g * 16 + 16 are within `scales`
            // (caller's contract); the load is unaligned.
            let s = unsafe { _mm256_loadu_ps(scales.as_ptr().add(g * GROUP_ROWS + 8 * half)) };
            let hi = _mm256_add_ps(
                _mm256_mul_ps(
                    _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(dot), t), w),
                    s,
                ),
                eps,
            );
            let kept = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(hi, thr)) as u16;
            mask |= kept << (8 * half);
        }
        if mask != 0 {
            out.push((g, mask));
        }
    }
}

/// # Safety
/// The CPU must support AVX2, `dim` must be a multiple of 16, and `g` and
/// `p` must each hold at least `out.len() * dim` values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn block_dots_i8_i16(g: &[i8], p: &[i16], dim: usize, out: &mut [i32]) {
    let pg = g.as_ptr();
    let pp = p.as_ptr();
    for (block, o) in out.iter_mut().enumerate() {
        let base = block * dim;
        let mut acc = _mm256_setzero_si256();
        let mut i = 0;
        while i < dim {
            // SAFETY: base + i + 16 <= out.len() * dim (dim is a multiple
            // of 16), within both slices by the caller's contract;
            // unaligned loads need no alignment.
            unsafe {
                let gv = _mm256_cvtepi8_epi16(_mm_loadu_si128(pg.add(base + i).cast::<__m128i>()));
                let pv = _mm256_loadu_si256(pp.add(base + i).cast::<__m256i>());
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(gv, pv));
            }
            i += 16;
        }
        *o = sum_i32(acc);
    }
}

/// # Safety
/// The CPU must support AVX2 and `a.len() == b.len()`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
    let n = a.len();
    let whole = n - n % 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_si256(), _mm256_setzero_si256()];
    let mut i = 0;
    while i < whole {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= whole <= n = a.len() = b.len().
            unsafe {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16 * k).cast::<__m128i>()));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16 * k).cast::<__m128i>()));
                *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(x, y));
            }
        }
        i += 32;
    }
    // Each i32 lane holds at most n / 16 pairs of products of magnitude
    // <= 128 * 128, which fits for n <= 2^20; longer keys are rejected by
    // the caller.
    let head = i64::from(sum_i32(acc[0])) + i64::from(sum_i32(acc[1]));
    head + super::reference::dot_i8(&a[whole..], &b[whole..])
}
