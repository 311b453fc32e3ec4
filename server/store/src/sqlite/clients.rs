//! [`ClientStore`] on SQLite. Scopes are kept as one space-separated column.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::audited;
use super::sql::{conversion, execute, fetch_all, fetch_optional, parsed};
use super::SqliteStore;
use crate::clients::{parse_scopes, scopes_text};
use crate::{AuditRecord, Client, ClientStore, StoreResult};

fn client_row(row: &Row<'_>) -> rusqlite::Result<Client> {
    let scopes: String = row.get("scopes")?;
    let scopes = parse_scopes(&scopes).map_err(|err| conversion(row, "scopes", err))?;
    Ok(Client {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        name: row.get("name")?,
        scopes,
        secret_hash: row.get("secret_hash")?,
        old_secret_hash: row.get("old_secret_hash")?,
        created_at: row.get("created_at")?,
    })
}

#[async_trait::async_trait]
impl ClientStore for SqliteStore {
    async fn create_client(&self, cl: &Client, audit: &AuditRecord) -> StoreResult<()> {
        audited(self, audit, |c| {
            execute(
                c,
                "INSERT INTO oauth_clients (id, tenant_id, name, scopes, secret_hash, \
             old_secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params![
                    cl.id.to_string(),
                    cl.tenant_id.to_string(),
                    cl.name,
                    scopes_text(&cl.scopes),
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

    async fn list_clients(&self, tenant: Uuid) -> StoreResult<Vec<Client>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                "SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at \
                 FROM oauth_clients WHERE tenant_id = $1 ORDER BY created_at, id",
                [tenant.to_string()],
                client_row,
            )
        })?)
    }

    async fn rotate_client_secret(
        &self,
        id: Uuid,
        new_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let done = audited(self, audit, |c| {
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

    async fn revoke_old_client_secret(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let done = audited(self, audit, |c| {
            execute(
                c,
                "UPDATE oauth_clients SET old_secret_hash = NULL WHERE id = $1",
                [id.to_string()],
            )
        })
        .await?;
        Ok(done == 1)
    }

    async fn delete_client(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool> {
        let done = audited(self, audit, |c| {
            execute(
                c,
                "DELETE FROM oauth_clients WHERE id = $1",
                [id.to_string()],
            )
        })
        .await?;
        Ok(done == 1)
    }
}
