//! The embedded SQLite implementation of [`Store`] (WAL journal, busy timeout, so operator
//! commands can run beside a live server).

use std::sync::Arc;

use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use super::sqlite_db::{SqliteDb, WriteQuery as _};
use super::{
    Challenge, ChallengeFilter, Client, Device, EnrollmentCommit, IdempotencyStart, OutboxEvent,
    Pairing, Palm, Store, StoreError, StoreResult, StoredSettings, Tenant, User,
};

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_webhooks.sql")),
];

/// [`Store`] on an SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Arc<SqliteDb>,
}

fn db(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

fn uuid(row: &SqliteRow, col: &str) -> StoreResult<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::parse_str(&s).map_err(db)
}

fn json_col(row: &SqliteRow, col: &str) -> StoreResult<Option<Value>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(db)).transpose()
}

fn tenant_row(row: &SqliteRow) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: uuid(row, "id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn client_row(row: &SqliteRow) -> StoreResult<Client> {
    Ok(Client {
        id: uuid(row, "id")?,
        tenant_id: uuid(row, "tenant_id")?,
        name: row.try_get("name")?,
        scopes: row.try_get("scopes")?,
        secret_hash: row.try_get("secret_hash")?,
        old_secret_hash: row.try_get("old_secret_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

const DEVICE_COLS: &str =
    "id, tenant_id, device_name, location, status, hardware_id, pairing_code, \
     pairing_expires_at, paired_at, cert_valid_until, last_seen_at, created_at";

fn device_row(row: &SqliteRow) -> StoreResult<Device> {
    Ok(Device {
        id: uuid(row, "id")?,
        tenant_id: uuid(row, "tenant_id")?,
        device_name: row.try_get("device_name")?,
        location: row.try_get("location")?,
        status: row.try_get("status")?,
        hardware_id: row.try_get("hardware_id")?,
        pairing_code: row.try_get("pairing_code")?,
        pairing_expires_at: row.try_get("pairing_expires_at")?,
        paired_at: row.try_get("paired_at")?,
        cert_valid_until: row.try_get("cert_valid_until")?,
        last_seen_at: row.try_get("last_seen_at")?,
        created_at: row.try_get("created_at")?,
    })
}

fn user_row(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: uuid(row, "id")?,
        tenant_id: uuid(row, "tenant_id")?,
        external_user_id: row.try_get("external_user_id")?,
        created_at: row.try_get("created_at")?,
    })
}

const PALM_COLS: &str =
    "feature_id, tenant_id, user_id, palm_type, row_id, enrolled_at, vendor, challenge_id";

fn palm_row(row: &SqliteRow) -> StoreResult<Palm> {
    Ok(Palm {
        feature_id: uuid(row, "feature_id")?,
        tenant_id: uuid(row, "tenant_id")?,
        user_id: uuid(row, "user_id")?,
        palm_type: row.try_get("palm_type")?,
        row_id: row.try_get("row_id")?,
        enrolled_at: row.try_get("enrolled_at")?,
        vendor: row.try_get("vendor")?,
        challenge_id: uuid(row, "challenge_id")?,
    })
}

const CHALLENGE_COLS: &str =
    "id, tenant_id, kind, device_id, hardware_id, external_user_id, palm_type, top_k, \
     status, metadata, result, failure_reason, created_at, expires_at, finished_at";

fn challenge_row(row: &SqliteRow) -> StoreResult<Challenge> {
    Ok(Challenge {
        id: uuid(row, "id")?,
        tenant_id: uuid(row, "tenant_id")?,
        kind: row.try_get("kind")?,
        device_id: uuid(row, "device_id")?,
        hardware_id: row.try_get("hardware_id")?,
        external_user_id: row.try_get("external_user_id")?,
        palm_type: row.try_get("palm_type")?,
        top_k: row.try_get("top_k")?,
        status: row.try_get("status")?,
        metadata: json_col(row, "metadata")?.unwrap_or(Value::Null),
        result: json_col(row, "result")?,
        failure_reason: row.try_get("failure_reason")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn event_row(row: &SqliteRow) -> StoreResult<OutboxEvent> {
    Ok(OutboxEvent {
        event_id: row.try_get("event_id")?,
        tenant_id: uuid(row, "tenant_id")?,
        event_type: row.try_get("event_type")?,
        payload: json_col(row, "payload")?.unwrap_or(Value::Null),
        occurred_at: row.try_get("occurred_at")?,
        dispatched_at: row.try_get("dispatched_at")?,
    })
}

async fn insert_event<'c, E>(conn: E, event: &OutboxEvent) -> StoreResult<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO outbox_events (event_id, tenant_id, event_type, payload, occurred_at, dispatched_at) \
         VALUES ($1, $2, $3, $4, $5, NULL)",
    )
    .bind(&event.event_id)
    .bind(event.tenant_id.to_string())
    .bind(&event.event_type)
    .bind(event.payload.to_string())
    .bind(event.occurred_at)
    .execute(conn)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let store = SqliteStore {
            db: SqliteDb::open(url).await?,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .write(&self.db)
            .await?;
        for (version, script) in MIGRATIONS {
            let mut tx = self.db.begin().await?;
            let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                sqlx::raw_sql(script).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(crate::clock::now_micros())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db.writable()?;
        sqlx::query("SELECT 1").execute(self.db.pool()).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: crate::clock::now_micros(),
        };
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .write(&self.db)
            .await?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(tenant_row).transpose()
    }

    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query("SELECT id FROM tenants")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(|r| uuid(r, "id")).collect()
    }

    async fn create_client(&self, c: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oauth_clients (id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(c.id.to_string())
        .bind(c.tenant_id.to_string())
        .bind(&c.name)
        .bind(&c.scopes)
        .bind(&c.secret_hash)
        .bind(&c.old_secret_hash)
        .bind(c.created_at)
        .write(&self.db)
        .await?;
        Ok(())
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at FROM oauth_clients WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(client_row).transpose()
    }

    async fn rotate_client_secret(&self, id: Uuid, new_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE oauth_clients SET old_secret_hash = secret_hash, secret_hash = $1 WHERE id = $2")
            .bind(new_hash)
            .bind(id.to_string())
            .write(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_old_client_secret(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE oauth_clients SET old_secret_hash = NULL WHERE id = $1")
            .bind(id.to_string())
            .write(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_client(&self, id: Uuid) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
            .bind(id.to_string())
            .write(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_device(&self, d: &Device) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO devices (id, tenant_id, device_name, location, status, hardware_id, pairing_code, \
             pairing_expires_at, secret_hash, paired_at, cert_valid_until, last_seen_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12)",
        )
        .bind(d.id.to_string())
        .bind(d.tenant_id.to_string())
        .bind(&d.device_name)
        .bind(&d.location)
        .bind(&d.status)
        .bind(&d.hardware_id)
        .bind(&d.pairing_code)
        .bind(d.pairing_expires_at)
        .bind(d.paired_at)
        .bind(d.cert_valid_until)
        .bind(d.last_seen_at)
        .bind(d.created_at)
        .write(&self.db)
        .await?;
        Ok(())
    }

    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        ))
        .bind(tenant.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE tenant_id = $1")
            .bind(tenant.to_string())
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        Ok((
            rows.iter().map(device_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
             ORDER BY CASE WHEN status = 'paired' THEN 0 ELSE 1 END, paired_at DESC LIMIT 1"
        ))
        .bind(tenant.to_string())
        .bind(hardware_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE pairing_code = $1"
        ))
        .bind(code)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE secret_hash = $1 AND status = 'paired'"
        ))
        .bind(hash)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE devices SET pairing_code = $1, pairing_expires_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'pending_pair'",
        )
        .bind(code)
        .bind(expires_at)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .write(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn pair_device(&self, p: &Pairing, event: &OutboxEvent) -> StoreResult<Option<Device>> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET status = 'paired', hardware_id = $1, secret_hash = $2, paired_at = $3, \
             cert_valid_until = $4, last_seen_at = $3 \
             WHERE id = $5 AND pairing_code = $6 AND status = 'pending_pair'",
        )
        .bind(&p.hardware_id)
        .bind(&p.secret_hash)
        .bind(p.paired_at)
        .bind(p.cert_valid_until)
        .bind(p.device_id.to_string())
        .bind(&p.code)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(None);
        }
        insert_event(&mut *tx, event).await?;
        let row = sqlx::query(&format!("SELECT {DEVICE_COLS} FROM devices WHERE id = $1"))
            .bind(p.device_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        let device = device_row(&row)?;
        tx.commit().await?;
        Ok(Some(device))
    }

    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .write(&self.db)
            .await?;
        Ok(())
    }

    async fn revoke_device(&self, tenant: Uuid, id: Uuid, now: i64) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE devices SET status = 'revoked', secret_hash = NULL \
             WHERE tenant_id = $1 AND id = $2 AND status <> 'revoked'",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE challenges SET status = 'failed', failure_reason = 'device_revoked', finished_at = $1 \
             WHERE device_id = $2 AND status = 'pending'",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn ensure_user(
        &self,
        tenant: Uuid,
        external_user_id: &str,
        now: i64,
    ) -> StoreResult<User> {
        sqlx::query(
            "INSERT INTO users (id, tenant_id, external_user_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, external_user_id) DO NOTHING",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(tenant.to_string())
        .bind(external_user_id)
        .bind(now)
        .write(&self.db)
        .await?;
        self.get_user(tenant, external_user_id)
            .await?
            .ok_or_else(|| StoreError::Database("user vanished after insert".to_owned()))
    }

    async fn get_user(&self, tenant: Uuid, external_user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, external_user_id, created_at FROM users WHERE tenant_id = $1 AND external_user_id = $2",
        )
        .bind(tenant.to_string())
        .bind(external_user_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(user_row).transpose()
    }

    async fn get_user_with_palms(
        &self,
        tenant: Uuid,
        external_user_id: &str,
    ) -> StoreResult<Option<(User, Vec<Palm>)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.feature_id, \
             p.palm_type, p.row_id, p.enrolled_at, p.vendor, p.challenge_id \
             FROM users u LEFT JOIN palms p ON p.tenant_id = u.tenant_id AND p.user_id = u.id \
             WHERE u.tenant_id = $1 AND u.external_user_id = $2 ORDER BY p.palm_type",
        )
        .bind(tenant.to_string())
        .bind(external_user_id)
        .fetch_all(self.db.pool())
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let user = user_row(first)?;
        let mut palms = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<String>, _>("feature_id")?.is_none() {
                continue;
            }
            palms.push(Palm {
                feature_id: uuid(row, "feature_id")?,
                tenant_id: user.tenant_id,
                user_id: user.id,
                palm_type: row.try_get("palm_type")?,
                row_id: row.try_get("row_id")?,
                enrolled_at: row.try_get("enrolled_at")?,
                vendor: row.try_get("vendor")?,
                challenge_id: uuid(row, "challenge_id")?,
            });
        }
        Ok(Some((user, palms)))
    }

    async fn get_users_by_ids(&self, tenant: Uuid, ids: &[Uuid]) -> StoreResult<Vec<User>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("SELECT id, tenant_id, external_user_id, created_at FROM users WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
            if let Some(row) = row {
                out.push(user_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn list_users(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<User>, i64)> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, external_user_id, created_at FROM users u WHERE tenant_id = $1 \
             AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id) \
             ORDER BY created_at, id LIMIT $2 OFFSET $3",
        )
        .bind(tenant.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM users u WHERE tenant_id = $1 AND EXISTS (SELECT 1 FROM palms p WHERE p.user_id = u.id)",
        )
        .bind(tenant.to_string())
        .fetch_one(self.db.pool())
        .await?
        .try_get("n")?;
        Ok((
            rows.iter().map(user_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    async fn list_palms(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>> {
        let rows = sqlx::query(&format!(
            "SELECT {PALM_COLS} FROM palms WHERE tenant_id = $1 AND user_id = $2 ORDER BY palm_type"
        ))
        .bind(tenant.to_string())
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(palm_row).collect()
    }

    async fn all_palms(&self, tenant: Uuid) -> StoreResult<Vec<Palm>> {
        let rows = sqlx::query(&format!(
            "SELECT {PALM_COLS} FROM palms WHERE tenant_id = $1"
        ))
        .bind(tenant.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(palm_row).collect()
    }

    async fn delete_user(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>> {
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {PALM_COLS} FROM palms WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant.to_string())
        .bind(user_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let palms = rows.iter().map(palm_row).collect::<StoreResult<Vec<_>>>()?;
        sqlx::query("DELETE FROM palms WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(palms)
    }

    async fn delete_palms(&self, feature_ids: &[Uuid]) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        for id in feature_ids {
            sqlx::query("DELETE FROM palms WHERE feature_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<StoredSettings>> {
        let row = sqlx::query(
            "SELECT match_thresholds, match_policy, match_k FROM tenants WHERE id = $1",
        )
        .bind(tenant.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let thresholds: Option<String> = row.try_get("match_thresholds")?;
        let policy: Option<String> = row.try_get("match_policy")?;
        match (thresholds, policy) {
            (Some(t), Some(p)) => Ok(Some(StoredSettings {
                thresholds: serde_json::from_str(&t).map_err(db)?,
                match_policy: p,
                k: row.try_get("match_k")?,
            })),
            _ => Ok(None),
        }
    }

    async fn put_settings(&self, tenant: Uuid, s: &StoredSettings) -> StoreResult<()> {
        let thresholds = serde_json::to_string(&s.thresholds).map_err(db)?;
        sqlx::query("UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3 WHERE id = $4")
            .bind(thresholds)
            .bind(&s.match_policy)
            .bind(s.k)
            .bind(tenant.to_string())
            .write(&self.db)
            .await?;
        Ok(())
    }

    async fn create_challenge(&self, c: &Challenge) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO challenges ({CHALLENGE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(c.id.to_string())
        .bind(c.tenant_id.to_string())
        .bind(&c.kind)
        .bind(c.device_id.to_string())
        .bind(&c.hardware_id)
        .bind(&c.external_user_id)
        .bind(&c.palm_type)
        .bind(c.top_k)
        .bind(&c.status)
        .bind(c.metadata.to_string())
        .bind(c.result.as_ref().map(Value::to_string))
        .bind(&c.failure_reason)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.finished_at)
        .write(&self.db)
        .await?;
        Ok(())
    }

    async fn get_challenge(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Challenge>> {
        let row = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLS} FROM challenges WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(challenge_row).transpose()
    }

    async fn list_challenges(
        &self,
        tenant: Uuid,
        filter: &ChallengeFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Challenge>, i64)> {
        // Unused filters compare against NULL and drop out: `($2 IS NULL OR kind = $2)`.
        let cond = "tenant_id = $1 AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR status = $3)";
        let rows = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLS} FROM challenges WHERE {cond} ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
        ))
        .bind(tenant.to_string())
        .bind(&filter.kind)
        .bind(&filter.status)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM challenges WHERE {cond}"
        ))
        .bind(tenant.to_string())
        .bind(&filter.kind)
        .bind(&filter.status)
        .fetch_one(self.db.pool())
        .await?
        .try_get("n")?;
        Ok((
            rows.iter().map(challenge_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    async fn pending_for_device(&self, device_id: Uuid, now: i64) -> StoreResult<Vec<Challenge>> {
        let rows = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLS} FROM challenges WHERE device_id = $1 AND status = 'pending' AND expires_at > $2 \
             ORDER BY created_at, id"
        ))
        .bind(device_id.to_string())
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(challenge_row).collect()
    }

    async fn complete_enrollment(&self, commit: &EnrollmentCommit, now: i64) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE challenges SET status = 'completed', result = $1, finished_at = $2 \
             WHERE id = $3 AND status = 'pending' AND expires_at > $2",
        )
        .bind(commit.result.to_string())
        .bind(now)
        .bind(commit.challenge_id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for p in &commit.palms {
            sqlx::query(&format!(
                "INSERT INTO palms ({PALM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .bind(p.feature_id.to_string())
            .bind(p.tenant_id.to_string())
            .bind(p.user_id.to_string())
            .bind(&p.palm_type)
            .bind(p.row_id)
            .bind(p.enrolled_at)
            .bind(&p.vendor)
            .bind(p.challenge_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        insert_event(&mut *tx, &commit.event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn complete_challenge(
        &self,
        id: Uuid,
        result: &Value,
        event: &OutboxEvent,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE challenges SET status = 'completed', result = $1, finished_at = $2 \
             WHERE id = $3 AND status = 'pending' AND expires_at > $2",
        )
        .bind(result.to_string())
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut *tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_challenge(
        &self,
        id: Uuid,
        status: &str,
        reason: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE challenges SET status = $1, failure_reason = $2, finished_at = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(status)
        .bind(reason)
        .bind(now)
        .bind(id.to_string())
        .write(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_challenges(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE challenges SET status = 'expired', finished_at = expires_at WHERE status = 'pending' AND expires_at <= $1",
        )
        .bind(now)
        .write(&self.db)
        .await?;
        Ok(done.rows_affected())
    }

    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>> {
        let rows = sqlx::query(
            "SELECT event_id, tenant_id, event_type, payload, occurred_at, dispatched_at FROM outbox_events \
             WHERE dispatched_at IS NULL ORDER BY occurred_at, event_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(event_row).collect()
    }

    async fn mark_event_dispatched(&self, event_id: &str, now: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE outbox_events SET dispatched_at = $1 WHERE event_id = $2 AND dispatched_at IS NULL")
            .bind(now)
            .bind(event_id)
            .write(&self.db)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>> {
        let row = sqlx::query(
            "SELECT event_id, tenant_id, event_type, payload, occurred_at, dispatched_at FROM outbox_events WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(event_row).transpose()
    }

    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart> {
        let mut tx = self.db.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND expires_at <= $3")
            .bind(client.to_string())
            .bind(key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (client_id, idem_key, request_hash, status_code, response_body, created_at, expires_at) \
             VALUES ($1, $2, $3, NULL, NULL, $4, $5) ON CONFLICT (client_id, idem_key) DO NOTHING",
        )
        .bind(client.to_string())
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let outcome = if inserted.rows_affected() == 1 {
            IdempotencyStart::Started
        } else {
            let row = sqlx::query(
                "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2",
            )
            .bind(client.to_string())
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let hash: String = row.try_get("request_hash")?;
            let status: Option<i64> = row.try_get("status_code")?;
            let body: Option<String> = row.try_get("response_body")?;
            if hash != request_hash {
                IdempotencyStart::Mismatch
            } else {
                match (status, body) {
                    (Some(status), Some(body)) => IdempotencyStart::Replay {
                        status: u16::try_from(status).unwrap_or(200),
                        body,
                    },
                    _ => IdempotencyStart::InProgress,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status_code = $1, response_body = $2 WHERE client_id = $3 AND idem_key = $4")
            .bind(i64::from(status))
            .bind(body)
            .bind(client.to_string())
            .bind(key)
            .write(&self.db)
            .await?;
        Ok(())
    }

    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE client_id = $1 AND idem_key = $2 AND status_code IS NULL")
            .bind(client.to_string())
            .bind(key)
            .write(&self.db)
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .write(&self.db)
            .await?;
        Ok(done.rows_affected())
    }
}
