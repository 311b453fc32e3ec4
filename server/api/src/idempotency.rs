//! `Idempotency-Key` on integrator POSTs, as a middleware over the domain's keys
//! ([`palmlink_domain::Idempotency`]): the request's method, target and body make its
//! fingerprint; a replay answers with the first response's status and body.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use palmlink_domain::{Begun, Caller};

use crate::error::ApiError;
use crate::extract::BODY_LIMIT;
use crate::state::AppState;

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
        .map_err(|_| ApiError::field("Idempotency-Key", "must be 1-255 visible ASCII characters"))?
        .to_owned();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let mut fingerprint = format!("{} {}\n", parts.method, target).into_bytes();
    fingerprint.extend_from_slice(&bytes);
    let keys = &state.domain.idempotency;
    if let Begun::Replay { status, body } = keys.begin(caller.client_id, &key, &fingerprint).await?
    {
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
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        keys.release(caller.client_id, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            keys.release(caller.client_id, &key).await?;
            return Err(ApiError::internal(e));
        }
    };
    keys.finish(
        caller.client_id,
        &key,
        parts.status.as_u16(),
        &String::from_utf8_lossy(&bytes),
    )
    .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
