//! The row store: one gallery's templates in memory-mapped files, their
//! records and checksums, and the commit slots that say which rows exist.
//!
//! [`RowStore`] writes rows durably and hands out [`Snapshot`]s, the
//! read-only view every reader scores from. It knows nothing of search:
//! accelerators and strategies live above it and receive snapshots.
//! `format.rs` is the on-disk layout, `mapping.rs` the only code that
//! touches mapped memory.

pub mod format;
mod mapping;
mod rows;
mod snapshot;

pub(crate) use mapping::FrozenMapping;
pub(crate) use rows::RowStore;
pub use rows::ScrubReport;
pub(crate) use snapshot::Snapshot;
