//! [`WebhookStore`] on PostgreSQL.
//!
//! Work is taken with `FOR UPDATE SKIP LOCKED`: a worker fanning out the outbox locks the
//! events it takes, and one claiming deliveries locks those it leases, so workers on several
//! nodes take disjoint sets and none waits for another.

use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::{append as append_audit, audited_execute};
use super::sql::{
    execute, fetch_all, fetch_optional, fetch_page, fetch_value, get, json_column, parsed,
};
use super::PostgresStore;
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

fn hook_row(row: &Row) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        name: get(row, "name")?,
        events: json_column(row, "events")?.unwrap_or_default(),
        endpoint: get(row, "endpoint")?,
        api_key: get(row, "api_key")?,
        secret: get(row, "secret")?,
        old_secret: get(row, "old_secret")?,
        old_secret_expires_at: get(row, "old_secret_expires_at")?,
        active: get::<i64>(row, "active")? != 0,
        disabled_reason: get(row, "disabled_reason")?,
        failing_since: get(row, "failing_since")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
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

fn delivery_row(row: &Row) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: parsed(row, "id")?,
        webhook_id: parsed(row, "webhook_id")?,
        tenant_id: parsed(row, "tenant_id")?,
        event_id: get(row, "event_id")?,
        event_type: get(row, "event_type")?,
        payload: get(row, "payload")?,
        status: parsed(row, "status")?,
        attempts: get(row, "attempts")?,
        cycle_start: get(row, "cycle_start")?,
        next_attempt_at: get(row, "next_attempt_at")?,
        last_status_code: get(row, "last_status_code")?,
        last_error: get(row, "last_error")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        delivered_at: get(row, "delivered_at")?,
    })
}

/// An outbox event as fan-out reads it.
struct Undispatched {
    event_id: String,
    event_type: String,
    payload: String,
    occurred_at: i64,
}

/// Leases the due deliveries (`$1` pending, due at `$2`, of active subscriptions, not leased
/// or past their lease) until `$3`, at most `$4`, skipping those another claimer has locked.
const CLAIM_DUE: &str = concat!(
    "WITH due AS (SELECT d.id AS due_id FROM webhook_deliveries d \
     JOIN webhooks w ON w.id = d.webhook_id \
     WHERE d.status = $1 AND d.next_attempt_at <= $2 \
     AND (d.lease_until IS NULL OR d.lease_until <= $2) AND w.active = 1 \
     ORDER BY d.next_attempt_at, d.created_at LIMIT $4 FOR UPDATE OF d SKIP LOCKED), \
     leased AS (UPDATE webhook_deliveries SET lease_until = $3 FROM due \
     WHERE id = due.due_id RETURNING ",
    delivery_cols!(),
    ") SELECT leased.*, w.id AS w_id, w.tenant_id AS w_tenant_id, w.name AS w_name, \
     w.events AS w_events, w.endpoint AS w_endpoint, w.api_key AS w_api_key, \
     w.secret AS w_secret, w.old_secret AS w_old_secret, \
     w.old_secret_expires_at AS w_old_secret_expires_at, w.active AS w_active, \
     w.disabled_reason AS w_disabled_reason, w.failing_since AS w_failing_since, \
     w.created_at AS w_created_at, w.updated_at AS w_updated_at \
     FROM leased JOIN webhooks w ON w.id = leased.webhook_id"
);

/// A subscription read from the `w_`-prefixed columns of [`CLAIM_DUE`].
fn leased_hook_row(row: &Row) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: parsed(row, "w_id")?,
        tenant_id: parsed(row, "w_tenant_id")?,
        name: get(row, "w_name")?,
        events: json_column(row, "w_events")?.unwrap_or_default(),
        endpoint: get(row, "w_endpoint")?,
        api_key: get(row, "w_api_key")?,
        secret: get(row, "w_secret")?,
        old_secret: get(row, "w_old_secret")?,
        old_secret_expires_at: get(row, "w_old_secret_expires_at")?,
        active: get::<i64>(row, "w_active")? != 0,
        disabled_reason: get(row, "w_disabled_reason")?,
        failing_since: get(row, "w_failing_since")?,
        created_at: get(row, "w_created_at")?,
        updated_at: get(row, "w_updated_at")?,
    })
}

