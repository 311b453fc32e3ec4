//! The delivery worker: fans outbox events out to subscriptions and sends due deliveries.
//!
//! One loop owns scheduling: it fans out new outbox events, leases the deliveries that are
//! due, and hands each to a task that waits for a slot (a global limit and a per-subscription
//! limit, so a slow receiver only ties up its own slots), sends it and records the attempt.
//! The loop wakes when an event is written (the domain rings the [`OutboxBell`]), when an
//! attempt finishes, when the next delivery falls due, and at the latest every poll
//! interval.
//!
//! Nothing is lost in a crash: events stay in the outbox until fan-out marks them, in the
//! same transaction that writes their deliveries; deliveries stay pending until an attempt
//! is recorded; leases are dropped at start-up. Delivery is therefore at least once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palmlink_domain::{check_literal_host, micros, rfc3339, OutboxBell};
use palmlink_store::{Attempt, Delivery, DeliveryNext, Store, Subscription, SubscriptionNext};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::resolver::GuardedResolver;
use crate::schedule::retry_after;
use crate::signing::signature_header;
use crate::WebhookSettings;

/// `User-Agent` of deliveries.
pub const USER_AGENT: &str = "PalmLink-Webhook/1.0";

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 200;
/// The shortest time between two passes of the worker that found nothing more to do.
const PASS_INTERVAL: Duration = Duration::from_millis(5);
/// Deliveries leased per pass.
const CLAIM_BATCH: i64 = 256;

/// Microseconds since the Unix epoch.
fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Sends the deliveries of every subscription of a database.
pub struct DeliveryWorker {
    store: Arc<dyn Store>,
    bell: Arc<OutboxBell>,
    settings: WebhookSettings,
    allow_private: bool,
    client: reqwest::Client,
    /// Wakes the loop when an attempt finishes.
    wake: Notify,
    in_flight: Mutex<HashSet<Uuid>>,
    per_endpoint: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    global: Arc<Semaphore>,
}

