//! The "Concurrency" contracts under real contention: two stores on one database (on
//! PostgreSQL, two pools, as two nodes have), many tasks calling at once.

use std::collections::HashSet;
use std::sync::Arc;

use palmlink_store::{
    Challenge, ChallengeKind, ChallengePalm, ChallengeStatus, Delivery, DeliveryStatus,
    EnrollmentCommit, IdempotencyStart, LogOp, Pairing, Palm, PalmType, SealedTemplate, SignInGate,
    Store, StoreError, Subscription,
};
use serde_json::json;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::support::{audit, challenge, completion, device, event, hook, tenant};

/// Tasks racing in each case.
const RACERS: usize = 8;

/// Runs `RACERS` calls of `f` at once, alternating between the two stores, and collects
/// their results in the order they were started.
async fn race<T, F, Fut>(a: &Arc<dyn Store>, b: &Arc<dyn Store>, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut set = JoinSet::new();
    for i in 0..RACERS {
        let store = Arc::clone(if i % 2 == 0 { a } else { b });
        let start = Arc::clone(&start);
        let call = f(store, i);
        set.spawn(async move {
            start.wait().await;
            (i, call.await)
        });
    }
    let mut out: Vec<(usize, T)> = set.join_all().await;
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

pub async fn a_challenge_completes_once_among_many_captures(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tenant = tenant(a.as_ref(), "t").await;
    let scanner = device(tenant, "AAAAAAAAAA");
    a.create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let live = challenge(tenant, scanner.id, i64::MAX);
    a.create_challenge(&live).await.unwrap();
    let won = race(&a, &b, |store, i| async move {
        let result = json!({"capture": i});
        store
            .complete_challenge(&completion(live.id, tenant, &result, 100 + i as i64, 60))
            .await
            .unwrap()
    })
    .await;
    let winners: Vec<usize> = (0..RACERS).filter(|i| won[*i]).collect();
    assert_eq!(winners.len(), 1, "{won:?}");
    let winner = winners[0];
    let done = b.get_challenge(tenant, live.id).await.unwrap().unwrap();
    assert_eq!(done.result, Some(json!({"capture": winner})));
    // Only the winner's event was written.
    for i in 0..RACERS {
        let written = a
            .get_event(&event(tenant, 100 + i as i64).event_id)
            .await
            .unwrap();
        assert_eq!(written.is_some(), i == winner, "event of capture {i}");
    }
}

pub async fn one_hardware_id_pairs_one_device(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tenant = tenant(a.as_ref(), "t").await;
    let devices: Vec<_> = (0..RACERS)
        .map(|i| device(tenant, &format!("CODE{i:06}")))
        .collect();
    for d in &devices {
        a.create_device(d, &audit(d.tenant_id, "device.registered"))
            .await
            .unwrap();
    }
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let outcomes = race(&a, &b, |store, i| {
        let pairing = Pairing {
            device_id: ids[i],
            code: format!("CODE{i:06}"),
            hardware_id: "one-scanner".into(),
            secret_hash: format!("secret-{i}"),
            paired_at: 5,
            cert_valid_until: 10,
        };
        async move {
            store
                .pair_device(
                    &pairing,
                    &event(tenant, i as i64),
                    &audit(tenant, "device.paired"),
                )
                .await
        }
    })
    .await;
    let mut paired = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(Some(_)) => paired.push(i),
            Err(StoreError::Conflict(_)) => {}
            other => panic!("pairing {i}: {other:?}"),
        }
    }
    assert_eq!(paired.len(), 1, "{outcomes:?}");
    let events = a.undispatched_events(100).await.unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, [event(tenant, paired[0] as i64).event_id.as_str()]);
    let found = b.find_device_by_hardware(tenant, "one-scanner").await;
    assert_eq!(found.unwrap().map(|d| d.id), Some(devices[paired[0]].id));
}

pub async fn one_idempotency_key_starts_one_request(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let client = Uuid::new_v4();
    let starts = race(&a, &b, |store, _| async move {
        store
            .idempotency_start(client, "key", "hash", 10, 1_000)
            .await
            .unwrap()
    })
    .await;
    let started = starts
        .iter()
        .filter(|s| **s == IdempotencyStart::Started)
        .count();
    assert_eq!(started, 1, "{starts:?}");
    assert!(starts
        .iter()
        .all(|s| matches!(s, IdempotencyStart::Started | IdempotencyStart::InProgress)));
    // Once expired, exactly one of many takes the key over.
    let again = race(&a, &b, |store, _| async move {
        store
            .idempotency_start(client, "key", "other", 1_000, 2_000)
            .await
            .unwrap()
    })
    .await;
    let started = again
        .iter()
        .filter(|s| **s == IdempotencyStart::Started)
        .count();
    assert_eq!(started, 1, "{again:?}");
}

