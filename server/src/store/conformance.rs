//! Behaviour every [`Store`] implementation must share, run against each backend.

use serde_json::json;
use uuid::Uuid;

use super::*;

pub(super) fn device(tenant: Uuid, code: &str) -> Device {
    Device {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        device_name: "d".into(),
        location: "l".into(),
        status: "pending_pair".into(),
        hardware_id: None,
        pairing_code: Some(code.into()),
        pairing_expires_at: Some(i64::MAX),
        paired_at: None,
        cert_valid_until: None,
        last_seen_at: None,
        created_at: 1,
    }
}

fn event(tenant: Uuid, n: i64) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("evt_{n:032x}"),
        tenant_id: tenant,
        event_type: "device.paired".into(),
        payload: json!({"n": n}),
        occurred_at: n,
        dispatched_at: None,
    }
}

pub(super) fn challenge(tenant: Uuid, device: Uuid, expires_at: i64) -> Challenge {
    Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        kind: "identify".into(),
        device_id: device,
        hardware_id: "hw".into(),
        external_user_id: None,
        palm_type: "any".into(),
        top_k: Some(5),
        status: "pending".into(),
        metadata: json!({"k": "v"}),
        result: None,
        failure_reason: None,
        created_at: 1,
        expires_at,
        finished_at: None,
    }
}

