//! Challenge creation and look-up on the integrator side.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{created, ok};
use crate::auth::caller::Caller;
use crate::error::ApiResult;
use crate::extract::{parse_id, AppJson, PathParam, QueryMap};
use crate::service::challenges::{self as svc, IdentifyChallenge, SubjectChallenge};
use crate::state::AppState;

/// Creates an enrollment challenge for one palm.
#[utoipa::path(post, path = "/v1/enroll", tag = "challenges",
    security(("bearer" = ["enroll"])), request_body = SubjectChallenge, responses(
    (status = 201, description = "Pending enrollment challenge"), (status = 400, description = "Device not paired"),
    (status = 404, description = "Unknown hardware_id"), (status = 409, description = "Palm already enrolled"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    Ok(created(
        svc::enroll(&state, &caller, body, false).await?,
        "Enrollment challenge created.",
    ))
}

/// Creates an enrollment challenge for both palms, stored atomically as one identity.
#[utoipa::path(post, path = "/v1/enroll/both", tag = "challenges",
    security(("bearer" = ["enroll"])), request_body = SubjectChallenge, responses(
    (status = 201, description = "Pending enrollment challenge (palm_type both)"), (status = 400, description = "Device not paired"),
    (status = 404, description = "Unknown hardware_id"), (status = 409, description = "A palm is already enrolled"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn enroll_both(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    Ok(created(
        svc::enroll(&state, &caller, body, true).await?,
        "Enrollment challenge created.",
    ))
}

/// Creates a 1:1 verification challenge.
#[utoipa::path(post, path = "/v1/verify", tag = "challenges",
    security(("bearer" = ["verify"])), request_body = SubjectChallenge, responses(
    (status = 201, description = "Pending verification challenge"), (status = 404, description = "User not enrolled or unknown hardware"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    Ok(created(
        svc::verify(&state, &caller, body).await?,
        "Verification challenge created.",
    ))
}

/// Creates a 1:N identification challenge.
#[utoipa::path(post, path = "/v1/identify", tag = "challenges",
    security(("bearer" = ["identify"])), request_body = IdentifyChallenge, responses(
    (status = 201, description = "Pending identification challenge"), (status = 404, description = "Unknown hardware"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn identify(
    State(state): State<AppState>,
    caller: Caller,
    AppJson(body): AppJson<IdentifyChallenge>,
) -> ApiResult<Response> {
    Ok(created(
        svc::identify(&state, &caller, body).await?,
        "Identification challenge created.",
    ))
}

/// One challenge with its result once completed.
#[utoipa::path(get, path = "/v1/challenges/{challenge_id}", tag = "challenges",
    security(("bearer" = ["enroll"]), ("bearer" = ["verify"]), ("bearer" = ["identify"])),
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The challenge"), (status = 404, description = "Unknown challenge")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    Ok(ok(
        svc::get(&state, &caller, parse_id(&id, "challenge")?).await?
    ))
}

/// Lists challenges, newest first.
#[utoipa::path(get, path = "/v1/challenges", tag = "challenges",
    security(("bearer" = ["enroll"]), ("bearer" = ["verify"]), ("bearer" = ["identify"])), params(
    ("type" = Option<String>, Query, description = "enroll, verify or identify"),
    ("status" = Option<String>, Query, description = "pending, completed, failed, cancelled or expired"),
    ("offset" = Option<i64>, Query, description = "Offset (>= 0)"), ("limit" = Option<i64>, Query, description = "1-100, default 20")),
    responses((status = 200, description = "A page of challenges"), (status = 422, description = "Bad filter or pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryMap(query): QueryMap,
) -> ApiResult<Response> {
    Ok(Json(svc::list(&state, &caller, &query).await?).into_response())
}
