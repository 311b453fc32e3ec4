//! The delivery worker against a real SQLite database and a real receiver on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use uuid::Uuid;

use palmlink_domain::{new_signing_secret as new_secret, OutboxBell};
use palmlink_store::{Actor, AuditRecord, DeliveryStatus, OutboxEvent, Store, Subscription};
use palmlink_webhooks::signing::sign_one;
use palmlink_webhooks::{DeliveryWorker, WebhookSettings};

/// The audit record a subscription's creation is stored with.
fn audit_of(tenant: Uuid) -> AuditRecord {
    AuditRecord {
        tenant_id: tenant,
        at: 0,
        actor: Actor::operator("test"),
        action: "webhook.created".into(),
        resource_type: "webhook".into(),
        resource_id: String::new(),
        outcome: "success".into(),
        details: serde_json::Value::Null,
    }
}

/// [`audit_of`] the subscription's tenant.
fn created(hook: &Subscription) -> AuditRecord {
    audit_of(hook.tenant_id)
}

/// What the receiver saw and what it answers next.
#[derive(Default)]
struct Receiver {
    seen: Mutex<Vec<(HeaderMap, Bytes)>>,
    answers: Mutex<Vec<StatusCode>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.seen.lock().unwrap().push((headers, body));
    let mut answers = r.answers.lock().unwrap();
    if answers.is_empty() {
        StatusCode::OK
    } else {
        answers.remove(0)
    }
}

async fn receiver(answers: Vec<StatusCode>) -> (Arc<Receiver>, String) {
    let r = Arc::new(Receiver {
        seen: Mutex::default(),
        answers: Mutex::new(answers),
    });
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}/hook"))
}

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    palmlink_store::open(&url).await.unwrap()
}

/// A worker on `store` with the tests' settings, running.
fn worker(
    store: &Arc<dyn Store>,
    settings: WebhookSettings,
    allow_private: bool,
) -> Arc<DeliveryWorker> {
    let worker = DeliveryWorker::new(
        Arc::clone(store),
        Arc::new(OutboxBell::default()),
        settings,
        allow_private,
    )
    .unwrap();
    worker.spawn();
    worker
}

fn settings() -> WebhookSettings {
    WebhookSettings {
        schedule: "100ms,200ms,300ms".parse().unwrap(),
        timeout: Duration::from_millis(500),
        poll_interval: Duration::from_millis(200),
        ..WebhookSettings::default()
    }
}

fn hook(tenant: Uuid, endpoint: &str) -> Subscription {
    Subscription {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: format!("hook {}", Uuid::new_v4()),
        events: vec!["device.paired".to_owned()],
        endpoint: endpoint.to_owned(),
        api_key: Some("k-123".to_owned()),
        secret: new_secret(),
        old_secret: None,
        old_secret_expires_at: None,
        active: true,
        disabled_reason: None,
        failing_since: None,
        created_at: 1,
        updated_at: 1,
    }
}

