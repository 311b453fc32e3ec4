//! What a 1:N search is asked: the query, its filter and mode, and which
//! rows of a snapshot it may return.

use crate::error::GalleryError;
use crate::ids::PalmSide;
use crate::scoring::MatchSettings;
use crate::storage::format::palm_code;
use crate::storage::Snapshot;
use crate::template::Layout;

/// Largest `top_k` a query may ask for.
pub const MAX_TOP_K: usize = 1000;

/// Restricts a search to some rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Only rows of this palm.
    pub palm: Option<PalmSide>,
    /// Only rows of this user.
    pub user_key: Option<u128>,
}

/// Which strategy a search uses (see [`Strategy`](crate::Strategy) for what
/// each runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Let the gallery choose by its size and the query's policy.
    #[default]
    Auto,
    /// As a query's mode: the exact top-k (the quantised scan), every
    /// candidate one the f32 scan returns. As an outcome's mode: the search
    /// that ran returned every row that passes the decision, up to `top_k`,
    /// in exact order (the f32, quantised or passing scan).
    Exact,
    /// As a query's mode: a fast search whose list beyond the passing rows
    /// is not exhaustive: the passing scan (every passing row, up to
    /// `top_k`, in exact order; reported as `Exact`) when the policy requires
    /// every block to pass, otherwise the graph index. As an outcome's mode:
    /// a search that may have missed a passing row (the graph, the sketch
    /// prefilter). Candidates are always re-scored exactly.
    Ann,
}

impl SearchMode {
    /// The API's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Auto => "auto",
            SearchMode::Exact => "exact",
            SearchMode::Ann => "ann",
        }
    }
}

/// A 1:N query.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// How many candidates to return at most (1..=[`MAX_TOP_K`]).
    pub top_k: usize,
    /// Thresholds and policy applied to each candidate.
    pub settings: MatchSettings,
    /// Rows to consider.
    pub filter: SearchFilter,
    /// Strategy.
    pub mode: SearchMode,
}

impl SearchQuery {
    /// A query for the `top_k` best rows under `settings`, no filter, mode auto.
    pub fn new(top_k: usize, settings: MatchSettings) -> SearchQuery {
        SearchQuery {
            top_k,
            settings,
            filter: SearchFilter::default(),
            mode: SearchMode::Auto,
        }
    }

    pub(crate) fn validate(&self, layout: Layout) -> Result<(), GalleryError> {
        if self.top_k == 0 || self.top_k > MAX_TOP_K {
            return Err(GalleryError::InvalidQuery(format!(
                "top_k must be in 1..={MAX_TOP_K}, got {}",
                self.top_k
            )));
        }
        self.settings
            .check_layout(layout)
            .map_err(|e| GalleryError::InvalidQuery(e.to_string()))
    }
}

/// Whether `row` (a committed row of `snap`) may be a candidate of `query`:
/// live, within the query's filter, and not damaged.
#[inline]
pub(crate) fn admissible(snap: &Snapshot, query: &SearchQuery, row: u64) -> bool {
    snap.is_live(row)
        && query
            .filter
            .palm
            .is_none_or(|p| snap.palm_code(row) == palm_code(p))
        && query
            .filter
            .user_key
            .is_none_or(|u| snap.user_key(row) == u)
        && !snap.is_damaged(row)
}
