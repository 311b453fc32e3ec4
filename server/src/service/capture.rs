//! Capture submission by the scanner: validation of the templates, then the enrollment,
//! verification or identification that completes the challenge.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::challenges::{ensure_pending, load_for_device};
use super::{palm_name, palm_side, views};
use crate::clock::{now_micros, rfc3339};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::Validate;
use crate::outbox;
use crate::state::AppState;
use crate::store::{Challenge, Device, EnrollmentCommit, Palm, StoreError};
use palmlink_engine::{
    Comparison, GalleryError, Layout, RecordIds, RowId, SearchFilter, SearchMode, SearchQuery,
    Template, TemplateError,
};

/// Body of `POST /v1/device/challenges/{id}/capture`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CaptureSubmission {
    /// Extractor vendor, e.g. `mock` (default `unknown`).
    #[serde(default)]
    pub vendor: Option<String>,
    /// One capture per palm the challenge asks for.
    pub captures: Vec<CaptureItem>,
}

/// One palm capture.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CaptureItem {
    /// `left` or `right`.
    pub palm_type: String,
    /// The template.
    pub template: TemplateBody,
    /// Capture quality, 0..1.
    #[serde(default)]
    pub quality: Option<f64>,
    /// Liveness score, 0..1.
    #[serde(default)]
    pub liveness: Option<f64>,
}

/// A template as blocks of numbers (`format: "f32"`, `blocks`) or as base64 of little-endian
/// f32 (`format: "f32le_base64"`, `data`). A flat object rather than a tagged enum, so the
/// numbers are parsed once, straight into place.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct TemplateBody {
    /// `f32` or `f32le_base64`.
    pub format: String,
    /// With `f32`: `blocks` arrays of `dim` numbers.
    #[serde(default)]
    pub blocks: Option<Vec<Vec<f32>>>,
    /// With `f32le_base64`: base64 of `blocks * dim` little-endian f32.
    #[serde(default)]
    pub data: Option<String>,
}

impl Validate for CaptureSubmission {}

fn template_error(prefix: &str, err: &TemplateError, base64: bool) -> FieldError {
    let blocks = if base64 {
        format!("{prefix}.data")
    } else {
        format!("{prefix}.blocks")
    };
    match err {
        TemplateError::WrongBlockCount { expected, actual } => {
            FieldError::new(blocks, format!("expected {expected} blocks, got {actual}"))
        }
        TemplateError::WrongBlockDim {
            block,
            expected,
            actual,
        } => FieldError::new(
            format!("{blocks}[{block}]"),
            format!("expected {expected} values, got {actual}"),
        ),
        TemplateError::WrongLength { expected, actual } => FieldError::new(
            blocks,
            format!("expected {expected} values or bytes, got {actual}"),
        ),
        TemplateError::NonFinite { block, index } => FieldError::new(
            format!("{blocks}[{block}]"),
            format!("value {index} is not a finite float32"),
        ),
        TemplateError::ZeroNormBlock { block } => {
            FieldError::new(format!("{blocks}[{block}]"), "block has zero norm")
        }
        other => FieldError::new(blocks, other.to_string()),
    }
}

fn decode(prefix: &str, body: &TemplateBody) -> Result<Template, FieldError> {
    let layout = Layout::DEFAULT;
    match (body.format.as_str(), &body.blocks, &body.data) {
        ("f32", Some(blocks), _) => {
            Template::from_blocks(layout, blocks).map_err(|e| template_error(prefix, &e, false))
        }
        ("f32le_base64", _, Some(data)) => {
            let bytes = STANDARD
                .decode(data.trim())
                .map_err(|_| FieldError::new(format!("{prefix}.data"), "is not valid base64"))?;
            Template::from_le_bytes(layout, &bytes).map_err(|e| template_error(prefix, &e, true))
        }
        ("f32", None, _) => Err(FieldError::new(format!("{prefix}.blocks"), "is required")),
        ("f32le_base64", _, None) => Err(FieldError::new(format!("{prefix}.data"), "is required")),
        _ => Err(FieldError::new(
            format!("{prefix}.format"),
            "must be f32 or f32le_base64",
        )),
    }
}

