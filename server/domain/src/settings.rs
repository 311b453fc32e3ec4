//! Per-tenant matching settings: the thresholds and the policy every decision applies, and
//! the trust policy (the quality and liveness a capture must show, the duplicate-identity
//! check of enrollments, how many days finished work is kept).

use std::sync::Arc;

use palmlink_engine::{Layout, MatchSettings};
use palmlink_store::{DuplicateCheck, MatchPolicy, MatchingSettings, Scope, Store, TrustPolicy};
use serde::Deserialize;
use uuid::Uuid;

use crate::audit::{actor, record};
use crate::clock::Clock;
use crate::tokens::Caller;
use crate::{DomainError, DomainResult, FieldError};

/// New matching settings (`PUT /v1/settings/matching`).
#[derive(Clone, Debug, Deserialize)]
pub struct SettingsUpdate {
    /// One threshold per block, each in -1..1.
    pub thresholds: Vec<f64>,
    /// `all_thresholds`, `mean` or `k_of_n`.
    pub match_policy: String,
    /// Blocks that must pass under `k_of_n` (1..=blocks).
    #[serde(default, deserialize_with = "crate::validate::integer")]
    pub k: Option<i64>,
    /// Lowest capture quality accepted, 0..1 (absent: unchanged).
    #[serde(default)]
    pub min_quality: Option<f64>,
    /// Lowest liveness score accepted, 0..1 (absent: unchanged).
    #[serde(default)]
    pub min_liveness: Option<f64>,
    /// `off`, `flag` or `reject` (absent: unchanged).
    #[serde(default)]
    pub duplicate_check: Option<DuplicateCheck>,
    /// Days finished challenges, events and delivery logs are kept, 1 to
    /// [`MAX_RETENTION_DAYS`] (absent: unchanged; `null`: kept for ever).
    #[serde(default, deserialize_with = "crate::validate::nullable_integer")]
    pub retention_days: Option<Option<i64>>,
}

/// The longest retention period accepted, in days (a hundred years).
pub const MAX_RETENTION_DAYS: i64 = 36_500;

/// A tenant's settings in force: the decision's thresholds and policy, and the trust policy.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantSettings {
    /// Thresholds and decision policy.
    pub matching: MatchingSettings,
    /// Minimum quality and liveness, duplicate check.
    pub trust: TrustPolicy,
}

impl SettingsUpdate {
    /// The trust policy it asks for, absent values taken from `current`; 422 naming what is
    /// wrong.
    fn trust(&self, current: TrustPolicy, errors: &mut Vec<FieldError>) -> TrustPolicy {
        for (name, v) in [
            ("min_quality", self.min_quality),
            ("min_liveness", self.min_liveness),
        ] {
            if v.is_some_and(|v| !v.is_finite() || !(0.0..=1.0).contains(&v)) {
                errors.push(FieldError::new(name, "must be a number from 0 to 1"));
            }
        }
        let retention_days = match self.retention_days {
            None => current.retention_days,
            Some(None) => None,
            Some(Some(days)) => match u32::try_from(days) {
                Ok(days) if (1..=MAX_RETENTION_DAYS).contains(&i64::from(days)) => Some(days),
                _ => {
                    errors.push(FieldError::new(
                        "retention_days",
                        format!("must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, or null"),
                    ));
                    None
                }
            },
        };
        TrustPolicy {
            min_quality: self.min_quality.unwrap_or(current.min_quality),
            min_liveness: self.min_liveness.unwrap_or(current.min_liveness),
            duplicate_check: self.duplicate_check.unwrap_or(current.duplicate_check),
            retention_days,
        }
    }

    /// The settings it asks for, or 422 naming what is wrong.
    fn parse(&self, current: TrustPolicy) -> DomainResult<TenantSettings> {
        let mut errors = Vec::new();
        let trust = self.trust(current, &mut errors);
        let blocks = Layout::DEFAULT.blocks;
        if self.thresholds.len() != blocks {
            errors.push(FieldError::new(
                "thresholds",
                format!("must hold exactly {blocks} numbers"),
            ));
        }
        for (i, t) in self.thresholds.iter().enumerate() {
            if !t.is_finite() || !(-1.0..=1.0).contains(t) {
                errors.push(FieldError::new(
                    format!("thresholds[{i}]"),
                    "must be a number from -1 to 1",
                ));
            }
        }
        let policy = match self.match_policy.as_str() {
            "all_thresholds" => Some(MatchPolicy::AllThresholds),
            "mean" => Some(MatchPolicy::Mean),
            "k_of_n" => match self.k.and_then(|k| u32::try_from(k).ok()) {
                Some(k) if k >= 1 && k as usize <= blocks => Some(MatchPolicy::KOfN { k }),
                _ => {
                    errors.push(FieldError::new(
                        "k",
                        format!("k_of_n needs k from 1 to {blocks}"),
                    ));
                    None
                }
            },
            _ => {
                errors.push(FieldError::new(
                    "match_policy",
                    "must be all_thresholds, mean or k_of_n",
                ));
                None
            }
        };
        DomainError::check(errors)?;
        let settings = MatchingSettings {
            thresholds: self.thresholds.iter().map(|t| *t as f32).collect(),
            policy: policy.unwrap_or(MatchPolicy::AllThresholds),
        };
        // The engine has the last word on what it can apply.
        engine_settings(&settings).map_err(|e| DomainError::field("thresholds", e))?;
        Ok(TenantSettings {
            matching: settings,
            trust,
        })
    }
}

