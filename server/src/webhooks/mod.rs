//! Webhooks: subscriptions, and durable, signed, retried delivery of outbox events.
//!
//! - [`events`]: the event keys and their aliases.
//! - [`signing`]: Standard Webhooks secrets and signatures.
//! - [`ssrf`]: which endpoints may be called, checked at creation and at connection time.
//! - [`schedule`]: the retry schedule and `Retry-After`.
//! - [`store`] and [`sqlite`]: subscriptions, deliveries and attempts, behind a trait.
//! - [`delivery`]: the worker that fans events out and sends them.

pub(crate) mod delivery;
pub(crate) mod events;
pub(crate) mod schedule;
pub(crate) mod service;
pub(crate) mod signing;
pub(crate) mod sqlite;
pub(crate) mod ssrf;
pub(crate) mod store;

use std::time::Duration;

pub use schedule::RetrySchedule;

/// How webhooks are delivered; part of the service configuration.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Delays between attempts of a failing delivery.
    pub schedule: RetrySchedule,
    /// Time allowed for a receiver to answer.
    pub timeout: Duration,
    /// Longest sleep of the worker between passes (a safety net beside wake-ups).
    pub poll_interval: Duration,
    /// Requests in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Requests in flight at once to one subscription's endpoint.
    pub per_endpoint: usize,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            max_in_flight: 64,
            per_endpoint: 4,
            disable_after: Duration::from_secs(5 * 86_400),
        }
    }
}

#[cfg(test)]
mod tests;

/// Applies the schema the webhook tables need (outbox and webhooks) to a test database.
#[cfg(test)]
pub(crate) async fn migrate_for_tests(db: &crate::store::sqlite_db::SqliteDb) {
    let outbox = "CREATE TABLE outbox_events (event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, \
                  event_type TEXT NOT NULL, payload TEXT NOT NULL, occurred_at BIGINT NOT NULL, dispatched_at BIGINT);";
    db.write(|c| {
        c.execute_batch(outbox)?;
        c.execute_batch(include_str!("../../migrations/0002_webhooks.sql"))
    })
    .await
    .unwrap();
}

/// Writes an outbox event as the service does.
#[cfg(test)]
pub(crate) async fn insert_outbox_for_tests(
    store: &sqlite::SqliteWebhookStore,
    event_id: &str,
    tenant: uuid::Uuid,
    event_type: &str,
    payload: &str,
) {
    store
        .insert_outbox_for_tests(event_id, tenant, event_type, payload)
        .await;
}

/// The webhook machinery of a configuration, on the service's database.
pub(crate) async fn open(
    config: &crate::config::Config,
) -> anyhow::Result<std::sync::Arc<delivery::Webhooks>> {
    let url = config.effective_database_url();
    let store = sqlite::SqliteWebhookStore::open(&url).await?;
    delivery::Webhooks::new(
        std::sync::Arc::new(store),
        config.webhooks.clone(),
        config.allow_http_webhooks,
    )
    .map_err(anyhow::Error::msg)
}

/// Middleware: after a successful write, wake the delivery worker, since the request may
/// have written an outbox event (the worker also polls, so a missed wake-up only delays).
pub(crate) async fn wake_on_write(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = req.method() != axum::http::Method::GET;
    let response = next.run(req).await;
    if write && response.status().is_success() {
        state.webhooks.notify();
    }
    response
}
