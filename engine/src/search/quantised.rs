//! The quantised scan: every row scored from the compact copy's i8 values
//! with a proven error bound, and only the rows that may rank re-scored in
//! f32: the exact scan's result, reading a quarter of the bytes.
//!
//! # The guarantee
//!
//! Each block `g` of a stored template is kept as `ĝ = s·q` with
//! `s = max|g_i| / 127` and `q_i = round(g_i / s)` in `-127..=127`, so
//! `|g_i - ĝ_i| <= s/2`. The probe block `p` is kept as `p̂ = t·r` with
//! `t = max|p_i| / R` (`R` = `kernels::probe_max`, 32767 for 64-value
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

use super::compact::CompactCopy;
use super::exact::{self, Candidate};
use super::query::{admissible, SearchQuery};
use super::top_k::Ranked;
use crate::kernels::{self, probe_max};
use crate::storage::Snapshot;
use crate::template::{Layout, Template};

/// Rows per parallel task.
const CHUNK_ROWS: usize = 8192;

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
    fn score(&self, store: &CompactCopy, row: usize, dots: &mut [i32]) -> (f32, f32) {
        let layout = store.layout;
        kernels::block_dots_i8_i16(store.values(row), &self.values, layout.dim, dots);
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

/// The quantised scan: same result as [`exact::search`] (see the module docs).
/// Rows of `snap` not yet in `store` are scanned in f32.
pub(crate) fn search(
    snap: &Snapshot,
    store: &CompactCopy,
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
            if !admissible(snap, query, row as u64) {
                continue;
            }
            let (approx, err) = qp.score(store, row, dots);
            ranked.push(row as u64, approx - err, approx + err, true);
        }
        ranked
    };
    let ranked = exact::in_chunks(covered, CHUNK_ROWS, scan, || Ranked::new(k), Ranked::merge);
    let top = exact::rescore(snap, probe, k, ranked.finish());
    exact::finish_past(snap, probe, query, top, covered as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::mean_score;
    use crate::search::test_support::uniform;

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
            let store = CompactCopy::of_row(layout, g.as_slice());
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
}
