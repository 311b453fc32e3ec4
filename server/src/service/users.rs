//! Enrolled users: listing, look-up and erasure.

use serde_json::Value;

use crate::auth::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Pagination;
use crate::state::AppState;
use palmlink_engine::RowId;

/// `GET /v1/users`: users holding at least one palm.
pub(crate) async fn list(state: &AppState, caller: &Caller, page: Pagination) -> ApiResult<Value> {
    caller.require("users")?;
    let (users, total) = state
        .store
        .list_users(caller.tenant_id, page.offset, page.limit)
        .await?;
    let mut data = Vec::with_capacity(users.len());
    for u in &users {
        let palms = state.store.list_palms(caller.tenant_id, u.id).await?;
        data.push(super::views::user(u, &palms));
    }
    Ok(page.envelope(data, total))
}

/// `GET /v1/users/{external_user_id}`.
pub(crate) async fn get(
    state: &AppState,
    caller: &Caller,
    external_user_id: &str,
) -> ApiResult<Value> {
    caller.require("users")?;
    let user = state
        .store
        .get_user(caller.tenant_id, external_user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let palms = state.store.list_palms(caller.tenant_id, user.id).await?;
    if palms.is_empty() {
        return Err(ApiError::NotFound("user"));
    }
    Ok(super::views::user(&user, &palms))
}

/// `DELETE /v1/users/{external_user_id}`: the database rows first, then the templates (a
/// crash in between leaves gallery rows that start-up reconciliation erases).
pub(crate) async fn delete(
    state: &AppState,
    caller: &Caller,
    external_user_id: &str,
) -> ApiResult<()> {
    caller.require("users")?;
    let user = state
        .store
        .get_user(caller.tenant_id, external_user_id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    let palms = state.store.delete_user(caller.tenant_id, user.id).await?;
    if palms.is_empty() {
        return Err(ApiError::NotFound("user"));
    }
    let gallery = state
        .galleries
        .get(caller.tenant_id)
        .map_err(ApiError::internal)?;
    let rows: Vec<RowId> = palms
        .iter()
        .filter_map(|p| u64::try_from(p.row_id).ok().map(RowId))
        .collect();
    tokio::task::spawn_blocking(move || {
        for row in rows {
            if let Err(e) = gallery.delete(row) {
                tracing::error!(error = %e, row = row.0, "could not erase a template from the gallery");
            }
        }
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(())
}
