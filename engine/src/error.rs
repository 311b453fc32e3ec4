//! [`GalleryError`]: the failure of a gallery operation.
//!
//! Input that cannot be accepted has its error beside its type:
//! [`TemplateError`](crate::TemplateError) in `template.rs`,
//! [`SettingsError`](crate::SettingsError) in `scoring/`.
//! A gallery error may name any of them; none of them names a gallery.

use std::path::PathBuf;

use crate::ids::RowId;
use crate::template::{Layout, TemplateError};

/// Failure of a gallery operation.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// The operating system refused a file operation (an internal error).
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// `create` found a gallery already there.
    #[error("a gallery already exists at {path}")]
    AlreadyExists {
        /// The gallery directory.
        path: PathBuf,
    },
    /// The gallery is already open (in this process or another).
    #[error("the gallery at {path} is in use by another handle")]
    Locked {
        /// The gallery directory.
        path: PathBuf,
    },
    /// `open` found no gallery.
    #[error("no gallery at {path}")]
    NotFound {
        /// The gallery directory.
        path: PathBuf,
    },
    /// A file is damaged: truncated, a bad checksum, a bad magic number.
    #[error("gallery file {path} is damaged: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file was written by an unknown format version.
    #[error("gallery file {path} has unsupported format version {found}")]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A template or setting does not fit the gallery's layout (bad input).
    #[error("layout mismatch: gallery is {expected:?}, got {actual:?}")]
    LayoutMismatch {
        /// The gallery's layout.
        expected: Layout,
        /// The layout offered.
        actual: Layout,
    },
    /// No row with that id was ever written.
    #[error("unknown row {}", .0.0)]
    UnknownRow(RowId),
    /// The row was deleted.
    #[error("row {} is deleted", .0.0)]
    Deleted(RowId),
    /// A log sequence older than the one the gallery has applied (the
    /// operation was not applied: the log entry is already reflected).
    #[error("log sequence {offered} is older than the applied sequence {applied}")]
    StaleSequence {
        /// The last sequence the gallery applied.
        applied: u64,
        /// The sequence offered.
        offered: u64,
    },
    /// A commit landed during each of two reads of a gallery that was read
    /// without its lock (try again).
    #[error("the gallery at {path} changed while it was read")]
    Busy {
        /// The gallery directory.
        path: std::path::PathBuf,
    },
    /// A search query is malformed (bad input).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The rows of a probe matrix do not hold one template of the gallery's
    /// layout each (bad input).
    #[error("probe matrix rows hold {actual} values, the gallery's templates {expected}")]
    ProbeWidth {
        /// Values in a template of the gallery's layout.
        expected: usize,
        /// Values in each row of the matrix.
        actual: usize,
    },
    /// A row of a probe matrix is not a valid template (bad input).
    #[error("probe {index}: {source}")]
    InvalidProbe {
        /// The row of the matrix.
        index: usize,
        /// Why it is not a template.
        #[source]
        source: TemplateError,
    },
}

impl GalleryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GalleryError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        GalleryError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
