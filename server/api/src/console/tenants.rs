//! Tenants and their OAuth clients: create, rotate with the secret shown once, revoke the
//! old secret, delete.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use palmlink_domain::{scope_text, Caller, OperatorActor};
use palmlink_store::{Scope, Tenant};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{csrf, see_other, shown_once, tenant_path, when, ConsoleResult, Page, Tab};
use super::session::Signed;
use crate::error::ApiError;
use crate::state::AppState;

/// The path parameters of a tenant's pages.
pub(super) type Params = Path<HashMap<String, String>>;

/// The id a path parameter names; 404 naming `what` when it is missing or not a UUID.
pub(super) fn id(
    params: &HashMap<String, String>,
    key: &str,
    what: &'static str,
) -> ConsoleResult<Uuid> {
    params
        .get(key)
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .ok_or_else(|| ApiError::NotFound(what).into())
}

/// The tenant a page is about, and the operator acting in it with every scope.
pub(super) async fn acting(
    state: &AppState,
    signed: &Signed,
    params: &HashMap<String, String>,
) -> ConsoleResult<(Tenant, Caller)> {
    let tenant = state
        .domain
        .operators
        .get_tenant(id(params, "tenant", "tenant")?)
        .await?;
    let caller = Caller::operator(tenant.id, signed.0.operator.id);
    Ok((tenant, caller))
}

/// The signed-in operator, as the actor of the changes it makes.
fn by(signed: &Signed) -> OperatorActor {
    OperatorActor::Console(signed.0.operator.id)
}

/// `GET /console/tenants`.
pub(super) async fn list(State(state): State<AppState>, signed: Signed) -> ConsoleResult<Response> {
    let tenants = state.domain.operators.list_tenants().await?;
    let page = Page {
        session: &signed.0,
        title: "Tenants",
        tenant: None,
        replace_url: None,
    };
    Ok(page.render(html! {
        form.card method="post" action="/console/tenants" #create-tenant {
            (csrf(&signed.0))
            label { "New tenant" input type="text" name="name" #tenant-name-input required maxlength="255"; }
            button type="submit" { "Create tenant" }
        }
        table #tenants {
            thead { tr { th { "Name" } th { "Tenant id" } th { "Created" } } }
            tbody {
                @for t in &tenants {
                    tr {
                        td { a href=(tenant_path(t, "clients")) { (t.name) } }
                        td.mono { (t.id) }
                        td { (when(t.created_at)) }
                    }
                }
                @if tenants.is_empty() { tr { td.muted colspan="3" { "No tenants yet." } } }
            }
        }
    })
    .into_response())
}

/// A form with one name.
#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    name: String,
}

/// `POST /console/tenants`: creates a tenant and opens its clients.
pub(super) async fn create(
    State(state): State<AppState>,
    signed: Signed,
    Form(form): Form<NameForm>,
) -> ConsoleResult<Response> {
    let tenant = state
        .domain
        .operators
        .create_tenant(by(&signed), &form.name)
        .await?;
    Ok(see_other(&tenant_path(&tenant, "clients")))
}

/// `GET /console/tenants/{tenant}`: its clients.
pub(super) async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    Ok(see_other(&tenant_path(&tenant, "clients")))
}

/// A secret just issued, to show once.
struct Issued<'a> {
    client_id: Uuid,
    secret: &'a str,
    what: &'a str,
}

