//! JSON shapes of the resources, as the contract names their fields.

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::store::{Challenge, Device, Palm, User};

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

/// A user with its enrolled palms.
pub(crate) fn user(u: &User, palms: &[Palm]) -> Value {
    json!({
        "user_id": u.id,
        "external_user_id": u.external_user_id,
        "created_at": rfc3339(u.created_at),
        "palms": palms.iter().map(|p| json!({
            "feature_id": p.feature_id,
            "palm_type": p.palm_type,
            "enrolled_at": rfc3339(p.enrolled_at),
            "vendor": p.vendor,
        })).collect::<Vec<_>>(),
    })
}
