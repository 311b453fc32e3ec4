//! The passing scan: every row whose exact f32 scores pass the decision, found
//! by reading one block per row.
//!
//! # Idea
//!
//! Under `all_thresholds` (and `k_of_n` with `k` equal to the number of
//! blocks) a row passes only if every block score reaches its threshold, so
//! only if the lead block ([`LEAD_BLOCK`]) does. A genuine mate scores about
//! 0.9 on every block; an impostor's block score is about `N(0, 1/64)` (standard
//! deviation 0.125 for 64 values), five standard deviations below a 0.7
//! threshold. The scan therefore reads the lead block of every row from a
//! compact block-major array of 4-bit codes (32 B and a 4-byte scale per row,
//! against 680 B for the quantised scan and 2,560 B for the f32 scan), drops
//! every row whose proven upper bound on that block's score is below the
//! block's threshold, checks the few survivors on every block with the
//! row-major i8 copy, and re-scores what is left in f32 with the kernel and
//! tie-break of the exact scan (`exact.rs`), so the scores returned are the f32 scan's
//! floats. The scan is bound by memory bandwidth, so the bytes per row set
//! its speed; the coarser codes only widen the bound (by about 0.15 on a
//! typical block), which lets a few more impostors reach the second check.
//!
//! # The bound
//!
//! As in `quantised.rs`: a stored block `g` is `ĝ = s·q` with
//! `s = max|g_i| / Q`, `q_i` in `-Q..=Q`, `|g_i - ĝ_i| <= s/2` (`Q` = 7 for
//! the 4-bit lead block, [`LEAD_CODE_MAX`]; `Q` = 127 for the row-major i8
//! copy); a probe block `p` is `p̂ = t·r` with `t = max|p_i| / R` and
//! `|p_i - p̂_i| <= t/2` (`R` = [`LEAD_PROBE_MAX`] = 127 for the lead block,
//! whose kernel multiplies signed probe bytes by unsigned gallery nibbles;
//! `R` = 32767 for the row-major copy). The integer dot `r·q` is exact, and
//!
//! ```text
//! |p·g - p̂·ĝ| <= (s/2)·‖p‖₁ + (t/2)·‖ĝ‖₁ <= s · (‖p‖₁ + Q·t·dim) / 2  =  s·w
//! ```
//!
//! `w` is computed in f64 and widened by a relative `1e-4`, which covers the
//! rounding of the quotients `g_i / s` and `p_i / t` (at most `128·u` relative,
//! `u = 2⁻²⁴`) and of `w` itself. Each block score of the f32 kernel differs
//! from the real `p·g` by at most `dim·u·‖p‖·‖g‖` (unit blocks), and the
//! bound is evaluated in f32 with at most five roundings on a magnitude below
//! 1.1; `ε_b = 4·(dim + 16)·f32::EPSILON = 8·(dim + 16)·u` covers both. Hence,
//! for every block,
//!
//! ```text
//! exact_b <= hi_b = (r·q · t + w) · s + ε_b      and      exact_b >= lo_b = r·q·t·s - s·w - ε_b
//! ```
//!
//! **Prune 1 (lead block):** if `hi_lead < threshold_lead` the row cannot pass
//! and is dropped (a NaN bound never drops a row). **Prune 2 (every block, on
//! the survivors, with the 16-bit probe):** if some `hi_b < threshold_b` the
//! row cannot pass; it is kept only as a candidate to fill the list. A row
//! with `lo_b >= threshold_b` for every block passes for certain; once `k`
//! such rows are known, with mean lower bounds at least `τ` (the bound on the
//! mean is the quantised scan's), a row whose mean upper bound is below `τ`
//! has an exact mean below that of `k` passing rows and is not re-scored.
//! The same argument bounds the fill candidates. Everything else is
//! re-scored in f32 and decided exactly.
//!
//! # The guarantee
//!
//! Let `P` be the rows (live, not damaged, within the filter) whose exact f32
//! scores pass the decision, in exact order (mean descending, ties by row).
//! **The passing scan returns the first `min(|P|, top_k)` rows of `P`: every
//! template whose exact scores pass, up to `top_k`, in exact order, with the
//! f32 scan's scores**; in particular every passing row the f32 scan returns.
//! When fewer than `top_k` rows pass, the remaining places hold the best
//! non-passing rows (by exact mean) among those that survived prune 1, i.e.
//! whose lead block may reach its threshold: best effort, like the graph's
//! proposals. With realistic thresholds few rows survive prune 1, so the list
//! is then usually shorter than `top_k` (often just the passing rows, or
//! empty for an impostor). The list is sorted by mean like every search's, so
//! a non-passing row may precede a passing one. Rows of the gallery not yet in
//! the lead-block array are scored in f32 (as survivors), and so are the
//! survivors of prune 1 not yet in the row-major copy (right after open, the
//! lead block is derived first). A candidate whose record
//! or vector fails its checksum, or that is deleted during the search, is
//! dropped as in the other scans.
//!
//! Property tests in `engine/tests/passing_scan.rs` check this against the
//! f32 scan; the unit tests below check the bounds.

