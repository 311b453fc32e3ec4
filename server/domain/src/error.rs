//! The errors of the domain. Each variant's doc names the HTTP status the API answers it
//! with; the mapping itself lives in the HTTP adapter.

use palmlink_store::{Scope, StoreError};
use serde::Serialize;

/// One field of an input that failed validation.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `captures[0].template.blocks`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a client-credentials grant was refused, in RFC 6749 terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantErrorKind {
    /// 400 `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// 401 `invalid_client`: unknown client or wrong secret.
    InvalidClient,
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 400 `invalid_scope`: a scope the client is not granted.
    InvalidScope,
}

impl GrantErrorKind {
    /// The RFC 6749 error code.
    pub fn code(self) -> &'static str {
        match self {
            GrantErrorKind::InvalidRequest => "invalid_request",
            GrantErrorKind::InvalidClient => "invalid_client",
            GrantErrorKind::UnsupportedGrantType => "unsupported_grant_type",
            GrantErrorKind::InvalidScope => "invalid_scope",
        }
    }
}

/// What a domain operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// 422: well-formed input that fails validation, field by field.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a code: a request that cannot be processed as sent (an idempotency key
    /// reused with another request).
    #[error("{message}")]
    Unprocessable {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 400: a business rule refuses the request (a device not paired; any invalid webhook
    /// field, as the contract has it).
    #[error("{message}")]
    Rejected {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 400 or 401: a token request refused (see [`GrantErrorKind`]).
    #[error("{message}")]
    Grant {
        /// Which refusal.
        kind: GrantErrorKind,
        /// Human-readable message.
        message: String,
        /// Whether the client authenticated with HTTP Basic (a 401 then asks for it again).
        basic: bool,
    },
    /// 401: missing, invalid, expired or revoked credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: valid credentials without the scope the operation needs.
    #[error("the token lacks the `{0}` scope")]
    MissingScope(Scope),
    /// 404: no such resource in the caller's tenant (another tenant's is the same as none).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: a duplicate, or a resource in the wrong state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 410: an expired pairing code or challenge.
    #[error("{message}")]
    Gone {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// 429: too many attempts (sign-ins for one operator name); retry after this many
    /// seconds.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    Throttled {
        /// Seconds until an attempt may succeed.
        retry_after_secs: u64,
    },
    /// 503: a dependency (the database, a gallery) cannot serve now.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a fault of the service; the detail is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    /// 422 for one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> DomainError {
        DomainError::Validation(vec![FieldError::new(field, message)])
    }

    /// 400 with a code.
    pub fn rejected(code: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Rejected {
            code,
            message: message.into(),
        }
    }

    /// 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// 410 with a code.
    pub fn gone(code: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Gone {
            code,
            message: message.into(),
        }
    }

    /// 500 from any fault.
    pub fn internal(err: impl std::fmt::Display) -> DomainError {
        DomainError::Internal(err.to_string())
    }

    /// Ok when `errors` is empty, else 422 with them.
    pub fn check(errors: Vec<FieldError>) -> DomainResult<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errors))
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(err: StoreError) -> DomainError {
        match err {
            StoreError::Conflict(what) => DomainError::conflict("conflict", what),
            other => DomainError::Internal(other.to_string()),
        }
    }
}

/// Result of a domain operation.
pub type DomainResult<T> = Result<T, DomainError>;
