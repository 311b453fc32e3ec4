//! The live challenge list: a page, and the JSON its script polls to redraw it without a
//! reload.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::html;
use palmlink_domain::{Listing, Page as ListPage};
use palmlink_store::{Challenge, ChallengeFilter, ChallengeKind, ChallengeStatus};
use serde_json::{json, Value};

use super::layout::{tenant_path, when, ConsoleResult, Page, Tab};
use super::session::Signed;
use super::tenants::{acting, Params};
use crate::state::AppState;

/// Challenges the live list shows: the newest.
const SHOWN: i64 = 50;

/// What a finished challenge came to, in a few words.
fn outcome(c: &Challenge) -> String {
    let result = c.result.as_ref();
    let matched = result.and_then(|r| r["matched"].as_bool());
    match (c.status, c.kind) {
        (ChallengeStatus::Completed, ChallengeKind::Enroll) => "enrolled".to_owned(),
        (ChallengeStatus::Completed, ChallengeKind::Verify) => match matched {
            Some(true) => "match".to_owned(),
            _ => "no match".to_owned(),
        },
        (ChallengeStatus::Completed, ChallengeKind::Identify) => {
            let best = result
                .and_then(|r| r["candidates"].as_array())
                .and_then(|list| list.iter().find(|c| c["matched"] == json!(true)))
                .and_then(|c| c["external_user_id"].as_str());
            match best {
                Some(user) => format!("identified {user}"),
                None => "no match".to_owned(),
            }
        }
        (ChallengeStatus::Pending, _) => String::new(),
        _ => c
            .failure_reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// One row of the list, as the page and the JSON show it.
fn row(c: &Challenge) -> Value {
    json!({
        "challenge_id": c.id,
        "created_at": when(c.created_at),
        "type": c.kind.as_str(),
        "status": c.status.as_str(),
        "external_user_id": c.external_user_id,
        "hardware_id": c.hardware_id,
        "palm_type": c.palm_type.as_str(),
        "outcome": outcome(c),
    })
}

async fn newest(
    state: &AppState,
    signed: &Signed,
    params: &HashMap<String, String>,
) -> ConsoleResult<(palmlink_store::Tenant, Listing<Challenge>)> {
    let (tenant, caller) = acting(state, signed, params).await?;
    let listing = state
        .domain
        .challenges
        .list(
            &caller,
            ChallengeFilter::default(),
            ListPage {
                offset: 0,
                limit: SHOWN,
            },
        )
        .await?;
    Ok((tenant, listing))
}

/// `GET /console/tenants/{tenant}/challenges`.
pub(super) async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, listing) = newest(&state, &signed, &params).await?;
    let rows: Vec<Value> = listing.rows.iter().map(row).collect();
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    let page = Page {
        session: &signed.0,
        title: "Challenges",
        tenant: Some((&tenant, Tab::Challenges)),
        replace_url: None,
    };
    Ok(page
        .render(html! {
            p.muted { "The newest " (SHOWN) " of " span #live-total { (listing.total) } ", updated live (last update "
                span #live-updated { "on load" } ")." }
            table #live-challenges data-source=(tenant_path(&tenant, "challenges.json")) {
                thead { tr { th { "Created" } th { "Type" } th { "Status" } th { "User" }
                    th { "Hardware id" } th { "Palm" } th { "Outcome" } } }
                tbody {
                    @for r in &rows {
                        tr data-challenge-id=(text(r, "challenge_id")) {
                            td { (text(r, "created_at")) }
                            td { (text(r, "type")) }
                            td class=(format!("status-{}", text(r, "status"))) { (text(r, "status")) }
                            td { (text(r, "external_user_id")) }
                            td.mono { (text(r, "hardware_id")) }
                            td { (text(r, "palm_type")) }
                            td { (text(r, "outcome")) }
                        }
                    }
                    @if rows.is_empty() { tr { td.muted colspan="7" { "No challenges yet." } } }
                }
            }
        })
        .into_response())
}

/// `GET /console/tenants/{tenant}/challenges.json`: `{"total", "challenges": [...]}`.
pub(super) async fn live(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (_, listing) = newest(&state, &signed, &params).await?;
    Ok(Json(json!({
        "total": listing.total,
        "challenges": listing.rows.iter().map(row).collect::<Vec<_>>(),
    }))
    .into_response())
}
