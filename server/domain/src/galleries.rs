//! The engine galleries, one per tenant under `<data>/galleries/<tenant_uuid>/`, and their
//! start-up reconciliation with the database.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use palmlink_engine::{Gallery, GalleryError, Layout};
use palmlink_store::Store;

use crate::DomainResult;

/// Lazily opened galleries keyed by tenant.
pub struct Galleries {
    root: PathBuf,
    open: Mutex<HashMap<Uuid, Arc<Gallery>>>,
}

impl Galleries {
    /// Galleries under `root` (`<data>/galleries`).
    pub fn new(root: PathBuf) -> Galleries {
        Galleries {
            root,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's gallery, opened or created on first use.
    pub fn get(&self, tenant: Uuid) -> Result<Arc<Gallery>, GalleryError> {
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
    pub fn live_total(&self) -> usize {
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
pub async fn reconcile(store: &dyn Store, galleries: &Galleries) -> DomainResult<()> {
    let mut tenants: HashSet<Uuid> = store.list_tenant_ids().await?.into_iter().collect();
    tenants.extend(galleries.tenants_on_disk());
    for tenant in tenants {
        let palms = store.all_palms(tenant).await?;
        if palms.is_empty() && !galleries.root.join(tenant.to_string()).exists() {
            continue;
        }
        let gallery = galleries
            .get(tenant)
            .map_err(crate::DomainError::internal)?;
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
                gallery.delete(*row).map_err(crate::DomainError::internal)?;
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
mod tests;
