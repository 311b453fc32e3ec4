//! Start-up reconciliation of galleries with the database.

use palmlink_engine::{PalmSide, RecordIds, Template};
use palmlink_store::{
    Challenge, ChallengeKind, ChallengePalm, ChallengeStatus, Device, DeviceStatus,
    EnrollmentCommit, OutboxEvent, Palm, PalmType, Tenant,
};
use serde_json::json;
use uuid::Uuid;

use super::*;

fn template(seed: u32) -> Template {
    let values: Vec<f32> = (0..Layout::DEFAULT.len())
        .map(|i| ((i as u32 * 7 + seed * 13) % 17) as f32 + 1.0)
        .collect();
    Template::from_f32(Layout::DEFAULT, &values).expect("template")
}

#[tokio::test]
async fn reconciliation_deletes_orphans_and_keeps_acknowledged_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let store = palmlink_store::open(&url).await.expect("store");
    let tenant = Tenant {
        id: Uuid::new_v4(),
        name: "t".into(),
        created_at: 0,
    };
    store.create_tenant(&tenant).await.expect("tenant");
    let tenant = tenant.id;
    let device = Device {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        device_name: "d".into(),
        location: "l".into(),
        status: DeviceStatus::Paired,
        hardware_id: Some("hw".into()),
        pairing_code: Some("CODE234567".into()),
        pairing_expires_at: None,
        paired_at: Some(0),
        cert_valid_until: None,
        last_seen_at: None,
        created_at: 0,
    };
    store.create_device(&device).await.expect("device");
    let challenge = Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        kind: ChallengeKind::Enroll,
        device_id: device.id,
        hardware_id: "hw".into(),
        external_user_id: Some("u".into()),
        palm_type: ChallengePalm::Right,
        top_k: None,
        status: ChallengeStatus::Pending,
        metadata: json!(null),
        result: None,
        failure_reason: None,
        created_at: 0,
        expires_at: i64::MAX,
        finished_at: None,
    };
    store.create_challenge(&challenge).await.expect("challenge");
    let user = store.ensure_user(tenant, "u", 0).await.expect("user");

    let galleries = Galleries::new(dir.path().join("galleries"));
    let gallery = galleries.get(tenant).expect("gallery");
    let known = RecordIds {
        feature_id: Uuid::new_v4().as_u128(),
        user_key: user.id.as_u128(),
        palm: PalmSide::Right,
    };
    let orphan = RecordIds {
        feature_id: Uuid::new_v4().as_u128(),
        user_key: user.id.as_u128(),
        palm: PalmSide::Left,
    };
    let known_row = gallery.insert(known, &template(1)).expect("insert");
    let orphan_row = gallery.insert(orphan, &template(2)).expect("insert");
    let palm = Palm {
        feature_id: Uuid::from_u128(known.feature_id),
        tenant_id: tenant,
        user_id: user.id,
        palm_type: PalmType::Right,
        row_id: known_row.0 as i64,
        enrolled_at: 0,
        vendor: "mock".into(),
        challenge_id: challenge.id,
    };
    let event = OutboxEvent {
        event_id: "evt_0".into(),
        tenant_id: tenant,
        event_type: "enrollment.complete".into(),
        payload: json!({}),
        occurred_at: 0,
        dispatched_at: None,
    };
    let commit = EnrollmentCommit {
        challenge_id: challenge.id,
        palms: vec![palm],
        result: json!({}),
        event,
    };
    assert!(store.complete_enrollment(&commit, 1).await.expect("commit"));

    reconcile(store.as_ref(), &galleries)
        .await
        .expect("reconcile");
    let live: Vec<_> = gallery
        .live_records()
        .into_iter()
        .map(|(row, _)| row)
        .collect();
    assert_eq!(live, vec![known_row]);
    assert_ne!(known_row, orphan_row);

    // A database row whose template vanished is reported, not fatal, and kept.
    gallery.delete(known_row).expect("delete");
    reconcile(store.as_ref(), &galleries)
        .await
        .expect("reconcile");
    assert_eq!(store.all_palms(tenant).await.expect("palms").len(), 1);
}
