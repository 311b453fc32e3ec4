use serde_json::{json, Value};

use crate::support::{assert_scores, block_cosines, capture, palm, recapture, Harness};

const THRESHOLDS: [f64; 10] = [
    0.7072, 0.7253, 0.7018, 0.7211, 0.7426, 0.6929, 0.6850, 0.7100, 0.7526, 0.7004,
];

#[tokio::test]
async fn enrollment_then_verification_scores_are_cosines() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-1").await;
    let alice = palm(100);
    let enrolled = h.enroll(&t, &s, "alice", "right", &alice).await;
    assert_eq!(enrolled["status"], "completed");
    let enroll_id = enrolled["challenge_id"].as_str().unwrap();
    let looked = h
        .get(&format!("/v1/challenges/{enroll_id}"), &t.token)
        .await;
    assert_eq!(looked.body["data"], enrolled);
    let result = &enrolled["result"];
    for field in [
        "user_id",
        "external_user_id",
        "feature_id",
        "palm_type",
        "hardware_id",
        "challenge_id",
        "enrolled_at",
        "vendor",
        "metadata",
    ] {
        assert!(
            result.get(field).is_some(),
            "enrollment result lacks {field}"
        );
    }
    assert_eq!(result["vendor"], "mock");

    // Enrolling the same palm again is a conflict.
    let dup = h
        .post(
            "/v1/enroll",
            &t.token,
            json!({"external_user_id": "alice", "hardware_id": "hw-1", "palm_type": "right"}),
        )
        .await;
    assert_eq!(dup.status, 409);

    // Genuine probe.
    let probe = recapture(&alice, 1, 0.3);
    let id = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "alice", "hardware_id": "hw-1", "metadata": {"door": 7}}),
        )
        .await;
    let pending = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(pending.body["data"]["status"], "pending");
    assert_eq!(pending.body["data"]["palm_type"], "right");
    let r = h.capture(&s, &id, json!([capture("right", &probe)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = &r.body["data"]["result"];
    let expected = block_cosines(&probe, &alice);
    assert_scores(&v["scores"], &expected);
    let should_match = expected.iter().zip(THRESHOLDS).all(|(s, t)| *s >= t);
    assert!(
        should_match,
        "the synthetic genuine probe must pass: {expected:?}"
    );
    assert_eq!(v["matched"], true);
    assert_eq!(v["result"], "match");
    assert_eq!(v["match_policy"], "all_thresholds");
    assert_eq!(v["metadata"], json!({"door": 7}));
    assert_eq!(v["external_user_id"], "alice");
    assert_scores(&v["thresholds"], &THRESHOLDS);
    // The capture answers with exactly what a look-up reads back from the store.
    let looked = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(looked.body["data"], r.body["data"]);
    assert_eq!(looked.body["data"]["status"], "completed");

    // Impostor probe.
    let mallory = palm(999);
    let id = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"user_id": "alice", "hardware_id": "hw-1"}),
        )
        .await;
    let r = h
        .capture(&s, &id, json!([capture("right", &mallory)]))
        .await;
    let v = &r.body["data"]["result"];
    assert_scores(&v["scores"], &block_cosines(&mallory, &alice));
    assert_eq!(v["matched"], false);
    assert_eq!(v["result"], "no_match");

    // Look-up returns the same result the event carries.
    let looked = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(looked.body["data"]["result"], *v);
    let store = h.store().await;
    let events = store.undispatched_events(100).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "device.paired",
            "enrollment.complete",
            "verification.complete",
            "verification.complete"
        ]
    );
    let last = &events[3].payload;
    assert_eq!(last["data"], *v);
    assert_eq!(last["event_type"], "verification.complete");
    assert_eq!(last["tenant_id"], t.id.as_str());
    let event_id = last["event_id"].as_str().unwrap();
    assert!(
        event_id.starts_with("evt_") && event_id.len() == 36,
        "{event_id}"
    );
    assert_eq!(events[1].payload["data"], enrolled["result"]);

    // Unknown user or palm.
    assert_eq!(
        h.post(
            "/v1/verify",
            &t.token,
            json!({"external_user_id": "bob", "hardware_id": "hw-1"})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        h.post(
            "/v1/verify",
            &t.token,
            json!({"external_user_id": "alice", "hardware_id": "hw-1", "palm_type": "left"})
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn both_palms_verify_with_either_palm_and_report_the_best() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-2").await;
    let (left, right) = (palm(200), palm(201));
    let id = h
        .challenge(
            &t,
            "/v1/enroll/both",
            json!({"external_user_id": "carol", "hardware_id": "hw-2"}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &id,
            json!([capture("left", &left), capture("right", &right)]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let probe = recapture(&left, 7, 0.3);
    let id = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "carol", "hardware_id": "hw-2"}),
        )
        .await;
    let c = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(c.body["data"]["palm_type"], "any");
    let r = h.capture(&s, &id, json!([capture("left", &probe)])).await;
    let v = &r.body["data"]["result"];
    assert_eq!(v["matched"], true);
    assert_eq!(v["palm_type"], "left");
    assert_scores(&v["scores"], &block_cosines(&probe, &left));

    // Named palm: compared with that palm only.
    let id = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "carol", "hardware_id": "hw-2", "palm_type": "right"}),
        )
        .await;
    let r = h.capture(&s, &id, json!([capture("right", &probe)])).await;
    let v = &r.body["data"]["result"];
    assert_eq!(v["matched"], false);
    assert_scores(&v["scores"], &block_cosines(&probe, &right));
}

