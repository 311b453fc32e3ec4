//! What a 1:N search returns.

use super::exact::Candidate;
use super::query::SearchMode;
use super::strategy::Strategy;

/// The result of a search.
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    /// Candidates, best first; ties by row.
    pub candidates: Vec<Candidate>,
    /// How the search that ran reports itself ([`Strategy::mode`]): `Exact`
    /// when it returned every row that passes the decision, up to `top_k`,
    /// in exact order; `Ann` when it may have missed one.
    pub mode: SearchMode,
    /// The strategy that ran.
    pub strategy: Strategy,
    /// Live rows in the gallery when the search ran.
    pub gallery_size: usize,
}