/// The engine's form of stored settings.
pub fn engine_settings(s: &MatchingSettings) -> Result<MatchSettings, String> {
    let policy = match s.policy {
        MatchPolicy::AllThresholds => palmlink_engine::MatchPolicy::AllThresholds,
        MatchPolicy::Mean => palmlink_engine::MatchPolicy::Mean,
        MatchPolicy::KOfN { k } => palmlink_engine::MatchPolicy::KOfN { k: k as usize },
    };
    MatchSettings::new(s.thresholds.clone(), policy).map_err(|e| e.to_string())
}

/// The stored form of the engine's settings.
pub fn stored_settings(s: &MatchSettings) -> MatchingSettings {
    let policy = match s.policy() {
        palmlink_engine::MatchPolicy::AllThresholds => MatchPolicy::AllThresholds,
        palmlink_engine::MatchPolicy::Mean => MatchPolicy::Mean,
        palmlink_engine::MatchPolicy::KOfN { k } => MatchPolicy::KOfN {
            k: u32::try_from(k).unwrap_or(u32::MAX),
        },
    };
    MatchingSettings {
        thresholds: s.thresholds().to_vec(),
        policy,
    }
}

/// What a tenant's decisions apply: its engine settings and its trust policy.
#[derive(Clone, Debug)]
pub struct InForce {
    /// Thresholds and decision policy, as the engine takes them.
    pub matching: MatchSettings,
    /// Minimum quality and liveness, the duplicate check, retention.
    pub trust: TrustPolicy,
}

/// Matching settings of the tenants.
pub struct Settings {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Settings {
    /// Settings on `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Settings {
        Settings { store, clock }
    }

    /// The settings in force for a tenant, in one read: its engine settings (its own, or
    /// the defaults when it has none or has some the engine cannot apply, which is logged)
    /// and its trust policy.
    pub async fn in_force(&self, tenant: Uuid) -> DomainResult<InForce> {
        let stored = self.store.get_settings(tenant).await?;
        let defaults = || MatchSettings::default_for(Layout::DEFAULT);
        let matching = match stored.matching {
            None => defaults(),
            Some(stored) => engine_settings(&stored).unwrap_or_else(|e| {
                tracing::error!(%tenant, error = %e, "stored matching settings are invalid; using the defaults");
                defaults()
            }),
        };
        Ok(InForce {
            matching,
            trust: stored.trust,
        })
    }

    /// The tenant's settings in force (scope `verify`).
    pub async fn get(&self, caller: &Caller) -> DomainResult<TenantSettings> {
        caller.require(Scope::Verify)?;
        let in_force = self.in_force(caller.tenant_id).await?;
        Ok(TenantSettings {
            matching: stored_settings(&in_force.matching),
            trust: in_force.trust,
        })
    }

    /// Replaces the tenant's settings (scope `verify`); trust values left out of the update
    /// keep their current values, so that a client that knows only the thresholds cannot
    /// lower the tenant's liveness minimum by omission.
    pub async fn put(
        &self,
        caller: &Caller,
        update: SettingsUpdate,
    ) -> DomainResult<TenantSettings> {
        caller.require(Scope::Verify)?;
        let current = self.store.get_settings(caller.tenant_id).await?.trust;
        let settings = update.parse(current)?;
        let details = serde_json::json!({
            "thresholds": settings.matching.thresholds,
            "match_policy": settings.matching.policy.as_str(),
            "k": settings.matching.policy.k(),
            "min_quality": settings.trust.min_quality,
            "min_liveness": settings.trust.min_liveness,
            "duplicate_check": settings.trust.duplicate_check,
            "retention_days": settings.trust.retention_days,
        });
        let audit = record(
            caller.tenant_id,
            self.clock.now(),
            actor(caller),
            "settings.updated",
            ("settings", "matching".to_owned()),
            "success",
            details,
        );
        self.store
            .put_settings(
                caller.tenant_id,
                &settings.matching,
                &settings.trust,
                &audit,
            )
            .await?;
        Ok(settings)
    }
}
