//! Enrolled users, and their erasure behind a confirmation (the operator types the user's
//! id again).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;

use super::layout::{csrf, page_of, pager, see_other, tenant_path, when, ConsoleResult, Page, Tab};
use super::session::Signed;
use super::tenants::{acting, Params};
use crate::error::ApiError;
use crate::state::AppState;

/// The confirmation page's address for a user.
fn erase_path(tenant: &palmlink_store::Tenant, user: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("user", user)
        .finish();
    tenant_path(tenant, &format!("users/erase?{query}"))
}

/// `GET /console/tenants/{tenant}/users`.
pub(super) async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let listing = state.domain.users.list(&caller, page_of(&query)?).await?;
    let page = Page {
        session: &signed.0,
        title: "Users",
        tenant: Some((&tenant, Tab::Users)),
        replace_url: None,
    };
    let path = tenant_path(&tenant, "users");
    Ok(page
        .render(html! {
            table #users {
                thead { tr { th { "External user id" } th { "Palms" } th { "Enrolled" } th { "" } } }
                tbody {
                    @for u in &listing.rows {
                        tr {
                            td.user-id { (u.user.external_user_id) }
                            td { @for p in &u.palms { (p.palm_type) " " } }
                            td { (u.palms.iter().map(|p| p.enrolled_at).min().map(when).unwrap_or_default()) }
                            td.actions { a.erase href=(erase_path(&tenant, &u.user.external_user_id)) { "Erase…" } }
                        }
                    }
                    @if listing.rows.is_empty() { tr { td.muted colspan="4" { "No enrolled users." } } }
                }
            }
            (pager(&path, &listing))
        })
        .into_response())
}

/// `GET /console/tenants/{tenant}/users/erase?user=ID`: what erasing the user destroys,
/// and the form that asks for the id again.
pub(super) async fn confirm(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let external = query.get("user").cloned().unwrap_or_default();
    let user = state.domain.users.get(&caller, &external).await?;
    let page = Page {
        session: &signed.0,
        title: "Erase a user",
        tenant: Some((&tenant, Tab::Users)),
        replace_url: None,
    };
    Ok(page
        .render(html! {
            div.notice.error {
                p { "Erasing " strong #erase-user { (user.user.external_user_id) } " destroys "
                    (user.palms.len()) " enrolled palm template(s) in the database and every gallery. "
                    "Later verifications of this user fail. This cannot be undone." }
            }
            form.card method="post" action=(tenant_path(&tenant, "users/erase")) #erase-form {
                (csrf(&signed.0))
                input type="hidden" name="user" value=(user.user.external_user_id);
                label { "Type the user's id to confirm"
                    input type="text" name="confirm" #erase-confirm autocomplete="off" required; }
                button.danger type="submit" #erase-submit { "Erase this user" }
            }
            p { a href=(tenant_path(&tenant, "users")) { "Cancel" } }
        })
        .into_response())
}

/// `POST /console/tenants/{tenant}/users/erase`: erases the user when `confirm` repeats
/// their id (422 otherwise).
pub(super) async fn erase(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let user = form.get("user").map(String::as_str).unwrap_or("");
    if form.get("confirm").map(String::as_str) != Some(user) {
        return Err(ApiError::field("confirm", "must repeat the user's id exactly").into());
    }
    state.domain.users.erase(&caller, user).await?;
    Ok(see_other(&tenant_path(&tenant, "users")))
}
