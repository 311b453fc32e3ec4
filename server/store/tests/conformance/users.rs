//! Users, palms and enrollment commits.

use palmlink_store::{
    Challenge, ChallengeKind, ChallengePalm, ChallengeStatus, EnrollmentCommit, Palm, PalmType,
    SealedTemplate, Store, StoreError,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{audit, challenge, device, event, tenant};

/// A pending enrollment of both palms for `external`.
async fn enrollment(store: &dyn Store, tenant: Uuid, code: &str, external: &str) -> Challenge {
    let scanner = device(tenant, code);
    store
        .create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let enroll = Challenge {
        kind: ChallengeKind::Enroll,
        external_user_id: Some(external.into()),
        palm_type: ChallengePalm::Both,
        top_k: None,
        ..challenge(tenant, scanner.id, i64::MAX)
    };
    store.create_challenge(&enroll).await.unwrap();
    enroll
}

/// A palm of `user` enrolled by `c`, with a sealed template whose bytes name `n`.
fn palm(c: &Challenge, user: Uuid, palm_type: PalmType, n: u8) -> (Palm, SealedTemplate) {
    let palm = Palm {
        feature_id: Uuid::new_v4(),
        tenant_id: c.tenant_id,
        user_id: user,
        palm_type,
        enrolled_at: 7,
        vendor: "mock".into(),
        challenge_id: c.id,
    };
    (palm, sealed(n))
}

pub fn sealed(n: u8) -> SealedTemplate {
    SealedTemplate {
        sealed: vec![n; 48],
    }
}

pub async fn users_are_ensured_once_per_tenant(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let u1 = store.ensure_user(tenant_a, "x", 1).await.unwrap();
    assert_eq!(store.ensure_user(tenant_a, "x", 2).await.unwrap().id, u1.id);
    assert_ne!(store.ensure_user(tenant_b, "x", 1).await.unwrap().id, u1.id);
    assert_eq!(
        store.get_user(tenant_a, "x").await.unwrap(),
        Some(u1.clone())
    );
    assert_eq!(
        store.list_users(tenant_a, 0, 10).await.unwrap().1,
        0,
        "users without palms are not listed"
    );
    assert_eq!(
        store.get_user_with_palms(tenant_a, "x").await.unwrap(),
        Some((u1.clone(), Vec::new()))
    );
    assert_eq!(
        store.get_user_with_palms(tenant_a, "y").await.unwrap(),
        None
    );
    let found = store
        .get_users_by_ids(tenant_a, &[u1.id, Uuid::new_v4()])
        .await
        .unwrap();
    assert_eq!(found, vec![u1.clone()]);
    assert!(store
        .get_users_by_ids(tenant_b, &[u1.id])
        .await
        .unwrap()
        .is_empty());
}

pub async fn an_enrollment_commits_palms_result_and_event_together(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let enroll = enrollment(store, tenant_a, "AAAAAAAAAA", "x").await;
    let user = store.ensure_user(tenant_a, "x", 1).await.unwrap();
    store.ensure_user(tenant_b, "x", 1).await.unwrap();
    let commit = EnrollmentCommit {
        challenge_id: enroll.id,
        audit: audit(enroll.tenant_id, "enrollment.completed"),
        palms: vec![
            palm(&enroll, user.id, PalmType::Right, 1),
            palm(&enroll, user.id, PalmType::Left, 2),
        ],
        result: json!({"ok": true}),
        captures: json!([]),
        event: event(tenant_a, 500),
    };
    assert_eq!(
        store.complete_enrollment(&commit, 7).await.unwrap(),
        Some(2)
    );
    assert_eq!(store.complete_enrollment(&commit, 8).await.unwrap(), None);
    let (found, palms) = store
        .get_user_with_palms(tenant_a, "x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, user);
    assert_eq!(palms, store.list_palms(tenant_a, user.id).await.unwrap());
    assert_eq!(
        palms.iter().map(|p| p.palm_type).collect::<Vec<_>>(),
        [PalmType::Left, PalmType::Right]
    );
    assert_eq!(store.all_palms(tenant_a).await.unwrap().len(), 2);
    let (_, theirs) = store
        .get_user_with_palms(tenant_b, "x")
        .await
        .unwrap()
        .unwrap();
    assert!(theirs.is_empty());
    let (listed, total) = store.list_users(tenant_a, 0, 10).await.unwrap();
    assert_eq!((listed, total), (vec![user], 1));
    let done = store
        .get_challenge(tenant_a, enroll.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.status, done.result),
        (ChallengeStatus::Completed, Some(json!({"ok": true})))
    );
    assert!(store
        .get_event(&event(tenant_a, 500).event_id)
        .await
        .unwrap()
        .is_some());
}

pub async fn a_palm_is_enrolled_once_per_user(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let first = enrollment(store, tenant, "AAAAAAAAAA", "x").await;
    let second = enrollment(store, tenant, "BBBBBBBBBB", "x").await;
    let user = store.ensure_user(tenant, "x", 1).await.unwrap();
    let commit = |c: &Challenge, row: u8, n: i64| EnrollmentCommit {
        challenge_id: c.id,
        audit: audit(c.tenant_id, "enrollment.completed"),
        palms: vec![palm(c, user.id, PalmType::Left, row)],
        result: json!({}),
        captures: json!([]),
        event: event(tenant, n),
    };
    assert!(store
        .complete_enrollment(&commit(&first, 0, 1), 7)
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        store.complete_enrollment(&commit(&second, 1, 2), 8).await,
        Err(StoreError::Conflict(_))
    ));
    // Nothing of the refused enrollment was written.
    let ch = store
        .get_challenge(tenant, second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ch.status, ChallengeStatus::Pending);
    assert!(store
        .get_event(&event(tenant, 2).event_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.list_palms(tenant, user.id).await.unwrap().len(), 1);
    // Nor did it take a place in the template log.
    assert_eq!(store.log_head(tenant).await.unwrap(), 1);
}

pub async fn erasure_deletes_the_user_and_returns_its_palms(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let enroll = enrollment(store, tenant, "AAAAAAAAAA", "x").await;
    let user = store.ensure_user(tenant, "x", 1).await.unwrap();
    let enrolled = vec![palm(&enroll, user.id, PalmType::Left, 0)];
    let commit = EnrollmentCommit {
        challenge_id: enroll.id,
        audit: audit(enroll.tenant_id, "enrollment.completed"),
        palms: enrolled.clone(),
        result: json!({}),
        captures: json!([]),
        event: event(tenant, 1),
    };
    assert_eq!(
        store.complete_enrollment(&commit, 7).await.unwrap(),
        Some(1)
    );
    let erasure = store
        .delete_user(tenant, user.id, 9, &audit(tenant, "user.erased"))
        .await
        .unwrap();
    assert_eq!(erasure.palms, vec![enrolled[0].0.clone()]);
    assert_eq!(erasure.log_head, 2);
    assert!(store.get_user(tenant, "x").await.unwrap().is_none());
    assert!(store.all_palms(tenant).await.unwrap().is_empty());
    // The sealed template went with the palm.
    let feature = enrolled[0].0.feature_id;
    assert!(store
        .sealed_templates(tenant, &[feature])
        .await
        .unwrap()
        .is_empty());
    let again = store
        .delete_user(tenant, user.id, 10, &audit(tenant, "user.erased"))
        .await
        .unwrap();
    assert!(again.palms.is_empty());
    assert_eq!(again.log_head, 2, "an erasure of nothing writes no entry");
}
