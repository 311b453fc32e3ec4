//! 1:1 scoring: per-block cosine similarities and the match decision.

use crate::template::{Layout, Template};

/// Matching settings that cannot be accepted. Every variant is bad input.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SettingsError {
    /// There must be one threshold per block.
    #[error("expected {expected} thresholds, got {actual}")]
    WrongThresholdCount {
        /// Blocks in the layout.
        expected: usize,
        /// Thresholds received.
        actual: usize,
    },
    /// A threshold is not a finite number in [-1, 1].
    #[error("threshold {block} is {value}, expected a number in [-1, 1]")]
    ThresholdOutOfRange {
        /// Index of the block.
        block: usize,
        /// The offending value.
        value: f32,
    },
    /// `k` of the `k_of_n` policy must be between 1 and the number of blocks.
    #[error("k = {k} is out of range 1..={blocks}")]
    InvalidK {
        /// Requested k.
        k: usize,
        /// Number of blocks.
        blocks: usize,
    },
}

/// How the per-block scores of a comparison become a match decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchPolicy {
    /// Every block score reaches its threshold.
    AllThresholds,
    /// The mean block score reaches the mean threshold.
    Mean,
    /// At least `k` block scores reach their thresholds.
    KOfN {
        /// How many blocks must pass (1..=blocks).
        k: usize,
    },
}

/// Per-block thresholds with a policy: what a tenant's matching settings hold.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchSettings {
    thresholds: Vec<f32>,
    policy: MatchPolicy,
}

impl MatchSettings {
    /// The default thresholds for the 10-block layout.
    pub const DEFAULT_THRESHOLDS: [f32; 10] = [
        0.7072, 0.7253, 0.7018, 0.7211, 0.7426, 0.6929, 0.6850, 0.7100, 0.7526, 0.7004,
    ];

    /// Validated settings: thresholds finite in [-1, 1], `k` in 1..=thresholds.
    pub fn new(thresholds: Vec<f32>, policy: MatchPolicy) -> Result<MatchSettings, SettingsError> {
        if thresholds.is_empty() || thresholds.len() > Layout::MAX_BLOCKS {
            return Err(SettingsError::WrongThresholdCount {
                expected: Layout::DEFAULT.blocks,
                actual: thresholds.len(),
            });
        }
        if let Some((block, &value)) = thresholds
            .iter()
            .enumerate()
            .find(|(_, t)| !(-1.0..=1.0).contains(*t))
        {
            return Err(SettingsError::ThresholdOutOfRange { block, value });
        }
        if let MatchPolicy::KOfN { k } = policy {
            if k == 0 || k > thresholds.len() {
                return Err(SettingsError::InvalidK {
                    k,
                    blocks: thresholds.len(),
                });
            }
        }
        Ok(MatchSettings { thresholds, policy })
    }

    /// Settings for `layout`: the default thresholds with `all_thresholds` for
    /// the default layout; otherwise the mean of the defaults for every block.
    pub fn default_for(layout: Layout) -> MatchSettings {
        let thresholds = if layout.blocks == Self::DEFAULT_THRESHOLDS.len() {
            Self::DEFAULT_THRESHOLDS.to_vec()
        } else {
            let mean = Self::DEFAULT_THRESHOLDS.iter().sum::<f32>()
                / Self::DEFAULT_THRESHOLDS.len() as f32;
            vec![mean; layout.blocks]
        };
        MatchSettings {
            thresholds,
            policy: MatchPolicy::AllThresholds,
        }
    }

    /// Checks that there is one threshold per block of `layout`.
    pub fn check_layout(&self, layout: Layout) -> Result<(), SettingsError> {
        if self.thresholds.len() != layout.blocks {
            return Err(SettingsError::WrongThresholdCount {
                expected: layout.blocks,
                actual: self.thresholds.len(),
            });
        }
        Ok(())
    }

    /// The per-block thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// The match policy.
    pub fn policy(&self) -> MatchPolicy {
        self.policy
    }

    /// The decision for one comparison's per-block scores.
    ///
    /// Scores are compared with `>=`; a NaN score never passes.
    pub fn decide(&self, block_scores: &[f32]) -> bool {
        debug_assert_eq!(block_scores.len(), self.thresholds.len());
        let passing = || {
            block_scores
                .iter()
                .zip(&self.thresholds)
                .filter(|(s, t)| s >= t)
                .count()
        };
        match self.policy {
            MatchPolicy::AllThresholds => passing() == self.thresholds.len(),
            MatchPolicy::KOfN { k } => passing() >= k,
            MatchPolicy::Mean => mean_score(block_scores) >= mean_score(&self.thresholds),
        }
    }
}

/// The result of a 1:1 comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The per-block cosine similarities.
    pub scores: Vec<f32>,
    /// Their mean: the 1:N ranking key and the API's `confidence`.
    pub mean: f32,
    /// The decision under the settings used.
    pub matched: bool,
}

/// The mean of per-block scores, summed in block order (the one definition
/// every path uses, so 1:1 and 1:N report identical figures).
#[inline]
pub fn mean_score(block_scores: &[f32]) -> f32 {
    block_scores.iter().sum::<f32>() / block_scores.len() as f32
}

/// Per-block cosine similarities of two templates (SIMD).
///
/// Panics if the layouts differ; callers holding untrusted input check first.
pub fn block_scores(probe: &Template, enrolled: &Template) -> Vec<f32> {
    assert_eq!(probe.layout(), enrolled.layout(), "layouts must match");
    let mut out = vec![0.0; probe.layout().blocks];
    crate::kernels::block_dots(
        probe.as_slice(),
        enrolled.as_slice(),
        probe.layout().dim,
        &mut out,
    );
    out
}

/// Scores `probe` against `enrolled` and decides under `settings`.
///
/// Panics if the layouts differ or the settings do not have one threshold per
/// block; callers holding untrusted input check first.
pub fn compare(probe: &Template, enrolled: &Template, settings: &MatchSettings) -> Comparison {
    comparison_from_scores(block_scores(probe, enrolled), settings)
}

pub(crate) fn comparison_from_scores(scores: Vec<f32>, settings: &MatchSettings) -> Comparison {
    assert_eq!(
        scores.len(),
        settings.thresholds().len(),
        "one threshold per block"
    );
    Comparison {
        mean: mean_score(&scores),
        matched: settings.decide(&scores),
        scores,
    }
}

#[cfg(test)]
mod tests;
