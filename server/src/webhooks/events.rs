//! Event keys a subscription may ask for.

/// Canonical event keys that deliveries carry.
pub(crate) const EVENT_TYPES: &[&str] = &[
    "device.paired",
    "enrollment.complete",
    "verification.complete",
    "identification.complete",
];

/// The key of a test ping (`POST /v1/webhooks/{id}/test`); always delivered, never subscribed.
pub(crate) const TEST_EVENT: &str = "webhook.test";

/// The canonical key of an accepted key or alias (`user.enrolled`, `user.verified`).
pub(crate) fn canonical(key: &str) -> Option<&'static str> {
    match key {
        "user.enrolled" => Some("enrollment.complete"),
        "user.verified" => Some("verification.complete"),
        other => EVENT_TYPES.iter().copied().find(|k| *k == other),
    }
}

/// Resolves a list of keys: canonical, deduplicated, in the order given. `Err` names the
/// first unknown key; an empty list is refused.
pub(crate) fn resolve(keys: &[String]) -> Result<Vec<String>, String> {
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
