use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{capture, capture_b64, error_fields, palm, Harness};

#[tokio::test]
async fn long_poll_wakes_when_a_challenge_arrives() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-poll").await;
    let empty = h.get("/v1/device/challenges?wait_ms=0", &s.secret).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["data"], json!([]));
    assert_eq!(
        h.get("/v1/device/challenges?wait_ms=30001", &s.secret)
            .await
            .status,
        422
    );

    let started = Instant::now();
    let timed_out = h.get("/v1/device/challenges?wait_ms=300", &s.secret).await;
    assert_eq!(timed_out.body["data"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(290));

    let poll = {
        let http = h.http.clone();
        let url = h.url("/v1/device/challenges?wait_ms=10000");
        let secret = s.secret.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body: serde_json::Value = http
                .get(url)
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "u1", "hardware_id": "hw-poll", "palm_type": "right"}),
        )
        .await;
    let (elapsed, body) = poll.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(5),
        "long poll took {elapsed:?}"
    );
    let list = body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["challenge_id"], id.as_str());
    assert_eq!(list[0]["type"], "enroll");
    assert_eq!(list[0]["palm_type"], "right");
    assert!(list[0]["expires_at"].is_string());
    let device = h
        .get(&format!("/v1/devices/{}", s.device_id), &t.token)
        .await;
    assert!(device.body["data"]["last_seen_at"].is_string());
}

#[tokio::test]
async fn captures_are_validated() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-val").await;
    let id = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "u1", "hardware_id": "hw-val", "palm_type": "right"}),
        )
        .await;
    let good = palm(1);

    let nine: Vec<Vec<f32>> = good[..9].to_vec();
    let r = h.capture(&s, &id, json!([capture("right", &nine)])).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(error_fields(&r.body), vec!["captures[0].template.blocks"]);

    let mut short = good.clone();
    short[3].pop();
    let r = h.capture(&s, &id, json!([capture("right", &short)])).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        error_fields(&r.body),
        vec!["captures[0].template.blocks[3]"]
    );

    let mut zero = good.clone();
    zero[5] = vec![0.0; 64];
    let r = h.capture(&s, &id, json!([capture("right", &zero)])).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        error_fields(&r.body),
        vec!["captures[0].template.blocks[5]"]
    );

    let mut flat: Vec<f32> = good.iter().flatten().copied().collect();
    flat[70] = f32::NAN;
    let r = h
        .capture(&s, &id, json!([capture_b64("right", &flat)]))
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(error_fields(&r.body), vec!["captures[0].template.data[1]"]);

    let r = h
        .capture(&s, &id, json!([capture_b64("right", &flat[..600])]))
        .await;
    assert_eq!(r.status, 422);

    let mut huge = capture("right", &good);
    huge["template"]["blocks"][0][0] = json!(1e39_f64);
    let r = h.capture(&s, &id, json!([huge])).await;
    assert_eq!(r.status, 422);

    let mut unknown = capture("right", &good);
    unknown["template"]["format"] = json!("f16");
    let r = h.capture(&s, &id, json!([unknown])).await;
    assert_eq!(r.status, 422);
    assert_eq!(error_fields(&r.body), vec!["captures[0].template.format"]);
    for (format, field) in [("f32", "blocks"), ("f32le_base64", "data")] {
        let r = h
            .capture(
                &s,
                &id,
                json!([{"palm_type": "right", "template": {"format": format}}]),
            )
            .await;
        assert_eq!(r.status, 422, "{format}");
        assert_eq!(
            error_fields(&r.body),
            vec![format!("captures[0].template.{field}")]
        );
    }

    let r = h.capture(&s, &id, json!([capture("left", &good)])).await;
    assert_eq!(r.status, 422);
    assert_eq!(error_fields(&r.body), vec!["captures"]);
    let r = h
        .capture(
            &s,
            &id,
            json!([capture("right", &good), capture("right", &good)]),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = h.capture(&s, &id, json!([])).await;
    assert_eq!(r.status, 422);
    let r = h.capture(&s, &id, json!([capture("middle", &good)])).await;
    assert_eq!(r.status, 422);
    let r = h
        .post(
            &format!("/v1/device/challenges/{id}/capture"),
            &s.secret,
            json!({"captures": "nope"}),
        )
        .await;
    assert_eq!(r.status, 422);

    // Nothing above changed the challenge: a valid capture completes it.
    let ok = h
        .capture(
            &s,
            &id,
            json!([capture_b64(
                "right",
                &good.iter().flatten().copied().collect::<Vec<_>>()
            )]),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["data"]["status"], "completed");
    let again = h.capture(&s, &id, json!([capture("right", &good)])).await;
    assert_eq!(again.status, 409);
}

