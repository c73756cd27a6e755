//! The initial state that travels with a model: the KNN memory, the feature path that
//! produced its vectors, and the reference statistics of its neighbour distances.
//!
//! Why they travel together: the KNN's vectors only mean something in the feature space of
//! the model (and transform) that made them. A state built for another model would give
//! distances in the wrong space and silently wrong drift alarms, so the file names the
//! model's SHA-256 and is refused with any other model.
//!
//! Layout (little-endian): magic `TLCMINIT` (8) · version `u32` · reserved `u32` (0) ·
//! payload length `u64` · postcard payload · SHA-256 of every byte before it (32). The size
//! is checked against the header before the payload is decoded, and files larger than
//! [`MAX_INITIAL_BYTES`] are refused before they are read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BuiltinVariant;
use crate::features::{FeaturePath, FeatureTransform};
use crate::knn::{Knn, KnnState, ReferenceStats};

/// First eight bytes of every file.
pub const MAGIC: &[u8; 8] = b"TLCMINIT";
/// Version written, and the only one read.
pub const VERSION: u32 = 1;
/// Largest file accepted.
pub const MAX_INITIAL_BYTES: u64 = 64 << 20;

const HEADER: usize = 24;
const DIGEST: usize = 32;

/// Failures reading or checking an initial state.
#[derive(Debug, thiserror::Error)]
pub enum InitialError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not an initial state, damaged, or from another version.
    #[error("{what}: not a usable initial state: {reason}")]
    Format {
        /// The file (or `builtin`).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Built for another model.
    #[error(
        "{what} was built for the model with SHA-256 {expected}, but the model running has {actual}; \
         rebuild it with `tinylcm init-state DIR --model <model>`"
    )]
    WrongModel {
        /// The file.
        what: String,
        /// The SHA-256 it names.
        expected: String,
        /// The running model's SHA-256.
        actual: String,
    },
}

/// Everything in an initial state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialState {
    /// Lowercase hex SHA-256 of the model whose embeddings built it.
    pub model_sha256: String,
    /// Whether embeddings are L2-normalised before the transform.
    pub normalize: bool,
    /// The standardisation + PCA step in its portable format, if any.
    pub transform: Option<Vec<u8>>,
    /// The KNN memory.
    pub knn: KnnState,
    /// Leave-one-out statistics of the mean k-NN distance.
    pub reference: ReferenceStats,
}

impl InitialState {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, InitialError> {
        let payload = postcard::to_stdvec(self).map_err(|e| InitialError::Format {
            what: "initial state".into(),
            reason: e.to_string(),
        })?;
        let mut buf = Vec::with_capacity(HEADER + payload.len() + DIGEST);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        buf.extend_from_slice(&payload);
        let digest = Sha256::digest(&buf);
        buf.extend_from_slice(&digest);
        Ok(buf)
    }

    /// Parse a file's bytes; `what` names it in errors.
    pub fn from_bytes(what: &str, bytes: &[u8]) -> Result<Self, InitialError> {
        let bad = |reason: String| InitialError::Format {
            what: what.to_string(),
            reason,
        };
        if bytes.len() < HEADER + DIGEST {
            return Err(bad(format!("truncated at {} bytes", bytes.len())));
        }
        if &bytes[..8] != MAGIC {
            return Err(bad("wrong magic (expected TLCMINIT)".into()));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != VERSION {
            return Err(bad(format!(
                "version {version}; this runtime reads version {VERSION}"
            )));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[16..24]);
        let len = u64::from_le_bytes(len);
        if len != (bytes.len() - HEADER - DIGEST) as u64 {
            return Err(bad(format!(
                "the header promises {len} payload bytes, the file holds {}",
                bytes.len() - HEADER - DIGEST
            )));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch (damaged file)".into()));
        }
        let state: InitialState =
            postcard::from_bytes(&body[HEADER..]).map_err(|e| bad(e.to_string()))?;
        if let Some(t) = &state.transform {
            FeatureTransform::from_bytes(t).map_err(|e| bad(format!("feature transform: {e}")))?;
        }
        Ok(state)
    }

    /// Read and check a file.
    pub fn read(path: &Path) -> Result<Self, InitialError> {
        let io = |source| InitialError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_INITIAL_BYTES {
            return Err(InitialError::Format {
                what: path.display().to_string(),
                reason: format!("{size} bytes is more than the {MAX_INITIAL_BYTES} accepted"),
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Write the file atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<(), InitialError> {
        let io = |source| InitialError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = self.to_bytes()?;
        crate::files::write_atomic(path, &bytes, crate::files::Durability::Synced).map_err(io)
    }

    /// Refuse the state unless it was built for the model with `sha256`.
    pub fn check_model(&self, what: &str, sha256: &str) -> Result<(), InitialError> {
        if !self.model_sha256.eq_ignore_ascii_case(sha256) {
            return Err(InitialError::WrongModel {
                what: what.to_string(),
                expected: self.model_sha256.clone(),
                actual: sha256.to_string(),
            });
        }
        Ok(())
    }

    /// The feature path for embeddings of `input_dim` values.
    pub fn feature_path(&self, input_dim: usize) -> Result<FeaturePath, InitialError> {
        let bad = |reason: String| InitialError::Format {
            what: "initial state".into(),
            reason,
        };
        let transform = match &self.transform {
            Some(bytes) => {
                Some(FeatureTransform::from_bytes(bytes).map_err(|e| bad(e.to_string()))?)
            }
            None => None,
        };
        FeaturePath::new(input_dim, self.normalize, transform).map_err(|e| bad(e.to_string()))
    }

    /// The KNN it holds.
    pub fn knn(&self) -> Result<Knn, InitialError> {
        Knn::from_state(self.knn.clone()).map_err(|e| InitialError::Format {
            what: "initial state".into(),
            reason: format!("KNN: {e}"),
        })
    }
}

/// The initial state shipped for a built-in model (made by `scripts/make-initial-state`).
pub fn builtin(variant: BuiltinVariant) -> Result<InitialState, InitialError> {
    match variant {
        BuiltinVariant::F32 => InitialState::from_bytes(
            "builtin:default-f32.state",
            include_bytes!("../../models/default/default_f32.state"),
        ),
        BuiltinVariant::Int8 => InitialState::from_bytes(
            "builtin:default-int8.state",
            include_bytes!("../../models/default/default_int8.state"),
        ),
    }
}

/// Where an initial state is looked for beside a model file: `<stem>.state`.
pub fn beside(model: &Path) -> PathBuf {
    model.with_extension("state")
}