#[tokio::test]
async fn identification_ranks_the_gallery() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-3").await;
    let people: Vec<(String, Vec<Vec<f32>>)> = (0..6)
        .map(|i| (format!("user-{i}"), palm(300 + i)))
        .collect();
    for (name, p) in &people {
        h.enroll(&t, &s, name, "right", p).await;
    }
    let probe = recapture(&people[4].1, 3, 0.3);
    let id = h
        .challenge(
            &t,
            "/v1/identify",
            json!({"hardware_id": "hw-3", "top_k": 3}),
        )
        .await;
    let r = h.capture(&s, &id, json!([capture("right", &probe)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = &r.body["data"]["result"];
    assert_eq!(v["matched"], true);
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3);
    assert_eq!(candidates[0]["external_user_id"], "user-4");
    assert_eq!(candidates[0]["matched"], true);
    let expected = block_cosines(&probe, &people[4].1);
    assert_scores(&candidates[0]["scores"], &expected);
    let mean = expected.iter().sum::<f64>() / 10.0;
    assert!((candidates[0]["confidence"].as_f64().unwrap() - mean).abs() < 1e-4);
    assert_eq!(candidates[1]["matched"], false);
    assert_eq!(v["search"]["gallery_size"], 6);
    let looked = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(looked.body["data"], r.body["data"]);

    // Nobody passes: candidates come back, none matched.
    let stranger = palm(12345);
    let id = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-3"}))
        .await;
    let r = h
        .capture(&s, &id, json!([capture("right", &stranger)]))
        .await;
    let v: &Value = &r.body["data"]["result"];
    assert_eq!(v["matched"], false);
    let candidates = v["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 5);
    assert!(candidates.iter().all(|c| c["matched"] == false));

    // Left palms are not searched for a right probe.
    let id = h
        .challenge(
            &t,
            "/v1/identify",
            json!({"hardware_id": "hw-3", "palm_type": "left"}),
        )
        .await;
    let r = h.capture(&s, &id, json!([capture("left", &probe)])).await;
    assert_eq!(r.body["data"]["result"]["candidates"], json!([]));
    assert_eq!(
        h.post(
            "/v1/identify",
            &t.token,
            json!({"hardware_id": "hw-3", "top_k": 51})
        )
        .await
        .status,
        422
    );

    let list = h
        .get("/v1/challenges?type=identify&status=completed", &t.token)
        .await;
    assert_eq!(list.body["total"], 3);
    assert_eq!(
        h.get("/v1/challenges?type=nope", &t.token).await.status,
        422
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollments_and_identifications_run_concurrently() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-c").await;
    let seed = palm(600);
    h.enroll(&t, &s, "seed", "right", &seed).await;
    let mut enroll_ids = Vec::new();
    let mut identify_ids = Vec::new();
    for i in 0..6 {
        enroll_ids.push(
            h.challenge(&t, "/v1/enroll", json!({"external_user_id": format!("c{i}"), "hardware_id": "hw-c", "palm_type": "right"}))
                .await,
        );
        identify_ids.push(
            h.challenge(&t, "/v1/identify", json!({"hardware_id": "hw-c"}))
                .await,
        );
    }
    let mut tasks = Vec::new();
    for (i, (e, q)) in enroll_ids.into_iter().zip(identify_ids).enumerate() {
        let body_e = json!([capture("right", &palm(610 + i as u64))]);
        let body_q = json!([capture("right", &recapture(&seed, i as u64, 0.3))]);
        let (http, base, secret) = (h.http.clone(), h.base.clone(), s.secret.clone());
        tasks.push(tokio::spawn(async move {
            let send = |id: String, captures: Value| {
                let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
                async move {
                    let r = http
                        .post(format!("{base}/v1/device/challenges/{id}/capture"))
                        .bearer_auth(secret)
                        .json(&json!({"vendor": "mock", "captures": captures}))
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.json::<Value>().await.unwrap())
                }
            };
            let ((se, _), (sq, bq)) = tokio::join!(send(e, body_e), send(q, body_q));
            assert_eq!(se, 200);
            assert_eq!(sq, 200);
            assert_eq!(
                bq["data"]["result"]["candidates"][0]["external_user_id"],
                "seed"
            );
            assert_eq!(bq["data"]["result"]["matched"], true);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        h.get("/v1/users?limit=100", &t.token).await.body["total"],
        7
    );
}
