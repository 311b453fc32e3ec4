//! [`OutboxStore`] on SQLite, and the insert every event-writing change runs.

use rusqlite::{params, Connection, Row};
use serde_json::Value;

use super::sql::{execute, fetch_all, fetch_optional, json_column, parsed};
use super::SqliteStore;
use crate::{OutboxEvent, OutboxStore, StoreResult};

/// The columns [`event_row`] reads.
macro_rules! event_cols {
    () => {
        "event_id, tenant_id, event_type, payload, occurred_at, dispatched_at"
    };
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<OutboxEvent> {
    Ok(OutboxEvent {
        event_id: row.get("event_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        event_type: row.get("event_type")?,
        payload: json_column(row, "payload")?.unwrap_or(Value::Null),
        occurred_at: row.get("occurred_at")?,
        dispatched_at: row.get("dispatched_at")?,
    })
}

/// Writes `event` into the outbox, inside the caller's transaction.
pub(super) fn insert_event(c: &Connection, event: &OutboxEvent) -> rusqlite::Result<()> {
    execute(
        c,
        concat!(
            "INSERT INTO outbox_events (",
            event_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, NULL)"
        ),
        params![
            event.event_id,
            event.tenant_id.to_string(),
            event.event_type,
            event.payload.to_string(),
            event.occurred_at,
        ],
    )?;
    Ok(())
}

#[async_trait::async_trait]
impl OutboxStore for SqliteStore {
    async fn append_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        self.db.write(|c| insert_event(c, event)).await?;
        Ok(())
    }

    async fn undispatched_events(&self, limit: i64) -> StoreResult<Vec<OutboxEvent>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    event_cols!(),
                    " FROM outbox_events WHERE dispatched_at IS NULL \
                     ORDER BY occurred_at, event_id LIMIT $1"
                ),
                [limit],
                event_row,
            )
        })?)
    }

    async fn get_event(&self, event_id: &str) -> StoreResult<Option<OutboxEvent>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    event_cols!(),
                    " FROM outbox_events WHERE event_id = $1"
                ),
                [event_id],
                event_row,
            )
        })?)
    }
}
