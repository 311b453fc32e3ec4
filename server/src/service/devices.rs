//! Device registration, pairing codes, scanner pairing and revocation.

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::caller::{Caller, DEVICE_SECRET_PREFIX};
use crate::auth::secrets::{new_pairing_code, new_secret, normalize_pairing_code, sha256_hex};
use crate::clock::{now_micros, rfc3339, SECOND};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{check_len, Validate};
use crate::outbox;
use crate::state::AppState;
use crate::store::{Device, Pairing, StoreError};

/// Validity of a scanner credential.
const CERT_VALIDITY_SECS: i64 = 90 * 24 * 3600;

/// Body of `POST /v1/devices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct RegisterDevice {
    /// Label, 1-255 characters.
    pub device_name: String,
    /// Physical location, 1-255 characters.
    pub location: String,
}

impl Validate for RegisterDevice {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_len(&mut errors, "device_name", &self.device_name, 255);
        check_len(&mut errors, "location", &self.location, 255);
        errors
    }
}

/// Body of `POST /v1/device/pair`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PairDevice {
    /// The code shown at registration.
    pub pairing_code: String,
    /// The scanner's own identifier: 1-128 of `[A-Za-z0-9_.:-]`.
    pub hardware_id: String,
}

/// Checks a hardware id: 1-128 characters of `[A-Za-z0-9_.:-]`.
pub(crate) fn check_hardware_id(errors: &mut Vec<FieldError>, value: &str) {
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if value.is_empty() || value.len() > 128 || !ok_chars {
        errors.push(FieldError::new(
            "hardware_id",
            "must be 1-128 characters of A-Z, a-z, 0-9, _ . : -",
        ));
    }
}

impl Validate for PairDevice {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.pairing_code.trim().is_empty() || self.pairing_code.len() > 64 {
            errors.push(FieldError::new("pairing_code", "must be 1-64 characters"));
        }
        check_hardware_id(&mut errors, &self.hardware_id);
        errors
    }
}

