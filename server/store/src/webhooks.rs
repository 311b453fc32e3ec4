//! Webhook subscriptions, their deliveries and the log of attempts.
//!
//! Tables (migration `0002_webhooks.sql`): `webhooks` (subscriptions), `webhook_deliveries`
//! (one row per event and subscription, with its state and schedule) and `webhook_attempts`
//! (one row per HTTP attempt: status code, latency, error).

use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, StoreError, StoreResult};

/// A webhook subscription of a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// `webhook_id`.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Display name, unique in the tenant.
    pub name: String,
    /// Canonical event keys (aliases resolved).
    pub events: Vec<String>,
    /// Callback URL, unique in the tenant.
    pub endpoint: String,
    /// Sent as `X-API-Key` when set.
    pub api_key: Option<String>,
    /// Current signing secret (`whsec_...`).
    pub secret: String,
    /// Previous signing secret, still signing until `old_secret_expires_at`.
    pub old_secret: Option<String>,
    /// End of the rotation grace period.
    pub old_secret_expires_at: Option<i64>,
    /// Whether deliveries are made.
    pub active: bool,
    /// Why the service disabled the subscription, if it did.
    pub disabled_reason: Option<String>,
    /// Start of the current run of failed attempts.
    pub failing_since: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

impl Subscription {
    /// The secrets that sign a delivery at `now`: the current one, then the previous one
    /// during its grace period.
    pub fn signing_secrets(&self, now: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(old), Some(until)) = (&self.old_secret, self.old_secret_expires_at) {
            if now < until {
                secrets.push(old.as_str());
            }
        }
        secrets
    }
}

named_values! {
    /// Where a delivery is.
    pub enum DeliveryStatus ("delivery status") {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// Acknowledged with a 2xx.
        Succeeded = "succeeded",
        /// Given up (schedule exhausted, endpoint gone, or subscription deleted).
        Failed = "failed",
    }
}

/// One event to deliver to one subscription.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Delivery id (`X-Link-Delivery: del_<id>`).
    pub id: Uuid,
    /// Subscription.
    pub webhook_id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// `evt_...`: also the `webhook-id` header, the same on every attempt.
    pub event_id: String,
    /// Event key.
    pub event_type: String,
    /// The JSON body, byte for byte what is signed and sent.
    pub payload: String,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// `attempts` when the current retry cycle began (a manual retry starts a new cycle).
    pub cycle_start: i64,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: i64,
    /// Status code of the last attempt, if it got a response.
    pub last_status_code: Option<i64>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// Fan-out time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Time of the acknowledged attempt.
    pub delivered_at: Option<i64>,
}

/// One HTTP attempt of a delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: Uuid,
    /// 1-based attempt number.
    pub attempt: i64,
    /// Start of the request.
    pub attempted_at: i64,
    /// Response status, if a response came.
    pub status_code: Option<i64>,
    /// Time to the response or the failure.
    pub latency_ms: i64,
    /// Transport error or a short description of a non-2xx answer.
    pub error: Option<String>,
}

/// What an attempt means for its delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryNext {
    /// Acknowledged.
    Succeeded,
    /// Try again at this time.
    RetryAt(i64),
    /// Give up.
    Failed,
}

/// What an attempt means for its subscription.
#[derive(Clone, Debug, PartialEq)]
pub enum SubscriptionNext {
    /// The endpoint works: clear `failing_since`.
    Healthy,
    /// The endpoint failed: start `failing_since` if not running.
    Failing,
    /// Disable the subscription with this reason.
    Disable(String),
}

