//! The engine galleries, one per tenant under `<data>/galleries/<tenant_uuid>/`, and their
//! start-up reconciliation with the database.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::store::Store;
use palmlink_engine::{Gallery, GalleryError, Layout};

/// Lazily opened galleries keyed by tenant.
pub(crate) struct Galleries {
    root: PathBuf,
    open: Mutex<HashMap<Uuid, Arc<Gallery>>>,
}

impl Galleries {
    /// Galleries under `root` (`<data>/galleries`).
    pub(crate) fn new(root: PathBuf) -> Galleries {
        Galleries {
            root,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's gallery, opened or created on first use.
    pub(crate) fn get(&self, tenant: Uuid) -> Result<Arc<Gallery>, GalleryError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = open.get(&tenant) {
            return Ok(g.clone());
        }
        let gallery = Arc::new(Gallery::open_or_create(
            &self.root.join(tenant.to_string()),
            Layout::DEFAULT,
        )?);
        open.insert(tenant, gallery.clone());
        Ok(gallery)
    }

    /// Live templates over the loaded galleries.
    pub(crate) fn live_total(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.values().map(|g| g.live_count()).sum()
    }

    /// Tenants that have a gallery directory on disk.
    fn tenants_on_disk(&self) -> Vec<Uuid> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()))
            .collect()
    }
}

/// Brings galleries and database into agreement before serving: gallery rows without a
/// database row (a crash between the two writes of an enrollment) are deleted; database rows
/// whose template is missing are reported at error level.
pub(crate) async fn reconcile(store: &dyn Store, galleries: &Galleries) -> anyhow::Result<()> {
    let mut tenants: HashSet<Uuid> = store.list_tenant_ids().await?.into_iter().collect();
    tenants.extend(galleries.tenants_on_disk());
    for tenant in tenants {
        let palms = store.all_palms(tenant).await?;
        if palms.is_empty() && !galleries.root.join(tenant.to_string()).exists() {
            continue;
        }
        let gallery = galleries.get(tenant)?;
        let known: HashMap<u64, u128> = palms
            .iter()
            .filter_map(|p| {
                u64::try_from(p.row_id)
                    .ok()
                    .map(|r| (r, p.feature_id.as_u128()))
            })
            .collect();
        let damaged = gallery.damaged_rows();
        if !damaged.is_empty() {
            tracing::error!(%tenant, rows = ?damaged, "gallery rows failed their checks when the gallery was opened");
        }
        let live = gallery.live_records();
        let mut orphans = 0usize;
        for (row, ids) in &live {
            if known.get(&row.0) != Some(&ids.feature_id) {
                gallery.delete(*row)?;
                orphans += 1;
            }
        }
        if orphans > 0 {
            tracing::warn!(%tenant, orphans, "deleted gallery rows that no enrollment references");
        }
        let live_rows: HashMap<u64, u128> =
            live.iter().map(|(r, ids)| (r.0, ids.feature_id)).collect();
        for p in &palms {
            let ok = u64::try_from(p.row_id)
                .ok()
                .and_then(|r| live_rows.get(&r))
                .is_some_and(|f| *f == p.feature_id.as_u128());
            if !ok {
                tracing::error!(
                    %tenant,
                    feature_id = %p.feature_id,
                    user_id = %p.user_id,
                    row = p.row_id,
                    "ENROLLMENT WITHOUT TEMPLATE: the database references a gallery row that is missing"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use palmlink_engine::{PalmSide, RecordIds, Template};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store::{Challenge, Device, EnrollmentCommit, OutboxEvent, Palm, SqliteStore};

    fn template(seed: u32) -> Template {
        let values: Vec<f32> = (0..Layout::DEFAULT.len())
            .map(|i| ((i as u32 * 7 + seed * 13) % 17) as f32 + 1.0)
            .collect();
        Template::from_f32(Layout::DEFAULT, &values).expect("template")
    }

    #[tokio::test]
    async fn reconciliation_deletes_orphans_and_keeps_acknowledged_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.expect("store");
        let tenant = store.create_tenant("t").await.expect("tenant").id;
        let device = Device {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            device_name: "d".into(),
            location: "l".into(),
            status: "paired".into(),
            hardware_id: Some("hw".into()),
            pairing_code: Some("CODE234567".into()),
            pairing_expires_at: None,
            paired_at: Some(0),
            cert_valid_until: None,
            last_seen_at: None,
            created_at: 0,
        };
        store.create_device(&device).await.expect("device");
        let challenge = Challenge {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            kind: "enroll".into(),
            device_id: device.id,
            hardware_id: "hw".into(),
            external_user_id: Some("u".into()),
            palm_type: "right".into(),
            top_k: None,
            status: "pending".into(),
            metadata: json!(null),
            result: None,
            failure_reason: None,
            created_at: 0,
            expires_at: i64::MAX,
            finished_at: None,
        };
        store.create_challenge(&challenge).await.expect("challenge");
        let user = store.ensure_user(tenant, "u", 0).await.expect("user");

        let galleries = Galleries::new(dir.path().join("galleries"));
        let gallery = galleries.get(tenant).expect("gallery");
        let known = RecordIds {
            feature_id: Uuid::new_v4().as_u128(),
            user_key: user.id.as_u128(),
            palm: PalmSide::Right,
        };
        let orphan = RecordIds {
            feature_id: Uuid::new_v4().as_u128(),
            user_key: user.id.as_u128(),
            palm: PalmSide::Left,
        };
        let known_row = gallery.insert(known, &template(1)).expect("insert");
        let orphan_row = gallery.insert(orphan, &template(2)).expect("insert");
        let palm = Palm {
            feature_id: Uuid::from_u128(known.feature_id),
            tenant_id: tenant,
            user_id: user.id,
            palm_type: "right".into(),
            row_id: known_row.0 as i64,
            enrolled_at: 0,
            vendor: "mock".into(),
            challenge_id: challenge.id,
        };
        let event = OutboxEvent {
            event_id: "evt_0".into(),
            tenant_id: tenant,
            event_type: "enrollment.complete".into(),
            payload: json!({}),
            occurred_at: 0,
            dispatched_at: None,
        };
        let commit = EnrollmentCommit {
            challenge_id: challenge.id,
            palms: vec![palm],
            result: json!({}),
            event,
        };
        assert!(store.complete_enrollment(&commit, 1).await.expect("commit"));

        reconcile(&store, &galleries).await.expect("reconcile");
        let live: Vec<_> = gallery
            .live_records()
            .into_iter()
            .map(|(row, _)| row)
            .collect();
        assert_eq!(live, vec![known_row]);
        assert_ne!(known_row, orphan_row);

        // A database row whose template vanished is reported, not fatal, and kept.
        gallery.delete(known_row).expect("delete");
        reconcile(&store, &galleries).await.expect("reconcile");
        assert_eq!(store.all_palms(tenant).await.expect("palms").len(), 1);
    }
}
