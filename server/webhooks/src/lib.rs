//! Sends PalmLink's webhook deliveries.
//!
//! The [`DeliveryWorker`] fans new outbox events out to the subscriptions that want them,
//! leases the deliveries that are due, signs each attempt (Standard Webhooks, [`signing`])
//! and records it, retrying failures on a [`RetrySchedule`]. Endpoints are checked again at
//! every connection ([`GuardedResolver`]), so a name that comes to resolve to a private
//! address is refused. Nothing is lost in a crash: events stay in the outbox until fanned
//! out, deliveries stay pending until an attempt is recorded, and leases run out.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn palmlink_store::Store>, bell: std::sync::Arc<palmlink_domain::OutboxBell>) {
//! use palmlink_webhooks::{DeliveryWorker, WebhookSettings};
//!
//! let worker = DeliveryWorker::new(store, bell, WebhookSettings::default(), false).unwrap();
//! let task = worker.spawn();
//! # task.abort(); }
//! ```
#![forbid(unsafe_code)]

mod resolver;
mod schedule;
pub mod signing;
mod worker;

use std::time::Duration;

pub use resolver::GuardedResolver;
pub use schedule::{parse_duration, retry_after, RetrySchedule};
pub use worker::{DeliveryWorker, USER_AGENT};

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Delays between attempts of a failing delivery.
    pub schedule: RetrySchedule,
    /// Time allowed for a receiver to answer.
    pub timeout: Duration,
    /// Longest sleep of the worker between passes (a safety net beside wake-ups).
    pub poll_interval: Duration,
    /// Requests in flight at once, over all endpoints.
    pub max_in_flight: usize,
    /// Requests in flight at once to one subscription's endpoint.
    pub per_endpoint: usize,
    /// A subscription whose deliveries have all failed for this long is disabled.
    pub disable_after: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            max_in_flight: 64,
            per_endpoint: 4,
            disable_after: Duration::from_secs(5 * 86_400),
        }
    }
}
