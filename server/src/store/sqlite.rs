//! The embedded SQLite implementation of [`Store`] (WAL journal, busy timeout, so operator
//! commands can run beside a live server).

use std::sync::Arc;

use rusqlite::{params, Connection, Row};
use serde_json::Value;
use uuid::Uuid;

use super::sqlite_db::{
    execute, fetch_all, fetch_optional, json_column, parsed, DbError, SqliteDb,
};
use super::{
    Challenge, ChallengeFilter, Client, Device, EnrollmentCommit, IdempotencyStart, OutboxEvent,
    Pairing, Palm, Store, StoreError, StoreResult, StoredSettings, Tenant, User,
};

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_webhooks.sql")),
    (3, include_str!("../../migrations/0003_indexes.sql")),
];

/// [`Store`] on an SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Arc<SqliteDb>,
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> StoreError {
        if err.is_unique_violation() {
            return StoreError::Conflict(err.to_string());
        }
        StoreError::Database(err.to_string())
    }
}

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id")?,
        name: row.get("name")?,
        created_at: row.get("created_at")?,
    })
}

fn client_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    Ok(Client {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        name: row.get("name")?,
        scopes: row.get("scopes")?,
        secret_hash: row.get("secret_hash")?,
        old_secret_hash: row.get("old_secret_hash")?,
        created_at: row.get("created_at")?,
    })
}

/// The columns [`device_row`] reads.
macro_rules! device_cols {
    () => {
        "id, tenant_id, device_name, location, status, hardware_id, pairing_code, \
         pairing_expires_at, paired_at, cert_valid_until, last_seen_at, created_at"
    };
}

fn device_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        device_name: row.get("device_name")?,
        location: row.get("location")?,
        status: row.get("status")?,
        hardware_id: row.get("hardware_id")?,
        pairing_code: row.get("pairing_code")?,
        pairing_expires_at: row.get("pairing_expires_at")?,
        paired_at: row.get("paired_at")?,
        cert_valid_until: row.get("cert_valid_until")?,
        last_seen_at: row.get("last_seen_at")?,
        created_at: row.get("created_at")?,
    })
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
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
        "feature_id, tenant_id, user_id, palm_type, row_id, enrolled_at, vendor, challenge_id"
    };
}

fn palm_row(row: &Row<'_>) -> rusqlite::Result<Palm> {
    Ok(Palm {
        feature_id: parsed(row, "feature_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        user_id: parsed(row, "user_id")?,
        palm_type: row.get("palm_type")?,
        row_id: row.get("row_id")?,
        enrolled_at: row.get("enrolled_at")?,
        vendor: row.get("vendor")?,
        challenge_id: parsed(row, "challenge_id")?,
    })
}

/// The columns [`challenge_row`] reads.
macro_rules! challenge_cols {
    () => {
        "id, tenant_id, kind, device_id, hardware_id, external_user_id, palm_type, top_k, \
         status, metadata, result, failure_reason, created_at, expires_at, finished_at"
    };
}

fn challenge_row(row: &Row<'_>) -> rusqlite::Result<Challenge> {
    Ok(Challenge {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        kind: row.get("kind")?,
        device_id: parsed(row, "device_id")?,
        hardware_id: row.get("hardware_id")?,
        external_user_id: row.get("external_user_id")?,
        palm_type: row.get("palm_type")?,
        top_k: row.get("top_k")?,
        status: row.get("status")?,
        metadata: json_column(row, "metadata")?.unwrap_or(Value::Null),
        result: json_column(row, "result")?,
        failure_reason: row.get("failure_reason")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        finished_at: row.get("finished_at")?,
    })
}

/// The columns [`event_row`] reads.
macro_rules! event_cols {
    () => {
        "event_id, tenant_id, event_type, payload, occurred_at, dispatched_at"
    };
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        event_id: row.get("event_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        event_type: row.get("event_type")?,
        payload: json_column(row, "payload")?.unwrap_or(Value::Null),
        occurred_at: row.get("occurred_at")?,
        dispatched_at: row.get("dispatched_at")?,
    })
}

