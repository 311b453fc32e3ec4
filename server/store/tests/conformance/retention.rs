//! Retention: finished work older than its tenant's period is deleted, a batch at a time;
//! everything else stays, and purges running at once delete each row once.

use std::sync::Arc;

use palmlink_store::{
    verify_chain, Attempt, ChallengeStatus, DeliveryNext, DeliveryStatus, FailureReason,
    MatchPolicy, MatchingSettings, OutboxEvent, Purged, Store, SubscriptionNext, TrustPolicy,
};
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{audit, challenge, completion, device, ending, hook, tenant};

/// A day in microseconds.
const DAY: i64 = 86_400_000_000;
/// "Now" in these cases, and the retention period of the tenants that have one.
const NOW: i64 = 100 * DAY;
const DAYS: u32 = 30;
const CUTOFF: i64 = NOW - DAYS as i64 * DAY;

async fn keep_for(store: &dyn Store, tenant: Uuid, days: Option<u32>) {
    let settings = MatchingSettings {
        thresholds: vec![0.5; 10],
        policy: MatchPolicy::Mean,
    };
    let trust = TrustPolicy {
        retention_days: days,
        ..TrustPolicy::default()
    };
    store
        .put_settings(
            tenant,
            &settings,
            &trust,
            &audit(tenant, "settings.updated"),
        )
        .await
        .unwrap();
}

/// A paired-looking scanner of the tenant, for its challenges.
async fn scanner(store: &dyn Store, tenant: Uuid) -> Uuid {
    let d = device(tenant, &Uuid::new_v4().simple().to_string()[..10]);
    store
        .create_device(&d, &audit(tenant, "device.registered"))
        .await
        .unwrap();
    d.id
}

/// A challenge created at `created`, ended at `ended` with `status` (and its event, which
/// occurs then), or left pending when `ended` is `None`.
async fn challenge_at(
    store: &dyn Store,
    tenant: Uuid,
    device: Uuid,
    created: i64,
    ended: Option<(i64, ChallengeStatus)>,
) -> Uuid {
    let c = palmlink_store::Challenge {
        created_at: created,
        ..challenge(tenant, device, i64::MAX)
    };
    store.create_challenge(&c).await.unwrap();
    match ended {
        None => {}
        Some((at, ChallengeStatus::Completed)) => {
            assert!(store
                .complete_challenge(&completion(c.id, tenant, &json!({}), at, at))
                .await
                .unwrap());
        }
        Some((at, status)) => {
            let reason = match status {
                ChallengeStatus::Cancelled => FailureReason::UserCancelled,
                ChallengeStatus::Expired => FailureReason::Expired,
                _ => FailureReason::Quality,
            };
            assert!(store
                .finish_challenge(&ending(c.id, tenant, status, reason, at, at))
                .await
                .unwrap());
        }
    }
    c.id
}

/// The event id the support records give the event at `at`.
fn event_id(at: i64) -> String {
    format!("evt_{at:032x}")
}

fn attempt(delivery: Uuid, n: i64, at: i64) -> Attempt {
    Attempt {
        delivery_id: delivery,
        attempt: n,
        attempted_at: at,
        status_code: Some(200),
        latency_ms: 1,
        error: None,
    }
}

/// Purges the tenant in batches of `limit` until a batch comes back short.
async fn purge_all(store: &dyn Store, tenant: Uuid, limit: i64) -> Purged {
    let mut total = Purged::default();
    loop {
        let step = store.purge_before(tenant, CUTOFF, limit).await.unwrap();
        total += step;
        if !step.filled(limit) {
            return total;
        }
    }
}

