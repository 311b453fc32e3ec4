//! The audit log: one unbroken hash chain per tenant, filters and pages, and appends from
//! many writers at once.

use std::sync::Arc;

use palmlink_store::{verify_chain, AuditEntry, AuditFilter, AuditRecord, Store, GENESIS_HASH};
use tokio::task::JoinSet;

use crate::support::{audit, tenant};

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
        assert_eq!(e.sequence, i as u64 + 1);
        store
            .append_audit(&rec(b, "settings.updated"))
            .await
            .unwrap();
    }
    let (all, total) = store
        .list_audit(a, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(total, 5);
    assert_linked(&all);
    // What is stored is what was given.
    assert_eq!(
        all[0].record,
        AuditRecord {
            at: 100,
            ..audit(a, "client.rotated")
        }
    );
    let check = verify_chain(store, a).await.unwrap();
    assert_eq!((check.entries, check.first_bad), (5, None));
    let (b_all, _) = store
        .list_audit(b, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    assert_linked(&b_all);
    assert!(b_all.iter().all(|e| e.record.tenant_id == b));
    let filter = AuditFilter {
        since: Some(102),
        action: Some("client.rotated".into()),
    };
    let (some, total) = store.list_audit(a, &filter, 0, 100).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(some.iter().map(|e| e.sequence).collect::<Vec<_>>(), [3, 5]);
    let (page, total) = store
        .list_audit(a, &AuditFilter::default(), 1, 2)
        .await
        .unwrap();
    assert_eq!(total, 5);
    assert_eq!(page.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 3]);
    let mut tenants = store.audit_tenants().await.unwrap();
    tenants.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(tenants, expected);
    assert_eq!(
        store.audit_head(a).await.unwrap(),
        Some((5, all[4].hash.clone()))
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
        assert_eq!(total as usize, WRITERS * EACH / 2);
        assert_linked(&entries);
        let check = verify_chain(b.as_ref(), t).await.unwrap();
        assert_eq!(check.first_bad, None);
    }
}
