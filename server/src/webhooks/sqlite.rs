//! [`WebhookStore`] on the service's SQLite database (portable SQL, `$n` placeholders).

use std::sync::Arc;

use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use uuid::Uuid;

use crate::store::sqlite_db::{SqliteDb, WriteQuery as _};

use super::store::{
    status, Attempt, Delivery, DeliveryNext, StoreError, StoreResult, Subscription,
    SubscriptionNext, WebhookStore,
};

/// Webhook storage on the service's SQLite database (sharing its read pool and writer).
#[derive(Clone, Debug)]
pub(crate) struct SqliteWebhookStore {
    db: Arc<SqliteDb>,
}

impl SqliteWebhookStore {
    /// Storage on this database (the schema must already be migrated).
    #[cfg(test)]
    pub(crate) fn new(db: Arc<SqliteDb>) -> SqliteWebhookStore {
        SqliteWebhookStore { db }
    }

    /// Opens the service database at `url` (already migrated by the service's store).
    pub(crate) async fn open(url: &str) -> StoreResult<SqliteWebhookStore> {
        Ok(SqliteWebhookStore {
            db: SqliteDb::open(url).await?,
        })
    }
}

fn db(err: impl std::fmt::Display) -> StoreError {
    StoreError::Database(err.to_string())
}

fn uuid(row: &SqliteRow, col: &str) -> StoreResult<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::parse_str(&s).map_err(db)
}

/// Turns a unique violation into a message naming the duplicated field.
fn conflict(err: sqlx::Error) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(msg) if msg.contains("endpoint") => {
            StoreError::Conflict("a webhook with this endpoint already exists".to_owned())
        }
        StoreError::Conflict(msg) if msg.contains("name") => {
            StoreError::Conflict("a webhook with this name already exists".to_owned())
        }
        other => other,
    }
}

const HOOK_COLS: &str =
    "id, tenant_id, name, events, endpoint, api_key, secret, old_secret, old_secret_expires_at, \
     active, disabled_reason, failing_since, created_at, updated_at";

