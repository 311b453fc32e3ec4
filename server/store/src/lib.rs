//! Everything PalmLink keeps durably, behind one family of traits.
//!
//! Each aggregate has a trait of its own: [`TenantStore`], [`ClientStore`], [`DeviceStore`],
//! [`UserStore`], [`ChallengeStore`], [`SettingsStore`], [`OutboxStore`],
//! [`IdempotencyStore`], [`WebhookStore`], [`KeyStore`] (wrapped keys), [`TemplateStore`]
//! (sealed templates and the template log), [`AuditStore`] (the hash-chained audit log) and
//! [`OperatorStore`] (the console's operators and sessions), [`RetentionStore`] (finished
//! work deleted past its tenant's retention period); [`Signals`] wakes waiters on
//! every node. [`Store`] is all of them
//! together, which is what the service holds (`Arc<dyn Store>`). Two backends implement
//! every trait: [`SqliteStore`] (one database file, one process writing) and
//! [`PostgresStore`] (any number of nodes on one database); the conformance suite in
//! `tests/` runs the same behaviour against both.
//!
//! Every method documents what must hold when several writers run at once ("Concurrency"):
//! what one backend gets for free (SQLite has a single writer) another must provide with
//! row locks, unique constraints or conditional updates.
//!
//! State changes that fire an event write it into the outbox in the same transaction (see
//! [`OutboxEvent`]): a crash never leaves a change without its event or an event without its
//! change. Timestamps are microseconds since the Unix epoch.
//!
//! ```no_run
//! # async fn run() -> Result<(), palmlink_store::StoreError> {
//! use palmlink_store::{Actor, AuditRecord, Tenant, TenantStore as _};
//!
//! let store = palmlink_store::open("sqlite:///var/lib/palmlink/palmlink.db").await?;
//! let tenant = Tenant { id: uuid::Uuid::new_v4(), name: "Acme".into(), created_at: 0 };
//! let audit = AuditRecord {
//!     tenant_id: tenant.id,
//!     at: 0,
//!     actor: Actor::operator("cli"),
//!     action: "tenant.created".into(),
//!     resource_type: "tenant".into(),
//!     resource_id: tenant.id.to_string(),
//!     outcome: "success".into(),
//!     details: serde_json::Value::Null,
//! };
//! store.create_tenant(&tenant, &audit).await?; // the change and its audit entry, together
//! assert_eq!(store.get_tenant(tenant.id).await?.map(|t| t.name), Some("Acme".into()));
//! # Ok(()) }
//! ```

mod audit;
mod challenges;
mod clients;
mod devices;
mod error;
mod idempotency;
mod keys;
mod migrations;
mod operators;
mod outbox;
mod postgres;
mod retention;
mod settings;
mod signals;
mod sqlite;
mod templates;
mod tenants;
mod users;
mod vocabulary;
mod webhooks;

use std::sync::Arc;

pub use audit::{
    canonical_json, verify_chain, Actor, ActorKind, AuditEntry, AuditFilter, AuditRecord,
    AuditStore, ChainCheck, GENESIS_HASH, OPERATOR_CHAIN,
};
pub use challenges::{
    Challenge, ChallengeEnd, ChallengeFilter, ChallengeKind, ChallengePalm, ChallengeStatus,
    ChallengeStore, EndRecord, EndRecords, EnrollmentCommit, FailureReason,
};
pub use clients::{Client, ClientStore, Scope};
pub use devices::{Device, DeviceStatus, DeviceStore, Pairing};
pub use error::{StoreError, StoreResult};
pub use idempotency::{IdempotencyStart, IdempotencyStore};
pub use keys::KeyStore;
pub use operators::{ConsoleSession, Operator, OperatorStore, SignInGate};
pub use outbox::{OutboxEvent, OutboxStore};
pub use postgres::PostgresStore;
pub use retention::{Purged, RetentionStore};
pub use settings::{
    DuplicateCheck, MatchPolicy, MatchingSettings, SettingsStore, TenantSettingsRecord, TrustPolicy,
};
pub use signals::{Signal, Signals, SIGNAL_BUFFER, SIGNAL_MAX_BYTES};
pub use sqlite::SqliteStore;
pub use templates::{
    ImportBatch, LogEntry, LogOp, LoggedTemplate, SealedTemplate, StoredTemplate, TemplateStore,
    UnsealedPalm,
};
pub use tenants::{Tenant, TenantStore};
pub use users::{Erasure, Palm, PalmType, User, UserStore};
pub use vocabulary::UnknownValue;
pub use webhooks::{
    Attempt, Delivery, DeliveryNext, DeliveryStatus, Subscription, SubscriptionNext, WebhookStore,
};

/// Everything the service stores: one implementation per database.
#[async_trait::async_trait]
pub trait Store:
    TenantStore
    + AuditStore
    + ClientStore
    + DeviceStore
    + UserStore
    + ChallengeStore
    + SettingsStore
    + OutboxStore
    + IdempotencyStore
    + WebhookStore
    + KeyStore
    + TemplateStore
    + OperatorStore
    + RetentionStore
    + Signals
    + Send
    + Sync
{
    /// Checks that the database answers and accepts writes.
    async fn ping(&self) -> StoreResult<()>;
}

/// Opens the store a database URL names, applying every migration the database lacks:
/// `sqlite://PATH` or `sqlite:PATH` (the file is created if missing), or
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]` (`postgresql://` too; see
/// [`PostgresStore::open`] for the parameters, among them `schema`).
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        Err(StoreError::UnsupportedUrl(scheme.to_owned()))
    }
}
