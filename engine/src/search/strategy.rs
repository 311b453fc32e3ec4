//! Which search runs: the strategies, what each guarantees, and how a
//! query's [`SearchMode`] chooses among them by gallery size and policy.
//!
//! * [`Strategy::QuantisedScan`]: what [`SearchMode::Exact`] runs. Scans the
//!   i8 copy and re-scores in f32; returns exactly what the f32 scan returns
//!   (see the guarantee in `quantised.rs`), reading a quarter of the bytes.
//! * [`Strategy::PassingScan`]: what [`SearchMode::Ann`] runs when the
//!   query's policy requires every block to pass (`all_thresholds`, or
//!   `k_of_n` with `k` equal to the number of blocks). Reads one block per
//!   row (36 B: 4-bit codes and a scale), prunes every row that provably
//!   fails that block's threshold, checks the survivors on every block and
//!   re-scores them in f32: it returns every template whose exact scores
//!   pass, up to `top_k`, in exact order, with the f32 scan's scores; other
//!   candidates only where fewer pass (see the guarantee in `passing.rs`).
//!   Reported as [`SearchMode::Exact`]: no passing row is ever missed.
//! * [`Strategy::Hnsw`]: what [`SearchMode::Ann`] runs for the other policies
//!   (`mean`, `k_of_n` with fewer blocks). The graph explores `max(ef,
//!   top_k)` rows and proposes the nearest `2·top_k` (at least 16) by key;
//!   they, the graph's orphans and the rows not yet in the graph are
//!   re-scored in f32 and the exact scores rank them.
//! * [`Strategy::F32Scan`] and [`Strategy::SketchPrefilter`]: the plain scan
//!   and the 1-bit sign-sketch prefilter, for comparison (benches, tests).
//!
//! [`SearchMode::Auto`] runs an approximate strategy when the gallery holds
//! at least [`IndexPolicy::auto_ann_min_rows`](crate::IndexPolicy::auto_ann_min_rows)
//! live rows (default
//! [`AUTO_ANN_MIN_ROWS`]) and the query is not restricted to one user: the
//! passing scan when the policy allows it, else the graph if its index is
//! ready; otherwise the quantised scan.

use super::passing;
use super::{SearchMode, SearchQuery};

/// Live rows from which [`SearchMode::Auto`] uses an approximate strategy.
/// For the graph index, measured on isotropic data at the smallest `ef` that
/// missed no mate: the quantised scan was 1.37 times faster than the graph at
/// 20k templates, the graph 1.37 times faster at 100k; the ratio interpolates
/// to 1 near 45k (see `BENCHMARKS.md`, "1:N at scale"). The passing scan was
/// 33 times faster than the quantised scan at 100k and 23 times at 1M (not
/// measured below 100k); below this size the quantised scan's exhaustive
/// exact top-k costs little (about 1.4 ms at 20k), so `Auto` keeps it there.
pub const AUTO_ANN_MIN_ROWS: usize = 50_000;

/// A concrete search strategy (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Every live row scored in f32.
    F32Scan,
    /// The i8 copy scanned with an error bound, candidates re-scored in f32:
    /// the same result as `F32Scan`.
    QuantisedScan,
    /// The `rescore` rows nearest in sign-sketch Hamming distance, re-scored
    /// in f32 (approximate).
    SketchPrefilter {
        /// Rows re-scored in f32.
        rescore: usize,
    },
    /// One block per row scanned from the block-major 4-bit array, rows that
    /// provably fail its threshold pruned, survivors checked on every block
    /// and re-scored in f32: every passing row, up to `top_k`, in exact order;
    /// other candidates best effort. Serves `all_thresholds` and `k_of_n`
    /// with `k` = blocks; for other policies it runs `QuantisedScan`.
    PassingScan,
    /// The graph index with this `ef`, proposals re-scored in f32
    /// (approximate). Falls back to `QuantisedScan` while no index is ready.
    Hnsw {
        /// Candidates explored.
        ef: usize,
    },
}

