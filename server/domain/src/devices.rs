//! Scanners: registration with a one-time pairing code, pairing, the scanner credential,
//! revocation.

use std::sync::Arc;

use palmlink_store::{Actor, Challenge, Device, DeviceStatus, Pairing, Scope, Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit::{actor, record};
use crate::clock::{rfc3339, Clock, SECOND};
use crate::ends::end_record;
use crate::events::{outbox_event, DEVICE_PAIRED};
use crate::secrets::{
    new_pairing_code, new_secret, normalize_pairing_code, sha256_hex, DEVICE_SECRET_PREFIX,
};
use crate::tokens::Caller;
use crate::validate::{check_hardware_id, check_len, Listing, Page};
use crate::wakeups::Wakeups;
use crate::{DomainError, DomainResult, FieldError};

/// Validity of a scanner credential: 90 days.
const CERT_VALIDITY_SECS: i64 = 90 * 24 * 3600;
/// How stale a scanner's `last_seen_at` may get before a request refreshes it (5 s).
const LAST_SEEN_RESOLUTION: i64 = 5 * SECOND;

/// A scanner to register (`POST /v1/devices`).
#[derive(Clone, Debug, Deserialize)]
pub struct RegisterDevice {
    /// Label, 1-255 characters.
    pub device_name: String,
    /// Physical location, 1-255 characters.
    pub location: String,
}

impl RegisterDevice {
    fn validate(&self) -> DomainResult<()> {
        let mut errors = Vec::new();
        check_len(&mut errors, "device_name", &self.device_name, 255);
        check_len(&mut errors, "location", &self.location, 255);
        DomainError::check(errors)
    }
}

/// A scanner's pairing request (`POST /v1/device/pair`).
#[derive(Clone, Debug, Deserialize)]
pub struct PairDevice {
    /// The code shown at registration.
    pub pairing_code: String,
    /// The scanner's own identifier: 1-128 of `[A-Za-z0-9_.:-]`.
    pub hardware_id: String,
}

impl PairDevice {
    fn validate(&self) -> DomainResult<()> {
        let mut errors = Vec::new();
        if self.pairing_code.trim().is_empty() || self.pairing_code.len() > 64 {
            errors.push(FieldError::new("pairing_code", "must be 1-64 characters"));
        }
        check_hardware_id(&mut errors, &self.hardware_id);
        DomainError::check(errors)
    }
}

/// A registered device with its one-time pairing code.
#[derive(Clone, Debug)]
pub struct RegisteredDevice {
    /// The device, `pending_pair`.
    pub device: Device,
    /// The code to enter on the scanner.
    pub pairing_code: String,
    /// Seconds the code stays valid.
    pub expires_in: i64,
}

/// The data of `device.paired`, also the body of a successful pairing.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DevicePaired {
    /// The device.
    pub device_id: Uuid,
    /// The scanner's hardware id.
    pub hardware_id: String,
    /// Label.
    pub device_name: String,
    /// Physical location.
    pub location: String,
    /// `paired`.
    pub status: DeviceStatus,
    /// Pairing time (RFC 3339).
    pub paired_at: String,
    /// End of the credential's validity (RFC 3339).
    pub cert_valid_until: String,
}

/// A paired scanner with its credential (shown only this once).
#[derive(Clone, Debug)]
pub struct PairedDevice {
    /// What `device.paired` reports.
    pub paired: DevicePaired,
    /// The scanner's bearer credential.
    pub device_secret: String,
}

/// Scanners of the tenants.
pub struct Devices {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Wakeups>,
    pairing_code_ttl_secs: i64,
}

