//! What the webhook endpoints do, free of HTTP: plain inputs in, response data or an
//! [`ApiError`] out. Every invalid field or body is a 400 (`invalid_webhook`), as the
//! contract asks for webhooks.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::delivery::Webhooks;
use super::events::{self, TEST_EVENT};
use super::signing::new_secret;
use super::ssrf::check_endpoint;
use super::store::{status, Attempt, Delivery, Subscription};
use crate::clock::{now_micros, rfc3339, SECOND};
use crate::error::{ApiError, ApiResult};
use crate::extract::Pagination;

/// Longest name and API key.
const MAX_NAME: usize = 255;
const MAX_API_KEY: usize = 1024;
/// Longest rotation grace period: 7 days.
const MAX_GRACE_SECS: i64 = 7 * 86_400;
/// Default rotation grace period: 24 hours.
const DEFAULT_GRACE_SECS: i64 = 86_400;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_webhook", message)
}

fn object(body: &Value) -> ApiResult<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| invalid("request body must be a JSON object"))
}

fn name_field(v: &Value) -> ApiResult<String> {
    let name = v.as_str().ok_or_else(|| invalid("name must be a string"))?;
    let n = name.chars().count();
    if name.trim().is_empty() {
        return Err(invalid("name must not be empty"));
    }
    if n > MAX_NAME {
        return Err(invalid(format!(
            "name must be at most {MAX_NAME} characters"
        )));
    }
    Ok(name.to_owned())
}

fn events_field(v: &Value) -> ApiResult<Vec<String>> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid("events must be an array of event keys"))?;
    let keys = list
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_owned)
                .ok_or_else(|| invalid("events must be an array of strings"))
        })
        .collect::<ApiResult<Vec<String>>>()?;
    events::resolve(&keys).map_err(invalid)
}

async fn endpoint_field(v: &Value, allow_private: bool) -> ApiResult<String> {
    let raw = v
        .as_str()
        .ok_or_else(|| invalid("endpoint must be a string"))?;
    let url = check_endpoint(raw, allow_private).await.map_err(invalid)?;
    Ok(url.to_string())
}

fn api_key_field(v: &Value) -> ApiResult<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.len() > MAX_API_KEY => Err(invalid(format!(
            "api_key must be at most {MAX_API_KEY} bytes"
        ))),
        Value::String(s) if s.chars().any(|c| c.is_control() || !c.is_ascii()) => Err(invalid(
            "api_key must be printable ASCII (it is sent as a header)",
        )),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid("api_key must be a string or null")),
    }
}

fn required<'a>(body: &'a Map<String, Value>, field: &str) -> ApiResult<&'a Value> {
    body.get(field)
        .ok_or_else(|| invalid(format!("{field} is required")))
}

/// The public view of a subscription (never its secrets).
pub(crate) fn view(h: &Subscription, now: i64) -> Value {
    json!({
        "webhook_id": h.id,
        "name": h.name,
        "events": h.events,
        "endpoint": h.endpoint,
        "api_key_set": h.api_key.is_some(),
        "active": h.active,
        "disabled_reason": h.disabled_reason,
        "failing_since": h.failing_since.map(rfc3339),
        "previous_secret_expires_at": h.old_secret_expires_at.filter(|t| *t > now).map(rfc3339),
        "created_at": rfc3339(h.created_at),
        "updated_at": rfc3339(h.updated_at),
    })
}

fn attempt_view(a: &Attempt) -> Value {
    json!({
        "attempt": a.attempt,
        "attempted_at": rfc3339(a.attempted_at),
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "error": a.error,
    })
}

fn delivery_view(d: &Delivery, attempts: &[Attempt]) -> Value {
    json!({
        "delivery_id": format!("del_{}", d.id),
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == status::PENDING).then(|| rfc3339(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "delivered_at": d.delivered_at.map(rfc3339),
        "attempt_log": attempts.iter().filter(|a| a.delivery_id == d.id).map(attempt_view).collect::<Vec<_>>(),
    })
}

/// Parses a delivery id as shown (`del_<uuid>`) or bare; anything else is unknown (404).
pub(crate) fn parse_delivery_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw.strip_prefix("del_").unwrap_or(raw))
        .map_err(|_| ApiError::NotFound("delivery"))
}