/// Storage of subscriptions and deliveries.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new subscription with its audit entry; `Conflict` on a duplicate name or
    /// endpoint in the tenant.
    ///
    /// Concurrency: names and endpoints are unique per tenant by constraint, so of two
    /// creations with one name exactly one succeeds.
    async fn create_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<()>;
    /// A subscription of a tenant.
    async fn get_webhook(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Subscription>>;
    /// A page of a tenant's subscriptions, oldest first, and the total.
    async fn list_webhooks(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Subscription>, i64)>;
    /// Replaces a subscription's mutable fields, with its audit entry; false (and nothing
    /// written) if unknown. `Conflict` on a duplicate.
    ///
    /// Concurrency: last writer wins over the whole row (a read-modify-write by the caller);
    /// the delivery worker writes only `active`, `disabled_reason` and `failing_since`
    /// through [`WebhookStore::record_attempt`].
    async fn update_webhook(&self, hook: &Subscription, audit: &AuditRecord) -> StoreResult<bool>;
    /// Deletes a subscription with its deliveries and attempts, with its audit entry; false
    /// (and nothing written) if unknown.
    async fn delete_webhook(
        &self,
        tenant: Uuid,
        id: Uuid,
        audit: &AuditRecord,
    ) -> StoreResult<bool>;

    /// Fans out undispatched outbox events of tenants that have webhooks (up to `limit` per
    /// tenant): one pending delivery per active subscription of the tenant that wants the
    /// event and existed when it occurred, and the event marked dispatched, in one
    /// transaction per tenant. Events of tenants without webhooks stay in the outbox
    /// untouched. Returns the number of events taken.
    ///
    /// Concurrency: an event is fanned out once however many workers run it at the same
    /// time: its deliveries are unique per `(webhook, event)` and marking it dispatched is
    /// conditional on it not being dispatched.
    async fn fan_out(&self, limit: i64, now: i64) -> StoreResult<usize>;
    /// Stores a delivery made outside the outbox (a test ping).
    async fn insert_delivery(&self, delivery: &Delivery) -> StoreResult<()>;
    /// Takes up to `limit` pending deliveries due at `now` of active subscriptions, leasing
    /// them until `lease_until` so no other pass takes them meanwhile.
    ///
    /// Concurrency: a delivery is leased by one claimer at a time: the lease is taken in
    /// the statement that selects it (on a backend with several writers,
    /// `FOR UPDATE SKIP LOCKED`), so two workers never send the same attempt.
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<(Delivery, Subscription)>>;
    /// Drops every lease, at start-up of the only worker of a database: nothing is in
    /// flight; returns how many. Where several workers share a database (PostgreSQL), leases
    /// may belong to live nodes: this releases nothing there and returns 0, and the leases
    /// of a dead node expire instead.
    async fn release_leases(&self) -> StoreResult<u64>;
    /// Drops the lease of one delivery without an attempt.
    async fn release_lease(&self, id: Uuid) -> StoreResult<()>;
    /// Earliest `next_attempt_at` of a pending, unleased delivery of an active subscription.
    async fn next_due(&self) -> StoreResult<Option<i64>>;
    /// Records an attempt and its consequences for the delivery and the subscription, and
    /// drops the lease, in one transaction.
    ///
    /// Concurrency: the attempt number is unique per delivery, so an attempt recorded twice
    /// (by a worker whose lease expired while its attempt was still running, and by the one
    /// that took the delivery over) changes nothing the second time.
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        next: &DeliveryNext,
        hook: &SubscriptionNext,
    ) -> StoreResult<()>;

    /// A page of a subscription's deliveries, newest first, and the total.
    async fn list_deliveries(
        &self,
        webhook: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Delivery>, i64)>;
    /// The attempts of these deliveries, in order.
    async fn list_attempts(&self, deliveries: &[Uuid]) -> StoreResult<Vec<Attempt>>;
    /// One delivery of a subscription.
    async fn get_delivery(&self, webhook: Uuid, id: Uuid) -> StoreResult<Option<Delivery>>;
    /// Makes deliveries of a subscription due now with a fresh retry cycle: one (`only`) or
    /// every failed one created at or after `since`. Returns how many.
    async fn requeue(
        &self,
        webhook: Uuid,
        only: Option<Uuid>,
        since: Option<i64>,
        now: i64,
    ) -> StoreResult<u64>;
}

/// Whether a subscription (created at `created_at`, wanting `keys`) receives an event of
/// `event_type` that occurred at `occurred_at`: it receives the events it wants that occur
/// once it exists.
pub(crate) fn wants(created_at: i64, keys: &[String], event_type: &str, occurred_at: i64) -> bool {
    created_at <= occurred_at && keys.iter().any(|k| k == event_type)
}

/// The event keys of a subscription as stored (a JSON list).
pub(crate) fn events_json(events: &[String]) -> StoreResult<String> {
    serde_json::to_string(events).map_err(|err| StoreError::Database(err.to_string()))
}

/// A uniqueness conflict of a subscription restated as the field it duplicates (the backend's
/// message names the rule broken: its columns or constraint).
pub(crate) fn webhook_conflict(err: StoreError) -> StoreError {
    match err {
        StoreError::Conflict(msg) if msg.contains("endpoint") => {
            StoreError::Conflict("a webhook with this endpoint already exists".to_owned())
        }
        StoreError::Conflict(msg) if msg.contains("name") => {
            StoreError::Conflict("a webhook with this name already exists".to_owned())
        }
        other => other,
    }
}

/// What an attempt leaves on its delivery.
pub(crate) struct AttemptOutcome {
    /// The delivery's status after it.
    pub status: DeliveryStatus,
    /// When the next attempt is due (the attempt's end when there is none).
    pub next_attempt_at: i64,
    /// When it was acknowledged, if it was.
    pub delivered_at: Option<i64>,
    /// When the attempt ended.
    pub ended_at: i64,
}

impl AttemptOutcome {
    /// The outcome of attempt `a` followed by `next`.
    pub(crate) fn of(a: &Attempt, next: &DeliveryNext) -> AttemptOutcome {
        let ended_at = a.attempted_at + a.latency_ms * 1000;
        let (status, next_attempt_at, delivered_at) = match next {
            DeliveryNext::Succeeded => (DeliveryStatus::Succeeded, ended_at, Some(ended_at)),
            DeliveryNext::RetryAt(at) => (DeliveryStatus::Pending, *at, None),
            DeliveryNext::Failed => (DeliveryStatus::Failed, ended_at, None),
        };
        AttemptOutcome {
            status,
            next_attempt_at,
            delivered_at,
            ended_at,
        }
    }
}
