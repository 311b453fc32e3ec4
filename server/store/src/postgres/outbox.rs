//! [`OutboxStore`] on PostgreSQL, and the insert every event-writing change runs.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::sql::{execute, fetch_all, fetch_optional, get, json_column, parsed};
use super::PostgresStore;
use crate::{OutboxEvent, OutboxStore, StoreResult};

/// The columns [`event_row`] reads.
macro_rules! event_cols {
    () => {
        "event_id, tenant_id, event_type, payload, occurred_at, dispatched_at"
    };
}

fn event_row(row: &Row) -> StoreResult<OutboxEvent> {
    Ok(OutboxEvent {
        event_id: get(row, "event_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        event_type: get(row, "event_type")?,
        payload: json_column(row, "payload")?.unwrap_or(Value::Null),
        occurred_at: get(row, "occurred_at")?,
        dispatched_at: get(row, "dispatched_at")?,
    })
}

/// Writes `event` into the outbox, inside the caller's transaction.
pub(super) async fn insert_event(c: &impl GenericClient, event: &OutboxEvent) -> StoreResult<()> {
    execute(
        c,
        concat!(
            "INSERT INTO outbox_events (",
            event_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, NULL)"
        ),
        &[
            &event.event_id,
            &event.tenant_id.to_string(),
            &event.event_type,
            &event.payload.to_string(),
            &event.occurred_at,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl OutboxStore for PostgresStore {
    async fn append_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        insert_event(&self.pool.get().await?, event).await
    }

    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>> {
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                event_cols!(),
                " FROM outbox_events WHERE dispatched_at IS NULL \
                 ORDER BY occurred_at, event_id LIMIT $1"
            ),
            &[&limit],
            event_row,
        )
        .await
    }

    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                event_cols!(),
                " FROM outbox_events WHERE event_id = $1"
            ),
            &[&event_id],
            event_row,
        )
        .await
    }
}
