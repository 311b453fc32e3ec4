//! What is particular to the SQLite backend: the plans of the hot statements and upgrades of
//! older databases. Behaviour shared with other backends is in the conformance suite.

use rusqlite::Connection;
use serde_json::json;
use uuid::Uuid;

use super::challenges::{EXPIRE_PENDING, FAIL_PENDING_OF_DEVICE, PENDING_OF_DEVICE};
use super::devices::DEVICE_BY_HARDWARE;
use super::*;
use crate::{
    Actor, AuditRecord, Challenge, ChallengeKind, ChallengePalm, ChallengeStatus,
    ChallengeStore as _, Device, DeviceStatus, DeviceStore as _, EndRecord, LogOp, OutboxEvent,
    SealedTemplate, TemplateStore as _, Tenant,
};

/// The query plan SQLite chooses for `sql`, one line per step.
fn plan(c: &Connection, sql: &str) -> String {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    // Parameters left unbound are NULL, which does not change the plan.
    let steps = stmt
        .raw_query()
        .mapped(|r| r.get::<_, String>("detail"))
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    steps.join("\n")
}

fn device(tenant: Uuid) -> Device {
    Device {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        device_name: "d".into(),
        location: "l".into(),
        status: DeviceStatus::PendingPair,
        hardware_id: None,
        pairing_code: Some("CODE234567".into()),
        pairing_expires_at: Some(i64::MAX),
        paired_at: None,
        cert_valid_until: None,
        last_seen_at: None,
        created_at: 1,
    }
}

