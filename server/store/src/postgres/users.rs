//! [`UserStore`] on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::sql::{execute, fetch_all, fetch_optional, fetch_page, get, parsed};
use super::PostgresStore;
use crate::users::user_with_palms;
use crate::{
    AuditRecord, Erasure, LogOp, Palm, SealedTemplate, StoreError, StoreResult, User, UserStore,
};

pub(super) fn user_row(row: &Row) -> StoreResult<User> {
    Ok(User {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        external_user_id: get(row, "external_user_id")?,
        created_at: get(row, "created_at")?,
    })
}

/// The columns [`palm_row`] reads.
macro_rules! palm_cols {
    () => {
        "feature_id, tenant_id, user_id, palm_type, enrolled_at, vendor, challenge_id"
    };
}

pub(super) use palm_cols;

pub(super) fn palm_row(row: &Row) -> StoreResult<Palm> {
    Ok(Palm {
        feature_id: parsed(row, "feature_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        user_id: parsed(row, "user_id")?,
        palm_type: parsed(row, "palm_type")?,
        enrolled_at: get(row, "enrolled_at")?,
        vendor: get(row, "vendor")?,
        challenge_id: parsed(row, "challenge_id")?,
    })
}

/// Stores `p` with its sealed template, inside the caller's transaction.
pub(super) async fn insert_palm(
    c: &impl GenericClient,
    p: &Palm,
    sealed: &SealedTemplate,
) -> StoreResult<()> {
    execute(
        c,
        concat!(
            "INSERT INTO palms (",
            palm_cols!(),
            ", template) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        &[
            &p.feature_id.to_string(),
            &p.tenant_id.to_string(),
            &p.user_id.to_string(),
            &p.palm_type.as_str(),
            &p.enrolled_at,
            &p.vendor,
            &p.challenge_id.to_string(),
            &sealed.sealed,
        ],
    )
    .await?;
    Ok(())
}

/// The user with external id `$2` of tenant `$1`.
const USER_BY_EXTERNAL_ID: &str = "SELECT id, tenant_id, external_user_id, created_at \
     FROM users WHERE tenant_id = $1 AND external_user_id = $2";

#[async_trait::async_trait]
impl UserStore for PostgresStore {
    async fn ensure_user(
        &self,
        tenant: Uuid,
        external_user_id: &str,
        now: i64,
    ) -> StoreResult<User> {
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        // Two statements on purpose: an insert that meets another's uncommitted row waits
        // for it and does nothing, and the read, a statement of its own, then sees that row.
        execute(
            &c,
            "INSERT INTO users (id, tenant_id, external_user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, external_user_id) DO NOTHING",
            &[
                // Time-ordered: a new user lands at the end of the id index.
                &Uuid::now_v7().to_string(),
                &tenant,
                &external_user_id,
                &now,
            ],
        )
        .await?;
        fetch_optional(
            &c,
            USER_BY_EXTERNAL_ID,
            &[&tenant, &external_user_id],
            user_row,
        )
        .await?
        .ok_or_else(|| StoreError::Database("user vanished after insert".to_owned()))
    }

    async fn get_user(&self, tenant: Uuid, external_user_id: &str) -> StoreResult<Option<User>> {
        fetch_optional(
            &self.pool.get().await?,
            USER_BY_EXTERNAL_ID,
            &[&tenant.to_string(), &external_user_id],
            user_row,
        )
        .await
    }

    async fn get_user_with_palms(
        &self,
        tenant: Uuid,
        external_user_id: &str,
    ) -> StoreResult<Option<(User, Vec<Palm>)>> {
        // Palms joined on the user id alone (it names one user of one tenant): a tenant
        // condition on palms would tempt the planner into scanning the tenant's palm index.
        let rows = fetch_all(
            &self.pool.get().await?,
            "SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.feature_id, \
             p.palm_type, p.enrolled_at, p.vendor, p.challenge_id \
             FROM users u LEFT JOIN palms p ON p.user_id = u.id \
             WHERE u.tenant_id = $1 AND u.external_user_id = $2 ORDER BY p.palm_type",
            &[&tenant.to_string(), &external_user_id],
            |row| {
                let user = user_row(row)?;
                let palm = match get::<Option<&str>>(row, "feature_id")? {
                    None => None,
                    Some(_) => Some(Palm {
                        feature_id: parsed(row, "feature_id")?,
                        tenant_id: user.tenant_id,
                        user_id: user.id,
                        palm_type: parsed(row, "palm_type")?,
                        enrolled_at: get(row, "enrolled_at")?,
                        vendor: get(row, "vendor")?,
                        challenge_id: parsed(row, "challenge_id")?,
                    }),
                };
                Ok((user, palm))
            },
        )
        .await?;
        Ok(user_with_palms(rows))
    }

    async fn get_users_by_ids(&self, tenant: Uuid, ids: &[Uuid]) -> StoreResult<Vec<User>> {
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let mut found = fetch_all(
            &self.pool.get().await?,
            "SELECT id, tenant_id, external_user_id, created_at FROM users \
             WHERE tenant_id = $1 AND id = ANY($2)",
            &[&tenant.to_string(), &texts],
            user_row,
        )
        .await?;
        // In the order asked for, as the SQLite backend answers.
        found.sort_by_key(|u| ids.iter().position(|id| *id == u.id));
        Ok(found)
    }

    async fn list_users(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<User>, i64)> {
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        fetch_page(
            &c,
            (
                "SELECT id, tenant_id, external_user_id, created_at FROM users u \
                 WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id) \
                 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                "SELECT COUNT(*) FROM users u WHERE tenant_id = $1 \
                 AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id)",
            ),
            &[&tenant, &limit, &offset],
            1,
            user_row,
        )
        .await
    }

    async fn list_palms(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>> {
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                palm_cols!(),
                " FROM palms WHERE tenant_id = $1 AND user_id = $2 ORDER BY palm_type"
            ),
            &[&tenant.to_string(), &user_id.to_string()],
            palm_row,
        )
        .await
    }

    async fn all_palms(&self, tenant: Uuid) -> StoreResult<Vec<Palm>> {
        fetch_all(
            &self.pool.get().await?,
            concat!("SELECT ", palm_cols!(), " FROM palms WHERE tenant_id = $1"),
            &[&tenant.to_string()],
            palm_row,
        )
        .await
    }

    async fn delete_user(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Erasure> {
        let (tenant, user_id) = (tenant_id.to_string(), user_id.to_string());
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // The user's row first: an enrollment storing a palm holds a key-share lock on it
        // (its foreign key) until it commits, so this waits for it and the delete below
        // then sees its palm; an enrollment after this lock fails on the missing user.
        execute(
            &tx,
            "SELECT id FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            &[&tenant, &user_id],
        )
        .await?;
        let mut palms = fetch_all(
            &tx,
            concat!(
                "DELETE FROM palms WHERE tenant_id = $1 AND user_id = $2 RETURNING ",
                palm_cols!()
            ),
            &[&tenant, &user_id],
            palm_row,
        )
        .await?;
        let erased_user = execute(
            &tx,
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
            &[&tenant, &user_id],
        )
        .await?;
        if erased_user > 0 {
            append_audit(&tx, audit).await?;
        }
        palms.sort_by_key(|p| p.palm_type);
        let erased: Vec<LogItem> = palms
            .iter()
            .map(|p| (LogOp::Erase, p.feature_id, p.user_id, p.palm_type))
            .collect();
        let log_head = append_log(&tx, tenant_id, &erased, now).await?;
        tx.commit().await?;
        if erased_user > 0 {
            self.sealer.poke(audit.tenant_id);
        }
        Ok(Erasure { palms, log_head })
    }
}
