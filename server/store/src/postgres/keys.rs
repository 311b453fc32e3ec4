//! [`KeyStore`] on PostgreSQL: each key set once (an insert that does nothing when another
//! node's is there, then a read of the one in force).

use uuid::Uuid;

use super::sql::{fetch_optional, fetch_value, get};
use super::PostgresStore;
use crate::{KeyStore, StoreResult};

#[async_trait::async_trait]
impl KeyStore for PostgresStore {
    async fn keyring(&self) -> StoreResult<Option<Vec<u8>>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT check_value FROM keyring WHERE id = 1",
            &[],
            |r| get(r, "check_value"),
        )
        .await
    }

    async fn init_keyring(&self, check: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        // A conflict updates nothing and returns the value that won, so every caller
        // leaves with the same one.
        fetch_value(
            &self.pool.get().await?,
            "INSERT INTO keyring (id, check_value, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING check_value",
            &[&check, &now],
        )
        .await
    }

    async fn holds_sealed_data(&self) -> StoreResult<bool> {
        fetch_value(
            &self.pool.get().await?,
            "SELECT EXISTS (SELECT 1 FROM tenant_keys) \
             OR EXISTS (SELECT 1 FROM palms WHERE template IS NOT NULL)",
            &[],
        )
        .await
    }

    async fn tenant_key(&self, tenant: Uuid) -> StoreResult<Option<Vec<u8>>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1",
            &[&tenant.to_string()],
            |r| get(r, "wrapped_key"),
        )
        .await
    }

    async fn init_tenant_key(
        &self,
        tenant: Uuid,
        wrapped: &[u8],
        now: i64,
    ) -> StoreResult<Vec<u8>> {
        fetch_value(
            &self.pool.get().await?,
            "INSERT INTO tenant_keys (tenant_id, wrapped_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = excluded.tenant_id RETURNING wrapped_key",
            &[&tenant.to_string(), &wrapped, &now],
        )
        .await
    }

    async fn signing_key(&self) -> StoreResult<Option<Vec<u8>>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT wrapped_key FROM signing_keys WHERE id = 1",
            &[],
            |r| get(r, "wrapped_key"),
        )
        .await
    }

    async fn init_signing_key(&self, wrapped: &[u8], now: i64) -> StoreResult<Vec<u8>> {
        fetch_value(
            &self.pool.get().await?,
            "INSERT INTO signing_keys (id, wrapped_key, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING wrapped_key",
            &[&wrapped, &now],
        )
        .await
    }
}
