//! [`SettingsStore`] on SQLite: columns of the tenant's row.

use rusqlite::params;
use uuid::Uuid;

use super::audit::audited;
use super::sql::{execute, fetch_optional};
use super::SqliteStore;
use crate::settings::{settings_columns, settings_from_columns, trust_from_columns};
use crate::{
    AuditRecord, MatchingSettings, SettingsStore, StoreResult, TenantSettingsRecord, TrustPolicy,
};

#[async_trait::async_trait]
impl SettingsStore for SqliteStore {
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<TenantSettingsRecord> {
        let row = self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT match_thresholds, match_policy, match_k, min_quality, min_liveness, \
                 duplicate_check, retention_days FROM tenants WHERE id = $1",
                [tenant.to_string()],
                |row| {
                    Ok((
                        (
                            row.get("match_thresholds")?,
                            row.get("match_policy")?,
                            row.get("match_k")?,
                        ),
                        (
                            row.get::<_, f64>("min_quality")?,
                            row.get::<_, f64>("min_liveness")?,
                            row.get::<_, String>("duplicate_check")?,
                            row.get::<_, Option<i64>>("retention_days")?,
                        ),
                    ))
                },
            )
        })?;
        let Some(((thresholds, policy, k), (q, l, d, r))) = row else {
            return Ok(TenantSettingsRecord::default());
        };
        Ok(TenantSettingsRecord {
            matching: settings_from_columns(thresholds, policy, k)?,
            trust: trust_from_columns(q, l, &d, r)?,
        })
    }

    async fn put_settings(
        &self,
        tenant: Uuid,
        s: &MatchingSettings,
        trust: &TrustPolicy,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let (thresholds, policy, k) = settings_columns(s)?;
        audited(self, audit, |c| {
            execute(
                c,
                "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3, \
                     min_quality = $4, min_liveness = $5, duplicate_check = $6, retention_days = $7 \
             WHERE id = $8",
                params![
                    thresholds,
                    policy,
                    k,
                    trust.min_quality,
                    trust.min_liveness,
                    trust.duplicate_check.as_str(),
                    trust.retention_days.map(i64::from),
                    tenant.to_string()
                ],
            )
        })
        .await?;
        Ok(())
    }
}
