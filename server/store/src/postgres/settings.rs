//! [`SettingsStore`] on PostgreSQL: columns of the tenant's row.

use uuid::Uuid;

use super::audit::audited_execute;
use super::sql::{fetch_optional, get};
use super::PostgresStore;
use crate::settings::{settings_columns, settings_from_columns, trust_from_columns};
use crate::{
    AuditRecord, MatchingSettings, SettingsStore, StoreResult, TenantSettingsRecord, TrustPolicy,
};

#[async_trait::async_trait]
impl SettingsStore for PostgresStore {
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<TenantSettingsRecord> {
        let row = fetch_optional(
            &self.pool.get().await?,
            "SELECT match_thresholds, match_policy, match_k, min_quality, min_liveness, \
             duplicate_check, retention_days FROM tenants WHERE id = $1",
            &[&tenant.to_string()],
            |row| {
                Ok((
                    (
                        get(row, "match_thresholds")?,
                        get(row, "match_policy")?,
                        get(row, "match_k")?,
                    ),
                    (
                        get::<f64>(row, "min_quality")?,
                        get::<f64>(row, "min_liveness")?,
                        get::<String>(row, "duplicate_check")?,
                        get::<Option<i64>>(row, "retention_days")?,
                    ),
                ))
            },
        )
        .await?;
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
        audited_execute(
            self,
            "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3, \
             min_quality = $4, min_liveness = $5, duplicate_check = $6, retention_days = $7 \
             WHERE id = $8",
            &[
                &thresholds,
                &policy,
                &k,
                &trust.min_quality,
                &trust.min_liveness,
                &trust.duplicate_check.as_str(),
                &trust.retention_days.map(i64::from),
                &tenant.to_string(),
            ],
            audit,
        )
        .await?;
        Ok(())
    }
}
