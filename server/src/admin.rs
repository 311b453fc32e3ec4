//! Operator actions on tenants and OAuth clients, shared by the command line and tests. Each
//! returns the JSON object the command prints.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::secrets::{new_secret, sha256_hex};
use crate::auth::{parse_scopes, ALL_SCOPES};
use crate::clock::now_micros;
use crate::store::{Client, Store};

/// Prefix of client secrets.
const CLIENT_SECRET_PREFIX: &str = "pcs_";

/// Creates a tenant: `{"tenant_id", "name"}`.
pub async fn create_tenant(store: &dyn Store, name: &str) -> anyhow::Result<Value> {
    anyhow::ensure!(!name.trim().is_empty(), "the tenant name must not be empty");
    let tenant = store.create_tenant(name.trim()).await?;
    Ok(json!({"tenant_id": tenant.id, "name": tenant.name}))
}

/// Creates a client of a tenant with the given space-separated scopes (all when `None`):
/// `{"client_id", "client_secret", "tenant_id", "scopes"}`. The secret is shown only here.
pub async fn create_client(
    store: &dyn Store,
    tenant: Uuid,
    name: &str,
    scopes: Option<&str>,
) -> anyhow::Result<Value> {
    anyhow::ensure!(
        store.get_tenant(tenant).await?.is_some(),
        "unknown tenant {tenant}"
    );
    let scopes = match scopes {
        Some(raw) => parse_scopes(raw).map_err(anyhow::Error::msg)?,
        None => ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    anyhow::ensure!(!scopes.is_empty(), "a client needs at least one scope");
    let secret = new_secret(CLIENT_SECRET_PREFIX);
    let client = Client {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: name.to_owned(),
        scopes: scopes.join(" "),
        secret_hash: sha256_hex(secret.as_bytes()),
        old_secret_hash: None,
        created_at: now_micros(),
    };
    store.create_client(&client).await?;
    Ok(
        json!({"client_id": client.id, "client_secret": secret, "tenant_id": tenant, "scopes": client.scopes}),
    )
}

/// Issues a new secret; the previous one keeps working until revoked:
/// `{"client_id", "client_secret"}`.
pub async fn rotate_client(store: &dyn Store, client: Uuid) -> anyhow::Result<Value> {
    let secret = new_secret(CLIENT_SECRET_PREFIX);
    anyhow::ensure!(
        store
            .rotate_client_secret(client, &sha256_hex(secret.as_bytes()))
            .await?,
        "unknown client {client}"
    );
    Ok(json!({"client_id": client, "client_secret": secret}))
}

/// Stops the previous secret from working: `{"client_id", "old_secret_revoked": true}`.
pub async fn revoke_old_secret(store: &dyn Store, client: Uuid) -> anyhow::Result<Value> {
    anyhow::ensure!(
        store.revoke_old_client_secret(client).await?,
        "unknown client {client}"
    );
    Ok(json!({"client_id": client, "old_secret_revoked": true}))
}

/// Deletes a client; every token it was issued stops working at once:
/// `{"client_id", "deleted": true}`.
pub async fn delete_client(store: &dyn Store, client: Uuid) -> anyhow::Result<Value> {
    anyhow::ensure!(
        store.delete_client(client).await?,
        "unknown client {client}"
    );
    Ok(json!({"client_id": client, "deleted": true}))
}
