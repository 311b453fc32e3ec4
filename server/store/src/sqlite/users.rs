//! [`UserStore`] on SQLite.

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::sql::{execute, fetch_all, fetch_optional, parsed};
use super::SqliteStore;
use crate::users::user_with_palms;
use crate::{
    AuditRecord, Erasure, LogOp, Palm, SealedTemplate, StoreError, StoreResult, User, UserStore,
};

pub(super) fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        external_user_id: row.get("external_user_id")?,
        created_at: row.get("created_at")?,
    })
}

/// The columns [`palm_row`] reads.
macro_rules! palm_cols {
    () => {
        "feature_id, tenant_id, user_id, palm_type, enrolled_at, vendor, challenge_id"
    };
}
pub(super) use palm_cols;

pub(super) fn palm_row(row: &Row<'_>) -> rusqlite::Result<Palm> {
    Ok(Palm {
        feature_id: parsed(row, "feature_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        user_id: parsed(row, "user_id")?,
        palm_type: parsed(row, "palm_type")?,
        enrolled_at: row.get("enrolled_at")?,
        vendor: row.get("vendor")?,
        challenge_id: parsed(row, "challenge_id")?,
    })
}

/// Stores `p` with its sealed template, inside the caller's transaction.
pub(super) fn insert_palm(
    c: &Connection,
    p: &Palm,
    sealed: &SealedTemplate,
) -> rusqlite::Result<()> {
    execute(
        c,
        concat!(
            "INSERT INTO palms (",
            palm_cols!(),
            ", template) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        params![
            p.feature_id.to_string(),
            p.tenant_id.to_string(),
            p.user_id.to_string(),
            p.palm_type.as_str(),
            p.enrolled_at,
            p.vendor,
            p.challenge_id.to_string(),
            sealed.sealed,
        ],
    )
    .map(drop)
}

#[async_trait::async_trait]
impl UserStore for SqliteStore {
    async fn ensure_user(
        &self,
        tenant: Uuid,
        external_user_id: &str,
        now: i64,
    ) -> StoreResult<User> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO users (id, tenant_id, external_user_id, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, external_user_id) DO NOTHING",
                    params![
                        // Time-ordered: a new user lands at the end of the id index.
                        Uuid::now_v7().to_string(),
                        tenant.to_string(),
                        external_user_id,
                        now,
                    ],
                )
            })
            .await?;
        self.get_user(tenant, external_user_id)
            .await?
            .ok_or_else(|| StoreError::Database("user vanished after insert".to_owned()))
    }

    async fn get_user(&self, tenant: Uuid, external_user_id: &str) -> StoreResult<Option<User>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT id, tenant_id, external_user_id, created_at FROM users \
                 WHERE tenant_id = $1 AND external_user_id = $2",
                params![tenant.to_string(), external_user_id],
                user_row,
            )
        })?)
    }

    async fn get_user_with_palms(
        &self,
        tenant: Uuid,
        external_user_id: &str,
    ) -> StoreResult<Option<(User, Vec<Palm>)>> {
        let rows = self.db.read(|c| {
            fetch_all(
                c,
                "SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.feature_id, \
                 p.palm_type, p.enrolled_at, p.vendor, p.challenge_id \
                 FROM users u LEFT JOIN palms p ON p.user_id = u.id \
                 WHERE u.tenant_id = $1 AND u.external_user_id = $2 ORDER BY p.palm_type",
                params![tenant.to_string(), external_user_id],
                |row| {
                    let user = user_row(row)?;
                    let palm = match row.get::<_, Option<String>>("feature_id")? {
                        None => None,
                        Some(_) => Some(Palm {
                            feature_id: parsed(row, "feature_id")?,
                            tenant_id: user.tenant_id,
                            user_id: user.id,
                            palm_type: parsed(row, "palm_type")?,
                            enrolled_at: row.get("enrolled_at")?,
                            vendor: row.get("vendor")?,
                            challenge_id: parsed(row, "challenge_id")?,
                        }),
                    };
                    Ok((user, palm))
                },
            )
        })?;
        Ok(user_with_palms(rows))
    }

    async fn get_users_by_ids(&self, tenant: Uuid, ids: &[Uuid]) -> StoreResult<Vec<User>> {
        Ok(self.db.read(|c| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let user = fetch_optional(
                    c,
                    "SELECT id, tenant_id, external_user_id, created_at FROM users \
                     WHERE tenant_id = $1 AND id = $2",
                    [tenant.to_string(), id.to_string()],
                    user_row,
                )?;
                out.extend(user);
            }
            Ok(out)
        })?)
    }

    async fn list_users(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<User>, i64)> {
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                "SELECT id, tenant_id, external_user_id, created_at FROM users u WHERE tenant_id = $1 \
                 AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id) \
                 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                params![tenant.to_string(), limit, offset],
                user_row,
            )?;
            let total = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM users u WHERE tenant_id = $1 \
                     AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id)",
                )?
                .query_row([tenant.to_string()], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn list_palms(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    palm_cols!(),
                    " FROM palms WHERE tenant_id = $1 AND user_id = $2 ORDER BY palm_type"
                ),
                [tenant.to_string(), user_id.to_string()],
                palm_row,
            )
        })?)
    }

    async fn all_palms(&self, tenant: Uuid) -> StoreResult<Vec<Palm>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!("SELECT ", palm_cols!(), " FROM palms WHERE tenant_id = $1"),
                [tenant.to_string()],
                palm_row,
            )
        })?)
    }

    async fn delete_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Erasure> {
        let keys = [tenant.to_string(), user_id.to_string()];
        Ok(self
            .db
            .write(|c| {
                let palms = fetch_all(
                    c,
                    concat!(
                        "SELECT ",
                        palm_cols!(),
                        " FROM palms WHERE tenant_id = $1 AND user_id = $2"
                    ),
                    params![keys[0], keys[1]],
                    palm_row,
                )?;
                execute(
                    c,
                    "DELETE FROM palms WHERE tenant_id = $1 AND user_id = $2",
                    params![keys[0], keys[1]],
                )?;
                let erased_user = execute(
                    c,
                    "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
                    params![keys[0], keys[1]],
                )?;
                if erased_user > 0 {
                    append_audit(c, audit)?;
                }
                let erased: Vec<LogItem> = palms
                    .iter()
                    .map(|p| (LogOp::Erase, p.feature_id, p.user_id, p.palm_type))
                    .collect();
                let log_head = append_log(c, tenant, &erased, now)?;
                Ok(Erasure { palms, log_head })
            })
            .await?)
    }
}
