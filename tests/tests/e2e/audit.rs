//! The audit log end to end: every action of a run in order with its actor, `GET
//! /v1/audit` with its filters, scope and tenant isolation, `palmlink audit verify` against
//! a database altered by hand, and entries that match their changes one to one after a
//! SIGKILL during a burst of enrollments.

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::receiver::Receiver;
use crate::support::{capture, palm, recapture, Harness, Tenant};
use palmlink_tests::{operator, ServerProcess};

/// Every entry of the tenant's log, oldest first.
async fn entries(h: &Harness, t: &Tenant) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let r = h
            .get(
                &format!("/v1/audit?offset={}&limit=100", out.len()),
                &t.token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.body["data"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_action_of_a_run_is_audited_once_in_order_with_its_actor() {
    // Loopback webhook endpoints allowed, for the subscription's entries.
    let h = Harness::start_with(|c| c.allow_http_webhooks = true).await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-audit").await;
    let alice = palm(51);
    h.enroll(&t, &s, "alice", "right", &alice).await;
    let v = h
        .challenge(
            &t,
            "/v1/verify",
            json!({"external_user_id": "alice", "hardware_id": "hw-audit"}),
        )
        .await;
    let r = h
        .capture(
            &s,
            &v,
            json!([capture("right", &recapture(&alice, 1, 0.2))]),
        )
        .await;
    assert_eq!(r.body["data"]["result"]["matched"], true, "{}", r.body);
    let i = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-audit"}))
        .await;
    h.capture(
        &s,
        &i,
        json!([capture("right", &recapture(&alice, 2, 0.2))]),
    )
    .await;
    let c = h
        .challenge(&t, "/v1/identify", json!({"hardware_id": "hw-audit"}))
        .await;
    h.post(
        &format!("/v1/device/challenges/{c}/cancel"),
        &s.secret,
        json!({"reason": "spoof"}),
    )
    .await;
    let settings = h.get("/v1/settings/matching", &t.token).await.body["data"].clone();
    let r = h
        .call(
            Method::PUT,
            "/v1/settings/matching",
            Some(&t.token),
            Some(settings),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h
        .call(Method::DELETE, "/v1/users/alice", Some(&t.token), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = h
        .call(
            Method::DELETE,
            &format!("/v1/devices/{}", s.device_id),
            Some(&t.token),
            None,
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    // A scanner registered and given a fresh code; a subscription created, changed, deleted.
    let (pending, first_code) = h.register(&t).await;
    let r = h
        .post(
            &format!("/v1/devices/{pending}/pairing-code"),
            &t.token,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let second_code = r.body["data"]["pairing_code"].as_str().unwrap().to_owned();
    let rx = Receiver::start(vec![]).await;
    let r = h
        .post(
            "/v1/webhooks",
            &t.token,
            json!({"name": "audited", "events": ["device.paired"], "endpoint": rx.url}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let hook = r.body["data"]["webhook_id"].as_str().unwrap().to_owned();
    let signing = r.body["data"]["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook_path = format!("/v1/webhooks/{hook}");
    let r = h
        .call(
            Method::PATCH,
            &hook_path,
            Some(&t.token),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = h
        .call(Method::DELETE, &hook_path, Some(&t.token), None)
        .await;
    assert!(r.status.is_success(), "{}", r.body);

    let log = entries(&h, &t).await;
    assert_eq!(
        actions(&log),
        [
            "tenant.created",
            "client.created",
            "device.registered",
            "device.paired",
            "enrollment.completed",
            "verification.completed",
            "identification.completed",
            "challenge.failed",
            "settings.updated",
            "user.erased",
            "device.revoked",
            "device.registered",
            "device.pairing_code_issued",
            "webhook.created",
            "webhook.updated",
            "webhook.deleted",
        ]
    );
    let actor = |i: usize| {
        (
            log[i]["actor"]["type"].clone(),
            log[i]["actor"]["id"].clone(),
        )
    };
    let device = (json!("device"), json!(s.device_id));
    let client = (json!("client"), json!(t.client_id));
    assert_eq!(actor(0), (json!("operator"), json!("cli")));
    assert_eq!(actor(2), client);
    // The scanner pairs itself.
    assert_eq!(actor(3), device);
    assert_eq!(
        log[3]["resource"],
        json!({"type": "device", "id": s.device_id})
    );
    assert_eq!(log[3]["details"]["hardware_id"], "hw-audit");
    assert_eq!(actor(4), device);
    assert_eq!(actor(5), device);
    assert_eq!(actor(7), device);
    assert_eq!(actor(8), client);
    assert_eq!(actor(10), client);
    for e in &log[11..16] {
        assert_eq!(
            (e["actor"]["type"].clone(), e["actor"]["id"].clone()),
            client,
            "{e}"
        );
    }
    assert_eq!(
        log[12]["resource"],
        json!({"type": "device", "id": pending})
    );
    for e in &log[13..16] {
        assert_eq!(e["resource"], json!({"type": "webhook", "id": hook}));
    }
    assert_eq!(log[14]["details"]["changed"], json!(["name"]));
    // Decisions carry what decided them, and never a template.
    let verified = &log[5];
    assert_eq!(verified["outcome"], "match");
    assert_eq!(verified["resource"], json!({"type": "challenge", "id": v}));
    assert_eq!(verified["details"]["scores"].as_array().unwrap().len(), 10);
    assert_eq!(
        verified["details"]["thresholds"].as_array().unwrap().len(),
        10
    );
    assert_eq!(verified["details"]["captures"][0]["liveness"], 0.99);
    assert_eq!(log[7]["details"]["failure_reason"], "spoof");
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("template") && !text.contains("blocks"));
    assert!(!text.contains(&t.secret) && !text.contains(&s.secret));
    // Pairing codes are credentials, as is a subscription's signing secret.
    for secret in [&first_code, &second_code, &signing] {
        assert!(!text.contains(secret.as_str()));
    }
    // One chain: sequences from 1, each linked to the one before.
    let mut prev = "0".repeat(64);
    for (n, e) in log.iter().enumerate() {
        assert_eq!(e["sequence"], n as u64 + 1);
        assert_eq!(e["prev_hash"], prev.as_str());
        prev = e["hash"].as_str().unwrap().to_owned();
    }

    // Filters.
    let only = h
        .get("/v1/audit?action=verification.completed", &t.token)
        .await;
    assert_eq!(only.body["total"], 1);
    assert_eq!(only.body["data"][0]["sequence"], 6);
    let at = log[8]["at"].as_str().unwrap();
    let since = h
        .get(
            &format!("/v1/audit?since={}", at.replace('+', "%2B")),
            &t.token,
        )
        .await;
    assert_eq!(
        since.body["data"][0]["action"], "settings.updated",
        "{}",
        since.body
    );
    assert_eq!(
        h.get("/v1/audit?since=yesterday", &t.token).await.status,
        422
    );

    // Another tenant sees none of it; a client without the scope is refused.
    let other = h.tenant().await;
    let theirs = entries(&h, &other).await;
    assert_eq!(actions(&theirs), ["tenant.created", "client.created"]);
    let narrow = h.tenant_with_scopes(Some("users webhooks")).await;
    let r = h.get("/v1/audit", &narrow.token).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// Runs `palmlink audit verify` on `dir`: (exit code, stdout, stderr).
fn verify(bin: &Path, dir: &Path) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sql` on the node's database file.
fn tamper(dir: &Path, sql: &str) {
    let db = rusqlite::Connection::open(dir.join("palmlink.db")).expect("open database");
    let changed = db.execute_batch(sql);
    changed.expect("tamper");
}

#[tokio::test]
async fn verify_names_the_first_altered_deleted_or_reordered_entry() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let tenant = operator(&bin, dir.path(), &["tenant", "create", "--name", "audited"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        operator(
            &bin,
            dir.path(),
            &["client", "rotate", "--client", &client_id],
        );
    }
    operator(
        &bin,
        dir.path(),
        &["client", "revoke-old-secret", "--client", &client_id],
    );
    // tenant.created, client.created, 3 x client.rotated, client.old_secret_revoked.
    let (code, out, err) = verify(&bin, dir.path());
    assert_eq!(code, 0, "{out}{err}");
    let line: Value = serde_json::from_str(out.trim()).expect("one line");
    assert_eq!(
        line,
        json!({"tenant_id": tenant_id, "entries": 6, "ok": true})
    );

    // A copy of the whole database (its write-ahead log folded in) to start each case from.
    let backup = dir.path().join("backup.db");
    rusqlite::Connection::open(dir.path().join("palmlink.db"))
        .expect("open database")
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    std::fs::copy(dir.path().join("palmlink.db"), &backup).unwrap();
    let restore = || {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("palmlink.db{suffix}")));
        }
        std::fs::copy(&backup, dir.path().join("palmlink.db")).unwrap();
    };
    let cases = [
        (
            "UPDATE audit_log SET outcome = 'failed' WHERE sequence = 4",
            4,
        ),
        (
            "UPDATE audit_log SET actor_id = 'someone' WHERE sequence = 2",
            2,
        ),
        ("DELETE FROM audit_log WHERE sequence = 3", 3),
        ("DELETE FROM audit_log WHERE sequence = 6", 6),
        (
            "UPDATE audit_log SET sequence = -1 WHERE sequence = 4; \
             UPDATE audit_log SET sequence = 4 WHERE sequence = 5; \
             UPDATE audit_log SET sequence = 5 WHERE sequence = -1",
            4,
        ),
    ];
    for (sql, bad) in cases {
        restore();
        assert_eq!(verify(&bin, dir.path()).0, 0, "restored before: {sql}");
        tamper(dir.path(), sql);
        let (code, out, err) = verify(&bin, dir.path());
        assert_eq!(code, 1, "{sql}: {out}{err}");
        let line: Value = serde_json::from_str(out.trim()).expect("one line");
        assert_eq!(line["ok"], false, "{sql}");
        assert_eq!(line["first_bad_sequence"], bad, "{sql}");
        assert!(err.contains(&format!("sequence {bad}")), "{sql}: {err}");
    }
}

#[tokio::test]
async fn entries_match_enrollments_one_to_one_after_sigkill_during_a_burst() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);
    let tenant = operator(&bin, dir.path(), &["tenant", "create", "--name", "burst"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let mut h = Harness::start().await;
    h.base = server.base.clone();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let token = h.token(&client_id, &secret).await;
    let t = Tenant {
        id: tenant_id.clone(),
        client_id,
        secret,
        token,
    };
    let s = h.scanner(&t, "hw-burst").await;
    // A burst of enrollments from concurrent tasks; the node dies in the middle of it.
    let h = std::sync::Arc::new(h);
    let t = std::sync::Arc::new(t);
    let s = std::sync::Arc::new(s);
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let (h, t, s) = (h.clone(), t.clone(), s.clone());
        burst.spawn(async move {
            let id = h
                .post(
                    "/v1/enroll",
                    &t.token,
                    json!({"external_user_id": format!("u{i}"), "hardware_id": "hw-burst", "palm_type": "right"}),
                )
                .await;
            let Some(id) = id.body["data"]["challenge_id"].as_str().map(str::to_owned) else {
                return;
            };
            let _ = h
                .capture(&s, &id, json!([capture("right", &palm(900 + i))]))
                .await;
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    server.kill();
    while burst.join_next().await.is_some() {}

    let url = format!("sqlite://{}", dir.path().join("palmlink.db").display());
    let store = palmlink_store::open(&url).await.expect("store");
    let tenant: palmlink_store::Tenant = store
        .get_tenant(tenant_id.parse().unwrap())
        .await
        .unwrap()
        .expect("tenant");
    // Users with a palm: a user row is written before its enrollment commits.
    let palms = store.all_palms(tenant.id).await.unwrap();
    let ids: Vec<_> = palms.iter().map(|p| p.user_id).collect();
    let users = store.get_users_by_ids(tenant.id, &ids).await.unwrap();
    let (log, _) = store
        .list_audit(
            tenant.id,
            &palmlink_store::AuditFilter::default(),
            0,
            10_000,
        )
        .await
        .unwrap();
    let enrolled_entries: Vec<String> = log
        .iter()
        .filter(|e| e.record.action == "enrollment.completed")
        .map(|e| {
            e.record.details["external_user_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut enrolled: Vec<String> = users.iter().map(|u| u.external_user_id.clone()).collect();
    let mut audited = enrolled_entries.clone();
    enrolled.sort();
    audited.sort();
    assert!(
        !enrolled.is_empty(),
        "some enrollments were acknowledged before the kill"
    );
    assert_eq!(audited, enrolled, "one entry per enrollment, and no other");
    let check = palmlink_store::verify_chain(store.as_ref(), tenant.id)
        .await
        .unwrap();
    assert_eq!(check.first_bad, None);
    // The restarted node serves the same log.
    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);
    let mut h = std::sync::Arc::try_unwrap(h).ok().expect("one owner");
    h.base = server.base.clone();
    let listed = entries(&h, &t).await;
    assert_eq!(listed.len(), log.len());
}
