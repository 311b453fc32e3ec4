//! [`TenantStore`] on SQLite.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::{append as append_audit, audited};
use super::sql::{execute, fetch_all, fetch_optional, parsed};
use super::SqliteStore;
use crate::{AuditRecord, StoreError, StoreResult, Tenant, TenantStore};

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id")?,
        name: row.get("name")?,
        created_at: row.get("created_at")?,
    })
}

#[async_trait::async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditRecord) -> StoreResult<()> {
        audited(self, audit, |c| {
            execute(
                c,
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                params![tenant.id.to_string(), tenant.name, tenant.created_at],
            )
        })
        .await?;
        Ok(())
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

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                "SELECT id, name, created_at FROM tenants ORDER BY created_at, id",
                [],
                tenant_row,
            )
        })?)
    }

    async fn delete_tenant(&self, tenant: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let id = tenant.to_string();
        let exists = self
            .db
            .write(|c| {
                execute(c, "DELETE FROM tenant_keys WHERE tenant_id = $1", [&id])?;
                fetch_optional(c, "SELECT 1 FROM tenants WHERE id = $1", [&id], |_| Ok(()))
            })
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        self.db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM webhook_attempts WHERE delivery_id IN \
                     (SELECT id FROM webhook_deliveries WHERE tenant_id = $1)",
                    [&id],
                )?;
                execute(
                    c,
                    "DELETE FROM idempotency_keys WHERE client_id IN \
                     (SELECT id FROM oauth_clients WHERE tenant_id = $1)",
                    [&id],
                )?;
                // Only the deletion that finds the tenant records it.
                let present =
                    fetch_optional(c, "SELECT 1 FROM tenants WHERE id = $1", [&id], |_| Ok(()))?;
                for (table, column) in crate::tenants::TENANT_TABLES {
                    c.execute(&format!("DELETE FROM {table} WHERE {column} = $1"), [&id])?;
                }
                if present.is_some() {
                    append_audit(c, audit)?;
                }
                Ok(())
            })
            .await
            .map_err(StoreError::from)?;
        Ok(true)
    }
}
