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

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::BuiltinVariant;
use crate::engine::{ModelSource, TensorRef};
use crate::preprocess::{ChannelOrder, PreprocessConfig, ResizeMode};

/// Largest model file the runtime reads into memory (a Pi Zero 2 W has 512 MB).
pub const MAX_MODEL_BYTES: u64 = 64 * 1024 * 1024;
/// Largest manifest accepted.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Most labels a manifest may list.
const MAX_LABELS: usize = 10_000;
/// Most golden entries a manifest may carry (each costs one inference at install).
pub const MAX_GOLDENS: usize = 16;
/// Largest embedding a golden entry may list (keeps signed manifests small).
pub const MAX_GOLDEN_EMBEDDING: usize = 4096;

/// The sidecar manifest of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Model family name, e.g. `tinylcm-default`.
    pub name: String,
    /// Version of this model file.
    pub version: String,
    /// SHA-256 (lowercase hex) of the `.tflite` bytes.
    pub sha256: String,
    /// Class labels in the index order of the scores output; empty (or absent) for an
    /// embedding-only model, whose classes come from its initial state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// How frames must be prepared for this model.
    pub input: InputSpec,
    /// Which output tensor plays which role (absent: an embedding-only model whose single
    /// output is the embedding).
    #[serde(default)]
    pub outputs: OutputRoles,
    /// Known outputs for generated inputs (`[[golden]]`), checked before an over-the-air
    /// model is activated (see [`Golden`]); empty for models that never travel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub golden: Vec<Golden>,
}

/// One golden check: the outputs the model must produce for the input generated from `seed`.
///
/// The input is an RGB8 frame of the manifest's input size whose bytes come from SplitMix64
/// seeded with `seed` (byte *k* is the top byte of the *k*-th draw), prepared with the
/// manifest's own `[input]` spec; so a golden is a seed plus a few numbers and works for any
/// model. `tinylcm model sign --golden N` computes them with the real engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// Seed of the generated input frame (0..2^63).
    pub seed: u64,
    /// Largest accepted difference per value: `|got - expected| <= tolerance * max(1, |expected|)`.
    pub tolerance: f32,
    /// Expected class scores (dequantised), one per label (none for an embedding-only model).
    #[serde(default)]
    pub scores: Vec<f32>,
    /// Expected embedding (dequantised), when the model has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// How the model expects its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order the model was trained with.
    pub channel_order: ChannelOrder,
    /// How the frame is fitted to the input size.
    pub resize: ResizeMode,
    /// Per-channel value subtracted from the pixel (0..255 scale).
    pub mean: [f32; 3],
    /// Per-channel divisor applied after the mean.
    pub std: [f32; 3],
}

/// Output tensors by role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRoles {
    /// Class scores, one per label; `None` for an embedding-only model.
    #[serde(default)]
    pub scores: Option<TensorRef>,
    /// Feature vector for KNN and drift statistics, if the model has one. An
    /// embedding-only model that names none uses its single output.
    #[serde(default)]
    pub embedding: Option<TensorRef>,
}

