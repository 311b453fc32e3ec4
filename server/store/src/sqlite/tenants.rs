//! [`TenantStore`] on SQLite.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::sql::{execute, fetch_all, fetch_optional, parsed};
use super::SqliteStore;
use crate::{StoreResult, Tenant, TenantStore};

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id")?,
        name: row.get("name")?,
        created_at: row.get("created_at")?,
    })
}

#[async_trait::async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.db
            .write(|c| {
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
}
