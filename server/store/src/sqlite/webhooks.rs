//! [`WebhookStore`] on SQLite.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::{append as append_audit, audited};
use super::sql::{execute, fetch_all, fetch_optional, json_column, parsed};
use super::SqliteStore;
use crate::webhooks::{events_json, wants, webhook_conflict, AttemptOutcome};
use crate::{
    Attempt, AuditRecord, Delivery, DeliveryNext, DeliveryStatus, StoreResult, Subscription,
    SubscriptionNext, WebhookStore,
};

/// The columns [`hook_row`] reads.
macro_rules! hook_cols {
    () => {
        "id, tenant_id, name, events, endpoint, api_key, secret, old_secret, \
         old_secret_expires_at, active, disabled_reason, failing_since, created_at, updated_at"
    };
}

fn hook_row(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    Ok(Subscription {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        name: row.get("name")?,
        events: json_column(row, "events")?.unwrap_or_default(),
        endpoint: row.get("endpoint")?,
        api_key: row.get("api_key")?,
        secret: row.get("secret")?,
        old_secret: row.get("old_secret")?,
        old_secret_expires_at: row.get("old_secret_expires_at")?,
        active: row.get::<_, i64>("active")? != 0,
        disabled_reason: row.get("disabled_reason")?,
        failing_since: row.get("failing_since")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

/// The columns [`delivery_row`] reads.
macro_rules! delivery_cols {
    () => {
        "id, webhook_id, tenant_id, event_id, event_type, payload, status, attempts, \
         cycle_start, next_attempt_at, last_status_code, last_error, created_at, updated_at, \
         delivered_at"
    };
}

fn delivery_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: parsed(row, "id")?,
        webhook_id: parsed(row, "webhook_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        payload: row.get("payload")?,
        status: parsed(row, "status")?,
        attempts: row.get("attempts")?,
        cycle_start: row.get("cycle_start")?,
        next_attempt_at: row.get("next_attempt_at")?,
        last_status_code: row.get("last_status_code")?,
        last_error: row.get("last_error")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        delivered_at: row.get("delivered_at")?,
    })
}

/// Deliveries of a subscription that are due (pending, past their time, not leased), oldest
/// first.
const DUE: &str = "SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
     WHERE d.status = $1 AND d.next_attempt_at <= $2 AND (d.lease_until IS NULL OR d.lease_until <= $2) \
     AND w.active = 1 ORDER BY d.next_attempt_at, d.created_at LIMIT $3";

#[async_trait::async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<()> {
        let events = events_json(&hook.events)?;
        audited(self, audit, |c| {
            execute(
                c,
                concat!(
                    "INSERT INTO webhooks (",
                    hook_cols!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ),
                params![
                    hook.id.to_string(),
                    hook.tenant_id.to_string(),
                    hook.name,
                    events,
                    hook.endpoint,
                    hook.api_key,
                    hook.secret,
                    hook.old_secret,
                    hook.old_secret_expires_at,
                    i64::from(hook.active),
                    hook.disabled_reason,
                    hook.failing_since,
                    hook.created_at,
                    hook.updated_at,
                ],
            )
        })
        .await
        .map_err(webhook_conflict)?;
        Ok(())
    }

    async fn get_webhook(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Subscription>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    hook_cols!(),
                    " FROM webhooks WHERE tenant_id = $1 AND id = $2"
                ),
                [tenant.to_string(), id.to_string()],
                hook_row,
            )
        })?)
    }

    async fn list_webhooks(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Subscription>, i64)> {
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    hook_cols!(),
                    " FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
                ),
                params![tenant.to_string(), limit, offset],
                hook_row,
            )?;
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1")?
                .query_row([tenant.to_string()], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn update_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<bool> {
        let events = events_json(&hook.events)?;
        let done = audited(self, audit, |c| {
            execute(
                c,
                "UPDATE webhooks SET name = $1, events = $2, endpoint = $3, api_key = $4, \
                     secret = $5, old_secret = $6, old_secret_expires_at = $7, active = $8, \
                     disabled_reason = $9, failing_since = $10, updated_at = $11 \
                     WHERE tenant_id = $12 AND id = $13",
                params![
                    hook.name,
                    events,
                    hook.endpoint,
                    hook.api_key,
                    hook.secret,
                    hook.old_secret,
                    hook.old_secret_expires_at,
                    i64::from(hook.active),
                    hook.disabled_reason,
                    hook.failing_since,
                    hook.updated_at,
                    hook.tenant_id.to_string(),
                    hook.id.to_string(),
                ],
            )
        })
        .await
        .map_err(webhook_conflict)?;
        Ok(done > 0)
    }

    async fn delete_webhook(
        &self,
        tenant: Uuid,
        id: Uuid,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2",
                    [tenant.to_string(), id.to_string()],
                )?;
                if done == 0 {
                    return Ok(false);
                }
                execute(
                    c,
                    "DELETE FROM webhook_attempts WHERE delivery_id IN \
                     (SELECT id FROM webhook_deliveries WHERE webhook_id = $1)",
                    [id.to_string()],
                )?;
                execute(
                    c,
                    "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
                    [id.to_string()],
                )?;
                append_audit(c, audit)?;
                Ok(true)
            })
            .await?)
    }

    async fn fan_out(&self, limit: i64, now: i64) -> StoreResult<usize> {
        // Only tenants with webhooks have events to take; the others' events stay in the
        // outbox untouched. Reads first, so an idle pass takes no write lock.
        let tenants: Vec<String> = self.db.read(|c| {
            fetch_all(c, "SELECT DISTINCT tenant_id FROM webhooks", [], |r| {
                r.get(0)
            })
        })?;
        let mut taken = 0usize;
        for tenant_id in tenants {
            let events: Vec<(String, String, String, i64)> = self.db.read(|c| {
                fetch_all(
                    c,
                    "SELECT event_id, event_type, payload, occurred_at FROM outbox_events \
                     WHERE tenant_id = $1 AND dispatched_at IS NULL \
                     ORDER BY occurred_at, event_id LIMIT $2",
                    params![tenant_id, limit],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
            })?;
            if events.is_empty() {
                continue;
            }
            taken += self
                .db
                .write(|c| {
                    let wanted: Vec<(String, Vec<String>, i64)> = fetch_all(
                        c,
                        "SELECT id, events, created_at FROM webhooks \
                         WHERE tenant_id = $1 AND active = 1",
                        [&tenant_id],
                        |r| {
                            let keys = json_column(r, "events")?.unwrap_or_default();
                            Ok((r.get("id")?, keys, r.get("created_at")?))
                        },
                    )?;
                    let mut took = 0;
                    for (event_id, event_type, payload, occurred_at) in &events {
                        // Taken by this pass unless another took it since it was read.
                        let mine = execute(
                            c,
                            "UPDATE outbox_events SET dispatched_at = $1 \
                             WHERE event_id = $2 AND dispatched_at IS NULL",
                            params![now, event_id],
                        )?;
                        if mine == 0 {
                            continue;
                        }
                        took += 1;
                        for (webhook_id, keys, created_at) in &wanted {
                            if !wants(*created_at, keys, event_type, *occurred_at) {
                                continue;
                            }
                            execute(
                                c,
                                "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, \
                                 event_type, payload, status, attempts, cycle_start, next_attempt_at, \
                                 created_at, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $8, $8) \
                                 ON CONFLICT (webhook_id, event_id) DO NOTHING",
                                params![
                                    Uuid::now_v7().to_string(),
                                    webhook_id,
                                    tenant_id,
                                    event_id,
                                    event_type,
                                    payload,
                                    DeliveryStatus::Pending.as_str(),
                                    now,
                                ],
                            )?;
                        }
                    }
                    Ok(took)
                })
                .await?;
        }
        Ok(taken)
    }

    async fn insert_delivery(&self, d: &Delivery) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    concat!(
                        "INSERT INTO webhook_deliveries (",
                        delivery_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                    ),
                    params![
                        d.id.to_string(),
                        d.webhook_id.to_string(),
                        d.tenant_id.to_string(),
                        d.event_id,
                        d.event_type,
                        d.payload,
                        d.status.as_str(),
                        d.attempts,
                        d.cycle_start,
                        d.next_attempt_at,
                        d.last_status_code,
                        d.last_error,
                        d.created_at,
                        d.updated_at,
                        d.delivered_at,
                    ],
                )
            })
            .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<(Delivery, Subscription)>> {
        // Look without a write lock first: most passes find nothing due.
        let any = self.db.read(|c| {
            fetch_optional(
                c,
                DUE,
                params![DeliveryStatus::Pending.as_str(), now, 1i64],
                |_| Ok(()),
            )
        })?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        Ok(self
            .db
            .write(|c| {
                let ids: Vec<String> = fetch_all(
                    c,
                    DUE,
                    params![DeliveryStatus::Pending.as_str(), now, limit],
                    |r| r.get(0),
                )?;
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    execute(
                        c,
                        "UPDATE webhook_deliveries SET lease_until = $1 WHERE id = $2",
                        params![lease_until, id],
                    )?;
                    let delivery = c
                        .prepare_cached(concat!(
                            "SELECT ",
                            delivery_cols!(),
                            " FROM webhook_deliveries WHERE id = $1"
                        ))?
                        .query_row([id], delivery_row)?;
                    let hook = c
                        .prepare_cached(concat!(
                            "SELECT ",
                            hook_cols!(),
                            " FROM webhooks WHERE id = $1"
                        ))?
                        .query_row([delivery.webhook_id.to_string()], hook_row)?;
                    out.push((delivery, hook));
                }
                Ok(out)
            })
            .await?)
    }

    async fn release_leases(&self) -> StoreResult<u64> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
                    [],
                )
            })
            .await?;
        Ok(done as u64)
    }

    async fn release_lease(&self, id: Uuid) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE webhook_deliveries SET lease_until = NULL WHERE id = $1",
                    [id.to_string()],
                )
            })
            .await?;
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<i64>> {
        Ok(self.db.read(|c| {
            c.prepare_cached(
                "SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until > d.next_attempt_at \
                 THEN d.lease_until ELSE d.next_attempt_at END) \
                 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.status = $1 AND w.active = 1",
            )?
            .query_row([DeliveryStatus::Pending.as_str()], |r| r.get(0))
        })?)
    }

    async fn record_attempt(
        &self,
        a: &Attempt,
        next: &DeliveryNext,
        hook: &SubscriptionNext,
    ) -> StoreResult<()> {
        let outcome = AttemptOutcome::of(a, next);
        let now = outcome.ended_at;
        let delivery_id = a.delivery_id.to_string();
        self.db
            .write(|c| {
                let inserted = execute(
                    c,
                    "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, \
                     latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (delivery_id, attempt) DO NOTHING",
                    params![
                        delivery_id,
                        a.attempt,
                        a.attempted_at,
                        a.status_code,
                        a.latency_ms,
                        a.error,
                    ],
                )?;
                if inserted == 0 {
                    // Recorded already, by a worker whose lease this one outlived.
                    return Ok(());
                }
                execute(
                    c,
                    "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, \
                     lease_until = NULL, last_status_code = $4, last_error = $5, updated_at = $6, \
                     delivered_at = COALESCE($7, delivered_at) WHERE id = $8",
                    params![
                        outcome.status.as_str(),
                        a.attempt,
                        outcome.next_attempt_at,
                        a.status_code,
                        a.error,
                        now,
                        outcome.delivered_at,
                        delivery_id,
                    ],
                )?;
                let webhook_id: Option<String> = fetch_optional(
                    c,
                    "SELECT webhook_id FROM webhook_deliveries WHERE id = $1",
                    [&delivery_id],
                    |r| r.get(0),
                )?;
                let Some(webhook_id) = webhook_id else {
                    return Ok(());
                };
                match hook {
                    SubscriptionNext::Healthy => execute(
                        c,
                        "UPDATE webhooks SET failing_since = NULL \
                         WHERE id = $1 AND failing_since IS NOT NULL",
                        [webhook_id],
                    )?,
                    SubscriptionNext::Failing => execute(
                        c,
                        "UPDATE webhooks SET failing_since = $1 \
                         WHERE id = $2 AND failing_since IS NULL",
                        params![now, webhook_id],
                    )?,
                    SubscriptionNext::Disable(reason) => execute(
                        c,
                        "UPDATE webhooks SET active = 0, disabled_reason = $1, updated_at = $2 \
                         WHERE id = $3 AND active = 1",
                        params![reason, now, webhook_id],
                    )?,
                };
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Delivery>, i64)> {
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    delivery_cols!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
                ),
                params![webhook.to_string(), limit, offset],
                delivery_row,
            )?;
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1")?
                .query_row([webhook.to_string()], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn list_attempts(&self, deliveries: &[Uuid]) -> StoreResult<Vec<Attempt>> {
        Ok(self.db.read(|c| {
            let mut out = Vec::new();
            for id in deliveries {
                out.extend(fetch_all(
                    c,
                    "SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, error \
                     FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
                    [id.to_string()],
                    |row| {
                        Ok(Attempt {
                            delivery_id: parsed(row, "delivery_id")?,
                            attempt: row.get("attempt")?,
                            attempted_at: row.get("attempted_at")?,
                            status_code: row.get("status_code")?,
                            latency_ms: row.get("latency_ms")?,
                            error: row.get("error")?,
                        })
                    },
                )?);
            }
            Ok(out)
        })?)
    }

    async fn get_delivery(&self, webhook: Uuid, id: Uuid) -> StoreResult<Option<Delivery>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    delivery_cols!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
                ),
                [webhook.to_string(), id.to_string()],
                delivery_row,
            )
        })?)
    }

    async fn requeue(
        &self,
        webhook: Uuid,
        only: Option<Uuid>,
        since: Option<i64>,
        now: i64,
    ) -> StoreResult<u64> {
        let done = self
            .db
            .write(|c| match only {
                Some(id) => execute(
                    c,
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, \
                     next_attempt_at = $2, lease_until = NULL, updated_at = $2 \
                     WHERE webhook_id = $3 AND id = $4",
                    params![
                        DeliveryStatus::Pending.as_str(),
                        now,
                        webhook.to_string(),
                        id.to_string()
                    ],
                ),
                None => execute(
                    c,
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, \
                     next_attempt_at = $2, lease_until = NULL, updated_at = $2 \
                     WHERE webhook_id = $3 AND status = $4 AND created_at >= $5",
                    params![
                        DeliveryStatus::Pending.as_str(),
                        now,
                        webhook.to_string(),
                        DeliveryStatus::Failed.as_str(),
                        since.unwrap_or(i64::MIN),
                    ],
                ),
            })
            .await?;
        Ok(done as u64)
    }
}
