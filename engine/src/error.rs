//! Typed errors of the engine.

use std::path::PathBuf;

use crate::storage::RowId;
use crate::template::Layout;

/// A template that cannot be accepted. Every variant is bad input (a client error).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    /// The layout itself is out of bounds.
    #[error("invalid layout {blocks} x {dim}")]
    InvalidLayout {
        /// Requested blocks.
        blocks: usize,
        /// Requested dimension.
        dim: usize,
    },
    /// The number of blocks differs from the layout's.
    #[error("expected {expected} blocks, got {actual}")]
    WrongBlockCount {
        /// Blocks in the layout.
        expected: usize,
        /// Blocks received.
        actual: usize,
    },
    /// One block has the wrong number of values.
    #[error("block {block} has {actual} values, expected {expected}")]
    WrongBlockDim {
        /// Index of the block.
        block: usize,
        /// Values per block in the layout.
        expected: usize,
        /// Values received.
        actual: usize,
    },
    /// A flat value or byte buffer has the wrong length.
    #[error("expected {expected} values or bytes, got {actual}")]
    WrongLength {
        /// Expected length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// A value is NaN or infinite.
    #[error("block {block} value {index} is not a finite number")]
    NonFinite {
        /// Index of the block.
        block: usize,
        /// Index of the value within the block.
        index: usize,
    },
    /// A block is all zeros, so it has no direction to compare.
    #[error("block {block} has zero norm")]
    ZeroNormBlock {
        /// Index of the block.
        block: usize,
    },
}

/// Matching settings that cannot be accepted. Every variant is bad input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SettingsError {
    /// There must be one threshold per block.
    #[error("expected {expected} thresholds, got {actual}")]
    WrongThresholdCount {
        /// Blocks in the layout.
        expected: usize,
        /// Thresholds received.
        actual: usize,
    },
    /// A threshold is not a finite number in [-1, 1].
    #[error("threshold {block} is {value}, expected a number in [-1, 1]")]
    ThresholdOutOfRange {
        /// Index of the block.
        block: usize,
        /// The offending value.
        value: f32,
    },
    /// `k` of the `k_of_n` policy must be between 1 and the number of blocks.
    #[error("k = {k} is out of range 1..={blocks}")]
    InvalidK {
        /// Requested k.
        k: usize,
        /// Number of blocks.
        blocks: usize,
    },
}

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
    /// A search query is malformed (bad input).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
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
