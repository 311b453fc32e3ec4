//! Captures: the scanner's templates complete a challenge with an enrollment, a 1:1
//! verification or a 1:N identification.
//!
//! An enrollment seals the template(s) under the tenant's data key and commits them with the
//! palms, their template log entries, the challenge's result and its event in one
//! transaction; the node's gallery then applies the entries before the capture is answered.
//! A verification or identification first makes sure the gallery has applied everything
//! acknowledged before its challenge was created.

mod duplicates;
mod results;
mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palmlink_engine::{
    Comparison, GalleryError, MatchSettings, RecordIds, SearchFilter, SearchMode, SearchQuery,
};
use palmlink_store::{
    Actor, Challenge, ChallengeEnd, ChallengeKind, ChallengePalm, ChallengeStatus, Device,
    DuplicateCheck, EnrollmentCommit, FailureReason, Palm, PalmType, Store, StoreError,
};
use serde::Serialize;
use uuid::Uuid;

pub use duplicates::Duplicate;
pub use results::{
    EnrollmentComplete, IdentificationComplete, IdentifiedCandidate, SearchReport,
    VerificationComplete,
};
pub(crate) use template::decode_template;
pub use template::{CaptureItem, CaptureReport, CaptureSubmission, TemplateBody};

use crate::audit::record;
use crate::challenges::{ensure_pending, Challenges};
use crate::clock::{rfc3339, Clock};
use crate::events::{
    outbox_event, ENROLLMENT_COMPLETE, IDENTIFICATION_COMPLETE, VERIFICATION_COMPLETE,
};
use crate::galleries::{palm_side, palm_type, Galleries, NewRow};
use crate::settings::{stored_settings, Settings};
use crate::vault::Vault;
use crate::wakeups::Wakeups;
use crate::{DomainError, DomainResult};

/// Longest wait of a decision for the node's gallery to catch up with its challenge.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
use template::{probes, refused, reports, Probe};

/// Completes challenges with the scanners' captures.
pub struct Captures {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    galleries: Arc<Galleries>,
    vault: Arc<Vault>,
    challenges: Arc<Challenges>,
    settings: Arc<Settings>,
    wakeups: Arc<Wakeups>,
}

