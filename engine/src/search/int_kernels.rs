//! Integer kernels of the compact gallery copies, with runtime dispatch.
//!
//! Four kernels, each with a plain Rust version that is the reference and the
//! fallback, and x86-64 versions behind a run-time CPU check (AVX-512 where
//! the CPU has it, else AVX2):
//!
//! * [`block_dots_i8_i16`]: per-block dot products of an i8 gallery row and an
//!   i16 probe, exact in i32 (the quantised scan);
//! * [`dot_i8`]: the dot product of two i8 keys, exact in i64 (the graph index);
//! * [`hamming`]: the Hamming distance of two bit sketches (the sign prefilter);
//! * [`lead_scan`]: one block of 16 rows at a time from the interleaved
//!   4-bit lead-block array, with the pruning test of the passing scan
//!   applied to the 16 results at once (AVX-512 VNNI).
//!
//! Integer arithmetic is exact, so the fast and the plain versions must agree
//! bit for bit; the tests below check that on random inputs.

/// Rows per group of the interleaved lead-block array.
pub(crate) const GROUP_ROWS: usize = 16;

/// Largest magnitude of a quantised probe value in the lead-block scan (a
/// signed byte, multiplied by the unsigned 4-bit gallery codes).
pub(crate) const LEAD_PROBE_MAX: i32 = 127;

/// Largest magnitude of a quantised gallery value in the lead-block array.
pub(crate) const LEAD_CODE_MAX: i32 = 7;

/// The stored nibble of a gallery value `q` in `-7..=7` (offset binary).
const NIBBLE_OFFSET: i32 = 8;

/// 64 bytes, 64-byte aligned: the unit of the interleaved lead-block array.
///
/// A group of [`GROUP_ROWS`] rows takes `lead_lines(dim)` lines. Line `j`
/// holds values `8j..8j + 8` of the lead block of each of the 16 rows, four
/// bytes per row (row `l` of the group at bytes `4l..4l + 4`): byte `k` holds
/// value `8j + k` in its low nibble and value `8j + 4 + k` in its high
/// nibble, each as `q + 8` for a code `q` in `-7..=7`. Masking the low (or
/// shifted high) nibbles gives 64 unsigned bytes, and one VNNI instruction
/// then adds four products to each of the 16 rows' sums, with no horizontal
/// sum. Values past `dim` are code 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

impl Line {
    /// A line whose every value is code 0.
    pub(crate) const ZERO: Line = Line([0x88; 64]);
}

/// Lines per group for blocks of `dim` values.
pub(crate) fn lead_lines(dim: usize) -> usize {
    dim.div_ceil(8)
}

/// Writes the `dim` codes (each in `-7..=7`) of one row's lead block into
/// lane `lane` of a group.
pub(crate) fn lead_put(group: &mut [Line], lane: usize, codes: &[i8]) {
    assert!(lane < GROUP_ROWS && group.len() == lead_lines(codes.len()));
    for (j, eight) in codes.chunks(8).enumerate() {
        for k in 0..4 {
            let nibble = |i: usize| {
                let q = eight.get(i).map_or(0, |&q| i32::from(q));
                assert!(q.abs() <= LEAD_CODE_MAX, "lead code {q} out of range");
                (q + NIBBLE_OFFSET) as u8
            };
            group[j].0[4 * lane + k] = nibble(k) | nibble(k + 4) << 4;
        }
    }
}

/// The probe's lead block prepared for [`lead_scan`]: `r_i` in
/// `-LEAD_PROBE_MAX..=LEAD_PROBE_MAX` as signed bytes, four per broadcast
/// word, in the order of the gallery's low and high nibbles.
pub(crate) struct LeadProbe {
    /// Per line: values `8j..8j + 4` (the low nibbles' partners), little-endian.
    low: Vec<u32>,
    /// Per line: values `8j + 4..8j + 8` (the high nibbles' partners).
    high: Vec<u32>,
    /// `8 · Σ r_i`: the nibbles' offset times the probe, subtracted from the sum.
    bias: i32,
    /// The signed values, for the plain version.
    signed: Vec<i32>,
}

