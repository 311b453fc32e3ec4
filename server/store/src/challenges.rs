//! Challenges: requests for a scanner to capture, from creation to their end.

use serde_json::Value;
use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, OutboxEvent, Palm, SealedTemplate, StoreResult};

named_values! {
    /// What a challenge asks for.
    pub enum ChallengeKind ("challenge type") {
        /// Store the captured palm(s) for a user.
        Enroll = "enroll",
        /// Compare the capture with one user's enrolled palm(s) (1:1).
        Verify = "verify",
        /// Search the capture in the tenant's gallery (1:N).
        Identify = "identify",
    }
}

named_values! {
    /// Where a challenge is in its life: `pending` until it ends one of four ways.
    pub enum ChallengeStatus ("challenge status") {
        /// Waiting for its capture.
        Pending = "pending",
        /// Captured and decided.
        Completed = "completed",
        /// Ended without a decision (see its [`FailureReason`]).
        Failed = "failed",
        /// Cancelled by the scanner.
        Cancelled = "cancelled",
        /// Its time ran out.
        Expired = "expired",
    }
}

named_values! {
    /// Which palm(s) a challenge wants captured.
    pub enum ChallengePalm ("palm type") {
        /// The left palm.
        Left = "left",
        /// The right palm.
        Right = "right",
        /// One capture of each palm (enrollment of both).
        Both = "both",
        /// One capture of either palm.
        Any = "any",
    }
}

named_values! {
    /// Why a challenge ended without a decision.
    pub enum FailureReason ("failure reason") {
        /// The capture's quality was below the tenant's minimum (or the scanner said so).
        Quality = "quality",
        /// The capture's liveness was below the tenant's minimum.
        Liveness = "liveness",
        /// The enrolled palm matches another user's.
        Duplicate = "duplicate",
        /// The person cancelled at the scanner.
        UserCancelled = "user_cancelled",
        /// The scanner gave up waiting.
        Timeout = "timeout",
        /// The scanner detected a presentation attack.
        Spoof = "spoof",
        /// The scanner was revoked while the challenge was pending.
        DeviceRevoked = "device_revoked",
        /// The challenge's time ran out.
        Expired = "expired",
        /// The palm was enrolled for the user meanwhile.
        AlreadyEnrolled = "already_enrolled",
        /// The user to verify was erased meanwhile.
        UserNotEnrolled = "user_not_enrolled",
        /// The user's template could not be read.
        TemplateMissing = "template_missing",
    }
}

/// A challenge: a request for the scanner to capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Challenge {
    /// `challenge_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// What it asks for.
    pub kind: ChallengeKind,
    /// Device that must capture.
    pub device_id: Uuid,
    /// Its hardware id at creation.
    pub hardware_id: String,
    /// Subject of enroll and verify challenges.
    pub external_user_id: Option<String>,
    /// Which palm(s).
    pub palm_type: ChallengePalm,
    /// Candidates wanted (identify).
    pub top_k: Option<i64>,
    /// Where it is in its life.
    pub status: ChallengeStatus,
    /// Opaque integrator data (JSON object or null).
    pub metadata: Value,
    /// The completed challenge's result: its event's `data`.
    pub result: Option<Value>,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<FailureReason>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// Time it left `pending`.
    pub finished_at: Option<i64>,
    /// The quality and liveness of its captures, once captured:
    /// `[{"palm_type", "quality", "liveness"}]`.
    pub captures: Option<Value>,
    /// The tenant's template log head when it was created: its decision must see at least
    /// that much of the log.
    pub log_position: u64,
}

/// Filters of the challenge list.
#[derive(Clone, Debug, Default)]
pub struct ChallengeFilter {
    /// Only this type.
    pub kind: Option<ChallengeKind>,
    /// Only this status.
    pub status: Option<ChallengeStatus>,
}

/// What an enrollment capture commits.
#[derive(Clone, Debug)]
pub struct EnrollmentCommit {
    /// The challenge being completed.
    pub challenge_id: Uuid,
    /// The palms enrolled, each with its sealed template (in the same order).
    pub palms: Vec<(Palm, SealedTemplate)>,
    /// The challenge result (the event's `data`).
    pub result: Value,
    /// The quality and liveness of the captures.
    pub captures: Value,
    /// The event to publish.
    pub event: OutboxEvent,
    /// Its audit entry.
    pub audit: AuditRecord,
}

/// How one challenge ends (completed with a result, or failed, cancelled or expired) and the
/// event that reports it.
#[derive(Clone, Debug)]
pub struct ChallengeEnd {
    /// The challenge.
    pub id: Uuid,
    /// Its final status.
    pub status: ChallengeStatus,
    /// Why it ended without a decision.
    pub failure_reason: Option<FailureReason>,
    /// The decision (completed challenges).
    pub result: Option<Value>,
    /// The quality and liveness of the captures, when there were captures.
    pub captures: Option<Value>,
    /// The event to publish.
    pub event: OutboxEvent,
    /// Its audit entry.
    pub audit: AuditRecord,
    /// When it ended.
    pub at: i64,
}

/// The event and audit entry of a challenge the store ends by itself.
#[derive(Clone, Debug)]
pub struct EndRecord {
    /// The event to publish.
    pub event: OutboxEvent,
    /// Its audit entry.
    pub audit: AuditRecord,
}

/// What the store writes for each challenge it ends by itself (expiry, a revoked scanner's
/// pending challenges), built from the challenge as it ended.
pub type EndRecords = dyn Fn(&Challenge) -> EndRecord + Send + Sync;

/// Storage of challenges.
#[async_trait::async_trait]
pub trait ChallengeStore: Send + Sync {
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
    /// Completes a pending, unexpired enrollment challenge: palms with their sealed
    /// templates, an `insert` entry per palm in the tenant's template log, the result and
    /// the event, in one transaction. Returns the log's last sequence after it; `Ok(None)`
    /// when the challenge is no longer pending; `Conflict` when the user already has that
    /// palm (nothing is written then).
    ///
    /// Concurrency: two captures of one challenge: exactly one completes it (the update is
    /// conditional on `pending`); two enrollments of the same palm for one user: exactly
    /// one commits (unique `(user, palm_type)`); log sequences as
    /// [`TemplateStore`](crate::TemplateStore) says.
    async fn complete_enrollment(
        &self,
        commit: &EnrollmentCommit,
        now: i64,
    ) -> StoreResult<Option<u64>>;
    /// Completes a pending, unexpired verify or identify challenge with its result,
    /// captures and event (`end.status` is `completed`); `Ok(false)` when it is no longer
    /// pending.
    ///
    /// Concurrency: as [`ChallengeStore::complete_enrollment`]: one capture wins, and the
    /// loser writes no event.
    async fn complete_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool>;
    /// Ends a pending challenge with `end.status` (failed, cancelled, expired), its reason,
    /// its captures if any and its event, in one transaction; false (and nothing written)
    /// when it is no longer pending.
    ///
    /// Concurrency: conditional on `pending`, like the completions: whichever end comes
    /// first is the challenge's end.
    async fn finish_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool>;
    /// Expires every pending challenge past its expiry (reason `expired`, finished at its
    /// expiry), each with the event and audit entry `records` builds for it, in one transaction; returns
    /// how many.
    ///
    /// Concurrency: safe to run on every node at once (conditional on `pending`): each
    /// challenge is expired, and its event written, once.
    async fn expire_challenges(&self, now: i64, records: &EndRecords) -> StoreResult<u64>;
}
