//! [`SettingsStore`] on SQLite: three columns of the tenant's row.

use rusqlite::params;
use uuid::Uuid;

use super::sql::{execute, fetch_optional};
use super::SqliteStore;
use crate::settings::{settings_columns, settings_from_columns};
use crate::{MatchingSettings, SettingsStore, StoreResult};

#[async_trait::async_trait]
impl SettingsStore for SqliteStore {
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<MatchingSettings>> {
        let row = self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT match_thresholds, match_policy, match_k FROM tenants WHERE id = $1",
                [tenant.to_string()],
                |row| {
                    Ok((
                        row.get("match_thresholds")?,
                        row.get("match_policy")?,
                        row.get("match_k")?,
                    ))
                },
            )
        })?;
        match row {
            Some((thresholds, policy, k)) => settings_from_columns(thresholds, policy, k),
            None => Ok(None),
        }
    }

    async fn put_settings(&self, tenant: Uuid, s: &MatchingSettings) -> StoreResult<()> {
        let (thresholds, policy, k) = settings_columns(s)?;
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3 \
                     WHERE id = $4",
                    params![thresholds, policy, k, tenant.to_string()],
                )
            })
            .await?;
        Ok(())
    }
}
