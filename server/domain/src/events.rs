//! Events: what the outbox carries to webhooks, their keys and the aliases subscriptions may
//! use. An event is written in the transaction of the change it reports.

use palmlink_store::OutboxEvent;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::clock::rfc3339;

/// `device.paired`.
pub const DEVICE_PAIRED: &str = "device.paired";
/// `enrollment.complete`.
pub const ENROLLMENT_COMPLETE: &str = "enrollment.complete";
/// `verification.complete`.
pub const VERIFICATION_COMPLETE: &str = "verification.complete";
/// `identification.complete`.
pub const IDENTIFICATION_COMPLETE: &str = "identification.complete";
/// `challenge.failed`: a challenge ended failed, cancelled or expired.
pub const CHALLENGE_FAILED: &str = "challenge.failed";

/// A new event id: `evt_` and 32 hex digits.
pub fn new_event_id() -> String {
    // A UUIDv7 (48 bits of time, 74 random): time-ordered, so new events land at the end of
    // the id index instead of on a random page of it.
    format!("evt_{}", Uuid::now_v7().simple())
}

/// The delivery body of an event: `event_id`, `event_type`, `tenant_id`, `timestamp`, `data`.
pub fn body(event_id: &str, tenant_id: Uuid, event_type: &str, data: Value, now: i64) -> Value {
    json!({
        "event_id": event_id,
        "event_type": event_type,
        "tenant_id": tenant_id.to_string(),
        "timestamp": rfc3339(now),
        "data": data,
    })
}

/// An outbox event of `event_type` carrying `data`.
pub fn outbox_event(
    tenant_id: Uuid,
    event_type: &str,
    data: &impl Serialize,
    now: i64,
) -> OutboxEvent {
    let event_id = new_event_id();
    let data = serde_json::to_value(data).unwrap_or(Value::Null);
    OutboxEvent {
        payload: body(&event_id, tenant_id, event_type, data, now),
        event_id,
        tenant_id,
        event_type: event_type.to_owned(),
        occurred_at: now,
        dispatched_at: None,
    }
}

/// Rings when events were written, so that the delivery worker looks at once rather than
/// at its next poll (a ring that is missed only delays).
#[derive(Debug, Default)]
pub struct OutboxBell(tokio::sync::Notify);

impl OutboxBell {
    /// Wakes the worker (at most one wake-up is kept while it is busy).
    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Waits for the next ring.
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// Canonical event keys that deliveries carry.
pub const EVENT_TYPES: &[&str] = &[
    DEVICE_PAIRED,
    ENROLLMENT_COMPLETE,
    VERIFICATION_COMPLETE,
    IDENTIFICATION_COMPLETE,
    CHALLENGE_FAILED,
];

/// The key of a test ping (`POST /v1/webhooks/{id}/test`); always delivered, never subscribed.
pub const TEST_EVENT: &str = "webhook.test";

/// The canonical key of an accepted key or alias (`user.enrolled`, `user.verified`).
pub fn canonical(key: &str) -> Option<&'static str> {
    match key {
        "user.enrolled" => Some(ENROLLMENT_COMPLETE),
        "user.verified" => Some(VERIFICATION_COMPLETE),
        other => EVENT_TYPES.iter().copied().find(|k| *k == other),
    }
}

/// Resolves a list of keys: canonical, deduplicated, in the order given. `Err` names the
/// first unknown key; an empty list is refused.
pub fn resolve(keys: &[String]) -> Result<Vec<String>, String> {
    if keys.is_empty() {
        return Err("events must list at least one event key".to_owned());
    }
    let mut out: Vec<String> = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(c) = canonical(key) else {
            return Err(format!(
                "unknown event key `{key}` (known: {}, user.enrolled, user.verified)",
                EVENT_TYPES.join(", ")
            ));
        };
        if !out.iter().any(|e| e == c) {
            out.push(c.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_and_duplicates_collapse() {
        let keys: Vec<String> = [
            "user.enrolled",
            "enrollment.complete",
            "user.verified",
            "device.paired",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resolve(&keys).unwrap(),
            vec![
                "enrollment.complete",
                "verification.complete",
                "device.paired"
            ]
        );
    }

    #[test]
    fn unknown_and_empty_are_refused() {
        assert!(resolve(&[]).is_err());
        assert!(resolve(&["user.deleted".to_owned()]).is_err());
        assert!(resolve(&[TEST_EVENT.to_owned()]).is_err());
    }
}
