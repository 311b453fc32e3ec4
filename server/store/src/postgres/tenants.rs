//! [`TenantStore`] on PostgreSQL.

use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::{append as append_audit, audited_execute};
use super::sql::{execute, fetch_all, fetch_optional, get, parsed};
use super::PostgresStore;
use crate::{AuditRecord, StoreResult, Tenant, TenantStore};

fn tenant_row(row: &Row) -> StoreResult<Tenant> {
    Ok(Tenant {
        id: parsed(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl TenantStore for PostgresStore {
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditRecord) -> StoreResult<()> {
        audited_execute(
            self,
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
            &[&tenant.id.to_string(), &tenant.name, &tenant.created_at],
            audit,
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

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        fetch_all(
            &self.pool.get().await?,
            "SELECT id, name, created_at FROM tenants ORDER BY created_at, id",
            &[],
            tenant_row,
        )
        .await
    }

    async fn delete_tenant(&self, tenant: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let id = tenant.to_string();
        let mut c = self.pool.get().await?;
        // The key first, committed on its own: from then on the tenant's templates no
        // longer open, whatever happens to the rest.
        execute(&c, "DELETE FROM tenant_keys WHERE tenant_id = $1", &[&id]).await?;
        let tx = c.transaction().await?;
        let exists = fetch_optional(
            &tx,
            "SELECT id FROM tenants WHERE id = $1 FOR UPDATE",
            &[&id],
            |_| Ok(()),
        )
        .await?
        .is_some();
        if !exists {
            return Ok(false);
        }
        execute(
            &tx,
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE tenant_id = $1)",
            &[&id],
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM idempotency_keys WHERE client_id IN \
             (SELECT id FROM oauth_clients WHERE tenant_id = $1)",
            &[&id],
        )
        .await?;
        for (table, column) in crate::tenants::TENANT_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE {column} = $1"), &[&id])
                .await?;
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        self.sealer.poke(audit.tenant_id);
        Ok(true)
    }
}