async fn clients_page(
    state: &AppState,
    signed: &Signed,
    tenant: &Tenant,
    issued: Option<Issued<'_>>,
) -> ConsoleResult<Response> {
    let clients = state.domain.operators.list_clients(tenant.id).await?;
    let page = Page {
        session: &signed.0,
        title: "OAuth clients",
        tenant: Some((tenant, Tab::Clients)),
        replace_url: issued.as_ref().map(|_| tenant_path(tenant, "clients")),
    };
    let session = &signed.0;
    let markup = page.render(html! {
        @if let Some(issued) = &issued {
            div.notice #issued-secret {
                p { (issued.what) " for client " code #issued-client-id { (issued.client_id) } ". "
                    strong { "It is shown only this once: copy it now." } }
                code.secret #client-secret { (issued.secret) }
            }
        }
        form.card method="post" action=(tenant_path(tenant, "clients")) #create-client {
            (csrf(session))
            label { "Client name" input type="text" name="name" #client-name required maxlength="255"; }
            label { "Scopes (space separated; empty for all)"
                input type="text" name="scopes" #client-scopes placeholder=(scope_text(Scope::ALL)); }
            button type="submit" { "Create client" }
        }
        table #clients {
            thead { tr { th { "Name" } th { "Client id" } th { "Scopes" } th { "Old secret" } th { "Created" } th { "" } } }
            tbody {
                @for c in &clients {
                    tr data-client-id=(c.id) {
                        td { (c.name) }
                        td.mono { (c.id) }
                        td { (scope_text(&c.scopes)) }
                        td { @if c.old_secret_hash.is_some() { "still valid" } @else { span.muted { "none" } } }
                        td { (when(c.created_at)) }
                        td.actions {
                            form method="post" action=(tenant_path(tenant, &format!("clients/{}/rotate", c.id))) {
                                (csrf(session)) button.quiet type="submit" { "Rotate secret" }
                            }
                            @if c.old_secret_hash.is_some() {
                                form method="post" action=(tenant_path(tenant, &format!("clients/{}/revoke-old-secret", c.id))) {
                                    (csrf(session)) button.quiet type="submit" { "Revoke old secret" }
                                }
                            }
                            form method="post" action=(tenant_path(tenant, &format!("clients/{}/delete", c.id)))
                                data-confirm="Delete this client? Every token it was issued stops working." {
                                (csrf(session)) button.danger type="submit" { "Delete" }
                            }
                        }
                    }
                }
                @if clients.is_empty() { tr { td.muted colspan="6" { "No clients yet." } } }
            }
        }
    });
    Ok(match issued {
        Some(_) => shown_once(markup),
        None => markup.into_response(),
    })
}

/// `GET /console/tenants/{tenant}/clients`.
pub(super) async fn clients(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    clients_page(&state, &signed, &tenant, None).await
}

/// The new-client form.
#[derive(Deserialize)]
pub(super) struct ClientForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scopes: String,
}

/// `POST /console/tenants/{tenant}/clients`: the new client's secret, shown once.
pub(super) async fn create_client(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<ClientForm>,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    let scopes = Some(form.scopes.trim()).filter(|s| !s.is_empty());
    let made = state
        .domain
        .operators
        .create_client(by(&signed), tenant.id, &form.name, scopes)
        .await?;
    let issued = Issued {
        client_id: made.client.id,
        secret: &made.secret,
        what: "Client secret",
    };
    clients_page(&state, &signed, &tenant, Some(issued)).await
}

/// `POST .../clients/{client}/rotate`: the new secret, shown once.
pub(super) async fn rotate_client(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    let client = id(&params, "client", "client")?;
    state.domain.operators.get_client(tenant.id, client).await?;
    let secret = state
        .domain
        .operators
        .rotate_client(by(&signed), client)
        .await?;
    let issued = Issued {
        client_id: client,
        secret: &secret,
        what: "New client secret (the previous one works until you revoke it)",
    };
    clients_page(&state, &signed, &tenant, Some(issued)).await
}

/// `POST .../clients/{client}/revoke-old-secret`.
pub(super) async fn revoke_old_secret(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    let client = id(&params, "client", "client")?;
    state.domain.operators.get_client(tenant.id, client).await?;
    state
        .domain
        .operators
        .revoke_old_secret(by(&signed), client)
        .await?;
    Ok(see_other(&tenant_path(&tenant, "clients")))
}

/// `POST .../clients/{client}/delete`.
pub(super) async fn delete_client(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    let client = id(&params, "client", "client")?;
    state.domain.operators.get_client(tenant.id, client).await?;
    state
        .domain
        .operators
        .delete_client(by(&signed), client)
        .await?;
    Ok(see_other(&tenant_path(&tenant, "clients")))
}
