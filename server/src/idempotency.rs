//! `Idempotency-Key` on integrator POSTs: the same key and request within 24 hours replay
//! the first successful response; the same key with a different request is 422
//! `idempotency_key_reused`; while the first request still runs, 409 `idempotency_in_progress`.
//! Only 2xx responses are recorded, so a failed request can be retried with its key.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::caller::Caller;
use crate::auth::secrets::sha256_hex;
use crate::clock::{now_micros, SECOND};
use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;
use crate::store::IdempotencyStart;

/// How long a key is remembered.
const KEY_TTL_SECS: i64 = 24 * 3600;

/// Middleware; runs after authentication so keys are scoped to the client.
pub(crate) async fn idempotency(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    match run(state, caller, key, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: AppState,
    caller: Caller,
    key: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::field("Idempotency-Key", "must be 1-255 visible ASCII characters")
        })?
        .to_owned();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let mut fingerprint = format!("{} {}\n", parts.method, target).into_bytes();
    fingerprint.extend_from_slice(&bytes);
    let hash = sha256_hex(&fingerprint);
    let now = now_micros();
    let start = state
        .store
        .idempotency_start(
            caller.client_id,
            &key,
            &hash,
            now,
            now + KEY_TTL_SECS * SECOND,
        )
        .await?;
    match start {
        IdempotencyStart::Started => {}
        IdempotencyStart::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyStart::InProgress => {
            return Err(ApiError::conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
            ))
        }
        IdempotencyStart::Mismatch => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with a different request".to_owned(),
            })
        }
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        state
            .store
            .idempotency_release(caller.client_id, &key)
            .await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            state
                .store
                .idempotency_release(caller.client_id, &key)
                .await?;
            return Err(ApiError::internal(e));
        }
    };
    state
        .store
        .idempotency_finish(
            caller.client_id,
            &key,
            parts.status.as_u16(),
            &String::from_utf8_lossy(&bytes),
        )
        .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
