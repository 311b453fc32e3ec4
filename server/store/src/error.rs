//! Storage failures.

/// What a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (a palm already enrolled, a duplicate webhook name).
    /// The message names the rule, never a value.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database URL names no backend this build has (only its scheme is kept: a URL may
    /// carry a password).
    #[error("unsupported database URL scheme `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// Any other database failure (I/O, a full disk, a write that was not made durable).
    #[error("database error: {0}")]
    Database(String),
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;