async fn emit(store: &Arc<dyn Store>, tenant: Uuid, event_type: &str) -> String {
    let event_id = format!("evt_{}", Uuid::new_v4().simple());
    let payload = json!({"event_id": event_id, "event_type": event_type, "tenant_id": tenant, "timestamp": "t", "data": {}});
    let event = OutboxEvent {
        event_id: event_id.clone(),
        tenant_id: tenant,
        event_type: event_type.to_owned(),
        payload,
        occurred_at: chrono_now(),
        dispatched_at: None,
    };
    store.append_event(&event).await.unwrap();
    event_id
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn delivers_signed_events_and_retries_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (r, url) = receiver(vec![
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
    ])
    .await;
    let tenant = Uuid::new_v4();
    let h = hook(tenant, &url);
    store.create_webhook(&h, &created(&h)).await.unwrap();
    let other = emit(&store, tenant, "enrollment.complete").await;
    let event_id = emit(&store, tenant, "device.paired").await;
    let _foreign = emit(&store, Uuid::new_v4(), "device.paired").await;
    let _worker = worker(&store, settings(), true);
    wait_for(|| r.seen.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures then one success, nothing else");
    for (headers, body) in &seen {
        let get = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(get("webhook-id"), event_id);
        assert_ne!(get("webhook-id"), other);
        assert_eq!(get("x-link-event"), "device.paired");
        assert_eq!(get("x-api-key"), "k-123");
        assert_eq!(get("user-agent"), "PalmLink-Webhook/1.0");
        assert_eq!(get("content-type"), "application/json");
        assert!(get("x-link-delivery").starts_with("del_"));
        let ts: i64 = get("webhook-timestamp").parse().unwrap();
        assert_eq!(
            get("webhook-signature"),
            sign_one(&h.secret, &event_id, ts, body).unwrap()
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event_id"], event_id);
    }
    let (deliveries, total) = store.list_deliveries(h.id, 0, 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Succeeded);
    assert_eq!(deliveries[0].attempts, 3);
    let attempts = store.list_attempts(&[deliveries[0].id]).await.unwrap();
    let codes: Vec<Option<i64>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, vec![Some(500), Some(502), Some(200)]);
}

#[tokio::test]
async fn gone_disables_and_exhausted_schedule_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (gone, gone_url) = receiver(vec![StatusCode::GONE]).await;
    let (down, down_url) = receiver(vec![StatusCode::INTERNAL_SERVER_ERROR; 10]).await;
    let tenant = Uuid::new_v4();
    let g = hook(tenant, &gone_url);
    let d = hook(tenant, &down_url);
    store.create_webhook(&g, &created(&g)).await.unwrap();
    store.create_webhook(&d, &created(&d)).await.unwrap();
    emit(&store, tenant, "device.paired").await;
    emit(&store, tenant, "device.paired").await;
    let _worker = worker(
        &store,
        WebhookSettings {
            per_endpoint: 1,
            ..settings()
        },
        true,
    );
    wait_for(|| down.seen.lock().unwrap().len() >= 8).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gone.seen.lock().unwrap().len(),
        1,
        "nothing more after a 410"
    );
    let g = store.get_webhook(tenant, g.id).await.unwrap().unwrap();
    assert!(!g.active);
    assert!(g.disabled_reason.unwrap().contains("410"));
    let (gd, _) = store.list_deliveries(g.id, 0, 10).await.unwrap();
    let mut states: Vec<DeliveryStatus> = gd.iter().map(|x| x.status).collect();
    states.sort_unstable();
    assert_eq!(
        states,
        vec![DeliveryStatus::Pending, DeliveryStatus::Failed],
        "the second event waits for re-activation"
    );
    assert_eq!(
        down.seen.lock().unwrap().len(),
        8,
        "1 attempt + 3 retries per event"
    );
    let (ds, _) = store.list_deliveries(d.id, 0, 10).await.unwrap();
    assert!(ds
        .iter()
        .all(|x| x.status == DeliveryStatus::Failed && x.attempts == 4));
    let d2 = store.get_webhook(tenant, d.id).await.unwrap().unwrap();
    assert!(d2.active && d2.failing_since.is_some());
}

#[tokio::test]
async fn private_addresses_are_refused_at_connection_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (r, url) = receiver(vec![]).await;
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/hook")
        .to_owned();
    let tenant = Uuid::new_v4();
    // Stored directly, as if the name had resolved to a public address at creation and to
    // loopback now (DNS rebinding), or the allowance had been withdrawn since.
    let by_name = hook(tenant, &format!("https://localhost:{port}/hook"));
    let by_address = hook(tenant, &format!("https://127.0.0.1:{port}/hook"));
    let plain = hook(tenant, &format!("http://127.0.0.1:{port}/hook"));
    for h in [&by_name, &by_address, &plain] {
        store.create_webhook(h, &created(h)).await.unwrap();
    }
    emit(&store, tenant, "device.paired").await;
    let _worker = worker(&store, settings(), false);
    let mut errors = Vec::new();
    for _ in 0..200 {
        errors.clear();
        for h in [&by_name, &by_address, &plain] {
            let (ds, _) = store.list_deliveries(h.id, 0, 10).await.unwrap();
            let ids: Vec<Uuid> = ds.iter().map(|d| d.id).collect();
            let attempts = store.list_attempts(&ids).await.unwrap();
            if let Some(a) = attempts.first() {
                errors.push(a.error.clone().unwrap_or_default());
            }
        }
        if errors.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(errors.len(), 3, "each subscription got an attempt");
    assert!(errors[0].contains("no public address"), "{}", errors[0]);
    assert!(errors[1].contains("not a public address"), "{}", errors[1]);
    assert!(
        errors[2].contains("not a public address") || errors[2].contains("https"),
        "{}",
        errors[2]
    );
    assert!(
        r.seen.lock().unwrap().is_empty(),
        "nothing reached the loopback receiver"
    );
}

