//! `retention_days`: set through the settings, checked like every other value, and honoured
//! by the purge every node runs: a challenge that finished longer ago than the period is
//! gone (404), with its event and delivery log; newer ones, other tenants' and the audit log
//! stay.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{events_of, set_trust, subscribe};
use crate::support::receiver::Receiver;
use crate::support::{error_fields, Harness, Tenant};

/// Forty days in microseconds: how far back the test moves a finished challenge.
const FORTY_DAYS: i64 = 40 * 86_400 * 1_000_000;

/// A challenge the scanner cancels at once; its id.
async fn cancelled(h: &Harness, t: &Tenant, secret: &str, hardware_id: &str) -> String {
    let id = h
        .challenge(t, "/v1/identify", json!({"hardware_id": hardware_id}))
        .await;
    let r = h
        .post(
            &format!("/v1/device/challenges/{id}/cancel"),
            secret,
            json!({"reason": "user_cancelled"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    id
}

/// Makes a finished challenge, its events and their deliveries forty days older.
async fn age(h: &Harness, challenge: &str) {
    h.run_sql(&format!(
        "UPDATE challenges SET created_at = created_at - {FORTY_DAYS}, \
             expires_at = expires_at - {FORTY_DAYS}, finished_at = finished_at - {FORTY_DAYS} \
             WHERE id = '{challenge}';
         UPDATE outbox_events SET occurred_at = occurred_at - {FORTY_DAYS} \
             WHERE payload LIKE '%{challenge}%';
         UPDATE webhook_deliveries SET created_at = created_at - {FORTY_DAYS}, \
             updated_at = updated_at - {FORTY_DAYS} WHERE payload LIKE '%{challenge}%';"
    ))
    .await;
}

async fn put(h: &Harness, t: &Tenant, body: Value) -> crate::support::Reply {
    h.call(
        Method::PUT,
        "/v1/settings/matching",
        Some(&t.token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn retention_days_is_validated_and_kept_until_changed() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let now = h.get("/v1/settings/matching", &t.token).await;
    assert_eq!(now.body["data"]["retention_days"], Value::Null);
    let settings = set_trust(&h, &t, json!({"retention_days": 30})).await;
    assert_eq!(settings["retention_days"], 30);
    let base = json!({"thresholds": vec![0.7; 10], "match_policy": "all_thresholds"});
    for bad in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("30"),
        json!(36_501),
        json!(1e20),
    ] {
        let mut body = base.clone();
        body["retention_days"] = bad.clone();
        let r = put(&h, &t, body).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
        assert_eq!(r.body["code"], "validation_failed", "{}", r.body);
        assert!(
            error_fields(&r.body).iter().any(|f| f == "retention_days"),
            "{bad}: {}",
            r.body
        );
    }
    // Left out: unchanged; null: kept for ever.
    let r = put(&h, &t, base.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["retention_days"], 30);
    let mut clear = base.clone();
    clear["retention_days"] = Value::Null;
    let r = put(&h, &t, clear).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["retention_days"], Value::Null);
    let now = h.get("/v1/settings/matching", &t.token).await;
    assert_eq!(now.body["data"]["retention_days"], Value::Null);
}

#[tokio::test]
async fn finished_challenges_past_retention_are_purged_and_the_rest_kept() {
    let h = Harness::start_with(|c| {
        c.allow_http_webhooks = true;
        c.webhooks.poll_interval = Duration::from_millis(200);
        c.retention_interval = Duration::from_millis(200);
    })
    .await;
    let t = h.tenant().await;
    let other = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    subscribe(&h, &t, &rx, &["challenge.failed"]).await;
    let s = h.scanner(&t, "hw-kept").await;
    let s_other = h.scanner(&other, "hw-other").await;
    let old = cancelled(&h, &t, &s.secret, "hw-kept").await;
    let recent = cancelled(&h, &t, &s.secret, "hw-kept").await;
    let others = cancelled(&h, &other, &s_other.secret, "hw-other").await;
    // Both of t's events delivered before any is aged.
    let delivered = events_of(&rx, "challenge.failed", 2).await;
    assert_eq!(delivered.len(), 2);
    let recent_event = delivered
        .iter()
        .find(|e| e["data"]["challenge_id"] == recent.as_str())
        .expect("the recent challenge's event")["event_id"]
        .clone();
    let hooks = h.get("/v1/webhooks", &t.token).await;
    let hook = hooks.body["data"][0]["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = format!("/v1/webhooks/{hook}/deliveries?limit=100");
    for _ in 0..100 {
        let d = h.get(&log, &t.token).await;
        if d.body["data"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|d| d["status"] == "succeeded"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    age(&h, &old).await;
    age(&h, &others).await;
    let audit_before = h.get("/v1/audit?limit=100", &t.token).await;
    assert_eq!(audit_before.status, 200, "{}", audit_before.body);

    // No retention yet: the aged challenge stays through several purges.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        h.get(&format!("/v1/challenges/{old}"), &t.token)
            .await
            .status,
        200
    );

    set_trust(&h, &t, json!({"retention_days": 30})).await;
    let mut gone = false;
    for _ in 0..100 {
        if h.get(&format!("/v1/challenges/{old}"), &t.token)
            .await
            .status
            == 404
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the aged challenge was not purged");
    assert_eq!(
        h.get(&format!("/v1/challenges/{recent}"), &t.token)
            .await
            .status,
        200
    );
    // A purge deletes each kind in a transaction of its own (challenges, then events,
    // then deliveries): the aged delivery goes in the same pass, a moment after.
    let mut left = Vec::new();
    for _ in 0..100 {
        left = h.get(&log, &t.token).await.body["data"]
            .as_array()
            .unwrap()
            .clone();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["event_id"], recent_event);
    // Another tenant, without a retention period, keeps its aged challenge.
    assert_eq!(
        h.get(&format!("/v1/challenges/{others}"), &other.token)
            .await
            .status,
        200
    );
    // The audit log is kept whole, and its chain holds.
    let audit_after = h.get("/v1/audit?limit=100", &t.token).await;
    let before = audit_before.body["data"].as_array().unwrap();
    let after = audit_after.body["data"].as_array().unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    let store = h.store().await;
    let check = palmlink_store::verify_chain(store.as_ref(), t.id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(check.first_bad, None);
}
