use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{error_fields, Harness};

#[tokio::test]
async fn register_validates_and_lists_with_pagination() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let r = h
        .post(
            "/v1/devices",
            &t.token,
            json!({"device_name": "Scanner-04", "location": "Main Entrance"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let d = &r.body["data"];
    assert_eq!(d["status"], "pending_pair");
    assert_eq!(d["expires_in"], 1800);
    assert_eq!(
        r.body["message"],
        "Enter this pairing code on the physical scanner to complete provisioning."
    );
    let code = d["pairing_code"].as_str().unwrap();
    assert!(
        code.chars()
            .all(|c| "23456789ABCDEFGHJKMNPQRSTUVWXYZ".contains(c)),
        "{code}"
    );
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'));

    let bad = h
        .post(
            "/v1/devices",
            &t.token,
            json!({"device_name": "", "location": "x".repeat(256)}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(error_fields(&bad.body), vec!["device_name", "location"]);
    let missing = h
        .post("/v1/devices", &t.token, json!({"location": "x"}))
        .await;
    assert_eq!(missing.status, 422);
    assert_eq!(error_fields(&missing.body), vec!["device_name"]);

    for _ in 0..4 {
        h.register(&t).await;
    }
    let page = h.get("/v1/devices?offset=1&limit=2", &t.token).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["total"], 5);
    assert_eq!(page.body["offset"], 1);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);
    let tail = h.get("/v1/devices?offset=4&limit=100", &t.token).await;
    assert_eq!(tail.body["data"].as_array().unwrap().len(), 1);
    let past = h.get("/v1/devices?offset=50", &t.token).await;
    assert_eq!(past.status, 200);
    assert_eq!(past.body["data"].as_array().unwrap().len(), 0);
    let default = h.get("/v1/devices", &t.token).await;
    assert_eq!(default.body["limit"], 20);
    for q in ["limit=0", "limit=101", "offset=-1", "limit=abc"] {
        let r = h.get(&format!("/v1/devices?{q}"), &t.token).await;
        assert_eq!(r.status, 422, "{q}");
    }
}

#[tokio::test]
async fn pairing_codes_are_one_time() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let (device_id, code) = h.register(&t).await;
    let pair = |code: String, hw: &'static str| {
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/v1/device/pair",
                None,
                Some(json!({"pairing_code": code, "hardware_id": hw})),
            )
            .await
        }
    };
    let bad_hw = pair(code.clone(), "bad id!").await;
    assert_eq!(bad_hw.status, 422);
    assert_eq!(pair("ZZZZZZZZZZ".to_owned(), "hw-1").await.status, 404);

    let ok = pair(code.to_lowercase(), "hw-1").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let d = &ok.body["data"];
    assert_eq!(d["device_id"], device_id.as_str());
    assert_eq!(d["status"], "paired");
    assert!(d["device_secret"].as_str().unwrap().len() > 40);
    assert!(d["cert_valid_until"].is_string());

    let reuse = pair(code.clone(), "hw-2").await;
    assert_eq!(reuse.status, 409);
    assert_eq!(reuse.body["code"], "pairing_code_used");

    let (_, code2) = h.register(&t).await;
    let dup = pair(code2, "hw-1").await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.body["code"], "hardware_id_in_use");

    let device = h.get(&format!("/v1/devices/{device_id}"), &t.token).await;
    assert_eq!(device.body["data"]["hardware_id"], "hw-1");
    assert_eq!(device.body["data"]["status"], "paired");
    let reissue = h
        .post(
            &format!("/v1/devices/{device_id}/pairing-code"),
            &t.token,
            json!({}),
        )
        .await;
    assert_eq!(reissue.status, 409);
    assert_eq!(h.get("/v1/devices/not-a-uuid", &t.token).await.status, 404);
    assert_eq!(
        h.get("/v1/devices/6d2b9d0c-8a53-4bb1-9d0f-8f2f1f7f0c11", &t.token)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn expired_pairing_code_is_410_and_a_new_code_works() {
    let h = Harness::start_with(|c| c.pairing_code_ttl = Duration::from_millis(1500)).await;
    let t = h.tenant().await;
    let (device_id, code) = h.register(&t).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = h
        .call(
            Method::POST,
            "/v1/device/pair",
            None,
            Some(json!({"pairing_code": code, "hardware_id": "hw-9"})),
        )
        .await;
    assert_eq!(r.status, 410, "{}", r.body);
    let fresh = h
        .post(
            &format!("/v1/devices/{device_id}/pairing-code"),
            &t.token,
            json!({}),
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let new_code = fresh.body["data"]["pairing_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_code, code);
    // The replaced code is gone.
    let old = h
        .call(
            Method::POST,
            "/v1/device/pair",
            None,
            Some(json!({"pairing_code": code, "hardware_id": "hw-9"})),
        )
        .await;
    assert_eq!(old.status, 404);
    let ok = h
        .call(
            Method::POST,
            "/v1/device/pair",
            None,
            Some(json!({"pairing_code": new_code, "hardware_id": "hw-9"})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn revocation_ends_the_scanner_credential_and_fails_pending_challenges() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-rev").await;
    let id = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-rev"}))
        .await;
    assert_eq!(h.get("/v1/device/challenges", &s.secret).await.status, 200);
    let r = h
        .call(
            Method::DELETE,
            &format!("/v1/devices/{}", s.device_id),
            Some(&t.token),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["status"], "revoked");
    assert_eq!(h.get("/v1/device/challenges", &s.secret).await.status, 401);
    let c = h.get(&format!("/v1/challenges/{id}"), &t.token).await;
    assert_eq!(c.body["data"]["status"], "failed");
    assert_eq!(c.body["data"]["failure_reason"], "device_revoked");
    let again = h
        .post("/v1/identify", &t.token, json!({"hardware_id": "hw-rev"}))
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        h.post(
            "/v1/identify",
            &t.token,
            json!({"hardware_id": "hw-unknown"})
        )
        .await
        .status,
        404
    );
}
