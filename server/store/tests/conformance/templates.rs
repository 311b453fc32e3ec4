//! Keys, sealed templates and the template log.

use palmlink_store::{
    AuditFilter, Challenge, ChallengeKind, ChallengePalm, EnrollmentCommit, ImportBatch, LogOp,
    Palm, PalmType, SealedTemplate, Store, StoreError, User,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::{audit, challenge, device, event, tenant};

/// Enrolls `palms` of a new user `external` of `tenant` through a challenge of its own;
/// returns the palms and the log head after the enrollment.
async fn enroll(
    store: &dyn Store,
    tenant: Uuid,
    external: &str,
    palms: &[(PalmType, u8)],
) -> (Vec<Palm>, u64) {
    let code = Uuid::new_v4().simple().to_string()[..10].to_uppercase();
    let scanner = device(tenant, &code);
    store
        .create_device(&scanner, &audit(scanner.tenant_id, "device.registered"))
        .await
        .unwrap();
    let c = Challenge {
        kind: ChallengeKind::Enroll,
        external_user_id: Some(external.into()),
        palm_type: ChallengePalm::Both,
        top_k: None,
        ..challenge(tenant, scanner.id, i64::MAX)
    };
    store.create_challenge(&c).await.unwrap();
    let user = store.ensure_user(tenant, external, 1).await.unwrap();
    let palms: Vec<(Palm, SealedTemplate)> = palms
        .iter()
        .map(|(palm_type, n)| {
            (
                Palm {
                    feature_id: Uuid::new_v4(),
                    tenant_id: tenant,
                    user_id: user.id,
                    palm_type: *palm_type,
                    enrolled_at: 7,
                    vendor: "mock".into(),
                    challenge_id: c.id,
                },
                SealedTemplate {
                    sealed: vec![*n; 64],
                },
            )
        })
        .collect();
    let commit = EnrollmentCommit {
        challenge_id: c.id,
        audit: audit(c.tenant_id, "enrollment.completed"),
        palms: palms.clone(),
        result: json!({}),
        captures: json!([]),
        event: event(
            tenant,
            i64::from(palms.len() as u8) * 1000 + i64::from(palms[0].1.sealed[0]),
        ),
    };
    let head = store
        .complete_enrollment(&commit, 7)
        .await
        .unwrap()
        .unwrap();
    (palms.into_iter().map(|(p, _)| p).collect(), head)
}

pub async fn keys_are_set_once(store: &dyn Store) {
    assert_eq!(store.keyring().await.unwrap(), None);
    assert!(!store.holds_sealed_data().await.unwrap());
    assert_eq!(store.init_keyring(b"first", 1).await.unwrap(), b"first");
    assert_eq!(store.init_keyring(b"second", 2).await.unwrap(), b"first");
    assert_eq!(
        store.keyring().await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    let tenant = tenant(store, "t").await;
    assert_eq!(store.tenant_key(tenant).await.unwrap(), None);
    assert_eq!(
        store.init_tenant_key(tenant, b"k1", 1).await.unwrap(),
        b"k1"
    );
    assert_eq!(
        store.init_tenant_key(tenant, b"k2", 2).await.unwrap(),
        b"k1"
    );
    assert_eq!(
        store.tenant_key(tenant).await.unwrap().as_deref(),
        Some(&b"k1"[..])
    );
    assert!(store.holds_sealed_data().await.unwrap());
}

pub async fn the_log_orders_enrollments_and_erasures(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    assert_eq!(store.log_head(tenant_a).await.unwrap(), 0);
    let (x, head) = enroll(
        store,
        tenant_a,
        "x",
        &[(PalmType::Left, 1), (PalmType::Right, 2)],
    )
    .await;
    assert_eq!(head, 2);
    let (_, head_b) = enroll(store, tenant_b, "x", &[(PalmType::Left, 3)]).await;
    assert_eq!(head_b, 1, "each tenant has a log of its own");
    let (y, head) = enroll(store, tenant_a, "y", &[(PalmType::Right, 4)]).await;
    assert_eq!(head, 3);
    let erasure = store
        .delete_user(tenant_a, x[0].user_id, 20, &audit(tenant_a, "user.erased"))
        .await
        .unwrap();
    assert_eq!(erasure.log_head, 5);
    let log = store.log_after(tenant_a, 0, 100).await.unwrap();
    let seen: Vec<(u64, LogOp, Uuid)> = log
        .iter()
        .map(|e| (e.sequence, e.op, e.feature_id))
        .collect();
    let erased: Vec<Uuid> = log[3..].iter().map(|e| e.feature_id).collect();
    assert_eq!(
        seen[..3],
        [
            (1, LogOp::Insert, x[0].feature_id),
            (2, LogOp::Insert, x[1].feature_id),
            (3, LogOp::Insert, y[0].feature_id)
        ]
    );
    assert_eq!(
        log[3..]
            .iter()
            .map(|e| (e.sequence, e.op))
            .collect::<Vec<_>>(),
        [(4, LogOp::Erase), (5, LogOp::Erase)]
    );
    let mut erased_sorted = erased.clone();
    erased_sorted.sort();
    let mut expected = vec![x[0].feature_id, x[1].feature_id];
    expected.sort();
    assert_eq!(erased_sorted, expected);
    assert!(log.iter().all(|e| e.at > 0));
    let tail = store.log_after(tenant_a, 3, 1).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.sequence).collect::<Vec<_>>(), [4]);
    assert!(store.log_after(tenant_a, 5, 10).await.unwrap().is_empty());

    // The same log with each insert's sealed template: gone with x's erased palms, none
    // for the erasures themselves; the other tenant's log apart.
    let joined = store.log_templates_after(tenant_a, 0, 100).await.unwrap();
    assert_eq!(
        joined.iter().map(|j| j.entry.clone()).collect::<Vec<_>>(),
        log
    );
    let sealed: Vec<Option<u8>> = joined
        .iter()
        .map(|j| j.sealed.as_ref().map(|s| s[0]))
        .collect();
    assert_eq!(sealed, [None, None, Some(4), None, None]);
    let page = store.log_templates_after(tenant_a, 2, 1).await.unwrap();
    assert_eq!(
        page.iter()
            .map(|j| (j.entry.sequence, j.sealed.clone()))
            .collect::<Vec<_>>(),
        [(3, Some(vec![4; 64]))]
    );
    let b = store.log_templates_after(tenant_b, 0, 100).await.unwrap();
    assert_eq!(
        b.iter()
            .map(|j| (j.entry.sequence, j.sealed.clone()))
            .collect::<Vec<_>>(),
        [(1, Some(vec![3; 64]))]
    );
}

