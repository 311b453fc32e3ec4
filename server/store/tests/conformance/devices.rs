//! Scanners: pairing, hardware ids, credentials, revocation.

use palmlink_store::{
    ChallengeStatus, Device, DeviceStatus, FailureReason, Pairing, Store, StoreError,
};

use crate::support::{audit, challenge, device, end_event, event, tenant};

fn pairing(d: &Device, code: &str, hash: &str) -> Pairing {
    Pairing {
        device_id: d.id,
        code: code.into(),
        hardware_id: "hw".into(),
        secret_hash: hash.into(),
        paired_at: 5,
        cert_valid_until: 10,
    }
}

pub async fn pairing_is_one_time_and_hardware_ids_unique(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let a = device(tenant_a, "AAAAAAAAAA");
    let b = device(tenant_a, "BBBBBBBBBB");
    let c = device(tenant_b, "CCCCCCCCCC");
    for d in [&a, &b, &c] {
        store
            .create_device(d, &audit(d.tenant_id, "device.registered"))
            .await
            .unwrap();
    }
    // Pairing codes are unique over every device.
    assert!(matches!(
        store
            .create_device(
                &device(tenant_b, "AAAAAAAAAA"),
                &audit(tenant_b, "device.registered")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    let paired = store
        .pair_device(
            &pairing(&a, "AAAAAAAAAA", "s1"),
            &event(tenant_a, 1),
            &audit(tenant_a, "device.paired"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (paired.status, paired.hardware_id.as_deref()),
        (DeviceStatus::Paired, Some("hw"))
    );
    // The code works once.
    assert!(store
        .pair_device(
            &pairing(&a, "AAAAAAAAAA", "s9"),
            &event(tenant_a, 2),
            &audit(tenant_a, "device.paired")
        )
        .await
        .unwrap()
        .is_none());
    // A hardware id pairs once per tenant, and the refused pairing writes no event.
    assert!(matches!(
        store
            .pair_device(
                &pairing(&b, "BBBBBBBBBB", "s2"),
                &event(tenant_a, 3),
                &audit(tenant_a, "device.paired")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store
        .get_event(&event(tenant_a, 3).event_id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_event(&event(tenant_a, 1).event_id)
        .await
        .unwrap()
        .is_some());
    // Another tenant may use the same hardware id.
    store
        .pair_device(
            &pairing(&c, "CCCCCCCCCC", "s3"),
            &event(tenant_b, 4),
            &audit(tenant_b, "device.paired"),
        )
        .await
        .unwrap()
        .unwrap();
    let by_secret = store.find_device_by_secret_hash("s1").await.unwrap();
    assert_eq!(by_secret.map(|d| d.id), Some(a.id));
    let by_hw = store.find_device_by_hardware(tenant_a, "hw").await.unwrap();
    assert_eq!(by_hw.map(|d| d.id), Some(a.id));
    let by_code = store
        .find_device_by_pairing_code("BBBBBBBBBB")
        .await
        .unwrap();
    assert_eq!(by_code.map(|d| d.id), Some(b.id));
    assert!(store.get_device(tenant_b, a.id).await.unwrap().is_none());
    let (page, total) = store.list_devices(tenant_a, 0, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    // A fresh code only for a device still waiting to pair.
    assert!(store
        .set_pairing_code(
            tenant_a,
            b.id,
            "DDDDDDDDDD",
            99,
            &audit(tenant_a, "device.pairing_code_issued")
        )
        .await
        .unwrap());
    assert!(!store
        .set_pairing_code(
            tenant_a,
            a.id,
            "EEEEEEEEEE",
            99,
            &audit(tenant_a, "device.pairing_code_issued")
        )
        .await
        .unwrap());
    assert!(matches!(
        store
            .set_pairing_code(
                tenant_a,
                b.id,
                "CCCCCCCCCC",
                99,
                &audit(tenant_a, "device.pairing_code_issued")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    store.touch_device(a.id, 42).await.unwrap();
    let seen = store.get_device(tenant_a, a.id).await.unwrap().unwrap();
    assert_eq!(seen.last_seen_at, Some(42));
}

pub async fn revocation_ends_the_credential_and_fails_pending_challenges(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let a = device(tenant, "AAAAAAAAAA");
    store
        .create_device(&a, &audit(a.tenant_id, "device.registered"))
        .await
        .unwrap();
    store
        .pair_device(
            &pairing(&a, "AAAAAAAAAA", "s1"),
            &event(tenant, 1),
            &audit(tenant, "device.paired"),
        )
        .await
        .unwrap()
        .unwrap();
    let pending = challenge(tenant, a.id, i64::MAX);
    store.create_challenge(&pending).await.unwrap();
    assert!(store
        .revoke_device(
            tenant,
            a.id,
            70,
            &audit(tenant, "device.revoked"),
            &end_event
        )
        .await
        .unwrap());
    assert!(!store
        .revoke_device(
            tenant,
            a.id,
            71,
            &audit(tenant, "device.revoked"),
            &end_event
        )
        .await
        .unwrap());
    let failed = store
        .get_challenge(tenant, pending.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status, failed.failure_reason, failed.finished_at),
        (
            ChallengeStatus::Failed,
            Some(FailureReason::DeviceRevoked),
            Some(70)
        )
    );
    // The failure fired its event, once, built from the failed challenge.
    let fired = store
        .get_event(&end_event(&failed).event.event_id)
        .await
        .unwrap()
        .expect("the revocation's event");
    assert_eq!(fired.payload["failure_reason"], "device_revoked");
    assert!(store
        .find_device_by_secret_hash("s1")
        .await
        .unwrap()
        .is_none());
    let revoked = store.get_device(tenant, a.id).await.unwrap().unwrap();
    assert_eq!(revoked.status, DeviceStatus::Revoked);
}
