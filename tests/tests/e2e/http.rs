use reqwest::Method;
use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn error_shapes_body_limit_and_request_ids() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let malformed = h
        .send(
            h.http
                .post(h.url("/v1/devices"))
                .bearer_auth(&t.token)
                .header("content-type", "application/json")
                .body("{nope"),
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["success"], false);
    assert_eq!(malformed.body["code"], "malformed_json");
    assert!(malformed.headers.contains_key("x-request-id"));

    let big = format!(
        "{{\"device_name\": \"{}\", \"location\": \"x\"}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let too_large = h
        .send(
            h.http
                .post(h.url("/v1/devices"))
                .bearer_auth(&t.token)
                .header("content-type", "application/json")
                .body(big),
        )
        .await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.body["code"], "payload_too_large");

    let not_object = h.post("/v1/devices", &t.token, json!([1, 2])).await;
    assert_eq!(not_object.status, 422);
    let unknown = h.get("/v1/nothing-here", &t.token).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["success"], false);

    let wrong_method = h
        .call(Method::PATCH, "/v1/devices", Some(&t.token), None)
        .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.body["code"], "method_not_allowed");
    assert_eq!(h.get("/v1/devices?limit=%ZZ", &t.token).await.status, 422);
    let bad_path = h.get("/v1/users/%FF%FE", &t.token).await;
    assert_eq!(bad_path.status, 404);
    assert_eq!(bad_path.body["success"], false);

    let given = h
        .send(
            h.http
                .get(h.url("/healthz"))
                .header("x-request-id", "req-123"),
        )
        .await;
    assert_eq!(given.headers["x-request-id"], "req-123");
    let unauth = h.call(Method::GET, "/v1/users", None, None).await;
    assert_eq!(unauth.status, 401);
    assert!(unauth.headers.contains_key("x-request-id"));
    assert_eq!(unauth.body["code"], "unauthorized");
}

