//! Webhook subscriptions: create (the signing secret shown once), their deliveries with
//! retry, recover and test, re-enable and delete.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use palmlink_domain::{
    rfc3339, NewWebhook, OperatorSession, Recovery, SubscriptionSecret, WebhookChanges, EVENT_TYPES,
};
use palmlink_store::{Subscription, Tenant};

use super::layout::{
    csrf, page_of, pager, see_other, shown_once, tenant_path, when, ConsoleResult, Page, Tab,
};
use super::session::Signed;
use super::tenants::{acting, id, Params};
use crate::state::AppState;

fn hook_path(tenant: &Tenant, hook: uuid::Uuid, rest: &str) -> String {
    tenant_path(tenant, &format!("webhooks/{hook}{rest}"))
}

fn create_form(session: &OperatorSession, tenant: &Tenant) -> maud::Markup {
    html! {
        form.card method="post" action=(tenant_path(tenant, "webhooks")) #create-webhook {
            (csrf(session))
            label { "Name" input type="text" name="name" #webhook-name required maxlength="255"; }
            label { "Endpoint (https URL)" input type="url" name="endpoint" #webhook-endpoint required; }
            label { "API key (optional, sent as X-API-Key)" input type="text" name="api_key" autocomplete="off"; }
            fieldset {
                legend { "Events" }
                @for event in EVENT_TYPES {
                    label { input type="checkbox" name="events" value=(event) checked; (event) }
                }
            }
            button type="submit" { "Create webhook" }
        }
    }
}

async fn list_page(
    state: &AppState,
    signed: &Signed,
    params: &HashMap<String, String>,
    query: &HashMap<String, String>,
    issued: Option<&SubscriptionSecret>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(state, signed, params).await?;
    let listing = state.domain.webhooks.list(&caller, page_of(query)?).await?;
    let page = Page {
        session: &signed.0,
        title: "Webhooks",
        tenant: Some((&tenant, Tab::Webhooks)),
        replace_url: issued.map(|_| tenant_path(&tenant, "webhooks")),
    };
    let path = tenant_path(&tenant, "webhooks");
    let markup = page.render(html! {
        @if let Some(issued) = issued {
            div.notice #issued-signing-secret {
                p { "Signing secret of " strong { (issued.subscription.name) } ". "
                    strong { "It is shown only this once: copy it now." } }
                code.secret #signing-secret { (issued.signing_secret) }
            }
        }
        (create_form(&signed.0, &tenant))
        table #webhooks {
            thead { tr { th { "Name" } th { "Endpoint" } th { "Events" } th { "State" } th { "Created" } } }
            tbody {
                @for h in &listing.rows {
                    tr {
                        td { a href=(hook_path(&tenant, h.id, "")) { (h.name) } }
                        td.mono { (h.endpoint) }
                        td { (h.events.join(", ")) }
                        td { (state_of(h)) }
                        td { (when(h.created_at)) }
                    }
                }
                @if listing.rows.is_empty() { tr { td.muted colspan="5" { "No webhooks yet." } } }
            }
        }
        (pager(&path, &listing))
    });
    Ok(match issued {
        Some(_) => shown_once(markup),
        None => markup.into_response(),
    })
}

fn state_of(h: &Subscription) -> String {
    if h.active {
        "active".to_owned()
    } else {
        format!(
            "disabled ({})",
            h.disabled_reason.as_deref().unwrap_or("by request")
        )
    }
}

/// `GET /console/tenants/{tenant}/webhooks`.
pub(super) async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    list_page(&state, &signed, &params, &query, None).await
}

/// `POST /console/tenants/{tenant}/webhooks`: the signing secret, shown once.
pub(super) async fn create(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<Vec<(String, String)>>,
) -> ConsoleResult<Response> {
    let (_, caller) = acting(&state, &signed, &params).await?;
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let events = form
        .iter()
        .filter(|(k, _)| k == "events")
        .map(|(_, v)| v.clone())
        .collect();
    let made = state
        .domain
        .webhooks
        .create(
            &caller,
            NewWebhook {
                name: field("name"),
                events,
                endpoint: field("endpoint"),
                api_key: Some(field("api_key")).filter(|k| !k.is_empty()),
            },
        )
        .await?;
    list_page(&state, &signed, &params, &HashMap::new(), Some(&made)).await
}

