//! What is particular to the SQLite backend: the plans of the hot statements and upgrades of
//! older databases. Behaviour shared with other backends is in the conformance suite.

use rusqlite::Connection;
use serde_json::json;
use uuid::Uuid;

use super::challenges::{EXPIRE_PENDING, FAIL_PENDING_OF_DEVICE, PENDING_OF_DEVICE};
use super::devices::DEVICE_BY_HARDWARE;
use super::*;
use crate::{
    Challenge, ChallengeKind, ChallengePalm, ChallengeStatus, ChallengeStore as _, Device,
    DeviceStatus, DeviceStore as _, OutboxEvent, Tenant, TenantStore as _,
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
        (
            FAIL_PENDING_OF_DEVICE,
            "USING INDEX challenges_device_pending (device_id=?)",
        ),
        (EXPIRE_PENDING, "USING INDEX challenges_pending_expiry"),
    ];
    for (sql, search) in expected {
        let found = store.db.read(|c| Ok(plan(c, sql))).unwrap();
        assert!(found.contains(search), "{sql}\n{found}");
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
        old.create_tenant(&tenant).await.unwrap();
        old.create_device(&scanner).await.unwrap();
        for ch in [&live, &stale, &done] {
            old.create_challenge(ch).await.unwrap();
        }
        let result = json!({"matched": true});
        let event = OutboxEvent {
            event_id: "evt_1".into(),
            tenant_id: tenant.id,
            event_type: "identification.complete".into(),
            payload: result.clone(),
            occurred_at: 10,
            dispatched_at: None,
        };
        assert!(old
            .complete_challenge(done.id, &result, &event, 10)
            .await
            .unwrap());
    }
    let store = SqliteStore::open(&url).await.unwrap();
    let pending = store.pending_for_device(scanner.id, 10).await.unwrap();
    let ids: Vec<Uuid> = pending.iter().map(|c| c.id).collect();
    let mut expected = vec![live.id, stale.id];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(store.expire_challenges(100).await.unwrap(), 1);
    assert!(store
        .revoke_device(tenant.id, scanner.id, 200)
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
