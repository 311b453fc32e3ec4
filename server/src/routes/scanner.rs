//! The scanner side: pairing, long-polled challenges, captures and cancellation. Scanner
//! credentials (`Authorization: Bearer <device_secret>`) work only here.

use axum::extract::State;
use axum::response::Response;

use super::ok;
use crate::auth::caller::Scanner;
use crate::error::ApiResult;
use crate::extract::{parse_id, AppJson, PathParam, QueryMap};
use crate::service::capture::{self, CaptureSubmission};
use crate::service::challenges::{self, CancelChallenge};
use crate::service::devices::{self, PairDevice};
use crate::state::AppState;

/// Pairs a scanner with its one-time code and returns its credential (shown once).
#[utoipa::path(post, path = "/v1/device/pair", tag = "scanner", request_body = PairDevice, responses(
    (status = 200, description = "Paired; `device_secret` is shown once"), (status = 404, description = "Unknown code"),
    (status = 409, description = "Code already used or hardware_id already paired"), (status = 410, description = "Code expired"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn pair(
    State(state): State<AppState>,
    AppJson(body): AppJson<PairDevice>,
) -> ApiResult<Response> {
    Ok(ok(devices::pair(&state, body).await?))
}

/// Long-polls this scanner's pending challenges.
#[utoipa::path(get, path = "/v1/device/challenges", tag = "scanner",
    security(("scanner" = [])),
    params(("wait_ms" = Option<u64>, Query, description = "How long to wait for a challenge, 0-30000 ms")),
    responses((status = 200, description = "Pending challenges (possibly none)"), (status = 401, description = "Bad scanner credential")))]
pub(crate) async fn poll(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    Ok(ok(challenges::poll(&state, &device, &query).await?))
}

/// Submits the capture that completes a challenge.
#[utoipa::path(post, path = "/v1/device/challenges/{challenge_id}/capture", tag = "scanner",
    security(("scanner" = [])), request_body = CaptureSubmission,
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The completed challenge with its result"),
        (status = 404, description = "Not this scanner's challenge"), (status = 409, description = "Not pending"),
        (status = 410, description = "Expired"), (status = 422, description = "Invalid captures")))]
pub(crate) async fn capture(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    PathParam(id): PathParam,
    AppJson(body): AppJson<CaptureSubmission>,
) -> ApiResult<Response> {
    Ok(ok(capture::submit(
        &state,
        &device,
        parse_id(&id, "challenge")?,
        body,
    )
    .await?))
}

/// Cancels a pending challenge from the scanner.
#[utoipa::path(post, path = "/v1/device/challenges/{challenge_id}/cancel", tag = "scanner",
    security(("scanner" = [])), request_body = CancelChallenge,
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The cancelled challenge"), (status = 404, description = "Not this scanner's challenge"),
        (status = 409, description = "Not pending"), (status = 410, description = "Expired")))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Scanner(device): Scanner,
    PathParam(id): PathParam,
    AppJson(body): AppJson<CancelChallenge>,
) -> ApiResult<Response> {
    Ok(ok(challenges::cancel(
        &state,
        &device,
        parse_id(&id, "challenge")?,
        body,
    )
    .await?))
}