/// A receiver that takes `delay` to answer 200.
async fn slow_receiver(delay: Duration) -> (Arc<Receiver>, String) {
    async fn slow(
        State((r, d)): State<(Arc<Receiver>, Duration)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        tokio::time::sleep(d).await;
        r.seen.lock().unwrap().push((headers, body));
        StatusCode::OK
    }
    let r = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/hook", post(slow))
        .with_state((Arc::clone(&r), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}/hook"))
}

#[tokio::test]
async fn a_slow_receiver_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (slow, slow_url) = slow_receiver(Duration::from_millis(400)).await;
    let (fast, fast_url) = receiver(vec![]).await;
    let tenant = Uuid::new_v4();
    store
        .create_webhook(&hook(tenant, &slow_url), &audit_of(tenant))
        .await
        .unwrap();
    store
        .create_webhook(&hook(tenant, &fast_url), &audit_of(tenant))
        .await
        .unwrap();
    for _ in 0..20 {
        emit(&store, tenant, "device.paired").await;
    }
    let settings = WebhookSettings {
        per_endpoint: 2,
        max_in_flight: 4,
        timeout: Duration::from_secs(5),
        ..settings()
    };
    let _worker = worker(&store, settings, true);
    let started = std::time::Instant::now();
    wait_for(|| fast.seen.lock().unwrap().len() == 20).await;
    let fast_done = started.elapsed();
    // The slow endpoint needs 20 x 400 ms / 2 slots = 4 s; the fast one must not wait for it.
    assert!(
        fast_done < Duration::from_millis(1500),
        "fast receiver took {fast_done:?}"
    );
    assert!(
        slow.seen.lock().unwrap().len() < 10,
        "the slow endpoint is limited to its own slots"
    );
}

#[tokio::test]
async fn a_subscription_failing_for_too_long_is_disabled_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (down, down_url) = receiver(vec![StatusCode::BAD_GATEWAY; 100]).await;
    let tenant = Uuid::new_v4();
    let h = hook(tenant, &down_url);
    store.create_webhook(&h, &created(&h)).await.unwrap();
    emit(&store, tenant, "device.paired").await;
    let settings = WebhookSettings {
        schedule: "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"
            .parse()
            .unwrap(),
        disable_after: Duration::from_millis(350),
        ..settings()
    };
    let _worker = worker(&store, settings, true);
    let mut current = None;
    for _ in 0..200 {
        let got = store.get_webhook(tenant, h.id).await.unwrap().unwrap();
        if !got.active {
            current = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let current = current.expect("disabled");
    let reason = current.disabled_reason.unwrap();
    assert!(
        reason.contains("failed for") && reason.contains("502"),
        "{reason}"
    );
    let attempts = down.seen.lock().unwrap().len();
    assert!(
        (3..=6).contains(&attempts),
        "{attempts} attempts before disabling"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        down.seen.lock().unwrap().len(),
        attempts,
        "nothing is sent once disabled"
    );
    let (ds, _) = store.list_deliveries(h.id, 0, 10).await.unwrap();
    assert_eq!(
        ds[0].status,
        DeliveryStatus::Pending,
        "the delivery resumes if the webhook is re-enabled"
    );
}
