//! The `[models]` section: where over-the-air models are kept, which keys may sign them and
//! how a new model earns its place. Owned here, beside the store it configures.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// `[models]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelsConfig {
    /// The store folder (slots `a/`, `b/` and `incoming/`). Absent: `models/` beside the
    /// state database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// File of trusted release keys (`tinylcm-release-public:` lines). Absent: every install
    /// is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_keys: Option<PathBuf>,
    /// Largest model file accepted, bytes. Default 64 MiB (what the runtime can load).
    pub max_bytes: u64,
    /// Service starts a model on trial may take before it is rolled back (crash loop).
    /// Default 3.
    pub max_trial_starts: u32,
    /// Frames a model on trial must run well before it is committed. Default 300.
    pub health_frames: u64,
    /// Roll back when the trial's mean confidence falls below this share of the committed
    /// model's. Default 0.5.
    pub min_confidence_ratio: f32,
    /// The product or board this device is (e.g. `tinylcm-cm4`, its RAUC compatible): a release
    /// is installed only when its signed `compatible` is the same string. Absent (the default):
    /// only releases bound to no compatible are taken, and a release bound to any is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compatible: Option<String>,
    /// Release keys taken out of trust: key ids (16 hex digits, as `tinylcm model keygen` and
    /// `tinylcm model status` show them) or whole `tinylcm-release-public:` lines. A release
    /// signed by one is refused even while the key is still in `trusted-keys`, and a model
    /// installed from one is not started again. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked_keys: Vec<String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: None,
            trusted_keys: None,
            max_bytes: crate::model::MAX_MODEL_BYTES,
            max_trial_starts: 3,
            health_frames: 300,
            min_confidence_ratio: 0.5,
            compatible: None,
            revoked_keys: Vec::new(),
        }
    }
}

impl ModelsConfig {
    /// The store folder: `dir`, or `models/` beside the state database `state_path`.
    pub fn dir(&self, state_path: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.clone(),
            None => state_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join("models"),
        }
    }

    /// The key ids of `revoked-keys` (a public key line gives its id); entries that are
    /// neither are left out here and refused by [`ModelsConfig::validate`].
    pub fn revoked_key_ids(&self) -> Vec<String> {
        self.revoked_keys
            .iter()
            .filter_map(|k| revoked_id(k))
            .collect()
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(c) = &self.compatible {
            if !tinylcm_protocol::release::valid_compatible(c) {
                return Err(ConfigError::new(
                    "models.compatible",
                    format!("{c:?} is not valid"),
                    "1 to 64 characters of A-Z a-z 0-9 . _ - (e.g. the board's RAUC compatible), \
                     or remove it",
                ));
            }
        }
        if let Some(bad) = self.revoked_keys.iter().find(|k| revoked_id(k).is_none()) {
            return Err(ConfigError::new(
                "models.revoked-keys",
                format!("{bad:?} is neither a key id nor a public key line"),
                "give the 16 hex digits of a key id, or a whole tinylcm-release-public: line",
            ));
        }
        let d = ModelsConfig::default();
        let checks: [crate::config_error::Check<'_>; 4] = [
            (
                "models.max-bytes",
                (1..=crate::model::MAX_MODEL_BYTES).contains(&self.max_bytes),
                self.max_bytes.to_string(),
                format!(
                    "set 1..={} (the largest model the runtime loads)",
                    crate::model::MAX_MODEL_BYTES
                ),
            ),
            (
                "models.max-trial-starts",
                (1..=100).contains(&self.max_trial_starts),
                self.max_trial_starts.to_string(),
                format!("set 1..=100 (default {})", d.max_trial_starts),
            ),
            (
                "models.health-frames",
                (1..=10_000_000).contains(&self.health_frames),
                self.health_frames.to_string(),
                format!("set 1..=10000000 (default {})", d.health_frames),
            ),
            (
                "models.min-confidence-ratio",
                (0.0..=1.0).contains(&self.min_confidence_ratio),
                self.min_confidence_ratio.to_string(),
                "set 0.0..=1.0 (0 turns the confidence check off; default 0.5)".into(),
            ),
        ];
        ConfigError::first_failed(checks)
    }
}

/// The key id an entry of `revoked-keys` names: 16 hex digits as they are (any case), or the
/// id of a public key line.
fn revoked_id(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if entry.len() == 16 && entry.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(entry.to_ascii_lowercase());
    }
    tinylcm_protocol::release::PublicKey::from_text(entry)
        .ok()
        .map(|k| k.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_folder_sits_beside_the_database() {
        let c = ModelsConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.dir(Path::new("/data/tinylcm/state.redb")),
            Path::new("/data/tinylcm/models")
        );
        let c: ModelsConfig = toml::from_str("dir = \"/m\"\nmax-trial-starts = 0").unwrap();
        assert_eq!(c.dir(Path::new("/x/state.redb")), Path::new("/m"));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("models.max-trial-starts"), "{e}");
    }

    #[test]
    fn compatible_and_revoked_keys_are_checked() {
        let key = tinylcm_protocol::release::SigningKey::generate().unwrap();
        let text = format!(
            "compatible = \"tinylcm-cm4\"\nrevoked-keys = [\"0123456789ABCDEF\", \"{}\"]",
            key.public().to_text()
        );
        let c: ModelsConfig = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.revoked_key_ids(),
            vec!["0123456789abcdef".to_string(), key.public().id()]
        );
        for (text, key) in [
            ("compatible = \"a b\"", "models.compatible"),
            ("revoked-keys = [\"abc\"]", "models.revoked-keys"),
        ] {
            let c: ModelsConfig = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
