//! Minimum quality and liveness: a capture below either fails its challenge, enrolls and
//! matches nothing, and fires `challenge.failed`; a capture at the minimum goes through and
//! its quality and liveness travel with the result.

use serde_json::json;

use super::{events_of, scored, set_trust, subscribe};
use crate::support::receiver::{verify, Receiver};
use crate::support::{palm, recapture};
use crate::webhooks::subscriptions::dev_harness;

#[tokio::test]
async fn a_spoofed_capture_fails_with_liveness_enrolls_nothing_and_fires_challenge_failed() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    let secret = subscribe(&h, &t, &rx, &["challenge.failed", "enrollment.complete"]).await;
    let settings = set_trust(&h, &t, json!({"min_liveness": 0.8})).await;
    assert_eq!(settings["min_liveness"], 0.8);
    assert_eq!(settings["min_quality"], 0.0);
    assert_eq!(settings["duplicate_check"], "flag");
    let s = h.scanner(&t, "hw-trust").await;
    let mallory = palm(31);

    let spoof = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "mallory", "hardware_id": "hw-trust",
                   "palm_type": "right", "metadata": {"door": 7}}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &spoof,
            json!([scored("right", &mallory, Some(0.93), Some(0.01))]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let failed = &r.body["data"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_reason"], "liveness");
    assert_eq!(
        failed["captures"],
        json!([{"palm_type": "right", "quality": 0.93, "liveness": 0.01}])
    );
    // A capture that does not say its liveness is no proof of life either.
    let silent = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "mallory", "hardware_id": "hw-trust", "palm_type": "right"}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &silent,
            json!([scored("right", &mallory, Some(0.93), None)]),
        )
        .await;
    assert_eq!(r.body["data"]["failure_reason"], "liveness", "{}", r.body);

    // Nothing was enrolled.
    assert_eq!(h.get("/v1/users/mallory", &t.token).await.status, 404);
    assert_eq!(h.get("/v1/users", &t.token).await.body["total"], 0);
    let read = h.get(&format!("/v1/challenges/{spoof}"), &t.token).await;
    assert_eq!(read.body["data"]["failure_reason"], "liveness");
    assert_eq!(read.body["data"]["captures"][0]["liveness"], 0.01);

    let fired = events_of(&rx, "challenge.failed", 2).await;
    assert_eq!(fired.len(), 2, "one event per failed challenge");
    let first = fired
        .iter()
        .find(|e| e["data"]["challenge_id"] == spoof.as_str())
        .expect("the spoof's event");
    let data = &first["data"];
    assert_eq!(data["type"], "enroll");
    assert_eq!(data["status"], "failed");
    assert_eq!(data["failure_reason"], "liveness");
    assert_eq!(data["hardware_id"], "hw-trust");
    assert_eq!(data["external_user_id"], "mallory");
    assert_eq!(data["metadata"], json!({"door": 7}));
    assert_eq!(data["captures"][0]["liveness"], 0.01);
    assert_eq!(first["tenant_id"], t.id.as_str());
    assert!(rx
        .seen()
        .iter()
        .all(|r| r.json()["event_type"] != "enrollment.complete"));

    // A live capture at the minimum enrolls, and says how live it was.
    let live = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "mallory", "hardware_id": "hw-trust", "palm_type": "right"}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &live,
            json!([scored("right", &mallory, None, Some(0.8))]),
        )
        .await;
    assert_eq!(r.body["data"]["status"], "completed", "{}", r.body);
    let captures = json!([{"palm_type": "right", "quality": null, "liveness": 0.8}]);
    assert_eq!(r.body["data"]["result"]["captures"], captures);
    assert_eq!(r.body["data"]["captures"], captures);
    let enrolled = events_of(&rx, "enrollment.complete", 1).await;
    assert_eq!(enrolled[0]["data"]["captures"], captures);
    assert!(
        rx.seen().iter().all(|r| verify(&secret, r)),
        "every delivery is signed"
    );

    // A spoof presented to verify the enrolled user matches nothing.
    let v = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "mallory", "hardware_id": "hw-trust"}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &v,
            json!([scored(
                "right",
                &recapture(&mallory, 1, 0.1),
                Some(0.9),
                Some(0.2)
            )]),
        )
        .await;
    assert_eq!(r.body["data"]["status"], "failed", "{}", r.body);
    assert_eq!(r.body["data"]["failure_reason"], "liveness");
    assert!(r.body["data"]["result"]["matched"].is_null());
    let fired = events_of(&rx, "challenge.failed", 3).await;
    assert_eq!(fired.len(), 3);
}

#[tokio::test]
async fn a_low_quality_capture_fails_with_quality_and_enrolls_nothing() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    subscribe(&h, &t, &rx, &["challenge.failed"]).await;
    set_trust(&h, &t, json!({"min_quality": 0.5})).await;
    let s = h.scanner(&t, "hw-q").await;
    let blurry = palm(32);
    let both = h
        .challenge(
            &t,
            "/v1/enroll/both",
            json!({"external_user_id": "bob", "hardware_id": "hw-q"}),
        )
        .await;
    // One good capture and one poor: the challenge fails, neither palm is enrolled.
    let r = h
        .capture(
            &s,
            &both,
            json!([
                scored("left", &palm(33), Some(0.9), Some(0.99)),
                scored("right", &blurry, Some(0.2), Some(0.99)),
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["status"], "failed");
    assert_eq!(r.body["data"]["failure_reason"], "quality");
    assert_eq!(h.get("/v1/users/bob", &t.token).await.status, 404);
    let fired = events_of(&rx, "challenge.failed", 1).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["data"]["failure_reason"], "quality");
    assert_eq!(fired[0]["data"]["challenge_id"], both.as_str());
    assert_eq!(fired[0]["data"]["captures"][1]["quality"], 0.2);

    // Out-of-range minimums are refused, and the settings stay as they were.
    let bad = h
        .call(
            reqwest::Method::PUT,
            "/v1/settings/matching",
            Some(&t.token),
            Some(
                json!({"thresholds": vec![0.7; 10], "match_policy": "all_thresholds",
                        "min_quality": 1.5, "duplicate_check": "sometimes"}),
            ),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let now = h.get("/v1/settings/matching", &t.token).await;
    assert_eq!(now.body["data"]["min_quality"], 0.5);
}