#[tokio::test]
async fn idempotent_retries_replay_the_first_response() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let send = |key: &'static str, name: &'static str| {
        let h = &h;
        let token = t.token.clone();
        async move {
            h.send(
                h.http
                    .post(h.url("/v1/devices"))
                    .bearer_auth(token)
                    .header("idempotency-key", key)
                    .json(&json!({"device_name": name, "location": "L"})),
            )
            .await
        }
    };
    let first = send("key-1", "A").await;
    assert_eq!(first.status, 201);
    let again = send("key-1", "A").await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(h.get("/v1/devices", &t.token).await.body["total"], 1);

    let other_body = send("key-1", "B").await;
    assert_eq!(other_body.status, 422);
    assert_eq!(other_body.body["code"], "idempotency_key_reused");

    // A failed request does not consume its key.
    let failed = h
        .send(
            h.http
                .post(h.url("/v1/devices"))
                .bearer_auth(&t.token)
                .header("idempotency-key", "key-2")
                .json(&json!({"device_name": ""})),
        )
        .await;
    assert_eq!(failed.status, 422);
    let fixed = h
        .send(
            h.http
                .post(h.url("/v1/devices"))
                .bearer_auth(&t.token)
                .header("idempotency-key", "key-2")
                .json(&json!({"device_name": "C", "location": "L"})),
        )
        .await;
    assert_eq!(fixed.status, 201);
    assert_eq!(h.get("/v1/devices", &t.token).await.body["total"], 2);

    // Keys belong to the client: another tenant's client may use the same key.
    let other = h.tenant().await;
    let r = h
        .send(
            h.http
                .post(h.url("/v1/devices"))
                .bearer_auth(&other.token)
                .header("idempotency-key", "key-1")
                .json(&json!({"device_name": "A", "location": "L"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_ne!(r.body["data"]["device_id"], first.body["data"]["device_id"]);
}

#[tokio::test]
async fn clients_are_rate_limited_with_retry_after() {
    let h = Harness::start_with(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let t = h.tenant().await;
    let other = h.tenant().await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let r = h.get("/v1/devices", &t.token).await;
        if r.status == 429 {
            retry_after = r
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(r.body["code"], "rate_limited");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&secs));
    // Another client is unaffected.
    assert_eq!(h.get("/v1/devices", &other.token).await.status, 200);
}

#[tokio::test]
async fn operations_endpoints() {
    let h = Harness::start().await;
    let health = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(health.status, 200);
    let ready = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 200);
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("palmlink_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",status=\"200\""),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE palmlink_gallery_templates gauge"));
    let spec = h.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.status, 200);
    let paths = spec.body["paths"].as_object().unwrap();
    for p in [
        "/v1/auth/token",
        "/v1/devices",
        "/v1/devices/{device_id}",
        "/v1/device/pair",
        "/v1/device/challenges",
        "/v1/device/challenges/{challenge_id}/capture",
        "/v1/enroll",
        "/v1/enroll/both",
        "/v1/verify",
        "/v1/identify",
        "/v1/challenges/{challenge_id}",
        "/v1/users/{external_user_id}",
        "/v1/settings/matching",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let schemes = spec.body["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert!(schemes.contains_key("bearer") && schemes.contains_key("scanner"));
    assert_eq!(
        spec.body["paths"]["/v1/enroll"]["post"]["security"][0]["bearer"][0],
        "enroll"
    );
    assert!(spec.body["components"]["schemas"]["CaptureSubmission"].is_object());
}

#[tokio::test]
async fn token_and_pairing_endpoints_are_rate_limited_per_address() {
    let h = Harness::start_with(|c| {
        c.public_rate_limit_per_second = 1;
        c.public_rate_limit_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = h
            .call(
                Method::POST,
                "/v1/device/pair",
                None,
                Some(json!({"pairing_code": "ZZZZZZZZZZ", "hardware_id": "hw"})),
            )
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [404, 404, 404, 429]);
    let token = h
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "client_credentials"})),
        )
        .await;
    assert_eq!(token.status, 429);
    // Other endpoints are not limited per address.
    assert_eq!(
        h.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
}

#[tokio::test]
async fn a_retried_challenge_creation_creates_one_challenge() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-idem").await;
    let body = json!({"external_user_id": "gina", "hardware_id": "hw-idem", "palm_type": "left", "metadata": {"n": 1}});
    let send = || {
        h.send(
            h.http
                .post(h.url("/v1/enroll"))
                .bearer_auth(&t.token)
                .header("idempotency-key", "enroll-gina")
                .json(&body),
        )
    };
    let first = send().await;
    let second = send().await;
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 201);
    assert_eq!(
        first.body["data"]["challenge_id"],
        second.body["data"]["challenge_id"]
    );
    assert_eq!(
        h.get("/v1/challenges?type=enroll", &t.token).await.body["total"],
        1
    );
    let polled = h.get("/v1/device/challenges", &s.secret).await;
    assert_eq!(polled.body["data"].as_array().unwrap().len(), 1);
}

/// A NUL character is a valid JSON string character that PostgreSQL text refuses: in
/// metadata it is kept (as JSON, escaped), and wherever it would be compared with a text
/// column it answers as the contract says, the same on both backends, never 500.
#[tokio::test]
async fn nul_characters_are_kept_in_metadata_and_refused_as_ids_without_a_500() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-nul").await;
    let metadata = json!({"note": "a\u{0}b", "k\u{0}": ["\u{0}"]});
    let id = h
        .challenge(
            &t,
            "/v1/enroll",
            json!({"external_user_id": "nul", "hardware_id": s.hardware_id,
                   "palm_type": "right", "metadata": metadata}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &id,
            json!([crate::support::capture("right", &crate::support::palm(3))]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["result"]["metadata"], metadata);
    let read = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(read.body["data"]["metadata"], metadata);

    let refused = h
        .post(
            "/v1/enroll",
            &t.token,
            json!({"external_user_id": "a\u{0}b", "hardware_id": s.hardware_id, "palm_type": "right"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["errors"][0]["field"], "external_user_id");
    for (method, path) in [
        (Method::GET, "/v1/users/a%00b"),
        (Method::DELETE, "/v1/users/a%00b"),
    ] {
        let r = h.call(method, path, Some(&t.token), None).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.body["code"], "not_found");
    }
    let r = h.get("/v1/audit?action=a%00b", &t.token).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "action");
}
