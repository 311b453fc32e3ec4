use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::subscriptions::{create, dev_harness};
use crate::support::receiver::{verify, Answer, Receiver};
use crate::support::{capture, palm, recapture, Harness, Tenant};

const ALL: [&str; 4] = [
    "device.paired",
    "user.enrolled",
    "user.verified",
    "identification.complete",
];

async fn subscribe(h: &Harness, t: &Tenant, rx: &Receiver, events: &[&str]) -> (String, String) {
    let d = create(
        h,
        &t.token,
        json!({"name": rx.url, "events": events, "endpoint": rx.url, "api_key": "rk-42"}),
    )
    .await;
    (
        d["webhook_id"].as_str().unwrap().to_owned(),
        d["signing_secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(h: &Harness, t: &Tenant, webhook: &str) -> Vec<Value> {
    let r = h
        .get(
            &format!("/v1/webhooks/{webhook}/deliveries?limit=100"),
            &t.token,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

/// Polls the delivery log until `check` holds (at most 10 s).
async fn wait_log(
    h: &Harness,
    t: &Tenant,
    webhook: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..200 {
        let log = deliveries(h, t, webhook).await;
        if check(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "delivery log condition not met: {:#?}",
        deliveries(h, t, webhook).await
    );
}

fn keys(v: &Value) -> HashSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn every_event_type_arrives_signed_with_the_contract_headers() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    let (webhook, secret) = subscribe(&h, &t, &rx, &ALL).await;

    let s = h.scanner(&t, "hw-hooks").await;
    let alice = palm(11);
    let enrolled = h.enroll(&t, &s, "alice", "right", &alice).await;
    let vid = h
        .challenge(&t, "/v1/verify", json!({"external_user_id": "alice", "hardware_id": "hw-hooks", "metadata": {"door": 3}}))
        .await;
    let r = h
        .capture(
            &s,
            &vid,
            json!([capture("right", &recapture(&alice, 1, 0.2))]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let iid = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-hooks"}))
        .await;
    let r = h
        .capture(
            &s,
            &iid,
            json!([capture("right", &recapture(&alice, 2, 0.2))]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let seen = rx.wait_until(15, |s| s.len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = if rx.seen().len() > seen.len() {
        rx.seen()
    } else {
        seen
    };
    assert_eq!(seen.len(), 4, "one delivery per event");
    let mut types = Vec::new();
    for req in &seen {
        let body = req.json();
        assert_eq!(req.header("content-type"), "application/json");
        assert_eq!(req.header("user-agent"), "PalmLink-Webhook/1.0");
        assert_eq!(req.header("x-api-key"), "rk-42");
        assert_eq!(
            req.header("x-link-event"),
            body["event_type"].as_str().unwrap()
        );
        let delivery = req.header("x-link-delivery");
        let uuid = delivery.strip_prefix("del_").expect("del_ prefix");
        assert_eq!(uuid.len(), 36);
        assert_eq!(req.header("webhook-id"), body["event_id"].as_str().unwrap());
        let ts: i64 = req
            .header("webhook-timestamp")
            .parse()
            .expect("unix seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - ts).abs() < 60);
        assert!(verify(&secret, req), "signature must verify");
        assert!(
            !verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", req),
            "a wrong secret must not verify"
        );
        assert_eq!(
            keys(&body),
            ["event_id", "event_type", "tenant_id", "timestamp", "data"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert!(body["event_id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(body["tenant_id"], t.id);
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        types.push(body["event_type"].as_str().unwrap().to_owned());
        let data = &body["data"];
        let want: &[&str] = match body["event_type"].as_str().unwrap() {
            "device.paired" => &[
                "device_id",
                "hardware_id",
                "device_name",
                "location",
                "status",
                "paired_at",
                "cert_valid_until",
            ],
            "enrollment.complete" => &[
                "user_id",
                "external_user_id",
                "feature_id",
                "palm_type",
                "hardware_id",
                "challenge_id",
                "enrolled_at",
                "vendor",
                "metadata",
            ],
            "verification.complete" => &[
                "challenge_id",
                "user_id",
                "external_user_id",
                "hardware_id",
                "palm_type",
                "matched",
                "result",
                "scores",
                "thresholds",
                "match_policy",
                "latency_ms",
                "vendor",
                "verified_at",
                "metadata",
            ],
            "identification.complete" => &[
                "challenge_id",
                "hardware_id",
                "palm_type",
                "matched",
                "candidates",
                "search",
                "vendor",
                "identified_at",
                "metadata",
            ],
            other => panic!("unexpected event {other}"),
        };
        for field in want {
            assert!(
                data.get(*field).is_some(),
                "{} lacks data.{field}: {data}",
                body["event_type"]
            );
        }
    }
    types.sort();
    assert_eq!(
        types,
        [
            "device.paired",
            "enrollment.complete",
            "identification.complete",
            "verification.complete"
        ]
    );
    let by_type = |ty: &str| {
        seen.iter()
            .map(|r| r.json())
            .find(|b| b["event_type"] == ty)
            .unwrap()
    };
    assert_eq!(by_type("device.paired")["data"]["hardware_id"], "hw-hooks");
    assert_eq!(
        by_type("enrollment.complete")["data"]["challenge_id"],
        enrolled["challenge_id"]
    );
    assert_eq!(by_type("verification.complete")["data"]["matched"], true);
    assert_eq!(
        by_type("verification.complete")["data"]["metadata"],
        json!({"door": 3})
    );
    assert_eq!(
        by_type("identification.complete")["data"]["candidates"][0]["external_user_id"],
        "alice"
    );
    // The challenge's result is the data its webhook carried.
    let c = h.get(&format!("/v1/challenges/{vid}"), &t.token).await;
    assert_eq!(
        c.body["data"]["result"],
        by_type("verification.complete")["data"]
    );

    let log = wait_log(&h, &t, &webhook, |l| {
        l.len() == 4 && l.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    for d in &log {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["attempt_log"][0]["status_code"], 200);
        assert!(d["attempt_log"][0]["latency_ms"].is_number());
        assert!(d["delivery_id"].as_str().unwrap().starts_with("del_"));
    }
    let delivered: HashSet<String> = seen.iter().map(|r| r.header("x-link-delivery")).collect();
    let logged: HashSet<String> = log
        .iter()
        .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, logged);

    // A test ping goes to this webhook only.
    let other = Receiver::start(vec![]).await;
    subscribe(&h, &t, &other, &["device.paired"]).await;
    let ping = h
        .post(&format!("/v1/webhooks/{webhook}/test"), &t.token, json!({}))
        .await;
    assert_eq!(ping.status, 202, "{}", ping.body);
    let seen = rx.wait_until(10, |s| s.len() >= 5).await;
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-link-event"), "webhook.test");
    assert_eq!(last.json()["event_type"], "webhook.test");
    assert!(verify(&secret, last));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(other.seen().is_empty());
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_until_it_succeeds() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![Answer::Status(500), Answer::RetryAfter(503, 1)]).await;
    let (webhook, secret) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    h.scanner(&t, "hw-retry").await;
    let seen = rx.wait_until(15, |s| s.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.seen().len(), 3, "nothing after the 2xx");
    let ids: HashSet<String> = seen
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "the same event_id on every attempt");
    let hook_ids: HashSet<String> = seen.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(hook_ids.len(), 1, "the same webhook-id on every attempt");
    assert!(seen.iter().all(|r| verify(&secret, r)));
    assert!(
        seen.iter().all(|r| r.body == seen[0].body),
        "the same body on every attempt"
    );
    // Retry-After: 1 was honoured between the second and third attempts.
    assert!(
        seen[2].at - seen[1].at >= Duration::from_millis(950),
        "{:?}",
        seen[2].at - seen[1].at
    );
    let log = wait_log(&h, &t, &webhook, |l| {
        l.len() == 1 && l[0]["status"] == "succeeded"
    })
    .await;
    let codes: Vec<Value> = log[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(503), json!(200)]);
    assert_eq!(log[0]["attempts"], 3);
    let hook = h.get(&format!("/v1/webhooks/{webhook}"), &t.token).await;
    assert_eq!(
        hook.body["data"]["failing_since"],
        Value::Null,
        "a success ends the failing run"
    );
}

#[tokio::test]
async fn gone_disables_the_subscription_until_it_is_re_enabled() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![Answer::Status(410)]).await;
    let (webhook, _) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    h.scanner(&t, "hw-gone-1").await;
    rx.wait_until(10, |s| !s.is_empty()).await;
    let mut hook = Value::Null;
    for _ in 0..100 {
        hook = h
            .get(&format!("/v1/webhooks/{webhook}"), &t.token)
            .await
            .body["data"]
            .clone();
        if hook["active"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hook["active"], false);
    assert!(
        hook["disabled_reason"].as_str().unwrap().contains("410"),
        "{hook}"
    );
    // Disabled: no more deliveries, and no test pings.
    h.scanner(&t, "hw-gone-2").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(
        h.post(&format!("/v1/webhooks/{webhook}/test"), &t.token, json!({}))
            .await
            .status,
        409
    );
    let log = deliveries(&h, &t, &webhook).await;
    assert_eq!(log.iter().filter(|d| d["status"] == "failed").count(), 1);

    let on = h
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{webhook}"),
            Some(&t.token),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(on.status, 200);
    assert_eq!(on.body["data"]["disabled_reason"], Value::Null);
    h.scanner(&t, "hw-gone-3").await;
    let seen = rx.wait_until(10, |s| s.len() >= 2).await;
    assert_eq!(seen[1].json()["data"]["hardware_id"], "hw-gone-3");
}

#[tokio::test]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![Answer::Hang(Duration::from_secs(5))]).await;
    let (webhook, _) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    h.scanner(&t, "hw-hang").await;
    let seen = rx.wait_until(10, |s| s.len() >= 2).await;
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    let log = wait_log(&h, &t, &webhook, |l| {
        l.len() == 1 && l[0]["status"] == "succeeded"
    })
    .await;
    let first = &log[0]["attempt_log"][0];
    assert_eq!(first["status_code"], Value::Null);
    assert!(
        first["error"].as_str().unwrap().contains("timed out"),
        "{first}"
    );
    assert!(first["latency_ms"].as_i64().unwrap() >= 700);
    assert!(first["latency_ms"].as_i64().unwrap() < 3000);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![Answer::Redirect]).await;
    let (webhook, _) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    h.scanner(&t, "hw-redirect").await;
    let log = wait_log(&h, &t, &webhook, |l| {
        l.len() == 1 && l[0]["status"] == "succeeded"
    })
    .await;
    assert_eq!(log[0]["attempt_log"][0]["status_code"], 307);
    assert_eq!(log[0]["attempt_log"][1]["status_code"], 200);
    assert_eq!(rx.redirected(), 0, "the redirect target was never called");
    assert_eq!(rx.seen().len(), 2);
}

#[tokio::test]
async fn manual_retry_and_recovery_resend_failed_deliveries() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    // 1 attempt + 3 retries per delivery: 8 failures for two events.
    let rx = Receiver::start(vec![Answer::Status(500); 8]).await;
    let (webhook, _) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    let before = chrono_now();
    h.scanner(&t, "hw-r1").await;
    h.scanner(&t, "hw-r2").await;
    let log = wait_log(&h, &t, &webhook, |l| {
        l.len() == 2 && l.iter().all(|d| d["status"] == "failed")
    })
    .await;
    assert!(log
        .iter()
        .all(|d| d["attempts"] == 4 && d["last_status_code"] == 500));
    assert_eq!(rx.seen().len(), 8);

    let first = log[0]["delivery_id"].as_str().unwrap().to_owned();
    let r = h
        .post(
            &format!("/v1/webhooks/{webhook}/deliveries/{first}/retry"),
            &t.token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let log = wait_log(&h, &t, &webhook, |l| {
        l.iter().any(|d| d["status"] == "succeeded")
    })
    .await;
    let done = log
        .iter()
        .find(|d| d["delivery_id"] == first.as_str())
        .unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempts"], 5);
    let one = h
        .get(
            &format!("/v1/webhooks/{webhook}/deliveries/{first}"),
            &t.token,
        )
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["data"]["attempt_log"].as_array().unwrap().len(), 5);

    let bad = h
        .post(
            &format!("/v1/webhooks/{webhook}/recover"),
            &t.token,
            json!({"since": "yesterday"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let r = h
        .post(
            &format!("/v1/webhooks/{webhook}/recover"),
            &t.token,
            json!({"since": before}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["data"]["requeued"], 1);
    wait_log(&h, &t, &webhook, |l| {
        l.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    assert_eq!(rx.seen().len(), 10);
    let missing = h
        .post(
            &format!(
                "/v1/webhooks/{webhook}/deliveries/del_{}/retry",
                "0".repeat(8) + "-0000-0000-0000-000000000000"
            ),
            &t.token,
            json!({}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_rotated_secret_and_the_previous_one_both_sign_during_the_grace_period() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    let (webhook, old) = subscribe(&h, &t, &rx, &["device.paired"]).await;
    let r = h
        .post(
            &format!("/v1/webhooks/{webhook}/rotate-secret"),
            &t.token,
            json!({"grace_period_seconds": 3600}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["data"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    assert!(r.body["data"]["previous_secret_expires_at"].is_string());
    let bad = h
        .post(
            &format!("/v1/webhooks/{webhook}/rotate-secret"),
            &t.token,
            json!({"grace_period_seconds": -1}),
        )
        .await;
    assert_eq!(bad.status, 400);
    h.post(&format!("/v1/webhooks/{webhook}/test"), &t.token, json!({}))
        .await;
    let seen = rx.wait_until(10, |s| !s.is_empty()).await;
    assert_eq!(seen[0].header("webhook-signature").split(' ').count(), 2);
    assert!(verify(&new, &seen[0]) && verify(&old, &seen[0]));

    // Without a grace period the old secret stops at once.
    let r = h
        .send(
            h.http
                .post(h.url(&format!("/v1/webhooks/{webhook}/rotate-secret")))
                .bearer_auth(&t.token)
                .json(&json!({"grace_period_seconds": 0})),
        )
        .await;
    let newest = r.body["data"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    h.post(&format!("/v1/webhooks/{webhook}/test"), &t.token, json!({}))
        .await;
    let seen = rx.wait_until(10, |s| s.len() >= 2).await;
    assert_eq!(seen[1].header("webhook-signature").split(' ').count(), 1);
    assert!(verify(&newest, &seen[1]) && !verify(&new, &seen[1]));
}

fn chrono_now() -> String {
    // RFC 3339 "now" without a date crate: seconds since the epoch, then formatted by hand.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let days = secs / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
