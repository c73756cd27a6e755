//! From the model's embedding to the feature vector the KNN and the drift
//! detectors see.
//!
//! The path is: embedding → optional L2 normalisation ([`l2`]) → optional
//! standardisation + PCA ([`FeatureTransform`]). [`FeaturePath`] chains them
//! and writes into a caller-provided buffer, so the per-frame step allocates
//! nothing; the L2 norm is folded in as one scale factor instead of a copy.
//!
//! Why each part exists:
//!
//! * L2 normalisation makes distances insensitive to the overall magnitude
//!   of the embedding (brightness changes scale many activations together).
//!   The norm is floored at [`NORM_FLOOR`] so a zero embedding stays zero
//!   instead of becoming NaN.
//! * Standardisation + PCA shrink a 1280-d backbone embedding to a few
//!   hundred dimensions that keep most of the variance, which makes the KNN
//!   cheaper and its distances less dominated by noisy dimensions.
//!   The maths is `z = (x − mean) / scale`, `y = (z − pca_mean) · componentsᵀ`
//!   (no whitening), as scikit-learn's `StandardScaler` followed by `PCA`.
//!   A dimension mismatch is an error ([`FeatureError::Dimension`]): the
//!   original proof of concept silently passed the untransformed input on,
//!   which changed the dimensionality downstream.
//!
//! A fitted transform is stored in a small portable file ([`format`](mod@format)):
//! magic, version, dimensions, little-endian `f32` arrays and a SHA-256 over
//! everything before it. Reading is bounded (dimensions capped, the expected
//! size is checked against the file size before anything is allocated).
//! [`fit`](fit::fit) computes a transform from a matrix of embeddings,
//! [`fit_from_folder`] from the images of a folder.
//!
//! # Converting the original's `feature_processor.pkl`
//!
//! The original pickles a scikit-learn `StandardScaler` (`mean_`, `scale_`,
//! float64) and a `PCA` (`mean_`, `components_`, `explained_variance_`,
//! float32). A Rust program cannot read the pickle, so convert it once with
//! Python and NumPy, writing our format directly (layout in [`format`](mod@format)):
//!
//! ```text
//! import hashlib, pickle, struct, numpy as np
//! d = pickle.load(open("feature_processor.pkl", "rb"))
//! sc, pca = d["scaler"], d["pca"]          # layout (a); for the "compatible_format"
//! f = lambda a: np.asarray(a, "<f4").ravel().tobytes()   # use scaler_data / pca_data
//! n_in = sc.mean_.shape[0]
//! n_out = pca.components_.shape[0] if pca is not None else n_in
//! body = b"TLCMFEAT" + struct.pack("<IIII", 1, 1 if pca is not None else 0, n_in, n_out)
//! body += f(sc.mean_) + f(sc.scale_)
//! if pca is not None:
//!     body += f(pca.mean_) + f(pca.components_) + f(pca.explained_variance_)
//! open("features.tlcmf", "wb").write(body + hashlib.sha256(body).digest())
//! ```
//!
//! Or, with the arrays already in Rust (e.g. parsed from a `.npz` export),
//! [`FeatureTransform::from_arrays`] validates them and
//! [`FeatureTransform::to_bytes`] writes the same file. The float64 scaler
//! arrays lose nothing that matters when narrowed to float32 (the runtime
//! computes in float32 anyway).

mod error;
pub mod fit;
mod folder;
pub mod format;
pub mod l2;
mod matvec;
mod path;
mod transform;

pub use error::FeatureError;
pub use fit::{FitOptions, Fitted, fit};
pub use folder::{MAX_FIT_VALUES, fit_from_folder};
pub use l2::{NORM_FLOOR, l2_norm, l2_normalize};
pub use path::FeaturePath;
pub use transform::{FeatureTransform, PcaArrays};

/// Largest input or output dimensionality accepted anywhere in the feature
/// path (files, arrays, fitting).
pub const MAX_DIM: usize = 8192;
