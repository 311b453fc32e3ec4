//! Per-tenant matching settings: thresholds and decision policy.

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::caller::Caller;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::Validate;
use crate::state::AppState;
use crate::store::StoredSettings;
use palmlink_engine::{Layout, MatchPolicy, MatchSettings};

/// Body of `PUT /v1/settings/matching`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct MatchingSettingsBody {
    /// One threshold per block, each in -1..1.
    pub thresholds: Vec<f64>,
    /// `all_thresholds`, `mean` or `k_of_n`.
    pub match_policy: String,
    /// Blocks that must pass under `k_of_n` (1..=blocks).
    #[serde(default)]
    pub k: Option<i64>,
}

impl Validate for MatchingSettingsBody {
    fn validate(&self) -> Vec<FieldError> {
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
        match self.match_policy.as_str() {
            "all_thresholds" | "mean" => {}
            "k_of_n" => match self.k {
                Some(k) if k >= 1 && k as usize <= blocks => {}
                _ => errors.push(FieldError::new(
                    "k",
                    format!("k_of_n needs k from 1 to {blocks}"),
                )),
            },
            _ => errors.push(FieldError::new(
                "match_policy",
                "must be all_thresholds, mean or k_of_n",
            )),
        }
        errors
    }
}

/// The engine settings of a stored configuration (defaults when unset or unusable).
pub(crate) fn to_engine(stored: Option<&StoredSettings>) -> MatchSettings {
    let Some(s) = stored else {
        return MatchSettings::default_for(Layout::DEFAULT);
    };
    let policy = match s.match_policy.as_str() {
        "mean" => MatchPolicy::Mean,
        "k_of_n" => MatchPolicy::KOfN {
            k: s.k.unwrap_or(1).max(1) as usize,
        },
        _ => MatchPolicy::AllThresholds,
    };
    MatchSettings::new(s.thresholds.clone(), policy).unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored matching settings are invalid; using the defaults");
        MatchSettings::default_for(Layout::DEFAULT)
    })
}

/// Name of a policy in the contract.
pub(crate) fn policy_name(policy: MatchPolicy) -> &'static str {
    match policy {
        MatchPolicy::AllThresholds => "all_thresholds",
        MatchPolicy::Mean => "mean",
        MatchPolicy::KOfN { .. } => "k_of_n",
    }
}

/// The tenant's settings in force.
pub(crate) async fn load(state: &AppState, tenant: Uuid) -> ApiResult<MatchSettings> {
    Ok(to_engine(state.store.get_settings(tenant).await?.as_ref()))
}

fn view(settings: &MatchSettings) -> Value {
    let k = match settings.policy() {
        MatchPolicy::KOfN { k } => Some(k),
        _ => None,
    };
    json!({
        "thresholds": settings.thresholds().iter().map(|t| f64::from(*t)).collect::<Vec<_>>(),
        "match_policy": policy_name(settings.policy()),
        "k": k,
    })
}

/// `GET /v1/settings/matching`.
pub(crate) async fn get(state: &AppState, caller: &Caller) -> ApiResult<Value> {
    caller.require("verify")?;
    Ok(view(&load(state, caller.tenant_id).await?))
}

/// `PUT /v1/settings/matching`.
pub(crate) async fn put(
    state: &AppState,
    caller: &Caller,
    body: MatchingSettingsBody,
) -> ApiResult<Value> {
    caller.require("verify")?;
    let stored = StoredSettings {
        thresholds: body.thresholds.iter().map(|t| *t as f32).collect(),
        match_policy: body.match_policy.clone(),
        k: if body.match_policy == "k_of_n" {
            body.k
        } else {
            None
        },
    };
    let policy = match stored.match_policy.as_str() {
        "mean" => MatchPolicy::Mean,
        "k_of_n" => MatchPolicy::KOfN {
            k: stored.k.unwrap_or(1) as usize,
        },
        _ => MatchPolicy::AllThresholds,
    };
    let settings = MatchSettings::new(stored.thresholds.clone(), policy)
        .map_err(|e| ApiError::field("thresholds", e.to_string()))?;
    state.store.put_settings(caller.tenant_id, &stored).await?;
    Ok(view(&settings))
}
