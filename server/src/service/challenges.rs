//! Challenges: creation by the integrator, delivery to the scanner, look-up, cancellation
//! and expiry.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::caller::Caller;
use crate::clock::{now_micros, SECOND};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{check_len, check_metadata, Pagination, Validate};
use crate::state::AppState;
use crate::store::{Challenge, ChallengeFilter, Device};

/// Body of `POST /v1/enroll`, `/v1/enroll/both` and `/v1/verify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SubjectChallenge {
    /// The tenant's identifier of the person (alias `user_id`).
    #[serde(alias = "user_id")]
    pub external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    pub hardware_id: String,
    /// `left` or `right`.
    #[serde(default)]
    pub palm_type: Option<String>,
    /// Opaque object echoed on the challenge and its result.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl Validate for SubjectChallenge {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_len(&mut errors, "external_user_id", &self.external_user_id, 255);
        check_len(&mut errors, "hardware_id", &self.hardware_id, 128);
        if let Some(p) = &self.palm_type {
            if p != "left" && p != "right" {
                errors.push(FieldError::new("palm_type", "must be left or right"));
            }
        }
        check_metadata(&mut errors, &self.metadata);
        errors
    }
}

/// Body of `POST /v1/identify`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct IdentifyChallenge {
    /// Hardware id of the paired scanner that captures.
    pub hardware_id: String,
    /// Restrict the search to one palm: `left` or `right`.
    #[serde(default)]
    pub palm_type: Option<String>,
    /// Candidates to return, 1-50 (default 5).
    #[serde(default)]
    pub top_k: Option<i64>,
    /// Opaque object echoed on the challenge and its result.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl Validate for IdentifyChallenge {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        check_len(&mut errors, "hardware_id", &self.hardware_id, 128);
        if let Some(p) = &self.palm_type {
            if p != "left" && p != "right" {
                errors.push(FieldError::new("palm_type", "must be left or right"));
            }
        }
        if let Some(k) = self.top_k {
            if !(1..=50).contains(&k) {
                errors.push(FieldError::new("top_k", "must be from 1 to 50"));
            }
        }
        check_metadata(&mut errors, &self.metadata);
        errors
    }
}

/// Body of `POST /v1/device/challenges/{id}/cancel`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CancelChallenge {
    /// `user_cancelled`, `quality`, `timeout` or `spoof`.
    pub reason: String,
}

impl Validate for CancelChallenge {
    fn validate(&self) -> Vec<FieldError> {
        match self.reason.as_str() {
            "user_cancelled" | "quality" | "timeout" | "spoof" => Vec::new(),
            _ => vec![FieldError::new(
                "reason",
                "must be user_cancelled, quality, timeout or spoof",
            )],
        }
    }
}

/// The paired device with this hardware id: 404 when unknown, 400 when not paired.
async fn capturing_device(state: &AppState, tenant: Uuid, hardware_id: &str) -> ApiResult<Device> {
    let device = state
        .store
        .find_device_by_hardware(tenant, hardware_id)
        .await?
        .ok_or(ApiError::NotFound("hardware_id"))?;
    if device.status != "paired" {
        return Err(ApiError::bad_request(
            "device_not_paired",
            "the device is not paired or has been revoked",
        ));
    }
    Ok(device)
}

fn metadata(value: Option<Value>) -> Value {
    value.unwrap_or(Value::Null)
}

/// What a new challenge asks for.
struct NewChallenge {
    kind: &'static str,
    external_user_id: Option<String>,
    palm_type: String,
    top_k: Option<i64>,
    metadata: Value,
}

async fn create(
    state: &AppState,
    tenant: Uuid,
    device: &Device,
    new: NewChallenge,
) -> ApiResult<Challenge> {
    let now = now_micros();
    let challenge = Challenge {
        // Time-ordered: new challenges land at the end of the id index.
        id: Uuid::now_v7(),
        tenant_id: tenant,
        kind: new.kind.to_owned(),
        device_id: device.id,
        hardware_id: device.hardware_id.clone().unwrap_or_default(),
        external_user_id: new.external_user_id,
        palm_type: new.palm_type,
        top_k: new.top_k,
        status: "pending".to_owned(),
        metadata: new.metadata,
        result: None,
        failure_reason: None,
        created_at: now,
        expires_at: now + state.config.challenge_ttl.as_secs() as i64 * SECOND,
        finished_at: None,
    };
    state.store.create_challenge(&challenge).await?;
    state
        .metrics
        .challenges_created
        .fetch_add(1, Ordering::Relaxed);
    state.hub.notify(device.id);
    Ok(challenge)
}