impl Devices {
    /// Device management on `store`; pairing codes live `pairing_code_ttl_secs`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        wakeups: Arc<Wakeups>,
        pairing_code_ttl_secs: i64,
    ) -> Devices {
        Devices {
            store,
            clock,
            wakeups,
            pairing_code_ttl_secs,
        }
    }

    /// Registers a scanner and returns it with its one-time pairing code.
    pub async fn register(
        &self,
        caller: &Caller,
        req: RegisterDevice,
    ) -> DomainResult<RegisteredDevice> {
        caller.require(Scope::Devices)?;
        req.validate()?;
        let now = self.clock.now();
        let ttl = self.pairing_code_ttl_secs;
        let mut device = Device {
            id: Uuid::new_v4(),
            tenant_id: caller.tenant_id,
            device_name: req.device_name.trim().to_owned(),
            location: req.location.trim().to_owned(),
            status: DeviceStatus::PendingPair,
            hardware_id: None,
            pairing_code: None,
            pairing_expires_at: Some(now + ttl * SECOND),
            paired_at: None,
            cert_valid_until: None,
            last_seen_at: None,
            created_at: now,
        };
        let audit = record(
            caller.tenant_id,
            now,
            actor(caller),
            "device.registered",
            ("device", device.id.to_string()),
            "success",
            serde_json::json!({"device_name": device.device_name, "location": device.location}),
        );
        let code = with_fresh_code(|code| {
            let d = Device {
                pairing_code: Some(code),
                ..device.clone()
            };
            let audit = &audit;
            async move { self.store.create_device(&d, audit).await.map(|()| true) }
        })
        .await?;
        device.pairing_code = Some(code.clone());
        Ok(RegisteredDevice {
            device,
            pairing_code: code,
            expires_in: ttl,
        })
    }

    /// Issues a fresh pairing code for a device that is not paired yet.
    pub async fn reissue_code(
        &self,
        caller: &Caller,
        device_id: Uuid,
    ) -> DomainResult<RegisteredDevice> {
        let device = self.get(caller, device_id).await?;
        if device.status != DeviceStatus::PendingPair {
            return Err(not_pending());
        }
        let ttl = self.pairing_code_ttl_secs;
        let now = self.clock.now();
        let expires = now + ttl * SECOND;
        let tenant = caller.tenant_id;
        // The code itself is a credential: the entry names its lifetime only.
        let audit = record(
            tenant,
            now,
            actor(caller),
            "device.pairing_code_issued",
            ("device", device_id.to_string()),
            "success",
            serde_json::json!({"expires_in": ttl}),
        );
        let audit = &audit;
        let code = with_fresh_code(|code| async move {
            self.store
                .set_pairing_code(tenant, device_id, &code, expires, audit)
                .await
        })
        .await?;
        Ok(RegisteredDevice {
            device: Device {
                pairing_code: Some(code.clone()),
                pairing_expires_at: Some(expires),
                ..device
            },
            pairing_code: code,
            expires_in: ttl,
        })
    }

    /// Pairs a scanner with a code; returns what `device.paired` reports and the scanner's
    /// credential.
    pub async fn pair(&self, req: PairDevice) -> DomainResult<PairedDevice> {
        req.validate()?;
        let code = normalize_pairing_code(&req.pairing_code);
        let device = self
            .store
            .find_device_by_pairing_code(&code)
            .await?
            .ok_or(DomainError::NotFound("pairing code"))?;
        let used = || {
            DomainError::conflict(
                "pairing_code_used",
                "this pairing code has already been used",
            )
        };
        if device.status != DeviceStatus::PendingPair {
            return Err(used());
        }
        let now = self.clock.now();
        if device.pairing_expires_at.is_none_or(|at| at <= now) {
            return Err(DomainError::gone(
                "pairing_code_expired",
                "this pairing code has expired; issue a new one",
            ));
        }
        let in_use = || {
            DomainError::conflict(
                "hardware_id_in_use",
                "this hardware_id is already paired in the tenant",
            )
        };
        if let Some(other) = self
            .store
            .find_device_by_hardware(device.tenant_id, &req.hardware_id)
            .await?
        {
            if other.status == DeviceStatus::Paired {
                return Err(in_use());
            }
        }
        let secret = new_secret(DEVICE_SECRET_PREFIX);
        let cert_valid_until = now + CERT_VALIDITY_SECS * SECOND;
        let paired = DevicePaired {
            device_id: device.id,
            hardware_id: req.hardware_id.clone(),
            device_name: device.device_name.clone(),
            location: device.location.clone(),
            status: DeviceStatus::Paired,
            paired_at: rfc3339(now),
            cert_valid_until: rfc3339(cert_valid_until),
        };
        let event = outbox_event(device.tenant_id, DEVICE_PAIRED, &paired, now);
        let pairing = Pairing {
            device_id: device.id,
            code,
            hardware_id: req.hardware_id,
            secret_hash: sha256_hex(secret.as_bytes()),
            paired_at: now,
            cert_valid_until,
        };
        let audit = record(
            device.tenant_id,
            now,
            Actor::device(device.id),
            "device.paired",
            ("device", device.id.to_string()),
            "success",
            serde_json::json!({"hardware_id": pairing.hardware_id}),
        );
        match self.store.pair_device(&pairing, &event, &audit).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(used()),
            Err(StoreError::Conflict(_)) => return Err(in_use()),
            Err(e) => return Err(e.into()),
        }
        self.wakeups.events_written();
        Ok(PairedDevice {
            paired,
            device_secret: secret,
        })
    }

    /// Revokes a device: its credential stops working and its pending challenges fail.
    /// Revoking a revoked device changes nothing.
    pub async fn revoke(&self, caller: &Caller, device_id: Uuid) -> DomainResult<Device> {
        let device = self.get(caller, device_id).await?;
        if device.status != DeviceStatus::Revoked {
            let now = self.clock.now();
            let by = actor(caller);
            let records = move |c: &Challenge| end_record(c, by.clone());
            self.store
                .revoke_device(
                    caller.tenant_id,
                    device_id,
                    now,
                    &record(
                        caller.tenant_id,
                        now,
                        actor(caller),
                        "device.revoked",
                        ("device", device_id.to_string()),
                        "success",
                        serde_json::json!({"hardware_id": device.hardware_id}),
                    ),
                    &records,
                )
                .await?;
            self.wakeups.device_changed(device_id);
            self.wakeups.events_written();
        }
        self.get(caller, device_id).await
    }

    /// One device of the caller's tenant.
    pub async fn get(&self, caller: &Caller, device_id: Uuid) -> DomainResult<Device> {
        caller.require(Scope::Devices)?;
        self.store
            .get_device(caller.tenant_id, device_id)
            .await?
            .ok_or(DomainError::NotFound("device"))
    }

    /// A page of the tenant's devices, newest first.
    pub async fn list(&self, caller: &Caller, page: Page) -> DomainResult<Listing<Device>> {
        caller.require(Scope::Devices)?;
        let (rows, total) = self
            .store
            .list_devices(caller.tenant_id, page.offset, page.limit)
            .await?;
        Ok(Listing { rows, total, page })
    }

    /// The paired scanner a bearer credential stands for (401 otherwise); refreshes its
    /// `last_seen_at` at most every few seconds, so most scanner requests write nothing.
    pub async fn authenticate_scanner(&self, secret: &str) -> DomainResult<Device> {
        let unauthorized =
            || DomainError::Unauthenticated("missing or invalid scanner credential".to_owned());
        if !secret.starts_with(DEVICE_SECRET_PREFIX) {
            return Err(unauthorized());
        }
        let device = self
            .store
            .find_device_by_secret_hash(&sha256_hex(secret.as_bytes()))
            .await?
            .ok_or_else(unauthorized)?;
        let now = self.clock.now();
        if device.cert_valid_until.is_some_and(|until| until <= now) {
            return Err(DomainError::Unauthenticated(
                "the scanner credential has expired".to_owned(),
            ));
        }
        if device
            .last_seen_at
            .is_none_or(|seen| now - seen >= LAST_SEEN_RESOLUTION)
        {
            self.store.touch_device(device.id, now).await?;
        }
        Ok(device)
    }
}

fn not_pending() -> DomainError {
    DomainError::conflict(
        "device_not_pending",
        "the device is already paired or revoked",
    )
}

/// Stores a pairing code unused by any device, drawing again on the rare collision.
/// `attempt` returns false when the device is no longer waiting to pair.
async fn with_fresh_code<F, Fut>(mut attempt: F) -> DomainResult<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    for _ in 0..5 {
        let code = new_pairing_code();
        match attempt(code.clone()).await {
            Ok(true) => return Ok(code),
            Ok(false) => return Err(not_pending()),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DomainError::internal(
        "could not draw a unique pairing code",
    ))
}
