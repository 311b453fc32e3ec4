//! JSON shapes of the resources, as the contract names their fields.

use palmlink_domain::{
    rfc3339, DeliveryLog, EnrolledUser, Listing, PairedDevice, RegisteredDevice, TenantSettings,
};
use palmlink_store::{Attempt, Challenge, DeliveryStatus, Device, Subscription};
use serde_json::{json, Value};

/// The list envelope: `{success, data, total, offset, limit}`.
pub(crate) fn listing<T>(listing: &Listing<T>, view: impl Fn(&T) -> Value) -> Value {
    json!({
        "success": true,
        "data": listing.rows.iter().map(view).collect::<Vec<_>>(),
        "total": listing.total,
        "offset": listing.page.offset,
        "limit": listing.page.limit,
    })
}

/// A device record.
pub(crate) fn device(d: &Device) -> Value {
    json!({
        "device_id": d.id,
        "device_name": d.device_name,
        "location": d.location,
        "status": d.status,
        "hardware_id": d.hardware_id,
        "created_at": rfc3339(d.created_at),
        "paired_at": d.paired_at.map(rfc3339),
        "cert_valid_until": d.cert_valid_until.map(rfc3339),
        "last_seen_at": d.last_seen_at.map(rfc3339),
    })
}

/// A registered device with its pairing code.
pub(crate) fn registered(r: &RegisteredDevice) -> Value {
    let mut v = device(&r.device);
    v["pairing_code"] = json!(r.pairing_code);
    v["expires_in"] = json!(r.expires_in);
    v
}

/// A freshly issued pairing code.
pub(crate) fn pairing_code(r: &RegisteredDevice) -> Value {
    json!({
        "device_id": r.device.id,
        "pairing_code": r.pairing_code,
        "expires_in": r.expires_in,
        "status": r.device.status,
    })
}

/// A paired scanner with its credential.
pub(crate) fn paired(p: &PairedDevice) -> Value {
    let mut v = json!(p.paired);
    v["device_secret"] = json!(p.device_secret);
    v
}

/// A challenge as the integrator sees it.
pub(crate) fn challenge(c: &Challenge) -> Value {
    let mut v = json!({
        "challenge_id": c.id,
        "type": c.kind,
        "hardware_id": c.hardware_id,
        "device_id": c.device_id,
        "palm_type": c.palm_type,
        "status": c.status,
        "created_at": rfc3339(c.created_at),
        "expires_at": rfc3339(c.expires_at),
        "metadata": c.metadata,
    });
    if let Some(ext) = &c.external_user_id {
        v["external_user_id"] = json!(ext);
    }
    if let Some(k) = c.top_k {
        v["top_k"] = json!(k);
    }
    if let Some(at) = c.finished_at {
        v["finished_at"] = json!(rfc3339(at));
    }
    if let Some(reason) = &c.failure_reason {
        v["failure_reason"] = json!(reason);
    }
    if let Some(captures) = &c.captures {
        v["captures"] = captures.clone();
    }
    if let Some(result) = &c.result {
        v["result"] = result.clone();
    }
    v
}

/// A challenge as a scanner sees it when polling: with the person it concerns and its
/// metadata, which a scanner may show (and the simulated scanner follows).
pub(crate) fn scanner_challenge(c: &Challenge) -> Value {
    let mut v = json!({
        "challenge_id": c.id,
        "type": c.kind,
        "palm_type": c.palm_type,
        "expires_at": rfc3339(c.expires_at),
        "metadata": c.metadata,
    });
    if let Some(ext) = &c.external_user_id {
        v["external_user_id"] = json!(ext);
    }
    if let Some(k) = c.top_k {
        v["top_k"] = json!(k);
    }
    v
}

/// A user with their enrolled palms.
pub(crate) fn user(u: &EnrolledUser) -> Value {
    json!({
        "user_id": u.user.id,
        "external_user_id": u.user.external_user_id,
        "created_at": rfc3339(u.user.created_at),
        "palms": u.palms.iter().map(|p| json!({
            "feature_id": p.feature_id,
            "palm_type": p.palm_type,
            "enrolled_at": rfc3339(p.enrolled_at),
            "vendor": p.vendor,
        })).collect::<Vec<_>>(),
    })
}

/// Matching settings with the trust policy.
pub(crate) fn settings(s: &TenantSettings) -> Value {
    json!({
        "thresholds": s.matching.thresholds.iter().map(|t| f64::from(*t)).collect::<Vec<_>>(),
        "match_policy": s.matching.policy.as_str(),
        "k": s.matching.policy.k(),
        "min_quality": s.trust.min_quality,
        "min_liveness": s.trust.min_liveness,
        "duplicate_check": s.trust.duplicate_check,
        "retention_days": s.trust.retention_days,
    })
}

/// A webhook subscription (never its secrets).
pub(crate) fn webhook(h: &Subscription, now: i64) -> Value {
    json!({
        "webhook_id": h.id,
        "name": h.name,
        "events": h.events,
        "endpoint": h.endpoint,
        "api_key_set": h.api_key.is_some(),
        "active": h.active,
        "disabled_reason": h.disabled_reason,
        "failing_since": h.failing_since.map(rfc3339),
        "previous_secret_expires_at": h.old_secret_expires_at.filter(|t| *t > now).map(rfc3339),
        "created_at": rfc3339(h.created_at),
        "updated_at": rfc3339(h.updated_at),
    })
}

fn attempt(a: &Attempt) -> Value {
    json!({
        "attempt": a.attempt,
        "attempted_at": rfc3339(a.attempted_at),
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "error": a.error,
    })
}

/// A delivery with its attempt log.
pub(crate) fn delivery(log: &DeliveryLog) -> Value {
    let d = &log.delivery;
    json!({
        "delivery_id": format!("del_{}", d.id),
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "delivered_at": d.delivered_at.map(rfc3339),
        "attempt_log": log.attempts.iter().map(attempt).collect::<Vec<_>>(),
    })
}
