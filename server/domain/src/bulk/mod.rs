//! Moving a tenant's enrolled users between deployments, or in from another vendor: the
//! export of every palm with its template (opened with the tenant's data key) into a gallery
//! file ([`format`]), and the import of such a file.
//!
//! An import is idempotent and resumable: a palm is keyed by `(external_user_id,
//! palm_type)`, and one that the tenant holds already is skipped; the rest are written in
//! batches, each batch's users, palms, sealed templates, template log entries and audit
//! entry in one transaction. A crash loses at most the batch in flight, and running the
//! import again finishes it. The galleries follow the template log as they do for
//! enrollments. The duplicate-identity check of enrollments is not applied: the records were
//! enrolled under the source's own checks, and the import reports how many it added.

mod export;
pub mod format;
mod import;

use std::sync::Arc;

use palmlink_store::Store;
use uuid::Uuid;

pub use export::ExportSummary;
pub use import::{ImportOptions, ImportSummary, InvalidRecord};

use crate::clock::Clock;
use crate::vault::Vault;
use crate::wakeups::Wakeups;

/// What a long operation counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of a file.
    Bytes,
    /// Records (palms).
    Records,
}

/// Where a long operation reports how far it is (a progress bar on a terminal).
pub trait Progress: Send + Sync {
    /// A phase begins: `total` units to go (0 when unknown).
    fn begin(&self, phase: &'static str, total: u64, unit: Unit);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The phase is over.
    fn end(&self);
}

/// Progress that nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &'static str, _: u64, _: Unit) {}
    fn advance(&self, _: u64) {}
    fn end(&self) {}
}

/// Export and import of a tenant's enrolled users (operator commands).
pub struct Bulk {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Wakeups>,
}

impl Bulk {
    /// Export and import on `store`, templates sealed and opened by `vault`.
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        wakeups: Arc<Wakeups>,
    ) -> Bulk {
        Bulk {
            store,
            vault,
            clock,
            wakeups,
        }
    }

    async fn require_tenant(&self, tenant: Uuid) -> crate::DomainResult<()> {
        match self.store.get_tenant(tenant).await? {
            Some(_) => Ok(()),
            None => Err(crate::DomainError::NotFound("tenant")),
        }
    }
}
