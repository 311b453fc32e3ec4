//! Scanners: register (the pairing code shown once), a fresh code, revocation.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use palmlink_domain::{RegisterDevice, RegisteredDevice};
use palmlink_store::{DeviceStatus, Tenant};

use super::layout::{
    csrf, page_of, pager, see_other, shown_once, tenant_path, when, ConsoleResult, Page, Tab,
};
use super::session::Signed;
use super::tenants::{acting, id, Params};
use crate::state::AppState;

async fn devices_page(
    state: &AppState,
    signed: &Signed,
    params: &HashMap<String, String>,
    query: &HashMap<String, String>,
    issued: Option<&RegisteredDevice>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(state, signed, params).await?;
    let listing = state.domain.devices.list(&caller, page_of(query)?).await?;
    let session = &signed.0;
    let page = Page {
        session,
        title: "Devices",
        tenant: Some((&tenant, Tab::Devices)),
        replace_url: issued.map(|_| tenant_path(&tenant, "devices")),
    };
    let path = tenant_path(&tenant, "devices");
    let markup = page.render(html! {
        @if let Some(issued) = issued {
            div.notice #pairing {
                p { "Pairing code for " strong { (issued.device.device_name) } ", valid for "
                    (issued.expires_in / 60) " minutes. Enter it on the scanner; it is shown only this once." }
                code.secret #pairing-code { (issued.pairing_code) }
            }
        }
        form.card method="post" action=(path) #register-device {
            (csrf(session))
            label { "Device name" input type="text" name="device_name" #device-name required maxlength="255"; }
            label { "Location" input type="text" name="location" #device-location required maxlength="255"; }
            button type="submit" { "Register device" }
        }
        table #devices {
            thead { tr { th { "Name" } th { "Location" } th { "Status" } th { "Hardware id" } th { "Paired" } th { "Last seen" } th { "" } } }
            tbody {
                @for d in &listing.rows {
                    tr data-device-id=(d.id) {
                        td.device-name { (d.device_name) }
                        td { (d.location) }
                        td class=(format!("status-{}", d.status)) { (d.status) }
                        td.mono { (d.hardware_id.as_deref().unwrap_or("")) }
                        td { (d.paired_at.map(when).unwrap_or_default()) }
                        td { (d.last_seen_at.map(when).unwrap_or_default()) }
                        td.actions { (actions(session, &tenant, d.id, d.status)) }
                    }
                }
                @if listing.rows.is_empty() { tr { td.muted colspan="7" { "No devices yet." } } }
            }
        }
        (pager(&path, &listing))
    });
    Ok(match issued {
        Some(_) => shown_once(markup),
        None => markup.into_response(),
    })
}

fn actions(
    session: &palmlink_domain::OperatorSession,
    tenant: &Tenant,
    device: uuid::Uuid,
    status: DeviceStatus,
) -> maud::Markup {
    html! {
        @if status == DeviceStatus::PendingPair {
            form method="post" action=(tenant_path(tenant, &format!("devices/{device}/pairing-code"))) {
                (csrf(session)) button.quiet type="submit" { "New pairing code" }
            }
        }
        @if status != DeviceStatus::Revoked {
            form method="post" action=(tenant_path(tenant, &format!("devices/{device}/revoke")))
                data-confirm="Revoke this device? Its credential stops working and its pending challenges fail." {
                (csrf(session)) button.danger type="submit" { "Revoke" }
            }
        }
    }
}

/// `GET /console/tenants/{tenant}/devices`.
pub(super) async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    devices_page(&state, &signed, &params, &query, None).await
}

/// `POST /console/tenants/{tenant}/devices`: the pairing code, shown once.
pub(super) async fn register(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (_, caller) = acting(&state, &signed, &params).await?;
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let registered = state
        .domain
        .devices
        .register(
            &caller,
            RegisterDevice {
                device_name: field("device_name"),
                location: field("location"),
            },
        )
        .await?;
    devices_page(&state, &signed, &params, &HashMap::new(), Some(&registered)).await
}

/// `POST .../devices/{device}/pairing-code`: a fresh code, shown once.
pub(super) async fn pairing_code(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (_, caller) = acting(&state, &signed, &params).await?;
    let reissued = state
        .domain
        .devices
        .reissue_code(&caller, id(&params, "device", "device")?)
        .await?;
    devices_page(&state, &signed, &params, &HashMap::new(), Some(&reissued)).await
}

/// `POST .../devices/{device}/revoke`.
pub(super) async fn revoke(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    state
        .domain
        .devices
        .revoke(&caller, id(&params, "device", "device")?)
        .await?;
    Ok(see_other(&tenant_path(&tenant, "devices")))
}
