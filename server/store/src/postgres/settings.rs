//! [`SettingsStore`] on PostgreSQL: three columns of the tenant's row.

use uuid::Uuid;

use super::sql::{execute, fetch_optional, get};
use super::PostgresStore;
use crate::settings::{settings_columns, settings_from_columns};
use crate::{MatchingSettings, SettingsStore, StoreResult};

#[async_trait::async_trait]
impl SettingsStore for PostgresStore {
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<MatchingSettings>> {
        let row = fetch_optional(
            &self.pool.get().await?,
            "SELECT match_thresholds, match_policy, match_k FROM tenants WHERE id = $1",
            &[&tenant.to_string()],
            |row| {
                Ok((
                    get(row, "match_thresholds")?,
                    get(row, "match_policy")?,
                    get(row, "match_k")?,
                ))
            },
        )
        .await?;
        match row {
            Some((thresholds, policy, k)) => settings_from_columns(thresholds, policy, k),
            None => Ok(None),
        }
    }

    async fn put_settings(&self, tenant: Uuid, s: &MatchingSettings) -> StoreResult<()> {
        let (thresholds, policy, k) = settings_columns(s)?;
        execute(
            &self.pool.get().await?,
            "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3 \
             WHERE id = $4",
            &[&thresholds, &policy, &k, &tenant.to_string()],
        )
        .await?;
        Ok(())
    }
}