/// Records an attempt (`$1`-`$6`) once, and only then moves its delivery on (`$7`-`$10`)
/// and updates its subscription as `$hook` says (an `UPDATE webhooks ... WHERE` whose
/// conditions follow `id IN (...)`): one statement, so one round trip and one commit.
macro_rules! record_attempt {
    ($hook:expr) => {
        concat!(
            "WITH attempt AS (INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, \
             status_code, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (delivery_id, attempt) DO NOTHING RETURNING delivery_id), \
             delivery AS (UPDATE webhook_deliveries SET status = $7, attempts = $2, \
             next_attempt_at = $8, lease_until = NULL, last_status_code = $4, last_error = $6, \
             updated_at = $9, delivered_at = COALESCE($10, delivered_at) \
             WHERE id = $1 AND id IN (SELECT delivery_id FROM attempt) RETURNING webhook_id) ",
            $hook
        )
    };
}

/// [`record_attempt!`] for a success: the subscription is no longer failing.
const RECORD_HEALTHY: &str = record_attempt!(
    "UPDATE webhooks SET failing_since = NULL \
     WHERE id IN (SELECT webhook_id FROM delivery) AND failing_since IS NOT NULL"
);
/// [`record_attempt!`] for a failure: the subscription is failing since now, unless it was.
const RECORD_FAILING: &str = record_attempt!(
    "UPDATE webhooks SET failing_since = $9 \
     WHERE id IN (SELECT webhook_id FROM delivery) AND failing_since IS NULL"
);
/// [`record_attempt!`] for a failure that disables the subscription with reason `$11`.
const RECORD_DISABLING: &str = record_attempt!(
    "UPDATE webhooks SET active = 0, disabled_reason = $11, updated_at = $9 \
     WHERE id IN (SELECT webhook_id FROM delivery) AND active = 1"
);