pub async fn sealed_templates_are_read_by_feature_and_by_page(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let (x, _) = enroll(
        store,
        tenant_a,
        "x",
        &[(PalmType::Left, 1), (PalmType::Right, 2)],
    )
    .await;
    let (y, _) = enroll(store, tenant_a, "y", &[(PalmType::Right, 3)]).await;
    let found = store
        .sealed_templates(
            tenant_a,
            &[y[0].feature_id, Uuid::new_v4(), x[1].feature_id],
        )
        .await
        .unwrap();
    let got: Vec<(Uuid, u8)> = found
        .iter()
        .map(|t| (t.palm.feature_id, t.sealed[0]))
        .collect();
    assert_eq!(got, [(y[0].feature_id, 3), (x[1].feature_id, 2)]);
    assert_eq!(found[0].palm, y[0]);
    assert!(store
        .sealed_templates(tenant_b, &[y[0].feature_id])
        .await
        .unwrap()
        .is_empty());
    let mut all: Vec<Uuid> = x.iter().chain(&y).map(|p| p.feature_id).collect();
    all.sort();
    let first = store.templates_page(tenant_a, None, 2).await.unwrap();
    let rest = store
        .templates_page(tenant_a, Some(first[1].palm.feature_id), 2)
        .await
        .unwrap();
    let paged: Vec<Uuid> = first
        .iter()
        .chain(&rest)
        .map(|t| t.palm.feature_id)
        .collect();
    assert_eq!(paged, all);
    assert!(store.unsealed_palms(tenant_a).await.unwrap().is_empty());
}

