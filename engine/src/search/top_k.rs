//! A bounded best-k collector with a total, deterministic order, and the
//! rows that may still rank given bounds on their scores.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A scored row; greater is better: higher score, then lower row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) row: u64,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` best [`Scored`] values pushed into it.
#[derive(Clone, Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// How many values it keeps at most.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The score a new value must beat once full (`-inf` until then).
    #[inline]
    pub(crate) fn floor(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |r| r.0.score)
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(s));
        } else if let Some(worst) = self.heap.peek() {
            if s > worst.0 {
                self.heap.pop();
                self.heap.push(Reverse(s));
            }
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for s in other.heap {
            self.push(s.0);
        }
        self
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// `x` is not below `y` (true when either is NaN: a NaN bound never drops a row).
#[inline]
fn not_below(x: f32, y: f32) -> bool {
    x.partial_cmp(&y) != Some(std::cmp::Ordering::Less)
}

/// Rows with bounds on their exact score, of which only those that may rank
/// among the best `k` are kept: at least `k` rows score at least the `k`-th
/// best lower bound, so a row whose upper bound is below it cannot rank.
pub(crate) struct Ranked {
    lower: TopK,
    /// `(mean upper bound, row)` of rows that may still rank.
    rows: Vec<(f32, u64)>,
}

impl Ranked {
    pub(crate) fn new(k: usize) -> Ranked {
        Ranked {
            lower: TopK::new(k),
            rows: Vec::new(),
        }
    }

    /// Adds a row; `lower_too` also counts its lower bound (a row known to
    /// belong to the set the `k` best are taken from).
    #[inline]
    pub(crate) fn push(&mut self, row: u64, lo: f32, hi: f32, lower_too: bool) {
        if lower_too {
            self.lower.push(Scored { score: lo, row });
        }
        if not_below(hi, self.lower.floor()) {
            self.rows.push((hi, row));
        }
        if self.rows.len() > 4 * self.lower.k() + 256 {
            self.trim();
        }
    }

    /// Drops the rows that cannot rank (a NaN bound is kept).
    fn trim(&mut self) {
        let floor = self.lower.floor();
        self.rows.retain(|(hi, _)| not_below(*hi, floor));
    }

    /// Both chunks' rows, against both chunks' lower bounds.
    pub(crate) fn merge(mut self, other: Ranked) -> Ranked {
        self.lower = self.lower.merge(other.lower);
        self.rows.extend(other.rows);
        self.trim();
        self
    }

    /// The rows that may rank.
    pub(crate) fn finish(mut self) -> Vec<u64> {
        self.trim();
        self.rows.into_iter().map(|(_, row)| row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeps_the_best_k_in_order(scores in proptest::collection::vec(-5i32..5, 0..200), k in 1usize..20) {
            let mut top = TopK::new(k);
            let all: Vec<Scored> = scores.iter().enumerate()
                .map(|(i, &s)| Scored { score: s as f32, row: i as u64 }).collect();
            for &s in &all { top.push(s); }
            let mut expected = all.clone();
            expected.sort_by(|a, b| b.cmp(a));
            expected.truncate(k);
            prop_assert_eq!(top.into_sorted(), expected);
        }
    }
}
