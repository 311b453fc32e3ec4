//! Per-tenant matching settings.

use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::{AuditRecord, StoreError, StoreResult};

named_values! {
    /// What an enrollment does about another user's matching palm.
    pub enum DuplicateCheck ("duplicate check") {
        /// No search before enrolling.
        Off = "off",
        /// Search, enroll, and report the matches.
        Flag = "flag",
        /// Search, and fail the enrollment when anything matches.
        Reject = "reject",
    }
}

/// A tenant's trust policy: what a capture must show, what an enrollment checks, and how
/// long finished work is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrustPolicy {
    /// Lowest capture quality accepted (0..1; 0 accepts any, even none).
    pub min_quality: f64,
    /// Lowest liveness score accepted (0..1; 0 accepts any, even none).
    pub min_liveness: f64,
    /// The duplicate-identity check of enrollments.
    pub duplicate_check: DuplicateCheck,
    /// Days that finished challenges, events and delivery logs are kept (`None`: for
    /// ever); see [`RetentionStore`](crate::RetentionStore).
    pub retention_days: Option<u32>,
}

impl Default for TrustPolicy {
    fn default() -> TrustPolicy {
        TrustPolicy {
            min_quality: 0.0,
            min_liveness: 0.0,
            duplicate_check: DuplicateCheck::Flag,
            retention_days: None,
        }
    }
}

/// How per-block scores become a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchPolicy {
    /// Every block reaches its threshold.
    AllThresholds,
    /// The mean score reaches the mean threshold.
    Mean,
    /// At least `k` blocks reach their thresholds.
    KOfN {
        /// Blocks that must pass.
        k: u32,
    },
}

impl MatchPolicy {
    /// The policy's name in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchPolicy::AllThresholds => "all_thresholds",
            MatchPolicy::Mean => "mean",
            MatchPolicy::KOfN { .. } => "k_of_n",
        }
    }

    /// `k` of `k_of_n`, else `None`.
    pub fn k(self) -> Option<u32> {
        match self {
            MatchPolicy::KOfN { k } => Some(k),
            _ => None,
        }
    }
}

/// Matching settings as stored for a tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchingSettings {
    /// Per-block thresholds.
    pub thresholds: Vec<f32>,
    /// The decision policy.
    pub policy: MatchPolicy,
}

/// A tenant's settings as stored, read together: a capture needs both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantSettingsRecord {
    /// The matching settings, if set (`None`: the defaults).
    pub matching: Option<MatchingSettings>,
    /// The trust policy (the defaults for an unknown tenant).
    pub trust: TrustPolicy,
}

/// Storage of matching settings.
#[async_trait::async_trait]
pub trait SettingsStore: Send + Sync {
    /// The tenant's matching settings and trust policy, in one read.
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<TenantSettingsRecord>;
    /// Replaces the tenant's matching settings and trust policy together, with the audit
    /// entry (last writer wins).
    async fn put_settings(
        &self,
        tenant: Uuid,
        settings: &MatchingSettings,
        trust: &TrustPolicy,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}

/// Settings as a tenant's row keeps them: thresholds as JSON text, the policy's name and its
/// `k` (for `k_of_n`).
pub(crate) fn settings_columns(
    s: &MatchingSettings,
) -> StoreResult<(String, &'static str, Option<i64>)> {
    let thresholds = serde_json::to_string(&s.thresholds)
        .map_err(|err| StoreError::Database(err.to_string()))?;
    Ok((thresholds, s.policy.as_str(), s.policy.k().map(i64::from)))
}

/// Settings from a tenant's row ([`settings_columns`]); `None` when not set.
pub(crate) fn settings_from_columns(
    thresholds: Option<String>,
    policy: Option<String>,
    k: Option<i64>,
) -> StoreResult<Option<MatchingSettings>> {
    let (Some(thresholds), Some(policy)) = (thresholds, policy) else {
        return Ok(None);
    };
    let corrupt = |what: &str| StoreError::Database(format!("stored settings: {what}"));
    let policy = match (policy.as_str(), k) {
        ("all_thresholds", _) => MatchPolicy::AllThresholds,
        ("mean", _) => MatchPolicy::Mean,
        ("k_of_n", Some(k)) => MatchPolicy::KOfN {
            k: u32::try_from(k).map_err(|_| corrupt("k out of range"))?,
        },
        _ => return Err(corrupt("unknown match policy")),
    };
    Ok(Some(MatchingSettings {
        thresholds: serde_json::from_str(&thresholds)
            .map_err(|_| corrupt("thresholds are not a list of numbers"))?,
        policy,
    }))
}

/// A trust policy from a tenant's row.
pub(crate) fn trust_from_columns(
    min_quality: f64,
    min_liveness: f64,
    duplicate_check: &str,
    retention_days: Option<i64>,
) -> StoreResult<TrustPolicy> {
    Ok(TrustPolicy {
        min_quality,
        min_liveness,
        duplicate_check: duplicate_check
            .parse()
            .map_err(|e: crate::UnknownValue| StoreError::Database(e.to_string()))?,
        retention_days: retention_days
            .map(|d| {
                u32::try_from(d).ok().filter(|d| *d >= 1).ok_or_else(|| {
                    StoreError::Database("stored retention_days out of range".into())
                })
            })
            .transpose()?,
    })
}
