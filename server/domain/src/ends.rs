//! How challenges end without a decision: the `challenge.failed` event every failed,
//! cancelled or expired challenge fires, whichever path ended it (a capture, the scanner, a
//! revocation, the sweeper or a read that found it expired).

use palmlink_store::{
    Actor, AuditRecord, Challenge, ChallengeKind, ChallengeStatus, EndRecord, FailureReason,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::audit::record;
use crate::clock::rfc3339;
use crate::events::{outbox_event, CHALLENGE_FAILED};

/// `challenge.failed`: a challenge ended `failed`, `cancelled` or `expired`.
#[derive(Clone, Debug, Serialize)]
pub struct ChallengeFailed {
    /// The challenge.
    pub challenge_id: Uuid,
    /// `enroll`, `verify` or `identify`.
    #[serde(rename = "type")]
    pub kind: ChallengeKind,
    /// `failed`, `cancelled` or `expired`.
    pub status: ChallengeStatus,
    /// Why.
    pub failure_reason: Option<FailureReason>,
    /// The scanner it was addressed to.
    pub hardware_id: String,
    /// The person it concerned (enroll, verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    /// The quality and liveness of the captures, when it failed on a capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captures: Option<Value>,
    /// Other users' palms the enrolled palm matched (`duplicate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<Value>,
    /// When it ended (RFC 3339).
    pub failed_at: String,
    /// The challenge's metadata.
    pub metadata: Value,
}

impl ChallengeFailed {
    /// The data of a challenge as it ended (status, reason and end time set).
    pub fn of(c: &Challenge) -> ChallengeFailed {
        ChallengeFailed {
            challenge_id: c.id,
            kind: c.kind,
            status: c.status,
            failure_reason: c.failure_reason,
            hardware_id: c.hardware_id.clone(),
            external_user_id: c.external_user_id.clone(),
            captures: c.captures.clone(),
            duplicates: None,
            failed_at: rfc3339(c.finished_at.unwrap_or(c.created_at)),
            metadata: c.metadata.clone(),
        }
    }
}

/// The audit entry of a challenge that ended without a decision: `enrollment.failed` for an
/// enrollment its capture failed, `challenge.failed` otherwise.
pub fn failed_audit(c: &Challenge, data: &ChallengeFailed, actor: Actor) -> AuditRecord {
    let action = match (c.kind, &data.captures) {
        (ChallengeKind::Enroll, Some(_)) => "enrollment.failed",
        _ => "challenge.failed",
    };
    let details = serde_json::json!({
        "type": c.kind,
        "status": c.status,
        "failure_reason": c.failure_reason,
        "hardware_id": c.hardware_id,
        "external_user_id": c.external_user_id,
        "captures": data.captures,
        "duplicates": data.duplicates,
    });
    record(
        c.tenant_id,
        c.finished_at.unwrap_or(c.created_at),
        actor,
        action,
        ("challenge", c.id.to_string()),
        c.status.as_str(),
        details,
    )
}

/// The event and audit entry of a challenge the store ended by itself, by `actor`.
pub fn end_record(c: &Challenge, actor: Actor) -> EndRecord {
    let at = c.finished_at.unwrap_or(c.created_at);
    let data = ChallengeFailed::of(c);
    EndRecord {
        event: outbox_event(c.tenant_id, CHALLENGE_FAILED, &data, at),
        audit: failed_audit(c, &data, actor),
    }
}

/// The records of a challenge the service expired by itself.
pub fn expired_record(c: &Challenge) -> EndRecord {
    end_record(c, Actor::system())
}
