//! The outbox, idempotency keys and matching settings.

use palmlink_store::{
    DuplicateCheck, IdempotencyStart, MatchPolicy, MatchingSettings, Store, TenantSettingsRecord,
    TrustPolicy,
};
use uuid::Uuid;

use crate::support::{audit, event, tenant};

pub async fn the_outbox_keeps_events_in_order(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    for n in [3, 1, 2] {
        store.append_event(&event(tenant, n)).await.unwrap();
    }
    let events = store.undispatched_events(10).await.unwrap();
    let times: Vec<i64> = events.iter().map(|e| e.occurred_at).collect();
    assert_eq!(times, [1, 2, 3]);
    assert_eq!(store.undispatched_events(2).await.unwrap().len(), 2);
    let one = store.get_event(&event(tenant, 2).event_id).await.unwrap();
    assert_eq!(one, Some(event(tenant, 2)));
    assert!(store.append_event(&event(tenant, 2)).await.is_err());
}

pub async fn idempotency_keys_replay_refuse_and_expire(store: &dyn Store) {
    let owner = Uuid::new_v4();
    let start = |key: &'static str, hash: &'static str, now: i64, until: i64| {
        store.idempotency_start(owner, key, hash, now, until)
    };
    assert_eq!(
        start("k", "h", 0, 100).await.unwrap(),
        IdempotencyStart::Started
    );
    assert_eq!(
        start("k", "h", 1, 100).await.unwrap(),
        IdempotencyStart::InProgress
    );
    store
        .idempotency_finish(owner, "k", 201, "{}")
        .await
        .unwrap();
    assert_eq!(
        start("k", "h", 2, 100).await.unwrap(),
        IdempotencyStart::Replay {
            status: 201,
            body: "{}".into()
        }
    );
    assert_eq!(
        start("k", "other", 3, 100).await.unwrap(),
        IdempotencyStart::Mismatch
    );
    // Another client's key of the same name is its own.
    assert_eq!(
        store
            .idempotency_start(Uuid::new_v4(), "k", "h", 3, 100)
            .await
            .unwrap(),
        IdempotencyStart::Started
    );
    // Past its expiry the key is free again.
    assert_eq!(
        start("k", "other", 100, 200).await.unwrap(),
        IdempotencyStart::Started
    );
    store.idempotency_release(owner, "k").await.unwrap();
    assert_eq!(
        start("k", "h", 101, 200).await.unwrap(),
        IdempotencyStart::Started
    );
    // A recorded response is not released.
    store
        .idempotency_finish(owner, "k", 200, "[]")
        .await
        .unwrap();
    store.idempotency_release(owner, "k").await.unwrap();
    assert!(matches!(
        start("k", "h", 102, 200).await.unwrap(),
        IdempotencyStart::Replay { status: 200, .. }
    ));
    assert_eq!(store.purge_idempotency(300).await.unwrap(), 2);
}

pub async fn settings_are_per_tenant(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    // A tenant without settings has the default matching settings and trust policy: no
    // minimum, duplicates flagged.
    let unset = store.get_settings(tenant_a).await.unwrap();
    assert_eq!(unset.matching, None);
    assert_eq!(
        unset.trust,
        TrustPolicy {
            min_quality: 0.0,
            min_liveness: 0.0,
            duplicate_check: DuplicateCheck::Flag,
            retention_days: None,
        }
    );
    for (policy, check, retention_days) in [
        (MatchPolicy::KOfN { k: 3 }, DuplicateCheck::Reject, Some(30)),
        (MatchPolicy::Mean, DuplicateCheck::Off, Some(u32::MAX)),
        (MatchPolicy::AllThresholds, DuplicateCheck::Flag, None),
    ] {
        let settings = MatchingSettings {
            thresholds: vec![0.5, -0.25, 0.7072, 1.0, -1.0, 0.0, 0.1, 0.2, 0.3, 0.4],
            policy,
        };
        let trust = TrustPolicy {
            min_quality: 0.25,
            min_liveness: 0.875,
            duplicate_check: check,
            retention_days,
        };
        store
            .put_settings(
                tenant_a,
                &settings,
                &trust,
                &audit(tenant_a, "settings.updated"),
            )
            .await
            .unwrap();
        let stored = store.get_settings(tenant_a).await.unwrap();
        assert_eq!(stored.matching, Some(settings));
        assert_eq!(stored.trust, trust);
    }
    assert_eq!(
        store.get_settings(tenant_b).await.unwrap(),
        TenantSettingsRecord::default()
    );
    // An unknown tenant reads as the defaults too.
    assert_eq!(
        store.get_settings(Uuid::new_v4()).await.unwrap(),
        TenantSettingsRecord::default()
    );
}
