//! Webhook subscriptions and their delivery log (scope `webhooks`).
//!
//! Bodies are read as plain JSON: the contract makes every invalid webhook field or body a
//! 400, not the 422 of the other endpoints.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmlink_domain::{parse_delivery_id, Recovery, SecretRotation};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{created, ok};
use crate::auth::Integrator;
use crate::error::{ApiError, ApiResult};
use crate::extract::{from_value, parse_id, parse_json, read_body, QueryMap};
use crate::schemas;
use crate::state::AppState;
use crate::views;

/// A webhook request body as `T`, or 400 `invalid_webhook` saying what is wrong with it
/// (an empty body is `T`'s default when `empty` gives one).
async fn webhook_body<T: DeserializeOwned>(req: Request, empty: Option<T>) -> ApiResult<T> {
    let bytes = read_body(req, &()).await?;
    if let Some(default) = empty {
        // An optional body may be absent, or written as JSON `null`.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(default);
        }
    }
    let invalid = |message: String| ApiError::bad_request("invalid_webhook", message);
    let value = parse_json(&bytes).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("request body must be a JSON object".to_owned()));
    }
    from_value(value).map_err(|e| match e {
        ApiError::Validation(errors) => invalid(
            errors
                .iter()
                .map(|f| format!("{} {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => other,
    })
}

fn now(state: &AppState) -> i64 {
    state.domain.clock.now()
}

/// Subscribes an endpoint to event keys; the signing secret is shown only in this response.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks",
    security(("bearer" = ["webhooks"])), request_body = schemas::NewWebhook,
    responses((status = 201, description = "Webhook created and activated, with `signing_secret`", body = crate::openapi::responses::WebhookWithSecretResponse),
        (status = 400, description = "Invalid endpoint, events, name or body"),
        (status = 403, description = "Missing scope `webhooks`"),
        (status = 409, description = "Duplicate endpoint or name")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    req: Request,
) -> ApiResult<Response> {
    let body = webhook_body(req, None).await?;
    let made = state.domain.webhooks.create(&caller, body).await?;
    let mut data = views::webhook(&made.subscription, now(&state));
    data["signing_secret"] = Value::String(made.signing_secret);
    Ok(created(
        data,
        "Webhook created. Store the signing secret now: it is not shown again.",
    ))
}

/// Lists the tenant's webhooks.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    security(("bearer" = ["webhooks"])), params(
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20")),
    responses((status = 200, description = "A page of webhooks", body = crate::openapi::responses::WebhookPage), (status = 422, description = "Bad pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    query: QueryMap,
) -> ApiResult<Response> {
    let listing = state.domain.webhooks.list(&caller, query.page()?).await?;
    let now = now(&state);
    Ok(Json(views::listing(&listing, |h| views::webhook(h, now))).into_response())
}

/// One webhook, with `disabled_reason` when the service disabled it.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", operation_id = "get_webhook", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook", body = crate::openapi::responses::WebhookResponse), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hook = state
        .domain
        .webhooks
        .get(&caller, parse_id(&id, "webhook")?)
        .await?;
    Ok(ok(views::webhook(&hook, now(&state))))
}

/// Changes `name`, `events`, `endpoint`, `api_key` or `active`.
#[utoipa::path(patch, path = "/v1/webhooks/{webhook_id}", operation_id = "update_webhook", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body = schemas::WebhookChanges,
    responses((status = 200, description = "The updated webhook", body = crate::openapi::responses::WebhookResponse), (status = 400, description = "Invalid field or body"),
        (status = 404, description = "Unknown webhook"), (status = 409, description = "Duplicate endpoint or name")))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let changes = webhook_body(req, None).await?;
    let hook = state.domain.webhooks.update(&caller, id, changes).await?;
    Ok(ok(views::webhook(&hook, now(&state))))
}

