//! Challenges: created by the integrator, delivered to the scanner (long polling), looked
//! up, cancelled and expired. Captures that complete them are in [`crate::capture`].

use std::sync::Arc;
use std::time::Duration;

use palmlink_store::{
    Actor, Challenge, ChallengeEnd, ChallengeFilter, ChallengeKind, ChallengePalm, ChallengeStatus,
    Device, DeviceStatus, FailureReason, PalmType, Scope, Store,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::clock::{Clock, SECOND};
use crate::ends::{expired_record, failed_audit, ChallengeFailed};
use crate::events::{outbox_event, CHALLENGE_FAILED};
use crate::hub::DeviceHub;
use crate::tokens::Caller;
use crate::validate::{check_len, check_metadata, Listing, Page};
use crate::wakeups::Wakeups;
use crate::{DomainError, DomainResult, FieldError};

/// Longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest `top_k` of an identification.
pub const MAX_TOP_K: i64 = 50;

/// An enrollment or verification to create (`POST /v1/enroll`, `/v1/enroll/both`,
/// `/v1/verify`).
#[derive(Clone, Debug, Deserialize)]
pub struct SubjectChallenge {
    /// The tenant's identifier of the person (alias `user_id`).
    #[serde(alias = "user_id")]
    pub external_user_id: String,
    /// Hardware id of the paired scanner that captures.
    pub hardware_id: String,
    /// Which palm (required for a one-palm enrollment; for a verification, defaults to
    /// what the user enrolled).
    #[serde(default)]
    pub palm_type: Option<PalmType>,
    /// Opaque object echoed on the challenge and its result.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl SubjectChallenge {
    fn validate(&self) -> DomainResult<()> {
        let mut errors = Vec::new();
        check_len(&mut errors, "external_user_id", &self.external_user_id, 255);
        check_len(&mut errors, "hardware_id", &self.hardware_id, 128);
        check_metadata(&mut errors, &self.metadata);
        DomainError::check(errors)
    }
}

/// An identification to create (`POST /v1/identify`).
#[derive(Clone, Debug, Deserialize)]
pub struct IdentifyChallenge {
    /// Hardware id of the paired scanner that captures.
    pub hardware_id: String,
    /// Restrict the search to one palm.
    #[serde(default)]
    pub palm_type: Option<PalmType>,
    /// Candidates to return, 1-50 (default 5).
    #[serde(default, deserialize_with = "crate::validate::integer")]
    pub top_k: Option<i64>,
    /// Opaque object echoed on the challenge and its result.
    #[serde(default)]
    pub metadata: Option<Value>,
}

impl IdentifyChallenge {
    fn validate(&self) -> DomainResult<()> {
        let mut errors = Vec::new();
        check_len(&mut errors, "hardware_id", &self.hardware_id, 128);
        if self.top_k.is_some_and(|k| !(1..=MAX_TOP_K).contains(&k)) {
            errors.push(FieldError::new("top_k", "must be from 1 to 50"));
        }
        check_metadata(&mut errors, &self.metadata);
        DomainError::check(errors)
    }
}

/// A scanner's cancellation (`POST /v1/device/challenges/{id}/cancel`).
#[derive(Clone, Debug, Deserialize)]
pub struct CancelChallenge {
    /// `user_cancelled`, `quality`, `timeout` or `spoof`.
    pub reason: FailureReason,
}

impl CancelChallenge {
    /// The reasons a scanner may give.
    pub const REASONS: [FailureReason; 4] = [
        FailureReason::UserCancelled,
        FailureReason::Quality,
        FailureReason::Timeout,
        FailureReason::Spoof,
    ];

    fn validate(&self) -> DomainResult<()> {
        if Self::REASONS.contains(&self.reason) {
            Ok(())
        } else {
            Err(DomainError::field(
                "reason",
                "must be user_cancelled, quality, timeout or spoof",
            ))
        }
    }
}

/// The scope a challenge type is read with.
pub fn scope_of(kind: ChallengeKind) -> Scope {
    match kind {
        ChallengeKind::Enroll => Scope::Enroll,
        ChallengeKind::Verify => Scope::Verify,
        ChallengeKind::Identify => Scope::Identify,
    }
}

/// 409 unless pending, 410 when expired.
pub fn ensure_pending(c: &Challenge) -> DomainResult<()> {
    match c.status {
        ChallengeStatus::Pending => Ok(()),
        ChallengeStatus::Expired => Err(DomainError::gone(
            "challenge_expired",
            "the challenge has expired",
        )),
        other => Err(DomainError::conflict(
            "challenge_not_pending",
            format!("the challenge is {other}"),
        )),
    }
}

/// Challenges of the tenants.
pub struct Challenges {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hub: Arc<DeviceHub>,
    wakeups: Arc<Wakeups>,
    challenge_ttl_secs: i64,
    stopping: watch::Receiver<bool>,
}

/// What a new challenge asks for.
struct NewChallenge {
    kind: ChallengeKind,
    external_user_id: Option<String>,
    palm_type: ChallengePalm,
    top_k: Option<i64>,
    metadata: Option<Value>,
}

impl Challenges {
    /// Challenges on `store` living `challenge_ttl_secs`; long polls end early once
    /// `stopping` turns true.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hub: Arc<DeviceHub>,
        wakeups: Arc<Wakeups>,
        challenge_ttl_secs: i64,
        stopping: watch::Receiver<bool>,
    ) -> Challenges {
        Challenges {
            store,
            clock,
            hub,
            wakeups,
            challenge_ttl_secs,
            stopping,
        }
    }

    /// An enrollment of one palm (`both == false`) or of both.
    pub async fn enroll(
        &self,
        caller: &Caller,
        req: SubjectChallenge,
        both: bool,
    ) -> DomainResult<Challenge> {
        caller.require(Scope::Enroll)?;
        req.validate()?;
        let palm_type = match (both, req.palm_type) {
            (true, _) => ChallengePalm::Both,
            (false, Some(PalmType::Left)) => ChallengePalm::Left,
            (false, Some(PalmType::Right)) => ChallengePalm::Right,
            (false, None) => {
                return Err(DomainError::field(
                    "palm_type",
                    "is required (left or right)",
                ))
            }
        };
        let device = self
            .capturing_device(caller.tenant_id, &req.hardware_id)
            .await?;
        if let Some((_, palms)) = self
            .store
            .get_user_with_palms(caller.tenant_id, &req.external_user_id)
            .await?
        {
            if palms
                .iter()
                .any(|p| both || Some(p.palm_type) == req.palm_type)
            {
                return Err(DomainError::conflict(
                    "already_enrolled",
                    "that palm is already enrolled for this user",
                ));
            }
        }
        let new = NewChallenge {
            kind: ChallengeKind::Enroll,
            external_user_id: Some(req.external_user_id),
            palm_type,
            top_k: None,
            metadata: req.metadata,
        };
        self.create(caller.tenant_id, &device, new).await
    }

    /// A 1:1 verification against the user's enrolled palm(s).
    pub async fn verify(&self, caller: &Caller, req: SubjectChallenge) -> DomainResult<Challenge> {
        caller.require(Scope::Verify)?;
        req.validate()?;
        let device = self
            .capturing_device(caller.tenant_id, &req.hardware_id)
            .await?;
        let (_, palms) = self
            .store
            .get_user_with_palms(caller.tenant_id, &req.external_user_id)
            .await?
            .ok_or(DomainError::NotFound("enrolled user"))?;
        let palm_type = match (req.palm_type, palms.as_slice()) {
            (_, []) => return Err(DomainError::NotFound("enrolled user")),
            (Some(p), _) if palms.iter().any(|e| e.palm_type == p) => match p {
                PalmType::Left => ChallengePalm::Left,
                PalmType::Right => ChallengePalm::Right,
            },
            (Some(_), _) => return Err(DomainError::NotFound("enrolled palm")),
            (None, [only]) => match only.palm_type {
                PalmType::Left => ChallengePalm::Left,
                PalmType::Right => ChallengePalm::Right,
            },
            (None, _) => ChallengePalm::Any,
        };
        let new = NewChallenge {
            kind: ChallengeKind::Verify,
            external_user_id: Some(req.external_user_id),
            palm_type,
            top_k: None,
            metadata: req.metadata,
        };
        self.create(caller.tenant_id, &device, new).await
    }

    /// A 1:N identification over the tenant's gallery.
    pub async fn identify(
        &self,
        caller: &Caller,
        req: IdentifyChallenge,
    ) -> DomainResult<Challenge> {
        caller.require(Scope::Identify)?;
        req.validate()?;
        let device = self
            .capturing_device(caller.tenant_id, &req.hardware_id)
            .await?;
        let palm_type = match req.palm_type {
            Some(PalmType::Left) => ChallengePalm::Left,
            Some(PalmType::Right) => ChallengePalm::Right,
            None => ChallengePalm::Any,
        };
        let new = NewChallenge {
            kind: ChallengeKind::Identify,
            external_user_id: None,
            palm_type,
            top_k: Some(req.top_k.unwrap_or(5)),
            metadata: req.metadata,
        };
        self.create(caller.tenant_id, &device, new).await
    }

    /// The paired device with this hardware id: 404 when unknown, 400 when not paired.
    async fn capturing_device(&self, tenant: Uuid, hardware_id: &str) -> DomainResult<Device> {
        let device = self
            .store
            .find_device_by_hardware(tenant, hardware_id)
            .await?
            .ok_or(DomainError::NotFound("hardware_id"))?;
        if device.status != DeviceStatus::Paired {
            return Err(DomainError::rejected(
                "device_not_paired",
                "the device is not paired or has been revoked",
            ));
        }
        Ok(device)
    }

    async fn create(
        &self,
        tenant: Uuid,
        device: &Device,
        new: NewChallenge,
    ) -> DomainResult<Challenge> {
        let now = self.clock.now();
        // Every enrollment and erasure acknowledged before now is at or below this head.
        let log_position = match new.kind {
            ChallengeKind::Enroll => 0,
            ChallengeKind::Verify | ChallengeKind::Identify => self.store.log_head(tenant).await?,
        };
        let challenge = Challenge {
            // Time-ordered: new challenges land at the end of the id index.
            id: Uuid::now_v7(),
            tenant_id: tenant,
            kind: new.kind,
            device_id: device.id,
            hardware_id: device.hardware_id.clone().unwrap_or_default(),
            external_user_id: new.external_user_id,
            palm_type: new.palm_type,
            top_k: new.top_k,
            status: ChallengeStatus::Pending,
            metadata: new.metadata.unwrap_or(Value::Null),
            result: None,
            failure_reason: None,
            created_at: now,
            expires_at: now + self.challenge_ttl_secs * SECOND,
            finished_at: None,
            log_position,
            captures: None,
        };
        self.store.create_challenge(&challenge).await?;
        self.wakeups.device_changed(device.id);
        Ok(challenge)
    }

    /// A challenge of the tenant, expired on the spot if its time has passed.
    pub async fn load(&self, tenant: Uuid, id: Uuid) -> DomainResult<Challenge> {
        let c = self
            .store
            .get_challenge(tenant, id)
            .await?
            .ok_or(DomainError::NotFound("challenge"))?;
        if c.status == ChallengeStatus::Pending && c.expires_at <= self.clock.now() {
            let at = c.expires_at;
            let end = End::new(
                ChallengeStatus::Expired,
                FailureReason::Expired,
                Actor::system(),
            );
            self.end(&c, end, None, at).await?;
            return self
                .store
                .get_challenge(tenant, id)
                .await?
                .ok_or(DomainError::NotFound("challenge"));
        }
        Ok(c)
    }

    /// A challenge addressed to this scanner: anything else (another device's or tenant's)
    /// is 404.
    pub async fn load_for_device(&self, device: &Device, id: Uuid) -> DomainResult<Challenge> {
        let c = self.load(device.tenant_id, id).await?;
        if c.device_id != device.id {
            return Err(DomainError::NotFound("challenge"));
        }
        Ok(c)
    }

    /// One challenge, read with the scope of its type.
    pub async fn get(&self, caller: &Caller, id: Uuid) -> DomainResult<Challenge> {
        let c = self.load(caller.tenant_id, id).await?;
        caller.require(scope_of(c.kind))?;
        Ok(c)
    }

    /// A page of the tenant's challenges, newest first. With a type, its scope is needed;
    /// without, any of the three challenge scopes.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: ChallengeFilter,
        page: Page,
    ) -> DomainResult<Listing<Challenge>> {
        match filter.kind {
            Some(kind) => caller.require(scope_of(kind))?,
            None => {
                let scopes = [Scope::Enroll, Scope::Verify, Scope::Identify];
                if !scopes.iter().any(|s| caller.has(*s)) {
                    return Err(DomainError::MissingScope(Scope::Enroll));
                }
            }
        }
        self.store
            .expire_challenges(self.clock.now(), &expired_record)
            .await?;
        let (rows, total) = self
            .store
            .list_challenges(caller.tenant_id, &filter, page.offset, page.limit)
            .await?;
        Ok(Listing { rows, total, page })
    }

    /// The device's pending challenges, waiting up to `wait` (at most [`MAX_WAIT`]) for one
    /// to arrive; empty at the deadline or when the service stops.
    pub async fn poll(&self, device: &Device, wait: Duration) -> DomainResult<Vec<Challenge>> {
        if wait > MAX_WAIT {
            return Err(DomainError::field(
                "wait_ms",
                "must be an integer from 0 to 30000",
            ));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.hub.notifier(device.id);
        let mut stopping = self.stopping.clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let pending = self
                .store
                .pending_for_device(device.id, self.clock.now())
                .await?;
            if !pending.is_empty() || tokio::time::Instant::now() >= deadline || *stopping.borrow()
            {
                return Ok(pending);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// Cancels a pending challenge from its scanner.
    pub async fn cancel(
        &self,
        device: &Device,
        id: Uuid,
        req: CancelChallenge,
    ) -> DomainResult<Challenge> {
        req.validate()?;
        let c = self.load_for_device(device, id).await?;
        ensure_pending(&c)?;
        let now = self.clock.now();
        let end = End::new(
            ChallengeStatus::Cancelled,
            req.reason,
            Actor::device(device.id),
        );
        if !self.end(&c, end, None, now).await? {
            // It ended meanwhile: say how.
            ensure_pending(&self.load_for_device(device, id).await?)?;
        }
        self.load_for_device(device, id).await
    }

    /// Ends a pending challenge without a decision; false when it was no longer pending.
    pub async fn fail(&self, c: &Challenge, reason: FailureReason) -> DomainResult<bool> {
        let now = self.clock.now();
        let end = End::new(ChallengeStatus::Failed, reason, Actor::device(c.device_id));
        self.end(c, end, None, now).await
    }

    /// Fails a pending challenge on what its capture showed (`captures`: their quality and
    /// liveness; `duplicates`: other users' matching palms), keeping that as its result.
    pub async fn fail_on_capture(
        &self,
        c: &Challenge,
        reason: FailureReason,
        captures: serde_json::Value,
        duplicates: Option<serde_json::Value>,
    ) -> DomainResult<bool> {
        let now = self.clock.now();
        let found = Finding {
            captures,
            duplicates,
        };
        let end = End::new(ChallengeStatus::Failed, reason, Actor::device(c.device_id));
        self.end(c, end, Some(found), now).await
    }

    /// Ends a pending challenge with `status` and `reason`, firing `challenge.failed` in the
    /// same transaction; false when it was no longer pending.
    async fn end(
        &self,
        c: &Challenge,
        end: End,
        found: Option<Finding>,
        at: i64,
    ) -> DomainResult<bool> {
        let End {
            status,
            reason,
            actor,
        } = end;
        let ended = Challenge {
            status,
            failure_reason: Some(reason),
            finished_at: Some(at),
            captures: found.as_ref().map(|f| f.captures.clone()),
            ..c.clone()
        };
        let mut data = ChallengeFailed::of(&ended);
        data.duplicates = found.and_then(|f| f.duplicates);
        let result = ended
            .captures
            .is_some()
            .then(|| serde_json::to_value(&data))
            .transpose()
            .map_err(DomainError::internal)?;
        let event = outbox_event(c.tenant_id, CHALLENGE_FAILED, &data, at);
        let audit = failed_audit(&ended, &data, actor);
        let done = self
            .store
            .finish_challenge(&ChallengeEnd {
                id: c.id,
                status,
                failure_reason: Some(reason),
                result,
                captures: ended.captures,
                event,
                audit,
                at,
            })
            .await?;
        if done {
            self.wakeups.events_written();
        }
        Ok(done)
    }
}

/// How a challenge ends without a decision, and who ended it.
struct End {
    status: ChallengeStatus,
    reason: FailureReason,
    actor: Actor,
}

impl End {
    fn new(status: ChallengeStatus, reason: FailureReason, actor: Actor) -> End {
        End {
            status,
            reason,
            actor,
        }
    }
}

/// What a capture showed that failed its challenge.
struct Finding {
    captures: serde_json::Value,
    duplicates: Option<serde_json::Value>,
}
