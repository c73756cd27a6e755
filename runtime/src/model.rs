//! What a model file needs besides its weights: labels, input spec and which
//! output is which.
//!
//! Every `.tflite` travels with a small TOML manifest (`<stem>.toml` beside it).
//! The runtime reads the labels, the preprocessing the model was trained with
//! and the roles of its outputs from there, and refuses a file whose SHA-256
//! does not match, so a model and its description cannot drift apart.
//!
//! A model need not classify: an **embedding-only** model (a headless feature extractor,
//! the original TinyLCM's design) has no `scores` output and no `labels`; the KNN on its
//! embedding is then the classifier, and its classes come from the initial state.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::BuiltinVariant;
use crate::engine::ModelSource;
use crate::preprocess::PreprocessConfig;

/// The manifest's format and rules live in the protocol crate: it arrives inside signed
/// releases from the server, and is fuzzed there without this crate's dependency tree.
pub use tinylcm_protocol::model_manifest::{
    Golden, InputSpec, MAX_GOLDEN_EMBEDDING, MAX_GOLDENS, ManifestError, ModelManifest, OutputRoles,
};

/// Largest model file the runtime reads into memory (a Pi Zero 2 W has 512 MB).
pub const MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;
/// Largest manifest accepted.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

impl From<&InputSpec> for PreprocessConfig {
    /// The preprocessing a manifest's input spec implies, for when the config does not
    /// override it.
    fn from(spec: &InputSpec) -> Self {
        PreprocessConfig {
            resize: spec.resize,
            channel_order: spec.channel_order,
            mean: spec.mean,
            std: spec.std,
            ..PreprocessConfig::default()
        }
    }
}

/// Failures reading a model and its manifest.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is larger than we accept.
    #[error("{path} is {size} bytes, more than the {limit} bytes accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The manifest is not valid TOML of the expected shape, or is inconsistent.
    #[error("invalid model manifest {path}: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model bytes do not match the manifest's checksum.
    #[error(
        "{path}: SHA-256 is {actual}, the manifest says {expected}; the model or its manifest is corrupt or mismatched"
    )]
    Checksum {
        /// The model file.
        path: PathBuf,
        /// SHA-256 from the manifest.
        expected: String,
        /// SHA-256 of the bytes.
        actual: String,
    },
}

/// A model's bytes together with its verified manifest.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// Where it came from (a path, or `builtin:<name>`).
    pub origin: String,
    /// The model bytes.
    pub bytes: Arc<[u8]>,
    /// Its manifest.
    pub manifest: ModelManifest,
}

impl LoadedModel {
    /// Read `path` and its sidecar manifest (`manifest`, or `<stem>.toml` beside it) and verify them.
    pub fn from_file(path: &Path, manifest: Option<&Path>) -> Result<Self, ModelError> {
        let manifest_path = manifest
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.with_extension("toml"));
        let text = read_bounded(&manifest_path, MAX_MANIFEST_BYTES)?;
        let text = String::from_utf8(text).map_err(|_| ModelError::Manifest {
            path: manifest_path.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        let manifest = ModelManifest::parse(&text, &manifest_path)?;
        let bytes = read_bounded(path, MAX_MODEL_BYTES)?;
        Self::verified(path.display().to_string(), bytes.into(), manifest, path)
    }

    /// Wrap bytes and a manifest text compiled into the binary.
    pub fn from_parts(origin: &str, bytes: &[u8], manifest: &str) -> Result<Self, ModelError> {
        let path = PathBuf::from(origin);
        let manifest = ModelManifest::parse(manifest, &path)?;
        Self::verified(origin.to_string(), bytes.into(), manifest, &path)
    }

    fn verified(
        origin: String,
        bytes: Arc<[u8]>,
        manifest: ModelManifest,
        path: &Path,
    ) -> Result<Self, ModelError> {
        let actual = sha256_hex(&bytes);
        if actual != manifest.sha256.to_ascii_lowercase() {
            return Err(ModelError::Checksum {
                path: path.to_path_buf(),
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        Ok(LoadedModel {
            origin,
            bytes,
            manifest,
        })
    }

    /// The bytes as an engine model source.
    pub fn source(&self) -> ModelSource {
        ModelSource::Bytes(Arc::clone(&self.bytes))
    }
}

impl From<ManifestError> for ModelError {
    fn from(e: ManifestError) -> Self {
        ModelError::Manifest {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// The default model compiled into the binary, so the runtime works with no files at all.
pub fn builtin(variant: BuiltinVariant) -> Result<LoadedModel, ModelError> {
    match variant {
        BuiltinVariant::Int8 => LoadedModel::from_parts(
            "builtin:default-int8",
            include_bytes!("../models/default/default_int8.tflite"),
            include_str!("../models/default/default_int8.toml"),
        ),
        BuiltinVariant::F32 => LoadedModel::from_parts(
            "builtin:default-f32",
            include_bytes!("../models/default/default_f32.tflite"),
            include_str!("../models/default/default_f32.toml"),
        ),
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read a whole file, refusing files larger than `limit` before reading them
/// (a model or manifest from outside must not make us allocate without bound).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ModelError> {
    let read_err = |source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    if size > limit {
        return Err(ModelError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    std::fs::read(path).map_err(read_err)
}
