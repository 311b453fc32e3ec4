//! Matching settings (scope `verify`).

use axum::extract::State;
use axum::response::Response;

use super::ok;
use crate::auth::caller::Caller;
use crate::error::ApiResult;
use crate::extract::AppJson;
use crate::service::settings::{self as svc, MatchingSettingsBody};
use crate::state::AppState;

/// The tenant's thresholds and policy.
#[utoipa::path(get, path = "/v1/settings/matching", tag = "settings",
    security(("bearer" = ["verify"])), responses((status = 200, description = "Settings in force")))]
pub(crate) async fn get(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    Ok(ok(svc::get(&state, &caller).await?))
}

/// Replaces the tenant's thresholds and policy.
#[utoipa::path(put, path = "/v1/settings/matching", tag = "settings",
    security(("bearer" = ["verify"])), request_body = MatchingSettingsBody,
    responses((status = 200, description = "Settings stored"), (status = 422, description = "Validation failed")))]
pub(crate) async fn put(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<MatchingSettingsBody>,
) -> ApiResult<Response> {
    Ok(ok(svc::put(&state, &caller, body).await?))
}