/// Issues a pairing code unused by any device, retrying on the rare collision.
async fn store_with_fresh_code<F, Fut>(mut attempt: F) -> ApiResult<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    for _ in 0..5 {
        let code = new_pairing_code();
        match attempt(code.clone()).await {
            Ok(true) => return Ok(code),
            Ok(false) => {
                return Err(ApiError::conflict(
                    "device_not_pending",
                    "the device is already paired or revoked",
                ))
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::internal("could not draw a unique pairing code"))
}

/// Registers a scanner and returns it with its one-time pairing code.
pub(crate) async fn register(
    state: &AppState,
    caller: &Caller,
    req: RegisterDevice,
) -> ApiResult<Value> {
    caller.require("devices")?;
    let now = now_micros();
    let ttl = state.config.pairing_code_ttl.as_secs() as i64;
    let mut device = Device {
        id: Uuid::new_v4(),
        tenant_id: caller.tenant_id,
        device_name: req.device_name.trim().to_owned(),
        location: req.location.trim().to_owned(),
        status: "pending_pair".to_owned(),
        hardware_id: None,
        pairing_code: None,
        pairing_expires_at: Some(now + ttl * SECOND),
        paired_at: None,
        cert_valid_until: None,
        last_seen_at: None,
        created_at: now,
    };
    let store = state.store.clone();
    let code = store_with_fresh_code(|code| {
        device.pairing_code = Some(code);
        let d = device.clone();
        let store = store.clone();
        async move { store.create_device(&d).await.map(|()| true) }
    })
    .await?;
    device.pairing_code = Some(code.clone());
    let mut data = super::views::device(&device);
    data["pairing_code"] = json!(code);
    data["expires_in"] = json!(ttl);
    Ok(data)
}

/// Issues a fresh pairing code for a device that is not paired yet.
pub(crate) async fn reissue_code(
    state: &AppState,
    caller: &Caller,
    device_id: Uuid,
) -> ApiResult<Value> {
    caller.require("devices")?;
    let device = state
        .store
        .get_device(caller.tenant_id, device_id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    if device.status != "pending_pair" {
        return Err(ApiError::conflict(
            "device_not_pending",
            "the device is already paired or revoked",
        ));
    }
    let ttl = state.config.pairing_code_ttl.as_secs() as i64;
    let expires = now_micros() + ttl * SECOND;
    let store = state.store.clone();
    let tenant = caller.tenant_id;
    let code = store_with_fresh_code(|code| {
        let store = store.clone();
        async move {
            store
                .set_pairing_code(tenant, device_id, &code, expires)
                .await
        }
    })
    .await?;
    Ok(
        json!({"device_id": device_id, "pairing_code": code, "expires_in": ttl, "status": "pending_pair"}),
    )
}

/// Pairs a scanner with a code; returns its record and its credential (shown once).
pub(crate) async fn pair(state: &AppState, req: PairDevice) -> ApiResult<Value> {
    let code = normalize_pairing_code(&req.pairing_code);
    let device = state
        .store
        .find_device_by_pairing_code(&code)
        .await?
        .ok_or(ApiError::NotFound("pairing code"))?;
    if device.status != "pending_pair" {
        return Err(ApiError::conflict(
            "pairing_code_used",
            "this pairing code has already been used",
        ));
    }
    let now = now_micros();
    if device.pairing_expires_at.is_none_or(|at| at <= now) {
        return Err(ApiError::gone(
            "pairing_code_expired",
            "this pairing code has expired; issue a new one",
        ));
    }
    if let Some(other) = state
        .store
        .find_device_by_hardware(device.tenant_id, &req.hardware_id)
        .await?
    {
        if other.status == "paired" {
            return Err(ApiError::conflict(
                "hardware_id_in_use",
                "this hardware_id is already paired in the tenant",
            ));
        }
    }
    let secret = new_secret(DEVICE_SECRET_PREFIX);
    let cert_valid_until = now + CERT_VALIDITY_SECS * SECOND;
    let data = json!({
        "device_id": device.id,
        "hardware_id": req.hardware_id,
        "device_name": device.device_name,
        "location": device.location,
        "status": "paired",
        "paired_at": rfc3339(now),
        "cert_valid_until": rfc3339(cert_valid_until),
    });
    let event = outbox::event(device.tenant_id, outbox::DEVICE_PAIRED, data.clone(), now);
    let pairing = Pairing {
        device_id: device.id,
        code: code.clone(),
        hardware_id: req.hardware_id.clone(),
        secret_hash: sha256_hex(secret.as_bytes()),
        paired_at: now,
        cert_valid_until,
    };
    let paired = state
        .store
        .pair_device(&pairing, &event)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(
                "hardware_id_in_use",
                "this hardware_id is already paired in the tenant",
            ),
            other => other.into(),
        })?;
    if paired.is_none() {
        return Err(ApiError::conflict(
            "pairing_code_used",
            "this pairing code has already been used",
        ));
    }
    let mut out = data;
    out["device_secret"] = json!(secret);
    Ok(out)
}

/// Revokes a device: its credential stops working and its pending challenges fail.
pub(crate) async fn revoke(state: &AppState, caller: &Caller, device_id: Uuid) -> ApiResult<Value> {
    caller.require("devices")?;
    let device = state
        .store
        .get_device(caller.tenant_id, device_id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    if device.status != "revoked" {
        state
            .store
            .revoke_device(caller.tenant_id, device_id, now_micros())
            .await?;
        state.hub.notify(device_id);
    }
    let device = state
        .store
        .get_device(caller.tenant_id, device_id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok(super::views::device(&device))
}

/// One device of the caller's tenant.
pub(crate) async fn get(state: &AppState, caller: &Caller, device_id: Uuid) -> ApiResult<Value> {
    caller.require("devices")?;
    let device = state
        .store
        .get_device(caller.tenant_id, device_id)
        .await?
        .ok_or(ApiError::NotFound("device"))?;
    Ok(super::views::device(&device))
}
