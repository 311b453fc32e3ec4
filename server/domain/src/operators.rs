//! What the operator does: tenants and their OAuth clients, with secrets shown once.

use std::sync::Arc;

use palmlink_store::{Client, Scope, Store, Tenant};
use uuid::Uuid;

use crate::audit::{record, OperatorActor};
use crate::clock::Clock;
use crate::secrets::{new_secret, sha256_hex, CLIENT_SECRET_PREFIX};
use crate::tokens::parse_scopes;
use crate::{DomainError, DomainResult};

/// A client with the secret it was just given (shown only this once).
#[derive(Clone, Debug)]
pub struct ClientSecret {
    /// The client.
    pub client: Client,
    /// The plain secret.
    pub secret: String,
}

/// Tenants and OAuth clients. Each change is audited with the operator who made it
/// (`by`) and written in the transaction of the change.
pub struct Operators {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Operators {
    /// Operator actions on `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Operators {
        Operators { store, clock }
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, by: OperatorActor, name: &str) -> DomainResult<Tenant> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(DomainError::field("name", "must be 1-255 characters"));
        }
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        // The tenant's chain starts with its creation, written with it.
        let audit = record(
            tenant.id,
            tenant.created_at,
            by.actor(),
            "tenant.created",
            ("tenant", tenant.id.to_string()),
            "success",
            serde_json::json!({"name": tenant.name}),
        );
        self.store.create_tenant(&tenant, &audit).await?;
        Ok(tenant)
    }

    /// Every tenant, oldest first.
    pub async fn list_tenants(&self) -> DomainResult<Vec<Tenant>> {
        Ok(self.store.list_tenants().await?)
    }

    /// A tenant; 404 when it does not exist.
    pub async fn get_tenant(&self, tenant: Uuid) -> DomainResult<Tenant> {
        self.store
            .get_tenant(tenant)
            .await?
            .ok_or(DomainError::NotFound("tenant"))
    }

    /// The clients of a tenant, oldest first; 404 when the tenant does not exist.
    pub async fn list_clients(&self, tenant: Uuid) -> DomainResult<Vec<Client>> {
        self.get_tenant(tenant).await?;
        Ok(self.store.list_clients(tenant).await?)
    }

    /// A client of a tenant; 404 when it is not one of the tenant's.
    pub async fn get_client(&self, tenant: Uuid, client: Uuid) -> DomainResult<Client> {
        self.store
            .get_client(client)
            .await?
            .filter(|c| c.tenant_id == tenant)
            .ok_or(DomainError::NotFound("client"))
    }

    /// Creates a client of a tenant with the given space-separated scopes (all when `None`).
    pub async fn create_client(
        &self,
        by: OperatorActor,
        tenant: Uuid,
        name: &str,
        scopes: Option<&str>,
    ) -> DomainResult<ClientSecret> {
        if self.store.get_tenant(tenant).await?.is_none() {
            return Err(DomainError::NotFound("tenant"));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(DomainError::field("name", "must be 1-255 characters"));
        }
        let scopes = match scopes {
            Some(raw) => parse_scopes(raw).map_err(|e| DomainError::field("scopes", e))?,
            None => Scope::ALL.to_vec(),
        };
        if scopes.is_empty() {
            return Err(DomainError::field(
                "scopes",
                "a client needs at least one scope",
            ));
        }
        let secret = new_secret(CLIENT_SECRET_PREFIX);
        let client = Client {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            name: name.to_owned(),
            scopes,
            secret_hash: sha256_hex(secret.as_bytes()),
            old_secret_hash: None,
            created_at: self.clock.now(),
        };
        let audit = record(
            tenant,
            client.created_at,
            by.actor(),
            "client.created",
            ("client", client.id.to_string()),
            "success",
            serde_json::json!({"name": client.name, "scopes": client.scopes}),
        );
        self.store.create_client(&client, &audit).await?;
        Ok(ClientSecret { client, secret })
    }

    /// Issues a new secret; the previous one keeps working until revoked. Returns the new
    /// secret.
    pub async fn rotate_client(&self, by: OperatorActor, client: Uuid) -> DomainResult<String> {
        let audit = self.client_audit(by, client, "client.rotated").await?;
        let secret = new_secret(CLIENT_SECRET_PREFIX);
        if !self
            .store
            .rotate_client_secret(client, &sha256_hex(secret.as_bytes()), &audit)
            .await?
        {
            return Err(DomainError::NotFound("client"));
        }
        Ok(secret)
    }

    /// Stops the previous secret from working.
    pub async fn revoke_old_secret(&self, by: OperatorActor, client: Uuid) -> DomainResult<()> {
        let audit = self
            .client_audit(by, client, "client.old_secret_revoked")
            .await?;
        if self.store.revoke_old_client_secret(client, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("client"))
        }
    }

    /// Deletes a tenant: its data key first (its sealed templates, backups included, can no
    /// longer be opened), then its rows. Its galleries are the nodes' to remove (they do
    /// when they find the tenant gone).
    pub async fn delete_tenant(&self, by: OperatorActor, tenant: Uuid) -> DomainResult<()> {
        // The tenant's chain is kept, and closed by its deletion, written with it.
        let audit = record(
            tenant,
            self.clock.now(),
            by.actor(),
            "tenant.deleted",
            ("tenant", tenant.to_string()),
            "success",
            serde_json::Value::Null,
        );
        if self.store.delete_tenant(tenant, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("tenant"))
        }
    }

    /// Deletes a client; every token it was issued stops working at once.
    pub async fn delete_client(&self, by: OperatorActor, client: Uuid) -> DomainResult<()> {
        let audit = self.client_audit(by, client, "client.deleted").await?;
        if self.store.delete_client(client, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("client"))
        }
    }

    /// The audit record of an operator's `action` on a client (404 when unknown).
    async fn client_audit(
        &self,
        by: OperatorActor,
        client: Uuid,
        action: &str,
    ) -> DomainResult<palmlink_store::AuditRecord> {
        let found = self
            .store
            .get_client(client)
            .await?
            .ok_or(DomainError::NotFound("client"))?;
        Ok(record(
            found.tenant_id,
            self.clock.now(),
            by.actor(),
            action,
            ("client", client.to_string()),
            "success",
            serde_json::json!({"name": found.name}),
        ))
    }
}
