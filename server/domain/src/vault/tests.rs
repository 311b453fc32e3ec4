//! Sealing, opening, binding, and the master key's checks, on a real store.

use std::sync::Arc;

use palmlink_engine::{Layout, Template};
use palmlink_store::Store;
use uuid::Uuid;

use super::*;
use crate::clock::SystemClock;

fn template(seed: u32) -> Template {
    let values: Vec<f32> = (0..Layout::DEFAULT.len())
        .map(|i| ((i as u32 * 31 + seed * 17) % 23) as f32 - 11.0)
        .collect();
    Template::from_f32(Layout::DEFAULT, &values).unwrap()
}

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("db").display());
    palmlink_store::open(&url).await.unwrap()
}

#[tokio::test]
async fn a_sealed_template_opens_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let master = MasterKey::load(&dir.path().join("master.key"), true).unwrap();
    let vault = Vault::new(master, store, Arc::new(SystemClock));
    let (tenant, user, feature) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let t = template(1);
    let sealed = vault
        .seal_template(tenant, user, feature, &t)
        .await
        .unwrap();
    let opened = vault
        .open_template(tenant, user, feature, &sealed.sealed)
        .await;
    assert_eq!(opened.unwrap().unwrap(), t);
    // No 64-byte window of the template's bytes is in what the database keeps.
    let plain: &[u8] = bytemuck::cast_slice(t.as_slice());
    assert!(!plain
        .windows(64)
        .any(|w| sealed.sealed.windows(64).any(|s| s == w)));
    // Sealing twice gives two different values (fresh nonces).
    let again = vault
        .seal_template(tenant, user, feature, &t)
        .await
        .unwrap();
    assert_ne!(again, sealed);
    // Moved to another row, of another user, of another tenant: it does not open.
    for (te, us, fe) in [
        (tenant, user, Uuid::new_v4()),
        (tenant, Uuid::new_v4(), feature),
        (Uuid::new_v4(), user, feature),
    ] {
        let moved = vault
            .open_template(te, us, fe, &sealed.sealed)
            .await
            .unwrap();
        assert!(moved.is_err());
    }
    // One changed bit anywhere: it does not open.
    for i in [0, 5, sealed.sealed.len() / 2, sealed.sealed.len() - 1] {
        let mut altered = sealed.sealed.clone();
        altered[i] ^= 1;
        let opened = vault
            .open_template(tenant, user, feature, &altered)
            .await
            .unwrap();
        assert_eq!(
            opened,
            Err(Unreadable {
                feature_id: feature
            })
        );
    }
}

#[tokio::test]
async fn a_database_refuses_every_master_key_but_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let path = dir.path().join("keys").join("master.key");
    let master = MasterKey::load(&path, true).unwrap();
    master.verify(store.as_ref(), &SystemClock).await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The same file again: accepted, and not recreated.
    let bytes = std::fs::read(&path).unwrap();
    MasterKey::load(&path, true)
        .unwrap()
        .verify(store.as_ref(), &SystemClock)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Another key: refused, naming the file.
    let other = dir.path().join("other.key");
    let err = MasterKey::load(&other, true)
        .unwrap()
        .verify(store.as_ref(), &SystemClock)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(err.to_string().contains("other.key"), "{err}");
    // No file, and not allowed to create one.
    let missing = MasterKey::load(&dir.path().join("gone.key"), false).unwrap_err();
    assert!(matches!(missing, VaultError::Missing { .. }), "{missing}");
    // A file that is not a key.
    std::fs::write(dir.path().join("short.key"), b"too short").unwrap();
    let short = MasterKey::load(&dir.path().join("short.key"), false).unwrap_err();
    assert!(
        matches!(short, VaultError::Malformed { len: 9, .. }),
        "{short}"
    );
}

#[tokio::test]
async fn a_tenant_key_is_made_once_and_kept_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let path = dir.path().join("master.key");
    let tenant = Uuid::new_v4();
    let (user, feature) = (Uuid::new_v4(), Uuid::new_v4());
    let sealed = {
        let vault = Vault::new(
            MasterKey::load(&path, true).unwrap(),
            store.clone(),
            Arc::new(SystemClock),
        );
        vault
            .seal_template(tenant, user, feature, &template(2))
            .await
            .unwrap()
    };
    let wrapped = store.tenant_key(tenant).await.unwrap().unwrap();
    assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
    // A second vault (another node, a restart) unwraps the same key.
    let vault = Vault::new(
        MasterKey::load(&path, false).unwrap(),
        store.clone(),
        Arc::new(SystemClock),
    );
    let opened = vault
        .open_template(tenant, user, feature, &sealed.sealed)
        .await
        .unwrap();
    assert_eq!(opened.unwrap(), template(2));
    // Without its wrapped key, nothing of the tenant opens any more.
    let audit = crate::audit::record(
        tenant,
        0,
        palmlink_store::Actor::system(),
        "tenant.deleted",
        ("tenant", tenant.to_string()),
        "success",
        serde_json::Value::Null,
    );
    store.delete_tenant(tenant, &audit).await.unwrap();
    vault.forget(tenant);
    let after = Vault::new(
        MasterKey::load(&path, false).unwrap(),
        store,
        Arc::new(SystemClock),
    );
    let shredded = after
        .open_template(tenant, user, feature, &sealed.sealed)
        .await
        .unwrap();
    assert!(shredded.is_err(), "a deleted tenant's template opened");
}
