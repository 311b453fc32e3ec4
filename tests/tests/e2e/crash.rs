use reqwest::Method;
use serde_json::json;

use crate::support::{capture, palm, recapture, Harness};
use palmlink_tests::{operator, ServerProcess};

#[tokio::test]
async fn acknowledged_enrollments_survive_sigkill() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);

    // Operator commands run beside the live server.
    let tenant = operator(&bin, dir.path(), &["tenant", "create", "--name", "crash"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();

    // Reuse the harness helpers against the child process.
    let mut h = Harness::start().await;
    h.base = server.base.clone();
    let token = h.token(&client_id, &secret).await;
    let t = crate::support::Tenant {
        id: tenant_id.clone(),
        client_id: client_id.clone(),
        secret: secret.clone(),
        token,
    };
    let s = h.scanner(&t, "hw-crash").await;
    let people: Vec<(String, Vec<Vec<f32>>)> =
        (0..8).map(|i| (format!("p{i}"), palm(700 + i))).collect();
    for (name, p) in &people {
        let done = h.enroll(&t, &s, name, "right", p).await;
        assert_eq!(done["status"], "completed");
    }
    // One more enrollment left pending at the kill: it must not appear afterwards.
    h.challenge(
        &t,
        "/v1/enroll",
        json!({"external_user_id": "late", "hardware_id": "hw-crash", "palm_type": "left"}),
    )
    .await;
    server.kill();

    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);
    h.base = server.base.clone();
    // The signing key persisted: the old token still verifies.
    let users = h.get("/v1/users?limit=100", &t.token).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["total"], 8);
    for (i, (name, p)) in people.iter().enumerate() {
        let id = h
            .challenge(
                &t,
                "/v1/verify",
                json!({"external_user_id": name, "hardware_id": "hw-crash"}),
            )
            .await;
        let r = h
            .capture(
                &s,
                &id,
                json!([capture("right", &recapture(p, i as u64, 0.3))]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["data"]["result"]["matched"], true,
            "{name} no longer verifies"
        );
    }
    let rotated = operator(
        &bin,
        dir.path(),
        &["client", "rotate", "--client", &client_id],
    );
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    h.token(&client_id, &new_secret).await;
    h.token(&client_id, &secret).await;
    operator(
        &bin,
        dir.path(),
        &["client", "revoke-old-secret", "--client", &client_id],
    );
    let old = h
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})),
        )
        .await;
    assert_eq!(old.status, 401);
    let deleted = operator(
        &bin,
        dir.path(),
        &["client", "delete", "--client", &client_id],
    );
    assert_eq!(deleted["deleted"], true);
    assert_eq!(
        h.call(Method::GET, "/v1/users", Some(&t.token), None)
            .await
            .status,
        401
    );
    drop(server);
    if let Some(inner) = h.server.take() {
        inner.stop().await.expect("stop");
    }
}
