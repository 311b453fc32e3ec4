//! `challenge.failed` for every end of a challenge without a decision: cancelled by the
//! scanner, failed by a revocation, expired by the sweeper.

use std::time::Duration;

use serde_json::json;

use super::{events_of, subscribe};
use crate::support::receiver::Receiver;
use crate::support::Harness;

#[tokio::test]
async fn cancelled_revoked_and_expired_challenges_fire_challenge_failed() {
    let h = Harness::start_with(|c| {
        c.allow_http_webhooks = true;
        c.webhooks.poll_interval = Duration::from_millis(300);
        c.challenge_ttl = Duration::from_secs(1);
        c.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    subscribe(&h, &t, &rx, &["challenge.failed"]).await;
    let s = h.scanner(&t, "hw-ends").await;
    let doomed = h.scanner(&t, "hw-doomed").await;

    let cancelled = h
        .challenge(
            &t,
            "/v1/identify",
            json!({"hardware_id": "hw-ends", "metadata": {"k": 1}}),
        )
        .await;
    let r = h
        .post(
            &format!("/v1/device/challenges/{cancelled}/cancel"),
            &s.secret,
            json!({"reason": "user_cancelled"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let revoked = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "carol", "hardware_id": "hw-doomed", "palm_type": "left"}),
        )
        .await;
    let r = h
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/devices/{}", doomed.device_id),
            Some(&t.token),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    // Left alone: the sweeper expires it.
    let expired = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-ends"}))
        .await;

    let fired = events_of(&rx, "challenge.failed", 3).await;
    assert_eq!(fired.len(), 3, "one event per end");
    let of = |id: &str| {
        fired
            .iter()
            .find(|e| e["data"]["challenge_id"] == id)
            .unwrap_or_else(|| panic!("no event for {id}"))["data"]
            .clone()
    };
    let c = of(&cancelled);
    assert_eq!(
        (
            c["status"].clone(),
            c["failure_reason"].clone(),
            c["type"].clone()
        ),
        (
            json!("cancelled"),
            json!("user_cancelled"),
            json!("identify")
        )
    );
    assert_eq!(c["metadata"], json!({"k": 1}));
    let r = of(&revoked);
    assert_eq!(
        (
            r["status"].clone(),
            r["failure_reason"].clone(),
            r["external_user_id"].clone()
        ),
        (json!("failed"), json!("device_revoked"), json!("carol"))
    );
    assert_eq!(r["hardware_id"], "hw-doomed");
    let e = of(&expired);
    assert_eq!(
        (e["status"].clone(), e["failure_reason"].clone()),
        (json!("expired"), json!("expired"))
    );
    let read = h.get(&format!("/v1/challenges/{expired}"), &t.token).await;
    assert_eq!(read.body["data"]["status"], "expired");
}
