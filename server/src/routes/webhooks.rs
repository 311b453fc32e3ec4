//! Webhook subscriptions and their delivery log (scope `webhooks`).
//!
//! Bodies are read as plain JSON: the contract makes every invalid webhook field or body a
//! 400, not the 422 of the other endpoints.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::{created, ok};
use crate::auth::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{parse_id, parse_json, read_body, Pagination};
use crate::state::AppState;
use crate::webhooks::service as svc;

const SCOPE: &str = "webhooks";

async fn json_body(req: Request) -> ApiResult<Value> {
    parse_json(&read_body(req, &()).await?)
}

/// Subscribes an endpoint to event keys; the signing secret is shown only in this response.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = Object, description = "`name`, `events` (keys or aliases), `endpoint` (https URL), optional `api_key`"),
    responses((status = 201, description = "Webhook created and activated, with `signing_secret`"),
        (status = 400, description = "Invalid endpoint, events, name or body"),
        (status = 403, description = "Missing scope `webhooks`"),
        (status = 409, description = "Duplicate endpoint or name")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let body = json_body(req).await?;
    let data = svc::create(&state.webhooks, caller.tenant_id, &body).await?;
    Ok(created(
        data,
        "Webhook created. Store the signing secret now: it is not shown again.",
    ))
}

/// Lists the tenant's webhooks.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(
    ("offset" = Option<i64>, Query, description = "Offset (>= 0)"), ("limit" = Option<i64>, Query, description = "1-100, default 20")),
    responses((status = 200, description = "A page of webhooks"), (status = 422, description = "Bad pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let page = Pagination::from_query(&query)?;
    Ok(Json(svc::list(&state.webhooks, caller.tenant_id, page).await?).into_response())
}

/// One webhook, with `disabled_reason` when the service disabled it.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    Ok(ok(svc::get(
        &state.webhooks,
        caller.tenant_id,
        parse_id(&id, "webhook")?,
    )
    .await?))
}

/// Changes `name`, `events`, `endpoint`, `api_key` or `active`.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body(content = Object, description = "Any of `name`, `events`, `endpoint`, `api_key` (null clears), `active`"),
    responses((status = 200, description = "The updated webhook"), (status = 400, description = "Invalid field or body"),
        (status = 404, description = "Unknown webhook"), (status = 409, description = "Duplicate endpoint or name")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let body = json_body(req).await?;
    Ok(ok(svc::update(
        &state.webhooks,
        caller.tenant_id,
        id,
        &body,
    )
    .await?))
}

/// Deletes a webhook with its deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    svc::delete(&state.webhooks, caller.tenant_id, parse_id(&id, "webhook")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Issues a new signing secret; the previous one keeps signing for `grace_period_seconds`
/// (default 86400, at most 604800), so receivers can switch without losing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate-secret", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body(content = Object, description = "Optional `grace_period_seconds`"),
    responses((status = 200, description = "The webhook with its new `signing_secret`"),
        (status = 400, description = "Invalid body"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let bytes = read_body(req, &()).await?;
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(parse_json(&bytes)?)
    };
    Ok(ok(svc::rotate_secret(
        &state.webhooks,
        caller.tenant_id,
        id,
        body.as_ref(),
    )
    .await?))
}

/// The delivery log: newest first, each delivery with its attempts (status code, latency, error).
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks", params(
    ("webhook_id" = String, Path, description = "Webhook id"),
    ("offset" = Option<i64>, Query, description = "Offset (>= 0)"), ("limit" = Option<i64>, Query, description = "1-100, default 20")),
    responses((status = 200, description = "A page of deliveries"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let page = Pagination::from_query(&query)?;
    Ok(Json(svc::deliveries(&state.webhooks, caller.tenant_id, id, page).await?).into_response())
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", tag = "webhooks", params(
    ("webhook_id" = String, Path, description = "Webhook id"), ("delivery_id" = String, Path, description = "`del_<uuid>`")),
    responses((status = 200, description = "The delivery"), (status = 404, description = "Unknown webhook or delivery")))]
pub(crate) async fn delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let delivery = svc::parse_delivery_id(&delivery)?;
    Ok(ok(svc::delivery(
        &state.webhooks,
        caller.tenant_id,
        id,
        delivery,
    )
    .await?))
}

/// Sends a delivery again now, with a fresh retry schedule.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", tag = "webhooks", params(
    ("webhook_id" = String, Path, description = "Webhook id"), ("delivery_id" = String, Path, description = "`del_<uuid>`")),
    responses((status = 202, description = "Queued"), (status = 404, description = "Unknown webhook or delivery")))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let delivery = svc::parse_delivery_id(&delivery)?;
    let data = svc::retry(&state.webhooks, caller.tenant_id, id, delivery).await?;
    Ok(accepted(data, "Delivery queued."))
}

/// Queues again every failed delivery created since `since` (RFC 3339).
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/recover", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body(content = Object, description = "`since`: RFC 3339 timestamp"),
    responses((status = 202, description = "Number of deliveries queued"), (status = 400, description = "Invalid body"),
        (status = 404, description = "Unknown webhook")))]
pub(crate) async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let id = parse_id(&id, "webhook")?;
    let body = json_body(req).await?;
    let data = svc::recover(&state.webhooks, caller.tenant_id, id, &body).await?;
    Ok(accepted(data, "Failed deliveries queued."))
}

/// Sends a `webhook.test` event to this webhook.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/test", tag = "webhooks",
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 202, description = "Test delivery queued"), (status = 404, description = "Unknown webhook"),
        (status = 409, description = "Webhook disabled")))]
pub(crate) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(SCOPE)?;
    let data = svc::test(&state.webhooks, caller.tenant_id, parse_id(&id, "webhook")?).await?;
    Ok(accepted(data, "Test event queued."))
}

fn accepted(data: Value, message: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"success": true, "data": data, "message": message})),
    )
        .into_response()
}
