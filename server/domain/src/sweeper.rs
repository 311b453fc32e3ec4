//! Background upkeep: expires stale challenges (each firing `challenge.failed`), forgets old
//! idempotency keys, expired console sessions and sign-in attempts out of their window. Safe to
//! run on every node at once (each pass is a pair of conditional statements).

use std::sync::Arc;
use std::time::Duration;

use palmlink_store::Store;

use crate::clock::Clock;
use crate::ends::expired_record;

/// Runs forever, one pass every `interval`.
pub async fn run(store: Arc<dyn Store>, clock: Arc<dyn Clock>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = clock.now();
        match store.expire_challenges(now, &expired_record).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired pending challenges"),
            Err(e) => tracing::warn!(error = %e, "challenge expiry pass failed"),
        }
        if let Err(e) = store.purge_idempotency(now).await {
            tracing::warn!(error = %e, "idempotency purge failed");
        }
        if let Err(e) = store
            .purge_console(now, now - crate::sessions::SIGN_IN_WINDOW)
            .await
        {
            tracing::warn!(error = %e, "console session purge failed");
        }
    }
}
