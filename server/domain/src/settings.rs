//! Per-tenant matching settings: the thresholds and the policy every decision applies.

use std::sync::Arc;

use palmlink_engine::{Layout, MatchSettings};
use palmlink_store::{MatchPolicy, MatchingSettings, Scope, Store};
use serde::Deserialize;
use uuid::Uuid;

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
}

impl SettingsUpdate {
    /// The settings it asks for, or 422 naming what is wrong.
    fn parse(&self) -> DomainResult<MatchingSettings> {
        let mut errors = Vec::new();
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
        Ok(settings)
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

/// Matching settings of the tenants.
pub struct Settings {
    store: Arc<dyn Store>,
}

impl Settings {
    /// Settings on `store`.
    pub fn new(store: Arc<dyn Store>) -> Settings {
        Settings { store }
    }

    /// The engine settings in force for a tenant: its own, or the defaults when it has
    /// none (or has some the engine cannot apply, which is logged).
    pub async fn in_force(&self, tenant: Uuid) -> DomainResult<MatchSettings> {
        let defaults = || MatchSettings::default_for(Layout::DEFAULT);
        Ok(match self.store.get_settings(tenant).await? {
            None => defaults(),
            Some(stored) => engine_settings(&stored).unwrap_or_else(|e| {
                tracing::error!(%tenant, error = %e, "stored matching settings are invalid; using the defaults");
                defaults()
            }),
        })
    }

    /// The tenant's settings in force (scope `verify`).
    pub async fn get(&self, caller: &Caller) -> DomainResult<MatchingSettings> {
        caller.require(Scope::Verify)?;
        Ok(stored_settings(&self.in_force(caller.tenant_id).await?))
    }

    /// Replaces the tenant's settings (scope `verify`).
    pub async fn put(
        &self,
        caller: &Caller,
        update: SettingsUpdate,
    ) -> DomainResult<MatchingSettings> {
        caller.require(Scope::Verify)?;
        let settings = update.parse()?;
        self.store.put_settings(caller.tenant_id, &settings).await?;
        Ok(settings)
    }
}