#[async_trait::async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<()> {
        audited_execute(
            self,
            concat!(
                "INSERT INTO webhooks (",
                hook_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &hook.id.to_string(),
                &hook.tenant_id.to_string(),
                &hook.name,
                &events_json(&hook.events)?,
                &hook.endpoint,
                &hook.api_key,
                &hook.secret,
                &hook.old_secret,
                &hook.old_secret_expires_at,
                &i64::from(hook.active),
                &hook.disabled_reason,
                &hook.failing_since,
                &hook.created_at,
                &hook.updated_at,
            ],
            audit,
        )
        .await
        .map_err(webhook_conflict)?;
        Ok(())
    }

    async fn get_webhook(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Subscription>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                hook_cols!(),
                " FROM webhooks WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant.to_string(), &id.to_string()],
            hook_row,
        )
        .await
    }

    async fn list_webhooks(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Subscription>, i64)> {
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        fetch_page(
            &c,
            (
                concat!(
                    "SELECT ",
                    hook_cols!(),
                    " FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) FROM webhooks WHERE tenant_id = $1",
            ),
            &[&tenant, &limit, &offset],
            1,
            hook_row,
        )
        .await
    }

    async fn update_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<bool> {
        let done = audited_execute(
            self,
            "UPDATE webhooks SET name = $1, events = $2, endpoint = $3, api_key = $4, \
             secret = $5, old_secret = $6, old_secret_expires_at = $7, active = $8, \
             disabled_reason = $9, failing_since = $10, updated_at = $11 \
             WHERE tenant_id = $12 AND id = $13",
            &[
                &hook.name,
                &events_json(&hook.events)?,
                &hook.endpoint,
                &hook.api_key,
                &hook.secret,
                &hook.old_secret,
                &hook.old_secret_expires_at,
                &i64::from(hook.active),
                &hook.disabled_reason,
                &hook.failing_since,
                &hook.updated_at,
                &hook.tenant_id.to_string(),
                &hook.id.to_string(),
            ],
            audit,
        )
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
        let id = id.to_string();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // A fan-out holding the subscription (key-share lock) is waited for, so the
        // deliveries it writes are deleted below too.
        let done = execute(
            &tx,
            "DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2",
            &[&tenant.to_string(), &id],
        )
        .await?;
        if done == 0 {
            return Ok(false);
        }
        execute(
            &tx,
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE webhook_id = $1)",
            &[&id],
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
            &[&id],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        self.sealer.poke(audit.tenant_id);
        Ok(true)
    }

    async fn fan_out(&self, limit: i64, now: i64) -> StoreResult<usize> {
        let mut c = self.pool.get().await?;
        let tenants: Vec<String> =
            fetch_all(&c, "SELECT DISTINCT tenant_id FROM webhooks", &[], |r| {
                get(r, "tenant_id")
            })
            .await?;
        let mut taken = 0usize;
        for tenant in tenants {
            let tx = c.transaction().await?;
            // The events this worker takes are locked until it commits; another worker
            // skips them and takes the next ones. One dispatched meanwhile (by a worker
            // that committed after this statement began) no longer matches once locked.
            let events = fetch_all(
                &tx,
                "SELECT event_id, event_type, payload, occurred_at FROM outbox_events \
                 WHERE tenant_id = $1 AND dispatched_at IS NULL \
                 ORDER BY occurred_at, event_id LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&tenant, &limit],
                |r| {
                    Ok(Undispatched {
                        event_id: get(r, "event_id")?,
                        event_type: get(r, "event_type")?,
                        payload: get(r, "payload")?,
                        occurred_at: get(r, "occurred_at")?,
                    })
                },
            )
            .await?;
            if events.is_empty() {
                tx.commit().await?;
                continue;
            }
            // Key-share locks keep the subscriptions from being deleted until the
            // deliveries are written (updates of them go on).
            let hooks = fetch_all(
                &tx,
                "SELECT id, events, created_at FROM webhooks \
                 WHERE tenant_id = $1 AND active = 1 FOR KEY SHARE",
                &[&tenant],
                |r| {
                    let keys: Vec<String> = json_column(r, "events")?.unwrap_or_default();
                    Ok((get::<String>(r, "id")?, keys, get::<i64>(r, "created_at")?))
                },
            )
            .await?;
            let mut rows: [Vec<&str>; 4] = Default::default();
            let mut ids = Vec::new();
            for e in &events {
                for (webhook_id, keys, created_at) in &hooks {
                    if wants(*created_at, keys, &e.event_type, e.occurred_at) {
                        ids.push(Uuid::now_v7().to_string());
                        rows[0].push(webhook_id);
                        rows[1].push(&e.event_id);
                        rows[2].push(&e.event_type);
                        rows[3].push(&e.payload);
                    }
                }
            }
            let [webhook_ids, event_ids, types, payloads] = &rows;
            execute(
                &tx,
                "INSERT INTO webhook_deliveries (id, webhook_id, tenant_id, event_id, event_type, \
                 payload, status, attempts, cycle_start, next_attempt_at, created_at, updated_at) \
                 SELECT d.id, d.webhook_id, $1, d.event_id, d.event_type, d.payload, $2, 0, 0, \
                 $3, $3, $3 FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                 AS d(id, webhook_id, event_id, event_type, payload) \
                 ON CONFLICT (webhook_id, event_id) DO NOTHING",
                &[
                    &tenant,
                    &DeliveryStatus::Pending.as_str(),
                    &now,
                    &ids,
                    webhook_ids,
                    event_ids,
                    types,
                    payloads,
                ],
            )
            .await?;
            let taken_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            execute(
                &tx,
                "UPDATE outbox_events SET dispatched_at = $1 \
                 WHERE event_id = ANY($2) AND dispatched_at IS NULL",
                &[&now, &taken_ids],
            )
            .await?;
            tx.commit().await?;
            taken += events.len();
        }
        Ok(taken)
    }

    async fn insert_delivery(&self, d: &Delivery) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            concat!(
                "INSERT INTO webhook_deliveries (",
                delivery_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            &[
                &d.id.to_string(),
                &d.webhook_id.to_string(),
                &d.tenant_id.to_string(),
                &d.event_id,
                &d.event_type,
                &d.payload,
                &d.status.as_str(),
                &d.attempts,
                &d.cycle_start,
                &d.next_attempt_at,
                &d.last_status_code,
                &d.last_error,
                &d.created_at,
                &d.updated_at,
                &d.delivered_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<(Delivery, Subscription)>> {
        // One statement: the lease and the subscriptions' read commit together.
        let mut leased = fetch_all(
            &self.pool.get().await?,
            CLAIM_DUE,
            &[
                &DeliveryStatus::Pending.as_str(),
                &now,
                &lease_until,
                &limit,
            ],
            |row| Ok((delivery_row(row)?, leased_hook_row(row)?)),
        )
        .await?;
        leased.sort_by_key(|(d, _)| (d.next_attempt_at, d.created_at));
        Ok(leased)
    }

    async fn release_leases(&self) -> StoreResult<u64> {
        Ok(0)
    }

    async fn release_lease(&self, id: Uuid) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "UPDATE webhook_deliveries SET lease_until = NULL WHERE id = $1",
            &[&id.to_string()],
        )
        .await?;
        Ok(())
    }

    async fn next_due(&self) -> StoreResult<Option<i64>> {
        fetch_value(
            &self.pool.get().await?,
            "SELECT MIN(CASE WHEN d.lease_until IS NOT NULL AND d.lease_until > d.next_attempt_at \
             THEN d.lease_until ELSE d.next_attempt_at END) \
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.status = $1 AND w.active = 1",
            &[&DeliveryStatus::Pending.as_str()],
        )
        .await
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
        let status = outcome.status.as_str();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &delivery_id,
            &a.attempt,
            &a.attempted_at,
            &a.status_code,
            &a.latency_ms,
            &a.error,
            &status,
            &outcome.next_attempt_at,
            &now,
            &outcome.delivered_at,
        ];
        // An attempt recorded already (by a node whose lease had expired) changes nothing.
        let sql = match hook {
            SubscriptionNext::Healthy => RECORD_HEALTHY,
            SubscriptionNext::Failing => RECORD_FAILING,
            SubscriptionNext::Disable(reason) => {
                params.push(reason);
                RECORD_DISABLING
            }
        };
        execute(&self.pool.get().await?, sql, &params).await?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        webhook: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Delivery>, i64)> {
        let c = self.pool.get().await?;
        let webhook = webhook.to_string();
        fetch_page(
            &c,
            (
                concat!(
                    "SELECT ",
                    delivery_cols!(),
                    " FROM webhook_deliveries WHERE webhook_id = $1 \
                     ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1",
            ),
            &[&webhook, &limit, &offset],
            1,
            delivery_row,
        )
        .await
    }

    async fn list_attempts(&self, deliveries: &[Uuid]) -> StoreResult<Vec<Attempt>> {
        let ids: Vec<String> = deliveries.iter().map(Uuid::to_string).collect();
        fetch_all(
            &self.pool.get().await?,
            "SELECT delivery_id, attempt, attempted_at, status_code, latency_ms, error \
             FROM webhook_attempts WHERE delivery_id = ANY($1) \
             ORDER BY array_position($1, delivery_id), attempt",
            &[&ids],
            |row| {
                Ok(Attempt {
                    delivery_id: parsed(row, "delivery_id")?,
                    attempt: get(row, "attempt")?,
                    attempted_at: get(row, "attempted_at")?,
                    status_code: get(row, "status_code")?,
                    latency_ms: get(row, "latency_ms")?,
                    error: get(row, "error")?,
                })
            },
        )
        .await
    }

    async fn get_delivery(&self, webhook: Uuid, id: Uuid) -> StoreResult<Option<Delivery>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                delivery_cols!(),
                " FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
            ),
            &[&webhook.to_string(), &id.to_string()],
            delivery_row,
        )
        .await
    }

    async fn requeue(
        &self,
        webhook: Uuid,
        only: Option<Uuid>,
        since: Option<i64>,
        now: i64,
    ) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        let pending = DeliveryStatus::Pending.as_str();
        match only {
            Some(id) => {
                execute(
                    &c,
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, \
                     next_attempt_at = $2, lease_until = NULL, updated_at = $2 \
                     WHERE webhook_id = $3 AND id = $4",
                    &[&pending, &now, &webhook.to_string(), &id.to_string()],
                )
                .await
            }
            None => {
                execute(
                    &c,
                    "UPDATE webhook_deliveries SET status = $1, cycle_start = attempts, \
                     next_attempt_at = $2, lease_until = NULL, updated_at = $2 \
                     WHERE webhook_id = $3 AND status = $4 AND created_at >= $5",
                    &[
                        &pending,
                        &now,
                        &webhook.to_string(),
                        &DeliveryStatus::Failed.as_str(),
                        &since.unwrap_or(i64::MIN),
                    ],
                )
                .await
            }
        }
    }
}