/// `GET /console/tenants/{tenant}/webhooks/{webhook}`: the subscription and its
/// deliveries.
pub(super) async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook_id = id(&params, "webhook", "webhook")?;
    let hook = state.domain.webhooks.get(&caller, hook_id).await?;
    let deliveries = state
        .domain
        .webhooks
        .deliveries(&caller, hook_id, page_of(&query)?)
        .await?;
    let session = &signed.0;
    let page = Page {
        session,
        title: &hook.name,
        tenant: Some((&tenant, Tab::Webhooks)),
        replace_url: None,
    };
    let since = rfc3339(state.domain.clock.now() - 86_400 * palmlink_domain::SECOND);
    Ok(page
        .render(html! {
            section.card {
                p { "Endpoint " code { (hook.endpoint) } }
                p { "Events: " (hook.events.join(", ")) }
                p { "State: " span #webhook-state { (state_of(&hook)) } }
                div.actions {
                    form method="post" action=(hook_path(&tenant, hook.id, "/test")) {
                        (csrf(session)) button type="submit" #webhook-test { "Send a test event" }
                    }
                    " "
                    @if !hook.active {
                        form method="post" action=(hook_path(&tenant, hook.id, "/enable")) {
                            (csrf(session)) button.quiet type="submit" { "Re-enable" }
                        }
                        " "
                    }
                    form method="post" action=(hook_path(&tenant, hook.id, "/delete"))
                        data-confirm="Delete this webhook and its delivery log?" {
                        (csrf(session)) button.danger type="submit" { "Delete" }
                    }
                }
            }
            form.card method="post" action=(hook_path(&tenant, hook.id, "/recover")) #recover {
                (csrf(session))
                label { "Queue failed deliveries again, created since (RFC 3339)"
                    input type="text" name="since" value=(since) required; }
                button.quiet type="submit" { "Recover" }
            }
            h2 { "Deliveries" }
            table #deliveries {
                thead { tr { th { "Event" } th { "Type" } th { "Status" } th { "Attempts" }
                    th { "Last answer" } th { "Created" } th { "" } } }
                tbody {
                    @for log in &deliveries.rows {
                        @let d = &log.delivery;
                        tr {
                            td.mono { (d.event_id) }
                            td { (d.event_type) }
                            td class=(format!("status-{}", d.status)) { (d.status) }
                            td { (d.attempts) }
                            td { (d.last_status_code.map(|c| c.to_string()).or_else(|| d.last_error.clone()).unwrap_or_default()) }
                            td { (when(d.created_at)) }
                            td.actions {
                                form method="post" action=(hook_path(&tenant, hook.id, &format!("/deliveries/{}/retry", d.id))) {
                                    (csrf(session)) button.quiet type="submit" { "Retry" }
                                }
                            }
                        }
                    }
                    @if deliveries.rows.is_empty() { tr { td.muted colspan="7" { "No deliveries yet." } } }
                }
            }
            (pager(&hook_path(&tenant, hook.id, ""), &deliveries))
        })
        .into_response())
}

/// `POST .../webhooks/{webhook}/test`.
pub(super) async fn test(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook = id(&params, "webhook", "webhook")?;
    state.domain.webhooks.test(&caller, hook).await?;
    Ok(see_other(&hook_path(&tenant, hook, "")))
}

/// `POST .../webhooks/{webhook}/recover`.
pub(super) async fn recover(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook = id(&params, "webhook", "webhook")?;
    let since = form.get("since").cloned().unwrap_or_default();
    state
        .domain
        .webhooks
        .recover(&caller, hook, Recovery { since })
        .await?;
    Ok(see_other(&hook_path(&tenant, hook, "")))
}

/// `POST .../webhooks/{webhook}/enable`: re-enables a disabled subscription.
pub(super) async fn enable(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook = id(&params, "webhook", "webhook")?;
    let changes = WebhookChanges {
        active: Some(true),
        ..WebhookChanges::default()
    };
    state.domain.webhooks.update(&caller, hook, changes).await?;
    Ok(see_other(&hook_path(&tenant, hook, "")))
}

/// `POST .../webhooks/{webhook}/delete`.
pub(super) async fn delete(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook = id(&params, "webhook", "webhook")?;
    state.domain.webhooks.delete(&caller, hook).await?;
    Ok(see_other(&tenant_path(&tenant, "webhooks")))
}

/// `POST .../webhooks/{webhook}/deliveries/{delivery}/retry`.
pub(super) async fn retry(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let hook = id(&params, "webhook", "webhook")?;
    let delivery = id(&params, "delivery", "delivery")?;
    state.domain.webhooks.retry(&caller, hook, delivery).await?;
    Ok(see_other(&hook_path(&tenant, hook, "")))
}
