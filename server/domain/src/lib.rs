//! What PalmLink does, free of any transport.
//!
//! An integrator (an OAuth client of a tenant) obtains a token ([`Tokens`]), registers
//! scanners ([`Devices`]) and creates challenges ([`Challenges`]): enroll a palm, verify a
//! person 1:1, identify one 1:N. A paired scanner long-polls its challenges and answers each
//! with captures ([`Captures`]), which the engine stores and matches in the tenant's gallery
//! ([`Galleries`]) under the tenant's thresholds and policy ([`Settings`]). Every completed
//! step is written to the outbox in the transaction of the change, for webhook delivery
//! ([`Webhooks`] manages the subscriptions). Operators create tenants and clients
//! ([`Operators`]) and sign in to the console ([`Sessions`]), and move enrolled users between
//! deployments ([`Bulk`]).
//!
//! Services take what they need explicitly (the store, the galleries, a clock, key
//! material); [`Domain`] builds them all from one [`Parts`]. Inputs are typed structs (the
//! contract's JSON bodies deserialise into them), outputs are records and result structs,
//! and every failure is a [`DomainError`] whose variants name the HTTP status they map to.
//!
//! ```no_run
//! # async fn run(domain: palmlink_domain::Domain, token: &str) -> palmlink_domain::DomainResult<()> {
//! use palmlink_domain::RegisterDevice;
//!
//! let caller = domain.tokens.authenticate(token).await?;
//! let registered = domain
//!     .devices
//!     .register(&caller, RegisterDevice { device_name: "Front desk".into(), location: "Lobby".into() })
//!     .await?;
//! println!("pairing code {}", registered.pairing_code);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod audit;
mod bulk;
mod capture;
mod challenges;
mod clock;
mod devices;
mod ends;
mod error;
mod events;
mod galleries;
mod hub;
mod idempotency;
mod keys;
mod operators;
mod retention;
mod secrets;
mod sessions;
mod settings;
mod sweeper;
mod tokens;
mod users;
mod validate;
mod vault;
mod wakeups;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use palmlink_store::Store;
use tokio::sync::watch;

pub use audit::{Audit, AuditBrowse, AuditQuery, OperatorActor, CLI_OPERATOR};
pub use bulk::format as gallery_file;
pub use bulk::{
    Bulk, ExportSummary, ImportOptions, ImportSummary, InvalidRecord, Progress, Silent, Unit,
};
pub use capture::{
    CaptureItem, CaptureReport, CaptureSubmission, Captures, Duplicate, EnrollmentComplete,
    IdentificationComplete, IdentifiedCandidate, SearchReport, TemplateBody, VerificationComplete,
};
pub use challenges::{
    ensure_pending, scope_of, CancelChallenge, Challenges, IdentifyChallenge, SubjectChallenge,
    MAX_TOP_K, MAX_WAIT,
};
pub use clock::{micros, parse_rfc3339, rfc3339, Clock, SystemClock, SECOND};
pub use devices::{
    DevicePaired, Devices, PairDevice, PairedDevice, RegisterDevice, RegisteredDevice,
};
pub use ends::{end_record, expired_record, ChallengeFailed};
pub use error::{DomainError, DomainResult, FieldError, GrantErrorKind};
pub use events::{
    body as event_body, canonical as canonical_event, new_event_id, outbox_event, OutboxBell,
    CHALLENGE_FAILED, DEVICE_PAIRED, ENROLLMENT_COMPLETE, EVENT_TYPES, IDENTIFICATION_COMPLETE,
    TEST_EVENT, VERIFICATION_COMPLETE,
};
pub use galleries::{palm_side, palm_type, remove_gallery, Galleries, GalleryCheck};
pub use hub::DeviceHub;
pub use idempotency::{Begun, Idempotency, KEY_TTL_SECS};
pub use keys::{key_path, SigningKey};
pub use operators::{ClientSecret, Operators};
pub use retention::{
    cutoff as retention_cutoff, purge_past_retention, run as run_retention, PURGE_BATCH,
};
pub use secrets::{
    constant_time_eq, new_pairing_code, new_secret, new_signing_secret, normalize_pairing_code,
    random_bytes, sha256_hex, CLIENT_SECRET_PREFIX, DEVICE_SECRET_PREFIX, PAIRING_ALPHABET,
    SIGNING_SECRET_PREFIX,
};
pub use sessions::{
    NewOperator, OperatorSession, Sessions, SignedIn, MIN_PASSWORD_CHARS, SESSION_PREFIX,
    SESSION_TTL, SIGN_IN_LIMIT, SIGN_IN_WINDOW,
};
pub use settings::{
    engine_settings, stored_settings, InForce, Settings, SettingsUpdate, TenantSettings,
    MAX_RETENTION_DAYS,
};
pub use sweeper::run as run_sweeper;
pub use tokens::{
    parse_scopes, scope_text, Caller, Grant, GrantRequest, Tokens, AUDIENCE, TOKEN_TYPE,
};
pub use users::{EnrolledUser, Users};
pub use validate::{Listing, Page};
pub use vault::{default_master_key_path, unlock, MasterKey, Unreadable, Vault, VaultError};
pub use wakeups::Wakeups;
pub use webhooks::endpoints::{check_endpoint, check_literal_host, is_global};
pub use webhooks::{
    parse_delivery_id, DeliveryLog, NewWebhook, Recovered, Recovery, SecretRotation,
    SubscriptionSecret, WebhookChanges, Webhooks,
};

