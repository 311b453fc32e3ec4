//! [`SettingsStore`] on SQLite: three columns of the tenant's row.

use rusqlite::params;
use uuid::Uuid;

use super::sql::{execute, fetch_optional};
use super::SqliteStore;
use crate::{MatchPolicy, MatchingSettings, SettingsStore, StoreError, StoreResult};

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
                        row.get::<_, Option<String>>("match_thresholds")?,
                        row.get::<_, Option<String>>("match_policy")?,
                        row.get::<_, Option<i64>>("match_k")?,
                    ))
                },
            )
        })?;
        let Some((Some(thresholds), Some(policy), k)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Database(format!("stored settings: {what}"));
        let policy = match (policy.as_str(), k) {
            ("all_thresholds", _) => MatchPolicy::AllThresholds,
            ("mean", _) => MatchPolicy::Mean,
            ("k_of_n", Some(k)) => MatchPolicy::KOfN {
                k: u32::try_from(k).map_err(|_| corrupt("k out of range"))?,
            },
            _ => return Err(corrupt("unknown match policy")),
        };
        Ok(Some(MatchingSettings {
            thresholds: serde_json::from_str(&thresholds)
                .map_err(|_| corrupt("thresholds are not a list of numbers"))?,
            policy,
        }))
    }

    async fn put_settings(&self, tenant: Uuid, s: &MatchingSettings) -> StoreResult<()> {
        let thresholds = serde_json::to_string(&s.thresholds)
            .map_err(|err| StoreError::Database(err.to_string()))?;
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3 \
                     WHERE id = $4",
                    params![
                        thresholds,
                        s.policy.as_str(),
                        s.policy.k().map(i64::from),
                        tenant.to_string()
                    ],
                )
            })
            .await?;
        Ok(())
    }
}
