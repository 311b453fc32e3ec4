//! Matching settings (scope `verify`).

use axum::extract::State;
use axum::response::Response;
use palmlink_domain::SettingsUpdate;

use super::ok;
use crate::auth::Integrator;
use crate::error::ApiResult;
use crate::extract::AppJson;
use crate::schemas;
use crate::state::AppState;
use crate::views;

/// The tenant's thresholds and policy.
#[utoipa::path(get, path = "/v1/settings/matching", operation_id = "get_matching_settings", tag = "settings",
    security(("bearer" = ["verify"])), responses((status = 200, description = "Settings in force", body = crate::openapi::responses::SettingsResponse)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
) -> ApiResult<Response> {
    Ok(ok(views::settings(
        &state.domain.settings.get(&caller).await?,
    )))
}

/// Replaces the tenant's thresholds and policy.
#[utoipa::path(put, path = "/v1/settings/matching", operation_id = "put_matching_settings", tag = "settings",
    security(("bearer" = ["verify"])), request_body = schemas::MatchingSettings,
    responses((status = 200, description = "Settings stored", body = crate::openapi::responses::SettingsResponse), (status = 422, description = "Validation failed")))]
pub(crate) async fn put(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<SettingsUpdate>,
) -> ApiResult<Response> {
    Ok(ok(views::settings(
        &state.domain.settings.put(&caller, body).await?,
    )))
}