/// `POST /v1/enroll` (`both == false`) and `POST /v1/enroll/both`.
pub(crate) async fn enroll(
    state: &AppState,
    caller: &Caller,
    req: SubjectChallenge,
    both: bool,
) -> ApiResult<Value> {
    caller.require("enroll")?;
    let palm_type = if both {
        "both".to_owned()
    } else {
        req.palm_type
            .clone()
            .ok_or_else(|| ApiError::field("palm_type", "is required (left or right)"))?
    };
    let device = capturing_device(state, caller.tenant_id, &req.hardware_id).await?;
    if let Some((_, palms)) = state
        .store
        .get_user_with_palms(caller.tenant_id, &req.external_user_id)
        .await?
    {
        if palms.iter().any(|p| both || p.palm_type == palm_type) {
            return Err(ApiError::conflict(
                "already_enrolled",
                "that palm is already enrolled for this user",
            ));
        }
    }
    let new = NewChallenge {
        kind: "enroll",
        external_user_id: Some(req.external_user_id),
        palm_type,
        top_k: None,
        metadata: metadata(req.metadata),
    };
    let c = create(state, caller.tenant_id, &device, new).await?;
    Ok(super::views::challenge(&c))
}

/// `POST /v1/verify`.
pub(crate) async fn verify(
    state: &AppState,
    caller: &Caller,
    req: SubjectChallenge,
) -> ApiResult<Value> {
    caller.require("verify")?;
    let device = capturing_device(state, caller.tenant_id, &req.hardware_id).await?;
    let (_, palms) = state
        .store
        .get_user_with_palms(caller.tenant_id, &req.external_user_id)
        .await?
        .ok_or(ApiError::NotFound("enrolled user"))?;
    if palms.is_empty() {
        return Err(ApiError::NotFound("enrolled user"));
    }
    let palm_type = match &req.palm_type {
        Some(p) if palms.iter().any(|e| &e.palm_type == p) => p.clone(),
        Some(_) => return Err(ApiError::NotFound("enrolled palm")),
        None if palms.len() == 1 => palms[0].palm_type.clone(),
        None => "any".to_owned(),
    };
    let new = NewChallenge {
        kind: "verify",
        external_user_id: Some(req.external_user_id),
        palm_type,
        top_k: None,
        metadata: metadata(req.metadata),
    };
    let c = create(state, caller.tenant_id, &device, new).await?;
    Ok(super::views::challenge(&c))
}

/// `POST /v1/identify`.
pub(crate) async fn identify(
    state: &AppState,
    caller: &Caller,
    req: IdentifyChallenge,
) -> ApiResult<Value> {
    caller.require("identify")?;
    let device = capturing_device(state, caller.tenant_id, &req.hardware_id).await?;
    let palm_type = req.palm_type.clone().unwrap_or_else(|| "any".to_owned());
    let new = NewChallenge {
        kind: "identify",
        external_user_id: None,
        palm_type,
        top_k: Some(req.top_k.unwrap_or(5)),
        metadata: metadata(req.metadata),
    };
    let c = create(state, caller.tenant_id, &device, new).await?;
    Ok(super::views::challenge(&c))
}

/// A challenge of the tenant, expired on the spot if its time has passed.
pub(crate) async fn load(state: &AppState, tenant: Uuid, id: Uuid) -> ApiResult<Challenge> {
    let mut c = state
        .store
        .get_challenge(tenant, id)
        .await?
        .ok_or(ApiError::NotFound("challenge"))?;
    let now = now_micros();
    if c.status == "pending" && c.expires_at <= now {
        state
            .store
            .finish_challenge(c.id, "expired", None, c.expires_at)
            .await?;
        c = state
            .store
            .get_challenge(tenant, id)
            .await?
            .ok_or(ApiError::NotFound("challenge"))?;
    }
    Ok(c)
}

/// The scope a challenge type is read with.
fn scope_of(kind: &str) -> &'static str {
    match kind {
        "enroll" => "enroll",
        "verify" => "verify",
        _ => "identify",
    }
}

