//! Errors of the adaptation module, in one place so every step (clustering, planning,
//! applying, guarding) reports bad input the same way: a clear message, never a panic.

use crate::config_error::ConfigError;
use crate::knn::{KnnError, Metric};

/// Why a clustering, a plan, an application or a guard was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdaptError {
    /// Nothing to cluster.
    #[error("no samples to adapt from; pass at least one pending sample")]
    Empty,
    /// More samples than the bounded clustering accepts.
    #[error("{got} samples to adapt from, at most {max} are accepted; pass the newest {max}")]
    TooMany {
        /// Samples given.
        got: usize,
        /// The bound ([`MAX_POINTS`](super::MAX_POINTS)).
        max: usize,
    },
    /// A feature vector of the wrong length.
    #[error("sample {sample} has {got} feature values, expected {expected}")]
    Dimension {
        /// The sample's id (for [`cluster`](super::cluster()), its index).
        sample: u64,
        /// The length every vector must have.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// A feature vector holding NaN or an infinity.
    #[error("sample {sample}: feature value {index} is not finite")]
    NonFinite {
        /// The sample's id (for [`cluster`](super::cluster()), its index).
        sample: u64,
        /// Index of the first bad value.
        index: usize,
    },
    /// Two pending samples with the same id: events would name the wrong sample.
    #[error("sample id {0} appears twice among the pending samples")]
    DuplicateSample(u64),
    /// Reference statistics that cannot scale the thresholds.
    #[error("invalid reference distance: {0}")]
    Reference(String),
    /// The reference was measured with another metric than the KNN uses.
    #[error("the reference was measured with {reference:?} distances, the KNN uses {knn:?}")]
    MetricMismatch {
        /// The KNN's metric.
        knn: Metric,
        /// The reference's metric.
        reference: Metric,
    },
    /// A plan does not fit the KNN it is applied to.
    #[error("plan does not fit this KNN: {0}")]
    Plan(String),
    /// A planned new class already exists in the KNN (the KNN changed since planning).
    #[error("planned new class {0:?} already holds samples in the KNN; plan again")]
    LabelTaken(String),
    /// The guard has no baseline to compare with.
    #[error("the guard needs baseline metrics of at least one frame before the adaptation")]
    NoBaseline,
    /// The KNN refused a sample.
    #[error(transparent)]
    Knn(#[from] KnnErrorText),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A [`KnnError`] as text ([`KnnError`] is not `Clone`/`PartialEq`, [`AdaptError`] is, so
/// tests can compare errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("KNN: {0}")]
pub struct KnnErrorText(pub String);

impl From<KnnError> for AdaptError {
    fn from(e: KnnError) -> Self {
        AdaptError::Knn(KnnErrorText(e.to_string()))
    }
}

/// Check that `v` has `dim` finite values; `sample` names it in the error.
pub(crate) fn check_vector(sample: u64, dim: usize, v: &[f32]) -> Result<(), AdaptError> {
    if v.len() != dim {
        return Err(AdaptError::Dimension {
            sample,
            expected: dim,
            got: v.len(),
        });
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(AdaptError::NonFinite { sample, index }),
        None => Ok(()),
    }
}
