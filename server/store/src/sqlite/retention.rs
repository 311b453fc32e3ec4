//! [`RetentionStore`] on SQLite: each kind deleted in one write of the single writer, a
//! batch at a time, so other writes wait for one batch at most.

use rusqlite::params;
use uuid::Uuid;

use super::sql::{execute, fetch_all};
use super::SqliteStore;
use crate::retention::{periods, purgeable};
use crate::{Purged, RetentionStore, StoreResult};

#[async_trait::async_trait]
impl RetentionStore for SqliteStore {
    async fn retention_periods(&self) -> StoreResult<Vec<(Uuid, u32)>> {
        let rows: Vec<(String, i64)> = self.db.read(|c| {
            fetch_all(
                c,
                "SELECT id, retention_days FROM tenants WHERE retention_days IS NOT NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        Ok(periods(rows))
    }

    async fn purge_before(&self, tenant: Uuid, cutoff: i64, limit: i64) -> StoreResult<Purged> {
        let tenant = tenant.to_string();
        let delete = |sql: &'static str| {
            let tenant = tenant.clone();
            self.db
                .write(move |c| execute(c, sql, params![tenant, cutoff, limit]))
        };
        let challenges = delete(concat!(
            "DELETE FROM challenges WHERE id IN (",
            purgeable!(challenges),
            ")"
        ))
        .await?;
        let events = delete(concat!(
            "DELETE FROM outbox_events WHERE event_id IN (",
            purgeable!(events),
            ")"
        ))
        .await?;
        let deliveries = self
            .db
            .write(|c| {
                let gone: Vec<String> = fetch_all(
                    c,
                    concat!(
                        "DELETE FROM webhook_deliveries WHERE id IN (",
                        purgeable!(deliveries),
                        ") RETURNING id"
                    ),
                    params![tenant, cutoff, limit],
                    |r| r.get(0),
                )?;
                for id in &gone {
                    execute(
                        c,
                        "DELETE FROM webhook_attempts WHERE delivery_id = $1",
                        [id],
                    )?;
                }
                Ok(gone.len())
            })
            .await?;
        Ok(Purged {
            challenges: challenges as u64,
            events: events as u64,
            deliveries: deliveries as u64,
        })
    }
}