use rayon::prelude::*;

use super::compact::{CompactCopy, LEAD_BLOCK};
use super::exact::{self, Candidate};
use super::query::{admissible, SearchQuery};
use super::top_k::{Ranked, Scored, TopK};
use crate::kernels::{
    self, probe_max, Kernel, LeadProbe, LeadTest, GROUP_ROWS, LEAD_CODE_MAX, LEAD_PROBE_MAX,
};
use crate::scoring::{MatchPolicy, MatchSettings};
use crate::storage::Snapshot;
use crate::template::{Layout, Template};

/// Groups of 16 rows per parallel task (8192 rows).
const CHUNK_GROUPS: usize = 512;
/// Below this many rows the scan runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 16_384;
/// Relative widening of `w` (see the module docs).
const WEIGHT_MARGIN: f64 = 1e-4;

/// Whether the passing scan can serve `settings`: whether a row passes only
/// if every block, in particular the lead block, reaches its threshold.
pub(crate) fn serves(settings: &MatchSettings) -> bool {
    match settings.policy() {
        MatchPolicy::AllThresholds => true,
        MatchPolicy::KOfN { k } => k == settings.thresholds().len(),
        MatchPolicy::Mean => false,
    }
}

/// The rounding allowance `ε_b` of one block score.
fn block_eps(dim: usize) -> f32 {
    4.0 * (dim + 16) as f32 * f32::EPSILON
}

/// One probe block quantised to `-r_max..=r_max`: `(r, t, w)`, with `w` for
/// gallery codes in `-q_max..=q_max`.
fn quantise_block(block: &[f32], r_max: i32, q_max: i32) -> (Vec<i32>, f32, f32) {
    let r = r_max as f32;
    let max = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let t = max / r;
    let mut out = vec![0i32; block.len()];
    if t > 0.0 {
        for (x, o) in block.iter().zip(out.iter_mut()) {
            *o = (x / t).round().clamp(-r, r) as i32;
        }
    }
    let l1: f64 = block.iter().map(|x| f64::from(x.abs())).sum();
    let w = (l1 + f64::from(q_max) * f64::from(t) * block.len() as f64) / 2.0;
    (out, t, (w * (1.0 + WEIGHT_MARGIN)) as f32)
}

/// The probe prepared for both prunes.
struct PassingProbe {
    lead: LeadProbe,
    lead_test: LeadTest,
    /// Every block at 16 bits, for the row-major copy.
    values: Vec<i16>,
    /// Per block: `t_b`.
    scales: Vec<f32>,
    /// Per block: `w_b`.
    weights: Vec<f32>,
    /// `ε_b`.
    eps: f32,
    /// The allowance of the mean (the quantised scan's).
    eps_mean: f32,
}

impl PassingProbe {
    fn new(probe: &Template, settings: &MatchSettings) -> PassingProbe {
        let layout = probe.layout();
        let dim = layout.dim;
        let block = |b: usize| &probe.as_slice()[b * dim..(b + 1) * dim];
        let (r, t, w) = quantise_block(block(LEAD_BLOCK), LEAD_PROBE_MAX, LEAD_CODE_MAX);
        let eps = block_eps(dim);
        let lead_test = LeadTest {
            t,
            w,
            eps,
            thr: settings.thresholds()[LEAD_BLOCK],
        };
        let mut values = Vec::with_capacity(layout.len());
        let mut scales = Vec::with_capacity(layout.blocks);
        let mut weights = Vec::with_capacity(layout.blocks);
        for b in 0..layout.blocks {
            let (r, t, w) = quantise_block(block(b), probe_max(dim), 127);
            values.extend(r.into_iter().map(|v| v as i16));
            scales.push(t);
            weights.push(w);
        }
        PassingProbe {
            lead: LeadProbe::new(&r),
            lead_test,
            values,
            scales,
            weights,
            eps,
            eps_mean: 4.0 * (dim + layout.blocks + 16) as f32 * f32::EPSILON,
        }
    }

