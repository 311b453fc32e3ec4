//! Durable state behind one trait, so the HTTP layer never sees SQL.
//!
//! Every method that changes state and fires an event writes the event into the outbox in the
//! same transaction (see [`OutboxEvent`]). Timestamps are microseconds since the Unix epoch.
//! The SQL of the SQLite implementation is portable (`$1` placeholders, standard types), so a
//! PostgreSQL implementation can reuse it.

#[cfg(test)]
mod conformance;
mod sqlite;
pub(crate) mod sqlite_db;

pub use sqlite::SqliteStore;

use serde_json::Value;
use uuid::Uuid;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (e.g. a palm already enrolled).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A tenant: the owner of clients, devices, users and challenges.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Tenant id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: i64,
}

/// An OAuth client of a tenant.
#[derive(Clone, Debug)]
pub struct Client {
    /// `client_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Display name.
    pub name: String,
    /// Granted scopes, space separated.
    pub scopes: String,
    /// Hex SHA-256 of the current secret.
    pub secret_hash: String,
    /// Hex SHA-256 of the previous secret while a rotation is in progress.
    pub old_secret_hash: Option<String>,
    /// Creation time.
    pub created_at: i64,
}

/// A scanner registered by a tenant.
#[derive(Clone, Debug)]
pub struct Device {
    /// `device_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Label.
    pub device_name: String,
    /// Physical location.
    pub location: String,
    /// `pending_pair`, `paired` or `revoked`.
    pub status: String,
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

/// An enrolled person, keyed by the tenant's own `external_user_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    /// Internal id (`user_id`), also the gallery's user key.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// The tenant's identifier for the person.
    pub external_user_id: String,
    /// Creation time.
    pub created_at: i64,
}

/// One enrolled palm template: the database side of a gallery row.
#[derive(Clone, Debug, PartialEq)]
pub struct Palm {
    /// `feature_id`, also stored in the gallery row.
    pub feature_id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Owning user.
    pub user_id: Uuid,
    /// `left` or `right`.
    pub palm_type: String,
    /// Row of the template in the tenant's gallery.
    pub row_id: i64,
    /// Enrollment time.
    pub enrolled_at: i64,
    /// Capture vendor.
    pub vendor: String,
    /// Challenge that enrolled it.
    pub challenge_id: Uuid,
}

/// A challenge: a request for the scanner to capture.
#[derive(Clone, Debug)]
pub struct Challenge {
    /// `challenge_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// `enroll`, `verify` or `identify`.
    pub kind: String,
    /// Device that must capture.
    pub device_id: Uuid,
    /// Its hardware id at creation.
    pub hardware_id: String,
    /// Subject of enroll and verify challenges.
    pub external_user_id: Option<String>,
    /// `left`, `right`, `both` or `any`.
    pub palm_type: String,
    /// Candidates wanted (identify).
    pub top_k: Option<i64>,
    /// `pending`, `completed`, `failed`, `cancelled` or `expired`.
    pub status: String,
    /// Opaque integrator data (JSON object or null).
    pub metadata: Value,
    /// The completed challenge's result: its event's `data`.
    pub result: Option<Value>,
    /// Why a challenge failed or was cancelled.
    pub failure_reason: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Time it left `pending`.
    pub finished_at: Option<i64>,
}

/// An event written durably with the state change that caused it, for webhook delivery.
///
/// Table `outbox_events`: `event_id` (TEXT, primary key, `evt_<32 hex>`), `tenant_id` (TEXT),
/// `event_type` (TEXT), `payload` (TEXT: the whole JSON body to deliver, with `event_id`,
/// `event_type`, `tenant_id`, `timestamp` and `data`), `occurred_at` (BIGINT, microseconds),
/// `dispatched_at` (BIGINT, NULL until a delivery worker has taken it).
#[derive(Clone, Debug)]
pub struct OutboxEvent {
    /// `evt_<32 hex>`.
    pub event_id: String,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// e.g. `enrollment.complete`.
    pub event_type: String,
    /// The delivery body.
    pub payload: Value,
    /// Event time.
    pub occurred_at: i64,
    /// When a delivery worker took it, if one has.
    pub dispatched_at: Option<i64>,
}

/// Matching settings as stored for a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSettings {
    /// Per-block thresholds.
    pub thresholds: Vec<f32>,
    /// `all_thresholds`, `mean` or `k_of_n`.
    pub match_policy: String,
    /// k of `k_of_n`.
    pub k: Option<i64>,
}

/// Filters of the challenge list.
#[derive(Clone, Debug, Default)]
pub struct ChallengeFilter {
    /// Only this type.
    pub kind: Option<String>,
    /// Only this status.
    pub status: Option<String>,
}

/// What an enrollment capture commits.
#[derive(Clone, Debug)]
pub struct EnrollmentCommit {
    /// The challenge being completed.
    pub challenge_id: Uuid,
    /// The palms, already durable in the gallery.
    pub palms: Vec<Palm>,
    /// The challenge result (the event's `data`).
    pub result: Value,
    /// The event to publish.
    pub event: OutboxEvent,
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

/// Outcome of starting a request under an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq)]
pub enum IdempotencyStart {
    /// First use of the key: run the request, then record or release it.
    Started,
    /// Same key and body completed before: replay this status and body.
    Replay {
        /// Status of the first response.
        status: u16,
        /// Body of the first response.
        body: String,
    },
    /// Same key, request still running.
    InProgress,
    /// Same key used with a different request.
    Mismatch,
}

/// Everything the service stores. One implementation per database.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Checks the database answers and accepts writes.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates a tenant.
    async fn create_tenant(&self, name: &str) -> StoreResult<Tenant>;
    /// Looks a tenant up.
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>>;
    /// Every tenant id.
    async fn list_tenant_ids(&self) -> StoreResult<Vec<Uuid>>;