pub async fn old_finished_work_goes_and_the_rest_stays(store: &dyn Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    let c = tenant(store, "c").await;
    keep_for(store, a, Some(DAYS)).await;
    keep_for(store, c, Some(DAYS)).await;
    keep_for(store, b, None).await;
    let mut periods = store.retention_periods().await.unwrap();
    periods.sort();
    let mut expected = vec![(a, DAYS), (c, DAYS)];
    expected.sort();
    assert_eq!(periods, expected);

    // Tenant a: a subscription from the start, old and new challenges of every end.
    let hook_a = hook(a, "a", &["device.paired"], 0);
    store
        .create_webhook(&hook_a, &audit(a, "webhook.created"))
        .await
        .unwrap();
    let dev_a = scanner(store, a).await;
    let mut old = Vec::new();
    for (i, status) in [
        ChallengeStatus::Completed,
        ChallengeStatus::Failed,
        ChallengeStatus::Cancelled,
        ChallengeStatus::Expired,
    ]
    .into_iter()
    .enumerate()
    {
        let at = (10 + i as i64) * DAY;
        old.push((
            challenge_at(store, a, dev_a, at - 1, Some((at, status))).await,
            at,
        ));
    }
    let pending = challenge_at(store, a, dev_a, 5 * DAY, None).await;
    // Created before the cutoff, finished after it: kept.
    let straddling = challenge_at(
        store,
        a,
        dev_a,
        CUTOFF - DAY,
        Some((CUTOFF + DAY, ChallengeStatus::Completed)),
    )
    .await;
    // An old event whose delivery is still pending.
    let waiting = OutboxEvent {
        event_id: event_id(14 * DAY),
        tenant_id: a,
        event_type: "device.paired".into(),
        payload: json!({}),
        occurred_at: 14 * DAY,
        dispatched_at: None,
    };
    store.append_event(&waiting).await.unwrap();
    assert_eq!(store.fan_out(100, 15 * DAY).await.unwrap(), 6);
    let claimed = store.claim_due(15 * DAY, 15 * DAY + 1, 100).await.unwrap();
    assert_eq!(claimed.len(), 6);
    let delivery_of = |event: &str| {
        claimed
            .iter()
            .find(|(d, _)| d.event_id == event)
            .map(|(d, _)| d.id)
            .unwrap()
    };
    // Three deliveries end long ago (two acknowledged, one given up); the fourth, given up,
    // is requeued and acknowledged recently; the waiting event's stays pending.
    for (n, (_, at)) in old[..3].iter().enumerate() {
        let next = if n == 1 {
            DeliveryNext::Failed
        } else {
            DeliveryNext::Succeeded
        };
        let d = delivery_of(&event_id(*at));
        store
            .record_attempt(&attempt(d, 1, 16 * DAY), &next, &SubscriptionNext::Healthy)
            .await
            .unwrap();
    }
    let retried = delivery_of(&event_id(old[3].1));
    let straddling_delivery = delivery_of(&event_id(CUTOFF + DAY));
    store
        .record_attempt(
            &attempt(straddling_delivery, 1, CUTOFF + DAY),
            &DeliveryNext::Succeeded,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    let pending_delivery = delivery_of(&waiting.event_id);
    store.release_lease(pending_delivery).await.unwrap();
    store
        .record_attempt(
            &attempt(retried, 1, 16 * DAY),
            &DeliveryNext::Failed,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .requeue(hook_a.id, Some(retried), None, NOW - DAY)
            .await
            .unwrap(),
        1
    );
    store
        .record_attempt(
            &attempt(retried, 2, NOW - DAY),
            &DeliveryNext::Succeeded,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    let recent = challenge_at(
        store,
        a,
        dev_a,
        NOW - DAY,
        Some((NOW - DAY + 1, ChallengeStatus::Completed)),
    )
    .await;

    // Tenants b (no retention) and c (no subscription but one created late) have old work.
    let dev_b = scanner(store, b).await;
    let old_b = challenge_at(
        store,
        b,
        dev_b,
        DAY,
        Some((DAY + 1, ChallengeStatus::Completed)),
    )
    .await;
    let dev_c = scanner(store, c).await;
    let old_c = challenge_at(
        store,
        c,
        dev_c,
        2 * DAY,
        Some((2 * DAY + 1, ChallengeStatus::Failed)),
    )
    .await;
    let late_hook = hook(c, "c", &["device.paired"], 50 * DAY);
    store
        .create_webhook(&late_hook, &audit(c, "webhook.created"))
        .await
        .unwrap();

    // Tenant a, in batches of two.
    let purged = purge_all(store, a, 2).await;
    assert_eq!(
        purged,
        Purged {
            challenges: 4,
            events: 4,
            deliveries: 3
        }
    );
    for (id, at) in &old {
        assert!(store.get_challenge(a, *id).await.unwrap().is_none());
        assert!(store.get_event(&event_id(*at)).await.unwrap().is_none());
    }
    let gone: Vec<Uuid> = old[..3]
        .iter()
        .map(|(_, at)| delivery_of(&event_id(*at)))
        .collect();
    for d in &gone {
        assert!(store.get_delivery(hook_a.id, *d).await.unwrap().is_none());
    }
    assert!(store.list_attempts(&gone).await.unwrap().is_empty());
    for id in [pending, straddling, recent] {
        assert!(store.get_challenge(a, id).await.unwrap().is_some());
    }
    for e in [
        waiting.event_id.clone(),
        event_id(CUTOFF + DAY),
        event_id(NOW - DAY + 1),
    ] {
        assert!(store.get_event(&e).await.unwrap().is_some(), "{e} kept");
    }
    let kept = store
        .get_delivery(hook_a.id, retried)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.status, DeliveryStatus::Succeeded);
    assert_eq!(store.list_attempts(&[retried]).await.unwrap().len(), 2);
    let still = store
        .get_delivery(hook_a.id, pending_delivery)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, DeliveryStatus::Pending);
    assert!(store
        .get_delivery(hook_a.id, straddling_delivery)
        .await
        .unwrap()
        .is_some());

    // Other tenants untouched, until c's own purge; b has no period and is never purged.
    assert!(store.get_challenge(b, old_b).await.unwrap().is_some());
    assert!(store.get_challenge(c, old_c).await.unwrap().is_some());
    assert!(store.get_event(&event_id(DAY + 1)).await.unwrap().is_some());
    assert_eq!(
        purge_all(store, c, 100).await,
        Purged {
            challenges: 1,
            events: 1,
            deliveries: 0
        }
    );
    assert!(store.get_challenge(c, old_c).await.unwrap().is_none());
    assert!(store.get_challenge(b, old_b).await.unwrap().is_some());
    assert!(store.get_event(&event_id(DAY + 1)).await.unwrap().is_some());

    // Again: nothing more. The audit chains, which keep every entry, still verify.
    assert_eq!(purge_all(store, a, 2).await, Purged::default());
    for t in [a, b, c] {
        let check = verify_chain(store, t).await.unwrap();
        assert_eq!(check.first_bad, None);
        assert!(check.entries >= 2);
    }
}