impl LeadProbe {
    /// From the quantised probe values (each in `-LEAD_PROBE_MAX..=LEAD_PROBE_MAX`).
    pub(crate) fn new(r: &[i32]) -> LeadProbe {
        let lines = lead_lines(r.len());
        let mut signed = vec![0i32; lines * 8];
        signed[..r.len()].copy_from_slice(r);
        let word = |four: &[i32]| {
            four.iter().enumerate().fold(0u32, |w, (k, &v)| {
                assert!(v.abs() <= LEAD_PROBE_MAX, "lead probe value out of range");
                w | u32::from(v as i8 as u8) << (8 * k)
            })
        };
        let low = signed.chunks_exact(8).map(|e| word(&e[..4])).collect();
        let high = signed.chunks_exact(8).map(|e| word(&e[4..])).collect();
        let bias = NIBBLE_OFFSET * signed.iter().sum::<i32>();
        LeadProbe {
            low,
            high,
            bias,
            signed,
        }
    }
}

/// The pruning test of one row: it survives when
/// `((dot · t + w) · s + eps) >= thr`, or when that is NaN (see `passing.rs`).
/// Evaluated with the same f32 operations, in the same order, in both versions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeadTest {
    /// The probe scale.
    pub(crate) t: f32,
    /// The bound's weight `w`.
    pub(crate) w: f32,
    /// The rounding allowance.
    pub(crate) eps: f32,
    /// The lead block's threshold.
    pub(crate) thr: f32,
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
        unsafe { x86::lead_scan(lines, scales, probe, test, groups, out) };
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
    lead_scan_plain(lines, scales, probe, test, groups, out);
}

