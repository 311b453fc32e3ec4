//! Background upkeep: expires stale challenges and forgets old idempotency keys.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_micros;
use crate::store::Store;

/// Runs forever, one pass every `interval`.
pub(crate) async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_micros();
        match store.expire_challenges(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired pending challenges"),
            Err(e) => tracing::warn!(error = %e, "challenge expiry pass failed"),
        }
        if let Err(e) = store.purge_idempotency(now).await {
            tracing::warn!(error = %e, "idempotency purge failed");
        }
    }
}
