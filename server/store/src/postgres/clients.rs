//! [`ClientStore`] on PostgreSQL. Scopes are kept as one space-separated column.

use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::audited_execute;
use super::sql::{fetch_all, fetch_optional, get, parsed};
use super::PostgresStore;
use crate::clients::{parse_scopes, scopes_text};
use crate::{AuditRecord, Client, ClientStore, StoreError, StoreResult};

fn client_row(row: &Row) -> StoreResult<Client> {
    let scopes = parse_scopes(get(row, "scopes")?)
        .map_err(|err| StoreError::Database(format!("column `scopes`: {err}")))?;
    Ok(Client {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        name: get(row, "name")?,
        scopes,
        secret_hash: get(row, "secret_hash")?,
        old_secret_hash: get(row, "old_secret_hash")?,
        created_at: get(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl ClientStore for PostgresStore {
    async fn create_client(&self, cl: &Client, audit: &AuditRecord) -> StoreResult<()> {
        audited_execute(
            self,
            "INSERT INTO oauth_clients (id, tenant_id, name, scopes, secret_hash, \
             old_secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &cl.id.to_string(),
                &cl.tenant_id.to_string(),
                &cl.name,
                &scopes_text(&cl.scopes),
                &cl.secret_hash,
                &cl.old_secret_hash,
                &cl.created_at,
            ],
            audit,
        )
        .await?;
        Ok(())
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at \
             FROM oauth_clients WHERE id = $1",
            &[&id.to_string()],
            client_row,
        )
        .await
    }

    async fn list_clients(&self, tenant: Uuid) -> StoreResult<Vec<Client>> {
        fetch_all(
            &self.pool.get().await?,
            "SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at \
             FROM oauth_clients WHERE tenant_id = $1 ORDER BY created_at, id",
            &[&tenant.to_string()],
            client_row,
        )
        .await
    }

    async fn rotate_client_secret(
        &self,
        id: Uuid,
        new_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        // One statement: a second rotation waits for the first's row lock and then reads
        // the secret the first set.
        let done = audited_execute(
            self,
            "UPDATE oauth_clients SET old_secret_hash = secret_hash, secret_hash = $1 \
             WHERE id = $2",
            &[&new_hash, &id.to_string()],
            audit,
        )
        .await?;
        Ok(done == 1)
    }

    async fn revoke_old_client_secret(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let done = audited_execute(
            self,
            "UPDATE oauth_clients SET old_secret_hash = NULL WHERE id = $1",
            &[&id.to_string()],
            audit,
        )
        .await?;
        Ok(done == 1)
    }

    async fn delete_client(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let done = audited_execute(
            self,
            "DELETE FROM oauth_clients WHERE id = $1",
            &[&id.to_string()],
            audit,
        )
        .await?;
        Ok(done == 1)
    }
}
