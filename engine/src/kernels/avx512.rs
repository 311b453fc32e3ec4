//! The AVX-512 versions of the kernels (x86-64): the fused f32 per-block dot
//! products (AVX-512F), the i8 kernels (AVX-512BW) and the lead scan
//! (AVX-512 VNNI). Every function is `unsafe`: its caller (the dispatch in
//! `mod.rs`) has detected the instruction set and checked the lengths it
//! states under `# Safety`.

use std::arch::x86_64::{
    __m256i, __m512, __m512i, _mm256_loadu_si256, _mm512_add_epi32, _mm512_add_ps,
    _mm512_and_si512, _mm512_cmp_ps_mask, _mm512_cvtepi32_ps, _mm512_cvtepi8_epi16,
    _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_load_si512, _mm512_loadu_ps, _mm512_loadu_si512,
    _mm512_madd_epi16, _mm512_mul_ps, _mm512_permute_ps, _mm512_reduce_add_epi32,
    _mm512_set1_epi32, _mm512_set1_epi8, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512,
    _mm512_shuffle_f32x4, _mm512_srli_epi16, _mm512_storeu_ps, _mm512_storeu_si512,
    _mm512_sub_epi32, _CMP_NLT_UQ,
};

use super::lead::{LeadProbe, LeadTest, Line, GROUP_ROWS};

/// Fused per-block dot products: each block's products are accumulated in
/// registers (two independent FMA chains), then the blocks are reduced four
/// at a time by a shuffle tree, so the horizontal sums are shared instead
/// of paid once per block.
///
/// # Safety
/// The CPU must support AVX-512F, `dim` must be a multiple of 16, and `a`
/// and `b` must each hold at least `out.len() * dim` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block_dots(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    if dim == 64 {
        // SAFETY: forwarded contract; the default block size gets a copy
        // with the block loop fully unrolled.
        unsafe { blocks::<64>(a, b, dim, out) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { blocks::<0>(a, b, dim, out) }
    }
}

/// [`block_dots`] with the block size fixed at compile time when `FIXED != 0`.
///
/// # Safety
/// As [`block_dots`]; when `FIXED != 0`, `dim == FIXED`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn blocks<const FIXED: usize>(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    let dim = if FIXED != 0 { FIXED } else { dim };
    let blocks = out.len();
    let mut block = 0;
    while block < blocks {
        let mut acc = [_mm512_setzero_ps(); 4];
        let group = (blocks - block).min(4);
        for (j, acc) in acc.iter_mut().enumerate().take(group) {
            // SAFETY: block + j < out.len(), so the block's `dim` values are
            // within the caller's bounds; dim is a multiple of 16.
            *acc = unsafe { block_accumulator(a, b, (block + j) * dim, dim) };
        }
        let sums = reduce4(acc);
        for (o, s) in out[block..block + group].iter_mut().zip(sums) {
            *o = s;
        }
        block += group;
    }
}

/// The 16 partial sums of one block's products.
///
/// # Safety
/// AVX-512F; `base + dim` within both slices; `dim` a multiple of 16.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_accumulator(a: &[f32], b: &[f32], base: usize, dim: usize) -> __m512 {
    debug_assert!(base + dim <= a.len() && base + dim <= b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= dim {
        // SAFETY: base + i + 32 <= base + dim, within both slices
        // (caller's contract); unaligned loads need no alignment.
        unsafe {
            acc0 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(base + i)),
                _mm512_loadu_ps(pb.add(base + i)),
                acc0,
            );
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(base + i + 16)),
                _mm512_loadu_ps(pb.add(base + i + 16)),
                acc1,
            );
        }
        i += 32;
    }
    if i < dim {
        // SAFETY: dim is a multiple of 16, so exactly 16 values remain,
        // within the caller's bounds.
        unsafe {
            acc0 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(base + i)),
                _mm512_loadu_ps(pb.add(base + i)),
                acc0,
            );
        }
    }
    _mm512_add_ps(acc0, acc1)
}

/// Horizontal sums of four vectors at once.
#[target_feature(enable = "avx512f")]
#[inline]
fn reduce4(v: [__m512; 4]) -> [f32; 4] {
    // 512 -> 256 bits per vector, two vectors per register.
    let s01 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(v[0], v[1]),
        _mm512_shuffle_f32x4::<0xEE>(v[0], v[1]),
    );
    let s23 = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x44>(v[2], v[3]),
        _mm512_shuffle_f32x4::<0xEE>(v[2], v[3]),
    );
    // 256 -> 128 bits per vector: lane k of 128 bits holds vector k.
    let t = _mm512_add_ps(
        _mm512_shuffle_f32x4::<0x88>(s01, s23),
        _mm512_shuffle_f32x4::<0xDD>(s01, s23),
    );
    // 4 -> 1 within each 128-bit lane.
    let u = _mm512_add_ps(t, _mm512_permute_ps::<0x4E>(t));
    let w = _mm512_add_ps(u, _mm512_permute_ps::<0xB1>(u));
    let mut lanes = [0.0f32; 16];
    // SAFETY: `lanes` holds exactly 16 f32, the store's width.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), w) };
    [lanes[0], lanes[4], lanes[8], lanes[12]]
}

/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI; every group
/// in `groups` must lie within `lines` (`probe.low.len()` lines per group)
/// and `scales` (16 per group).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn lead_scan(
    lines: &[Line],
    scales: &[f32],
    probe: &LeadProbe,
    test: LeadTest,
    groups: std::ops::Range<usize>,
    out: &mut Vec<(usize, u16)>,
) {
    let per = probe.low.len();
    let zero = _mm512_setzero_si512();
    let nibble = _mm512_set1_epi8(0x0f);
    let bias = _mm512_set1_epi32(probe.bias);
    let (t, w, eps, thr) = (
        _mm512_set1_ps(test.t),
        _mm512_set1_ps(test.w),
        _mm512_set1_ps(test.eps),
        _mm512_set1_ps(test.thr),
    );
    for g in groups {
        let base = lines.as_ptr().wrapping_add(g * per);
        let mut acc = [zero, zero];
        for j in 0..per {
            // SAFETY: line g * per + j is within `lines` (caller's
            // contract); `Line` is 64-byte aligned, as the aligned load
            // requires.
            let d = unsafe { _mm512_load_si512(base.add(j).cast::<__m512i>()) };
            // The nibbles as unsigned bytes (0..=15), times the probe's
            // signed bytes; the offset is removed once, by `bias`.
            let low = _mm512_and_si512(d, nibble);
            let high = _mm512_and_si512(_mm512_srli_epi16::<4>(d), nibble);
            let pl = _mm512_set1_epi32(probe.low[j] as i32);
            let ph = _mm512_set1_epi32(probe.high[j] as i32);
            acc[0] = _mm512_dpbusd_epi32(acc[0], low, pl);
            acc[1] = _mm512_dpbusd_epi32(acc[1], high, ph);
        }
        let dot = _mm512_sub_epi32(_mm512_add_epi32(acc[0], acc[1]), bias);
        // SAFETY: scales g * 16 .. g * 16 + 16 are within `scales`
        // (caller's contract); the load is unaligned.
        let s = unsafe { _mm512_loadu_ps(scales.as_ptr().add(g * GROUP_ROWS)) };
        let hi = _mm512_add_ps(
            _mm512_mul_ps(
                _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), t), w),
                s,
            ),
            eps,
        );
        let mask = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(hi, thr);
        if mask != 0 {
            out.push((g, mask));
        }
    }
}

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
                let gv =
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(pg.add(base + i).cast::<__m256i>()));
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
    head + super::reference::dot_i8(&a[whole..], &b[whole..])
}
