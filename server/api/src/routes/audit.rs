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
#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit", tag = "audit",
    security(("bearer" = ["audit"])), params(
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20"),
    ("since" = Option<String>, Query, pattern = r"^$|^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$", description = "Only entries at or after this RFC 3339 time (empty: no filter)"),
    ("action" = Option<String>, Query, description = "Only this action, e.g. client.rotated")),
    responses((status = 200, description = "A page of entries", body = crate::openapi::responses::AuditPage), (status = 403, description = "Missing scope audit"),
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
