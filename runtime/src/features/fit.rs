//! Fitting standardisation + PCA to a matrix of embeddings.
//!
//! Same model as scikit-learn's `StandardScaler` (population variance; a
//! constant feature gets scale 1) followed by `PCA` without whitening
//! (covariance with `n − 1`). The principal axes come from a symmetric
//! eigen-decomposition (nalgebra, pure Rust) of the covariance matrix, or of
//! the Gram matrix when there are fewer samples than dimensions (the usual
//! case for a few hundred 1280-d embeddings: a smaller matrix, same axes).
//! Computation is in f64; the result is stored in f32.
//!
//! Axes are returned in decreasing order of variance, each with its sign
//! fixed so that its largest-magnitude entry is positive: the same data
//! always gives the same transform. (Signs may differ from scikit-learn's;
//! distances are unaffected.)

use super::error::{FeatureError, check_finite};
use super::transform::{FeatureTransform, PcaArrays, check_dims};
use nalgebra::{DMatrix, SymmetricEigen};

/// Largest matrix decomposed (`min(samples, dim)` rows): 128 MiB of f64.
pub const MAX_EIGEN_SIZE: usize = 4096;

/// What to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitOptions {
    /// Standardise each input (`(x − mean) / std`); false keeps inputs as
    /// they are (mean 0, scale 1) and only centres them for the PCA.
    pub standardize: bool,
    /// Number of principal components to keep; `None`: no PCA.
    pub components: Option<usize>,
}

/// A fitted transform and what the fit found.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The transform.
    pub transform: FeatureTransform,
    /// Share of the total variance along each kept component (empty without
    /// PCA); their sum is the explained variance.
    pub explained_variance_ratio: Vec<f32>,
    /// Number of samples the fit used.
    pub samples: usize,
}

/// Fit a transform to `data`: row-major samples of `dim` values each.
///
/// Needs at least two samples, finite values, `min(samples, dim)` at most
/// [`MAX_EIGEN_SIZE`], and `components` between 1 and `min(samples − 1, dim)`.
pub fn fit(data: &[f32], dim: usize, options: &FitOptions) -> Result<Fitted, FeatureError> {
    check_dims(dim, 1)?;
    if !data.len().is_multiple_of(dim) {
        return Err(FeatureError::Fit {
            reason: format!(
                "{} values are not a whole number of {dim}-d rows",
                data.len()
            ),
        });
    }
    let n = data.len() / dim;
    if n < 2 {
        return Err(FeatureError::Fit {
            reason: format!("{n} sample(s); at least 2 are needed"),
        });
    }
    if n.min(dim) > MAX_EIGEN_SIZE {
        return Err(FeatureError::Fit {
            reason: format!(
                "{n} samples of {dim} values need a {}² eigen-decomposition; \
                 the limit is {MAX_EIGEN_SIZE} (use fewer samples or dimensions)",
                n.min(dim)
            ),
        });
    }
    check_finite("fit data", data)?;
    let x = DMatrix::from_row_slice(n, dim, data).map(f64::from);

    let (mean, scale) = if options.standardize {
        let mean: Vec<f64> = x.column_iter().map(|c| c.mean()).collect();
        let scale = x
            .column_iter()
            .zip(&mean)
            .map(|(c, m)| {
                let var = c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
                let s = var.sqrt();
                // As scikit-learn: a (nearly) constant feature is left unscaled.
                if s < 10.0 * f64::EPSILON { 1.0 } else { s }
            })
            .collect();
        (mean, scale)
    } else {
        (vec![0.0; dim], vec![1.0; dim])
    };
    let mut z = x;
    for (j, mut col) in z.column_iter_mut().enumerate() {
        col.apply(|v| *v = (*v - mean[j]) / scale[j]);
    }
    let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();

    let Some(k) = options.components else {
        let transform = FeatureTransform::from_arrays(narrow(&mean), narrow(&scale), None)?;
        return Ok(Fitted {
            transform,
            explained_variance_ratio: Vec::new(),
            samples: n,
        });
    };
    let max_k = (n - 1).min(dim);
    if k == 0 || k > max_k {
        return Err(FeatureError::Fit {
            reason: format!(
                "{k} components requested; {n} samples of {dim} values allow 1..={max_k}"
            ),
        });
    }
    let pca_mean: Vec<f64> = z.column_iter().map(|c| c.mean()).collect();
    for (j, mut col) in z.column_iter_mut().enumerate() {
        col.add_scalar_mut(-pca_mean[j]);
    }
    let denom = (n - 1) as f64;
    let total_variance = z.norm_squared() / denom;
    let (values, axes) = principal_axes(&z, k, denom)?;

    let mut components = Vec::with_capacity(k * dim);
    for axis in &axes {
        components.extend(axis.iter().map(|&v| v as f32));
    }
    let ratio = values
        .iter()
        .map(|v| {
            if total_variance > 0.0 {
                (v / total_variance) as f32
            } else {
                0.0
            }
        })
        .collect();
    let transform = FeatureTransform::from_arrays(
        narrow(&mean),
        narrow(&scale),
        Some(PcaArrays {
            mean: narrow(&pca_mean),
            components,
            n_components: k,
            explained_variance: narrow(&values),
        }),
    )?;
    Ok(Fitted {
        transform,
        explained_variance_ratio: ratio,
        samples: n,
    })
}

