//! [`TemplateStore`] on PostgreSQL.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::sql::{execute, fetch_all, fetch_optional, get, parsed};
use super::users::{palm_cols, palm_row, user_row};
use super::PostgresStore;
use crate::templates::LOG_TEMPLATES_AFTER;
use crate::{
    ImportBatch, LogEntry, LogOp, LoggedTemplate, PalmType, SealedTemplate, StoreError,
    StoreResult, StoredTemplate, TemplateStore, UnsealedPalm, User,
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

    async fn users_with_palm_types(
        &self,
        tenant: Uuid,
        external_ids: &[String],
    ) -> StoreResult<Vec<(User, Vec<PalmType>)>> {
        // One index look-up of (tenant, external id) per id asked for. Written as a join
        // with the list so that the cached generic plan, made while the table was still
        // small, cannot filter the tenant's every user against the list instead; palms are
        // joined on the user id alone (it names one user of one tenant).
        let rows = fetch_all(
            &self.pool.get().await?,
            "SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.palm_type \
             FROM unnest($2::TEXT[]) AS wanted(external_user_id) \
             JOIN users u ON u.tenant_id = $1 AND u.external_user_id = wanted.external_user_id \
             LEFT JOIN palms p ON p.user_id = u.id",
            &[&tenant.to_string(), &external_ids],
            |r| {
                let palm: Option<PalmType> = match get::<Option<&str>>(r, "palm_type")? {
                    Some(_) => Some(parsed(r, "palm_type")?),
                    None => None,
                };
                Ok((user_row(r)?, palm))
            },
        )
        .await?;
        let mut out: Vec<(User, Vec<PalmType>)> = Vec::new();
        let mut at: HashMap<Uuid, usize> = HashMap::new();
        for (user, palm) in rows {
            let i = *at.entry(user.id).or_insert_with(|| {
                out.push((user, Vec::new()));
                out.len() - 1
            });
            out[i].1.extend(palm);
        }
        Ok(out)
    }

    async fn import_palms(&self, tenant: Uuid, batch: &ImportBatch, now: i64) -> StoreResult<u64> {
        let tenant_text = tenant.to_string();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        if !batch.existing_users.is_empty() {
            // Held until the commit: an erasure of one of them waits for the batch.
            let ids: Vec<String> = batch.existing_users.iter().map(Uuid::to_string).collect();
            let found = fetch_all(
                &tx,
                "SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2) FOR KEY SHARE",
                &[&tenant_text, &ids],
                |r| get::<String>(r, "id"),
            )
            .await?;
            if found.len() != ids.len() {
                return Err(StoreError::Conflict(
                    "a user of the batch is gone".to_owned(),
                ));
            }
        }
        if !batch.new_users.is_empty() {
            let u = &batch.new_users;
            let ids: Vec<String> = u.iter().map(|u| u.id.to_string()).collect();
            let externals: Vec<&str> = u.iter().map(|u| u.external_user_id.as_str()).collect();
            let created: Vec<i64> = u.iter().map(|u| u.created_at).collect();
            execute(
                &tx,
                "INSERT INTO users (id, tenant_id, external_user_id, created_at) \
                 SELECT i, $1, e, c FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[]) AS t(i, e, c)",
                &[&tenant_text, &ids, &externals, &created],
            )
            .await?;
        }
        let p = &batch.palms;
        let features: Vec<String> = p.iter().map(|(p, _)| p.feature_id.to_string()).collect();
        let users: Vec<String> = p.iter().map(|(p, _)| p.user_id.to_string()).collect();
        let types: Vec<&str> = p.iter().map(|(p, _)| p.palm_type.as_str()).collect();
        let enrolled: Vec<i64> = p.iter().map(|(p, _)| p.enrolled_at).collect();
        let vendors: Vec<&str> = p.iter().map(|(p, _)| p.vendor.as_str()).collect();
        let challenges: Vec<String> = p.iter().map(|(p, _)| p.challenge_id.to_string()).collect();
        let sealed: Vec<&[u8]> = p.iter().map(|(_, s)| s.sealed.as_slice()).collect();
        execute(
            &tx,
            "INSERT INTO palms (feature_id, tenant_id, user_id, palm_type, enrolled_at, vendor, \
             challenge_id, template) SELECT f, $1, u, p, e, v, c, t FROM unnest($2::TEXT[], \
             $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], $8::BYTEA[]) \
             AS x(f, u, p, e, v, c, t)",
            &[
                &tenant_text,
                &features,
                &users,
                &types,
                &enrolled,
                &vendors,
                &challenges,
                &sealed,
            ],
        )
        .await?;
        let entries: Vec<LogItem> = p
            .iter()
            .map(|(p, _)| (LogOp::Insert, p.feature_id, p.user_id, p.palm_type))
            .collect();
        let head = append_log(&tx, tenant, &entries, now).await?;
        append_audit(&tx, &batch.audit).await?;
        tx.commit().await?;
        Ok(head)
    }
}
