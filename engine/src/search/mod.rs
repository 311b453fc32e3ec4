//! 1:N identification: queries, candidates and the search strategies.

pub mod accel;
pub mod ann;
pub(crate) mod exact;
mod flat_graph;
mod int_kernels;
pub(crate) mod passing;
pub(crate) mod quantized;
mod top_k;

pub use accel::{IndexInfo, IndexPolicy, IndexState, Strategy, AUTO_ANN_MIN_ROWS, FOLD_ROWS};
pub use ann::{AnnParams, IndexOrigin};

use crate::error::GalleryError;
use crate::scoring::{Comparison, MatchSettings};
use crate::storage::{PalmSide, RecordIds, RowId};
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

/// Which strategy a search uses (see [`accel`] for what each runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Let the gallery choose by its size and the query's policy.
    #[default]
    Auto,
    /// The exact top-k: every candidate is one the f32 scan returns.
    Exact,
    /// A fast search whose list beyond the passing rows is not exhaustive:
    /// the passing scan (every passing row, up to `top_k`, in exact order)
    /// when the policy requires every block to pass; otherwise the graph
    /// index. Candidates are always re-scored exactly.
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

/// One row returned by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Where it is stored.
    pub row: RowId,
    /// Its ids.
    pub ids: RecordIds,
    /// The mean block similarity (the ranking key).
    pub confidence: f32,
    /// Its per-block scores and decision.
    pub comparison: Comparison,
}

/// The result of a search.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    /// Candidates, best first; ties by row.
    pub candidates: Vec<Candidate>,
    /// The strategy that ran: `Exact` when the candidates are the exact
    /// top-k, `Ann` otherwise.
    pub mode: SearchMode,
    /// Live rows in the gallery when the search ran.
    pub gallery_size: usize,
}