pub async fn a_sign_in_gate_lets_its_limit_through_among_many(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
    // RACERS attempts at once against a limit of 3: exactly 3 pass.
    let gates = race(&a, &b, |store, i| async move {
        store
            .gate_sign_in("ada", 100 + i as i64, 0, 3)
            .await
            .unwrap()
    })
    .await;
    let open = gates.iter().filter(|g| **g == SignInGate::Open).count();
    assert_eq!(open, 3, "{gates:?}");
}

pub async fn one_user_per_external_id(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tenant = tenant(a.as_ref(), "t").await;
    let users = race(&a, &b, |store, i| async move {
        store.ensure_user(tenant, "person", i as i64).await.unwrap()
    })
    .await;
    let ids: HashSet<Uuid> = users.iter().map(|u| u.id).collect();
    assert_eq!(ids.len(), 1, "{users:?}");
    let stored = b.get_user(tenant, "person").await.unwrap().unwrap();
    assert!(ids.contains(&stored.id));
}

/// A tenant with two subscriptions and `events` undispatched events for them.
async fn outbox(store: &dyn Store, events: i64) -> (Uuid, [Subscription; 2]) {
    let tenant = tenant(store, "t").await;
    let hooks = [
        hook(tenant, "a", &["device.paired"], 0),
        hook(tenant, "b", &["device.paired"], 0),
    ];
    for h in &hooks {
        store
            .create_webhook(h, &audit(h.tenant_id, "webhook.created"))
            .await
            .unwrap();
    }
    for n in 1..=events {
        store.append_event(&event(tenant, n)).await.unwrap();
    }
    (tenant, hooks)
}

pub async fn workers_fan_each_event_out_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const EVENTS: i64 = 40;
    let (_, hooks) = outbox(a.as_ref(), EVENTS).await;
    let taken = race(&a, &b, |store, _| async move {
        let mut taken = 0;
        loop {
            let n = store.fan_out(3, 50).await.unwrap();
            if n == 0 {
                return taken;
            }
            taken += n;
        }
    })
    .await;
    assert_eq!(taken.iter().sum::<usize>(), EVENTS as usize, "{taken:?}");
    assert!(a.undispatched_events(10).await.unwrap().is_empty());
    for h in &hooks {
        let (deliveries, total) = b.list_deliveries(h.id, 0, 1_000).await.unwrap();
        assert_eq!(total, EVENTS);
        let events: HashSet<&str> = deliveries.iter().map(|d| d.event_id.as_str()).collect();
        assert_eq!(events.len(), EVENTS as usize);
    }
}

pub async fn claimers_lease_disjoint_deliveries(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const EVENTS: i64 = 30;
    let (_, hooks) = outbox(a.as_ref(), EVENTS).await;
    while a.fan_out(100, 50).await.unwrap() > 0 {}
    let claimed = race(&a, &b, |store, _| async move {
        let mut mine: Vec<Delivery> = Vec::new();
        loop {
            let batch = store.claim_due(60, 10_000, 4).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|(d, _)| d));
        }
    })
    .await;
    let all: Vec<Uuid> = claimed.iter().flatten().map(|d| d.id).collect();
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a delivery was leased twice");
    assert_eq!(all.len(), 2 * EVENTS as usize);
    assert!(
        claimed
            .iter()
            .flatten()
            .all(|d| d.status == DeliveryStatus::Pending
                && hooks.iter().any(|h| h.id == d.webhook_id))
    );
    // Every lease holds: nothing is due again before it ends.
    assert!(b.claim_due(9_999, 20_000, 100).await.unwrap().is_empty());
    assert_eq!(
        a.claim_due(10_000, 20_000, 100).await.unwrap().len(),
        all.len()
    );
}

pub async fn signals_reach_every_store_of_the_database(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let mut on_a = a.subscribe().await.unwrap();
    let mut on_b = b.subscribe().await.unwrap();
    a.notify("challenges", "c-1").await.unwrap();
    b.notify("webhooks", "").await.unwrap();
    for receiver in [&mut on_a, &mut on_b] {
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let signal = tokio::time::timeout(std::time::Duration::from_secs(10), receiver.recv())
                .await
                .expect("a signal within 10 s")
                .unwrap();
            heard.push((signal.topic, signal.payload));
        }
        heard.sort();
        assert_eq!(
            heard,
            [
                ("challenges".to_owned(), "c-1".to_owned()),
                ("webhooks".to_owned(), String::new())
            ]
        );
    }
    assert!(a.notify("", "no topic").await.is_err());
}