fn insert_event(c: &Connection, event: &OutboxEvent) -> rusqlite::Result<()> {
    execute(
        c,
        concat!(
            "INSERT INTO outbox_events (",
            event_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, NULL)"
        ),
        params![
            event.event_id,
            event.tenant_id.to_string(),
            event.event_type,
            event.payload.to_string(),
            event.occurred_at,
        ],
    )?;
    Ok(())
}

/// The scanner of tenant `$1` with hardware id `$2`: the paired one if there is one, else
/// the one paired last.
const DEVICE_BY_HARDWARE: &str = concat!(
    "SELECT ",
    device_cols!(),
    " FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
     ORDER BY CASE WHEN status = 'paired' THEN 0 ELSE 1 END, paired_at DESC LIMIT 1"
);

// The statements that look for pending challenges name `status = 'pending'` literally: only
// then may SQLite search the partial indexes that hold pending challenges alone (migration 3).

/// The pending, unexpired challenges of device `$1` at time `$2`, oldest first.
const PENDING_OF_DEVICE: &str = concat!(
    "SELECT ",
    challenge_cols!(),
    " FROM challenges WHERE device_id = $1 AND status = 'pending' \
     AND expires_at > $2 ORDER BY created_at, id"
);

/// Fails the pending challenges of device `$2` (revoked) at time `$1`.
const FAIL_PENDING_OF_DEVICE: &str =
    "UPDATE challenges SET status = 'failed', failure_reason = 'device_revoked', \
     finished_at = $1 WHERE device_id = $2 AND status = 'pending'";

/// Expires the pending challenges whose time is up at `$1`.
const EXPIRE_PENDING: &str = "UPDATE challenges SET status = 'expired', finished_at = expires_at \
     WHERE status = 'pending' AND expires_at <= $1";

