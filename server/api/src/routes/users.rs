//! Enrolled users (scope `users`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ok;
use crate::auth::Integrator;
use crate::error::ApiResult;
use crate::extract::{PathParam, QueryMap};
use crate::state::AppState;
use crate::views;

/// Lists enrolled users with their palms.
#[utoipa::path(get, path = "/v1/users", operation_id = "list_users", tag = "users",
    security(("bearer" = ["users"])), params(
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20")),
    responses((status = 200, description = "A page of users", body = crate::openapi::responses::UserPage), (status = 422, description = "Bad pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    query: QueryMap,
) -> ApiResult<Response> {
    let listing = state.domain.users.list(&caller, query.page()?).await?;
    Ok(Json(views::listing(&listing, views::user)).into_response())
}

/// One user's enrolled palms.
#[utoipa::path(get, path = "/v1/users/{external_user_id}", operation_id = "get_user", tag = "users",
    security(("bearer" = ["users"])),
    params(("external_user_id" = String, Path, description = "The tenant's user id")),
    responses((status = 200, description = "The user", body = crate::openapi::responses::UserResponse), (status = 404, description = "Not enrolled")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(ext): PathParam,
) -> ApiResult<Response> {
    Ok(ok(views::user(
        &state.domain.users.get(&caller, &ext).await?,
    )))
}

/// Erases a user's templates and records (right to erasure).
#[utoipa::path(delete, path = "/v1/users/{external_user_id}", operation_id = "delete_user", tag = "users",
    security(("bearer" = ["users"])),
    params(("external_user_id" = String, Path, description = "The tenant's user id")),
    responses((status = 204, description = "Erased"), (status = 404, description = "Not enrolled")))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(ext): PathParam,
) -> ApiResult<Response> {
    state.domain.users.erase(&caller, &ext).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
