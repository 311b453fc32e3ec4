//! Scanners: registration, pairing, credentials and revocation.

use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, EndRecords, OutboxEvent, StoreResult};

named_values! {
    /// Where a scanner is in its life.
    pub enum DeviceStatus ("device status") {
        /// Registered, waiting for its pairing code.
        PendingPair = "pending_pair",
        /// Paired: its credential works.
        Paired = "paired",
        /// Revoked: its credential no longer works.
        Revoked = "revoked",
    }
}

/// A scanner registered by a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// `device_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Label.
    pub device_name: String,
    /// Physical location.
    pub location: String,
    /// Where it is in its life.
    pub status: DeviceStatus,
    /// Set by the scanner when it pairs.
    pub hardware_id: Option<String>,
    /// The last pairing code issued (kept after use so reuse is recognised).
    pub pairing_code: Option<String>,
    /// When the pairing code expires.
    pub pairing_expires_at: Option<i64>,
    /// Pairing time.
    pub paired_at: Option<i64>,
    /// End of the scanner credential's validity.
    pub cert_valid_until: Option<i64>,
    /// Last authenticated scanner request.
    pub last_seen_at: Option<i64>,
    /// Registration time.
    pub created_at: i64,
}

/// What pairing a device sets.
#[derive(Clone, Debug)]
pub struct Pairing {
    /// The device.
    pub device_id: Uuid,
    /// The pairing code presented (normalised).
    pub code: String,
    /// The scanner's hardware id.
    pub hardware_id: String,
    /// Hex SHA-256 of the scanner credential.
    pub secret_hash: String,
    /// Pairing time.
    pub paired_at: i64,
    /// End of the credential's validity.
    pub cert_valid_until: i64,
}

/// Storage of scanners.
#[async_trait::async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new device, with its audit entry.
    ///
    /// Concurrency: pairing codes are unique over every device; a code in use is a
    /// `Conflict` (the caller draws another).
    async fn create_device(&self, device: &Device, audit: &AuditRecord) -> StoreResult<()>;
    /// A device of a tenant.
    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>>;
    /// A page of a tenant's devices, newest first, and the total.
    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)>;
    /// The tenant's device with this hardware id (a paired one first, else the one paired
    /// last).
    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>>;
    /// The device that was given this pairing code.
    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>>;
    /// The paired device holding this scanner credential hash.
    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>>;
    /// Sets a fresh pairing code on a `pending_pair` device, with its audit entry; false
    /// (and nothing written) otherwise.
    ///
    /// Concurrency: conditional on the status in the same statement, so a device paired
    /// meanwhile keeps its state; a code in use is a `Conflict`.
    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;
    /// Pairs a `pending_pair` device holding `pairing.code` and writes the `device.paired`
    /// event and audit entry; `Ok(None)` when the device is no longer pending with that code; `Conflict` when
    /// the hardware id is paired to another device of the tenant.
    ///
    /// Concurrency: two scanners presenting the same code: exactly one pairs (the update
    /// is conditional on `pending_pair` and the code); two devices pairing the same hardware
    /// id at once: exactly one pairs (a unique index over paired hardware ids per tenant);
    /// the loser writes no event and no entry.
    async fn pair_device(
        &self,
        pairing: &Pairing,
        event: &OutboxEvent,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Device>>;
    /// Records scanner activity (a presence indicator: last writer wins).
    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()>;
    /// Revokes a device, with its audit entry, and fails its pending challenges
    /// (`device_revoked`), each with the event and entry `records` builds for it, in one
    /// transaction; false (and nothing written) if unknown or already revoked.
    ///
    /// Concurrency: a challenge completed at the same moment either completes before the
    /// revocation (and stays completed) or finds itself failed; never both.
    async fn revoke_device(
        &self,
        tenant: Uuid,
        id: Uuid,
        now: i64,
        audit: &AuditRecord,
        records: &EndRecords,
    ) -> StoreResult<bool>;
}
