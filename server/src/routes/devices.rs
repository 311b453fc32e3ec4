//! Integrator device management (scope `devices`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{created, ok};
use crate::auth::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{parse_id, AppJson, Pagination, PathParam, QueryMap};
use crate::service::devices::{self as svc, RegisterDevice};
use crate::service::views;
use crate::state::AppState;

/// Registers a scanner and returns its one-time pairing code.
#[utoipa::path(post, path = "/v1/devices", tag = "devices",
    security(("bearer" = ["devices"])), request_body = RegisterDevice, responses(
    (status = 201, description = "Device registered, pairing code issued"),
    (status = 401, description = "Missing or invalid token"), (status = 403, description = "Missing scope `devices`"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<RegisterDevice>,
) -> ApiResult<Response> {
    let data = svc::register(&state, &caller, body).await?;
    Ok(created(
        data,
        "Enter this pairing code on the physical scanner to complete provisioning.",
    ))
}

/// Lists the tenant's devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    security(("bearer" = ["devices"])), params(
    ("offset" = Option<i64>, Query, description = "Offset (>= 0)"), ("limit" = Option<i64>, Query, description = "1-100, default 20")),
    responses((status = 200, description = "A page of devices"), (status = 422, description = "Bad pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    caller.require("devices")?;
    let page = Pagination::from_query(&query)?;
    let (rows, total) = state
        .store
        .list_devices(caller.tenant_id, page.offset, page.limit)
        .await?;
    Ok(Json(page.envelope(rows.iter().map(views::device).collect(), total)).into_response())
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{device_id}", tag = "devices",
    security(("bearer" = ["devices"])), params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device"), (status = 404, description = "Unknown device")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    Ok(ok(
        svc::get(&state, &caller, parse_id(&id, "device")?).await?
    ))
}

/// Revokes a device: its credential stops working, its pending challenges fail.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "devices",
    security(("bearer" = ["devices"])), params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The revoked device"), (status = 404, description = "Unknown device")))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    Ok(ok(
        svc::revoke(&state, &caller, parse_id(&id, "device")?).await?
    ))
}

/// Issues a fresh pairing code for a device not yet paired.
#[utoipa::path(post, path = "/v1/devices/{device_id}/pairing-code", tag = "devices",
    security(("bearer" = ["devices"])),
    params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "New pairing code"), (status = 404, description = "Unknown device"),
        (status = 409, description = "Already paired or revoked")))]
pub(crate) async fn pairing_code(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    Ok(ok(svc::reissue_code(
        &state,
        &caller,
        parse_id(&id, "device")?,
    )
    .await?))
}