    /// Stores a new client.
    async fn create_client(&self, client: &Client) -> StoreResult<()>;
    /// Looks a client up.
    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>>;
    /// Moves the current secret to the old slot and sets a new one; false if unknown.
    async fn rotate_client_secret(&self, id: Uuid, new_hash: &str) -> StoreResult<bool>;
    /// Forgets the old secret; false if unknown.
    async fn revoke_old_client_secret(&self, id: Uuid) -> StoreResult<bool>;
    /// Deletes a client; false if unknown.
    async fn delete_client(&self, id: Uuid) -> StoreResult<bool>;

    /// Stores a new device.
    async fn create_device(&self, device: &Device) -> StoreResult<()>;
    /// A device of a tenant.
    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>>;
    /// A page of a tenant's devices, newest first, and the total.
    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)>;
    /// The tenant's device with this hardware id (a paired one first).
    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>>;
    /// The device that was given this pairing code.
    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>>;
    /// The paired device holding this scanner credential hash.
    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>>;
    /// Sets a fresh pairing code on a `pending_pair` device; false otherwise.
    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
    ) -> StoreResult<bool>;
    /// Pairs a `pending_pair` device holding `pairing.code` and writes the `device.paired`
    /// event; `Ok(None)` when the device is no longer pending with that code; `Conflict` when
    /// the hardware id is paired to another device of the tenant.
    async fn pair_device(
        &self,
        pairing: &Pairing,
        event: &OutboxEvent,
    ) -> StoreResult<Option<Device>>;
    /// Records scanner activity.
    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()>;
    /// Revokes a device and fails its pending challenges; false if unknown or already revoked.
    async fn revoke_device(&self, tenant: Uuid, id: Uuid, now: i64) -> StoreResult<bool>;

    /// The user with this external id, created if missing.
    async fn ensure_user(
        &self,
        tenant: Uuid,
        external_user_id: &str,
        now: i64,
    ) -> StoreResult<User>;
    /// The user with this external id.
    async fn get_user(&self, tenant: Uuid, external_user_id: &str) -> StoreResult<Option<User>>;
    /// A user by external id with their palms (by palm type), in one read.
    async fn get_user_with_palms(
        &self,
        tenant: Uuid,
        external_user_id: &str,
    ) -> StoreResult<Option<(User, Vec<Palm>)>>;
    /// Users by internal id.
    async fn get_users_by_ids(&self, tenant: Uuid, ids: &[Uuid]) -> StoreResult<Vec<User>>;
    /// A page of users holding at least one palm, oldest first, and the total.
    async fn list_users(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<User>, i64)>;
    /// A user's enrolled palms.
    async fn list_palms(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>>;
    /// Every palm of a tenant (start-up reconciliation with the gallery).
    async fn all_palms(&self, tenant: Uuid) -> StoreResult<Vec<Palm>>;
    /// Deletes a user and its palms, returning the palms deleted.
    async fn delete_user(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>>;
    /// Deletes palm rows by feature id (rows whose gallery side is gone).
    async fn delete_palms(&self, feature_ids: &[Uuid]) -> StoreResult<()>;

    /// The tenant's matching settings, if set.
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<StoredSettings>>;
    /// Replaces the tenant's matching settings.
    async fn put_settings(&self, tenant: Uuid, settings: &StoredSettings) -> StoreResult<()>;

    /// Stores a new challenge.
    async fn create_challenge(&self, challenge: &Challenge) -> StoreResult<()>;
    /// A challenge of a tenant.
    async fn get_challenge(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Challenge>>;
    /// A page of a tenant's challenges, newest first, and the total.
    async fn list_challenges(
        &self,
        tenant: Uuid,
        filter: &ChallengeFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Challenge>, i64)>;
    /// A device's pending, unexpired challenges, oldest first.
    async fn pending_for_device(&self, device_id: Uuid, now: i64) -> StoreResult<Vec<Challenge>>;
    /// Completes a pending enrollment challenge: palms, result and event in one transaction.
    /// `Ok(false)` when the challenge is no longer pending; `Conflict` when a palm exists.
    async fn complete_enrollment(&self, commit: &EnrollmentCommit, now: i64) -> StoreResult<bool>;
    /// Completes a pending verify or identify challenge with its result and event.
    async fn complete_challenge(
        &self,
        id: Uuid,
        result: &Value,
        event: &OutboxEvent,
        now: i64,
    ) -> StoreResult<bool>;
    /// Moves a pending challenge to `status` (failed, cancelled, expired) with a reason.
    async fn finish_challenge(
        &self,
        id: Uuid,
        status: &str,
        reason: Option<&str>,
        now: i64,
    ) -> StoreResult<bool>;
    /// Expires every pending challenge past its expiry; returns how many.
    async fn expire_challenges(&self, now: i64) -> StoreResult<u64>;

    /// Events not yet taken by a delivery worker, oldest first.
    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>>;
    /// Marks an event as taken by a delivery worker.
    async fn mark_event_dispatched(&self, event_id: &str, now: i64) -> StoreResult<bool>;
    /// One event by id.
    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>>;

    /// Starts a request under an idempotency key scoped to a client.
    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart>;
    /// Records the response of a started request.
    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    /// Releases a started key whose request did not succeed.
    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()>;
    /// Drops expired idempotency records.
    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64>;
}
