//! The model manifest (`<model>.toml`): the labels, the input spec and the output roles that
//! travel with every `.tflite`, and the goldens an over-the-air model is checked against.
//!
//! Why here and not in the runtime: the manifest reaches a device inside a signed release
//! that sphere-lite stores and serves, so it is wire format. One parser, with its bounds, is
//! shared by the device (which refuses a bad one before anything is written) and by the fuzz
//! target that hammers it without building the runtime. What the runtime does with a manifest
//! (checksums of model files, resolving tensors in a loaded model, preprocessing) stays there.
//!
//! A model need not classify: an **embedding-only** model (a headless feature extractor, the
//! original TinyLCM's design) has no `scores` output and no `labels`; the KNN on its embedding
//! is then the classifier, and its classes come from the device's initial state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most labels a manifest may list.
pub const MAX_LABELS: usize = 10_000;
/// Most golden entries a manifest may carry (each costs one inference at install).
pub const MAX_GOLDENS: usize = 16;
/// Largest embedding a golden entry may list (keeps signed manifests small).
pub const MAX_GOLDEN_EMBEDDING: usize = 4096;
/// Largest input side, in pixels.
pub const MAX_INPUT_SIDE: u32 = 4096;

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

/// A tensor chosen by position or by name (TOML: an integer or a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TensorRef {
    /// Position in the model's input or output list.
    Index(usize),
    /// Tensor name as stored in the model (exact match).
    Name(String),
}

impl std::fmt::Display for TensorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorRef::Index(i) => write!(f, "#{i}"),
            TensorRef::Name(n) => write!(f, "\"{n}\""),
        }
    }
}

/// How a frame is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Scale each axis independently (distorts when the aspect ratios differ).
    #[default]
    Stretch,
    /// Crop the centre to the input's aspect ratio, then scale.
    CenterCrop,
    /// Scale to fit inside, keeping the aspect ratio; pad the rest with `pad`.
    Letterbox,
}

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelOrder {
    /// Red, green, blue (frames are RGB).
    #[default]
    Rgb,
    /// Blue, green, red.
    Bgr,
}

/// A manifest that is not valid TOML of the expected shape, or is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model manifest {}: {reason}", path.display())]
pub struct ManifestError {
    /// The manifest (a file, or what names it, e.g. a release's `name version`).
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl ModelManifest {
    /// Parse and check a manifest; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let bad = |reason: String| ManifestError {
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
        if !(1..=MAX_INPUT_SIDE).contains(&spec.width)
            || !(1..=MAX_INPUT_SIDE).contains(&spec.height)
        {
            return Err(bad(format!(
                "`input.width` and `input.height` must be 1..={MAX_INPUT_SIDE}"
            )));
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "name = \"m\"\nversion = \"1\"\nsha256 = \"";
    const INPUT: &str = "[input]\nwidth = 8\nheight = 8\nchannel_order = \"rgb\"\n\
                         resize = \"stretch\"\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\n";

    fn manifest(top: &str, rest: &str) -> Result<ModelManifest, ManifestError> {
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

    #[test]
    fn errors_name_the_manifest() {
        let e = ModelManifest::parse("name = 1", Path::new("m.toml")).unwrap_err();
        assert_eq!(e.path, Path::new("m.toml"));
        assert!(
            e.to_string().starts_with("invalid model manifest m.toml: "),
            "{e}"
        );
    }

    #[test]
    fn tensor_ref_serde_accepts_int_or_string() {
        #[derive(Deserialize)]
        struct W {
            t: TensorRef,
        }
        assert_eq!(toml::from_str::<W>("t = 1").unwrap().t, TensorRef::Index(1));
        assert_eq!(
            toml::from_str::<W>("t = \"emb\"").unwrap().t,
            TensorRef::Name("emb".into())
        );
        assert!(toml::from_str::<W>("t = -1").is_err());
        assert_eq!(TensorRef::Index(2).to_string(), "#2");
        assert_eq!(TensorRef::Name("e".into()).to_string(), "\"e\"");
    }
}
