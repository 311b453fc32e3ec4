use reqwest::Method;
use serde_json::json;

use crate::support::{capture, palm, recapture, Harness};

#[tokio::test]
async fn users_are_listed_and_erased() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-u").await;
    let dave = palm(400);
    h.enroll(&t, &s, "dave", "left", &dave).await;
    h.enroll(&t, &s, "dave", "right", &palm(401)).await;
    h.enroll(&t, &s, "erin", "left", &palm(402)).await;

    let list = h.get("/v1/users?limit=1", &t.token).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(h.get("/v1/users?limit=1000", &t.token).await.status, 422);

    let user = h.get("/v1/users/dave", &t.token).await;
    assert_eq!(user.status, 200);
    let palms = user.body["data"]["palms"].as_array().unwrap();
    assert_eq!(palms.len(), 2);
    for p in palms {
        assert!(p["feature_id"].is_string() && p["enrolled_at"].is_string());
        assert_eq!(p["vendor"], "mock");
    }
    assert_eq!(h.get("/v1/users/nobody", &t.token).await.status, 404);

    let del = h
        .call(Method::DELETE, "/v1/users/dave", Some(&t.token), None)
        .await;
    assert_eq!(del.status, 204);
    assert_eq!(h.get("/v1/users/dave", &t.token).await.status, 404);
    assert_eq!(
        h.call(Method::DELETE, "/v1/users/dave", Some(&t.token), None)
            .await
            .status,
        404
    );
    assert_eq!(
        h.post(
            "/v1/verify",
            &t.token,
            json!({"external_user_id": "dave", "hardware_id": "hw-u"})
        )
        .await
        .status,
        404
    );

    // Erased templates are gone from 1:N too.
    let id = h
        .challenge(
            &t,
            "/v1/identify",
            json!({"hardware_id": "hw-u", "palm_type": "left"}),
        )
        .await;
    let r = h
        .capture(&s, &id, json!([capture("left", &recapture(&dave, 5, 0.3))]))
        .await;
    let candidates = r.body["data"]["result"]["candidates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(candidates.len(), 1);
    assert_eq!(candidates[0]["external_user_id"], "erin");
    assert_eq!(r.body["data"]["result"]["search"]["gallery_size"], 1);

    // The user can enroll again afresh.
    h.enroll(&t, &s, "dave", "left", &dave).await;
}

#[tokio::test]
async fn matching_settings_are_validated_and_applied() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-m").await;
    let r = h.get("/v1/settings/matching", &t.token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["match_policy"], "all_thresholds");
    assert_eq!(r.body["data"]["thresholds"].as_array().unwrap().len(), 10);

    let put = |body| {
        h.call(
            Method::PUT,
            "/v1/settings/matching",
            Some(&t.token),
            Some(body),
        )
    };
    assert_eq!(
        put(json!({"thresholds": vec![0.5; 9], "match_policy": "mean"}))
            .await
            .status,
        422
    );
    assert_eq!(
        put(json!({"thresholds": vec![1.5; 10], "match_policy": "mean"}))
            .await
            .status,
        422
    );
    assert_eq!(
        put(json!({"thresholds": vec![0.5; 10], "match_policy": "best"}))
            .await
            .status,
        422
    );
    assert_eq!(
        put(json!({"thresholds": vec![0.5; 10], "match_policy": "k_of_n", "k": 11}))
            .await
            .status,
        422
    );
    let ok = put(json!({"thresholds": vec![-1.0; 10], "match_policy": "k_of_n", "k": 8})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["data"]["k"], 8);

    // With thresholds at -1 even a stranger matches.
    h.enroll(&t, &s, "frank", "right", &palm(500)).await;
    let id = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "frank", "hardware_id": "hw-m"}),
        )
        .await;
    let r = h
        .capture(&s, &id, json!([capture("right", &palm(501))]))
        .await;
    assert_eq!(r.body["data"]["result"]["matched"], true);
    assert_eq!(r.body["data"]["result"]["match_policy"], "k_of_n");

    let scoped = h.tenant_with_scopes(Some("devices")).await;
    assert_eq!(
        h.get("/v1/settings/matching", &scoped.token).await.status,
        403
    );
}