pub async fn an_erasure_and_an_enrollment_at_once_leave_no_orphan(
    a: Arc<dyn Store>,
    b: Arc<dyn Store>,
) {
    let tenant = tenant(a.as_ref(), "t").await;
    let scanner = device(tenant, "AAAAAAAAAA");
    a.create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    for round in 0..RACERS {
        let external = format!("person-{round}");
        let enroll = Challenge {
            kind: ChallengeKind::Enroll,
            external_user_id: Some(external.clone()),
            palm_type: ChallengePalm::Left,
            top_k: None,
            ..challenge(tenant, scanner.id, i64::MAX)
        };
        a.create_challenge(&enroll).await.unwrap();
        let user = a.ensure_user(tenant, &external, 1).await.unwrap();
        let commit = EnrollmentCommit {
            challenge_id: enroll.id,
            audit: audit(enroll.tenant_id, "enrollment.completed"),
            palms: vec![(
                Palm {
                    feature_id: Uuid::new_v4(),
                    tenant_id: tenant,
                    user_id: user.id,
                    palm_type: PalmType::Left,
                    enrolled_at: 7,
                    vendor: "mock".into(),
                    challenge_id: enroll.id,
                },
                SealedTemplate {
                    sealed: vec![round as u8; 32],
                },
            )],
            result: json!({}),
            captures: json!([]),
            event: event(tenant, round as i64),
        };
        let (enrolled, erased) = {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            let enrolling = tokio::spawn(async move { a.complete_enrollment(&commit, 7).await });
            let erasing = tokio::spawn(async move {
                b.delete_user(tenant, user.id, 8, &audit(tenant, "user.erased"))
                    .await
            });
            (enrolling.await.unwrap(), erasing.await.unwrap().unwrap())
        };
        let status = a
            .get_challenge(tenant, enroll.id)
            .await
            .unwrap()
            .unwrap()
            .status;
        match enrolled {
            // The enrollment landed first: the erasure deleted its palm and returned it.
            Ok(Some(_)) => {
                assert_eq!(erased.palms.len(), 1, "round {round}");
                assert_eq!(status, ChallengeStatus::Completed);
            }
            // The erasure came first: the enrollment found no user and wrote nothing.
            Err(_) => {
                assert!(erased.palms.is_empty(), "round {round}");
                assert_eq!(status, ChallengeStatus::Pending);
            }
            Ok(None) => panic!("round {round}: the challenge was pending"),
        }
        assert!(
            a.all_palms(tenant).await.unwrap().is_empty(),
            "round {round}"
        );
        assert!(a.get_user(tenant, &external).await.unwrap().is_none());
    }
    // Every enrollment that landed has its insert and its erase in the log, in that order.
    let log = a.log_after(tenant, 0, 1000).await.unwrap();
    assert_eq!(log.len() % 2, 0);
    for pair in log.chunks(2) {
        assert_eq!((pair[0].op, pair[1].op), (LogOp::Insert, LogOp::Erase));
        assert_eq!(pair[0].feature_id, pair[1].feature_id);
    }
    let sequences: Vec<u64> = log.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=log.len() as u64).collect::<Vec<_>>());
}

pub async fn concurrent_writers_draw_the_log_without_gaps(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let tenant = tenant(a.as_ref(), "t").await;
    let scanner = device(tenant, "BBBBBBBBBB");
    a.create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for round in 0..RACERS {
        let store = if round % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.spawn(async move {
            let external = format!("p-{round}");
            let enroll = Challenge {
                kind: ChallengeKind::Enroll,
                external_user_id: Some(external.clone()),
                palm_type: ChallengePalm::Both,
                top_k: None,
                ..challenge(tenant, scanner.id, i64::MAX)
            };
            store.create_challenge(&enroll).await.unwrap();
            let user = store.ensure_user(tenant, &external, 1).await.unwrap();
            let palms = [PalmType::Left, PalmType::Right]
                .into_iter()
                .map(|palm_type| {
                    (
                        Palm {
                            feature_id: Uuid::new_v4(),
                            tenant_id: tenant,
                            user_id: user.id,
                            palm_type,
                            enrolled_at: 7,
                            vendor: "mock".into(),
                            challenge_id: enroll.id,
                        },
                        SealedTemplate {
                            sealed: vec![1; 16],
                        },
                    )
                })
                .collect();
            let commit = EnrollmentCommit {
                challenge_id: enroll.id,
                audit: audit(enroll.tenant_id, "enrollment.completed"),
                palms,
                result: json!({}),
                captures: json!([]),
                event: event(tenant, 1000 + round as i64),
            };
            store
                .complete_enrollment(&commit, 7)
                .await
                .unwrap()
                .unwrap()
        });
    }
    let mut heads = Vec::new();
    while let Some(head) = tasks.join_next().await {
        heads.push(head.unwrap());
    }
    heads.sort_unstable();
    // Each enrollment saw the head after its own two entries: 2, 4, 6, ...
    assert_eq!(
        heads,
        (1..=RACERS as u64).map(|i| 2 * i).collect::<Vec<_>>()
    );
    let log = a.log_after(tenant, 0, 1000).await.unwrap();
    let sequences: Vec<u64> = log.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=2 * RACERS as u64).collect::<Vec<_>>());
    assert!(log.iter().all(|e| e.op == LogOp::Insert));
    // An enrollment's two entries are next to each other.
    for pair in log.chunks(2) {
        assert_eq!(pair[0].user_id, pair[1].user_id);
    }
    assert_eq!(b.log_head(tenant).await.unwrap(), 2 * RACERS as u64);
}
