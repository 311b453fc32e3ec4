//! Plain scalar scoring: the reference that the SIMD kernels are tested against.

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
