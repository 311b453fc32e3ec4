//! Wake-ups within a node and across the nodes of one database.
//!
//! A change that someone may be waiting for wakes the waiters of this node at once and sends
//! a signal through the store ([`palmlink_store::Signals`]) so that every other node wakes
//! its own: a scanner long-polling another node sees a new challenge, the webhook workers
//! look at the outbox, the galleries catch up with the template log. A signal is a hint:
//! waiters also poll, so a lost one only delays.

use std::sync::Arc;
use std::time::Duration;

use palmlink_store::{Signal, Store};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::events::OutboxBell;
use crate::galleries::Galleries;
use crate::hub::DeviceHub;

/// A challenge was created for, or a revocation ended the challenges of, the device named
/// by the payload.
const CHALLENGES: &str = "challenges";
/// Events were written to the outbox, or deliveries made due.
const OUTBOX: &str = "outbox";
/// The template log of the tenant named by the payload has new entries.
const TEMPLATES: &str = "templates";

/// Wakes the waiters of this node and signals the others.
pub struct Wakeups {
    store: Arc<dyn Store>,
    hub: Arc<DeviceHub>,
    outbox: Arc<OutboxBell>,
}

impl Wakeups {
    /// Wake-ups of `hub`'s long polls and `outbox`'s worker, signalled through `store`.
    pub fn new(store: Arc<dyn Store>, hub: Arc<DeviceHub>, outbox: Arc<OutboxBell>) -> Wakeups {
        Wakeups { store, hub, outbox }
    }

    /// The device has new challenges, or its challenges ended.
    pub fn device_changed(&self, device: Uuid) {
        self.hub.notify(device);
        self.signal(CHALLENGES, device.to_string());
    }

    /// Events were written, or deliveries made due.
    pub fn events_written(&self) {
        self.outbox.ring();
        self.signal(OUTBOX, String::new());
    }

    /// The tenant's template log has new entries (this node has applied them already).
    pub fn templates_changed(&self, tenant: Uuid) {
        self.signal(TEMPLATES, tenant.to_string());
    }

    /// Sends a signal without holding the caller up; a signal that cannot be sent is only
    /// a delay (the others poll).
    fn signal(&self, topic: &'static str, payload: String) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.notify(topic, &payload).await {
                tracing::debug!(topic, error = %e, "a wake-up signal could not be sent");
            }
        });
    }

    /// Runs for as long as the node does: every signal from the database wakes the waiters
    /// of this node it concerns.
    pub async fn listen(self: Arc<Self>, galleries: Arc<Galleries>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut signals = match self.store.subscribe().await {
                Ok(signals) => signals,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for wake-ups; polling meanwhile");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            loop {
                match signals.recv().await {
                    Ok(signal) => self.wake(&galleries, signal),
                    // Some were missed: look at everything again.
                    Err(RecvError::Lagged(_)) => {
                        self.outbox.ring();
                        self.hub.notify_all();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
    }

    fn wake(&self, galleries: &Arc<Galleries>, signal: Signal) {
        let id = Uuid::parse_str(&signal.payload).ok();
        match (signal.topic.as_str(), id) {
            (CHALLENGES, Some(device)) => self.hub.notify(device),
            (OUTBOX, _) => self.outbox.ring(),
            (TEMPLATES, Some(tenant)) => {
                let galleries = galleries.clone();
                tokio::spawn(async move {
                    if let Err(e) = galleries.catch_up_if_open(tenant).await {
                        tracing::warn!(%tenant, error = %e, "catching up after a signal failed; the next poll tries again");
                    }
                });
            }
            _ => {}
        }
    }
}
