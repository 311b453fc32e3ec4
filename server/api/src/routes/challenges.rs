//! Challenge creation and look-up on the integrator side.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palmlink_domain::{FieldError, IdentifyChallenge, Page, SubjectChallenge};
use palmlink_store::ChallengeFilter;

use super::{created, ok};
use crate::auth::Integrator;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, AppJson, PathParam, QueryMap};
use crate::schemas;
use crate::state::AppState;
use crate::views;

/// Creates an enrollment challenge for one palm.
#[utoipa::path(post, path = "/v1/enroll", operation_id = "create_enrollment", tag = "challenges",
    security(("bearer" = ["enroll"])), request_body = schemas::Enrollment, responses(
    (status = 201, description = "Pending enrollment challenge", body = crate::openapi::responses::ChallengeResponse), (status = 400, description = "Device not paired"),
    (status = 404, description = "Unknown hardware_id"), (status = 409, description = "Palm already enrolled"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn enroll(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    let c = state.domain.challenges.enroll(&caller, body, false).await?;
    state.metrics.count_challenge_created();
    Ok(created(
        views::challenge(&c),
        "Enrollment challenge created.",
    ))
}

/// Creates an enrollment challenge for both palms, stored atomically as one identity.
#[utoipa::path(post, path = "/v1/enroll/both", operation_id = "create_enrollment_both", tag = "challenges",
    security(("bearer" = ["enroll"])), request_body = schemas::EnrollmentBoth, responses(
    (status = 201, description = "Pending enrollment challenge (palm_type both)", body = crate::openapi::responses::ChallengeResponse), (status = 400, description = "Device not paired"),
    (status = 404, description = "Unknown hardware_id"), (status = 409, description = "A palm is already enrolled"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn enroll_both(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    let c = state.domain.challenges.enroll(&caller, body, true).await?;
    state.metrics.count_challenge_created();
    Ok(created(
        views::challenge(&c),
        "Enrollment challenge created.",
    ))
}

/// Creates a 1:1 verification challenge.
#[utoipa::path(post, path = "/v1/verify", operation_id = "create_verification", tag = "challenges",
    security(("bearer" = ["verify"])), request_body = schemas::Verification, responses(
    (status = 201, description = "Pending verification challenge", body = crate::openapi::responses::ChallengeResponse), (status = 404, description = "User not enrolled or unknown hardware"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<SubjectChallenge>,
) -> ApiResult<Response> {
    let c = state.domain.challenges.verify(&caller, body).await?;
    state.metrics.count_challenge_created();
    Ok(created(
        views::challenge(&c),
        "Verification challenge created.",
    ))
}

/// Creates a 1:N identification challenge.
#[utoipa::path(post, path = "/v1/identify", operation_id = "create_identification", tag = "challenges",
    security(("bearer" = ["identify"])), request_body = schemas::IdentifyChallenge, responses(
    (status = 201, description = "Pending identification challenge", body = crate::openapi::responses::ChallengeResponse), (status = 404, description = "Unknown hardware"),
    (status = 422, description = "Validation failed")))]
pub(crate) async fn identify(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    AppJson(body): AppJson<IdentifyChallenge>,
) -> ApiResult<Response> {
    let c = state.domain.challenges.identify(&caller, body).await?;
    state.metrics.count_challenge_created();
    Ok(created(
        views::challenge(&c),
        "Identification challenge created.",
    ))
}

/// One challenge with its result once completed.
#[utoipa::path(get, path = "/v1/challenges/{challenge_id}", operation_id = "get_challenge", tag = "challenges",
    security(("bearer" = ["enroll"]), ("bearer" = ["verify"]), ("bearer" = ["identify"])),
    params(("challenge_id" = String, Path, description = "Challenge id")),
    responses((status = 200, description = "The challenge", body = crate::openapi::responses::ChallengeResponse), (status = 404, description = "Unknown challenge")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    PathParam(id): PathParam,
) -> ApiResult<Response> {
    let c = state
        .domain
        .challenges
        .get(&caller, parse_id(&id, "challenge")?)
        .await?;
    Ok(ok(views::challenge(&c)))
}

/// A query parameter read as `T`: absent or empty is `None`; a value that is not one of
/// `T`'s adds `message` to `errors`.
fn optional<T: std::str::FromStr>(
    query: &QueryMap,
    name: &str,
    message: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let raw = query.0.get(name).filter(|s| !s.is_empty())?;
    let parsed = raw.parse().ok();
    if parsed.is_none() {
        errors.push(FieldError::new(name, message));
    }
    parsed
}

/// The page and the `type` and `status` filters of the challenge list (422 naming each
/// parameter that is wrong).
fn page_and_filter(query: &QueryMap) -> ApiResult<(Page, ChallengeFilter)> {
    let mut errors = match query.page() {
        Ok(_) => Vec::new(),
        Err(ApiError::Validation(errors)) => errors,
        Err(other) => return Err(other),
    };
    let filter = ChallengeFilter {
        kind: optional(
            query,
            "type",
            "must be enroll, verify or identify",
            &mut errors,
        ),
        status: optional(
            query,
            "status",
            "must be pending, completed, failed, cancelled or expired",
            &mut errors,
        ),
    };
    if errors.is_empty() {
        Ok((query.page()?, filter))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Lists challenges, newest first.
#[utoipa::path(get, path = "/v1/challenges", operation_id = "list_challenges", tag = "challenges",
    security(("bearer" = ["enroll"]), ("bearer" = ["verify"]), ("bearer" = ["identify"])), params(
    ("type" = Option<crate::openapi::responses::ChallengeType>, Query, description = "Only challenges of this type"),
    ("status" = Option<crate::openapi::responses::ChallengeStatus>, Query, description = "Only challenges in this state"),
    ("offset" = Option<i64>, Query, minimum = 0, description = "Rows to skip (>= 0)"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1-100, default 20")),
    responses((status = 200, description = "A page of challenges", body = crate::openapi::responses::ChallengePage), (status = 422, description = "Bad filter or pagination")))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Integrator(caller): Integrator,
    query: QueryMap,
) -> ApiResult<Response> {
    let (page, filter) = page_and_filter(&query)?;
    let listing = state.domain.challenges.list(&caller, filter, page).await?;
    Ok(Json(views::listing(&listing, views::challenge)).into_response())
}