/// A tenant and (if given) a device as a database before the audit log held them.
async fn insert_old_rows(old: &SqliteStore, tenant: &Tenant, scanner: Option<&Device>) {
    let (t, d) = (tenant.clone(), scanner.cloned());
    old.db
        .write(move |c| {
            c.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![t.id.to_string(), t.name, t.created_at],
            )?;
            if let Some(d) = d {
                c.execute(
                    "INSERT INTO devices (id, tenant_id, device_name, location, status, \
                     pairing_code, pairing_expires_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    rusqlite::params![
                        d.id.to_string(),
                        d.tenant_id.to_string(),
                        d.device_name,
                        d.location,
                        d.status.as_str(),
                        d.pairing_code,
                        d.pairing_expires_at,
                        d.created_at,
                    ],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// An audit record of `tenant`.
fn audit(tenant: Uuid, action: &str) -> AuditRecord {
    AuditRecord {
        tenant_id: tenant,
        at: 1,
        actor: Actor::system(),
        action: action.into(),
        resource_type: "test".into(),
        resource_id: "1".into(),
        outcome: "success".into(),
        details: json!({}),
    }
}

/// The records of a challenge the store ends by itself.
fn end_event(c: &Challenge) -> EndRecord {
    EndRecord {
        event: OutboxEvent {
            event_id: format!("evt_{}", c.id.simple()),
            tenant_id: c.tenant_id,
            event_type: "challenge.failed".into(),
            payload: json!({"challenge_id": c.id}),
            occurred_at: c.finished_at.unwrap_or_default(),
            dispatched_at: None,
        },
        audit: audit(c.tenant_id, "challenge.failed"),
    }
}

fn challenge(tenant: Uuid, device: Uuid, expires_at: i64) -> Challenge {
    Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        kind: ChallengeKind::Identify,
        device_id: device,
        hardware_id: "hw".into(),
        external_user_id: None,
        palm_type: ChallengePalm::Any,
        top_k: Some(5),
        status: ChallengeStatus::Pending,
        metadata: json!({"k": "v"}),
        result: None,
        failure_reason: None,
        created_at: 1,
        expires_at,
        finished_at: None,
        log_position: 0,
        captures: None,
    }
}

#[tokio::test]
async fn the_hot_lookups_search_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let expected = [
        (
            DEVICE_BY_HARDWARE,
            "USING INDEX devices_hardware (tenant_id=? AND hardware_id=?)",
        ),
        (
            PENDING_OF_DEVICE,
            "USING INDEX challenges_device_pending (device_id=?)",
        ),
        // A covering search of the index is as good: it finds the rows to update.
        (
            FAIL_PENDING_OF_DEVICE,
            "INDEX challenges_device_pending (device_id=?)",
        ),
        (EXPIRE_PENDING, "INDEX challenges_pending_expiry"),
    ];
    for (sql, search) in expected {
        let found = store.db.read(|c| Ok(plan(c, sql))).unwrap();
        assert!(found.contains(search), "{sql}\n{found}");
    }
}

#[tokio::test]
async fn the_purge_and_the_catch_up_read_by_index() {
    use crate::retention::purgeable;
    use crate::templates::LOG_TEMPLATES_AFTER;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let expected: [(&str, &[&str]); 4] = [
        (
            purgeable!(challenges),
            &["USING INDEX challenges_tenant (tenant_id=? AND created_at<?)"],
        ),
        (
            purgeable!(events),
            &[
                "INDEX outbox_events_tenant_occurred (tenant_id=? AND occurred_at<?)",
                // A pending delivery of the event, found by subscription and event.
                "INDEX sqlite_autoindex_webhook_deliveries_2 (webhook_id=? AND event_id=?)",
            ],
        ),
        (
            purgeable!(deliveries),
            &["INDEX webhook_deliveries_webhook (webhook_id=? AND created_at<?)"],
        ),
        (
            LOG_TEMPLATES_AFTER,
            &[
                "INDEX sqlite_autoindex_template_log_1 (tenant_id=? AND sequence>?)",
                "INDEX palms_tenant (tenant_id=? AND feature_id=?)",
            ],
        ),
    ];
    for (sql, searches) in expected {
        let found = store.db.read(|c| Ok(plan(c, sql))).unwrap();
        for search in searches {
            assert!(found.contains(search), "{sql}\n{found}");
        }
        assert!(!found.contains("SCAN"), "{sql}\n{found}");
        assert!(!found.contains("TEMP B-TREE"), "{sql}\n{found}");
    }
}

#[tokio::test]
async fn a_database_of_version_2_keeps_its_pending_challenges_through_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.db").display());
    let tenant = Tenant {
        id: Uuid::new_v4(),
        name: "t".into(),
        created_at: 0,
    };
    let scanner = device(tenant.id);
    let (live, stale, done) = (
        challenge(tenant.id, scanner.id, i64::MAX),
        challenge(tenant.id, scanner.id, 50),
        challenge(tenant.id, scanner.id, i64::MAX),
    );
    {
        let old = SqliteStore {
            db: SqliteDb::open(&url).await.unwrap(),
        };
        migrations::migrate(&old, MIGRATIONS, 2).await.unwrap();
        insert_old_rows(&old, &tenant, Some(&scanner)).await;
        // Written as a version 2 database held them: the columns of that version only.
        for (ch, status) in [
            (&live, "pending"),
            (&stale, "pending"),
            (&done, "completed"),
        ] {
            let row = [
                ch.id.to_string(),
                ch.tenant_id.to_string(),
                ch.device_id.to_string(),
                status.to_owned(),
                ch.expires_at.to_string(),
            ];
            old.db
                .write(|c| {
                    c.execute(
                        "INSERT INTO challenges (id, tenant_id, kind, device_id, hardware_id, \
                         palm_type, top_k, status, metadata, created_at, expires_at) \
                         VALUES (?1, ?2, 'identify', ?3, 'hw', 'any', 5, ?4, 'null', 1, ?5)",
                        row,
                    )
                })
                .await
                .unwrap();
        }
    }
    let store = SqliteStore::open(&url).await.unwrap();
    let pending = store.pending_for_device(scanner.id, 10).await.unwrap();
    let ids: Vec<Uuid> = pending.iter().map(|c| c.id).collect();
    let mut expected = vec![live.id, stale.id];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(store.expire_challenges(100, &end_event).await.unwrap(), 1);
    assert!(store
        .revoke_device(
            tenant.id,
            scanner.id,
            200,
            &audit(tenant.id, "device.revoked"),
            &end_event
        )
        .await
        .unwrap());
    for (id, status) in [
        (live.id, ChallengeStatus::Failed),
        (stale.id, ChallengeStatus::Expired),
        (done.id, ChallengeStatus::Completed),
    ] {
        let ch = store.get_challenge(tenant.id, id).await.unwrap().unwrap();
        assert_eq!(ch.status, status);
    }
    assert!(store
        .pending_for_device(scanner.id, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn palms_of_a_version_3_database_wait_for_their_templates_and_are_sealed_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("v3.db").display());
    let tenant = Tenant {
        id: Uuid::new_v4(),
        name: "t".into(),
        created_at: 0,
    };
    let (user, feature, challenge_id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let old = SqliteStore {
            db: SqliteDb::open(&url).await.unwrap(),
        };
        migrations::migrate(&old, MIGRATIONS, 3).await.unwrap();
        insert_old_rows(&old, &tenant, None).await;
        let ids = [tenant.id, user, feature, challenge_id].map(|u| u.to_string());
        old.db
            .write(|c| {
                c.execute(
                    "INSERT INTO users (id, tenant_id, external_user_id, created_at) \
                     VALUES (?1, ?2, 'x', 1)",
                    [&ids[1], &ids[0]],
                )?;
                c.execute(
                    "INSERT INTO palms (feature_id, tenant_id, user_id, palm_type, row_id, \
                     enrolled_at, vendor, challenge_id) VALUES (?1, ?2, ?3, 'left', 41, 2, 'mock', ?4)",
                    [&ids[2], &ids[0], &ids[1], &ids[3]],
                )
            })
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&url).await.unwrap();
    let waiting = store.unsealed_palms(tenant.id).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].palm.feature_id, waiting[0].row),
        (feature, Some(41))
    );
    let sealed = SealedTemplate {
        sealed: vec![7; 40],
    };
    assert_eq!(
        store
            .seal_palms(tenant.id, &[(feature, sealed.clone())], 5)
            .await
            .unwrap(),
        1
    );
    // Sealed once: a second attempt changes nothing and logs nothing.
    let other = SealedTemplate {
        sealed: vec![9; 40],
    };
    assert_eq!(
        store
            .seal_palms(tenant.id, &[(feature, other)], 6)
            .await
            .unwrap(),
        1
    );
    let stored = store.sealed_templates(tenant.id, &[feature]).await.unwrap();
    assert_eq!(stored[0].sealed, sealed.sealed);
    assert!(store.unsealed_palms(tenant.id).await.unwrap().is_empty());
    let log = store.log_after(tenant.id, 0, 10).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|e| (e.sequence, e.op, e.feature_id))
            .collect::<Vec<_>>(),
        [(1, LogOp::Insert, feature)]
    );
}
