//! [`TemplateStore`] on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::log::{append_log, LogItem};
use super::sql::{fetch_all, fetch_optional, get, parsed};
use super::users::{palm_cols, palm_row};
use super::PostgresStore;
use crate::templates::LOG_TEMPLATES_AFTER;
use crate::{
    LogEntry, LogOp, LoggedTemplate, SealedTemplate, StoreResult, StoredTemplate, TemplateStore,
    UnsealedPalm,
};

fn log_row(row: &Row) -> StoreResult<LogEntry> {
    Ok(LogEntry {
        sequence: u64::try_from(get::<i64>(row, "sequence")?).unwrap_or(0),
        op: parsed(row, "op")?,
        feature_id: parsed(row, "feature_id")?,
        user_id: parsed(row, "user_id")?,
        palm_type: parsed(row, "palm_type")?,
        at: get(row, "at")?,
    })
}

fn stored_row(row: &Row) -> StoreResult<StoredTemplate> {
    Ok(StoredTemplate {
        palm: palm_row(row)?,
        sealed: get(row, "template")?,
    })
}

#[async_trait::async_trait]
impl TemplateStore for PostgresStore {
    async fn log_head(&self, tenant: Uuid) -> StoreResult<u64> {
        let head: Option<i64> = fetch_optional(
            &self.pool.get().await?,
            "SELECT last_sequence FROM template_log_heads WHERE tenant_id = $1",
            &[&tenant.to_string()],
            |r| get(r, "last_sequence"),
        )
        .await?;
        Ok(head.map_or(0, |h| u64::try_from(h).unwrap_or(0)))
    }

    async fn log_after(&self, tenant: Uuid, after: u64, limit: i64) -> StoreResult<Vec<LogEntry>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        fetch_all(
            &self.pool.get().await?,
            "SELECT sequence, op, feature_id, user_id, palm_type, at FROM template_log \
             WHERE tenant_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
            &[&tenant.to_string(), &after, &limit],
            log_row,
        )
        .await
    }

    async fn log_templates_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: i64,
    ) -> StoreResult<Vec<LoggedTemplate>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        fetch_all(
            &self.pool.get().await?,
            LOG_TEMPLATES_AFTER,
            &[&tenant.to_string(), &after, &limit],
            |r| {
                Ok(LoggedTemplate {
                    entry: log_row(r)?,
                    sealed: get(r, "template")?,
                })
            },
        )
        .await
    }

    async fn sealed_templates(
        &self,
        tenant: Uuid,
        features: &[Uuid],
    ) -> StoreResult<Vec<StoredTemplate>> {
        let ids: Vec<String> = features.iter().map(Uuid::to_string).collect();
        let mut found = fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                palm_cols!(),
                ", template FROM palms WHERE tenant_id = $1 AND feature_id = ANY($2) \
                 AND template IS NOT NULL"
            ),
            &[&tenant.to_string(), &ids],
            stored_row,
        )
        .await?;
        // In the order asked for, as the SQLite backend answers.
        found.sort_by_key(|t| {
            features
                .iter()
                .position(|f| *f == t.palm.feature_id)
                .unwrap_or(usize::MAX)
        });
        Ok(found)
    }

    async fn templates_page(
        &self,
        tenant: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                palm_cols!(),
                ", template FROM palms WHERE tenant_id = $1 AND feature_id > $2 \
                 AND template IS NOT NULL ORDER BY feature_id LIMIT $3"
            ),
            &[&tenant.to_string(), &after, &limit],
            stored_row,
        )
        .await
    }

    async fn unsealed_palms(&self, tenant: Uuid) -> StoreResult<Vec<UnsealedPalm>> {
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                palm_cols!(),
                ", legacy_row_id FROM palms WHERE tenant_id = $1 AND template IS NULL"
            ),
            &[&tenant.to_string()],
            |r| {
                Ok(UnsealedPalm {
                    palm: palm_row(r)?,
                    row: get(r, "legacy_row_id")?,
                })
            },
        )
        .await
    }

    async fn seal_palms(
        &self,
        tenant: Uuid,
        templates: &[(Uuid, SealedTemplate)],
        now: i64,
    ) -> StoreResult<u64> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let mut entries: Vec<LogItem> = Vec::with_capacity(templates.len());
        for (feature, sealed) in templates {
            let palm = fetch_optional(
                &tx,
                concat!(
                    "UPDATE palms SET template = $1 WHERE tenant_id = $2 AND feature_id = $3 \
                     AND template IS NULL RETURNING ",
                    palm_cols!()
                ),
                &[&sealed.sealed, &tenant.to_string(), &feature.to_string()],
                palm_row,
            )
            .await?;
            if let Some(p) = palm {
                entries.push((LogOp::Insert, p.feature_id, p.user_id, p.palm_type));
            }
        }
        let head = append_log(&tx, tenant, &entries, now).await?;
        tx.commit().await?;
        Ok(head)
    }
}
