use reqwest::Method;
use serde_json::json;

use crate::support::{capture, palm, Harness};

#[tokio::test]
async fn a_second_tenant_sees_404_for_everything_of_the_first() {
    let h = Harness::start().await;
    let a = h.tenant().await;
    let b = h.tenant().await;
    let sa = h.scanner(&a, "shared-hw").await;
    h.enroll(&a, &sa, "alice", "right", &palm(1)).await;
    let pending = h
        .challenge(&a, "/v1/identify", json!({"hardware_id": "shared-hw"}))
        .await;

    assert_eq!(
        h.get(&format!("/v1/devices/{}", sa.device_id), &b.token)
            .await
            .status,
        404
    );
    assert_eq!(
        h.call(
            Method::DELETE,
            &format!("/v1/devices/{}", sa.device_id),
            Some(&b.token),
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        h.post(
            &format!("/v1/devices/{}/pairing-code", sa.device_id),
            &b.token,
            json!({})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        h.get(&format!("/v1/challenges/{pending}"), &b.token)
            .await
            .status,
        404
    );
    assert_eq!(h.get("/v1/users/alice", &b.token).await.status, 404);
    assert_eq!(
        h.call(Method::DELETE, "/v1/users/alice", Some(&b.token), None)
            .await
            .status,
        404
    );
    assert_eq!(
        h.post(
            "/v1/verify",
            &b.token,
            json!({"external_user_id": "alice", "hardware_id": "shared-hw"})
        )
        .await
        .status,
        404
    );
    assert_eq!(
        h.post(
            "/v1/identify",
            &b.token,
            json!({"hardware_id": "shared-hw"})
        )
        .await
        .status,
        404
    );
    assert_eq!(h.get("/v1/devices", &b.token).await.body["total"], 0);
    assert_eq!(h.get("/v1/users", &b.token).await.body["total"], 0);
    assert_eq!(h.get("/v1/challenges", &b.token).await.body["total"], 0);

    // The same hardware id may pair in another tenant; its scanner cannot touch A's challenge.
    let sb = h.scanner(&b, "shared-hw").await;
    assert_eq!(
        h.capture(&sb, &pending, json!([capture("right", &palm(1))]))
            .await
            .status,
        404
    );
    assert_eq!(
        h.get("/v1/device/challenges", &sb.secret).await.body["data"],
        json!([])
    );

    // B's gallery does not hold A's people.
    let id = h
        .challenge(&b, "/v1/identify", json!({"hardware_id": "shared-hw"}))
        .await;
    let r = h
        .capture(&sb, &id, json!([capture("right", &palm(1))]))
        .await;
    assert_eq!(r.body["data"]["result"]["candidates"], json!([]));
    assert_eq!(r.body["data"]["result"]["search"]["gallery_size"], 0);
}
