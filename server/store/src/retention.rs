//! Retention: a tenant's finished work deleted once it is older than the tenant's
//! `retention_days` (see [`TrustPolicy`](crate::TrustPolicy)).
//!
//! What goes: challenges that finished (completed, failed, cancelled, expired) before the
//! cutoff, outbox events that occurred before it, and webhook deliveries (with their
//! attempts) that were last touched before it and are no longer pending. What stays: the
//! audit log (its entries name resources by id, never by a key into these tables, so every
//! chain still verifies), pending challenges, events with a delivery still pending or in
//! flight, events not yet fanned out to a subscription that wants them, and everything of
//! tenants without a retention period.

use uuid::Uuid;

use crate::StoreResult;

/// Rows one purge step deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Finished challenges.
    pub challenges: u64,
    /// Outbox events.
    pub events: u64,
    /// Webhook deliveries (their attempts go with them, uncounted).
    pub deliveries: u64,
}

impl Purged {
    /// Rows of every kind.
    pub fn total(&self) -> u64 {
        self.challenges + self.events + self.deliveries
    }

    /// Whether some kind had a whole batch of `limit` rows (so more may be left).
    pub fn filled(&self, limit: i64) -> bool {
        let limit = u64::try_from(limit).unwrap_or(0);
        self.challenges >= limit || self.events >= limit || self.deliveries >= limit
    }
}

impl std::ops::AddAssign for Purged {
    fn add_assign(&mut self, other: Purged) {
        self.challenges += other.challenges;
        self.events += other.events;
        self.deliveries += other.deliveries;
    }
}

/// Deleting finished work past its tenant's retention period.
#[async_trait::async_trait]
pub trait RetentionStore: Send + Sync {
    /// The tenants that have a retention period, with its length in days.
    async fn retention_periods(&self) -> StoreResult<Vec<(Uuid, u32)>>;
    /// Deletes up to `limit` rows of each kind (challenges, events, deliveries) of the
    /// tenant that are older than `cutoff` (microseconds) and may go (see the module), each
    /// kind in a short transaction of its own; returns how many went.
    ///
    /// Concurrency: any number of purges may run at once, on one node or several. A row is
    /// deleted by one of them and counted once: on PostgreSQL each purge locks the rows it
    /// takes (`FOR UPDATE SKIP LOCKED`), so another skips them rather than waiting; a row
    /// that changes meanwhile (a delivery requeued) is checked again once locked.
    async fn purge_before(&self, tenant: Uuid, cutoff: i64, limit: i64) -> StoreResult<Purged>;
}

/// Tenant ids and retention days as stored, those that read as such.
pub(crate) fn periods(rows: Vec<(String, i64)>) -> Vec<(Uuid, u32)> {
    rows.into_iter()
        .filter_map(|(id, days)| {
            Some((
                id.parse().ok()?,
                u32::try_from(days).ok().filter(|d| *d >= 1)?,
            ))
        })
        .collect()
}

/// The rows of tenant `$1` older than `$2` that may go, up to `$3` of them, oldest first:
/// what each backend deletes (PostgreSQL locking them as it reads).
macro_rules! purgeable {
    (challenges) => {
        "SELECT id FROM challenges WHERE tenant_id = $1 AND created_at < $2 \
         AND status <> 'pending' AND finished_at < $2 ORDER BY created_at LIMIT $3"
    };
    // An event not fanned out yet goes only when no subscription of its tenant existed when
    // it occurred (none will ever want it); one with a delivery still pending stays. Its
    // deliveries are looked up by (subscription, event): `status || ''` keeps SQLite from
    // reading every pending delivery by the status index instead.
    (events) => {
        "SELECT e.event_id FROM outbox_events e WHERE e.tenant_id = $1 AND e.occurred_at < $2 \
         AND (e.dispatched_at IS NOT NULL OR NOT EXISTS (SELECT 1 FROM webhooks w \
              WHERE w.tenant_id = e.tenant_id AND w.created_at <= e.occurred_at)) \
         AND NOT EXISTS (SELECT 1 FROM webhooks w JOIN webhook_deliveries d \
              ON d.webhook_id = w.id AND d.event_id = e.event_id \
              WHERE w.tenant_id = e.tenant_id AND d.status || '' = 'pending') \
         ORDER BY e.occurred_at LIMIT $3"
    };
    // Deliveries by subscription and creation (the index they are read by: a delivery was
    // created before it was last touched), in no particular order, so that a batch reads
    // no more rows than it takes besides the old ones that stay.
    (deliveries) => {
        "SELECT d.id FROM webhooks w JOIN webhook_deliveries d ON d.webhook_id = w.id \
         WHERE w.tenant_id = $1 AND d.created_at < $2 AND d.updated_at < $2 \
         AND d.status <> 'pending' LIMIT $3"
    };
}
pub(crate) use purgeable;
