//! The fitted standardisation + PCA, applied to one vector without
//! allocating.

use super::MAX_DIM;
use super::error::{FeatureError, check_finite, check_len};
use super::matvec::matvec_add;

/// Input values standardised per block before the projection; a stack
/// buffer of this many floats (2 KiB) replaces a heap scratch vector. Large
/// enough that the projection's per-block overhead (a reduction per row) is
/// small: a 1280-d embedding is three blocks.
const BLOCK: usize = 512;

/// The PCA part of a transform, as plain arrays (scikit-learn's `mean_`,
/// `components_`, `explained_variance_`).
#[derive(Debug, Clone, PartialEq)]
pub struct PcaArrays {
    /// Mean subtracted after standardisation, `input_dim` values.
    pub mean: Vec<f32>,
    /// Principal axes, row-major `n_components × input_dim`.
    pub components: Vec<f32>,
    /// Number of components (the output dimensionality).
    pub n_components: usize,
    /// Variance along each component (`n_components` values), or empty when
    /// unknown (stored as zeros).
    pub explained_variance: Vec<f32>,
}

/// Standardisation (`z = (x − mean) / scale`) followed by an optional PCA
/// projection (`y = (z − pca_mean) · componentsᵀ`).
///
/// Built by [`fit`](super::fit()), read from a file
/// ([`from_bytes`](FeatureTransform::from_bytes),
/// [`read`](FeatureTransform::read)) or from arrays
/// ([`from_arrays`](FeatureTransform::from_arrays)); every way validates
/// dimensions and values.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTransform {
    input_dim: usize,
    output_dim: usize,
    mean: Vec<f32>,
    scale: Vec<f32>,
    /// `1 / scale`, derived.
    inv_scale: Vec<f32>,
    pca: Option<Pca>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pca {
    mean: Vec<f32>,
    components: Vec<f32>,
    explained_variance: Vec<f32>,
}

impl FeatureTransform {
    /// Build a transform from the arrays of a fitted scaler (`mean`, `scale`,
    /// `input_dim` values each) and optionally a PCA.
    ///
    /// This is the entry point for converted scikit-learn parameters (see the
    /// [module documentation](super)). Fails when lengths disagree, a value
    /// is not finite, a scale is not positive, or the dimensions are outside
    /// `1..=MAX_DIM` (the PCA may not have more components than inputs).
    pub fn from_arrays(
        mean: Vec<f32>,
        scale: Vec<f32>,
        pca: Option<PcaArrays>,
    ) -> Result<Self, FeatureError> {
        let input_dim = mean.len();
        let output_dim = pca.as_ref().map_or(input_dim, |p| p.n_components);
        check_dims(input_dim, output_dim)?;
        check_len("scale", input_dim, scale.len())?;
        check_finite("mean", &mean)?;
        check_finite("scale", &scale)?;
        if let Some(index) = scale.iter().position(|&s| s <= 0.0) {
            return Err(FeatureError::Value {
                what: "scale",
                index,
                value: scale[index],
                reason: "must be positive (scikit-learn stores 1.0 for constant features)",
            });
        }
        let pca = match pca {
            None => None,
            Some(p) => {
                check_len("pca mean", input_dim, p.mean.len())?;
                check_len("pca components", output_dim * input_dim, p.components.len())?;
                let explained_variance = if p.explained_variance.is_empty() {
                    vec![0.0; output_dim]
                } else {
                    p.explained_variance
                };
                check_len("explained variance", output_dim, explained_variance.len())?;
                check_finite("pca mean", &p.mean)?;
                check_finite("pca components", &p.components)?;
                check_finite("explained variance", &explained_variance)?;
                Some(Pca {
                    mean: p.mean,
                    components: p.components,
                    explained_variance,
                })
            }
        };
        let inv_scale = scale.iter().map(|s| 1.0 / s).collect();
        Ok(FeatureTransform {
            input_dim,
            output_dim,
            mean,
            scale,
            inv_scale,
            pca,
        })
    }

