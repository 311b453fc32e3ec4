//! Matching settings: the tenant's per-block thresholds and decision policy, beside the
//! accuracy report's DET curve (the SVG `palmlink-benches`' `accuracy` writes to
//! `docs/det.svg`, compiled in).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, PreEscaped};
use palmlink_domain::{SettingsUpdate, MAX_RETENTION_DAYS};
use palmlink_store::DuplicateCheck;

use super::layout::{csrf, see_other, tenant_path, ConsoleResult, Page, Tab};
use super::session::Signed;
use super::tenants::{acting, Params};
use crate::error::ApiError;
use crate::state::AppState;

/// The accuracy report's DET curve, drawn on the synthetic population.
const DET_SVG: &str = include_str!("../../../../docs/det.svg");

/// `GET /console/tenants/{tenant}/settings`.
pub(super) async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let settings = state.domain.settings.get(&caller).await?;
    let page = Page {
        session: &signed.0,
        title: "Matching settings",
        tenant: Some((&tenant, Tab::Settings)),
        replace_url: None,
    };
    let policy = settings.matching.policy.as_str();
    let k = settings.matching.policy.k().unwrap_or(8);
    let trust = settings.trust;
    Ok(page
        .render(html! {
            form.card method="post" action=(tenant_path(&tenant, "settings")) #settings {
                (csrf(&signed.0))
                fieldset {
                    legend { "Per-block thresholds (cosine similarity, -1 to 1)" }
                    @for (i, t) in settings.matching.thresholds.iter().enumerate() {
                        label { "Block " (i)
                            input.threshold type="number" step="0.0001" min="-1" max="1"
                                name="thresholds" id=(format!("threshold-{i}")) value=(format!("{t:.4}")) required; }
                    }
                }
                label { "Policy"
                    select name="match_policy" #match-policy {
                        @for (value, label) in [("all_thresholds", "every block reaches its threshold"),
                                                ("mean", "the mean score reaches the mean threshold"),
                                                ("k_of_n", "k blocks reach their thresholds")] {
                            option value=(value) selected[value == policy] { (label) }
                        }
                    }
                }
                label { "k (for k of n)" input type="number" name="k" #match-k min="1" max="10" value=(k); }
                fieldset {
                    legend { "Trust policy" }
                    label { "Minimum quality (0 to 1)"
                        input type="number" step="0.01" min="0" max="1" name="min_quality" #min-quality
                            value=(format!("{:.2}", trust.min_quality)) required; }
                    label { "Minimum liveness (0 to 1)"
                        input type="number" step="0.01" min="0" max="1" name="min_liveness" #min-liveness
                            value=(format!("{:.2}", trust.min_liveness)) required; }
                    label { "Duplicate-identity check at enrollment"
                        select name="duplicate_check" #duplicate-check {
                            @for check in DuplicateCheck::ALL {
                                option value=(check.as_str()) selected[*check == trust.duplicate_check] { (check.as_str()) }
                            }
                        }
                    }
                    label { "Keep finished challenges, events and delivery logs for (days; empty: for ever)"
                        input type="number" step="1" min="1" max=(MAX_RETENTION_DAYS) name="retention_days" #retention-days
                            value=[trust.retention_days]; }
                }
                button type="submit" #save-settings { "Save settings" }
            }
            section.card.det {
                h2 { "Accuracy on the synthetic population" }
                p.muted { "False non-match rate against false match rate as the threshold moves, for the mean score and for "
                    "the per-block policy. Raising the thresholds moves a tenant left along a curve "
                    "(fewer false matches, more false non-matches)." }
                (PreEscaped(DET_SVG))
            }
        })
        .into_response())
}

/// `POST /console/tenants/{tenant}/settings`: 422 naming the field when a value is wrong.
pub(super) async fn update(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Form(form): Form<Vec<(String, String)>>,
) -> ConsoleResult<Response> {
    let (tenant, caller) = acting(&state, &signed, &params).await?;
    let mut thresholds = Vec::new();
    for (i, (_, raw)) in form.iter().filter(|(k, _)| k == "thresholds").enumerate() {
        let value = raw
            .trim()
            .parse::<f64>()
            .map_err(|_| ApiError::field(format!("thresholds[{i}]"), "must be a number"))?;
        thresholds.push(value);
    }
    let field: HashMap<&str, &str> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let match_policy = field.get("match_policy").copied().unwrap_or("").to_owned();
    let k = match match_policy.as_str() {
        "k_of_n" => Some(
            field
                .get("k")
                .and_then(|k| k.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::field("k", "must be a whole number"))?,
        ),
        _ => None,
    };
    let number = |name: &'static str| -> Result<Option<f64>, ApiError> {
        field
            .get(name)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| ApiError::field(name, "must be a number"))
            })
            .transpose()
    };
    state
        .domain
        .settings
        .put(
            &caller,
            SettingsUpdate {
                thresholds,
                match_policy,
                k,
                min_quality: number("min_quality")?,
                min_liveness: number("min_liveness")?,
                duplicate_check: match field.get("duplicate_check") {
                    Some(v) => Some(v.parse::<DuplicateCheck>().map_err(|_| {
                        ApiError::field("duplicate_check", "must be off, flag or reject")
                    })?),
                    None => None,
                },
                retention_days: match field.get("retention_days").map(|v| v.trim()) {
                    None => None,
                    Some("") => Some(None),
                    Some(v) => Some(Some(v.parse::<i64>().map_err(|_| {
                        ApiError::field("retention_days", "must be a whole number of days")
                    })?)),
                },
            },
        )
        .await?;
    Ok(see_other(&tenant_path(&tenant, "settings")))
}