/// Marks a pending, unexpired challenge completed with its result; false if it is not.
fn complete_pending(c: &Connection, id: Uuid, result: &Value, now: i64) -> rusqlite::Result<bool> {
    let done = execute(
        c,
        "UPDATE challenges SET status = 'completed', result = $1, finished_at = $2 \
         WHERE id = $3 AND status = 'pending' AND expires_at > $2",
        params![result.to_string(), now, id.to_string()],
    )?;
    Ok(done == 1)
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
        self.migrate_through(i64::MAX).await
    }

    /// Applies the migrations not yet recorded, up to version `last`.
    async fn migrate_through(&self, last: i64) -> StoreResult<()> {
        for (version, script) in MIGRATIONS.iter().filter(|(v, _)| *v <= last) {
            self.db
                .write(|c| {
                    c.execute_batch(
                        "CREATE TABLE IF NOT EXISTS schema_migrations \
                         (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                    )?;
                    let done = fetch_optional(
                        c,
                        "SELECT version FROM schema_migrations WHERE version = $1",
                        [version],
                        |_| Ok(()),
                    )?;
                    if done.is_none() {
                        c.execute_batch(script)?;
                        execute(
                            c,
                            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                            params![version, crate::clock::now_micros()],
                        )?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db.writable()?;
        self.db.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))?;
        Ok(())
    }

    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: crate::clock::now_micros(),
        };
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                    params![tenant.id.to_string(), tenant.name, tenant.created_at],
                )
            })
            .await?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT id, name, created_at FROM tenants WHERE id = $1",
                [id.to_string()],
                tenant_row,
            )
        })?)
    }

    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>> {
        Ok(self
            .db
            .read(|c| fetch_all(c, "SELECT id FROM tenants", [], |r| parsed(r, "id")))?)
    }

    async fn create_client(&self, cl: &Client) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO oauth_clients (id, tenant_id, name, scopes, secret_hash, \
                     old_secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    params![
                        cl.id.to_string(),
                        cl.tenant_id.to_string(),
                        cl.name,
                        cl.scopes,
                        cl.secret_hash,
                        cl.old_secret_hash,
                        cl.created_at,
                    ],
                )
            })
            .await?;
        Ok(())
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at \
                 FROM oauth_clients WHERE id = $1",
                [id.to_string()],
                client_row,
            )
        })?)
    }

    async fn rotate_client_secret(&self, id: Uuid, new_hash: &str) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE oauth_clients SET old_secret_hash = secret_hash, secret_hash = $1 \
                     WHERE id = $2",
                    params![new_hash, id.to_string()],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn revoke_old_client_secret(&self, id: Uuid) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE oauth_clients SET old_secret_hash = NULL WHERE id = $1",
                    [id.to_string()],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn delete_client(&self, id: Uuid) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM oauth_clients WHERE id = $1",
                    [id.to_string()],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn create_device(&self, d: &Device) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO devices (id, tenant_id, device_name, location, status, hardware_id, \
                     pairing_code, pairing_expires_at, secret_hash, paired_at, cert_valid_until, \
                     last_seen_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12)",
                    params![
                        d.id.to_string(),
                        d.tenant_id.to_string(),
                        d.device_name,
                        d.location,
                        d.status,
                        d.hardware_id,
                        d.pairing_code,
                        d.pairing_expires_at,
                        d.paired_at,
                        d.cert_valid_until,
                        d.last_seen_at,
                        d.created_at,
                    ],
                )
            })
            .await?;
        Ok(())
    }

    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE tenant_id = $1 AND id = $2"
                ),
                [tenant.to_string(), id.to_string()],
                device_row,
            )
        })?)
    }

    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)> {
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE tenant_id = $1 ORDER BY created_at DESC, id \
                     LIMIT $2 OFFSET $3"
                ),
                params![tenant.to_string(), limit, offset],
                device_row,
            )?;
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM devices WHERE tenant_id = $1")?
                .query_row([tenant.to_string()], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                DEVICE_BY_HARDWARE,
                params![tenant.to_string(), hardware_id],
                device_row,
            )
        })?)
    }

    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE pairing_code = $1"
                ),
                [code],
                device_row,
            )
        })?)
    }

    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE secret_hash = $1 AND status = 'paired'"
                ),
                [hash],
                device_row,
            )
        })?)
    }

    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE devices SET pairing_code = $1, pairing_expires_at = $2 \
                     WHERE tenant_id = $3 AND id = $4 AND status = 'pending_pair'",
                    params![code, expires_at, tenant.to_string(), id.to_string()],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn pair_device(&self, p: &Pairing, event: &OutboxEvent) -> StoreResult<Option<Device>> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "UPDATE devices SET status = 'paired', hardware_id = $1, secret_hash = $2, \
                     paired_at = $3, cert_valid_until = $4, last_seen_at = $3 \
                     WHERE id = $5 AND pairing_code = $6 AND status = 'pending_pair'",
                    params![
                        p.hardware_id,
                        p.secret_hash,
                        p.paired_at,
                        p.cert_valid_until,
                        p.device_id.to_string(),
                        p.code,
                    ],
                )?;
                if done != 1 {
                    return Ok(None);
                }
                insert_event(c, event)?;
                fetch_optional(
                    c,
                    concat!("SELECT ", device_cols!(), " FROM devices WHERE id = $1"),
                    [p.device_id.to_string()],
                    device_row,
                )
            })
            .await?)
    }

    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE devices SET last_seen_at = $1 WHERE id = $2",
                    params![now, id.to_string()],
                )
            })
            .await?;
        Ok(())
    }

    async fn revoke_device(&self, tenant: Uuid, id: Uuid, now: i64) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "UPDATE devices SET status = 'revoked', secret_hash = NULL \
                     WHERE tenant_id = $1 AND id = $2 AND status <> 'revoked'",
                    [tenant.to_string(), id.to_string()],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                execute(c, FAIL_PENDING_OF_DEVICE, params![now, id.to_string()])?;
                Ok(true)
            })
            .await?)
    }

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
                        Uuid::new_v4().to_string(),
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
                 p.palm_type, p.row_id, p.enrolled_at, p.vendor, p.challenge_id \
                 FROM users u LEFT JOIN palms p ON p.tenant_id = u.tenant_id AND p.user_id = u.id \
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
                            palm_type: row.get("palm_type")?,
                            row_id: row.get("row_id")?,
                            enrolled_at: row.get("enrolled_at")?,
                            vendor: row.get("vendor")?,
                            challenge_id: parsed(row, "challenge_id")?,
                        }),
                    };
                    Ok((user, palm))
                },
            )
        })?;
        let mut rows = rows.into_iter();
        let Some((user, first)) = rows.next() else {
            return Ok(None);
        };
        let palms = first
            .into_iter()
            .chain(rows.filter_map(|(_, p)| p))
            .collect();
        Ok(Some((user, palms)))
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

    async fn delete_user(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>> {
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
                execute(
                    c,
                    "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
                    params![keys[0], keys[1]],
                )?;
                Ok(palms)
            })
            .await?)
    }

    async fn delete_palms(&self, feature_ids: &[Uuid]) -> StoreResult<()> {
        self.db
            .write(|c| {
                for id in feature_ids {
                    execute(
                        c,
                        "DELETE FROM palms WHERE feature_id = $1",
                        [id.to_string()],
                    )?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<StoredSettings>> {
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
        match row {
            Some((Some(thresholds), Some(match_policy), k)) => Ok(Some(StoredSettings {
                thresholds: serde_json::from_str(&thresholds)
                    .map_err(|err| StoreError::Database(err.to_string()))?,
                match_policy,
                k,
            })),
            _ => Ok(None),
        }
    }

    async fn put_settings(&self, tenant: Uuid, s: &StoredSettings) -> StoreResult<()> {
        let thresholds = serde_json::to_string(&s.thresholds)
            .map_err(|err| StoreError::Database(err.to_string()))?;
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE tenants SET match_thresholds = $1, match_policy = $2, match_k = $3 \
                     WHERE id = $4",
                    params![thresholds, s.match_policy, s.k, tenant.to_string()],
                )
            })
            .await?;
        Ok(())
    }

    async fn create_challenge(&self, ch: &Challenge) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    concat!(
                        "INSERT INTO challenges (",
                        challenge_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                    ),
                    params![
                        ch.id.to_string(),
                        ch.tenant_id.to_string(),
                        ch.kind,
                        ch.device_id.to_string(),
                        ch.hardware_id,
                        ch.external_user_id,
                        ch.palm_type,
                        ch.top_k,
                        ch.status,
                        ch.metadata.to_string(),
                        ch.result.as_ref().map(Value::to_string),
                        ch.failure_reason,
                        ch.created_at,
                        ch.expires_at,
                        ch.finished_at,
                    ],
                )
            })
            .await?;
        Ok(())
    }

    async fn get_challenge(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Challenge>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    challenge_cols!(),
                    " FROM challenges WHERE tenant_id = $1 AND id = $2"
                ),
                [tenant.to_string(), id.to_string()],
                challenge_row,
            )
        })?)
    }

    async fn list_challenges(
        &self,
        tenant: Uuid,
        filter: &ChallengeFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Challenge>, i64)> {
        // Unused filters compare against NULL and drop out: `($2 IS NULL OR kind = $2)`.
        macro_rules! cond {
            () => {
                "tenant_id = $1 AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR status = $3)"
            };
        }
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    challenge_cols!(),
                    " FROM challenges WHERE ",
                    cond!(),
                    " ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
                ),
                params![
                    tenant.to_string(),
                    filter.kind,
                    filter.status,
                    limit,
                    offset
                ],
                challenge_row,
            )?;
            let total = c
                .prepare_cached(concat!("SELECT COUNT(*) FROM challenges WHERE ", cond!()))?
                .query_row(
                    params![tenant.to_string(), filter.kind, filter.status],
                    |r| r.get(0),
                )?;
            Ok((rows, total))
        })?)
    }

    async fn pending_for_device(&self, device_id: Uuid, now: i64) -> StoreResult<Vec<Challenge>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                PENDING_OF_DEVICE,
                params![device_id.to_string(), now],
                challenge_row,
            )
        })?)
    }

    async fn complete_enrollment(&self, commit: &EnrollmentCommit, now: i64) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                if !complete_pending(c, commit.challenge_id, &commit.result, now)? {
                    return Ok(false);
                }
                for p in &commit.palms {
                    execute(
                        c,
                        concat!(
                            "INSERT INTO palms (",
                            palm_cols!(),
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                        ),
                        params![
                            p.feature_id.to_string(),
                            p.tenant_id.to_string(),
                            p.user_id.to_string(),
                            p.palm_type,
                            p.row_id,
                            p.enrolled_at,
                            p.vendor,
                            p.challenge_id.to_string(),
                        ],
                    )?;
                }
                insert_event(c, &commit.event)?;
                Ok(true)
            })
            .await?)
    }

    async fn complete_challenge(
        &self,
        id: Uuid,
        result: &Value,
        event: &OutboxEvent,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                if !complete_pending(c, id, result, now)? {
                    return Ok(false);
                }
                insert_event(c, event)?;
                Ok(true)
            })
            .await?)
    }

    async fn finish_challenge(
        &self,
        id: Uuid,
        status: &str,
        reason: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE challenges SET status = $1, failure_reason = $2, finished_at = $3 \
                     WHERE id = $4 AND status = 'pending'",
                    params![status, reason, now, id.to_string()],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn expire_challenges(&self, now: i64) -> StoreResult<u64> {
        let done = self.db.write(|c| execute(c, EXPIRE_PENDING, [now])).await?;
        Ok(done as u64)
    }

    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    event_cols!(),
                    " FROM outbox_events WHERE dispatched_at IS NULL \
                     ORDER BY occurred_at, event_id LIMIT $1"
                ),
                [limit],
                event_row,
            )
        })?)
    }

    async fn mark_event_dispatched(&self, event_id: &str, now: i64) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE outbox_events SET dispatched_at = $1 \
                     WHERE event_id = $2 AND dispatched_at IS NULL",
                    params![now, event_id],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    event_cols!(),
                    " FROM outbox_events WHERE event_id = $1"
                ),
                [event_id],
                event_row,
            )
        })?)
    }

    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart> {
        let client = client.to_string();
        Ok(self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys \
                     WHERE client_id = $1 AND idem_key = $2 AND expires_at <= $3",
                    params![client, key, now],
                )?;
                let inserted = execute(
                    c,
                    "INSERT INTO idempotency_keys (client_id, idem_key, request_hash, status_code, \
                     response_body, created_at, expires_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5) \
                     ON CONFLICT (client_id, idem_key) DO NOTHING",
                    params![client, key, request_hash, now, expires_at],
                )?;
                if inserted == 1 {
                    return Ok(IdempotencyStart::Started);
                }
                let (hash, status, body) = c
                    .prepare_cached(
                        "SELECT request_hash, status_code, response_body FROM idempotency_keys \
                         WHERE client_id = $1 AND idem_key = $2",
                    )?
                    .query_row(params![client, key], |row| {
                        Ok((
                            row.get::<_, String>("request_hash")?,
                            row.get::<_, Option<i64>>("status_code")?,
                            row.get::<_, Option<String>>("response_body")?,
                        ))
                    })?;
                Ok(if hash != request_hash {
                    IdempotencyStart::Mismatch
                } else {
                    match (status, body) {
                        (Some(status), Some(body)) => IdempotencyStart::Replay {
                            status: u16::try_from(status).unwrap_or(200),
                            body,
                        },
                        _ => IdempotencyStart::InProgress,
                    }
                })
            })
            .await?)
    }

    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
                     WHERE client_id = $3 AND idem_key = $4",
                    params![i64::from(status), body, client.to_string(), key],
                )
            })
            .await?;
        Ok(())
    }

    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys \
                     WHERE client_id = $1 AND idem_key = $2 AND status_code IS NULL",
                    params![client.to_string(), key],
                )
            })
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys WHERE expires_at <= $1",
                    [now],
                )
            })
            .await?;
        Ok(done as u64)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::conformance::{challenge, device};
    use super::*;

    /// The query plan SQLite chooses for `sql`, one line per step.
    fn plan(c: &Connection, sql: &str) -> String {
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Parameters left unbound are NULL, which does not change the plan.
        let steps = stmt
            .raw_query()
            .mapped(|r| r.get::<_, String>("detail"))
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        steps.join("\n")
    }

    #[tokio::test]
    async fn the_hot_lookups_search_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let expected = [
            (
                DEVICE_BY_HARDWARE,
                "USING INDEX devices_hardware (tenant_id=? AND hardware_id=?)",
            ),
            (
                PENDING_OF_DEVICE,
                "USING INDEX challenges_device_pending (device_id=?)",
            ),
            (
                FAIL_PENDING_OF_DEVICE,
                "USING INDEX challenges_device_pending (device_id=?)",
            ),
            (EXPIRE_PENDING, "USING INDEX challenges_pending_expiry"),
        ];
        for (sql, search) in expected {
            let found = store.db.read(|c| Ok(plan(c, sql))).unwrap();
            assert!(found.contains(search), "{sql}\n{found}");
        }
    }

    #[tokio::test]
    async fn a_database_of_version_2_keeps_its_pending_challenges_through_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("u.db").display());
        let (tenant, scanner, live, stale, done);
        {
            let old = SqliteStore {
                db: SqliteDb::open(&url).await.unwrap(),
            };
            old.migrate_through(2).await.unwrap();
            tenant = old.create_tenant("t").await.unwrap().id;
            scanner = device(tenant, "code");
            old.create_device(&scanner).await.unwrap();
            (live, stale, done) = (
                challenge(tenant, scanner.id, i64::MAX),
                challenge(tenant, scanner.id, 50),
                challenge(tenant, scanner.id, i64::MAX),
            );
            for ch in [&live, &stale, &done] {
                old.create_challenge(ch).await.unwrap();
            }
            let result = serde_json::json!({"matched": true});
            let event = OutboxEvent {
                event_id: "evt_1".into(),
                tenant_id: tenant,
                event_type: "identification.complete".into(),
                payload: result.clone(),
                occurred_at: 10,
                dispatched_at: None,
            };
            assert!(old
                .complete_challenge(done.id, &result, &event, 10)
                .await
                .unwrap());
        }
        let store = SqliteStore::open(&url).await.unwrap();
        let pending = store.pending_for_device(scanner.id, 10).await.unwrap();
        let ids: Vec<Uuid> = pending.iter().map(|c| c.id).collect();
        let mut expected = vec![live.id, stale.id];
        expected.sort();
        assert_eq!(ids, expected);
        assert_eq!(store.expire_challenges(100).await.unwrap(), 1);
        assert!(store.revoke_device(tenant, scanner.id, 200).await.unwrap());
        for (id, status) in [
            (live.id, "failed"),
            (stale.id, "expired"),
            (done.id, "completed"),
        ] {
            let ch = store.get_challenge(tenant, id).await.unwrap().unwrap();
            assert_eq!(ch.status, status);
        }
        assert!(store
            .pending_for_device(scanner.id, 10)
            .await
            .unwrap()
            .is_empty());
    }
}