impl Strategy {
    /// How an outcome of this strategy reports itself: `Exact` when it
    /// returns every row that passes the decision, up to `top_k`, in exact
    /// order (the f32, quantised and passing scans); `Ann` when it may miss
    /// one (the sketch prefilter and the graph).
    pub fn mode(self) -> SearchMode {
        match self {
            Strategy::F32Scan | Strategy::QuantisedScan | Strategy::PassingScan => {
                SearchMode::Exact
            }
            Strategy::SketchPrefilter { .. } | Strategy::Hnsw { .. } => SearchMode::Ann,
        }
    }
}

/// The strategy `query`'s mode selects on a gallery of `live` rows: `Auto`
/// runs the approximate strategy from `auto_ann_min_rows` live rows unless
/// the query is restricted to one user; the graph (with `ef`) only when
/// `graph_ready` says an index is there, else the quantised scan. The
/// passing scan is the approximate strategy where it serves the policy and
/// the gallery holds the quantised copy (`copy_held`); the graph otherwise.
pub(crate) fn choose(
    query: &SearchQuery,
    live: usize,
    auto_ann_min_rows: usize,
    ef: usize,
    copy_held: bool,
    graph_ready: impl FnOnce() -> bool,
) -> Strategy {
    let ann = if copy_held && passing::serves(&query.settings) {
        Strategy::PassingScan
    } else {
        Strategy::Hnsw { ef }
    };
    match query.mode {
        SearchMode::Exact => Strategy::QuantisedScan,
        SearchMode::Ann => ann,
        SearchMode::Auto => {
            if live >= auto_ann_min_rows
                && query.filter.user_key.is_none()
                && (ann == Strategy::PassingScan || graph_ready())
            {
                ann
            } else {
                Strategy::QuantisedScan
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{MatchPolicy, MatchSettings};
    use crate::template::Layout;

    #[test]
    fn auto_chooses_by_size_policy_and_filter() {
        let all = SearchQuery::new(5, MatchSettings::default_for(Layout::DEFAULT));
        let mean = SearchQuery::new(
            5,
            MatchSettings::new(vec![0.5; 10], MatchPolicy::Mean).unwrap(),
        );
        let pick = |q: &SearchQuery, live, ready| choose(q, live, 100, 64, true, || ready);
        assert_eq!(pick(&all, 99, true), Strategy::QuantisedScan);
        assert_eq!(pick(&all, 100, false), Strategy::PassingScan);
        assert_eq!(pick(&mean, 100, false), Strategy::QuantisedScan);
        assert_eq!(pick(&mean, 100, true), Strategy::Hnsw { ef: 64 });
        let mut one_user = all.clone();
        one_user.filter.user_key = Some(7);
        assert_eq!(pick(&one_user, 1000, true), Strategy::QuantisedScan);
        let mut exact = all.clone();
        exact.mode = SearchMode::Exact;
        assert_eq!(pick(&exact, 1000, true), Strategy::QuantisedScan);
        let mut ann = mean.clone();
        ann.mode = SearchMode::Ann;
        assert_eq!(pick(&ann, 1, false), Strategy::Hnsw { ef: 64 });
        // Without the quantised copy the graph serves every policy, once ready.
        let no_copy = |q: &SearchQuery, ready| choose(q, 1000, 100, 64, false, || ready);
        assert_eq!(no_copy(&all, true), Strategy::Hnsw { ef: 64 });
        assert_eq!(no_copy(&all, false), Strategy::QuantisedScan);
        assert_eq!(no_copy(&mean, true), Strategy::Hnsw { ef: 64 });
    }

    #[test]
    fn only_strategies_that_can_miss_a_passing_row_report_ann() {
        assert_eq!(Strategy::PassingScan.mode(), SearchMode::Exact);
        assert_eq!(Strategy::QuantisedScan.mode(), SearchMode::Exact);
        assert_eq!(Strategy::F32Scan.mode(), SearchMode::Exact);
        assert_eq!(Strategy::Hnsw { ef: 8 }.mode(), SearchMode::Ann);
        assert_eq!(
            Strategy::SketchPrefilter { rescore: 8 }.mode(),
            SearchMode::Ann
        );
    }
}