/// Deletes a webhook with its deliveries.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", operation_id = "delete_webhook", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state
        .domain
        .webhooks
        .delete(&caller, parse_id(&id, "webhook")?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Issues a new signing secret; the previous one keeps signing for `grace_period_seconds`
/// (default 86400, at most 604800), so receivers can switch without losing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate-secret", operation_id = "rotate_webhook_secret", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body = Option<schemas::SecretRotation>,
    responses((status = 200, description = "The webhook with its new `signing_secret`", body = crate::openapi::responses::WebhookWithSecretResponse),
        (status = 400, description = "Invalid body"), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let rotation = webhook_body(req, Some(SecretRotation::default())).await?;
    let rotated = state
        .domain
        .webhooks
        .rotate_secret(&caller, id, rotation)
        .await?;
    let mut data = views::webhook(&rotated.subscription, now(&state));
    data["signing_secret"] = Value::String(rotated.signing_secret);
    // Shown even for a grace period of 0, when it is already past.
    data["previous_secret_expires_at"] = rotated
        .subscription
        .old_secret_expires_at
        .map(palmlink_domain::rfc3339)
        .into();
    Ok(ok(data))
}

/// The delivery log: newest first, each delivery with its attempts (status code, latency, error).
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", operation_id = "list_deliveries", tag = "webhooks",
    security(("bearer" = ["webhooks"])), params(
    ("webhook_id" = String, Path, description = "Webhook id"),
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20")),
    responses((status = 200, description = "A page of deliveries", body = crate::openapi::responses::DeliveryPage), (status = 404, description = "Unknown webhook")))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
    query: QueryMap,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let listing = state
        .domain
        .webhooks
        .deliveries(&caller, id, query.page()?)
        .await?;
    Ok(Json(views::listing(&listing, views::delivery)).into_response())
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", operation_id = "get_delivery", tag = "webhooks",
    security(("bearer" = ["webhooks"])), params(
    ("webhook_id" = String, Path, description = "Webhook id"), ("delivery_id" = String, Path, description = "`del_<uuid>`")),
    responses((status = 200, description = "The delivery", body = crate::openapi::responses::DeliveryResponse), (status = 404, description = "Unknown webhook or delivery")))]
pub(crate) async fn delivery(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let delivery = parse_delivery_id(&delivery)?;
    let log = state
        .domain
        .webhooks
        .delivery(&caller, id, delivery)
        .await?;
    Ok(ok(views::delivery(&log)))
}

/// Sends a delivery again now, with a fresh retry schedule.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", operation_id = "retry_delivery", tag = "webhooks",
    security(("bearer" = ["webhooks"])), params(
    ("webhook_id" = String, Path, description = "Webhook id"), ("delivery_id" = String, Path, description = "`del_<uuid>`")),
    responses((status = 202, description = "Queued", body = crate::openapi::responses::DeliveryResponse), (status = 404, description = "Unknown webhook or delivery")))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let delivery = parse_delivery_id(&delivery)?;
    let log = state.domain.webhooks.retry(&caller, id, delivery).await?;
    Ok(accepted(views::delivery(&log), "Delivery queued."))
}

/// Queues again every failed delivery created since `since` (RFC 3339).
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/recover", operation_id = "recover_deliveries", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    request_body = schemas::Recovery,
    responses((status = 202, description = "Number of deliveries queued", body = crate::openapi::responses::RecoveredResponse), (status = 400, description = "Invalid body"),
        (status = 404, description = "Unknown webhook")))]
pub(crate) async fn recover(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let id = parse_id(&id, "webhook")?;
    let recovery: Recovery = webhook_body(req, None).await?;
    let done = state.domain.webhooks.recover(&caller, id, recovery).await?;
    let data = serde_json::json!({
        "webhook_id": done.webhook_id,
        "since": palmlink_domain::rfc3339(done.since),
        "requeued": done.requeued,
    });
    Ok(accepted(data, "Failed deliveries queued."))
}

/// Sends a `webhook.test` event to this webhook.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/test", operation_id = "test_webhook", tag = "webhooks",
    security(("bearer" = ["webhooks"])),
    params(("webhook_id" = String, Path, description = "Webhook id")),
    responses((status = 202, description = "Test delivery queued", body = crate::openapi::responses::DeliveryResponse), (status = 404, description = "Unknown webhook"),
        (status = 409, description = "Webhook disabled")))]
pub(crate) async fn test(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let log = state
        .domain
        .webhooks
        .test(&caller, parse_id(&id, "webhook")?)
        .await?;
    Ok(accepted(views::delivery(&log), "Test event queued."))
}

fn accepted(data: Value, message: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"success": true, "data": data, "message": message})),
    )
        .into_response()
}
