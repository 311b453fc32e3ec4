//! Webhook subscriptions and their deliveries.

use palmlink_store::{
    Attempt, Delivery, DeliveryNext, DeliveryStatus, OutboxEvent, Store, StoreError, Subscription,
    SubscriptionNext,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{audit, hook, tenant};

fn outbox_event(tenant: Uuid, n: i64, event_type: &str) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("evt_{n:032x}"),
        tenant_id: tenant,
        event_type: event_type.into(),
        payload: json!({"n": n}),
        occurred_at: n,
        dispatched_at: None,
    }
}

/// A tenant with one subscription to `device.paired` and one event fanned out to it.
async fn one_delivery(store: &dyn Store) -> (Subscription, Delivery) {
    let tenant = tenant(store, "t").await;
    let h = hook(tenant, "a", &["device.paired"], 0);
    store
        .create_webhook(&h, &audit(h.tenant_id, "webhook.created"))
        .await
        .unwrap();
    store
        .append_event(&outbox_event(tenant, 10, "device.paired"))
        .await
        .unwrap();
    assert_eq!(store.fan_out(100, 20).await.unwrap(), 1);
    let (deliveries, _) = store.list_deliveries(h.id, 0, 10).await.unwrap();
    (h, deliveries[0].clone())
}

pub async fn subscriptions_are_unique_per_tenant(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let a = hook(tenant_a, "a", &["device.paired"], 1);
    store
        .create_webhook(&a, &audit(a.tenant_id, "webhook.created"))
        .await
        .unwrap();
    let same_name = Subscription {
        endpoint: "https://elsewhere.example/".into(),
        ..hook(tenant_a, "a", &["device.paired"], 2)
    };
    assert!(matches!(
        store
            .create_webhook(&same_name, &audit(same_name.tenant_id, "webhook.created"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let same_endpoint = Subscription {
        endpoint: a.endpoint.clone(),
        ..hook(tenant_a, "b", &["device.paired"], 2)
    };
    assert!(matches!(
        store
            .create_webhook(
                &same_endpoint,
                &audit(same_endpoint.tenant_id, "webhook.created")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_webhook(
            &hook(tenant_b, "a", &["device.paired"], 3),
            &audit(tenant_b, "webhook.created"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_webhook(tenant_a, a.id).await.unwrap(),
        Some(a.clone())
    );
    assert!(store.get_webhook(tenant_b, a.id).await.unwrap().is_none());
    let b = hook(tenant_a, "b", &["enrollment.complete"], 4);
    store
        .create_webhook(&b, &audit(b.tenant_id, "webhook.created"))
        .await
        .unwrap();
    let changed = Subscription {
        name: "renamed".into(),
        events: vec!["verification.complete".into()],
        active: false,
        disabled_reason: Some("off".into()),
        updated_at: 9,
        ..b.clone()
    };
    assert!(store
        .update_webhook(&changed, &audit(changed.tenant_id, "webhook.updated"))
        .await
        .unwrap());
    assert_eq!(
        store.get_webhook(tenant_a, b.id).await.unwrap(),
        Some(changed)
    );
    let clash = Subscription {
        name: "a".into(),
        ..b.clone()
    };
    assert!(matches!(
        store
            .update_webhook(&clash, &audit(clash.tenant_id, "webhook.updated"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let (page, total) = store.list_webhooks(tenant_a, 0, 1).await.unwrap();
    assert_eq!((page[0].id, total), (a.id, 2));
    assert!(store
        .delete_webhook(tenant_a, a.id, &audit(tenant_a, "webhook.deleted"))
        .await
        .unwrap());
    assert!(!store
        .delete_webhook(tenant_a, a.id, &audit(tenant_a, "webhook.deleted"))
        .await
        .unwrap());
    assert_eq!(store.list_webhooks(tenant_a, 0, 10).await.unwrap().1, 1);
}

pub async fn fan_out_delivers_each_event_once_to_whoever_wanted_it(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let quiet = tenant(store, "u").await;
    let paired = hook(tenant_a, "paired", &["device.paired"], 0);
    let enrolled = hook(tenant_a, "enrolled", &["enrollment.complete"], 0);
    let late = hook(tenant_a, "late", &["device.paired"], 15);
    for h in [&paired, &enrolled, &late] {
        store
            .create_webhook(h, &audit(h.tenant_id, "webhook.created"))
            .await
            .unwrap();
    }
    for (n, kind) in [(10, "device.paired"), (20, "device.paired")] {
        store
            .append_event(&outbox_event(tenant_a, n, kind))
            .await
            .unwrap();
    }
    store
        .append_event(&outbox_event(quiet, 30, "device.paired"))
        .await
        .unwrap();
    assert_eq!(store.fan_out(100, 40).await.unwrap(), 2);
    assert_eq!(store.fan_out(100, 41).await.unwrap(), 0);
    let count = |id| async move { store.list_deliveries(id, 0, 10).await.unwrap().1 };
    assert_eq!(count(paired.id).await, 2);
    assert_eq!(count(enrolled.id).await, 0);
    // A subscription receives the events that occur once it exists.
    assert_eq!(count(late.id).await, 1);
    // A tenant without subscriptions keeps its events in the outbox.
    let left = store.undispatched_events(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tenant_id, quiet);
    let (deliveries, _) = store.list_deliveries(paired.id, 0, 10).await.unwrap();
    assert!(deliveries
        .iter()
        .all(|d| d.status == DeliveryStatus::Pending
            && d.attempts == 0
            && d.next_attempt_at == 40));
    let mut payloads: Vec<&str> = deliveries.iter().map(|d| d.payload.as_str()).collect();
    payloads.sort();
    assert_eq!(payloads, [r#"{"n":10}"#, r#"{"n":20}"#]);
}

pub async fn a_leased_delivery_is_not_claimed_twice(store: &dyn Store) {
    let (h, d) = one_delivery(store).await;
    assert_eq!(store.next_due().await.unwrap(), Some(20));
    let claimed = store.claim_due(30, 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].0.id, claimed[0].1.id), (d.id, h.id));
    assert!(store.claim_due(31, 1_000, 10).await.unwrap().is_empty());
    // Past its lease, another claimer takes it over.
    assert_eq!(store.claim_due(1_000, 2_000, 10).await.unwrap().len(), 1);
    store.release_lease(d.id).await.unwrap();
    assert_eq!(store.claim_due(1_001, 3_000, 10).await.unwrap().len(), 1);
    // Nothing is due before its time.
    store.release_lease(d.id).await.unwrap();
    assert!(store.claim_due(10, 3_000, 10).await.unwrap().is_empty());
}

pub async fn an_attempt_recorded_twice_counts_once(store: &dyn Store) {
    let (h, d) = one_delivery(store).await;
    store.claim_due(30, 1_000, 10).await.unwrap();
    let attempt = Attempt {
        delivery_id: d.id,
        attempt: 1,
        attempted_at: 30,
        status_code: Some(500),
        latency_ms: 2,
        error: Some("endpoint answered 500".into()),
    };
    store
        .record_attempt(
            &attempt,
            &DeliveryNext::RetryAt(5_000),
            &SubscriptionNext::Failing,
        )
        .await
        .unwrap();
    store
        .record_attempt(
            &attempt,
            &DeliveryNext::Succeeded,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    let now = store.get_delivery(h.id, d.id).await.unwrap().unwrap();
    assert_eq!(
        (
            now.status,
            now.attempts,
            now.next_attempt_at,
            now.last_status_code
        ),
        (DeliveryStatus::Pending, 1, 5_000, Some(500))
    );
    let hook = store.get_webhook(h.tenant_id, h.id).await.unwrap().unwrap();
    assert!(hook.failing_since.is_some());
    let second = Attempt {
        attempt: 2,
        attempted_at: 5_000,
        status_code: Some(200),
        error: None,
        ..attempt.clone()
    };
    store
        .record_attempt(
            &second,
            &DeliveryNext::Succeeded,
            &SubscriptionNext::Healthy,
        )
        .await
        .unwrap();
    let done = store.get_delivery(h.id, d.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.attempts), (DeliveryStatus::Succeeded, 2));
    assert!(done.delivered_at.is_some());
    let hook = store.get_webhook(h.tenant_id, h.id).await.unwrap().unwrap();
    assert_eq!(hook.failing_since, None);
    let log = store.list_attempts(&[d.id]).await.unwrap();
    assert_eq!(log.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(log[0], attempt);
}

pub async fn failed_deliveries_are_requeued(store: &dyn Store) {
    let (h, d) = one_delivery(store).await;
    let attempt = Attempt {
        delivery_id: d.id,
        attempt: 1,
        attempted_at: 30,
        status_code: Some(410),
        latency_ms: 2,
        error: Some("endpoint answered 410 Gone".into()),
    };
    store
        .record_attempt(
            &attempt,
            &DeliveryNext::Failed,
            &SubscriptionNext::Disable("gone".into()),
        )
        .await
        .unwrap();
    let hook = store.get_webhook(h.tenant_id, h.id).await.unwrap().unwrap();
    assert_eq!(
        (hook.active, hook.disabled_reason.as_deref()),
        (false, Some("gone"))
    );
    // Disabled subscriptions have nothing due.
    assert_eq!(store.next_due().await.unwrap(), None);
    assert_eq!(
        store.requeue(h.id, None, Some(i64::MAX), 50).await.unwrap(),
        0
    );
    assert_eq!(store.requeue(h.id, None, Some(0), 50).await.unwrap(), 1);
    let again = store.get_delivery(h.id, d.id).await.unwrap().unwrap();
    assert_eq!(
        (again.status, again.cycle_start, again.next_attempt_at),
        (DeliveryStatus::Pending, 1, 50)
    );
    assert_eq!(store.requeue(h.id, Some(d.id), None, 60).await.unwrap(), 1);
    assert_eq!(
        store
            .requeue(h.id, Some(Uuid::new_v4()), None, 60)
            .await
            .unwrap(),
        0
    );
    let ping = Delivery {
        id: Uuid::new_v4(),
        event_id: "evt_test".into(),
        event_type: "webhook.test".into(),
        created_at: 70,
        ..again
    };
    store.insert_delivery(&ping).await.unwrap();
    let (page, total) = store.list_deliveries(h.id, 0, 1).await.unwrap();
    assert_eq!((page[0].id, total), (ping.id, 2));
}