/// How the services behave: lifetimes, the token issuer, what webhooks may call.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// `iss` claim of access tokens.
    pub issuer: String,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of challenges.
    pub challenge_ttl: Duration,
    /// Lifetime of pairing codes.
    pub pairing_code_ttl: Duration,
    /// Whether webhook endpoints may use plain http and non-global addresses.
    pub allow_private_webhooks: bool,
    /// When the galleries build and use their graph indexes.
    pub index_policy: palmlink_engine::IndexPolicy,
}

impl Default for DomainConfig {
    /// The contract's lifetimes: tokens 1 h, challenges 1 h, pairing codes 30 min;
    /// webhooks only to public https endpoints.
    fn default() -> DomainConfig {
        DomainConfig {
            issuer: "palmlink".to_owned(),
            token_ttl: Duration::from_secs(3600),
            challenge_ttl: Duration::from_secs(3600),
            pairing_code_ttl: Duration::from_secs(1800),
            allow_private_webhooks: false,
            index_policy: palmlink_engine::IndexPolicy::default(),
        }
    }
}

/// What the services are built from.
pub struct Parts {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Where this node keeps its galleries (`<data>/galleries`).
    pub galleries_dir: std::path::PathBuf,
    /// The master key, checked against the store.
    pub master_key: MasterKey,
    /// Where time is read.
    pub clock: Arc<dyn Clock>,
    /// The key that signs access tokens.
    pub signing_key: SigningKey,
    /// Turns true when the service begins to stop (long polls end early).
    pub stopping: watch::Receiver<bool>,
}

/// Every service of the domain, built once and shared.
pub struct Domain {
    /// Tokens: the grant and the authentication of callers.
    pub tokens: Tokens,
    /// Tenants and OAuth clients.
    pub operators: Operators,
    /// The console's operators and their sessions.
    pub sessions: Sessions,
    /// Scanners.
    pub devices: Devices,
    /// Challenges.
    pub challenges: Arc<Challenges>,
    /// Captures and the decisions they bring.
    pub captures: Captures,
    /// Enrolled users.
    pub users: Users,
    /// Matching settings.
    pub settings: Arc<Settings>,
    /// Webhook subscriptions.
    pub webhooks: Webhooks,
    /// Idempotency keys.
    pub idempotency: Idempotency,
    /// The audit log.
    pub audit: Audit,
    /// Export and import of enrolled users.
    pub bulk: Bulk,
    /// The tenants' galleries.
    pub galleries: Arc<Galleries>,
    /// Seals and opens templates.
    pub vault: Arc<Vault>,
    /// Rings when events were written.
    pub outbox: Arc<OutboxBell>,
    /// Wakes the waiters of this node and signals the other nodes.
    pub wakeups: Arc<Wakeups>,
    /// The store the services share.
    pub store: Arc<dyn Store>,
    /// The clock the services share.
    pub clock: Arc<dyn Clock>,
}

impl Domain {
    /// Builds the services from their parts.
    pub fn new(parts: Parts, config: &DomainConfig) -> Domain {
        let Parts {
            store,
            galleries_dir,
            master_key,
            clock,
            signing_key,
            stopping,
        } = parts;
        let vault = Arc::new(Vault::new(master_key, store.clone(), clock.clone()));
        let galleries = Arc::new(Galleries::new(
            galleries_dir,
            config.index_policy,
            store.clone(),
            vault.clone(),
        ));
        let hub = Arc::new(DeviceHub::default());
        let outbox = Arc::new(OutboxBell::default());
        let wakeups = Arc::new(Wakeups::new(store.clone(), hub.clone(), outbox.clone()));
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let challenges = Arc::new(Challenges::new(
            store.clone(),
            clock.clone(),
            hub,
            wakeups.clone(),
            secs(config.challenge_ttl),
            stopping,
        ));
        let settings = Arc::new(Settings::new(store.clone(), clock.clone()));
        Domain {
            tokens: Tokens::new(
                store.clone(),
                clock.clone(),
                signing_key,
                config.issuer.clone(),
                secs(config.token_ttl),
            ),
            operators: Operators::new(store.clone(), clock.clone()),
            sessions: Sessions::new(store.clone(), clock.clone()),
            devices: Devices::new(
                store.clone(),
                clock.clone(),
                wakeups.clone(),
                secs(config.pairing_code_ttl),
            ),
            captures: Captures::new(
                store.clone(),
                clock.clone(),
                galleries.clone(),
                vault.clone(),
                challenges.clone(),
                settings.clone(),
                wakeups.clone(),
            ),
            challenges,
            users: Users::new(
                store.clone(),
                clock.clone(),
                galleries.clone(),
                wakeups.clone(),
            ),
            settings,
            webhooks: Webhooks::new(
                store.clone(),
                clock.clone(),
                wakeups.clone(),
                config.allow_private_webhooks,
            ),
            idempotency: Idempotency::new(store.clone(), clock.clone()),
            audit: Audit::new(store.clone()),
            bulk: Bulk::new(store.clone(), vault.clone(), clock.clone(), wakeups.clone()),
            galleries,
            vault,
            outbox,
            wakeups,
            store,
            clock,
        }
    }
}
