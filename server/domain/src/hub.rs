//! Wake-ups for scanners waiting on `GET /v1/device/challenges`: one `Notify` per device.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// Per-device notifications of new challenges.
#[derive(Default)]
pub struct DeviceHub {
    waiters: Mutex<HashMap<Uuid, Arc<Notify>>>,
}

impl DeviceHub {
    /// The notifier of a device (created on first use).
    pub fn notifier(&self, device: Uuid) -> Arc<Notify> {
        let mut map = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(device).or_default().clone()
    }

    /// Wakes every request waiting on any device.
    pub fn notify_all(&self) {
        let map = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }

    /// Wakes every request waiting on this device.
    pub fn notify(&self, device: Uuid) {
        let map = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(&device) {
            n.notify_waiters();
        }
    }
}