    /// Prune 2 on one row of the row-major copy.
    #[inline]
    fn check(
        &self,
        store: &CompactCopy,
        row: usize,
        thresholds: &[f32],
        dots: &mut [i32],
    ) -> Check {
        let layout = store.layout;
        kernels::block_dots_i8_i16(store.values(row), &self.values, layout.dim, dots);
        let s = store.scales(row);
        let (mut may, mut sure, mut approx, mut err) = (true, true, 0.0f32, 0.0f32);
        for b in 0..layout.blocks {
            let a = dots[b] as f32 * (s[b] * self.scales[b]);
            let e = s[b] * self.weights[b];
            if a + e + self.eps < thresholds[b] {
                may = false;
            }
            let certain = a - e - self.eps >= thresholds[b];
            sure &= certain;
            approx += a;
            err += e;
        }
        let n = layout.blocks as f32;
        let (mean, e) = (approx / n, err / n + self.eps_mean);
        Check {
            may,
            sure,
            lo: mean - e,
            hi: mean + e,
        }
    }
}

/// What prune 2 knows of one row.
#[derive(Clone, Copy, Debug)]
struct Check {
    /// Every block may reach its threshold (false: the row cannot pass).
    may: bool,
    /// Every block certainly reaches its threshold (the row passes).
    sure: bool,
    /// Bounds on the exact mean.
    lo: f32,
    hi: f32,
}

/// Per-chunk state.
struct Survivors {
    /// Rows that may pass, ranked against the rows that certainly pass.
    passing: Ranked,
    /// Rows that cannot pass (prune 2) but survived prune 1: the fill.
    failing: Ranked,
}

impl Survivors {
    fn new(k: usize) -> Survivors {
        Survivors {
            passing: Ranked::new(k),
            failing: Ranked::new(k),
        }
    }

    fn merge(self, other: Survivors) -> Survivors {
        Survivors {
            passing: self.passing.merge(other.passing),
            failing: self.failing.merge(other.failing),
        }
    }
}

