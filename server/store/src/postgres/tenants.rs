//! [`TenantStore`] on PostgreSQL.

use tokio_postgres::Row;
use uuid::Uuid;

use super::sql::{execute, fetch_all, fetch_optional, get, parsed};
use super::PostgresStore;
use crate::{StoreResult, Tenant, TenantStore};

fn tenant_row(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl TenantStore for PostgresStore {
    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
            &[&tenant.id.to_string(), &tenant.name, &tenant.created_at],
        )
        .await?;
        Ok(())
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT id, name, created_at FROM tenants WHERE id = $1",
            &[&id.to_string()],
            tenant_row,
        )
        .await
    }

    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>> {
        fetch_all(
            &self.pool.get().await?,
            "SELECT id FROM tenants",
            &[],
            |r| parsed(r, "id"),
        )
        .await
    }
}
