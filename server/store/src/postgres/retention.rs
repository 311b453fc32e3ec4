//! [`RetentionStore`] on PostgreSQL: each kind deleted by one statement that locks the rows
//! it takes with `FOR UPDATE SKIP LOCKED`, so purges on several nodes share the work and none
//! waits for another, and no statement holds more than a batch of row locks.

use uuid::Uuid;

use super::sql::{execute, fetch_all, fetch_value, get};
use super::PostgresStore;
use crate::retention::{periods, purgeable};
use crate::{Purged, RetentionStore, StoreResult};

#[async_trait::async_trait]
impl RetentionStore for PostgresStore {
    async fn retention_periods(&self) -> StoreResult<Vec<(Uuid, u32)>> {
        let rows = fetch_all(
            &self.pool.get().await?,
            "SELECT id, retention_days FROM tenants WHERE retention_days IS NOT NULL",
            &[],
            |r| Ok((get::<String>(r, "id")?, get::<i64>(r, "retention_days")?)),
        )
        .await?;
        Ok(periods(rows))
    }

    async fn purge_before(&self, tenant: Uuid, cutoff: i64, limit: i64) -> StoreResult<Purged> {
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&tenant, &cutoff, &limit];
        let challenges = execute(
            &c,
            concat!(
                "DELETE FROM challenges WHERE id IN (",
                purgeable!(challenges),
                " FOR UPDATE SKIP LOCKED)"
            ),
            &params,
        )
        .await?;
        let events = execute(
            &c,
            concat!(
                "DELETE FROM outbox_events WHERE event_id IN (",
                purgeable!(events),
                " FOR UPDATE OF e SKIP LOCKED)"
            ),
            &params,
        )
        .await?;
        // The deliveries and their attempts in one statement.
        let deliveries: i64 = fetch_value(
            &c,
            concat!(
                "WITH gone AS (DELETE FROM webhook_deliveries WHERE id IN (",
                purgeable!(deliveries),
                " FOR UPDATE OF d SKIP LOCKED) RETURNING id), \
                 attempts AS (DELETE FROM webhook_attempts \
                 WHERE delivery_id IN (SELECT id FROM gone)) \
                 SELECT count(*) FROM gone"
            ),
            &params,
        )
        .await?;
        Ok(Purged {
            challenges,
            events,
            deliveries: u64::try_from(deliveries).unwrap_or(0),
        })
    }
}
