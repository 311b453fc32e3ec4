//! Per-block dot-product kernels with runtime dispatch.
//!
//! The fused AVX-512 kernel keeps every block's partial sums in registers and
//! makes one pass over both templates; where the CPU lacks AVX-512 (or a block
//! is not a multiple of 16 values) each block goes through simsimd's own
//! dispatched `dot`. Both are checked against [`super::reference`] by property
//! tests.

use simsimd::SpatialSimilarity;

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
        if dim.is_multiple_of(16) && avx512_available() {
            Kernel::FusedAvx512
        } else {
            Kernel::Simsimd
        }
    }

    /// Whether this kernel can run here for blocks of `dim` values.
    pub fn is_supported(self, dim: usize) -> bool {
        match self {
            Kernel::Simsimd => true,
            Kernel::FusedAvx512 => dim.is_multiple_of(16) && avx512_available(),
        }
    }
}

#[inline]
fn avx512_available() -> bool {
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_permute_ps,
        _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps,
    };

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
            out[block..block + group].copy_from_slice(&sums[..group]);
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
}
