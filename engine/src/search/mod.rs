//! 1:N identification: queries, candidates and the search strategies.
//!
//! Every search receives a [`Snapshot`] of the row store (and, for the
//! accelerated strategies, the accelerators' data) from the gallery above:
//!
//! * `exact.rs`: the f32 scan, and the exact re-score every strategy ends with;
//! * `compact.rs`: the compact copy (i8 values, sign sketches, the 4-bit lead
//!   block) the accelerated scans read;
//! * `quantised.rs`, `passing.rs`, `sketch.rs`: the scans of the compact copy;
//! * `graph/`: the graph index (build, on-disk format, search);
//! * `strategy.rs`: which of them a query runs, and `outcome.rs` what it
//!   reports;
//! * `lifecycle.rs`: the accelerators, their background jobs and policy, and
//!   `background.rs` the thread pool those jobs run on;
//! * `query.rs`: what a search is asked, and which rows it may return;
//! * `top_k.rs`: the bounded best-k collectors they share.

mod background;
pub(crate) mod compact;
pub(crate) mod exact;
pub(crate) mod graph;
pub(crate) mod lifecycle;
mod outcome;
pub(crate) mod passing;
pub(crate) mod quantised;
mod query;
pub(crate) mod sketch;
pub(crate) mod strategy;
#[cfg(test)]
pub(crate) mod test_support;
mod top_k;

pub use exact::Candidate;
pub use outcome::SearchOutcome;
pub use query::{SearchFilter, SearchMode, SearchQuery, MAX_TOP_K};
pub use strategy::Strategy;
