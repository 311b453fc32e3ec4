//! The demo's decisions: enrollments, verifications and identifications of its users and
//! of a stranger, each checked against what must happen.

use serde_json::{json, Value};

use super::Demo;

/// One enrolled demo user: external id, palms, population identity.
struct DemoUser {
    id: &'static str,
    palms: &'static str,
    identity: u64,
}

const USERS: [DemoUser; 3] = [
    DemoUser {
        id: "alice",
        palms: "right",
        identity: 11,
    },
    DemoUser {
        id: "bob",
        palms: "left",
        identity: 23,
    },
    DemoUser {
        id: "carol",
        palms: "both",
        identity: 37,
    },
];
/// A person who never enrolled.
const STRANGER: u64 = 404;

/// Enrollments, verifications and identifications, each checked against what must happen.
pub(super) async fn decisions(demo: &mut Demo, hardware_id: &str) -> anyhow::Result<()> {
    for user in &USERS {
        let (path, mut body) = if user.palms == "both" {
            (
                "/v1/enroll/both",
                json!({"external_user_id": user.id, "hardware_id": hardware_id}),
            )
        } else {
            (
                "/v1/enroll",
                json!({"external_user_id": user.id, "hardware_id": hardware_id, "palm_type": user.palms}),
            )
        };
        body["metadata"] = json!({"sim_identity": user.identity});
        let name = format!(
            "enrolled {} ({} palm{})",
            user.id,
            user.palms,
            if user.palms == "both" { "s" } else { "" }
        );
        match demo.challenge(path, body, "enrollment.complete").await {
            Ok((_, data, latency)) => {
                let features = if user.palms == "both" {
                    data["feature_ids"].as_object().map_or(0, |m| m.len())
                } else {
                    usize::from(data["feature_id"].is_string())
                };
                let expected = if user.palms == "both" { 2 } else { 1 };
                let ok = data["external_user_id"] == user.id && features == expected;
                demo.out.step(
                    &name,
                    ok,
                    Some(latency),
                    &format!("{features} template(s) stored"),
                    data,
                );
            }
            Err(e) => demo
                .out
                .step(&name, false, None, &format!("{e:#}"), Value::Null),
        }
    }

    // (step, claimed user, palm asked, presented identity, expected decision)
    let verifications: [(&str, &str, Option<&str>, u64, bool); 3] = [
        (
            "genuine verification: alice presents her own palm",
            "alice",
            None,
            11,
            true,
        ),
        (
            "impostor verification: a stranger claims to be bob",
            "bob",
            None,
            STRANGER,
            false,
        ),
        (
            "second palm: carol verifies with her left palm",
            "carol",
            Some("left"),
            37,
            true,
        ),
    ];
    for (name, user, palm, identity, expected) in verifications {
        let mut body = json!({"external_user_id": user, "hardware_id": hardware_id, "metadata": {"sim_identity": identity}});
        if let Some(palm) = palm {
            body["palm_type"] = json!(palm);
        }
        match demo
            .challenge("/v1/verify", body, "verification.complete")
            .await
        {
            Ok((_, data, latency)) => {
                let matched = data["matched"].as_bool();
                let mean = data["scores"]
                    .as_array()
                    .map(|s| {
                        s.iter().filter_map(Value::as_f64).sum::<f64>() / s.len().max(1) as f64
                    })
                    .unwrap_or(f64::NAN);
                let detail = format!(
                    "{} (expected {}), mean block score {mean:.3}",
                    if matched == Some(true) {
                        "match"
                    } else {
                        "no match"
                    },
                    if expected { "match" } else { "no match" }
                );
                demo.out.step(
                    name,
                    matched == Some(expected),
                    Some(latency),
                    &detail,
                    data,
                );
            }
            Err(e) => demo
                .out
                .step(name, false, None, &format!("{e:#}"), Value::Null),
        }
    }

    // (step, presented identity, palm, expected best match)
    let identifications: [(&str, u64, &str, Option<&str>); 2] = [
        (
            "identification: carol presents her right palm",
            37,
            "right",
            Some("carol"),
        ),
        (
            "identification: a stranger is not found",
            STRANGER,
            "right",
            None,
        ),
    ];
    for (name, identity, palm, expected) in identifications {
        let body = json!({"hardware_id": hardware_id, "top_k": 3, "metadata": {"sim_identity": identity, "sim_palm": palm}});
        match demo
            .challenge("/v1/identify", body, "identification.complete")
            .await
        {
            Ok((_, data, latency)) => {
                let best = data["candidates"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["matched"] == true))
                    .and_then(|c| c["external_user_id"].as_str())
                    .map(str::to_owned);
                let top = &data["candidates"][0];
                let ok = match expected {
                    Some(user) => {
                        data["matched"] == true
                            && top["external_user_id"] == user
                            && top["matched"] == true
                    }
                    None => data["matched"] == false && best.is_none(),
                };
                let detail = format!(
                    "found {} (expected {}), best candidate {} with confidence {:.3}, {} search over {} templates",
                    best.as_deref().unwrap_or("no one"),
                    expected.unwrap_or("no one"),
                    top["external_user_id"].as_str().unwrap_or("-"),
                    top["confidence"].as_f64().unwrap_or(f64::NAN),
                    data["search"]["mode"].as_str().unwrap_or("?"),
                    data["search"]["gallery_size"]
                );
                demo.out.step(name, ok, Some(latency), &detail, data);
            }
            Err(e) => demo
                .out
                .step(name, false, None, &format!("{e:#}"), Value::Null),
        }
    }
    Ok(())
}
