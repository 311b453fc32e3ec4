//! [`KeyStore`] on SQLite.

use rusqlite::params;
use uuid::Uuid;

use super::sql::fetch_optional;
use super::SqliteStore;
use crate::{KeyStore, StoreResult};

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
    async fn keyring(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db.read(|c| {
            fetch_optional(c, "SELECT check_value FROM keyring WHERE id = 1", [], |r| {
                r.get(0)
            })
        })?)
    }

    async fn init_keyring(&self, check: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        // A conflict updates nothing and returns the value that won, so every caller
        // leaves with the same one.
        Ok(self
            .db
            .write(|c| {
                c.prepare_cached(
                    "INSERT INTO keyring (id, check_value, created_at) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING check_value",
                )?
                .query_row(params![check, now], |r| r.get(0))
            })
            .await?)
    }

    async fn holds_sealed_data(&self) -> StoreResult<bool> {
        Ok(self.db.read(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tenant_keys) \
                 OR EXISTS (SELECT 1 FROM palms WHERE template IS NOT NULL)",
            )?
            .query_row([], |r| r.get(0))
        })?)
    }

    async fn tenant_key(&self, tenant: Uuid) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1",
                [tenant.to_string()],
                |r| r.get(0),
            )
        })?)
    }

    async fn init_tenant_key(
        &self,
        tenant: Uuid,
        wrapped: &[u8],
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        Ok(self
            .db
            .write(|c| {
                c.prepare_cached(
                    "INSERT INTO tenant_keys (tenant_id, wrapped_key, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id RETURNING wrapped_key",
                )?
                .query_row(params![tenant.to_string(), wrapped, now], |r| r.get(0))
            })
            .await?)
    }

    async fn signing_key(&self) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT wrapped_key FROM signing_keys WHERE id = 1",
                [],
                |r| r.get(0),
            )
        })?)
    }

    async fn init_signing_key(&self, wrapped: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        Ok(self
            .db
            .write(|c| {
                c.prepare_cached(
                    "INSERT INTO signing_keys (id, wrapped_key, created_at) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING wrapped_key",
                )?
                .query_row(params![wrapped, now], |r| r.get(0))
            })
            .await?)
    }
}
