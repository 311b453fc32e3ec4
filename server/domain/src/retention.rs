//! Retention: every node, every interval, deletes the finished challenges, events and
//! delivery logs of each tenant that are older than its `retention_days` (the audit log is
//! kept), a bounded batch per statement so that no purge holds the database for long. Safe to
//! run on every node at once: the store hands each row to one purge
//! ([`RetentionStore::purge_before`](palmlink_store::RetentionStore::purge_before)).

use std::sync::Arc;
use std::time::Duration;

use palmlink_store::{Purged, Store, StoreResult};

use crate::clock::{Clock, SECOND};

/// Rows of each kind one statement of a purge deletes at most.
pub const PURGE_BATCH: i64 = 500;
/// A day in microseconds.
const DAY: i64 = 86_400 * SECOND;

/// The instant before which a period of `days` ends at `now`.
pub fn cutoff(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days).saturating_mul(DAY))
}

/// Purges every tenant that has a retention period as of `now`, `batch` rows of each kind
/// at a time, until a batch comes back short; returns what went.
pub async fn purge_past_retention(store: &dyn Store, now: i64, batch: i64) -> StoreResult<Purged> {
    let mut total = Purged::default();
    for (tenant, days) in store.retention_periods().await? {
        let before = cutoff(now, days);
        loop {
            let step = store.purge_before(tenant, before, batch).await?;
            total += step;
            if !step.filled(batch) {
                break;
            }
            // Writers waiting for the database go between two batches.
            tokio::task::yield_now().await;
        }
    }
    Ok(total)
}

/// Runs forever: a purge at once, then one every `interval`.
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match purge_past_retention(store.as_ref(), clock.now(), PURGE_BATCH).await {
            Ok(p) if p.total() == 0 => {}
            Ok(p) => tracing::info!(
                challenges = p.challenges,
                events = p.events,
                deliveries = p.deliveries,
                "purged finished work past its retention period"
            ),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_count_whole_days_back_and_saturate() {
        assert_eq!(cutoff(40 * DAY, 30), 10 * DAY);
        assert_eq!(cutoff(DAY, 1), 0);
        assert_eq!(cutoff(DAY, u32::MAX), DAY - i64::MAX);
        assert_eq!(cutoff(i64::MIN + 1, 1), i64::MIN);
    }
}