/// Runs the shared behaviour against `store`.
pub(crate) async fn exercise(store: &dyn Store) {
    let tenant = store.create_tenant("t").await.unwrap().id;
    let other = store.create_tenant("u").await.unwrap().id;

    // Clients: two secret slots.
    let client = Client {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: "c".into(),
        scopes: "devices".into(),
        secret_hash: "h1".into(),
        old_secret_hash: None,
        created_at: 1,
    };
    store.create_client(&client).await.unwrap();
    assert!(store.rotate_client_secret(client.id, "h2").await.unwrap());
    let c = store.get_client(client.id).await.unwrap().unwrap();
    assert_eq!(
        (c.secret_hash.as_str(), c.old_secret_hash.as_deref()),
        ("h2", Some("h1"))
    );
    assert!(store.revoke_old_client_secret(client.id).await.unwrap());
    assert_eq!(
        store
            .get_client(client.id)
            .await
            .unwrap()
            .unwrap()
            .old_secret_hash,
        None
    );
    assert!(store.delete_client(client.id).await.unwrap());
    assert!(store.get_client(client.id).await.unwrap().is_none());
    assert!(!store.delete_client(client.id).await.unwrap());

    // Devices: pairing is one-time, hardware ids unique among paired devices of a tenant.
    let a = device(tenant, "AAAAAAAAAA");
    let b = device(tenant, "BBBBBBBBBB");
    let c = device(other, "CCCCCCCCCC");
    for d in [&a, &b, &c] {
        store.create_device(d).await.unwrap();
    }
    assert!(matches!(
        store.create_device(&device(tenant, "AAAAAAAAAA")).await,
        Err(StoreError::Conflict(_))
    ));
    let pairing = |d: &Device, code: &str, hash: &str| Pairing {
        device_id: d.id,
        code: code.into(),
        hardware_id: "hw".into(),
        secret_hash: hash.into(),
        paired_at: 5,
        cert_valid_until: 10,
    };
    let paired = store
        .pair_device(&pairing(&a, "AAAAAAAAAA", "s1"), &event(tenant, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (paired.status.as_str(), paired.hardware_id.as_deref()),
        ("paired", Some("hw"))
    );
    assert!(store
        .pair_device(&pairing(&a, "AAAAAAAAAA", "s9"), &event(tenant, 2))
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store
            .pair_device(&pairing(&b, "BBBBBBBBBB", "s2"), &event(tenant, 3))
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The failed pairing wrote no event; another tenant may use the hardware id.
    assert!(store
        .get_event(&event(tenant, 3).event_id)
        .await
        .unwrap()
        .is_none());
    store
        .pair_device(&pairing(&c, "CCCCCCCCCC", "s3"), &event(other, 4))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .find_device_by_secret_hash("s1")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert_eq!(
        store
            .find_device_by_hardware(tenant, "hw")
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert!(store.get_device(other, a.id).await.unwrap().is_none());
    let (page, total) = store.list_devices(tenant, 0, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));

    // Challenges: listing filters, expiry, revocation fails pending ones.
    let live = challenge(tenant, a.id, i64::MAX);
    let stale = challenge(tenant, a.id, 50);
    store.create_challenge(&live).await.unwrap();
    store.create_challenge(&stale).await.unwrap();
    assert_eq!(store.pending_for_device(a.id, 100).await.unwrap().len(), 1);
    assert_eq!(store.expire_challenges(100).await.unwrap(), 1);
    let filter = ChallengeFilter {
        kind: Some("identify".into()),
        status: Some("expired".into()),
    };
    let (rows, total) = store.list_challenges(tenant, &filter, 0, 10).await.unwrap();
    assert_eq!((rows.len(), total, rows[0].id), (1, 1, stale.id));
    let (_, all) = store
        .list_challenges(tenant, &ChallengeFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!(all, 2);
    let result = json!({"matched": false});
    assert!(store
        .complete_challenge(live.id, &result, &event(tenant, 5), 60)
        .await
        .unwrap());
    assert!(!store
        .complete_challenge(live.id, &result, &event(tenant, 6), 61)
        .await
        .unwrap());
    let done = store.get_challenge(tenant, live.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.result, done.metadata),
        ("completed", Some(result), json!({"k": "v"}))
    );
    let pending = challenge(tenant, a.id, i64::MAX);
    store.create_challenge(&pending).await.unwrap();
    assert!(store.revoke_device(tenant, a.id, 70).await.unwrap());
    assert!(!store.revoke_device(tenant, a.id, 71).await.unwrap());
    let failed = store
        .get_challenge(tenant, pending.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.failure_reason.as_deref()),
        ("failed", Some("device_revoked"))
    );
    assert!(store
        .find_device_by_secret_hash("s1")
        .await
        .unwrap()
        .is_none());

    // Outbox: in write order, each taken once.
    let events = store.undispatched_events(10).await.unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            event(tenant, 1).event_id,
            event(other, 4).event_id,
            event(tenant, 5).event_id
        ]
    );
    assert!(store
        .mark_event_dispatched(&events[0].event_id, 80)
        .await
        .unwrap());
    assert!(!store
        .mark_event_dispatched(&events[0].event_id, 81)
        .await
        .unwrap());
    assert_eq!(store.undispatched_events(10).await.unwrap().len(), 2);

    // Idempotency keys: replay, mismatch, in progress, release, expiry.
    let key_owner = Uuid::new_v4();
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "h", 0, 100)
            .await
            .unwrap(),
        IdempotencyStart::Started
    );
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "h", 1, 100)
            .await
            .unwrap(),
        IdempotencyStart::InProgress
    );
    store
        .idempotency_finish(key_owner, "k", 201, "{}")
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "h", 2, 100)
            .await
            .unwrap(),
        IdempotencyStart::Replay {
            status: 201,
            body: "{}".into()
        }
    );
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "other", 3, 100)
            .await
            .unwrap(),
        IdempotencyStart::Mismatch
    );
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "other", 100, 200)
            .await
            .unwrap(),
        IdempotencyStart::Started
    );
    store.idempotency_release(key_owner, "k").await.unwrap();
    assert_eq!(
        store
            .idempotency_start(key_owner, "k", "h", 101, 200)
            .await
            .unwrap(),
        IdempotencyStart::Started
    );
    assert_eq!(store.purge_idempotency(300).await.unwrap(), 1);

    // Users and settings.
    let u1 = store.ensure_user(tenant, "x", 1).await.unwrap();
    assert_eq!(store.ensure_user(tenant, "x", 2).await.unwrap().id, u1.id);
    assert_ne!(store.ensure_user(other, "x", 1).await.unwrap().id, u1.id);
    assert_eq!(
        store.list_users(tenant, 0, 10).await.unwrap().1,
        0,
        "users without palms are not listed"
    );
    assert_eq!(
        store.get_user_with_palms(tenant, "x").await.unwrap(),
        Some((u1.clone(), Vec::new()))
    );
    assert_eq!(store.get_user_with_palms(tenant, "y").await.unwrap(), None);

    // An enrollment of both palms: the user is read with both, in palm order, and only
    // in their tenant.
    let scanner = device(tenant, "EEEEEEEEEE");
    store.create_device(&scanner).await.unwrap();
    let enroll = Challenge {
        kind: "enroll".into(),
        external_user_id: Some("x".into()),
        palm_type: "both".into(),
        top_k: None,
        ..challenge(tenant, scanner.id, i64::MAX)
    };
    store.create_challenge(&enroll).await.unwrap();
    let palm = |palm_type: &str, row_id: i64| Palm {
        feature_id: Uuid::new_v4(),
        tenant_id: tenant,
        user_id: u1.id,
        palm_type: palm_type.into(),
        row_id,
        enrolled_at: 7,
        vendor: "mock".into(),
        challenge_id: enroll.id,
    };
    let commit = EnrollmentCommit {
        challenge_id: enroll.id,
        palms: vec![palm("right", 1), palm("left", 0)],
        result: json!({"ok": true}),
        event: event(tenant, 500),
    };
    assert!(store.complete_enrollment(&commit, 7).await.unwrap());
    let (user, palms) = store
        .get_user_with_palms(tenant, "x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, u1);
    assert_eq!(palms, store.list_palms(tenant, u1.id).await.unwrap());
    assert_eq!(
        palms
            .iter()
            .map(|p| (p.palm_type.as_str(), p.row_id))
            .collect::<Vec<_>>(),
        [("left", 0), ("right", 1)]
    );
    let (_, theirs) = store
        .get_user_with_palms(other, "x")
        .await
        .unwrap()
        .unwrap();
    assert!(theirs.is_empty());
    assert!(store.get_settings(tenant).await.unwrap().is_none());
    let settings = StoredSettings {
        thresholds: vec![0.5; 10],
        match_policy: "k_of_n".into(),
        k: Some(3),
    };
    store.put_settings(tenant, &settings).await.unwrap();
    assert_eq!(store.get_settings(tenant).await.unwrap(), Some(settings));
    assert!(store.get_settings(other).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_store_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
    exercise(&store).await;
    // Reopening applies no migration twice.
    drop(store);
    SqliteStore::open(&format!(
        "sqlite://{}",
        dir.path().join("db.sqlite").display()
    ))
    .await
    .unwrap();
}
