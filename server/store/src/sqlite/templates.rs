//! [`TemplateStore`] on SQLite.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::sql::{execute, fetch_all, fetch_optional, parsed};
use super::users::{insert_palm, palm_cols, palm_row, user_row};
use super::SqliteStore;
use crate::templates::LOG_TEMPLATES_AFTER;
use crate::{
    ImportBatch, LogEntry, LogOp, LoggedTemplate, PalmType, SealedTemplate, StoreResult,
    StoredTemplate, TemplateStore, UnsealedPalm, User,
};

/// A refusal of a write that conflicts with rows written meanwhile: rolls the write back and
/// reaches the caller as [`StoreError::Conflict`](crate::StoreError::Conflict).
fn conflict(what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE),
        Some(what.to_owned()),
    )
}

fn log_row(row: &Row<'_>) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        sequence: u64::try_from(row.get::<_, i64>("sequence")?).unwrap_or(0),
        op: parsed(row, "op")?,
        feature_id: parsed(row, "feature_id")?,
        user_id: parsed(row, "user_id")?,
        palm_type: parsed(row, "palm_type")?,
        at: row.get("at")?,
    })
}

fn stored_row(row: &Row<'_>) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        palm: palm_row(row)?,
        sealed: row.get("template")?,
    })
}

#[async_trait::async_trait]
impl TemplateStore for SqliteStore {
    async fn log_head(&self, tenant: Uuid) -> StoreResult<u64> {
        let head: Option<i64> = self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT last_sequence FROM template_log_heads WHERE tenant_id = $1",
                [tenant.to_string()],
                |r| r.get(0),
            )
        })?;
        Ok(head.map_or(0, |h| u64::try_from(h).unwrap_or(0)))
    }

    async fn log_after(&self, tenant: Uuid, after: u64, limit: i64) -> StoreResult<Vec<LogEntry>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                "SELECT sequence, op, feature_id, user_id, palm_type, at FROM template_log \
                 WHERE tenant_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
                params![tenant.to_string(), after, limit],
                log_row,
            )
        })?)
    }

    async fn log_templates_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: i64,
    ) -> StoreResult<Vec<LoggedTemplate>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                LOG_TEMPLATES_AFTER,
                params![tenant.to_string(), after, limit],
                |r| {
                    Ok(LoggedTemplate {
                        entry: log_row(r)?,
                        sealed: r.get("template")?,
                    })
                },
            )
        })?)
    }

    async fn sealed_templates(
        &self,
        tenant: Uuid,
        features: &[Uuid],
    ) -> StoreResult<Vec<StoredTemplate>> {
        Ok(self.db.read(|c| {
            let mut out = Vec::with_capacity(features.len());
            for feature in features {
                out.extend(fetch_optional(
                    c,
                    concat!(
                        "SELECT ",
                        palm_cols!(),
                        ", template FROM palms WHERE tenant_id = $1 AND feature_id = $2 \
                         AND template IS NOT NULL"
                    ),
                    [tenant.to_string(), feature.to_string()],
                    stored_row,
                )?);
            }
            Ok(out)
        })?)
    }

    async fn templates_page(
        &self,
        tenant: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<StoredTemplate>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    palm_cols!(),
                    ", template FROM palms WHERE tenant_id = $1 AND feature_id > $2 \
                     AND template IS NOT NULL ORDER BY feature_id LIMIT $3"
                ),
                params![tenant.to_string(), after, limit],
                stored_row,
            )
        })?)
    }

    async fn unsealed_palms(&self, tenant: Uuid) -> StoreResult<Vec<UnsealedPalm>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    palm_cols!(),
                    ", legacy_row_id FROM palms WHERE tenant_id = $1 AND template IS NULL"
                ),
                [tenant.to_string()],
                |r| {
                    Ok(UnsealedPalm {
                        palm: palm_row(r)?,
                        row: r.get("legacy_row_id")?,
                    })
                },
            )
        })?)
    }

    async fn seal_palms(
        &self,
        tenant: Uuid,
        templates: &[(Uuid, SealedTemplate)],
        now: i64,
    ) -> StoreResult<u64> {
        Ok(self
            .db
            .write(|c| {
                let mut entries: Vec<LogItem> = Vec::with_capacity(templates.len());
                for (feature, sealed) in templates {
                    let palm = fetch_optional(
                        c,
                        concat!(
                            "UPDATE palms SET template = $1 WHERE tenant_id = $2 \
                             AND feature_id = $3 AND template IS NULL RETURNING ",
                            palm_cols!()
                        ),
                        params![sealed.sealed, tenant.to_string(), feature.to_string()],
                        palm_row,
                    )?;
                    if let Some(p) = palm {
                        entries.push((LogOp::Insert, p.feature_id, p.user_id, p.palm_type));
                    }
                }
                if entries.is_empty() {
                    return fetch_optional(
                        c,
                        "SELECT last_sequence FROM template_log_heads WHERE tenant_id = $1",
                        [tenant.to_string()],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|h| h.map_or(0, |h| u64::try_from(h).unwrap_or(0)));
                }
                append_log(c, tenant, &entries, now)
            })
            .await?)
    }

    async fn users_with_palm_types(
        &self,
        tenant: Uuid,
        external_ids: &[String],
    ) -> StoreResult<Vec<(User, Vec<PalmType>)>> {
        let tenant_text = tenant.to_string();
        Ok(self.db.read(|c| {
            let mut out = Vec::new();
            for external in external_ids {
                let rows = fetch_all(
                    c,
                    "SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.palm_type \
                     FROM users u LEFT JOIN palms p ON p.user_id = u.id \
                     WHERE u.tenant_id = $1 AND u.external_user_id = $2",
                    params![tenant_text, external],
                    |r| {
                        let palm: Option<PalmType> =
                            match r.get::<_, Option<String>>("palm_type")? {
                                Some(_) => Some(parsed(r, "palm_type")?),
                                None => None,
                            };
                        Ok((user_row(r)?, palm))
                    },
                )?;
                let mut rows = rows.into_iter();
                if let Some((user, first)) = rows.next() {
                    let palms = first
                        .into_iter()
                        .chain(rows.filter_map(|(_, p)| p))
                        .collect();
                    out.push((user, palms));
                }
            }
            Ok(out)
        })?)
    }

    async fn import_palms(&self, tenant: Uuid, batch: &ImportBatch, now: i64) -> StoreResult<u64> {
        let tenant_text = tenant.to_string();
        Ok(self
            .db
            .write(|c| {
                for id in &batch.existing_users {
                    let found = fetch_optional(
                        c,
                        "SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2",
                        params![tenant_text, id.to_string()],
                        |r| r.get::<_, i64>(0),
                    )?;
                    if found.is_none() {
                        return Err(conflict("a user of the batch is gone"));
                    }
                }
                for u in &batch.new_users {
                    execute(
                        c,
                        "INSERT INTO users (id, tenant_id, external_user_id, created_at) \
                         VALUES ($1, $2, $3, $4)",
                        params![
                            u.id.to_string(),
                            tenant_text,
                            u.external_user_id,
                            u.created_at
                        ],
                    )?;
                }
                let mut entries: Vec<LogItem> = Vec::with_capacity(batch.palms.len());
                for (p, sealed) in &batch.palms {
                    insert_palm(c, p, sealed)?;
                    entries.push((LogOp::Insert, p.feature_id, p.user_id, p.palm_type));
                }
                let head = append_log(c, tenant, &entries, now)?;
                append_audit(c, &batch.audit)?;
                Ok(head)
            })
            .await?)
    }
}
