//! The row store: one gallery's templates in memory-mapped files, their
//! records and checksums, and the commit slots that say which rows exist.
//!
//! [`RowStore`] writes rows durably and hands out [`Snapshot`]s, the
//! read-only view every reader scores from. It knows nothing of search:
//! accelerators and strategies live above it and receive snapshots.
//! `format.rs` is the on-disk layout, `mapping.rs` the only code that
//! touches mapped memory; `open.rs` creates and opens a store, `rows.rs`
//! writes and reads it, `features.rs` finds the live row of a feature, and
//! `inspect.rs` reads a gallery's last commit without opening it.

mod erasure;
mod features;
pub mod format;
mod inspect;
mod mapping;
mod open;
mod rows;
mod snapshot;

pub(crate) use inspect::inspect;
pub use inspect::GalleryInspection;
pub(crate) use mapping::GraphMapping;
pub(crate) use rows::RowStore;
pub use rows::ScrubReport;
pub(crate) use snapshot::Snapshot;
