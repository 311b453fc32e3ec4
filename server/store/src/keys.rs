//! Key material, every key wrapped by the master key (which the store never sees): the
//! master key's check value, each tenant's data key, the token signing key.

use uuid::Uuid;

use crate::StoreResult;

/// Storage of wrapped keys.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// The master key's check value, if one was set.
    async fn keyring(&self) -> StoreResult<Option<Vec<u8>>>;
    /// Sets the master key's check value unless one exists; returns the value in force.
    ///
    /// Concurrency: the first of two nodes wins; both get its value.
    async fn init_keyring(&self, check: &[u8], now: i64) -> StoreResult<Vec<u8>>;
    /// Whether any tenant key or sealed template exists (a database a master key was used
    /// on).
    async fn holds_sealed_data(&self) -> StoreResult<bool>;

    /// A tenant's data key, wrapped by the master key.
    async fn tenant_key(&self, tenant: Uuid) -> StoreResult<Option<Vec<u8>>>;
    /// Sets a tenant's wrapped data key unless it has one; returns the key in force.
    ///
    /// Concurrency: the first of two writers wins; both get its key.
    async fn init_tenant_key(&self, tenant: Uuid, wrapped: &[u8], now: i64)
        -> StoreResult<Vec<u8>>;

    /// The token signing key, wrapped by the master key, if one was set.
    async fn signing_key(&self) -> StoreResult<Option<Vec<u8>>>;
    /// Sets the wrapped token signing key unless one exists; returns the key in force.
    ///
    /// Concurrency: the first of two nodes wins; both get its key, so tokens one node
    /// issues verify on every node.
    async fn init_signing_key(&self, wrapped: &[u8], now: i64) -> StoreResult<Vec<u8>>;
}