pub async fn deleting_a_tenant_leaves_none_of_its_rows(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    store.init_tenant_key(tenant_a, b"ka", 1).await.unwrap();
    store.init_tenant_key(tenant_b, b"kb", 1).await.unwrap();
    let (x, _) = enroll(store, tenant_a, "x", &[(PalmType::Left, 1)]).await;
    enroll(store, tenant_b, "x", &[(PalmType::Left, 2)]).await;
    assert!(store
        .delete_tenant(tenant_a, &audit(tenant_a, "tenant.deleted"))
        .await
        .unwrap());
    assert!(!store
        .delete_tenant(tenant_a, &audit(tenant_a, "tenant.deleted"))
        .await
        .unwrap());
    assert_eq!(store.tenant_key(tenant_a).await.unwrap(), None);
    assert!(store.get_tenant(tenant_a).await.unwrap().is_none());
    assert!(store.all_palms(tenant_a).await.unwrap().is_empty());
    assert!(store
        .sealed_templates(tenant_a, &[x[0].feature_id])
        .await
        .unwrap()
        .is_empty());
    assert!(store.log_after(tenant_a, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.log_head(tenant_a).await.unwrap(), 0);
    // The other tenant keeps everything.
    assert_eq!(
        store.tenant_key(tenant_b).await.unwrap().as_deref(),
        Some(&b"kb"[..])
    );
    assert_eq!(store.all_palms(tenant_b).await.unwrap().len(), 1);
    assert_eq!(store.log_head(tenant_b).await.unwrap(), 1);
}

/// A palm of `user` of `tenant` to import, with a sealed template of `n`s.
fn imported(tenant: Uuid, user: Uuid, palm_type: PalmType, n: u8) -> (Palm, SealedTemplate) {
    (
        Palm {
            feature_id: Uuid::new_v4(),
            tenant_id: tenant,
            user_id: user,
            palm_type,
            enrolled_at: 3,
            vendor: "other".into(),
            challenge_id: Uuid::nil(),
        },
        SealedTemplate {
            sealed: vec![n; 64],
        },
    )
}

pub async fn an_import_batch_commits_whole_or_not_at_all(store: &dyn Store) {
    let tenant_a = tenant(store, "t").await;
    let tenant_b = tenant(store, "u").await;
    let (x, _) = enroll(store, tenant_a, "x", &[(PalmType::Left, 1)]).await;
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let found = store
        .users_with_palm_types(tenant_a, &ids(&["x", "nobody"]))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].0.id, found[0].1.clone()),
        (x[0].user_id, vec![PalmType::Left])
    );
    let y = User {
        id: Uuid::new_v4(),
        tenant_id: tenant_a,
        external_user_id: "y".into(),
        created_at: 2,
    };
    let palms = vec![
        imported(tenant_a, x[0].user_id, PalmType::Right, 5),
        imported(tenant_a, y.id, PalmType::Left, 6),
    ];
    let batch = ImportBatch {
        new_users: vec![y.clone()],
        existing_users: vec![x[0].user_id],
        palms: palms.clone(),
        audit: audit(tenant_a, "users.imported"),
    };
    assert_eq!(store.import_palms(tenant_a, &batch, 9).await.unwrap(), 3);
    let log = store.log_after(tenant_a, 1, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| (e.op, e.feature_id)).collect::<Vec<_>>(),
        [
            (LogOp::Insert, palms[0].0.feature_id),
            (LogOp::Insert, palms[1].0.feature_id)
        ]
    );
    let stored = store
        .sealed_templates(tenant_a, &[palms[1].0.feature_id])
        .await
        .unwrap();
    assert_eq!(stored[0].palm, palms[1].0);
    assert_eq!(stored[0].sealed, palms[1].1.sealed);
    assert_eq!(
        store.get_user(tenant_a, "y").await.unwrap(),
        Some(y.clone())
    );
    let mut found = store
        .users_with_palm_types(tenant_a, &ids(&["x", "y"]))
        .await
        .unwrap();
    found.sort_by(|a, b| a.0.external_user_id.cmp(&b.0.external_user_id));
    for f in &mut found {
        f.1.sort();
    }
    assert_eq!(
        found
            .iter()
            .map(|(u, p)| (u.external_user_id.as_str(), p.clone()))
            .collect::<Vec<_>>(),
        [
            ("x", vec![PalmType::Left, PalmType::Right]),
            ("y", vec![PalmType::Left])
        ]
    );
    let filter = AuditFilter {
        since: None,
        action: Some("users.imported".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        store.list_audit(tenant_a, &filter, 0, 10).await.unwrap().1,
        1
    );

    // Each refused batch writes nothing: not its new user, not its log entries.
    let z = User {
        external_user_id: "z".into(),
        id: Uuid::new_v4(),
        ..y.clone()
    };
    let refused = [
        // A palm the user holds already.
        ImportBatch {
            new_users: vec![z.clone()],
            existing_users: vec![x[0].user_id],
            palms: vec![
                imported(tenant_a, z.id, PalmType::Left, 7),
                imported(tenant_a, x[0].user_id, PalmType::Left, 7),
            ],
            audit: audit(tenant_a, "users.imported"),
        },
        // A new user whose external id exists.
        ImportBatch {
            new_users: vec![
                z.clone(),
                User {
                    id: Uuid::new_v4(),
                    ..y.clone()
                },
            ],
            existing_users: vec![],
            palms: vec![imported(tenant_a, z.id, PalmType::Left, 7)],
            audit: audit(tenant_a, "users.imported"),
        },
        // A user that is gone.
        ImportBatch {
            new_users: vec![z.clone()],
            existing_users: vec![Uuid::new_v4()],
            palms: vec![imported(tenant_a, z.id, PalmType::Left, 7)],
            audit: audit(tenant_a, "users.imported"),
        },
    ];
    for batch in &refused {
        let err = store.import_palms(tenant_a, batch, 9).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(store.log_head(tenant_a).await.unwrap(), 3);
        assert_eq!(store.get_user(tenant_a, "z").await.unwrap(), None);
        assert_eq!(
            store.list_audit(tenant_a, &filter, 0, 10).await.unwrap().1,
            1
        );
    }
    // Nothing of it in another tenant.
    assert!(store
        .users_with_palm_types(tenant_b, &ids(&["x", "y"]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.log_head(tenant_b).await.unwrap(), 0);
}
