//! The decisions a completed challenge carries, as the OpenAPI document describes them:
//! what the scanner reported of each capture, and the result of an enrollment, a
//! verification or an identification (mirroring `views.rs`).

#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// What a scanner reported of one capture.
#[derive(ToSchema)]
pub(crate) struct CaptureReport {
    /// The captured palm.
    palm_type: PalmType,
    /// Capture quality, 0..1.
    quality: Option<f64>,
    /// Liveness score, 0..1.
    liveness: Option<f64>,
}

/// The decision of a completed challenge, by its type.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum ChallengeResult {
    /// A 1:1 decision.
    Verification(VerificationResult),
    /// A 1:N decision.
    Identification(IdentificationResult),
    /// Stored palm(s).
    Enrollment(EnrollmentResult),
}

/// An enrollment's result (`enrollment.complete`).
#[derive(ToSchema)]
pub(crate) struct EnrollmentResult {
    /// Internal user id.
    user_id: Uuid,
    /// The tenant's user id.
    external_user_id: String,
    /// The stored template (one palm).
    feature_id: Option<Uuid>,
    /// The stored templates by palm (both palms).
    #[schema(value_type = Option<Object>)]
    feature_ids: Option<Value>,
    /// Enrolled palm(s).
    palm_type: ChallengePalm,
    /// The capturing scanner.
    hardware_id: String,
    /// Challenge id.
    challenge_id: Uuid,
    /// RFC 3339.
    enrolled_at: String,
    /// Extractor vendor.
    vendor: String,
    /// Each capture's palm, quality and liveness.
    captures: Option<Vec<CaptureReport>>,
    /// Other users' templates that match this enrollment (the duplicate check).
    duplicates: Option<Vec<Duplicate>>,
    /// The integrator's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// Another user's template that matches an enrolled palm.
#[derive(ToSchema)]
pub(crate) struct Duplicate {
    /// The other user.
    external_user_id: String,
    /// Their palm.
    palm_type: PalmType,
    /// Mean block similarity.
    confidence: f64,
}

/// A verification's result (`verification.complete`).
#[derive(ToSchema)]
pub(crate) struct VerificationResult {
    /// Challenge id.
    challenge_id: Uuid,
    /// Internal user id.
    user_id: Uuid,
    /// The tenant's user id.
    external_user_id: String,
    /// The capturing scanner.
    hardware_id: String,
    /// The palm presented.
    palm_type: PalmType,
    /// The decision.
    matched: bool,
    /// `match` or `no_match`.
    result: String,
    /// Ten per-block similarities.
    scores: Vec<f64>,
    /// Ten per-block thresholds in force.
    thresholds: Vec<f64>,
    /// Policy in force.
    match_policy: String,
    /// Decision latency.
    latency_ms: u64,
    /// Extractor vendor.
    vendor: String,
    /// RFC 3339.
    verified_at: String,
    /// Each capture's palm, quality and liveness.
    captures: Option<Vec<CaptureReport>>,
    /// The integrator's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// One candidate of an identification.
#[derive(ToSchema)]
pub(crate) struct Candidate {
    /// Internal user id.
    user_id: Uuid,
    /// The tenant's user id.
    external_user_id: String,
    /// The candidate's palm.
    palm_type: PalmType,
    /// Mean block similarity.
    confidence: f64,
    /// Ten per-block similarities.
    scores: Vec<f64>,
    /// Whether it passes the tenant's policy.
    matched: bool,
}

/// How an identification searched.
#[derive(ToSchema)]
pub(crate) struct SearchReport {
    /// `exact` or `ann`.
    mode: String,
    /// Templates searched.
    gallery_size: u64,
    /// Search latency.
    latency_ms: u64,
}

/// An identification's result (`identification.complete`).
#[derive(ToSchema)]
pub(crate) struct IdentificationResult {
    /// Challenge id.
    challenge_id: Uuid,
    /// The capturing scanner.
    hardware_id: String,
    /// The palm presented.
    palm_type: PalmType,
    /// Whether any candidate matched.
    matched: bool,
    /// Best first.
    candidates: Vec<Candidate>,
    /// How it searched.
    search: SearchReport,
    /// Extractor vendor.
    vendor: String,
    /// RFC 3339.
    identified_at: String,
    /// Each capture's palm, quality and liveness.
    captures: Option<Vec<CaptureReport>>,
    /// The integrator's metadata.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// One palm.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PalmType {
    /// Left palm.
    Left,
    /// Right palm.
    Right,
}

/// A challenge's palm.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ChallengePalm {
    /// Left palm.
    Left,
    /// Right palm.
    Right,
    /// Both palms (enrollment).
    Both,
    /// Either palm.
    Any,
}
