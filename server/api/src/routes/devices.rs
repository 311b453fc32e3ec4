//! Integrator device management (scope `devices`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmlink_domain::RegisterDevice;

use super::{created, ok};
use crate::auth::Integrator;
use crate::error::ApiResult;
use crate::extract::{parse_id, AppJson, PathParam, QueryMap};
use crate::schemas;
use crate::state::AppState;
use crate::views;

/// Registers a scanner and returns its one-time pairing code.
#[utoipa::path(post, path = "/v1/devices", operation_id = "register_device", tag = "devices",
    security(("bearer" = ["devices"])), request_body = schemas::RegisterDevice, responses(
    (status = 201, description = "Device registered, pairing code issued", body = crate::openapi::responses::RegisteredDeviceResponse),
    (status = 401, description = "Missing or invalid token"), (status = 403, description = "Missing scope `devices`"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<RegisterDevice>,
) -> ApiResult<Response> {
    let registered = state.domain.devices.register(&caller, body).await?;
    Ok(created(
        views::registered(&registered),
        "Enter this pairing code on the physical scanner to complete provisioning.",
    ))
}

/// Lists the tenant's devices.
#[utoipa::path(get, path = "/v1/devices", operation_id = "list_devices", tag = "devices",
    security(("bearer" = ["devices"])), params(
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20")),
    responses((status = 200, description = "A page of devices", body = crate::openapi::responses::DevicePage), (status = 422, description = "Bad pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    query: QueryMap,
) -> ApiResult<Response> {
    let listing = state.domain.devices.list(&caller, query.page()?).await?;
    Ok(Json(views::listing(&listing, views::device)).into_response())
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{device_id}", operation_id = "get_device", tag = "devices",
    security(("bearer" = ["devices"])), params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device", body = crate::openapi::responses::DeviceResponse), (status = 404, description = "Unknown device")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let device = state
        .domain
        .devices
        .get(&caller, parse_id(&id, "device")?)
        .await?;
    Ok(ok(views::device(&device)))
}

/// Revokes a device: its credential stops working, its pending challenges fail.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", operation_id = "revoke_device", tag = "devices",
    security(("bearer" = ["devices"])), params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The revoked device", body = crate::openapi::responses::DeviceResponse), (status = 404, description = "Unknown device")))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let device = state
        .domain
        .devices
        .revoke(&caller, parse_id(&id, "device")?)
        .await?;
    Ok(ok(views::device(&device)))
}

/// Issues a fresh pairing code for a device not yet paired.
#[utoipa::path(post, path = "/v1/devices/{device_id}/pairing-code", operation_id = "issue_pairing_code", tag = "devices",
    security(("bearer" = ["devices"])),
    params(("device_id" = String, Path, description = "Device id")),
    responses((status = 200, description = "New pairing code", body = crate::openapi::responses::PairingCodeResponse), (status = 404, description = "Unknown device"),
        (status = 409, description = "Already paired or revoked")))]
pub(crate) async fn pairing_code(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let issued = state
        .domain
        .devices
        .reissue_code(&caller, parse_id(&id, "device")?)
        .await?;
    Ok(ok(views::pairing_code(&issued)))
}
