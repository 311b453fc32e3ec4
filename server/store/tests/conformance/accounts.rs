//! Tenants and OAuth clients.

use palmlink_store::{AuditFilter, Client, Scope, Store};
use uuid::Uuid;

use crate::support::{audit, tenant};

pub async fn tenants_are_listed_and_found(store: &dyn Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    let mut ids = store.list_tenant_ids().await.unwrap();
    ids.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(store.get_tenant(a).await.unwrap().unwrap().name, "a");
    let all = store.list_tenants().await.unwrap();
    let mut names: Vec<(Uuid, &str)> = all.iter().map(|t| (t.id, t.name.as_str())).collect();
    names.sort();
    let mut expected = vec![(a, "a"), (b, "b")];
    expected.sort();
    assert_eq!(names, expected);
    assert!(store.get_tenant(Uuid::new_v4()).await.unwrap().is_none());
}

pub async fn client_secrets_rotate_through_two_slots(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    let client = Client {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: "c".into(),
        scopes: vec![Scope::Devices, Scope::Verify],
        secret_hash: "h1".into(),
        old_secret_hash: None,
        created_at: 1,
    };
    store
        .create_client(&client, &audit(tenant, "client.created"))
        .await
        .unwrap();
    let other = crate::support::tenant(store, "o").await;
    store
        .create_client(
            &Client {
                id: Uuid::new_v4(),
                tenant_id: other,
                ..client.clone()
            },
            &audit(other, "client.created"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.list_clients(tenant).await.unwrap(),
        vec![client.clone()]
    );
    assert_eq!(
        store.get_client(client.id).await.unwrap(),
        Some(client.clone())
    );
    assert!(store
        .rotate_client_secret(client.id, "h2", &audit(tenant, "client.rotated"))
        .await
        .unwrap());
    let c = store.get_client(client.id).await.unwrap().unwrap();
    assert_eq!(
        (c.secret_hash.as_str(), c.old_secret_hash.as_deref()),
        ("h2", Some("h1"))
    );
    assert!(store
        .revoke_old_client_secret(client.id, &audit(tenant, "client.old_secret_revoked"))
        .await
        .unwrap());
    let c = store.get_client(client.id).await.unwrap().unwrap();
    assert_eq!(c.old_secret_hash, None);
    assert!(!store
        .rotate_client_secret(Uuid::new_v4(), "h", &audit(tenant, "client.rotated"))
        .await
        .unwrap());
    let deleted = audit(tenant, "client.deleted");
    assert!(store.delete_client(client.id, &deleted).await.unwrap());
    assert!(store.get_client(client.id).await.unwrap().is_none());
    assert!(!store.delete_client(client.id, &deleted).await.unwrap());
    // Each change wrote its entry; what changed nothing (an unknown client, a second
    // deletion) wrote none.
    let (entries, total) = store
        .list_audit(tenant, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.record.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "client.created",
            "client.rotated",
            "client.old_secret_revoked",
            "client.deleted"
        ]
    );
    assert_eq!(total, 5);
    assert_eq!(entries[4].record, deleted);
}
