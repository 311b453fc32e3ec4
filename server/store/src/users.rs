//! Enrolled people and their palms.

use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, StoreResult};

named_values! {
    /// Which palm a template is of.
    pub enum PalmType ("palm type") {
        /// The left palm.
        Left = "left",
        /// The right palm.
        Right = "right",
    }
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

/// One enrolled palm: the record of a template (the sealed template itself is read through
/// [`TemplateStore`](crate::TemplateStore)).
#[derive(Clone, Debug, PartialEq)]
pub struct Palm {
    /// `feature_id`, also stored in the gallery row.
    pub feature_id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Owning user.
    pub user_id: Uuid,
    /// Which palm.
    pub palm_type: PalmType,
    /// Enrollment time.
    pub enrolled_at: i64,
    /// Capture vendor.
    pub vendor: String,
    /// Challenge that enrolled it.
    pub challenge_id: Uuid,
}

/// What erasing a user removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Erasure {
    /// The palms deleted (none when the user had none).
    pub palms: Vec<Palm>,
    /// The tenant's template log head after the erasure's entries.
    pub log_head: u64,
}

/// Storage of users and their palms.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// The user with this external id, created if missing.
    ///
    /// Concurrency: two callers at once get the same user (an insert that does nothing on
    /// the unique `(tenant, external_user_id)`, then a read).
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
    /// Users of the tenant by internal id (unknown ids are left out).
    async fn get_users_by_ids(&self, tenant: Uuid, ids: &[Uuid]) -> StoreResult<Vec<User>>;
    /// A page of users holding at least one palm, oldest first, and the total.
    async fn list_users(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<User>, i64)>;
    /// A user's enrolled palms, by palm type.
    async fn list_palms(&self, tenant: Uuid, user_id: Uuid) -> StoreResult<Vec<Palm>>;
    /// Every palm of a tenant.
    async fn all_palms(&self, tenant: Uuid) -> StoreResult<Vec<Palm>>;
    /// Deletes a user and its palms (their sealed templates with them) in one transaction
    /// that also appends an `erase` entry per palm to the tenant's template log; returns the
    /// palms deleted and the log's last sequence after it.
    ///
    /// Concurrency: an enrollment committing at the same moment either lands before (and
    /// its palm is deleted and returned) or after (and finds a new user); log sequences are
    /// drawn under the tenant's log head, as [`TemplateStore`](crate::TemplateStore) says.
    /// The audit entry is written with the erasure (when there was a user to erase).
    async fn delete_user(
        &self,
        tenant: Uuid,
        user_id: Uuid,
        now: i64,
        audit: &AuditRecord,
    ) -> StoreResult<Erasure>;
}

/// A user and their palms from the rows of a join of users with their palms (one row per
/// palm, or one row without a palm): `None` when there is no row.
pub(crate) fn user_with_palms(rows: Vec<(User, Option<Palm>)>) -> Option<(User, Vec<Palm>)> {
    let mut rows = rows.into_iter();
    let (user, first) = rows.next()?;
    let palms = first
        .into_iter()
        .chain(rows.filter_map(|(_, p)| p))
        .collect();
    Some((user, palms))
}
