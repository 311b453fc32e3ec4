//! The audit log (scope `audit`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmlink_domain::AuditQuery;

use crate::auth::Integrator;
use crate::error::ApiResult;
use crate::extract::QueryMap;
use crate::state::AppState;
use crate::views;

/// Lists the tenant's audit entries, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    security(("bearer" = ["audit"])), params(
    ("offset" = Option<i64>, Query, description = "Offset (>= 0)"), ("limit" = Option<i64>, Query, description = "1-100, default 20"),
    ("since" = Option<String>, Query, description = "Only entries at or after this RFC 3339 time"),
    ("action" = Option<String>, Query, description = "Only this action, e.g. client.rotated")),
    responses((status = 200, description = "A page of entries"), (status = 403, description = "Missing scope audit"),
    (status = 422, description = "Bad pagination or filter")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    query: QueryMap,
) -> ApiResult<Response> {
    let filter = AuditQuery {
        since: query.0.get("since").filter(|s| !s.is_empty()).cloned(),
        action: query.0.get("action").filter(|s| !s.is_empty()).cloned(),
    };
    let listing = state
        .domain
        .audit
        .list(&caller, filter, query.page()?)
        .await?;
    Ok(Json(views::listing(&listing, |e| e.view())).into_response())
}
