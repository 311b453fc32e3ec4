//! The duplicate-identity check of enrollments: another user's matching palm is flagged
//! (default) or refused, the user's own other palm is not a duplicate, and `off` searches
//! nothing.

use serde_json::{json, Value};

use super::{events_of, scored, set_trust, subscribe};
use crate::support::receiver::Receiver;
use crate::support::{palm, recapture, Blocks, Harness, Scanner, Tenant};
use crate::webhooks::subscriptions::dev_harness;

/// Enrolls `palm_type` of `user` with `blocks`; returns the challenge as the capture left it.
async fn enroll(
    h: &Harness,
    t: &Tenant,
    s: &Scanner,
    user: &str,
    palm_type: &str,
    blocks: &Blocks,
) -> Value {
    let id = h
        .challenge(
            t,
            "/v1/enroll",
            json!({"external_user_id": user, "hardware_id": s.hardware_id, "palm_type": palm_type}),
        )
        .await;
    let r = h
        .capture(
            s,
            &id,
            json!([scored(palm_type, blocks, Some(0.9), Some(0.99))]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].clone()
}

fn names(duplicates: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = duplicates
        .as_array()
        .expect("a list")
        .iter()
        .map(|d| {
            assert!(d["confidence"].as_f64().expect("confidence") > 0.5);
            (
                d["external_user_id"].as_str().unwrap().to_owned(),
                d["palm_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn another_users_palm_is_flagged_then_rejected_and_ones_own_palm_is_not() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    subscribe(&h, &t, &rx, &["enrollment.complete", "challenge.failed"]).await;
    let s = h.scanner(&t, "hw-dup").await;
    let alice = palm(41);

    let first = enroll(&h, &t, &s, "alice", "right", &alice).await;
    assert_eq!(first["result"]["duplicates"], json!([]));
    // Alice's second palm matches her first (the same hand presented twice): her own palm
    // is not a duplicate.
    let own = enroll(&h, &t, &s, "alice", "left", &recapture(&alice, 1, 0.2)).await;
    assert_eq!(own["status"], "completed", "{own}");
    assert_eq!(own["result"]["duplicates"], json!([]));

    // The same hand under another name: flagged (the default), enrolled, reported.
    let mallory = enroll(&h, &t, &s, "mallory", "right", &recapture(&alice, 2, 0.2)).await;
    assert_eq!(mallory["status"], "completed", "{mallory}");
    let both = vec![
        ("alice".to_owned(), "left".to_owned()),
        ("alice".to_owned(), "right".to_owned()),
    ];
    assert_eq!(names(&mallory["result"]["duplicates"]), both);
    let enrolled = events_of(&rx, "enrollment.complete", 3).await;
    let event = enrolled
        .iter()
        .find(|e| e["data"]["external_user_id"] == "mallory")
        .expect("mallory's event");
    assert_eq!(names(&event["data"]["duplicates"]), both);
    // An unrelated person is no duplicate of anyone.
    let bob = enroll(&h, &t, &s, "bob", "right", &palm(43)).await;
    assert_eq!(bob["result"]["duplicates"], json!([]));

    // Under `reject` the enrollment fails and nothing is stored.
    set_trust(&h, &t, json!({"duplicate_check": "reject"})).await;
    let trudy = enroll(&h, &t, &s, "trudy", "left", &recapture(&alice, 3, 0.2)).await;
    assert_eq!(trudy["status"], "failed", "{trudy}");
    assert_eq!(trudy["failure_reason"], "duplicate");
    let mut expected = both.clone();
    expected.push(("mallory".to_owned(), "right".to_owned()));
    expected.sort();
    assert_eq!(names(&trudy["result"]["duplicates"]), expected);
    assert_eq!(h.get("/v1/users/trudy", &t.token).await.status, 404);
    let failed = events_of(&rx, "challenge.failed", 1).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["failure_reason"], "duplicate");
    assert_eq!(names(&failed[0]["data"]["duplicates"]), expected);
    // A new person still enrolls under `reject`.
    let carol = enroll(&h, &t, &s, "carol", "right", &palm(44)).await;
    assert_eq!(carol["status"], "completed", "{carol}");

    // `off` does not search.
    set_trust(&h, &t, json!({"duplicate_check": "off"})).await;
    let eve = enroll(&h, &t, &s, "eve", "right", &recapture(&alice, 4, 0.2)).await;
    assert_eq!(eve["status"], "completed", "{eve}");
    assert_eq!(eve["result"]["duplicates"], json!([]));
    assert_eq!(h.get("/v1/users", &t.token).await.body["total"], 5);
}
