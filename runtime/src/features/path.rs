//! The whole feature path in one call: L2 normalisation, then the transform.

use super::error::{FeatureError, check_finite, check_len};
use super::l2::l2_factor;
use super::transform::FeatureTransform;

/// Embedding → optional L2 normalisation → optional standardisation + PCA.
///
/// ```
/// use tinylcm::features::FeaturePath;
/// let path = FeaturePath::new(2, true, None).unwrap();
/// let mut out = [0.0; 2];
/// path.apply(&[3.0, 4.0], &mut out).unwrap();
/// assert_eq!(out, [0.6, 0.8]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePath {
    input_dim: usize,
    normalize: bool,
    transform: Option<FeatureTransform>,
}

impl FeaturePath {
    /// A path for embeddings of `input_dim` values. With a transform, its
    /// input dimensionality must equal `input_dim`.
    pub fn new(
        input_dim: usize,
        normalize: bool,
        transform: Option<FeatureTransform>,
    ) -> Result<Self, FeatureError> {
        let output = transform.as_ref().map_or(input_dim, |t| t.output_dim());
        super::transform::check_dims(input_dim, output)?;
        if let Some(t) = &transform {
            check_len("transform input (embedding size)", input_dim, t.input_dim())?;
        }
        Ok(FeaturePath {
            input_dim,
            normalize,
            transform,
        })
    }

    /// Length of the embeddings taken.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Length of the feature vectors written.
    pub fn output_dim(&self) -> usize {
        self.transform
            .as_ref()
            .map_or(self.input_dim, |t| t.output_dim())
    }

    /// Whether embeddings are L2-normalised first.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The standardisation + PCA step, if any.
    pub fn transform(&self) -> Option<&FeatureTransform> {
        self.transform.as_ref()
    }

    /// Turn `embedding` into a feature vector in `out` (allocation-free).
    /// Wrong lengths and non-finite embedding values are errors.
    pub fn apply(&self, embedding: &[f32], out: &mut [f32]) -> Result<(), FeatureError> {
        check_len("embedding", self.input_dim, embedding.len())?;
        check_len("feature output", self.output_dim(), out.len())?;
        check_finite("embedding", embedding)?;
        let factor = if self.normalize {
            l2_factor(embedding)
        } else {
            1.0
        };
        match &self.transform {
            Some(t) => t.apply_scaled(embedding, factor, out),
            None => {
                out.iter_mut()
                    .zip(embedding)
                    .for_each(|(o, x)| *o = factor * x);
                Ok(())
            }
        }
    }
}