pub async fn purges_at_once_delete_each_row_once(one: Arc<dyn Store>, two: Arc<dyn Store>) {
    const ROWS: i64 = 120;
    const LIMIT: i64 = 7;
    let t = tenant(one.as_ref(), "t").await;
    keep_for(one.as_ref(), t, Some(DAYS)).await;
    let h = hook(t, "h", &["device.paired"], 0);
    one.create_webhook(&h, &audit(t, "webhook.created"))
        .await
        .unwrap();
    let dev = scanner(one.as_ref(), t).await;
    for i in 0..ROWS {
        let at = DAY + i;
        challenge_at(
            one.as_ref(),
            t,
            dev,
            at,
            Some((at, ChallengeStatus::Completed)),
        )
        .await;
    }
    assert_eq!(one.fan_out(1_000, 2 * DAY).await.unwrap() as i64, ROWS);
    for (d, _) in one.claim_due(2 * DAY, 2 * DAY + 1, 1_000).await.unwrap() {
        one.record_attempt(
            &attempt(d.id, 1, 2 * DAY),
            &DeliveryNext::Succeeded,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    }
    let mut tasks = JoinSet::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.spawn(async move { purge_all(store.as_ref(), t, LIMIT).await });
    }
    let mut total = Purged::default();
    while let Some(done) = tasks.join_next().await {
        total += done.unwrap();
    }
    let every = u64::try_from(ROWS).unwrap();
    assert_eq!(
        total,
        Purged {
            challenges: every,
            events: every,
            deliveries: every
        }
    );
    assert_eq!(
        two.purge_before(t, CUTOFF, LIMIT).await.unwrap(),
        Purged::default()
    );
    let (left, n) = one.list_deliveries(h.id, 0, 10).await.unwrap();
    assert_eq!((left.len(), n), (0, 0));
}