/// `GET /v1/challenges/{id}`: needs the scope of the challenge's type.
pub(crate) async fn get(state: &AppState, caller: &Caller, id: Uuid) -> ApiResult<Value> {
    let c = load(state, caller.tenant_id, id).await?;
    caller.require(scope_of(&c.kind))?;
    Ok(super::views::challenge(&c))
}

/// `GET /v1/challenges?type=&status=&offset=&limit=`.
pub(crate) async fn list(
    state: &AppState,
    caller: &Caller,
    query: &HashMap<String, String>,
) -> ApiResult<Value> {
    let page = Pagination::from_query(query)?;
    let mut errors = Vec::new();
    let kind = query.get("type").filter(|s| !s.is_empty()).cloned();
    if let Some(k) = &kind {
        if !matches!(k.as_str(), "enroll" | "verify" | "identify") {
            errors.push(FieldError::new(
                "type",
                "must be enroll, verify or identify",
            ));
        }
    }
    let status = query.get("status").filter(|s| !s.is_empty()).cloned();
    if let Some(s) = &status {
        if !matches!(
            s.as_str(),
            "pending" | "completed" | "failed" | "cancelled" | "expired"
        ) {
            errors.push(FieldError::new(
                "status",
                "must be pending, completed, failed, cancelled or expired",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    match &kind {
        Some(k) => caller.require(scope_of(k))?,
        None => {
            if !["enroll", "verify", "identify"]
                .iter()
                .any(|s| caller.scopes.iter().any(|c| c == s))
            {
                return Err(ApiError::InsufficientScope("enroll"));
            }
        }
    }
    state.store.expire_challenges(now_micros()).await?;
    let filter = ChallengeFilter { kind, status };
    let (rows, total) = state
        .store
        .list_challenges(caller.tenant_id, &filter, page.offset, page.limit)
        .await?;
    Ok(page.envelope(rows.iter().map(super::views::challenge).collect(), total))
}

/// `GET /v1/device/challenges?wait_ms=`: the device's pending challenges, waiting up to
/// `wait_ms` for one to arrive.
pub(crate) async fn poll(
    state: &AppState,
    device: &Device,
    query: &HashMap<String, String>,
) -> ApiResult<Value> {
    let wait_ms = match query.get("wait_ms") {
        None => 0,
        Some(raw) => match raw.parse::<u64>() {
            Ok(v) if v <= 30_000 => v,
            _ => {
                return Err(ApiError::field(
                    "wait_ms",
                    "must be an integer from 0 to 30000",
                ))
            }
        },
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let notify = state.hub.notifier(device.id);
    let mut shutdown = state.shutdown.clone();
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pending = state
            .store
            .pending_for_device(device.id, now_micros())
            .await?;
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(Value::Array(
                pending
                    .iter()
                    .map(super::views::scanner_challenge)
                    .collect(),
            ));
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A challenge addressed to this scanner: anything else (another device's or tenant's) is 404.
pub(crate) async fn load_for_device(
    state: &AppState,
    device: &Device,
    id: Uuid,
) -> ApiResult<Challenge> {
    let c = load(state, device.tenant_id, id).await?;
    if c.device_id != device.id {
        return Err(ApiError::NotFound("challenge"));
    }
    Ok(c)
}

/// 409 unless pending, 410 when expired.
pub(crate) fn ensure_pending(c: &Challenge) -> ApiResult<()> {
    match c.status.as_str() {
        "pending" => Ok(()),
        "expired" => Err(ApiError::gone(
            "challenge_expired",
            "the challenge has expired",
        )),
        other => Err(ApiError::conflict(
            "challenge_not_pending",
            format!("the challenge is {other}"),
        )),
    }
}

/// `POST /v1/device/challenges/{id}/cancel`.
pub(crate) async fn cancel(
    state: &AppState,
    device: &Device,
    id: Uuid,
    req: CancelChallenge,
) -> ApiResult<Value> {
    let c = load_for_device(state, device, id).await?;
    ensure_pending(&c)?;
    if !state
        .store
        .finish_challenge(c.id, "cancelled", Some(&req.reason), now_micros())
        .await?
    {
        let c = load_for_device(state, device, id).await?;
        ensure_pending(&c)?;
    }
    let c = load_for_device(state, device, id).await?;
    Ok(json!(super::views::challenge(&c)))
}
