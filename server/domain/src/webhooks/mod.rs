//! Webhook subscriptions and their delivery log, as integrators manage them. Every invalid
//! field is a 400 (`invalid_webhook`), as the contract asks for webhooks. Sending is the
//! delivery worker's (crate `palmlink-webhooks`).

pub mod endpoints;

use std::sync::Arc;

use palmlink_store::{Attempt, AuditRecord, Delivery, DeliveryStatus, Scope, Store, Subscription};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::audit::{actor, record};
use crate::clock::{parse_rfc3339, Clock, SECOND};
use crate::events::{self, body, new_event_id, TEST_EVENT};
use crate::secrets::new_signing_secret;
use crate::tokens::Caller;
use crate::validate::{Listing, Page};
use crate::wakeups::Wakeups;
use crate::{DomainError, DomainResult};
use endpoints::check_endpoint;

/// Longest name.
const MAX_NAME: usize = 255;
/// Longest API key.
const MAX_API_KEY: usize = 1024;
/// Longest rotation grace period: 7 days.
const MAX_GRACE_SECS: i64 = 7 * 86_400;
/// Default rotation grace period: 24 hours.
const DEFAULT_GRACE_SECS: i64 = 86_400;

/// A subscription to create (`POST /v1/webhooks`).
#[derive(Clone, Debug, Deserialize)]
pub struct NewWebhook {
    /// Display name, unique in the tenant.
    pub name: String,
    /// Event keys or aliases.
    pub events: Vec<String>,
    /// The https URL to call.
    pub endpoint: String,
    /// Sent as `X-API-Key` when set.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// Changes to a subscription (`PATCH /v1/webhooks/{id}`): absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WebhookChanges {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New event keys or aliases.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// New endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// New API key; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub api_key: Option<Option<String>>,
    /// `true` re-enables a disabled subscription and clears its `disabled_reason`.
    #[serde(default)]
    pub active: Option<bool>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A new signing secret (`POST /v1/webhooks/{id}/rotate-secret`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SecretRotation {
    /// How long the previous secret keeps signing: 0 to 7 days (default 24 h).
    #[serde(default, deserialize_with = "crate::validate::integer")]
    pub grace_period_seconds: Option<i64>,
}

/// Failed deliveries to queue again (`POST /v1/webhooks/{id}/recover`).
#[derive(Clone, Debug, Deserialize)]
pub struct Recovery {
    /// RFC 3339: deliveries created at or after this time.
    pub since: String,
}

/// A subscription with its signing secret (shown only when it is created or rotated).
#[derive(Clone, Debug)]
pub struct SubscriptionSecret {
    /// The subscription.
    pub subscription: Subscription,
    /// Its current signing secret.
    pub signing_secret: String,
}

/// A delivery with its attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, in order.
    pub attempts: Vec<Attempt>,
}

/// What a recovery queued.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovered {
    /// The subscription.
    pub webhook_id: Uuid,
    /// The time given.
    pub since: i64,
    /// Deliveries queued again.
    pub requeued: u64,
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::rejected("invalid_webhook", message)
}

