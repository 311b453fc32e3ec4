//! Events for webhook delivery, written into the outbox with the state change that causes
//! them (see [`crate::store::OutboxEvent`]).

use serde_json::{json, Value};
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::store::OutboxEvent;

/// `device.paired`.
pub(crate) const DEVICE_PAIRED: &str = "device.paired";
/// `enrollment.complete`.
pub(crate) const ENROLLMENT_COMPLETE: &str = "enrollment.complete";
/// `verification.complete`.
pub(crate) const VERIFICATION_COMPLETE: &str = "verification.complete";
/// `identification.complete`.
pub(crate) const IDENTIFICATION_COMPLETE: &str = "identification.complete";

/// A new event id: `evt_` and 32 hex digits.
pub(crate) fn new_event_id() -> String {
    // A UUIDv7 (48 bits of time, 74 random): time-ordered, so new events land at the end of
    // the id index instead of on a random page of it.
    format!("evt_{}", Uuid::now_v7().simple())
}

/// Builds an event whose payload is the delivery body.
pub(crate) fn event(tenant_id: Uuid, event_type: &str, data: Value, now: i64) -> OutboxEvent {
    let event_id = new_event_id();
    let payload = json!({
        "event_id": event_id,
        "event_type": event_type,
        "tenant_id": tenant_id.to_string(),
        "timestamp": rfc3339(now),
        "data": data,
    });
    OutboxEvent {
        event_id,
        tenant_id,
        event_type: event_type.to_owned(),
        payload,
        occurred_at: now,
        dispatched_at: None,
    }
}
