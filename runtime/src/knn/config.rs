//! Settings of a [`Knn`](super::Knn): what is configurable and its bounds.

use super::KnnError;
use super::distance::Metric;

/// Largest `k`.
pub const MAX_K: usize = 256;
/// Largest `max_samples`.
pub const MAX_SAMPLES: usize = 100_000;
/// Largest number of stored floats (`max_samples × dim`): 64 MiB of f32.
pub const MAX_STORED_VALUES: usize = 16 << 20;

/// Which sample makes room when a full KNN gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eviction {
    /// The oldest sample (smallest timestamp, then smallest id).
    Fifo,
    /// The oldest sample of the most populous class (ties between classes
    /// go to the class holding the older sample), so no class is pushed out
    /// by a burst of another.
    #[default]
    ClassBalanced,
}

/// How the neighbours elect the predicted class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vote {
    /// One vote per neighbour; the confidence is the vote share.
    #[default]
    Majority,
    /// Each neighbour weighs `1 / (d + ε)`; the confidence is the weight
    /// share.
    DistanceWeighted,
}

/// Settings of a KNN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct KnnConfig {
    /// Neighbours consulted, 1..=256 (default 5).
    pub k: usize,
    /// Distance (default euclidean).
    pub metric: Metric,
    /// Samples kept at most, 1..=100000 (default 320: the 200 original samples of the
    /// built-in model and room for what adaptation and feedback add).
    pub max_samples: usize,
    /// Who makes room when full (default class-balanced).
    pub eviction: Eviction,
    /// How the class is elected (default majority).
    pub vote: Vote,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig {
            k: 5,
            metric: Metric::Euclidean,
            max_samples: 320,
            eviction: Eviction::ClassBalanced,
            vote: Vote::Majority,
        }
    }
}

impl KnnConfig {
    /// Check the bounds, also of `max_samples × dim` for vectors of `dim`.
    pub fn validate(&self, dim: usize) -> Result<(), KnnError> {
        let bad = |what: &str| Err(KnnError::Config(what.to_string()));
        if self.k == 0 || self.k > MAX_K {
            return bad(&format!("k = {} (allowed 1..={MAX_K})", self.k));
        }
        if self.max_samples == 0 || self.max_samples > MAX_SAMPLES {
            return bad(&format!(
                "max-samples = {} (allowed 1..={MAX_SAMPLES})",
                self.max_samples
            ));
        }
        if dim == 0 || dim > crate::features::MAX_DIM {
            return bad(&format!(
                "dimensionality {dim} (allowed 1..={})",
                crate::features::MAX_DIM
            ));
        }
        if self.max_samples * dim > MAX_STORED_VALUES {
            return bad(&format!(
                "max-samples {} × {dim} dimensions is more than {MAX_STORED_VALUES} values",
                self.max_samples
            ));
        }
        Ok(())
    }
}
