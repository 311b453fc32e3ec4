//! The scanner side: pairing, long-polled challenges, captures and cancellation. Scanner
//! credentials (`Authorization: Bearer <device_secret>`) work only here.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use palmlink_domain::{CancelChallenge, CaptureSubmission, PairDevice};
use serde_json::Value;

use super::ok;
use crate::auth::Scanner;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, AppJson, PathParam, QueryMap};
use crate::schemas;
use crate::state::AppState;
use crate::views;

/// Pairs a scanner with its one-time code and returns its credential (shown once).
#[utoipa::path(post, path = "/v1/device/pair", operation_id = "pair_device", tag = "scanner", request_body = schemas::PairDevice, responses(
    (status = 200, description = "Paired; `device_secret` is shown once", body = crate::openapi::responses::PairedDeviceResponse), (status = 404, description = "Unknown code"),
    (status = 409, description = "Code already used or hardware_id already paired"), (status = 410, description = "Code expired"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn pair(
    State(state): State<AppState>,
    AppJson(body): AppJson<PairDevice>,
) -> ApiResult<Response> {
    let paired = state.domain.devices.pair(body).await?;
    Ok(ok(views::paired(&paired)))
}

/// Long-polls this scanner's pending challenges.
#[utoipa::path(get, path = "/v1/device/challenges", operation_id = "poll_challenges", tag = "scanner",
    security(("scanner" = [])),
    params(("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 30000, description = "How long to wait for a challenge, 0-30000 ms")),
    responses((status = 200, description = "Pending challenges (possibly none)", body = crate::openapi::responses::ScannerChallengesResponse), (status = 401, description = "Bad scanner credential")))]
pub(crate) async fn poll(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    let wait_ms = match query.get("wait_ms") {
        None => 0,
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| ApiError::field("wait_ms", "must be an integer from 0 to 30000"))?,
    };
    let pending = state
        .domain
        .challenges
        .poll(&device, Duration::from_millis(wait_ms))
        .await?;
    Ok(ok(Value::Array(
        pending.iter().map(views::scanner_challenge).collect(),
    )))
}

/// Submits the capture that completes a challenge.
#[utoipa::path(post, path = "/v1/device/challenges/{challenge_id}/capture", operation_id = "submit_capture", tag = "scanner",
    security(("scanner" = [])), request_body = schemas::CaptureSubmission,
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The completed challenge with its result", body = crate::openapi::responses::ChallengeResponse),
        (status = 404, description = "Not this scanner's challenge"), (status = 409, description = "Not pending"),
        (status = 410, description = "Expired"), (status = 422, description = "Invalid captures")))]
pub(crate) async fn capture(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    PathParam(id): PathParam,
    AppJson(body): AppJson<CaptureSubmission>,
) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let c = state
        .domain
        .captures
        .submit(&device, parse_id(&id, "challenge")?, body)
        .await?;
    state.metrics.count_challenge_completed();
    crate::metrics::record_decision(c.kind.as_str(), c.result.as_ref(), started.elapsed());
    Ok(ok(views::challenge(&c)))
}

/// Cancels a pending challenge from the scanner.
#[utoipa::path(post, path = "/v1/device/challenges/{challenge_id}/cancel", operation_id = "cancel_challenge", tag = "scanner",
    security(("scanner" = [])), request_body = schemas::CancelChallenge,
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The cancelled challenge", body = crate::openapi::responses::ChallengeResponse), (status = 404, description = "Not this scanner's challenge"),
        (status = 409, description = "Not pending"), (status = 410, description = "Expired")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    PathParam(id): PathParam,
    AppJson(body): AppJson<CancelChallenge>,
) -> ApiResult<Response> {
    let c = state
        .domain
        .challenges
        .cancel(&device, parse_id(&id, "challenge")?, body)
        .await?;
    Ok(ok(views::challenge(&c)))
}
