//! What a completed challenge reports: the `data` of its event, also kept as its `result`.

use std::collections::BTreeMap;

use palmlink_store::{ChallengePalm, PalmType};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// `enrollment.complete`.
#[derive(Clone, Debug, Serialize)]
pub struct EnrollmentComplete {
    /// Internal id of the user.
    pub user_id: Uuid,
    /// The tenant's id of the user.
    pub external_user_id: String,
    /// The enrolled feature, when one palm was enrolled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_id: Option<Uuid>,
    /// The enrolled features by palm, when both were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_ids: Option<BTreeMap<PalmType, Uuid>>,
    /// `left`, `right` or `both`.
    pub palm_type: ChallengePalm,
    /// The scanner that captured.
    pub hardware_id: String,
    /// The challenge.
    pub challenge_id: Uuid,
    /// Enrollment time (RFC 3339).
    pub enrolled_at: String,
    /// Capture vendor.
    pub vendor: String,
    /// Each capture's quality and liveness.
    pub captures: Value,
    /// Other users' palms the enrolled one matches (empty when none, or when the check is
    /// off).
    pub duplicates: Vec<super::Duplicate>,
    /// The challenge's metadata.
    pub metadata: Value,
}

/// `verification.complete`.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationComplete {
    /// The challenge.
    pub challenge_id: Uuid,
    /// Internal id of the user.
    pub user_id: Uuid,
    /// The tenant's id of the user.
    pub external_user_id: String,
    /// The scanner that captured.
    pub hardware_id: String,
    /// The palm whose comparison decided.
    pub palm_type: PalmType,
    /// The decision.
    pub matched: bool,
    /// `match` or `no_match` (the guide's alias of `matched`).
    pub result: &'static str,
    /// The per-block similarities.
    pub scores: Vec<f64>,
    /// The per-block thresholds applied.
    pub thresholds: Vec<f64>,
    /// The policy applied.
    pub match_policy: &'static str,
    /// Time from receiving the capture to the decision.
    pub latency_ms: u64,
    /// Capture vendor.
    pub vendor: String,
    /// Decision time (RFC 3339).
    pub verified_at: String,
    /// Each capture's quality and liveness.
    pub captures: Value,
    /// The challenge's metadata.
    pub metadata: Value,
}

/// One candidate of an identification.
#[derive(Clone, Debug, Serialize)]
pub struct IdentifiedCandidate {
    /// Internal id of the user.
    pub user_id: Uuid,
    /// The tenant's id of the user.
    pub external_user_id: String,
    /// Which palm of theirs.
    pub palm_type: PalmType,
    /// The mean block similarity (the ranking key).
    pub confidence: f64,
    /// The per-block similarities.
    pub scores: Vec<f64>,
    /// Whether the candidate passes the tenant's decision.
    pub matched: bool,
}

/// How an identification searched.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    /// `exact` when every candidate listed is one an exhaustive search lists, `ann`
    /// otherwise.
    pub mode: &'static str,
    /// Templates in the gallery when it ran.
    pub gallery_size: usize,
    /// Time from receiving the capture to the end of the search.
    pub latency_ms: u64,
}

/// `identification.complete`.
#[derive(Clone, Debug, Serialize)]
pub struct IdentificationComplete {
    /// The challenge.
    pub challenge_id: Uuid,
    /// The scanner that captured.
    pub hardware_id: String,
    /// The palm presented.
    pub palm_type: PalmType,
    /// Whether any candidate passes the decision.
    pub matched: bool,
    /// Candidates, best first.
    pub candidates: Vec<IdentifiedCandidate>,
    /// How it searched.
    pub search: SearchReport,
    /// Capture vendor.
    pub vendor: String,
    /// Decision time (RFC 3339).
    pub identified_at: String,
    /// Each capture's quality and liveness.
    pub captures: Value,
    /// The challenge's metadata.
    pub metadata: Value,
}