/// The passing scan (see the module docs). The caller checks [`serves`].
pub(crate) fn search(
    snap: &Snapshot,
    store: &CompactCopy,
    probe: &Template,
    query: &SearchQuery,
) -> Vec<Candidate> {
    debug_assert!(serves(&query.settings));
    let k = query.top_k;
    let layout = snap.layout;
    let thresholds = query.settings.thresholds();
    let covered = store.lead_rows().min(snap.count as usize);
    // Rows of the row-major copy (prune 2); lead survivors past it are
    // decided in f32 directly.
    let checked = store.rows();
    let pp = PassingProbe::new(probe, &query.settings);
    let (lines, lead_scales) = store.lead();
    let scan = |groups: std::ops::Range<usize>| {
        let mut found = Survivors::new(k);
        let mut unchecked = Vec::new();
        let mut hits = Vec::new();
        kernels::lead_scan(
            lines,
            lead_scales,
            &pp.lead,
            pp.lead_test,
            groups,
            &mut hits,
        );
        let mut dots = [0i32; Layout::MAX_BLOCKS];
        let dots = &mut dots[..layout.blocks];
        for (g, mask) in hits {
            let mut mask = u32::from(mask);
            while mask != 0 {
                let row = g * GROUP_ROWS + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if row >= covered || !admissible(snap, query, row as u64) {
                    continue;
                }
                if row >= checked {
                    unchecked.push(row as u64);
                    continue;
                }
                let c = pp.check(store, row, thresholds, dots);
                if c.may {
                    found.passing.push(row as u64, c.lo, c.hi, c.sure);
                } else {
                    found.failing.push(row as u64, c.lo, c.hi, true);
                }
            }
        }
        (found, unchecked)
    };
    let groups = covered.div_ceil(GROUP_ROWS);
    let (found, unchecked) = if covered < PARALLEL_THRESHOLD {
        scan(0..groups)
    } else {
        (0..groups.div_ceil(CHUNK_GROUPS))
            .into_par_iter()
            .map(|c| scan(c * CHUNK_GROUPS..((c + 1) * CHUNK_GROUPS).min(groups)))
            .reduce(
                || (Survivors::new(k), Vec::new()),
                |(a, mut ua), (b, ub)| {
                    ua.extend(ub);
                    (a.merge(b), ua)
                },
            )
    };
    let kern = Kernel::best_for(layout.dim);
    let mut scores = [0.0f32; Layout::MAX_BLOCKS];
    let scores = &mut scores[..layout.blocks];
    let (mut passing, mut other) = (TopK::new(k), TopK::new(k));
    let mut decide = |row: u64, passing: &mut TopK, other: &mut TopK| {
        let score = exact::exact_mean(kern, snap, probe, row, scores);
        let s = Scored { score, row };
        if query.settings.decide(scores) {
            passing.push(s);
        } else {
            other.push(s);
        }
    };
    for row in found.passing.finish().into_iter().chain(unchecked) {
        decide(row, &mut passing, &mut other);
    }
    for row in covered as u64..snap.count {
        if admissible(snap, query, row) {
            decide(row, &mut passing, &mut other);
        }
    }
    if passing.len() < k {
        for row in found.failing.finish() {
            decide(row, &mut passing, &mut other);
        }
    }
    let passing = passing.into_sorted();
    let fill = k - passing.len();
    let mut top = TopK::new(k);
    for s in passing
        .into_iter()
        .chain(other.into_sorted().into_iter().take(fill))
    {
        top.push(s);
    }
    exact::finish(snap, probe, query, top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::block_scores;
    use crate::search::compact::lead_codes;
    use crate::search::test_support::{insert_all, store as row_store, uniform};

    fn random_templates(layout: Layout, n: usize, seed: u64) -> Vec<Template> {
        let mut next = uniform(seed);
        (0..n)
            .map(|i| {
                let mut v: Vec<f32> = (0..layout.len()).map(|_| next()).collect();
                if i % 3 == 0 {
                    // Peaky blocks: one large value.
                    v[i % layout.len()] = 50.0;
                }
                Template::from_f32(layout, &v).unwrap()
            })
            .collect()
    }

    /// Both per-block bounds hold for every block of random templates
    /// (including peaky ones), for probes that are near copies and strangers,
    /// and are useful (narrow).
    #[test]
    fn per_block_bounds_hold() {
        for layout in [Layout::DEFAULT, Layout::new(3, 32).unwrap()] {
            let gallery = random_templates(layout, 64, 0x9e3779b97f4a7c15);
            let mut probes = random_templates(layout, 40, 77);
            // Near copies: the bounds must hold near a block score of 1 too.
            probes.extend(gallery.iter().take(24).map(|g| {
                let v: Vec<f32> = g.as_slice().iter().map(|x| x * 1.0001 + 1e-4).collect();
                Template::from_f32(layout, &v).unwrap()
            }));
            let mut store = CompactCopy::new(layout);
            let dir = tempfile::tempdir().unwrap();
            let g = row_store(dir.path(), layout);
            insert_all(&g, 0, &gallery, false);
            let snap = g.snapshot();
            store.catch_up(&snap);
            let (lines, lead_scales) = store.lead();
            let mut widest = 0.0f32;
            for p in &probes {
                for (thr_lo, thr_hi) in [(-1.0, 1.0), (0.0, 0.5), (0.9, 0.99)] {
                    let mut thresholds = vec![thr_lo; layout.blocks];
                    thresholds[LEAD_BLOCK] = thr_hi;
                    let settings =
                        MatchSettings::new(thresholds.clone(), MatchPolicy::AllThresholds).unwrap();
                    let pp = PassingProbe::new(p, &settings);
                    let mut hits = Vec::new();
                    let groups = gallery.len().div_ceil(GROUP_ROWS);
                    kernels::lead_scan(
                        lines,
                        lead_scales,
                        &pp.lead,
                        pp.lead_test,
                        0..groups,
                        &mut hits,
                    );
                    let kept = |row: usize| {
                        hits.iter().any(|&(g, m)| {
                            g == row / GROUP_ROWS && m & (1 << (row % GROUP_ROWS)) != 0
                        })
                    };
                    let mut dots = vec![0; layout.blocks];
                    for (row, t) in gallery.iter().enumerate() {
                        assert!(snap.is_live(row as u64));
                        let exact = block_scores(p, t);
                        let passes = settings.decide(&exact);
                        // Prune 1 never drops a row whose lead block passes.
                        if exact[LEAD_BLOCK] >= thr_hi {
                            assert!(kept(row), "lead {} >= {thr_hi} pruned", exact[LEAD_BLOCK]);
                        }
                        // Prune 2 never drops a passing row; a certain pass passes.
                        let c = pp.check(&store, row, &thresholds, &mut dots);
                        if passes {
                            assert!(c.may, "passing row pruned: {exact:?}");
                        }
                        if c.sure {
                            assert!(passes, "sure but failing: {exact:?}");
                        }
                        let mean = crate::scoring::mean_score(&exact);
                        assert!(c.lo <= mean && mean <= c.hi, "{c:?} {mean}");
                        // The per-block interval holds on every block.
                        kernels::block_dots_i8_i16(
                            store.values(row),
                            &pp.values,
                            layout.dim,
                            &mut dots,
                        );
                        for b in 0..layout.blocks {
                            let s = store.scales(row)[b];
                            let a = dots[b] as f32 * (s * pp.scales[b]);
                            let e = s * pp.weights[b] + pp.eps;
                            assert!(
                                (exact[b] - a).abs() <= e,
                                "block {b}: {a} ± {e} vs {}",
                                exact[b]
                            );
                            widest = widest.max(e);
                        }
                        // The lead bound itself, evaluated as the kernel does.
                        let dim = layout.dim;
                        let mut lead_q = vec![0i8; dim];
                        let s = lead_codes(&t.as_slice()[LEAD_BLOCK * dim..][..dim], &mut lead_q);
                        let (r, t, w) = quantise_block(
                            &p.as_slice()[LEAD_BLOCK * dim..][..dim],
                            LEAD_PROBE_MAX,
                            LEAD_CODE_MAX,
                        );
                        let dot: i32 = r.iter().zip(&lead_q).map(|(&x, &y)| x * i32::from(y)).sum();
                        let hi = ((dot as f32) * t + w) * s + pp.eps;
                        assert!(exact[LEAD_BLOCK] <= hi, "lead {} > {hi}", exact[LEAD_BLOCK]);
                        // Useful on blocks without a single dominant value
                        // (a peaky block makes the 4-bit step coarse).
                        if row % 3 != 0 {
                            assert!(hi - exact[LEAD_BLOCK] < 0.3, "lead bound {hi} is vacuous");
                        }
                    }
                }
            }
            assert!(widest < 0.05, "per-block bound {widest}");
        }
    }

    /// Right after open only the lead block is derived: survivors of prune 1
    /// are decided in f32 directly, with the same result as the full copy
    /// (and as the f32 scan) for every passing row.
    #[test]
    fn lead_block_alone_serves_the_scan() {
        let layout = Layout::DEFAULT;
        let gallery = random_templates(layout, 300, 0x5eed);
        let dir = tempfile::tempdir().unwrap();
        let g = row_store(dir.path(), layout);
        insert_all(&g, 0, &gallery, true);
        let snap = g.snapshot();
        let lead = CompactCopy::lead_only(&snap);
        assert_eq!((lead.rows(), lead.lead_rows()), (0, 300));
        let mut full = CompactCopy::lead_only(&snap);
        full.install(CompactCopy::derive_row_major(&snap));
        assert_eq!((full.rows(), full.lead_rows()), (300, 300));
        // Thresholds every near copy passes and strangers do not.
        let settings =
            MatchSettings::new(vec![0.3; layout.blocks], MatchPolicy::AllThresholds).unwrap();
        let query = SearchQuery::new(5, settings);
        let mut passed = 0;
        for (i, t) in gallery.iter().enumerate().step_by(7) {
            let v: Vec<f32> = t.as_slice().iter().map(|x| x * 1.01 + 1e-3).collect();
            let probe = Template::from_f32(layout, &v).unwrap();
            let want: Vec<Candidate> = exact::search(&snap, &probe, &query)
                .into_iter()
                .filter(|c| c.comparison.matched)
                .collect();
            for store in [&lead, &full] {
                let got: Vec<Candidate> = search(&snap, store, &probe, &query)
                    .into_iter()
                    .filter(|c| c.comparison.matched)
                    .collect();
                assert_eq!(got, want, "probe {i}");
            }
            assert_eq!(want[0].row.0, i as u64);
            passed += 1;
        }
        assert!(passed > 40);
    }

    #[test]
    fn serves_only_every_block_policies() {
        let t = vec![0.5; 10];
        let s = |p| MatchSettings::new(t.clone(), p).unwrap();
        assert!(serves(&s(MatchPolicy::AllThresholds)));
        assert!(serves(&s(MatchPolicy::KOfN { k: 10 })));
        assert!(!serves(&s(MatchPolicy::KOfN { k: 9 })));
        assert!(!serves(&s(MatchPolicy::Mean)));
    }
}
