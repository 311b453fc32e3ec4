//! OAuth clients and their two secret slots.

use uuid::Uuid;

use crate::vocabulary::{named_values, UnknownValue};
use crate::{AuditRecord, StoreResult};

named_values! {
    /// What a client's tokens may do.
    pub enum Scope ("scope") {
        /// Register, list and revoke scanners.
        Devices = "devices",
        /// Create enrollment challenges.
        Enroll = "enroll",
        /// Create verification challenges; read and change matching settings.
        Verify = "verify",
        /// Create identification challenges.
        Identify = "identify",
        /// List, read and erase enrolled users.
        Users = "users",
        /// Manage webhook subscriptions and their deliveries.
        Webhooks = "webhooks",
        /// Read the tenant's audit log.
        Audit = "audit",
    }
}

/// An OAuth client of a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    /// `client_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Display name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the current secret.
    pub secret_hash: String,
    /// Hex SHA-256 of the previous secret while a rotation is in progress.
    pub old_secret_hash: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// Storage of OAuth clients.
#[async_trait::async_trait]
pub trait ClientStore: Send + Sync {
    /// Stores a new client with its audit entry.
    async fn create_client(&self, client: &Client, audit: &AuditRecord) -> StoreResult<()>;
    /// Looks a client up.
    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>>;
    /// The clients of a tenant, oldest first.
    async fn list_clients(&self, tenant: Uuid) -> StoreResult<Vec<Client>>;
    /// Moves the current secret to the old slot and sets a new one; false if unknown.
    ///
    /// Concurrency: one statement (`old = current, current = new`), so two rotations at
    /// once leave the second's secret current and the first's old, never a lost secret.
    /// The audit entry is written with the change.
    async fn rotate_client_secret(
        &self,
        id: Uuid,
        new_hash: &str,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
    /// Forgets the old secret, with its audit entry; false if unknown.
    async fn revoke_old_client_secret(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool>;
    /// Deletes a client, with its audit entry; false if unknown.
    async fn delete_client(&self, id: Uuid, audit: &AuditRecord) -> StoreResult<bool>;
}

/// A scope list as one column: names separated by spaces.
pub(crate) fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A scope list from its column ([`scopes_text`]).
pub(crate) fn parse_scopes(text: &str) -> Result<Vec<Scope>, UnknownValue> {
    text.split_whitespace().map(str::parse).collect()
}