impl Captures {
    /// Captures on `store`, templates in `galleries`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        galleries: Arc<Galleries>,
        vault: Arc<Vault>,
        challenges: Arc<Challenges>,
        settings: Arc<Settings>,
        wakeups: Arc<Wakeups>,
    ) -> Captures {
        Captures {
            store,
            clock,
            galleries,
            vault,
            challenges,
            settings,
            wakeups,
        }
    }

    /// Completes one of `device`'s pending challenges with its captures; returns the
    /// challenge as it now stands (completed with its result, or failed with a reason).
    pub async fn submit(
        &self,
        device: &Device,
        id: Uuid,
        body: CaptureSubmission,
    ) -> DomainResult<Challenge> {
        let started = Instant::now();
        let challenge = self.challenges.load_for_device(device, id).await?;
        ensure_pending(&challenge)?;
        let probes = probes(&challenge, &body)?;
        let reports = reports(&body);
        let captures = serde_json::to_value(&reports).map_err(DomainError::internal)?;
        // The tenant's settings, read once for the whole capture.
        let in_force = self.settings.in_force(challenge.tenant_id).await?;
        if let Some(reason) = refused(&in_force.trust, &reports) {
            // Below the tenant's minimum: nothing is enrolled, nothing is compared.
            if !self
                .challenges
                .fail_on_capture(&challenge, reason, captures, None)
                .await?
            {
                return Err(self.lost_race(&challenge).await);
            }
            return self.challenges.load_for_device(device, id).await;
        }
        let vendor = body.vendor.unwrap_or_else(|| "unknown".to_owned());
        let taken = Taken {
            vendor: &vendor,
            captures,
            started,
            duplicate_check: in_force.trust.duplicate_check,
            settings: in_force.matching,
        };
        let completion = match challenge.kind {
            ChallengeKind::Enroll => self.enroll(&challenge, probes, taken).await?,
            ChallengeKind::Verify => self.verify(&challenge, probes, taken).await?,
            ChallengeKind::Identify => self.identify(&challenge, probes, taken).await?,
        };
        Ok(match completion {
            // What this request committed, as a read would return it.
            Some(done) => {
                self.wakeups.events_written();
                Challenge {
                    status: ChallengeStatus::Completed,
                    result: Some(done.result),
                    captures: done.captures,
                    finished_at: Some(done.at),
                    ..challenge
                }
            }
            // A failure recorded with a reason: read back what is stored.
            None => self.challenges.load_for_device(device, id).await?,
        })
    }

    /// Commits the result of a verify or identify challenge with its captures and event.
    async fn complete(
        &self,
        c: &Challenge,
        event_type: &str,
        data: &impl Serialize,
        captures: serde_json::Value,
        audit: Decision,
        now: i64,
    ) -> DomainResult<Option<Completion>> {
        let result = serde_json::to_value(data).map_err(DomainError::internal)?;
        let audit = record(
            c.tenant_id,
            now,
            Actor::device(c.device_id),
            audit.action,
            ("challenge", c.id.to_string()),
            audit.outcome,
            audit.details,
        );
        let end = ChallengeEnd {
            audit,
            id: c.id,
            status: ChallengeStatus::Completed,
            failure_reason: None,
            event: outbox_event(c.tenant_id, event_type, &result, now),
            result: Some(result),
            captures: Some(captures),
            at: now,
        };
        if !self.store.complete_challenge(&end).await? {
            return Err(self.lost_race(c).await);
        }
        Ok(Some(Completion {
            result: end.result.unwrap_or_default(),
            captures: end.captures,
            at: now,
        }))
    }

    /// Why a challenge could not be completed after all (it changed meanwhile).
    async fn lost_race(&self, c: &Challenge) -> DomainError {
        match self.challenges.load(c.tenant_id, c.id).await {
            Ok(now) => ensure_pending(&now).err().unwrap_or_else(|| {
                DomainError::conflict("challenge_not_pending", "the challenge changed meanwhile")
            }),
            Err(e) => e,
        }
    }

    /// Ends a challenge without a decision; the caller reads back what is stored.
    async fn fail(&self, c: &Challenge, reason: FailureReason) -> DomainResult<Option<Completion>> {
        self.challenges.fail(c, reason).await?;
        Ok(None)
    }

    /// Seals the template(s), commits them with palms, log entries, result and event, and
    /// applies them to this node's gallery.
    async fn enroll(
        &self,
        c: &Challenge,
        probes: Vec<Probe>,
        taken: Taken<'_>,
    ) -> DomainResult<Option<Completion>> {
        let vendor = taken.vendor;
        let external = c.external_user_id.clone().unwrap_or_default();
        let duplicates = self
            .duplicates(
                c,
                &external,
                &probes,
                taken.duplicate_check,
                &taken.settings,
            )
            .await?;
        if taken.duplicate_check == DuplicateCheck::Reject && !duplicates.is_empty() {
            let found = serde_json::to_value(&duplicates).map_err(DomainError::internal)?;
            if !self
                .challenges
                .fail_on_capture(c, FailureReason::Duplicate, taken.captures, Some(found))
                .await?
            {
                return Err(self.lost_race(c).await);
            }
            return Ok(None);
        }
        let now = self.clock.now();
        let user = self.store.ensure_user(c.tenant_id, &external, now).await?;
        let mut palms = Vec::with_capacity(probes.len());
        let mut rows = Vec::with_capacity(probes.len());
        for probe in probes {
            // Time-ordered: new palms land at the end of the id indexes.
            let feature = Uuid::now_v7();
            let sealed = self
                .vault
                .seal_template(c.tenant_id, user.id, feature, &probe.template)
                .await?;
            palms.push((
                Palm {
                    feature_id: feature,
                    tenant_id: c.tenant_id,
                    user_id: user.id,
                    palm_type: probe.palm,
                    enrolled_at: now,
                    vendor: vendor.to_owned(),
                    challenge_id: c.id,
                },
                sealed,
            ));
            rows.push(NewRow {
                ids: RecordIds {
                    feature_id: feature.as_u128(),
                    user_key: user.id.as_u128(),
                    palm: palm_side(probe.palm),
                },
                template: probe.template,
            });
        }
        let both = c.palm_type == ChallengePalm::Both;
        let data = EnrollmentComplete {
            user_id: user.id,
            external_user_id: external,
            feature_id: (!both)
                .then(|| palms.first().map(|p| p.0.feature_id))
                .flatten(),
            feature_ids: both.then(|| {
                palms
                    .iter()
                    .map(|(p, _)| (p.palm_type, p.feature_id))
                    .collect::<BTreeMap<_, _>>()
            }),
            palm_type: c.palm_type,
            hardware_id: c.hardware_id.clone(),
            challenge_id: c.id,
            enrolled_at: rfc3339(now),
            vendor: vendor.to_owned(),
            captures: taken.captures.clone(),
            duplicates,
            metadata: c.metadata.clone(),
        };
        let result = serde_json::to_value(&data).map_err(DomainError::internal)?;
        let audit = record(
            c.tenant_id,
            now,
            Actor::device(c.device_id),
            "enrollment.completed",
            ("challenge", c.id.to_string()),
            "success",
            serde_json::json!({
                "user_id": data.user_id,
                "external_user_id": data.external_user_id,
                "feature_id": data.feature_id,
                "feature_ids": data.feature_ids,
                "palm_type": data.palm_type,
                "hardware_id": data.hardware_id,
                "vendor": data.vendor,
                "captures": data.captures,
                "duplicates": data.duplicates,
            }),
        );
        let commit = EnrollmentCommit {
            audit,
            challenge_id: c.id,
            palms,
            event: outbox_event(c.tenant_id, ENROLLMENT_COMPLETE, &result, now),
            result,
            captures: taken.captures,
        };
        match self.store.complete_enrollment(&commit, now).await {
            Ok(Some(head)) => {
                // Durable in the database: what follows only brings this node's gallery up
                // to date, and a failure here is repaired by the next catch-up.
                if let Err(e) = self.galleries.apply_inserts(c.tenant_id, rows, head).await {
                    tracing::error!(tenant = %c.tenant_id, error = %e, "an enrollment is committed but this node's gallery did not take it yet");
                }
                self.wakeups.templates_changed(c.tenant_id);
                Ok(Some(Completion {
                    result: commit.result,
                    captures: Some(commit.captures),
                    at: now,
                }))
            }
            Ok(None) => Err(self.lost_race(c).await),
            Err(StoreError::Conflict(_)) => {
                self.challenges
                    .fail(c, FailureReason::AlreadyEnrolled)
                    .await?;
                Err(DomainError::conflict(
                    "already_enrolled",
                    "that palm is already enrolled for this user",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Other users' palms that the enrollment's probes match (none when the check is off),
    /// searched once the gallery has applied every enrollment acknowledged so far.
    async fn duplicates(
        &self,
        c: &Challenge,
        external: &str,
        probes: &[Probe],
        check: DuplicateCheck,
        settings: &MatchSettings,
    ) -> DomainResult<Vec<Duplicate>> {
        if check == DuplicateCheck::Off {
            return Ok(Vec::new());
        }
        let own = self
            .store
            .get_user_with_palms(c.tenant_id, external)
            .await?
            .map(|(u, _)| u.id);
        let head = self.store.log_head(c.tenant_id).await?;
        self.galleries
            .ensure(c.tenant_id, head, CATCH_UP_WAIT)
            .await?;
        let gallery = self.galleries.get(c.tenant_id).await?;
        duplicates::find(
            &self.store,
            c.tenant_id,
            gallery,
            probes,
            settings.clone(),
            own,
        )
        .await
    }

    /// 1:1 against the user's own template(s); with several, the best comparison decides.
    async fn verify(
        &self,
        c: &Challenge,
        probes: Vec<Probe>,
        taken: Taken<'_>,
    ) -> DomainResult<Option<Completion>> {
        let (vendor, started) = (taken.vendor, taken.started);
        let external = c.external_user_id.clone().unwrap_or_default();
        let (user, palms) = match self
            .store
            .get_user_with_palms(c.tenant_id, &external)
            .await?
        {
            Some((user, palms)) => (Some(user), palms),
            None => (None, Vec::new()),
        };
        let Some(probe) = probes.into_iter().next() else {
            return Err(DomainError::field("captures", "one capture is required"));
        };
        // A named palm is compared with that palm's template; with `any`, with every template.
        let targets: Vec<Palm> = palms
            .into_iter()
            .filter(|p| match c.palm_type {
                ChallengePalm::Left => p.palm_type == PalmType::Left,
                ChallengePalm::Right => p.palm_type == PalmType::Right,
                ChallengePalm::Any | ChallengePalm::Both => true,
            })
            .collect();
        let (Some(user), false) = (user, targets.is_empty()) else {
            return self.fail(c, FailureReason::UserNotEnrolled).await;
        };
        let settings = &taken.settings;
        self.galleries
            .ensure(c.tenant_id, c.log_position, CATCH_UP_WAIT)
            .await?;
        let gallery = self.galleries.get(c.tenant_id).await?;
        // A 1:1 comparison reads one mapped row and takes well under a microsecond: it runs
        // inline rather than paying a hand-off to the blocking pool.
        let mut results: Vec<(PalmType, Comparison)> = Vec::with_capacity(targets.len());
        for p in &targets {
            let Some(row) = gallery.row_of(p.feature_id.as_u128()) else {
                tracing::error!(feature_id = %p.feature_id, "ENROLLMENT WITHOUT TEMPLATE: not in this node's gallery");
                continue;
            };
            match gallery.compare(&probe.template, row, settings) {
                Ok(cmp) => results.push((p.palm_type, cmp)),
                Err(GalleryError::Deleted(_) | GalleryError::UnknownRow(_)) => {
                    tracing::error!(
                        row = row.0,
                        "ENROLLMENT WITHOUT TEMPLATE: skipped in verification"
                    );
                }
                Err(e) => return Err(DomainError::internal(e)),
            }
        }
        let Some((palm, best)) = results.into_iter().max_by(|a, b| {
            a.1.matched
                .cmp(&b.1.matched)
                .then(a.1.mean.total_cmp(&b.1.mean))
        }) else {
            return self.fail(c, FailureReason::TemplateMissing).await;
        };
        let now = self.clock.now();
        let data = VerificationComplete {
            challenge_id: c.id,
            user_id: user.id,
            external_user_id: external,
            hardware_id: c.hardware_id.clone(),
            palm_type: palm,
            matched: best.matched,
            result: if best.matched { "match" } else { "no_match" },
            scores: scores(&best),
            thresholds: settings
                .thresholds()
                .iter()
                .map(|t| f64::from(*t))
                .collect(),
            match_policy: stored_settings(settings).policy.as_str(),
            latency_ms: started.elapsed().as_millis() as u64,
            vendor: vendor.to_owned(),
            verified_at: rfc3339(now),
            captures: taken.captures.clone(),
            metadata: c.metadata.clone(),
        };
        let audit = Decision {
            action: "verification.completed",
            outcome: data.result,
            details: serde_json::json!({
                "user_id": data.user_id,
                "external_user_id": data.external_user_id,
                "hardware_id": data.hardware_id,
                "palm_type": data.palm_type,
                "matched": data.matched,
                "scores": data.scores,
                "thresholds": data.thresholds,
                "match_policy": data.match_policy,
                "captures": data.captures,
            }),
        };
        self.complete(c, VERIFICATION_COMPLETE, &data, taken.captures, audit, now)
            .await
    }

    /// 1:N over the tenant's gallery, restricted to the presented palm.
    async fn identify(
        &self,
        c: &Challenge,
        probes: Vec<Probe>,
        taken: Taken<'_>,
    ) -> DomainResult<Option<Completion>> {
        let (vendor, started) = (taken.vendor, taken.started);
        let Some(probe) = probes.into_iter().next() else {
            return Err(DomainError::field("captures", "one capture is required"));
        };
        let settings = taken.settings;
        self.galleries
            .ensure(c.tenant_id, c.log_position, CATCH_UP_WAIT)
            .await?;
        let gallery = self.galleries.get(c.tenant_id).await?;
        let in_force = stored_settings(&settings);
        let query = SearchQuery {
            top_k: c.top_k.unwrap_or(5).clamp(1, 50) as usize,
            settings,
            filter: SearchFilter {
                palm: Some(palm_side(probe.palm)),
                user_key: None,
            },
            mode: SearchMode::Auto,
        };
        let template = probe.template;
        let outcome = run_blocking(move || gallery.search(&template, &query))
            .await?
            .map_err(DomainError::internal)?;
        let search_ms = started.elapsed().as_millis() as u64;
        let user_ids: Vec<Uuid> = outcome
            .candidates
            .iter()
            .map(|cand| Uuid::from_u128(cand.ids.user_key))
            .collect();
        let users: HashMap<Uuid, String> = self
            .store
            .get_users_by_ids(c.tenant_id, &user_ids)
            .await?
            .into_iter()
            .map(|u| (u.id, u.external_user_id))
            .collect();
        let candidates: Vec<IdentifiedCandidate> = outcome
            .candidates
            .iter()
            .filter_map(|cand| {
                let user_id = Uuid::from_u128(cand.ids.user_key);
                users.get(&user_id).map(|ext| IdentifiedCandidate {
                    user_id,
                    external_user_id: ext.clone(),
                    palm_type: palm_type(cand.ids.palm),
                    confidence: f64::from(cand.confidence),
                    scores: scores(&cand.comparison),
                    matched: cand.comparison.matched,
                })
            })
            .collect();
        let now = self.clock.now();
        let data = IdentificationComplete {
            challenge_id: c.id,
            hardware_id: c.hardware_id.clone(),
            palm_type: probe.palm,
            matched: candidates.iter().any(|cand| cand.matched),
            candidates,
            search: SearchReport {
                mode: if outcome.mode == SearchMode::Ann {
                    "ann"
                } else {
                    "exact"
                },
                gallery_size: outcome.gallery_size,
                latency_ms: search_ms,
            },
            vendor: vendor.to_owned(),
            identified_at: rfc3339(now),
            captures: taken.captures.clone(),
            metadata: c.metadata.clone(),
        };
        let candidates: Vec<serde_json::Value> = data
            .candidates
            .iter()
            .map(|cand| {
                serde_json::json!({
                    "user_id": cand.user_id,
                    "external_user_id": cand.external_user_id,
                    "palm_type": cand.palm_type,
                    "confidence": cand.confidence,
                    "scores": cand.scores,
                    "matched": cand.matched,
                })
            })
            .collect();
        let audit = Decision {
            action: "identification.completed",
            outcome: if data.matched { "match" } else { "no_match" },
            details: serde_json::json!({
                "hardware_id": data.hardware_id,
                "palm_type": data.palm_type,
                "matched": data.matched,
                "candidates": candidates,
                "thresholds": in_force.thresholds,
                "match_policy": in_force.policy.as_str(),
                "search": {"mode": data.search.mode, "gallery_size": data.search.gallery_size},
                "captures": data.captures,
            }),
        };
        self.complete(
            c,
            IDENTIFICATION_COMPLETE,
            &data,
            taken.captures,
            audit,
            now,
        )
        .await
    }
}

/// The audit entry of a decision: its action, outcome and details (scores, thresholds,
/// policy, quality, liveness; never a template).
struct Decision {
    action: &'static str,
    outcome: &'static str,
    details: serde_json::Value,
}

/// What the scanner sent besides the templates.
struct Taken<'a> {
    vendor: &'a str,
    /// The captures' quality and liveness.
    captures: serde_json::Value,
    /// When the capture was received.
    started: Instant,
    /// The tenant's duplicate-identity check.
    duplicate_check: DuplicateCheck,
    /// The tenant's thresholds and decision policy.
    settings: MatchSettings,
}

/// A challenge this request completed: the stored result, captures and completion time.
struct Completion {
    result: serde_json::Value,
    captures: Option<serde_json::Value>,
    at: i64,
}

fn scores(c: &Comparison) -> Vec<f64> {
    c.scores.iter().map(|s| f64::from(*s)).collect()
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> DomainResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DomainError::internal)
}