fn check_name(name: &str) -> DomainResult<String> {
    if name.trim().is_empty() {
        return Err(invalid("name must not be empty"));
    }
    if name.contains('\0') {
        return Err(invalid("name must not contain NUL characters"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(invalid(format!(
            "name must be at most {MAX_NAME} characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_api_key(key: Option<String>) -> DomainResult<Option<String>> {
    match key {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if s.len() > MAX_API_KEY => Err(invalid(format!(
            "api_key must be at most {MAX_API_KEY} bytes"
        ))),
        Some(s) if s.chars().any(|c| c.is_control() || !c.is_ascii()) => Err(invalid(
            "api_key must be printable ASCII (it is sent as a header)",
        )),
        Some(s) => Ok(Some(s)),
    }
}

/// Parses a delivery id as shown (`del_<uuid>`) or bare; anything else is unknown (404).
pub fn parse_delivery_id(raw: &str) -> DomainResult<Uuid> {
    Uuid::parse_str(raw.strip_prefix("del_").unwrap_or(raw))
        .map_err(|_| DomainError::NotFound("delivery"))
}

/// Webhook subscriptions of the tenants (scope `webhooks`).
pub struct Webhooks {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Wakeups>,
    allow_private: bool,
}

impl Webhooks {
    /// Subscriptions on `store`; `allow_private` permits plain `http` and non-global
    /// endpoints (the operator's `--allow-http-webhooks`).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        wakeups: Arc<Wakeups>,
        allow_private: bool,
    ) -> Webhooks {
        Webhooks {
            store,
            clock,
            wakeups,
            allow_private,
        }
    }

    async fn endpoint(&self, raw: &str) -> DomainResult<String> {
        let url = check_endpoint(raw, self.allow_private)
            .await
            .map_err(invalid)?;
        Ok(url.to_string())
    }

    /// The audit record of the caller's `action` on subscription `id` (names and fields,
    /// never a secret, an API key or the endpoint's query).
    fn audit(
        &self,
        caller: &Caller,
        action: &str,
        id: Uuid,
        details: serde_json::Value,
    ) -> AuditRecord {
        record(
            caller.tenant_id,
            self.clock.now(),
            actor(caller),
            action,
            ("webhook", id.to_string()),
            "success",
            details,
        )
    }

    async fn load(&self, caller: &Caller, id: Uuid) -> DomainResult<Subscription> {
        caller.require(Scope::Webhooks)?;
        self.store
            .get_webhook(caller.tenant_id, id)
            .await?
            .ok_or(DomainError::NotFound("webhook"))
    }

    /// Subscribes an endpoint to event keys.
    pub async fn create(
        &self,
        caller: &Caller,
        req: NewWebhook,
    ) -> DomainResult<SubscriptionSecret> {
        caller.require(Scope::Webhooks)?;
        let name = check_name(&req.name)?;
        let events = events::resolve(&req.events).map_err(invalid)?;
        let endpoint = self.endpoint(&req.endpoint).await?;
        let api_key = check_api_key(req.api_key)?;
        let now = self.clock.now();
        let hook = Subscription {
            id: Uuid::new_v4(),
            tenant_id: caller.tenant_id,
            name,
            events,
            endpoint,
            api_key,
            secret: new_signing_secret(),
            old_secret: None,
            old_secret_expires_at: None,
            active: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        let audit = self.audit(
            caller,
            "webhook.created",
            hook.id,
            serde_json::json!({"name": hook.name, "events": hook.events}),
        );
        self.store.create_webhook(&hook, &audit).await?;
        Ok(SubscriptionSecret {
            signing_secret: hook.secret.clone(),
            subscription: hook,
        })
    }

    /// A page of the tenant's subscriptions, oldest first.
    pub async fn list(&self, caller: &Caller, page: Page) -> DomainResult<Listing<Subscription>> {
        caller.require(Scope::Webhooks)?;
        let (rows, total) = self
            .store
            .list_webhooks(caller.tenant_id, page.offset, page.limit)
            .await?;
        Ok(Listing { rows, total, page })
    }

    /// One subscription.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> DomainResult<Subscription> {
        self.load(caller, id).await
    }

    /// Changes a subscription.
    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        changes: WebhookChanges,
    ) -> DomainResult<Subscription> {
        let mut hook = self.load(caller, id).await?;
        let changed: Vec<&str> = [
            ("name", changes.name.is_some()),
            ("events", changes.events.is_some()),
            ("endpoint", changes.endpoint.is_some()),
            ("api_key", changes.api_key.is_some()),
            ("active", changes.active.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect();
        if let Some(name) = &changes.name {
            hook.name = check_name(name)?;
        }
        if let Some(keys) = &changes.events {
            hook.events = events::resolve(keys).map_err(invalid)?;
        }
        if let Some(endpoint) = &changes.endpoint {
            hook.endpoint = self.endpoint(endpoint).await?;
        }
        if let Some(key) = changes.api_key {
            hook.api_key = check_api_key(key)?;
        }
        if let Some(active) = changes.active {
            if active && !hook.active {
                hook.disabled_reason = None;
                hook.failing_since = None;
            }
            hook.active = active;
        }
        hook.updated_at = self.clock.now();
        let audit = self.audit(
            caller,
            "webhook.updated",
            id,
            serde_json::json!({"changed": changed, "active": hook.active}),
        );
        if !self.store.update_webhook(&hook, &audit).await? {
            return Err(DomainError::NotFound("webhook"));
        }
        self.wakeups.events_written();
        Ok(hook)
    }

    /// Deletes a subscription with its deliveries and their log.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> DomainResult<()> {
        caller.require(Scope::Webhooks)?;
        let audit = self.audit(caller, "webhook.deleted", id, serde_json::Value::Null);
        if self
            .store
            .delete_webhook(caller.tenant_id, id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound("webhook"))
        }
    }

    /// A new signing secret; the previous one keeps signing, as a second `v1,` entry,
    /// until the grace period ends.
    pub async fn rotate_secret(
        &self,
        caller: &Caller,
        id: Uuid,
        rotation: SecretRotation,
    ) -> DomainResult<SubscriptionSecret> {
        let grace = match rotation.grace_period_seconds {
            None => DEFAULT_GRACE_SECS,
            Some(g) if (0..=MAX_GRACE_SECS).contains(&g) => g,
            Some(_) => {
                return Err(invalid(format!(
                    "grace_period_seconds must be an integer from 0 to {MAX_GRACE_SECS}"
                )))
            }
        };
        let mut hook = self.load(caller, id).await?;
        let now = self.clock.now();
        hook.old_secret = Some(std::mem::replace(&mut hook.secret, new_signing_secret()));
        hook.old_secret_expires_at = Some(now + grace * SECOND);
        hook.updated_at = now;
        let audit = self.audit(
            caller,
            "webhook.updated",
            id,
            serde_json::json!({"changed": ["secret"], "grace_period_seconds": grace}),
        );
        if !self.store.update_webhook(&hook, &audit).await? {
            return Err(DomainError::NotFound("webhook"));
        }
        Ok(SubscriptionSecret {
            signing_secret: hook.secret.clone(),
            subscription: hook,
        })
    }

    /// A page of a subscription's deliveries, newest first, each with its attempts.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        id: Uuid,
        page: Page,
    ) -> DomainResult<Listing<DeliveryLog>> {
        let hook = self.load(caller, id).await?;
        let (rows, total) = self
            .store
            .list_deliveries(hook.id, page.offset, page.limit)
            .await?;
        let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
        let attempts = self.store.list_attempts(&ids).await?;
        let rows = rows
            .into_iter()
            .map(|delivery| DeliveryLog {
                attempts: attempts
                    .iter()
                    .filter(|a| a.delivery_id == delivery.id)
                    .cloned()
                    .collect(),
                delivery,
            })
            .collect();
        Ok(Listing { rows, total, page })
    }

    /// One delivery with its attempts.
    pub async fn delivery(
        &self,
        caller: &Caller,
        id: Uuid,
        delivery: Uuid,
    ) -> DomainResult<DeliveryLog> {
        let hook = self.load(caller, id).await?;
        self.delivery_log(hook.id, delivery).await
    }

    async fn delivery_log(&self, webhook: Uuid, delivery: Uuid) -> DomainResult<DeliveryLog> {
        let delivery = self
            .store
            .get_delivery(webhook, delivery)
            .await?
            .ok_or(DomainError::NotFound("delivery"))?;
        let attempts = self.store.list_attempts(&[delivery.id]).await?;
        Ok(DeliveryLog { delivery, attempts })
    }

    /// Makes a delivery due now, with a fresh retry cycle.
    pub async fn retry(
        &self,
        caller: &Caller,
        id: Uuid,
        delivery: Uuid,
    ) -> DomainResult<DeliveryLog> {
        let hook = self.load(caller, id).await?;
        if self
            .store
            .requeue(hook.id, Some(delivery), None, self.clock.now())
            .await?
            == 0
        {
            return Err(DomainError::NotFound("delivery"));
        }
        self.wakeups.events_written();
        self.delivery_log(hook.id, delivery).await
    }

    /// Makes every failed delivery created since `since` due again.
    pub async fn recover(
        &self,
        caller: &Caller,
        id: Uuid,
        recovery: Recovery,
    ) -> DomainResult<Recovered> {
        let since = parse_rfc3339(&recovery.since)
            .ok_or_else(|| invalid("since must be an RFC 3339 timestamp"))?;
        let hook = self.load(caller, id).await?;
        let requeued = self
            .store
            .requeue(hook.id, None, Some(since), self.clock.now())
            .await?;
        self.wakeups.events_written();
        Ok(Recovered {
            webhook_id: hook.id,
            since,
            requeued,
        })
    }

    /// Queues a `webhook.test` event for this subscription only.
    pub async fn test(&self, caller: &Caller, id: Uuid) -> DomainResult<DeliveryLog> {
        let hook = self.load(caller, id).await?;
        if !hook.active {
            return Err(DomainError::conflict(
                "webhook_disabled",
                "the webhook is disabled; re-enable it with PATCH active=true",
            ));
        }
        let now = self.clock.now();
        let event_id = new_event_id();
        let data = serde_json::json!({
            "webhook_id": hook.id,
            "name": hook.name,
            "message": "This is a test event from PalmLink.",
        });
        let payload = body(&event_id, caller.tenant_id, TEST_EVENT, data, now);
        let delivery = Delivery {
            id: Uuid::new_v4(),
            webhook_id: hook.id,
            tenant_id: caller.tenant_id,
            event_id,
            event_type: TEST_EVENT.to_owned(),
            payload: payload.to_string(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            cycle_start: 0,
            next_attempt_at: now,
            last_status_code: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            delivered_at: None,
        };
        self.store.insert_delivery(&delivery).await?;
        self.wakeups.events_written();
        Ok(DeliveryLog {
            delivery,
            attempts: Vec::new(),
        })
    }
}
