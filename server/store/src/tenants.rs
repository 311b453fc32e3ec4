//! Tenants: the owners of every other record.

use uuid::Uuid;

use crate::{AuditRecord, StoreResult};

/// A tenant: the owner of clients, devices, users, challenges and webhooks.
#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    /// Tenant id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: i64,
}

/// Storage of tenants.
#[async_trait::async_trait]
pub trait TenantStore: Send + Sync {
    /// Stores a new tenant with its audit entry (`tenant.created`, the first of its chain).
    ///
    /// Concurrency: ids are drawn by the caller; a repeated id is a `Conflict`.
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditRecord) -> StoreResult<()>;
    /// Looks a tenant up.
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>>;
    /// Every tenant id.
    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>>;
    /// Every tenant, oldest first.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Deletes a tenant: its data key first, in a transaction of its own (from then on its
    /// sealed templates can no longer be opened, whatever happens next), then every row of
    /// the tenant with its audit entry in one transaction (the chain itself is kept). False
    /// (and nothing written) when it does not exist.
    async fn delete_tenant(&self, tenant: Uuid, audit: &AuditRecord) -> StoreResult<bool>;
}

/// The tables a tenant's rows live in, children before parents, and the column that names
/// the tenant in each.
pub(crate) const TENANT_TABLES: &[(&str, &str)] = &[
    ("template_log", "tenant_id"),
    ("template_log_heads", "tenant_id"),
    ("palms", "tenant_id"),
    ("challenges", "tenant_id"),
    ("users", "tenant_id"),
    ("outbox_events", "tenant_id"),
    ("webhook_deliveries", "tenant_id"),
    ("webhooks", "tenant_id"),
    ("devices", "tenant_id"),
    ("oauth_clients", "tenant_id"),
    ("tenants", "id"),
];
