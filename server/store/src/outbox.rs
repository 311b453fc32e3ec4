//! The outbox: events written with the state change that caused them.

use serde_json::Value;
use uuid::Uuid;

use crate::StoreResult;

/// An event written durably with the state change that caused it, for webhook delivery.
///
/// Table `outbox_events`: `event_id` (TEXT, primary key, `evt_<32 hex>`), `tenant_id` (TEXT),
/// `event_type` (TEXT), `payload` (TEXT: the whole JSON body to deliver, with `event_id`,
/// `event_type`, `tenant_id`, `timestamp` and `data`), `occurred_at` (BIGINT, microseconds),
/// `dispatched_at` (BIGINT, NULL until fanned out to the tenant's subscriptions; see
/// [`WebhookStore::fan_out`](crate::WebhookStore::fan_out)).
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    /// `evt_<32 hex>`.
    pub event_id: String,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// e.g. `enrollment.complete`.
    pub event_type: String,
    /// The delivery body.
    pub payload: Value,
    /// Event time.
    pub occurred_at: i64,
    /// When it was fanned out, if it has been.
    pub dispatched_at: Option<i64>,
}

/// The outbox. Most events are written by the state change that causes them (pairing,
/// completing a challenge); this trait reads them and appends events that stand alone.
#[async_trait::async_trait]
pub trait OutboxStore: Send + Sync {
    /// Appends an event that records no state change of its own.
    async fn append_event(&self, event: &OutboxEvent) -> StoreResult<()>;
    /// Events not yet fanned out, oldest first.
    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>>;
    /// One event by id.
    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>>;
}
