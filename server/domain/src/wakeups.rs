//! Wake-ups within a node and across the nodes of one database.
//!
//! A change that someone may be waiting for wakes the waiters of this node at once and sends
//! a signal through the store ([`palmlink_store::Signals`]) so that every other node wakes
//! its own: a scanner long-polling another node sees a new challenge, the webhook workers
//! look at the outbox, the galleries catch up with the template log. A signal is a hint:
//! waiters also poll, so a lost one only delays.
//!
//! Signals leave a node one batch at a time: while one batch is being sent, what is signalled
//! meanwhile waits and goes out as the next, the same topic and payload once, the payloads of
//! one topic joined by spaces. Under load a node sends a few signals per database round trip
//! instead of one per change; idle, a signal leaves at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palmlink_store::{Signal, Store, SIGNAL_MAX_BYTES};
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

/// Signals waiting to leave this node, and whether a batch is being sent.
#[derive(Default)]
struct Outgoing {
    topics: BTreeMap<&'static str, BTreeSet<String>>,
    sending: bool,
}

/// Wakes the waiters of this node and signals the others.
pub struct Wakeups {
    store: Arc<dyn Store>,
    hub: Arc<DeviceHub>,
    outbox: Arc<OutboxBell>,
    outgoing: Arc<Mutex<Outgoing>>,
}

impl Wakeups {
    /// Wake-ups of `hub`'s long polls and `outbox`'s worker, signalled through `store`.
    pub fn new(store: Arc<dyn Store>, hub: Arc<DeviceHub>, outbox: Arc<OutboxBell>) -> Wakeups {
        Wakeups {
            store,
            hub,
            outbox,
            outgoing: Arc::default(),
        }
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

    /// Sends a signal without holding the caller up, in the next batch; a signal that cannot
    /// be sent is only a delay (the others poll).
    fn signal(&self, topic: &'static str, payload: String) {
        let mut out = self.outgoing.lock().unwrap_or_else(|p| p.into_inner());
        out.topics.entry(topic).or_default().insert(payload);
        if out.sending {
            return;
        }
        out.sending = true;
        drop(out);
        let (store, outgoing) = (self.store.clone(), self.outgoing.clone());
        tokio::spawn(send_batches(store, outgoing));
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
        let ids = || {
            signal
                .payload
                .split_whitespace()
                .filter_map(|id| Uuid::parse_str(id).ok())
        };
        match signal.topic.as_str() {
            CHALLENGES => ids().for_each(|device| self.hub.notify(device)),
            OUTBOX => self.outbox.ring(),
            TEMPLATES => {
                for tenant in ids() {
                    let galleries = galleries.clone();
                    tokio::spawn(async move {
                        if let Err(e) = galleries.catch_up_if_open(tenant).await {
                            tracing::warn!(%tenant, error = %e, "catching up after a signal failed; the next poll tries again");
                        }
                    });
                }
            }
            _ => {}
        }
    }
}

/// Sends what is waiting in `outgoing`, batch after batch, until nothing is.
async fn send_batches(store: Arc<dyn Store>, outgoing: Arc<Mutex<Outgoing>>) {
    loop {
        let topics = {
            let mut out = outgoing.lock().unwrap_or_else(|p| p.into_inner());
            if out.topics.is_empty() {
                out.sending = false;
                return;
            }
            std::mem::take(&mut out.topics)
        };
        for (topic, payloads) in topics {
            for payload in joined(topic, payloads) {
                if let Err(e) = store.notify(topic, &payload).await {
                    tracing::debug!(topic, error = %e, "a wake-up signal could not be sent");
                }
            }
        }
    }
}

/// `payloads` joined by spaces into as few signals of `topic` as fit in
/// [`SIGNAL_MAX_BYTES`] (an empty payload stays one empty signal).
fn joined(topic: &str, payloads: BTreeSet<String>) -> Vec<String> {
    let room = SIGNAL_MAX_BYTES.saturating_sub(topic.len());
    let mut out: Vec<String> = Vec::new();
    for payload in payloads {
        match out.last_mut() {
            Some(last) if !last.is_empty() && last.len() + 1 + payload.len() <= room => {
                last.push(' ');
                last.push_str(&payload);
            }
            _ => out.push(payload),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_joined_within_the_size_of_a_signal() {
        let ids: BTreeSet<String> = (0..400).map(|_| Uuid::new_v4().to_string()).collect();
        let signals = joined(CHALLENGES, ids.clone());
        assert!(signals.len() > 1);
        assert!(signals
            .iter()
            .all(|s| CHALLENGES.len() + s.len() <= SIGNAL_MAX_BYTES));
        let back: BTreeSet<String> = signals
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_owned))
            .collect();
        assert_eq!(back, ids);
        assert_eq!(joined(OUTBOX, BTreeSet::from([String::new()])), [""]);
        assert!(joined(OUTBOX, BTreeSet::new()).is_empty());
    }
}