impl InputSpec {
    /// The preprocessing this spec implies, for when the config does not override it.
    pub fn preprocess_config(&self) -> PreprocessConfig {
        PreprocessConfig {
            resize: self.resize,
            channel_order: self.channel_order,
            mean: self.mean,
            std: self.std,
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

impl ModelManifest {
    /// Parse and check a manifest; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        let manifest: ModelManifest = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if manifest.outputs.scores.is_some() {
            if manifest.labels.is_empty() || manifest.labels.len() > MAX_LABELS {
                return Err(bad(format!(
                    "`labels` must list between 1 and {MAX_LABELS} classes"
                )));
            }
        } else if !manifest.labels.is_empty() {
            return Err(bad(
                "`labels` name the classes of a scores output, and `[outputs]` names none; \
                 name it (`scores = \"...\"`), or drop `labels` for an embedding-only model \
                 (its classes come from `tinylcm init-state`)"
                    .into(),
            ));
        }
        if manifest.sha256.len() != 64 || !manifest.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("`sha256` must be 64 hex digits".into()));
        }
        let spec = &manifest.input;
        if !(1..=4096).contains(&spec.width) || !(1..=4096).contains(&spec.height) {
            return Err(bad(
                "`input.width` and `input.height` must be 1..=4096".into()
            ));
        }
        if spec.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || spec.mean.iter().any(|m| !m.is_finite())
        {
            return Err(bad(
                "`input.mean` must be finite and `input.std` finite and non-zero".into(),
            ));
        }
        for (k, golden) in manifest.golden.iter().enumerate() {
            golden.check(k, manifest.labels.len()).map_err(bad)?;
            if manifest.embedding_only() && golden.embedding.is_none() {
                return Err(bad(format!(
                    "golden {k}: an embedding-only model's golden needs an `embedding`"
                )));
            }
        }
        if manifest.golden.len() > MAX_GOLDENS {
            return Err(bad(format!(
                "at most {MAX_GOLDENS} `[[golden]]` entries are accepted"
            )));
        }
        Ok(manifest)
    }
}

impl ModelManifest {
    /// The model has no class scores: the KNN on its embedding classifies.
    pub fn embedding_only(&self) -> bool {
        self.outputs.scores.is_none()
    }
}

impl Golden {
    /// The shape rules of entry `k` of a manifest with `labels` classes.
    fn check(&self, k: usize, labels: usize) -> Result<(), String> {
        if !self.tolerance.is_finite() || self.tolerance < 0.0 {
            return Err(format!(
                "golden {k}: `tolerance` must be a finite number >= 0"
            ));
        }
        if self.seed > i64::MAX as u64 {
            return Err(format!("golden {k}: `seed` must be below 2^63"));
        }
        if self.scores.len() != labels {
            return Err(format!(
                "golden {k}: `scores` lists {} values, the manifest {labels} labels",
                self.scores.len()
            ));
        }
        let embedding = self.embedding.as_deref().unwrap_or(&[]);
        if embedding.len() > MAX_GOLDEN_EMBEDDING {
            return Err(format!(
                "golden {k}: `embedding` lists more than {MAX_GOLDEN_EMBEDDING} values"
            ));
        }
        if self.scores.iter().chain(embedding).any(|v| !v.is_finite()) {
            return Err(format!("golden {k}: expected outputs must be finite"));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"m\"\nversion = \"1\"\nsha256 = \"";
    const INPUT: &str = "[input]\nwidth = 8\nheight = 8\nchannel_order = \"rgb\"\n\
                         resize = \"stretch\"\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n";

    fn manifest(top: &str, rest: &str) -> Result<ModelManifest, ModelError> {
        let text = format!("{HEAD}{}\"\n{top}{INPUT}{rest}", "a".repeat(64));
        ModelManifest::parse(&text, Path::new("m.toml"))
    }

    #[test]
    fn an_embedding_only_manifest_needs_no_labels_or_outputs() {
        let m = manifest("", "").unwrap();
        assert!(m.embedding_only() && m.labels.is_empty());
        assert_eq!(m.outputs, OutputRoles::default());
        let m = manifest("", "[outputs]\nembedding = \"features\"\n").unwrap();
        assert!(m.embedding_only());
        let m = manifest("labels = [\"a\"]\n", "[outputs]\nscores = 0\n").unwrap();
        assert!(!m.embedding_only());
    }

    #[test]
    fn labels_without_scores_and_scores_without_labels_are_refused() {
        let e = manifest("labels = [\"a\"]\n", "").unwrap_err().to_string();
        assert!(e.contains("embedding-only"), "{e}");
        let e = manifest("", "[outputs]\nscores = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`labels` must list"), "{e}");
    }

    #[test]
    fn an_embedding_only_golden_needs_an_embedding() {
        let e = manifest("", "[[golden]]\nseed = 1\ntolerance = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs an `embedding`"), "{e}");
        manifest(
            "",
            "[[golden]]\nseed = 1\ntolerance = 0.1\nembedding = [0.5, 1.0]\n",
        )
        .unwrap();
    }
}