/// Checks the captures against what the challenge asks for; returns (palm, template) pairs.
fn validate(challenge: &Challenge, body: &CaptureSubmission) -> ApiResult<Vec<(String, Template)>> {
    let mut errors = Vec::new();
    if let Some(v) = &body.vendor {
        if v.is_empty() || v.len() > 64 {
            errors.push(FieldError::new("vendor", "must be 1-64 characters"));
        }
    }
    let palms: Vec<&str> = body.captures.iter().map(|c| c.palm_type.as_str()).collect();
    let wanted_ok = match challenge.palm_type.as_str() {
        "both" => palms.len() == 2 && palms.contains(&"left") && palms.contains(&"right"),
        "any" => palms.len() == 1 && matches!(palms[0], "left" | "right"),
        single => palms.len() == 1 && palms[0] == single,
    };
    if !wanted_ok {
        let expected = match challenge.palm_type.as_str() {
            "both" => "one left and one right capture".to_owned(),
            "any" => "exactly one capture of the left or right palm".to_owned(),
            single => format!("exactly one capture of the {single} palm"),
        };
        errors.push(FieldError::new(
            "captures",
            format!("this challenge needs {expected}"),
        ));
    }
    let mut out = Vec::new();
    for (i, c) in body.captures.iter().enumerate() {
        let prefix = format!("captures[{i}]");
        if palm_side(&c.palm_type).is_none() {
            errors.push(FieldError::new(
                format!("{prefix}.palm_type"),
                "must be left or right",
            ));
        }
        for (name, v) in [("quality", c.quality), ("liveness", c.liveness)] {
            if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                errors.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "must be from 0 to 1",
                ));
            }
        }
        match decode(&format!("{prefix}.template"), &c.template) {
            Ok(t) => out.push((c.palm_type.clone(), t)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// `POST /v1/device/challenges/{id}/capture`.
pub(crate) async fn submit(
    state: &AppState,
    device: &Device,
    id: Uuid,
    body: CaptureSubmission,
) -> ApiResult<Value> {
    let started = Instant::now();
    let challenge = load_for_device(state, device, id).await?;
    ensure_pending(&challenge)?;
    let captures = validate(&challenge, &body)?;
    let vendor = body.vendor.clone().unwrap_or_else(|| "unknown".to_owned());
    let completion = match challenge.kind.as_str() {
        "enroll" => enroll(state, &challenge, captures, &vendor).await?,
        "verify" => verify(state, &challenge, captures, &vendor, started).await?,
        _ => identify(state, &challenge, captures, &vendor, started).await?,
    };
    state
        .metrics
        .challenges_completed
        .fetch_add(1, Ordering::Relaxed);
    let c = match completion {
        // What this request committed, as a read would return it.
        Some(done) => Challenge {
            status: "completed".to_owned(),
            result: Some(done.result),
            finished_at: Some(done.at),
            ..challenge
        },
        // A failure recorded with a reason: read back what is stored.
        None => load_for_device(state, device, id).await?,
    };
    Ok(views::challenge(&c))
}

/// A challenge this request completed: the stored result and completion time.
struct Completion {
    result: Value,
    at: i64,
}

/// Commits the result of a verify or identify challenge with its event.
async fn complete(
    state: &AppState,
    c: &Challenge,
    event_type: &str,
    data: Value,
    now: i64,
) -> ApiResult<Option<Completion>> {
    let event = outbox::event(c.tenant_id, event_type, data.clone(), now);
    if !state
        .store
        .complete_challenge(c.id, &data, &event, now)
        .await?
    {
        return Err(lost_race(state, c).await);
    }
    Ok(Some(Completion {
        result: data,
        at: now,
    }))
}

/// Explains why a challenge could not be completed after all (it changed meanwhile).
async fn lost_race(state: &AppState, challenge: &Challenge) -> ApiError {
    match super::challenges::load(state, challenge.tenant_id, challenge.id).await {
        Ok(c) => ensure_pending(&c).err().unwrap_or_else(|| {
            ApiError::conflict("challenge_not_pending", "the challenge changed meanwhile")
        }),
        Err(e) => e,
    }
}

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

async fn erase_rows(state: &AppState, tenant: Uuid, rows: Vec<RowId>) {
    let Ok(gallery) = state.galleries.get(tenant) else {
        return;
    };
    let _ = run_blocking(move || {
        for row in rows {
            if let Err(e) = gallery.delete(row) {
                tracing::error!(error = %e, row = row.0, "could not erase an unacknowledged template");
            }
        }
    })
    .await;
}

/// Stores the template(s) durably in the gallery, then commits palms, result and event.
async fn enroll(
    state: &AppState,
    c: &Challenge,
    captures: Vec<(String, Template)>,
    vendor: &str,
) -> ApiResult<Option<Completion>> {
    let now = now_micros();
    let external = c.external_user_id.clone().unwrap_or_default();
    let user = state.store.ensure_user(c.tenant_id, &external, now).await?;
    let gallery = state
        .galleries
        .get(c.tenant_id)
        .map_err(ApiError::internal)?;
    let items: Vec<(RecordIds, Template, String)> = captures
        .into_iter()
        .filter_map(|(palm, t)| {
            palm_side(&palm).map(|side| {
                (
                    RecordIds {
                        feature_id: Uuid::new_v4().as_u128(),
                        user_key: user.id.as_u128(),
                        palm: side,
                    },
                    t,
                    palm,
                )
            })
        })
        .collect();
    let ids: Vec<(RecordIds, String)> = items.iter().map(|(ids, _, p)| (*ids, p.clone())).collect();
    let rows = run_blocking(move || {
        let batch: Vec<(RecordIds, &Template)> =
            items.iter().map(|(ids, t, _)| (*ids, t)).collect();
        gallery.insert_batch(&batch)
    })
    .await?
    .map_err(ApiError::internal)?;
    let palms: Vec<Palm> = ids
        .iter()
        .zip(&rows)
        .map(|((rec, palm), row)| Palm {
            feature_id: Uuid::from_u128(rec.feature_id),
            tenant_id: c.tenant_id,
            user_id: user.id,
            palm_type: palm.clone(),
            row_id: row.0 as i64,
            enrolled_at: now,
            vendor: vendor.to_owned(),
            challenge_id: c.id,
        })
        .collect();
    let mut data = json!({
        "user_id": user.id,
        "external_user_id": external,
        "palm_type": c.palm_type,
        "hardware_id": c.hardware_id,
        "challenge_id": c.id,
        "enrolled_at": rfc3339(now),
        "vendor": vendor,
        "metadata": c.metadata,
    });
    if c.palm_type == "both" {
        let ids: serde_json::Map<String, Value> = palms
            .iter()
            .map(|p| (p.palm_type.clone(), json!(p.feature_id)))
            .collect();
        data["feature_ids"] = Value::Object(ids);
    } else if let Some(p) = palms.first() {
        data["feature_id"] = json!(p.feature_id);
    }
    let event = outbox::event(c.tenant_id, outbox::ENROLLMENT_COMPLETE, data.clone(), now);
    let commit = EnrollmentCommit {
        challenge_id: c.id,
        palms,
        result: data,
        event,
    };
    match state.store.complete_enrollment(&commit, now).await {
        Ok(true) => Ok(Some(Completion {
            result: commit.result,
            at: now,
        })),
        Ok(false) => {
            erase_rows(state, c.tenant_id, rows).await;
            Err(lost_race(state, c).await)
        }
        Err(StoreError::Conflict(_)) => {
            erase_rows(state, c.tenant_id, rows).await;
            state
                .store
                .finish_challenge(c.id, "failed", Some("already_enrolled"), now_micros())
                .await?;
            Err(ApiError::conflict(
                "already_enrolled",
                "that palm is already enrolled for this user",
            ))
        }
        Err(e) => {
            erase_rows(state, c.tenant_id, rows).await;
            Err(e.into())
        }
    }
}

fn scores_json(c: &Comparison) -> Vec<f64> {
    c.scores.iter().map(|s| f64::from(*s)).collect()
}

/// 1:1 against the user's own template(s); with several, the best comparison decides.
async fn verify(
    state: &AppState,
    c: &Challenge,
    captures: Vec<(String, Template)>,
    vendor: &str,
    started: Instant,
) -> ApiResult<Option<Completion>> {
    let external = c.external_user_id.clone().unwrap_or_default();
    let (user, palms) = match state
        .store
        .get_user_with_palms(c.tenant_id, &external)
        .await?
    {
        Some((user, palms)) => (Some(user), palms),
        None => (None, Vec::new()),
    };
    let Some((_, probe)) = captures.into_iter().next() else {
        return Err(ApiError::field("captures", "one capture is required"));
    };
    // A named palm is compared with that palm's template; with `any`, with every template.
    let targets: Vec<Palm> = palms
        .into_iter()
        .filter(|p| c.palm_type == "any" || p.palm_type == c.palm_type)
        .collect();
    let (Some(user), false) = (user, targets.is_empty()) else {
        state
            .store
            .finish_challenge(c.id, "failed", Some("user_not_enrolled"), now_micros())
            .await?;
        return Ok(None);
    };
    let settings = super::settings::load(state, c.tenant_id).await?;
    let gallery = state
        .galleries
        .get(c.tenant_id)
        .map_err(ApiError::internal)?;
    let rows: Vec<(String, RowId)> = targets
        .iter()
        .filter_map(|p| {
            u64::try_from(p.row_id)
                .ok()
                .map(|r| (p.palm_type.clone(), RowId(r)))
        })
        .collect();
    // A 1:1 comparison reads one mapped row and takes well under a microsecond: it runs
    // inline rather than paying a hand-off to the blocking pool.
    let results = (|| {
        let mut out = Vec::new();
        for (palm, row) in rows {
            match gallery.compare(&probe, row, &settings) {
                Ok(cmp) => out.push((palm, cmp)),
                Err(GalleryError::Deleted(_) | GalleryError::UnknownRow(_)) => {
                    tracing::error!(
                        row = row.0,
                        "ENROLLMENT WITHOUT TEMPLATE: skipped in verification"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })()
    .map_err(ApiError::internal)?;
    let Some(best) = results.into_iter().max_by(|a, b| {
        a.1.matched
            .cmp(&b.1.matched)
            .then(a.1.mean.total_cmp(&b.1.mean))
    }) else {
        state
            .store
            .finish_challenge(c.id, "failed", Some("template_missing"), now_micros())
            .await?;
        return Ok(None);
    };
    let now = now_micros();
    let data = json!({
        "challenge_id": c.id,
        "user_id": user.id,
        "external_user_id": external,
        "hardware_id": c.hardware_id,
        "palm_type": best.0,
        "matched": best.1.matched,
        "result": if best.1.matched { "match" } else { "no_match" },
        "scores": scores_json(&best.1),
        "thresholds": settings.thresholds().iter().map(|t| f64::from(*t)).collect::<Vec<_>>(),
        "match_policy": super::settings::policy_name(settings.policy()),
        "latency_ms": started.elapsed().as_millis() as u64,
        "vendor": vendor,
        "verified_at": rfc3339(now),
        "metadata": c.metadata,
    });
    complete(state, c, outbox::VERIFICATION_COMPLETE, data, now).await
}

/// 1:N over the tenant's gallery, restricted to the presented palm.
async fn identify(
    state: &AppState,
    c: &Challenge,
    captures: Vec<(String, Template)>,
    vendor: &str,
    started: Instant,
) -> ApiResult<Option<Completion>> {
    let Some((probe_palm, probe)) = captures.into_iter().next() else {
        return Err(ApiError::field("captures", "one capture is required"));
    };
    let settings = super::settings::load(state, c.tenant_id).await?;
    let gallery = state
        .galleries
        .get(c.tenant_id)
        .map_err(ApiError::internal)?;
    let query = SearchQuery {
        top_k: c.top_k.unwrap_or(5).clamp(1, 50) as usize,
        settings,
        filter: SearchFilter {
            palm: palm_side(&probe_palm),
            user_key: None,
        },
        mode: SearchMode::Auto,
    };
    let outcome = run_blocking(move || gallery.search(&probe, &query))
        .await?
        .map_err(ApiError::internal)?;
    let search_ms = started.elapsed().as_millis() as u64;
    let user_ids: Vec<Uuid> = outcome
        .candidates
        .iter()
        .map(|cand| Uuid::from_u128(cand.ids.user_key))
        .collect();
    let users: HashMap<Uuid, String> = state
        .store
        .get_users_by_ids(c.tenant_id, &user_ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.external_user_id))
        .collect();
    let candidates: Vec<Value> = outcome
        .candidates
        .iter()
        .filter_map(|cand| {
            let user_id = Uuid::from_u128(cand.ids.user_key);
            users.get(&user_id).map(|ext| {
                json!({
                    "user_id": user_id,
                    "external_user_id": ext,
                    "palm_type": palm_name(cand.ids.palm),
                    "confidence": f64::from(cand.confidence),
                    "scores": scores_json(&cand.comparison),
                    "matched": cand.comparison.matched,
                })
            })
        })
        .collect();
    let matched = candidates.iter().any(|v| v["matched"] == json!(true));
    let now = now_micros();
    let data = json!({
        "challenge_id": c.id,
        "hardware_id": c.hardware_id,
        "palm_type": probe_palm,
        "matched": matched,
        "candidates": candidates,
        "search": {
            "mode": if outcome.mode == SearchMode::Ann { "ann" } else { "exact" },
            "gallery_size": outcome.gallery_size,
            "latency_ms": search_ms,
        },
        "vendor": vendor,
        "identified_at": rfc3339(now),
        "metadata": c.metadata,
    });
    complete(state, c, outbox::IDENTIFICATION_COMPLETE, data, now).await
}