/// Top `k` eigenpairs of the covariance of the centred `z` (n × d), as
/// (variances, unit axes of d values), in decreasing order of variance.
fn principal_axes(
    z: &DMatrix<f64>,
    k: usize,
    denom: f64,
) -> Result<(Vec<f64>, Vec<Vec<f64>>), FeatureError> {
    let (n, d) = z.shape();
    let gram = n < d;
    let m = if gram {
        z * z.transpose() / denom
    } else {
        z.transpose() * z / denom
    };
    let size = m.nrows();
    let eig = SymmetricEigen::try_new(m, f64::EPSILON, 100 * size + 1000).ok_or_else(|| {
        FeatureError::Fit {
            reason: "the eigen-decomposition did not converge".into(),
        }
    })?;
    let mut order: Vec<usize> = (0..size).collect();
    order.sort_by(|&a, &b| {
        eig.eigenvalues[b]
            .total_cmp(&eig.eigenvalues[a])
            .then(a.cmp(&b))
    });
    let largest = eig.eigenvalues[order[0]].max(0.0);
    let mut values = Vec::with_capacity(k);
    let mut axes = Vec::with_capacity(k);
    for (rank, &i) in order.iter().take(k).enumerate() {
        let value = eig.eigenvalues[i].max(0.0);
        let mut axis: Vec<f64> = if gram {
            // v = Zᵀu / ‖Zᵀu‖: the covariance axis behind a Gram eigenvector.
            if value <= largest * 1e-12 || value == 0.0 {
                return Err(FeatureError::Fit {
                    reason: format!("only {rank} component(s) carry variance; ask for fewer"),
                });
            }
            let v = z.transpose() * eig.eigenvectors.column(i);
            let norm = v.norm();
            v.iter().map(|x| x / norm).collect()
        } else {
            eig.eigenvectors.column(i).iter().copied().collect()
        };
        fix_sign(&mut axis);
        values.push(value);
        axes.push(axis);
    }
    Ok((values, axes))
}

/// Flip `axis` so that its largest-magnitude entry (the first on ties) is
/// positive.
fn fix_sign(axis: &mut [f64]) {
    let mut best = 0;
    for (i, v) in axis.iter().enumerate() {
        if v.abs() > axis[best].abs() {
            best = i;
        }
    }
    if axis.get(best).is_some_and(|&v| v < 0.0) {
        axis.iter_mut().for_each(|v| *v = -*v);
    }
}
