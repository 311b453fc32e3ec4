//! Backends on fresh databases, and records to store.

use std::sync::Arc;

use palmlink_store::{
    Challenge, ChallengeKind, ChallengePalm, ChallengeStatus, Device, DeviceStatus, OutboxEvent,
    Store, Tenant,
};
use serde_json::json;
use uuid::Uuid;

/// The SQLite backend on a database file of its own.
pub struct Sqlite {
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    pub async fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = palmlink_store::open(&url).await.unwrap();
        // Opening again applies no migration twice.
        palmlink_store::open(&url).await.unwrap();
        Sqlite { store, _dir: dir }
    }
}

pub async fn tenant(store: &dyn Store, name: &str) -> Uuid {
    let tenant = Tenant {
        id: Uuid::new_v4(),
        name: name.into(),
        created_at: 1,
    };
    store.create_tenant(&tenant).await.unwrap();
    tenant.id
}

pub fn device(tenant: Uuid, code: &str) -> Device {
    Device {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        device_name: "d".into(),
        location: "l".into(),
        status: DeviceStatus::PendingPair,
        hardware_id: None,
        pairing_code: Some(code.into()),
        pairing_expires_at: Some(i64::MAX),
        paired_at: None,
        cert_valid_until: None,
        last_seen_at: None,
        created_at: 1,
    }
}

pub fn event(tenant: Uuid, n: i64) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("evt_{n:032x}"),
        tenant_id: tenant,
        event_type: "device.paired".into(),
        payload: json!({"n": n}),
        occurred_at: n,
        dispatched_at: None,
    }
}

pub fn challenge(tenant: Uuid, device: Uuid, expires_at: i64) -> Challenge {
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
