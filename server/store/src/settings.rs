//! Per-tenant matching settings.

use uuid::Uuid;

use crate::StoreResult;

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

/// Storage of matching settings.
#[async_trait::async_trait]
pub trait SettingsStore: Send + Sync {
    /// The tenant's matching settings, if set.
    async fn get_settings(&self, tenant: Uuid) -> StoreResult<Option<MatchingSettings>>;
    /// Replaces the tenant's matching settings (last writer wins).
    async fn put_settings(&self, tenant: Uuid, settings: &MatchingSettings) -> StoreResult<()>;
}
