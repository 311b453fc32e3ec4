//! Templates in the database: each palm's template sealed under its tenant's data key (see
//! [`KeyStore`](crate::KeyStore)), and the per-tenant template log that every node's
//! galleries follow.
//!
//! The store never sees a key or a plain template: it keeps the bytes the domain sealed.
//! The log holds ids only.

use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, Palm, PalmType, StoreResult, User};

named_values! {
    /// What a template log entry does to the galleries.
    pub enum LogOp ("template log operation") {
        /// The template of `feature_id` joins the galleries.
        Insert = "insert",
        /// The template of `feature_id` leaves the galleries, leaving no copy.
        Erase = "erase",
    }
}

/// One entry of a tenant's template log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// Position in the tenant's log: 1, 2, 3, ... in commit order.
    pub sequence: u64,
    /// What it does.
    pub op: LogOp,
    /// The template it concerns.
    pub feature_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// Its palm.
    pub palm_type: PalmType,
    /// When it was written.
    pub at: i64,
}

/// An entry of the template log as a catch-up applies it: for an insert whose palm still
/// exists, the palm's sealed template.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedTemplate {
    /// The entry.
    pub entry: LogEntry,
    /// The sealed template of an insert's palm (`None` for an erasure, and for an insert
    /// whose palm was erased since or has no template in the database).
    pub sealed: Option<Vec<u8>>,
}

/// A template as the database keeps it: sealed by the domain.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedTemplate {
    /// The sealed bytes (the domain's format: version, nonce, ciphertext, tag).
    pub sealed: Vec<u8>,
}

/// A palm with its sealed template.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTemplate {
    /// The palm.
    pub palm: Palm,
    /// Its template, sealed.
    pub sealed: Vec<u8>,
}

/// A palm written before templates lived in the database: its template is still only in a
/// gallery, at `row` when the gallery was the one it was enrolled in.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsealedPalm {
    /// The palm.
    pub palm: Palm,
    /// Its row in the gallery of the node that enrolled it.
    pub row: Option<i64>,
}

/// The statement of [`TemplateStore::log_templates_after`], the same on every backend.
pub(crate) const LOG_TEMPLATES_AFTER: &str =
    "SELECT l.sequence, l.op, l.feature_id, l.user_id, l.palm_type, l.at, p.template \
     FROM template_log l LEFT JOIN palms p ON l.op = 'insert' AND p.feature_id = l.feature_id \
     AND p.tenant_id = l.tenant_id \
     WHERE l.tenant_id = $1 AND l.sequence > $2 ORDER BY l.sequence LIMIT $3";

/// One batch of an import of enrolled users: written together or not at all
/// ([`TemplateStore::import_palms`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ImportBatch {
    /// Users the batch creates: no user of the tenant may have their external id yet.
    pub new_users: Vec<User>,
    /// Users that existed when the batch was prepared and receive palms: each must still
    /// exist.
    pub existing_users: Vec<Uuid>,
    /// The palms with their sealed templates: no user may hold a palm of that type yet.
    pub palms: Vec<(Palm, SealedTemplate)>,
    /// The audit entry of the batch.
    pub audit: AuditRecord,
}

/// Storage of sealed templates and the template log.
///
/// Concurrency of the log: a tenant's sequences are drawn from its head row inside the
/// transaction that writes the entries (an update that increments it), so a second
/// writer of the same tenant waits for the first to commit, and sequences are committed in
/// order: a reader that has seen sequence `n` has seen every entry before it.
#[async_trait::async_trait]
pub trait TemplateStore: Send + Sync {
    /// The last sequence of a tenant's log (0 when it has none).
    async fn log_head(&self, tenant: Uuid) -> StoreResult<u64>;
    /// Up to `limit` entries of a tenant's log after sequence `after`, in order.
    async fn log_after(&self, tenant: Uuid, after: u64, limit: i64) -> StoreResult<Vec<LogEntry>>;
    /// Up to `limit` entries of a tenant's log after sequence `after`, in order, each insert
    /// with its palm's sealed template: one ordered read of the log joined to the palms.
    async fn log_templates_after(
        &self,
        tenant: Uuid,
        after: u64,
        limit: i64,
    ) -> StoreResult<Vec<LoggedTemplate>>;

    /// The sealed templates of these features that still exist, with their palms.
    async fn sealed_templates(
        &self,
        tenant: Uuid,
        features: &[Uuid],
    ) -> StoreResult<Vec<StoredTemplate>>;
    /// Up to `limit` sealed templates of a tenant in feature id order, after `after`.
    async fn templates_page(
        &self,
        tenant: Uuid,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<StoredTemplate>>;

    /// The tenant's palms whose template is not in the database yet.
    async fn unsealed_palms(&self, tenant: Uuid) -> StoreResult<Vec<UnsealedPalm>>;
    /// Stores templates of palms that had none, with an `insert` log entry for each, in one
    /// transaction; palms that have one meanwhile are left as they are. Returns the log head
    /// after it.
    async fn seal_palms(
        &self,
        tenant: Uuid,
        templates: &[(Uuid, SealedTemplate)],
        now: i64,
    ) -> StoreResult<u64>;

    /// The tenant's users among these external ids, each with the palm types they hold.
    async fn users_with_palm_types(
        &self,
        tenant: Uuid,
        external_ids: &[String],
    ) -> StoreResult<Vec<(User, Vec<PalmType>)>>;
    /// Writes an import batch in one transaction: its new users, its palms with their
    /// sealed templates, an `insert` log entry per palm and the batch's audit entry.
    /// Returns the log head after it. `Conflict`, with nothing written, when a new user's
    /// external id exists, an existing user is gone, or a user holds a palm of that type.
    ///
    /// Concurrency: an enrollment or erasure of the same users at the same moment either
    /// lands first (and the batch fails with `Conflict`, to be prepared again) or waits for
    /// the batch; log sequences are drawn under the tenant's log head as for enrollments.
    async fn import_palms(&self, tenant: Uuid, batch: &ImportBatch, now: i64) -> StoreResult<u64>;
}
