//! Challenges: listing, completion, ends.

use palmlink_store::{ChallengeFilter, ChallengeKind, ChallengeStatus, FailureReason, Store};
use serde_json::json;

use crate::support::{audit, challenge, completion, device, end_event, ending, event, tenant};

pub async fn lists_filter_and_count(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let scanner = device(tenant_a, "AAAAAAAAAA");
    store
        .create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let mut created = Vec::new();
    for (i, kind) in [
        ChallengeKind::Identify,
        ChallengeKind::Verify,
        ChallengeKind::Identify,
    ]
    .into_iter()
    .enumerate()
    {
        let ch = palmlink_store::Challenge {
            kind,
            created_at: i as i64,
            ..challenge(tenant_a, scanner.id, i64::MAX)
        };
        store.create_challenge(&ch).await.unwrap();
        created.push(ch);
    }
    let filter = ChallengeFilter {
        kind: Some(ChallengeKind::Identify),
        status: Some(ChallengeStatus::Pending),
    };
    let (rows, total) = store
        .list_challenges(tenant_a, &filter, 0, 10)
        .await
        .unwrap();
    // Newest first.
    let ids: Vec<_> = rows.iter().map(|c| c.id).collect();
    assert_eq!((ids, total), (vec![created[2].id, created[0].id], 2));
    let (page, total) = store
        .list_challenges(tenant_a, &ChallengeFilter::default(), 1, 1)
        .await
        .unwrap();
    assert_eq!((page[0].id, total), (created[1].id, 3));
    let (none, total) = store
        .list_challenges(tenant_b, &ChallengeFilter::default(), 0, 10)
        .await
        .unwrap();
    assert_eq!((none.len(), total), (0, 0));
    assert_eq!(
        store.get_challenge(tenant_a, created[0].id).await.unwrap(),
        Some(created[0].clone())
    );
    assert!(store
        .get_challenge(tenant_b, created[0].id)
        .await
        .unwrap()
        .is_none());
}

pub async fn a_challenge_completes_once(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let scanner = device(tenant, "AAAAAAAAAA");
    store
        .create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let live = challenge(tenant, scanner.id, i64::MAX);
    store.create_challenge(&live).await.unwrap();
    let result = json!({"matched": false});
    assert!(store
        .complete_challenge(&completion(live.id, tenant, &result, 5, 60))
        .await
        .unwrap());
    // A second capture loses, and its event is not written.
    assert!(!store
        .complete_challenge(&completion(live.id, tenant, &result, 6, 61))
        .await
        .unwrap());
    assert!(store
        .get_event(&event(tenant, 6).event_id)
        .await
        .unwrap()
        .is_none());
    let late = ending(
        live.id,
        tenant,
        ChallengeStatus::Cancelled,
        FailureReason::UserCancelled,
        8,
        62,
    );
    assert!(!store.finish_challenge(&late).await.unwrap());
    assert!(store
        .get_event(&late.event.event_id)
        .await
        .unwrap()
        .is_none());
    let done = store.get_challenge(tenant, live.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.result, done.metadata, done.finished_at),
        (
            ChallengeStatus::Completed,
            Some(result),
            json!({"k": "v"}),
            Some(60)
        )
    );
    assert_eq!(
        done.captures,
        completion(live.id, tenant, &json!(0), 0, 0).captures
    );
    assert!(store
        .get_event(&event(tenant, 5).event_id)
        .await
        .unwrap()
        .is_some());
    // A cancelled challenge can no longer complete.
    let cancelled = challenge(tenant, scanner.id, i64::MAX);
    store.create_challenge(&cancelled).await.unwrap();
    let cancel = ending(
        cancelled.id,
        tenant,
        ChallengeStatus::Cancelled,
        FailureReason::Spoof,
        9,
        70,
    );
    assert!(store.finish_challenge(&cancel).await.unwrap());
    // The end and its event are one write.
    assert!(store
        .get_event(&cancel.event.event_id)
        .await
        .unwrap()
        .is_some());
    assert!(!store
        .complete_challenge(&completion(cancelled.id, tenant, &json!({}), 7, 71))
        .await
        .unwrap());
    let c = store
        .get_challenge(tenant, cancelled.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.status, c.failure_reason),
        (ChallengeStatus::Cancelled, Some(FailureReason::Spoof))
    );
}

pub async fn expiry_ends_only_late_pending_challenges(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let scanner = device(tenant, "AAAAAAAAAA");
    store
        .create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let live = challenge(tenant, scanner.id, i64::MAX);
    let stale = challenge(tenant, scanner.id, 50);
    store.create_challenge(&live).await.unwrap();
    store.create_challenge(&stale).await.unwrap();
    let pending = store.pending_for_device(scanner.id, 100).await.unwrap();
    assert_eq!(pending.iter().map(|c| c.id).collect::<Vec<_>>(), [live.id]);
    // A challenge past its time cannot complete, even before the sweeper runs.
    assert!(!store
        .complete_challenge(&completion(stale.id, tenant, &json!({}), 1, 100))
        .await
        .unwrap());
    assert_eq!(store.expire_challenges(100, &end_event).await.unwrap(), 1);
    assert_eq!(store.expire_challenges(100, &end_event).await.unwrap(), 0);
    let expired = store
        .get_challenge(tenant, stale.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (expired.status, expired.failure_reason, expired.finished_at),
        (
            ChallengeStatus::Expired,
            Some(FailureReason::Expired),
            Some(50)
        )
    );
    // Its event was written once, from the challenge as it ended; the live one has none.
    let fired = store
        .get_event(&end_event(&expired).event.event_id)
        .await
        .unwrap()
        .expect("the expiry's event");
    assert_eq!(fired.payload, end_event(&expired).event.payload);
    assert_eq!(fired.payload["status"], "expired");
    assert!(store
        .get_event(&format!("evt_{}", live.id.simple()))
        .await
        .unwrap()
        .is_none());
    let still = store.get_challenge(tenant, live.id).await.unwrap().unwrap();
    assert_eq!(still.status, ChallengeStatus::Pending);
}