async fn load(hooks: &Webhooks, tenant: Uuid, id: Uuid) -> ApiResult<Subscription> {
    hooks
        .store()
        .get_webhook(tenant, id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))
}

/// `POST /v1/webhooks`: the new subscription with its signing secret (shown once).
pub(crate) async fn create(hooks: &Webhooks, tenant: Uuid, body: &Value) -> ApiResult<Value> {
    let body = object(body)?;
    let name = name_field(required(body, "name")?)?;
    let events = events_field(required(body, "events")?)?;
    let endpoint = endpoint_field(required(body, "endpoint")?, hooks.allow_private()).await?;
    let api_key = body
        .get("api_key")
        .map(api_key_field)
        .transpose()?
        .flatten();
    let now = now_micros();
    let hook = Subscription {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name,
        events,
        endpoint,
        api_key,
        secret: new_secret(),
        old_secret: None,
        old_secret_expires_at: None,
        active: true,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    hooks.store().create_webhook(&hook).await?;
    let mut data = view(&hook, now);
    data["signing_secret"] = json!(hook.secret);
    Ok(data)
}

/// `GET /v1/webhooks`: a page of subscriptions.
pub(crate) async fn list(hooks: &Webhooks, tenant: Uuid, page: Pagination) -> ApiResult<Value> {
    let (rows, total) = hooks
        .store()
        .list_webhooks(tenant, page.offset, page.limit)
        .await?;
    let now = now_micros();
    Ok(page.envelope(rows.iter().map(|h| view(h, now)).collect(), total))
}

/// `GET /v1/webhooks/{id}`.
pub(crate) async fn get(hooks: &Webhooks, tenant: Uuid, id: Uuid) -> ApiResult<Value> {
    Ok(view(&load(hooks, tenant, id).await?, now_micros()))
}

/// `PATCH /v1/webhooks/{id}`: any of `name`, `events`, `endpoint`, `api_key` (null clears),
/// `active` (true re-enables a disabled subscription and clears its `disabled_reason`).
pub(crate) async fn update(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    body: &Value,
) -> ApiResult<Value> {
    let body = object(body)?;
    let mut hook = load(hooks, tenant, id).await?;
    if let Some(v) = body.get("name") {
        hook.name = name_field(v)?;
    }
    if let Some(v) = body.get("events") {
        hook.events = events_field(v)?;
    }
    if let Some(v) = body.get("endpoint") {
        hook.endpoint = endpoint_field(v, hooks.allow_private()).await?;
    }
    if let Some(v) = body.get("api_key") {
        hook.api_key = api_key_field(v)?;
    }
    if let Some(v) = body.get("active") {
        let active = v
            .as_bool()
            .ok_or_else(|| invalid("active must be true or false"))?;
        if active && !hook.active {
            hook.disabled_reason = None;
            hook.failing_since = None;
        }
        hook.active = active;
    }
    let now = now_micros();
    hook.updated_at = now;
    if !hooks.store().update_webhook(&hook).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    hooks.notify();
    Ok(view(&hook, now))
}

/// `DELETE /v1/webhooks/{id}`: the subscription, its deliveries and their log.
pub(crate) async fn delete(hooks: &Webhooks, tenant: Uuid, id: Uuid) -> ApiResult<()> {
    if hooks.store().delete_webhook(tenant, id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// `POST /v1/webhooks/{id}/rotate-secret` with optional `grace_period_seconds` (0 to 7
/// days, default 24 h): a new secret (shown once); the previous one keeps signing, as a
/// second `v1,` entry, until the grace period ends.
pub(crate) async fn rotate_secret(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    body: Option<&Value>,
) -> ApiResult<Value> {
    let grace = match body {
        None | Some(Value::Null) => DEFAULT_GRACE_SECS,
        Some(body) => match object(body)?.get("grace_period_seconds") {
            None | Some(Value::Null) => DEFAULT_GRACE_SECS,
            Some(v) => v
                .as_i64()
                .filter(|g| (0..=MAX_GRACE_SECS).contains(g))
                .ok_or_else(|| {
                    invalid(format!(
                        "grace_period_seconds must be an integer from 0 to {MAX_GRACE_SECS}"
                    ))
                })?,
        },
    };
    let mut hook = load(hooks, tenant, id).await?;
    let now = now_micros();
    let new = new_secret();
    hook.old_secret = Some(std::mem::replace(&mut hook.secret, new));
    hook.old_secret_expires_at = Some(now + grace * SECOND);
    hook.updated_at = now;
    if !hooks.store().update_webhook(&hook).await? {
        return Err(ApiError::NotFound("webhook"));
    }
    let mut data = view(&hook, now);
    data["signing_secret"] = json!(hook.secret);
    data["previous_secret_expires_at"] = json!(rfc3339(now + grace * SECOND));
    Ok(data)
}

/// `GET /v1/webhooks/{id}/deliveries`: newest first, each with its attempt log.
pub(crate) async fn deliveries(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    page: Pagination,
) -> ApiResult<Value> {
    let hook = load(hooks, tenant, id).await?;
    let (rows, total) = hooks
        .store()
        .list_deliveries(hook.id, page.offset, page.limit)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
    let attempts = hooks.store().list_attempts(&ids).await?;
    Ok(page.envelope(
        rows.iter().map(|d| delivery_view(d, &attempts)).collect(),
        total,
    ))
}

/// `GET /v1/webhooks/{id}/deliveries/{delivery_id}`.
pub(crate) async fn delivery(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    delivery: Uuid,
) -> ApiResult<Value> {
    let hook = load(hooks, tenant, id).await?;
    let d = hooks
        .store()
        .get_delivery(hook.id, delivery)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let attempts = hooks.store().list_attempts(&[d.id]).await?;
    Ok(delivery_view(&d, &attempts))
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: due now, with a fresh retry cycle.
pub(crate) async fn retry(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    delivery: Uuid,
) -> ApiResult<Value> {
    let hook = load(hooks, tenant, id).await?;
    if hooks
        .store()
        .requeue(hook.id, Some(delivery), None, now_micros())
        .await?
        == 0
    {
        return Err(ApiError::NotFound("delivery"));
    }
    hooks.notify();
    let d = hooks
        .store()
        .get_delivery(hook.id, delivery)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let attempts = hooks.store().list_attempts(&[d.id]).await?;
    Ok(delivery_view(&d, &attempts))
}

/// `POST /v1/webhooks/{id}/recover` `{"since": RFC 3339}`: every failed delivery created
/// since then is due again.
pub(crate) async fn recover(
    hooks: &Webhooks,
    tenant: Uuid,
    id: Uuid,
    body: &Value,
) -> ApiResult<Value> {
    let body = object(body)?;
    let since = required(body, "since")?
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| invalid("since must be an RFC 3339 timestamp"))?
        .timestamp_micros();
    let hook = load(hooks, tenant, id).await?;
    let n = hooks
        .store()
        .requeue(hook.id, None, Some(since), now_micros())
        .await?;
    hooks.notify();
    Ok(json!({"webhook_id": hook.id, "since": rfc3339(since), "requeued": n}))
}

/// `POST /v1/webhooks/{id}/test`: queues a `webhook.test` event for this subscription only.
pub(crate) async fn test(hooks: &Webhooks, tenant: Uuid, id: Uuid) -> ApiResult<Value> {
    let hook = load(hooks, tenant, id).await?;
    if !hook.active {
        return Err(ApiError::conflict(
            "webhook_disabled",
            "the webhook is disabled; re-enable it with PATCH active=true",
        ));
    }
    let now = now_micros();
    let event_id = crate::outbox::new_event_id();
    let payload = json!({
        "event_id": event_id,
        "event_type": TEST_EVENT,
        "tenant_id": tenant,
        "timestamp": rfc3339(now),
        "data": {"webhook_id": hook.id, "name": hook.name, "message": "This is a test event from PalmLink."},
    });
    let d = Delivery {
        id: Uuid::new_v4(),
        webhook_id: hook.id,
        tenant_id: tenant,
        event_id,
        event_type: TEST_EVENT.to_owned(),
        payload: payload.to_string(),
        status: status::PENDING.to_owned(),
        attempts: 0,
        cycle_start: 0,
        next_attempt_at: now,
        last_status_code: None,
        last_error: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
    };
    hooks.store().insert_delivery(&d).await?;
    hooks.notify();
    Ok(delivery_view(&d, &[]))
}