    /// Length of the vectors [`apply`](Self::apply) takes.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Length of the vectors [`apply`](Self::apply) writes.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Scaler mean (`input_dim` values).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Scaler scale, the standard deviation per input (`input_dim` values).
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }

    /// The PCA arrays, if the transform projects.
    pub fn pca(&self) -> Option<PcaArrays> {
        self.pca.as_ref().map(|p| PcaArrays {
            mean: p.mean.clone(),
            components: p.components.clone(),
            n_components: self.output_dim,
            explained_variance: p.explained_variance.clone(),
        })
    }

    /// PCA mean, if the transform projects.
    pub fn pca_mean(&self) -> Option<&[f32]> {
        self.pca.as_ref().map(|p| p.mean.as_slice())
    }

    /// Principal axes, row-major `output_dim × input_dim`, if the transform
    /// projects.
    pub fn components(&self) -> Option<&[f32]> {
        self.pca.as_ref().map(|p| p.components.as_slice())
    }

    /// Variance along each principal axis, if the transform projects.
    pub fn explained_variance(&self) -> Option<&[f32]> {
        self.pca.as_ref().map(|p| p.explained_variance.as_slice())
    }

    /// Transform `input` (`input_dim` values) into `out` (`output_dim`
    /// values). Allocates nothing. A length mismatch is an error, never a
    /// silent pass-through.
    pub fn apply(&self, input: &[f32], out: &mut [f32]) -> Result<(), FeatureError> {
        self.apply_scaled(input, 1.0, out)
    }

    /// [`apply`](Self::apply) to `factor · input` (the L2 normalisation of
    /// [`FeaturePath`](super::FeaturePath), folded in).
    pub(crate) fn apply_scaled(
        &self,
        input: &[f32],
        factor: f32,
        out: &mut [f32],
    ) -> Result<(), FeatureError> {
        check_len("transform input", self.input_dim, input.len())?;
        check_len("transform output", self.output_dim, out.len())?;
        let Some(pca) = &self.pca else {
            for (((o, &x), &m), &inv) in out
                .iter_mut()
                .zip(input)
                .zip(&self.mean)
                .zip(&self.inv_scale)
            {
                *o = (factor * x - m) * inv;
            }
            return Ok(());
        };
        // Standardise a block of inputs into a stack buffer, then project it (`matvec`: four
        // component rows per load of the buffer, with explicit SIMD): the buffer stays in the
        // first-level cache and the projection streams the matrix once.
        out.fill(0.0);
        let d = self.input_dim;
        let mut z = [0.0f32; BLOCK];
        let mut start = 0;
        while start < d {
            let end = (start + BLOCK).min(d);
            let zb = &mut z[..end - start];
            for ((((z, &x), &m), &inv), &pm) in zb
                .iter_mut()
                .zip(&input[start..end])
                .zip(&self.mean[start..end])
                .zip(&self.inv_scale[start..end])
                .zip(&pca.mean[start..end])
            {
                *z = (factor * x - m) * inv - pm;
            }
            matvec_add(&pca.components[start..], d, zb, out);
            start = end;
        }
        Ok(())
    }
}

/// Dimensions within bounds: `1 ≤ output ≤ input ≤ MAX_DIM`.
pub(crate) fn check_dims(input: usize, output: usize) -> Result<(), FeatureError> {
    let reason = if input == 0 || output == 0 {
        "dimensions must be at least 1"
    } else if input > MAX_DIM {
        "input dimensionality above the limit (8192)"
    } else if output > input {
        "PCA cannot have more components than inputs"
    } else {
        return Ok(());
    };
    Err(FeatureError::Dimensions {
        input,
        output,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardise_only() {
        let t = FeatureTransform::from_arrays(vec![1.0, 2.0], vec![2.0, 0.5], None).unwrap();
        let mut out = [0.0; 2];
        t.apply(&[3.0, 3.0], &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0]);
    }

    #[test]
    fn projection_spans_blocks() {
        // Three blocks (the last one partial), 2 outputs: sum of all z and z[d − 1].
        let d = 2 * BLOCK + 76;
        let mut components = vec![1.0; d];
        components.extend((0..d).map(|i| if i == d - 1 { 1.0 } else { 0.0 }));
        let t = FeatureTransform::from_arrays(
            vec![0.0; d],
            vec![1.0; d],
            Some(PcaArrays {
                mean: vec![1.0; d],
                components,
                n_components: 2,
                explained_variance: vec![],
            }),
        )
        .unwrap();
        let input: Vec<f32> = (0..d).map(|i| i as f32).collect();
        let mut out = [0.0; 2];
        t.apply(&input, &mut out).unwrap();
        let expected: f32 = (0..d).map(|i| i as f32 - 1.0).sum();
        // Integers below 2²⁴: exact in any summation order.
        assert_eq!(out, [expected, (d - 2) as f32]);
    }

    #[test]
    fn mismatch_is_an_error() {
        let t = FeatureTransform::from_arrays(vec![0.0; 3], vec![1.0; 3], None).unwrap();
        let mut out = [0.0; 3];
        assert!(matches!(
            t.apply(&[1.0; 4], &mut out),
            Err(FeatureError::Dimension {
                expected: 3,
                got: 4,
                ..
            })
        ));
        let mut short = [0.0; 2];
        assert!(t.apply(&[1.0; 3], &mut short).is_err());
    }

    #[test]
    fn bad_arrays_refused() {
        assert!(FeatureTransform::from_arrays(vec![], vec![], None).is_err());
        assert!(FeatureTransform::from_arrays(vec![0.0], vec![0.0], None).is_err());
        assert!(FeatureTransform::from_arrays(vec![f32::NAN], vec![1.0], None).is_err());
        assert!(FeatureTransform::from_arrays(vec![0.0, 0.0], vec![1.0], None).is_err());
        let too_many = PcaArrays {
            mean: vec![0.0],
            components: vec![1.0, 1.0],
            n_components: 2,
            explained_variance: vec![],
        };
        assert!(FeatureTransform::from_arrays(vec![0.0], vec![1.0], Some(too_many)).is_err());
    }
}
