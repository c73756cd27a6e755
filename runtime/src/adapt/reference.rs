//! The yardstick every adaptation threshold is scaled by: the mean and standard deviation
//! of the leave-one-out mean k-NN distance of the initial KNN
//! ([`ReferenceStats::overall`](crate::knn::ReferenceStats)). A separate type so a plan
//! cannot be made with a reference that cannot scale anything (zero, NaN, another metric).

use serde::Serialize;

use super::AdaptError;
use crate::knn::{Metric, ReferenceStats};

/// Reference mean k-NN distance, checked: finite, mean positive, std not negative.
/// (Serialize only, for logs: a deserialized value would bypass the checks; persist the
/// [`ReferenceStats`] and call [`Reference::from_stats`].)
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reference {
    mean: f64,
    std: f64,
    metric: Metric,
}

impl Reference {
    /// A reference of `mean` and `std` measured with `metric`.
    pub fn new(mean: f64, std: f64, metric: Metric) -> Result<Self, AdaptError> {
        if !mean.is_finite() || mean <= 0.0 {
            return Err(AdaptError::Reference(format!(
                "mean {mean} must be a positive number (is the initial KNN made of duplicates?)"
            )));
        }
        if !std.is_finite() || std < 0.0 {
            return Err(AdaptError::Reference(format!(
                "standard deviation {std} must be a finite number ≥ 0"
            )));
        }
        Ok(Reference { mean, std, metric })
    }

    /// The overall statistics of a built initial state.
    pub fn from_stats(stats: &ReferenceStats) -> Result<Self, AdaptError> {
        if stats.overall.count == 0 {
            return Err(AdaptError::Reference(
                "the reference statistics hold no distances".into(),
            ));
        }
        Reference::new(stats.overall.mean, stats.overall.std, stats.metric)
    }

    /// Mean of the reference distances.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Their standard deviation, floored at `1e-3 × mean` so "growth in σ" never divides
    /// by zero (the drift module's convention).
    pub fn sigma(&self) -> f64 {
        self.std.max(1e-3 * self.mean)
    }

    /// The metric the distances were measured with.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// `factor × mean`, as the f32 the distance functions return.
    pub(crate) fn scaled(&self, factor: f64) -> f32 {
        (factor * self.mean) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_cannot_scale() {
        let e = Metric::Euclidean;
        assert!(Reference::new(0.0, 1.0, e).is_err());
        assert!(Reference::new(f64::NAN, 1.0, e).is_err());
        assert!(Reference::new(1.0, -1.0, e).is_err());
        assert!(Reference::new(1.0, f64::INFINITY, e).is_err());
        let r = Reference::new(10.0, 0.0, e).unwrap();
        assert_eq!(r.sigma(), 0.01);
        assert_eq!(r.scaled(1.5), 15.0);
    }
}
