//! Tenants: the owners of every other record.

use uuid::Uuid;

use crate::StoreResult;

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
    /// Stores a new tenant.
    ///
    /// Concurrency: ids are drawn by the caller; a repeated id is a `Conflict`.
    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    /// Looks a tenant up.
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>>;
    /// Every tenant id.
    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>>;
}