/// The plain version of [`lead_scan`].
pub(crate) fn lead_scan_plain(
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
    #[cfg(target_arch = "x86_64")]
    if dim.is_multiple_of(16) && avx2() {
        // SAFETY: AVX2 was detected at run time, `dim` is a multiple of 16,
        // and the assert above guarantees `g` and `p` hold exactly
        // `out.len() * dim` values, which is all the kernel reads.
        unsafe { avx2::block_dots_i8_i16(g, p, dim, out) };
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
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 was detected at run time and the assert above
        // guarantees equal lengths; the kernel reads whole 16-value chunks
        // only within `a.len()` and finishes the rest in plain code.
        return unsafe { avx2::dot_i8(a, b) };
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_loadu_si256, _mm512_add_epi32, _mm512_add_ps, _mm512_and_si512,
        _mm512_cmp_ps_mask, _mm512_cvtepi32_ps, _mm512_cvtepi8_epi16, _mm512_dpbusd_epi32,
        _mm512_load_si512, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_madd_epi16, _mm512_mul_ps,
        _mm512_reduce_add_epi32, _mm512_set1_epi32, _mm512_set1_epi8, _mm512_set1_ps,
        _mm512_setzero_si512, _mm512_srli_epi16, _mm512_storeu_si512, _mm512_sub_epi32,
        _CMP_NLT_UQ,
    };

    use super::{LeadProbe, LeadTest, Line, GROUP_ROWS};

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

/// The same kernels for CPUs with AVX2 but not AVX-512 (and as a second
/// implementation everywhere else that has AVX2; the tests compare each
/// with the plain version directly).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_add_epi16, _mm256_add_epi32, _mm256_add_ps, _mm256_and_si256,
        _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cvtepi32_ps, _mm256_cvtepi8_epi16,
        _mm256_extracti128_si256, _mm256_load_si256, _mm256_loadu_ps, _mm256_loadu_si256,
        _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_movemask_ps, _mm256_mul_ps,
        _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi8, _mm256_set1_ps,
        _mm256_setzero_si256, _mm256_srli_epi16, _mm256_sub_epi32, _mm_add_epi32,
        _mm_cvtsi128_si32, _mm_loadu_si128, _mm_shuffle_epi32, _CMP_NLT_UQ,
    };

    use super::{LeadProbe, LeadTest, Line, GROUP_ROWS};

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
                    let gv =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(pg.add(base + i).cast::<__m128i>()));
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
                    let x =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16 * k).cast::<__m128i>()));
                    let y =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16 * k).cast::<__m128i>()));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(x, y));
                }
            }
            i += 32;
        }
        // Each i32 lane holds at most n / 16 pairs of products of magnitude
        // <= 128 * 128, which fits for n <= 2^20; longer keys are rejected by
        // the caller.
        let head = i64::from(sum_i32(acc[0])) + i64::from(sum_i32(acc[1]));
        head + super::dot_i8_plain(&a[whole..], &b[whole..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pseudo-random words from a seed (xorshift).
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    proptest! {
        #[test]
        fn i8_i16_blocks_match_plain(
            blocks in 1usize..6,
            dim_words in 1usize..4,
            seed in any::<u64>(),
        ) {
            let dim = dim_words * 32;
            let max = probe_max(dim);
            let mut next = xorshift(seed);
            let g: Vec<i8> = (0..blocks * dim).map(|_| (next() % 255) as i32 as i8).collect();
            let g: Vec<i8> = g.into_iter().map(|v| v.max(-127)).collect();
            let p: Vec<i16> = (0..blocks * dim)
                .map(|_| ((next() % (2 * max as u64 + 1)) as i64 - max as i64) as i16)
                .collect();
            let mut fast = vec![0; blocks];
            let mut plain = vec![0; blocks];
            block_dots_i8_i16(&g, &p, dim, &mut fast);
            block_dots_i8_i16_plain(&g, &p, dim, &mut plain);
            prop_assert_eq!(&fast, &plain);
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: AVX2 was detected; dim is a multiple of 32 and both
                // slices hold exactly `blocks * dim` values.
                unsafe { avx2::block_dots_i8_i16(&g, &p, dim, &mut fast) };
                prop_assert_eq!(&fast, &plain);
            }
        }

        #[test]
        fn i8_dot_and_hamming_match_plain(a in proptest::collection::vec(any::<i8>(), 0..700), seed in any::<u64>()) {
            let b: Vec<i8> = a.iter().enumerate().map(|(i, &x)| x.wrapping_mul(3).wrapping_add((seed >> (i % 56)) as i8)).collect();
            prop_assert_eq!(dot_i8(&a, &b), dot_i8_plain(&a, &b));
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: AVX2 was detected; the slices have equal lengths.
                prop_assert_eq!(unsafe { avx2::dot_i8(&a, &b) }, dot_i8_plain(&a, &b));
            }
            let wa: Vec<u64> = a.iter().map(|&x| (x as u64).wrapping_mul(seed | 1)).collect();
            let wb: Vec<u64> = b.iter().map(|&x| (x as u64).wrapping_mul(seed.rotate_left(7) | 1)).collect();
            prop_assert_eq!(hamming(&wa, &wb), hamming_plain(&wa, &wb));
        }
    }

    proptest! {
        /// The VNNI lead scan (where the CPU has it) reports exactly the masks
        /// of the plain version, on random values, scales and thresholds,
        /// including the extreme values and NaN scales.
        #[test]
        fn lead_scan_matches_plain(
            groups in 1usize..6,
            dim_quads in 1usize..20,
            seed in any::<u64>(),
            thr in -1.0f32..1.0,
        ) {
            let dim = dim_quads * 4 - (seed % 4) as usize;
            let lim = LEAD_CODE_MAX as u64;
            let rmax = LEAD_PROBE_MAX as u64;
            let mut next = xorshift(seed);
            let per = lead_lines(dim);
            let mut lines = vec![Line::ZERO; groups * per];
            for g in 0..groups {
                for lane in 0..GROUP_ROWS {
                    let v: Vec<i8> = (0..dim)
                        .map(|_| match next() % 8 {
                            0 => lim as i8,
                            1 => -(lim as i8),
                            _ => ((next() % (2 * lim + 1)) as i64 - lim as i64) as i8,
                        })
                        .collect();
                    lead_put(&mut lines[g * per..(g + 1) * per], lane, &v);
                }
            }
            let r: Vec<i32> = (0..dim)
                .map(|_| match next() % 8 {
                    0 => LEAD_PROBE_MAX,
                    1 => -LEAD_PROBE_MAX,
                    _ => ((next() % (2 * rmax + 1)) as i64 - rmax as i64) as i32,
                })
                .collect();
            let probe = LeadProbe::new(&r);
            let scales: Vec<f32> = (0..groups * GROUP_ROWS)
                .map(|i| if i == 5 { f32::NAN } else { (next() % 1000) as f32 * 1e-5 })
                .collect();
            let test = LeadTest { t: 1.0 / 20.0 / 127.0, w: 3.0, eps: 1e-5, thr };
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            lead_scan(&lines, &scales, &probe, test, 0..groups, &mut fast);
            lead_scan_plain(&lines, &scales, &probe, test, 0..groups, &mut plain);
            prop_assert_eq!(&fast, &plain);
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                let mut second = Vec::new();
                // SAFETY: AVX2 was detected; `lines` holds `groups * per`
                // lines and `scales` 16 per group.
                unsafe { avx2::lead_scan(&lines, &scales, &probe, test, 0..groups, &mut second) };
                prop_assert_eq!(&second, &plain);
            }
            // A threshold nothing reaches: no group reported except for the
            // NaN scale, which always survives.
            let none = LeadTest { thr: 1e9, ..test };
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            lead_scan(&lines, &scales, &probe, none, 0..groups, &mut fast);
            lead_scan_plain(&lines, &scales, &probe, none, 0..groups, &mut plain);
            prop_assert_eq!(&fast, &plain);
            prop_assert_eq!(fast, vec![(0, 1 << 5)]);
        }
    }

    /// The lead-scan dot products are exact: with a threshold just above or
    /// at a row's known value, the row is pruned or kept accordingly.
    #[test]
    fn lead_scan_dots_are_exact() {
        let dim = 64;
        let per = lead_lines(dim);
        let mut lines = vec![Line::ZERO; per];
        let v = vec![-LEAD_CODE_MAX as i8; dim];
        lead_put(&mut lines, 3, &v);
        // Another lane with the opposite sign, so no lane's sum is the other's.
        lead_put(&mut lines, 4, &vec![LEAD_CODE_MAX as i8; dim]);
        let probe = LeadProbe::new(&vec![-LEAD_PROBE_MAX; dim]);
        let mut scales = vec![0.0f32; GROUP_ROWS];
        scales[3] = 1.0;
        scales[4] = 1.0;
        let dot = (LEAD_CODE_MAX * LEAD_PROBE_MAX) as f32 * 64.0;
        for (thr, kept) in [(dot, true), (dot + 1.0, false)] {
            let test = LeadTest {
                t: 1.0,
                w: 0.0,
                eps: 0.0,
                thr,
            };
            let mut out = Vec::new();
            lead_scan(&lines, &scales, &probe, test, 0..1, &mut out);
            let mut plain = Vec::new();
            lead_scan_plain(&lines, &scales, &probe, test, 0..1, &mut plain);
            assert_eq!(out, plain);
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                let mut second = Vec::new();
                // SAFETY: AVX2 was detected; one group of `per` lines and 16
                // scales.
                unsafe { avx2::lead_scan(&lines, &scales, &probe, test, 0..1, &mut second) };
                assert_eq!(second, plain);
            }
            assert_eq!(out == vec![(0, 1 << 3)], kept, "thr {thr}: {out:?}");
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
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 was detected; equal lengths, whole blocks of 64.
            unsafe {
                assert_eq!(avx2::dot_i8(&a, &a), 640 * 128 * 128);
                avx2::block_dots_i8_i16(&g, &p, dim, &mut out);
            }
            assert_eq!(out[1], -127 * i32::from(max) * 64);
        }
    }
}