fn hook_row(row: &SqliteRow) -> StoreResult<Subscription> {
    let events: String = row.try_get("events")?;
    Ok(Subscription {
        id: uuid(row, "id")?,
        tenant_id: uuid(row, "tenant_id")?,
        name: row.try_get("name")?,
        events: serde_json::from_str(&events).map_err(db)?,
        endpoint: row.try_get("endpoint")?,
        api_key: row.try_get("api_key")?,
        secret: row.try_get("secret")?,
        old_secret: row.try_get("old_secret")?,
        old_secret_expires_at: row.try_get("old_secret_expires_at")?,
        active: row.try_get::<i64, _>("active")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        failing_since: row.try_get("failing_since")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const DELIVERY_COLS: &str =
    "id, webhook_id, tenant_id, event_id, event_type, payload, status, attempts, cycle_start, \
     next_attempt_at, last_status_code, last_error, created_at, updated_at, delivered_at";

fn delivery_row(row: &SqliteRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: uuid(row, "id")?,
        webhook_id: uuid(row, "webhook_id")?,
        tenant_id: uuid(row, "tenant_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        cycle_start: row.try_get("cycle_start")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        delivered_at: row.try_get("delivered_at")?,
    })
}

fn events_json(events: &[String]) -> StoreResult<String> {
    serde_json::to_string(events).map_err(db)
}

#[async_trait::async_trait]
impl WebhookStore for SqliteWebhookStore {
    async fn create_webhook(&self, hook: &Subscription) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO webhooks ({HOOK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(hook.id.to_string())
        .bind(hook.tenant_id.to_string())
        .bind(&hook.name)
        .bind(events_json(&hook.events)?)
        .bind(&hook.endpoint)
        .bind(&hook.api_key)
        .bind(&hook.secret)
        .bind(&hook.old_secret)
        .bind(hook.old_secret_expires_at)
        .bind(i64::from(hook.active))
        .bind(&hook.disabled_reason)
        .bind(hook.failing_since)
        .bind(hook.created_at)
        .bind(hook.updated_at)
        .write(&self.db)
        .await
        .map_err(conflict)?;
        Ok(())
    }

    async fn get_webhook(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Subscription>> {
        let row = sqlx::query(&format!(
            "SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(hook_row).transpose()
    }

    async fn list_webhooks(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Subscription>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {HOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(tenant.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1")
            .bind(tenant.to_string())
            .fetch_one(self.db.pool())
            .await?;
        Ok((
            rows.iter().map(hook_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    async fn update_webhook(&self, hook: &Subscription) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET name = $1, events = $2, endpoint = $3, api_key = $4, secret = $5, old_secret = $6, \
             old_secret_expires_at = $7, active = $8, disabled_reason = $9, failing_since = $10, updated_at = $11 \
             WHERE tenant_id = $12 AND id = $13",
        )
        .bind(&hook.name)
        .bind(events_json(&hook.events)?)
        .bind(&hook.endpoint)
        .bind(&hook.api_key)
        .bind(&hook.secret)
        .bind(&hook.old_secret)
        .bind(hook.old_secret_expires_at)
        .bind(i64::from(hook.active))
        .bind(&hook.disabled_reason)
        .bind(hook.failing_since)
        .bind(hook.updated_at)
        .bind(hook.tenant_id.to_string())
        .bind(hook.id.to_string())
        .write(&self.db)
        .await
        .map_err(conflict)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_webhook(&self, tenant: Uuid, id: Uuid) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE webhook_id = $1)")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn fan_out(&self, limit: i64, now: i64) -> StoreResult<usize> {
        // Only tenants with webhooks have events to take; the others' events stay in the
        // outbox untouched. Reads first, so an idle pass takes no write lock.
        let tenants: Vec<String> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM webhooks")
            .fetch_all(self.db.pool())
            .await?;
        let mut taken = 0usize;
        for tenant_id in tenants {
            let events = sqlx::query(
                "SELECT event_id, event_type, payload, occurred_at FROM outbox_events \
                 WHERE tenant_id = $1 AND dispatched_at IS NULL ORDER BY occurred_at, event_id LIMIT $2",
            )
            .bind(&tenant_id)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
            if events.is_empty() {
                continue;
            }
            let mut tx = self.db.begin().await?;
            let hooks = sqlx::query(
                "SELECT id, events, created_at FROM webhooks WHERE tenant_id = $1 AND active = 1",
            )
            .bind(&tenant_id)
            .fetch_all(&mut *tx)
            .await?;
            let mut wanted = Vec::with_capacity(hooks.len());
            for hook in &hooks {
                let id: String = hook.try_get("id")?;
                let events: String = hook.try_get("events")?;
                let keys: Vec<String> = serde_json::from_str(&events).map_err(db)?;
                let created_at: i64 = hook.try_get("created_at")?;
                wanted.push((id, keys, created_at));
            }
            for event in &events {
                let event_id: String = event.try_get("event_id")?;
                let event_type: String = event.try_get("event_type")?;
                let payload: String = event.try_get("payload")?;
                let occurred_at: i64 = event.try_get("occurred_at")?;
                // A webhook receives the events that occur once it exists.
                for (webhook_id, keys, created_at) in &wanted {
                    if *created_at > occurred_at || !keys.contains(&event_type) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, payload, \
                         status, attempts, cycle_start, next_attempt_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $8, $8) \
                         ON CONFLICT (webhook_id, event_id) DO NOTHING",
                    )
                    .bind(Uuid::new_v4().to_string())
                    .bind(webhook_id)
                    .bind(&tenant_id)
                    .bind(&event_id)
                    .bind(&event_type)
                    .bind(&payload)
                    .bind(status::PENDING)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE outbox_events SET dispatched_at = $1 WHERE event_id = $2 AND dispatched_at IS NULL",
                )
                .bind(now)
                .bind(&event_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            taken += events.len();
        }
        Ok(taken)
    }

    async fn insert_delivery(&self, d: &Delivery) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(d.id.to_string())
        .bind(d.webhook_id.to_string())
        .bind(d.tenant_id.to_string())
        .bind(&d.event_id)
        .bind(&d.event_type)
        .bind(&d.payload)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.cycle_start)
        .bind(d.next_attempt_at)
        .bind(d.last_status_code)
        .bind(&d.last_error)
        .bind(d.created_at)
        .bind(d.updated_at)
        .bind(d.delivered_at)
        .write(&self.db)
        .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<(Delivery, Subscription)>> {
        const DUE: &str = "SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.status = $1 AND d.next_attempt_at <= $2 AND (d.lease_until IS NULL OR d.lease_until <= $2) \
             AND w.active = 1 ORDER BY d.next_attempt_at, d.created_at LIMIT $3";
        // Look without a write lock first: most passes find nothing due.
        let any = sqlx::query(DUE)
            .bind(status::PENDING)
            .bind(now)
            .bind(1i64)
            .fetch_optional(self.db.pool())
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let rows = sqlx::query(DUE)
            .bind(status::PENDING)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            sqlx::query("UPDATE webhook_deliveries SET lease_until = $1 WHERE id = $2")
                .bind(lease_until)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let d = sqlx::query(&format!(
                "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE id = $1"
            ))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let delivery = delivery_row(&d)?;
            let h = sqlx::query(&format!("SELECT {HOOK_COLS} FROM webhooks WHERE id = $1"))
                .bind(delivery.webhook_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            out.push((delivery, hook_row(&h)?));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release_leases(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
        )
        .write(&self.db)
        .await?;
        Ok(done.rows_affected())
    }

    async fn release_lease(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE webhook_deliveries SET lease_until = NULL WHERE id = $1")
            .bind(id.to_string())
            .write(&self.db)
            .await?;
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<i64>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until > d.next_attempt_at \
             THEN d.lease_until ELSE d.next_attempt_at END) \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.status = $1 AND w.active = 1",
        )
        .bind(status::PENDING)
        .fetch_one(self.db.pool())
        .await?;
        Ok(next)
    }

    async fn record_attempt(
        &self,
        a: &Attempt,
        next: &DeliveryNext,
        hook: &SubscriptionNext,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(a.delivery_id.to_string())
        .bind(a.attempt)
        .bind(a.attempted_at)
        .bind(a.status_code)
        .bind(a.latency_ms)
        .bind(&a.error)
        .execute(&mut *tx)
        .await?;
        let now = a.attempted_at + a.latency_ms * 1000;
        let (state, next_at, delivered_at) = match next {
            DeliveryNext::Succeeded => (status::SUCCEEDED, now, Some(now)),
            DeliveryNext::RetryAt(at) => (status::PENDING, *at, None),
            DeliveryNext::Failed => (status::FAILED, now, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, lease_until = NULL, \
             last_status_code = $4, last_error = $5, updated_at = $6, delivered_at = COALESCE($7, delivered_at) \
             WHERE id = $8",
        )
        .bind(state)
        .bind(a.attempt)
        .bind(next_at)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(now)
        .bind(delivered_at)
        .bind(a.delivery_id.to_string())
        .execute(&mut *tx)
        .await?;
        let webhook_id: Option<String> =
            sqlx::query_scalar("SELECT webhook_id FROM webhook_deliveries WHERE id = $1")
                .bind(a.delivery_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(webhook_id) = webhook_id {
            let query = match hook {
                SubscriptionNext::Healthy => {
                    sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                        .bind(webhook_id)
                }
                SubscriptionNext::Failing => {
                    sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL")
                        .bind(now)
                        .bind(webhook_id)
                }
                SubscriptionNext::Disable(reason) => sqlx::query(
                    "UPDATE webhooks SET active = 0, disabled_reason = $1, updated_at = $2 WHERE id = $3 AND active = 1",
                )
                .bind(reason.clone())
                .bind(now)
                .bind(webhook_id),
            };
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Delivery>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        ))
        .bind(webhook.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(webhook.to_string())
                .fetch_one(self.db.pool())
                .await?;
        Ok((
            rows.iter().map(delivery_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    async fn list_attempts(&self, deliveries: &[Uuid]) -> StoreResult<Vec<Attempt>> {
        let mut out = Vec::new();
        for id in deliveries {
            let rows = sqlx::query(
                "SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, error FROM webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY attempt",
            )
            .bind(id.to_string())
            .fetch_all(self.db.pool())
            .await?;
            for row in &rows {
                out.push(Attempt {
                    delivery_id: uuid(row, "delivery_id")?,
                    attempt: row.try_get("attempt")?,
                    attempted_at: row.try_get("attempted_at")?,
                    status_code: row.try_get("status_code")?,
                    latency_ms: row.try_get("latency_ms")?,
                    error: row.try_get("error")?,
                });
            }
        }
        Ok(out)
    }

    async fn get_delivery(&self, webhook: Uuid, id: Uuid) -> StoreResult<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
        ))
        .bind(webhook.to_string())
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(delivery_row).transpose()
    }

    async fn requeue(
        &self,
        webhook: Uuid,
        only: Option<Uuid>,
        since: Option<i64>,
        now: i64,
    ) -> StoreResult<u64> {
        let done = match only {
            Some(id) => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, next_attempt_at = $2, \
                     lease_until = NULL, updated_at = $2 WHERE webhook_id = $3 AND id = $4",
                )
                .bind(status::PENDING)
                .bind(now)
                .bind(webhook.to_string())
                .bind(id.to_string())
                .write(&self.db)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, next_attempt_at = $2, \
                     lease_until = NULL, updated_at = $2 WHERE webhook_id = $3 AND status = $4 AND created_at >= $5",
                )
                .bind(status::PENDING)
                .bind(now)
                .bind(webhook.to_string())
                .bind(status::FAILED)
                .bind(since.unwrap_or(i64::MIN))
                .write(&self.db)
                .await?
            }
        };
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
impl SqliteWebhookStore {
    /// Writes an outbox event as the service does.
    pub(crate) async fn insert_outbox_for_tests(
        &self,
        event_id: &str,
        tenant: Uuid,
        event_type: &str,
        payload: &str,
    ) {
        sqlx::query(
            "INSERT INTO outbox_events (event_id, tenant_id, event_type, payload, occurred_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event_id)
        .bind(tenant.to_string())
        .bind(event_type)
        .bind(payload)
        .bind(chrono::Utc::now().timestamp_micros())
        .write(&self.db)
        .await
        .unwrap();
    }
}
