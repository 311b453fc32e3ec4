use reqwest::Method;
use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::Harness;

/// A server that allows loopback endpoints, with a fast retry schedule.
pub async fn dev_harness() -> Harness {
    Harness::start_with(|c| {
        c.allow_http_webhooks = true;
        c.webhooks.schedule = "200ms,300ms,400ms".parse().expect("schedule");
        c.webhooks.timeout = std::time::Duration::from_millis(800);
        c.webhooks.poll_interval = std::time::Duration::from_millis(500);
    })
    .await
}

/// Creates a webhook and returns its `data`.
pub async fn create(h: &Harness, token: &str, body: Value) -> Value {
    let r = h.post("/v1/webhooks", token, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["data"].clone()
}

#[tokio::test]
async fn create_list_get_update_delete() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    let d = create(
        &h,
        &t.token,
        json!({"name": "Production Events", "events": ["device.paired", "user.enrolled", "user.verified"],
               "endpoint": rx.url, "api_key": "key-1"}),
    )
    .await;
    assert_eq!(d["name"], "Production Events");
    assert_eq!(
        d["events"],
        json!([
            "device.paired",
            "enrollment.complete",
            "verification.complete"
        ])
    );
    assert_eq!(d["endpoint"], rx.url);
    assert_eq!(d["active"], true);
    assert_eq!(d["api_key_set"], true);
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));
    let secret = d["signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(&secret[6..])
        .unwrap();
    assert!(key.len() >= 24);
    let id = d["webhook_id"].as_str().unwrap().to_owned();

    // The secret is shown once.
    let got = h.get(&format!("/v1/webhooks/{id}"), &t.token).await;
    assert_eq!(got.status, 200);
    assert!(got.body["data"].get("signing_secret").is_none());
    assert!(!got.body.to_string().contains(secret));

    for i in 0..3 {
        create(&h, &t.token, json!({"name": format!("n{i}"), "events": ["device.paired"], "endpoint": format!("{}?n={i}", rx.url)})).await;
    }
    let page = h.get("/v1/webhooks?offset=1&limit=2", &t.token).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["total"], 4);
    assert_eq!(page.body["offset"], 1);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(h.get("/v1/webhooks?limit=101", &t.token).await.status, 422);

    let patched = h
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&t.token),
            Some(json!({"events": ["identification.complete"], "api_key": null, "active": false})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.body["data"]["events"],
        json!(["identification.complete"])
    );
    assert_eq!(patched.body["data"]["api_key_set"], false);
    assert_eq!(patched.body["data"]["active"], false);
    let bad = h
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&t.token),
            Some(json!({"events": []})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let dup = h
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            Some(&t.token),
            Some(json!({"name": "n0"})),
        )
        .await;
    assert_eq!(dup.status, 409);

    // Another tenant sees nothing.
    let other = h.tenant().await;
    assert_eq!(
        h.get(&format!("/v1/webhooks/{id}"), &other.token)
            .await
            .status,
        404
    );
    assert_eq!(h.get("/v1/webhooks", &other.token).await.body["total"], 0);
    assert_eq!(
        h.call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&other.token),
            None
        )
        .await
        .status,
        404
    );

    assert_eq!(
        h.call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&t.token),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        h.get(&format!("/v1/webhooks/{id}"), &t.token).await.status,
        404
    );
    assert_eq!(h.get("/v1/webhooks/not-a-uuid", &t.token).await.status, 404);
}

#[tokio::test]
async fn invalid_bodies_are_400_and_duplicates_409() {
    let h = dev_harness().await;
    let t = h.tenant().await;
    let rx = Receiver::start(vec![]).await;
    let ok = json!({"name": "a", "events": ["device.paired"], "endpoint": rx.url});
    let cases: Vec<Value> = vec![
        json!({"events": ["device.paired"], "endpoint": rx.url}),
        json!({"name": "", "events": ["device.paired"], "endpoint": rx.url}),
        json!({"name": 5, "events": ["device.paired"], "endpoint": rx.url}),
        json!({"name": "x".repeat(256), "events": ["device.paired"], "endpoint": rx.url}),
        json!({"name": "a", "events": [], "endpoint": rx.url}),
        json!({"name": "a", "events": "device.paired", "endpoint": rx.url}),
        json!({"name": "a", "events": ["user.deleted"], "endpoint": rx.url}),
        json!({"name": "a", "events": [7], "endpoint": rx.url}),
        json!({"name": "a", "events": ["device.paired"]}),
        json!({"name": "a", "events": ["device.paired"], "endpoint": "not a url"}),
        json!({"name": "a", "events": ["device.paired"], "endpoint": "ftp://example.com/x"}),
        json!({"name": "a", "events": ["device.paired"], "endpoint": rx.url, "api_key": 12}),
        json!([1, 2]),
        json!("text"),
    ];
    for body in cases {
        let r = h.post("/v1/webhooks", &t.token, body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.body);
        assert_eq!(r.body["success"], false);
        assert!(r.body["code"].is_string() && r.body["message"].is_string());
    }
    let malformed = h
        .send(
            h.http
                .post(h.url("/v1/webhooks"))
                .bearer_auth(&t.token)
                .body("{\"name\":"),
        )
        .await;
    assert_eq!(malformed.status, 400);
    let empty = h
        .send(h.http.post(h.url("/v1/webhooks")).bearer_auth(&t.token))
        .await;
    assert_eq!(empty.status, 400);

    create(&h, &t.token, ok.clone()).await;
    let same_name = h
        .post(
            "/v1/webhooks",
            &t.token,
            json!({"name": "a", "events": ["device.paired"], "endpoint": format!("{}?x", rx.url)}),
        )
        .await;
    assert_eq!(same_name.status, 409, "{}", same_name.body);
    let same_endpoint = h
        .post(
            "/v1/webhooks",
            &t.token,
            json!({"name": "b", "events": ["device.paired"], "endpoint": rx.url}),
        )
        .await;
    assert_eq!(same_endpoint.status, 409, "{}", same_endpoint.body);
    // Another tenant may use the same name and endpoint.
    let other = h.tenant().await;
    create(&h, &other.token, ok).await;

    let no_scope = h.tenant_with_scopes(Some("devices")).await;
    let r = h
        .post(
            "/v1/webhooks",
            &no_scope.token,
            json!({"name": "z", "events": ["device.paired"], "endpoint": rx.url}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(h.get("/v1/webhooks", &no_scope.token).await.status, 403);
    assert_eq!(
        h.call(Method::GET, "/v1/webhooks", None, None).await.status,
        401
    );
}

#[tokio::test]
async fn private_endpoints_are_refused_without_the_operator_allowance() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    for endpoint in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://172.16.5.4/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://0.0.0.0/hook",
        "https://198.51.100.4/hook",
        "https://224.0.0.1/hook",
        "http://8.8.8.8/hook",
    ] {
        let r = h
            .post(
                "/v1/webhooks",
                &t.token,
                json!({"name": endpoint, "events": ["device.paired"], "endpoint": endpoint}),
            )
            .await;
        assert_eq!(r.status, 400, "{endpoint} must be refused: {}", r.body);
    }
    // A public https address is accepted (nothing is sent until an event occurs).
    create(
        &h,
        &t.token,
        json!({"name": "public", "events": ["device.paired"], "endpoint": "https://8.8.8.8/hook"}),
    )
    .await;

    let dev = dev_harness().await;
    let t = dev.tenant().await;
    create(&dev, &t.token, json!({"name": "local", "events": ["device.paired"], "endpoint": "http://127.0.0.1:9/hook"})).await;
}