#[tokio::test]
async fn both_palms_need_one_left_and_one_right() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-both").await;
    let id = h
        .challenge(
            &t,
            "/v1/enroll/both",
            json!({"user_id": "u2", "hardware_id": "hw-both"}),
        )
        .await;
    let (l, r) = (palm(10), palm(11));
    assert_eq!(
        h.capture(&s, &id, json!([capture("right", &r)]))
            .await
            .status,
        422
    );
    assert_eq!(
        h.capture(&s, &id, json!([capture("right", &r), capture("right", &l)]))
            .await
            .status,
        422
    );
    let ok = h
        .capture(&s, &id, json!([capture("left", &l), capture("right", &r)]))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let result = &ok.body["data"]["result"];
    assert_eq!(result["palm_type"], "both");
    assert!(result["feature_ids"]["left"].is_string());
    assert!(result["feature_ids"]["right"].is_string());
    assert_ne!(
        result["feature_ids"]["left"],
        result["feature_ids"]["right"]
    );
}

#[tokio::test]
async fn credentials_stay_on_their_side_and_other_devices_see_404() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s1 = h.scanner(&t, "hw-a").await;
    let s2 = h.scanner(&t, "hw-b").await;
    assert_eq!(h.get("/v1/device/challenges", &t.token).await.status, 401);
    assert_eq!(h.get("/v1/devices", &s1.secret).await.status, 401);
    let id = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "u", "hardware_id": "hw-a", "palm_type": "left"}),
        )
        .await;
    let r = h
        .capture(&s2, &id, json!([capture("left", &palm(3))]))
        .await;
    assert_eq!(r.status, 404);
    let r = h
        .post(
            &format!("/v1/device/challenges/{id}/cancel"),
            &s2.secret,
            json!({"reason": "quality"}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = h
        .post(
            &format!("/v1/device/challenges/{id}/cancel"),
            &s1.secret,
            json!({"reason": "bored"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = h
        .post(
            &format!("/v1/device/challenges/{id}/cancel"),
            &s1.secret,
            json!({"reason": "user_cancelled"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(
        h.capture(&s1, &id, json!([capture("left", &palm(3))]))
            .await
            .status,
        409
    );
    assert_eq!(
        h.post(
            &format!("/v1/device/challenges/{id}/cancel"),
            &s1.secret,
            json!({"reason": "quality"})
        )
        .await
        .status,
        409
    );
}

#[tokio::test]
async fn expired_challenges_are_410() {
    let h = Harness::start_with(|c| {
        c.challenge_ttl = Duration::from_secs(1);
        c.sweep_interval = Duration::from_millis(200);
    })
    .await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-exp").await;
    let lazy = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "u", "hardware_id": "hw-exp", "palm_type": "left"}),
        )
        .await;
    let swept = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-exp"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The sweeper expired it without any request touching it.
    let store = h.store().await;
    let row = store
        .get_challenge(t.id.parse().unwrap(), swept.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, palmlink_store::ChallengeStatus::Expired);
    let r = h
        .capture(&s, &lazy, json!([capture("left", &palm(4))]))
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    let c = h.get(&format!("/v1/challenges/{lazy}"), &t.token).await;
    assert_eq!(c.body["data"]["status"], "expired");
    let polled = h.get("/v1/device/challenges", &s.secret).await;
    assert_eq!(polled.body["data"], json!([]));
    let expired = h.get("/v1/challenges?status=expired", &t.token).await;
    assert_eq!(expired.body["total"], 2);
}

#[tokio::test]
async fn shutdown_ends_long_polls() {
    let mut h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-stop").await;
    let poll = {
        let req = h
            .http
            .get(h.url("/v1/device/challenges?wait_ms=30000"))
            .bearer_auth(&s.secret);
        tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    h.server.take().unwrap().stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?}",
        started.elapsed()
    );
    assert_eq!(poll.await.unwrap().unwrap(), 200);
}
