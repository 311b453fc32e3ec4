//! The audit log: one unbroken hash chain per tenant, filters and pages, and appends from
//! many writers at once.

use std::sync::Arc;

use palmlink_store::{
    verify_chain, ActorKind, AuditEntry, AuditFilter, AuditRecord, Pairing, Store, StoreError,
    GENESIS_HASH,
};
use tokio::task::JoinSet;

use crate::support::{audit, challenge, completion, device, event, hook, tenant};

/// Checks the links of a chain read back in order: sequences from 1, each `prev_hash` the
/// hash before, each hash recomputed.
fn assert_linked(entries: &[AuditEntry]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.sequence, i as u64 + 1);
        assert_eq!(e.prev_hash, prev, "sequence {}", e.sequence);
        assert_eq!(e.hash, e.expected_hash(), "sequence {}", e.sequence);
        prev = e.hash.clone();
    }
}

pub async fn each_tenant_has_one_chain_with_filters_and_pages(store: &dyn Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    for i in 0..5i64 {
        let rec = |t, action: &str| AuditRecord {
            at: 100 + i,
            ..audit(t, action)
        };
        let action = if i % 2 == 0 {
            "client.rotated"
        } else {
            "device.paired"
        };
        let e = store.append_audit(&rec(a, action)).await.unwrap();
        // The tenant's chain opened with its creation.
        assert_eq!(e.sequence, i as u64 + 2);
        store
            .append_audit(&rec(b, "settings.updated"))
            .await
            .unwrap();
    }
    let (all, total) = store
        .list_audit(a, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(total, 6);
    assert_linked(&all);
    assert_eq!(all[0].record, audit(a, "tenant.created"));
    // What is stored is what was given.
    assert_eq!(
        all[1].record,
        AuditRecord {
            at: 100,
            ..audit(a, "client.rotated")
        }
    );
    let check = verify_chain(store, a).await.unwrap();
    assert_eq!((check.entries, check.first_bad), (6, None));
    let (b_all, _) = store
        .list_audit(b, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_linked(&b_all);
    assert!(b_all.iter().all(|e| e.record.tenant_id == b));
    let filter = AuditFilter {
        since: Some(102),
        action: Some("client.rotated".into()),
        ..AuditFilter::default()
    };
    let (some, total) = store.list_audit(a, &filter, 0, 100).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(some.iter().map(|e| e.sequence).collect::<Vec<_>>(), [4, 6]);
    let (page, total) = store
        .list_audit(a, &AuditFilter::default(), 1, 2)
        .await
        .unwrap();
    assert_eq!(total, 6);
    assert_eq!(page.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 3]);
    // By kind of actor, and newest first.
    let by = |kind| AuditFilter {
        actor_type: Some(kind),
        ..AuditFilter::default()
    };
    assert_eq!(
        store
            .list_audit(a, &by(ActorKind::Operator), 0, 100)
            .await
            .unwrap()
            .1,
        6
    );
    assert_eq!(
        store
            .list_audit(a, &by(ActorKind::Client), 0, 100)
            .await
            .unwrap()
            .1,
        0
    );
    let newest = AuditFilter {
        newest_first: true,
        ..AuditFilter::default()
    };
    let (page, total) = store.list_audit(a, &newest, 1, 3).await.unwrap();
    assert_eq!(total, 6);
    assert_eq!(
        page.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [5, 4, 3]
    );

    // Across chains: by time, then chain, then sequence; filters apply to all.
    let (every, total) = store
        .list_audit_across(&AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(total, 12);
    let keys: Vec<_> = every
        .iter()
        .map(|e| (e.record.at, e.record.tenant_id, e.sequence))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let (latest, _) = store.list_audit_across(&newest, 0, 2).await.unwrap();
    let mut ends = [a, b];
    ends.sort();
    ends.reverse();
    assert_eq!(
        latest
            .iter()
            .map(|e| (e.record.at, e.record.tenant_id))
            .collect::<Vec<_>>(),
        [(104, ends[0]), (104, ends[1])]
    );
    let settings = AuditFilter {
        action: Some("settings.updated".into()),
        since: Some(101),
        ..AuditFilter::default()
    };
    let (some, total) = store.list_audit_across(&settings, 0, 2).await.unwrap();
    assert_eq!(total, 4);
    assert!(some
        .iter()
        .all(|e| e.record.tenant_id == b && e.record.at >= 101));
    assert_eq!(
        store
            .list_audit_across(&by(ActorKind::Device), 0, 10)
            .await
            .unwrap()
            .1,
        0
    );

    let mut tenants = store.audit_tenants().await.unwrap();
    tenants.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(tenants, expected);
    assert_eq!(
        store.audit_head(a).await.unwrap(),
        Some((6, all[5].hash.clone()))
    );
}

/// Appends racing on two stores (two nodes on PostgreSQL) keep one unbroken chain per
/// tenant: no sequence drawn twice, none skipped, each linked to the one before.
pub async fn concurrent_appends_keep_one_chain_per_tenant(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const EACH: usize = 12;
    let tenants = [tenant(a.as_ref(), "x").await, tenant(a.as_ref(), "y").await];
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut set = JoinSet::new();
    for w in 0..WRITERS {
        let store = Arc::clone(if w % 2 == 0 { &a } else { &b });
        let start = Arc::clone(&start);
        set.spawn(async move {
            start.wait().await;
            for i in 0..EACH {
                let t = tenants[(w + i) % 2];
                store
                    .append_audit(&audit(t, &format!("w{w}.{i}")))
                    .await
                    .unwrap();
            }
        });
    }
    set.join_all().await;
    for t in tenants {
        let (entries, total) = a
            .list_audit(t, &AuditFilter::default(), 0, 1000)
            .await
            .unwrap();
        assert_eq!(total as usize, WRITERS * EACH / 2 + 1);
        assert_linked(&entries);
        let check = verify_chain(b.as_ref(), t).await.unwrap();
        assert_eq!(check.first_bad, None);
    }
}

/// The actions of a tenant's chain, in order.
async fn actions(store: &dyn Store, tenant: uuid::Uuid) -> Vec<String> {
    let (entries, _) = store
        .list_audit(tenant, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_linked(&entries);
    entries.into_iter().map(|e| e.record.action).collect()
}

/// Each audited change of devices, webhooks and tenants writes its entry with it; a change
/// refused or finding nothing to change writes none.
pub async fn each_audited_change_writes_its_entry_and_a_refused_one_none(store: &dyn Store) {
    let t = tenant(store, "t").await;
    let d = device(t, "AAAAAAAAAA");
    store
        .create_device(&d, &audit(t, "device.registered"))
        .await
        .unwrap();
    let clash = device(t, "AAAAAAAAAA");
    let refused = store.create_device(&clash, &audit(t, "x.clash")).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    assert!(store
        .set_pairing_code(
            t,
            d.id,
            "BBBBBBBBBB",
            99,
            &audit(t, "device.pairing_code_issued")
        )
        .await
        .unwrap());
    let pairing = Pairing {
        device_id: d.id,
        code: "BBBBBBBBBB".into(),
        hardware_id: "hw".into(),
        secret_hash: "s".into(),
        paired_at: 5,
        cert_valid_until: 10,
    };
    let paired = store
        .pair_device(&pairing, &event(t, 1), &audit(t, "device.paired"))
        .await
        .unwrap();
    assert!(paired.is_some());
    let again = store
        .pair_device(&pairing, &event(t, 2), &audit(t, "x.paired_again"))
        .await
        .unwrap();
    assert!(again.is_none());
    assert!(!store
        .set_pairing_code(t, d.id, "CCCCCCCCCC", 99, &audit(t, "x.code_of_paired"))
        .await
        .unwrap());
    let h = hook(t, "a", &["device.paired"], 0);
    store
        .create_webhook(&h, &audit(t, "webhook.created"))
        .await
        .unwrap();
    let same_name = hook(t, "a", &["device.paired"], 1);
    let refused = store.create_webhook(&same_name, &audit(t, "x.same")).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));
    assert!(store
        .update_webhook(&h, &audit(t, "webhook.updated"))
        .await
        .unwrap());
    assert!(!store
        .update_webhook(&same_name, &audit(t, "x.unknown"))
        .await
        .unwrap());
    assert!(store
        .delete_webhook(t, h.id, &audit(t, "webhook.deleted"))
        .await
        .unwrap());
    assert!(!store
        .delete_webhook(t, h.id, &audit(t, "x.deleted_again"))
        .await
        .unwrap());
    assert!(store
        .delete_tenant(t, &audit(t, "tenant.deleted"))
        .await
        .unwrap());
    assert!(!store
        .delete_tenant(t, &audit(t, "x.tenant_again"))
        .await
        .unwrap());
    // The chain outlives its tenant.
    assert_eq!(
        actions(store, t).await,
        [
            "tenant.created",
            "device.registered",
            "device.pairing_code_issued",
            "device.paired",
            "webhook.created",
            "webhook.updated",
            "webhook.deleted",
            "tenant.deleted",
        ]
    );
    let check = verify_chain(store, t).await.unwrap();
    assert_eq!((check.entries, check.first_bad), (8, None));
}

/// Changes that write entries in their own transactions (challenge ends), racing on two
/// stores beside plain appends, leave each entry in the chain once, linked, and readable
/// from either store as soon as the changes are acknowledged.
pub async fn entries_of_racing_changes_are_chained_once(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const CHANGES: usize = 24;
    let t = tenant(a.as_ref(), "racing").await;
    let scanner = device(t, "RACE000001");
    a.create_device(&scanner, &audit(t, "device.registered"))
        .await
        .unwrap();
    let mut ids = Vec::with_capacity(CHANGES);
    for _ in 0..CHANGES {
        let c = challenge(t, scanner.id, i64::MAX);
        a.create_challenge(&c).await.unwrap();
        ids.push(c.id);
    }
    let start = Arc::new(tokio::sync::Barrier::new(CHANGES));
    let mut set = JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let start = Arc::clone(&start);
        set.spawn(async move {
            start.wait().await;
            let end = completion(id, t, &serde_json::json!({"n": i}), 1000 + i as i64, 60);
            assert!(store.complete_challenge(&end).await.unwrap());
            if i % 3 == 0 {
                store
                    .append_audit(&audit(t, &format!("plain.{i}")))
                    .await
                    .unwrap();
            }
        });
    }
    set.join_all().await;
    for store in [&a, &b] {
        let (entries, total) = store
            .list_audit(t, &AuditFilter::default(), 0, 1000)
            .await
            .unwrap();
        let plain = CHANGES.div_ceil(3);
        assert_eq!(total as usize, 2 + CHANGES + plain);
        assert_linked(&entries);
        let ended = entries
            .iter()
            .filter(|e| e.record.action == "test.ended")
            .count();
        assert_eq!(ended, CHANGES);
        let check = verify_chain(store.as_ref(), t).await.unwrap();
        assert_eq!(
            (check.entries as usize, check.first_bad),
            (total as usize, None)
        );
    }
}