impl DeliveryWorker {
    /// A worker over `store`, woken by `bell`; `allow_private` permits plain `http` and
    /// non-global addresses (the operator's `--allow-http-webhooks`).
    pub fn new(
        store: Arc<dyn Store>,
        bell: Arc<OutboxBell>,
        settings: WebhookSettings,
        allow_private: bool,
    ) -> Result<Arc<DeliveryWorker>, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(USER_AGENT)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.per_endpoint.max(1));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let global = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        Ok(Arc::new(DeliveryWorker {
            store,
            bell,
            settings,
            allow_private,
            client,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            per_endpoint: Mutex::new(HashMap::new()),
            global,
        }))
    }

    /// Starts the worker on the current runtime.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run().await })
    }

    async fn run(self: Arc<Self>) {
        if let Err(e) = self.store.release_leases().await {
            tracing::error!(error = %e, "webhook worker: cannot release leases");
        }
        loop {
            let last_pass = tokio::time::Instant::now();
            let busy = match self.pass().await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::error!(error = %e, "webhook worker pass failed");
                    false
                }
            };
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            let wait = match self.store.next_due().await {
                Ok(Some(at)) => {
                    let left = at.saturating_sub(now_micros()).max(0);
                    Duration::from_micros(u64::try_from(left).unwrap_or(0))
                        .min(self.settings.poll_interval)
                }
                Ok(None) => self.settings.poll_interval,
                Err(e) => {
                    tracing::error!(error = %e, "webhook worker: cannot read the schedule");
                    self.settings.poll_interval
                }
            };
            // A delivery may have fallen due since the pass: look again shortly.
            let wait = wait.max(PASS_INTERVAL);
            let _ = tokio::time::timeout(wait, async {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = self.bell.wait() => {}
                }
            })
            .await;
            // Under load every write wakes the worker: passes at most every PASS_INTERVAL
            // take the events of many writes each, instead of three queries per write.
            tokio::time::sleep_until(last_pass + PASS_INTERVAL).await;
        }
    }

    /// One pass: fan out, lease due deliveries, start them. True when more work is waiting.
    async fn pass(self: &Arc<Self>) -> Result<bool, String> {
        let now = now_micros();
        let fanned = self
            .store
            .fan_out(FAN_OUT_BATCH, now)
            .await
            .map_err(|e| e.to_string())?;
        let lease = now + micros(self.settings.timeout * 3 + Duration::from_secs(30));
        let claimed = self
            .store
            .claim_due(now, lease, CLAIM_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let full = claimed.len() as i64 == CLAIM_BATCH;
        let mut started = 0usize;
        for (delivery, hook) in claimed {
            let fresh = self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(delivery.id);
            if fresh {
                started += 1;
                let this = Arc::clone(self);
                tokio::spawn(async move { this.attempt(delivery, hook).await });
            }
        }
        Ok(fanned as i64 >= FAN_OUT_BATCH || (full && started > 0))
    }

    fn endpoint_slots(&self, hook: Uuid) -> Arc<Semaphore> {
        let mut map = self.per_endpoint.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(hook)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_endpoint.max(1))))
            .clone()
    }

    async fn attempt(self: Arc<Self>, delivery: Delivery, hook: Subscription) {
        let slots = self.endpoint_slots(hook.id);
        // Both slots are held until the attempt is recorded, so the next delivery to this
        // endpoint sees what this one learnt (e.g. a 410 that disabled the subscription).
        if let (Ok(_endpoint), Ok(_global)) = (
            slots.acquire_owned().await,
            Arc::clone(&self.global).acquire_owned().await,
        ) {
            self.attempt_with_slots(&delivery, &hook).await;
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&delivery.id);
        self.wake.notify_one();
    }

    async fn attempt_with_slots(&self, delivery: &Delivery, hook: &Subscription) {
        // The subscription may have changed (disabled, deleted, new secret or endpoint) while
        // this delivery waited for a slot.
        let current = match self.store.get_webhook(hook.tenant_id, hook.id).await {
            Ok(Some(current)) if current.active => current,
            Ok(_) => {
                if let Err(e) = self.store.release_lease(delivery.id).await {
                    tracing::error!(error = %e, delivery = %delivery.id, "cannot release a webhook lease");
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, delivery = %delivery.id, "cannot read a webhook subscription");
                return;
            }
        };
        let (attempt, next, hook_next) = self.send(delivery, &current).await;
        if let Err(e) = self.store.record_attempt(&attempt, &next, &hook_next).await {
            tracing::error!(error = %e, delivery = %delivery.id, "cannot record a webhook attempt");
        }
    }

    /// Sends one attempt and decides what follows.
    async fn send(
        &self,
        delivery: &Delivery,
        hook: &Subscription,
    ) -> (Attempt, DeliveryNext, SubscriptionNext) {
        let started_at = now_micros();
        let started = Instant::now();
        let number = delivery.attempts + 1;
        let result = self.post(delivery, hook, started_at).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let finished_at = started_at + latency_ms * 1000;
        let (status_code, error, retry_hint) = match &result {
            Ok((code, headers)) => {
                let error = (!code.is_success()).then(|| format!("endpoint answered {code}"));
                let hint = if *code == StatusCode::TOO_MANY_REQUESTS
                    || *code == StatusCode::SERVICE_UNAVAILABLE
                {
                    retry_after(headers, chrono::Utc::now())
                } else {
                    None
                };
                (Some(i64::from(code.as_u16())), error, hint)
            }
            Err(e) => (None, Some(e.clone()), None),
        };
        let outcome = match &result {
            Ok((code, _)) if code.is_success() => "succeeded",
            Ok(_) => "rejected",
            Err(_) => "unreachable",
        };
        metrics::histogram!("palmlink_webhook_delivery_duration_seconds", "outcome" => outcome)
            .record(started.elapsed());
        let attempt = Attempt {
            delivery_id: delivery.id,
            attempt: number,
            attempted_at: started_at,
            status_code,
            latency_ms,
            error,
        };
        let (next, hook_next) = match &result {
            Ok((code, _)) if code.is_success() => {
                (DeliveryNext::Succeeded, SubscriptionNext::Healthy)
            }
            Ok((code, _)) if *code == StatusCode::GONE => (
                DeliveryNext::Failed,
                SubscriptionNext::Disable(
                    "the endpoint answered 410 Gone: subscription disabled".to_owned(),
                ),
            ),
            _ => {
                let in_cycle = u32::try_from(number - delivery.cycle_start).unwrap_or(u32::MAX);
                let next = match self.settings.schedule.delay_after(in_cycle) {
                    Some(delay) => {
                        DeliveryNext::RetryAt(finished_at + micros(retry_hint.unwrap_or(delay)))
                    }
                    None => DeliveryNext::Failed,
                };
                let disable_after = micros(self.settings.disable_after);
                let hook_next = match hook.failing_since {
                    Some(since) if finished_at - since >= disable_after => {
                        SubscriptionNext::Disable(format!(
                            "every delivery failed for {} (since {}); last error: {}",
                            human(self.settings.disable_after),
                            rfc3339(since),
                            attempt.error.as_deref().unwrap_or("unknown")
                        ))
                    }
                    _ => SubscriptionNext::Failing,
                };
                (next, hook_next)
            }
        };
        (attempt, next, hook_next)
    }

    /// The HTTP request itself: the response status and headers, or a transport error.
    async fn post(
        &self,
        delivery: &Delivery,
        hook: &Subscription,
        started_at: i64,
    ) -> Result<(StatusCode, HeaderMap), String> {
        let url =
            reqwest::Url::parse(&hook.endpoint).map_err(|e| format!("invalid endpoint: {e}"))?;
        check_literal_host(&url, self.allow_private)?;
        if url.scheme() != "https" && !self.allow_private {
            return Err("endpoint must use https".to_owned());
        }
        let timestamp = started_at.div_euclid(1_000_000);
        let body = delivery.payload.as_bytes();
        let signature = signature_header(
            hook.signing_secrets(started_at),
            &delivery.event_id,
            timestamp,
            body,
        );
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        put("content-type", "application/json");
        put("x-link-event", &delivery.event_type);
        put("x-link-delivery", &format!("del_{}", delivery.id));
        put("webhook-id", &delivery.event_id);
        put("webhook-timestamp", &timestamp.to_string());
        put("webhook-signature", &signature);
        if let Some(key) = &hook.api_key {
            put("x-api-key", key);
        }
        let response = self
            .client
            .post(url)
            .headers(headers)
            .timeout(self.settings.timeout)
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok((response.status(), response.headers().clone()))
    }
}

/// A transport error with its causes, e.g. `timed out` or `connection refused`.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `5 days`, `3 hours`, `40 seconds`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 && s.is_multiple_of(86_400) {
        format!("{} days", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} hours", s / 3600)
    } else {
        format!("{s} seconds")
    }
}
