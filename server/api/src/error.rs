//! The one error type of the HTTP layer, the one mapping of domain errors onto it, and its
//! responses.
//!
//! Every error body is `{"success": false, "message": ..., "code": ...}`; validation errors add
//! `errors: [{field, message}]`, token endpoint errors add the RFC 6749 `error` and
//! `error_description`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use palmlink_domain::{DomainError, FieldError, GrantErrorKind};

/// Errors an API handler can return.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 400: malformed body or a business-rule failure.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: missing, invalid, expired or revoked credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid token without the needed scope.
    #[error("the token lacks the `{0}` scope")]
    InsufficientScope(palmlink_store::Scope),
    /// 403: a console change request without its session's CSRF token.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown resource in this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the route exists without this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: duplicate or wrong state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 410: expired pairing code or challenge.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// 413: body over the limit.
    #[error("request body is larger than 1 MiB")]
    PayloadTooLarge,
    /// 422: well-formed JSON that fails validation.
    #[error("request validation failed")]
    Validation(Vec<FieldError>),
    /// 422 with a specific code (e.g. an idempotency key reused with another body).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 429: rate limited; retry after this many seconds.
    #[error("rate limit exceeded")]
    RateLimited(u64),
    /// 503: a dependency (storage) does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// Token endpoint failures in RFC 6749 terms (400 or 401).
    #[error("{description}")]
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: String,
        basic: bool,
    },
    /// 500: logged, never shown in detail.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }
    pub(crate) fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
    pub(crate) fn internal(err: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(err.to_string())
    }

    /// Status code of this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::OAuth { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable code of this error.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Gone { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Unavailable(_) => "not_ready",
            ApiError::OAuth { error, .. } => error,
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> ApiError {
        match err {
            DomainError::Validation(errors) => ApiError::Validation(errors),
            DomainError::Unprocessable { code, message } => {
                ApiError::Unprocessable { code, message }
            }
            DomainError::Rejected { code, message } => ApiError::BadRequest { code, message },
            DomainError::Grant {
                kind,
                message,
                basic,
            } => ApiError::OAuth {
                status: match kind {
                    GrantErrorKind::InvalidClient => StatusCode::UNAUTHORIZED,
                    GrantErrorKind::InvalidRequest
                    | GrantErrorKind::UnsupportedGrantType
                    | GrantErrorKind::InvalidScope => StatusCode::BAD_REQUEST,
                },
                error: kind.code(),
                description: message,
                basic,
            },
            DomainError::Unauthenticated(message) => ApiError::Unauthorized(message),
            DomainError::MissingScope(scope) => ApiError::InsufficientScope(scope),
            DomainError::NotFound(what) => ApiError::NotFound(what),
            DomainError::Conflict { code, message } => ApiError::Conflict { code, message },
            DomainError::Gone { code, message } => ApiError::Gone { code, message },
            DomainError::Throttled { retry_after_secs } => ApiError::RateLimited(retry_after_secs),
            DomainError::Unavailable(message) => ApiError::Unavailable(message),
            DomainError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = json!({"success": false, "message": message, "code": self.code()});
        match &self {
            ApiError::Validation(errors) => {
                body["errors"] = serde_json::to_value(errors).unwrap_or(Value::Null);
            }
            ApiError::OAuth {
                error, description, ..
            } => {
                body["error"] = json!(error);
                body["error_description"] = json!(description);
            }
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::RateLimited(secs) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            ApiError::InsufficientScope(scope) => {
                if let Ok(v) = HeaderValue::from_str(&format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                )) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::OAuth {
                status,
                basic: true,
                ..
            } if *status == StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"palmlink\""),
                );
            }
            ApiError::OAuth { .. } => {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            _ => {}
        }
        response
    }
}

/// Result of an API handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
