//! The one configuration file: TOML with documented defaults, environment
//! overrides, and validation errors that name the key and the fix.
//!
//! Each subsystem owns its section type (e.g. [`crate::engine::EngineConfig`]);
//! this module only composes them, loads them and reports errors.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::adapt::AdaptationConfig;
use crate::autonomy::AutonomyConfig;
use crate::board::BoardConfig;
use crate::config_error::ConfigError;
use crate::drift::DriftConfig;
use crate::engine::{EngineConfig, TensorRef};
use crate::frame::SourceConfig;
use crate::knn::KnnConfig;
use crate::modelstore::ModelsConfig;
use crate::preprocess::PreprocessConfig;
use crate::quarantine::QuarantineConfig;
use crate::rauc::RaucConfig;
use crate::state::StateConfig;
use crate::status::StatusConfig;
use crate::sync::SyncConfig;

/// Prefix of environment variables that override configuration keys:
/// `TINYLCM_ENGINE__THREADS=2` sets `engine.threads`; `_` stands for `-` in key names.
pub const ENV_PREFIX: &str = "TINYLCM_";

/// The whole runtime configuration (one TOML file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which model runs.
    pub model: ModelConfig,
    /// Which library runs it, with which accelerator.
    pub engine: EngineConfig,
    /// Where frames come from.
    pub source: SourceConfig,
    /// How frames become model input; absent: what the model's manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessConfig>,
    /// How long the loop runs.
    pub run: RunConfig,
    /// What happens after the model: KNN, drift detectors, incidents.
    pub autonomy: AutonomyConfig,
    /// The KNN on the model's embedding.
    pub knn: KnnConfig,
    /// The drift detectors.
    pub drift: DriftConfig,
    /// Where the device keeps what it learns, and how durably.
    pub state: StateConfig,
    /// Suspicious samples kept for adaptation and for a human.
    pub quarantine: QuarantineConfig,
    /// On-device learning from the quarantine, with snapshot and rollback.
    pub adaptation: AdaptationConfig,
    /// The status file the running service publishes for `tinylcm status`.
    pub status: StatusConfig,
    /// Synchronisation with sphere-lite (off until a server is set or the device enrolled).
    pub sync: SyncConfig,
    /// The A/B store of over-the-air models.
    pub models: ModelsConfig,
    /// RAUC, the OS updater: slot status, marking slots good, OS bundles.
    pub rauc: RaucConfig,
    /// Board hardware: status LED, button, free space kept on the data partition.
    pub board: BoardConfig,
}

/// The `[model]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelConfig {
    /// A `.tflite` file; absent: the default model built into the binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Its manifest; absent: `<stem>.toml` beside the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// Which built-in model runs when `path` is absent.
    pub builtin: BuiltinVariant,
    /// Scores output (index or tensor name), overriding the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<TensorRef>,
    /// Embedding output (index or tensor name), overriding the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<TensorRef>,
    /// The model's initial KNN state (`tinylcm init-state`); absent: `<stem>.state` beside
    /// the model, or the one built in with the default model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<PathBuf>,
}

/// The two builds of the default model shipped inside the binary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinVariant {
    /// Full-integer int8: smaller weights, the form an Edge TPU needs.
    Int8,
    /// float32: the fastest with XNNPACK on both backends we ship (TFLite 2.6's
    /// XNNPACK has no int8 kernels, so int8 runs ~10x slower there).
    #[default]
    F32,
}

/// The `[run]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunConfig {
    /// Stop after this many frames (0: no limit).
    pub max_frames: u64,
    /// Frames the capture thread may prepare ahead of inference.
    pub capture_depth: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_frames: 0,
            capture_depth: 2,
        }
    }
}

impl Config {
    /// Load defaults, then `file` (if any), then `TINYLCM_*__*` environment overrides, and validate.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, Env::prefixed(ENV_PREFIX))
    }

    /// [`Config::load`] with a remote configuration fragment (sphere-lite's, see
    /// [`crate::service::remote`]) between the file and the environment: an operator's push
    /// overrides the image's file, a local administrator's environment overrides both.
    /// The fragment may only set keys of [`tinylcm_protocol::remote_config::REMOTE_KEYS`],
    /// within their bounds: checked here, whatever the server checked.
    pub fn load_with_remote(
        file: Option<&Path>,
        remote: Option<&str>,
    ) -> Result<Self, ConfigError> {
        Self::load_layers(file, remote, Env::prefixed(ENV_PREFIX))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        Self::load_layers(file, None, env)
    }

    fn load_layers(
        file: Option<&Path>,
        remote: Option<&str>,
        env: Env,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "(file)",
                    format!("{} does not exist or is not a file", path.display()),
                    "pass an existing TOML file, or print the defaults with `tinylcm config`",
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        if let Some(fragment) = remote {
            tinylcm_protocol::remote_config::parse_fragment(fragment).map_err(|e| {
                ConfigError::new(
                    e.key().unwrap_or("(remote)"),
                    e.to_string(),
                    "fix the configuration layers on sphere-lite (`/ui/config`)",
                )
            })?;
            figment = figment.merge(Toml::string(fragment));
        }
        // Only double-underscore names are keys: TINYLCM_LOG, TINYLCM_CACHE and the
        // library path variables are settings of their own, not config keys.
        let env = env
            .filter(|key| key.as_str().contains("__"))
            .map(|key| key.as_str().replace("__", ".").replace('_', "-").into());
        let config: Config = figment.merge(env).extract().map_err(from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Check every section; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate()?;
        self.source.validate()?;
        if let Some(preprocess) = &self.preprocess {
            preprocess.validate()?;
        }
        if self.run.capture_depth == 0 || self.run.capture_depth > 16 {
            return Err(ConfigError::new(
                "run.capture-depth",
                format!("{} is out of range", self.run.capture_depth),
                "use 1..=16 (2 overlaps capture with inference)",
            ));
        }
        self.autonomy.validate()?;
        self.knn.validate(1).map_err(|e| {
            ConfigError::new(
                "knn",
                e.to_string(),
                "see `[knn]` in the Configuration chapter of the user guide (docs/guide/src/configuration.md)",
            )
        })?;
        self.drift.validate()?;
        self.state.validate()?;
        self.quarantine.validate()?;
        self.adaptation.validate()?;
        self.status.validate()?;
        self.sync.validate()?;
        self.models.validate()?;
        self.rauc.validate()?;
        self.board.validate()?;
        if self.status.path == self.state.path {
            return Err(ConfigError::new(
                "status.path",
                "is the state database's file: writing the status would replace the database",
                "give the status its own file, e.g. status.json beside the database",
            ));
        }
        if self.model.path.is_none() && self.model.manifest.is_some() {
            return Err(ConfigError::new(
                "model.manifest",
                "a manifest without `model.path` has no model to describe",
                "set `model.path` too, or remove `model.manifest` to use the built-in model",
            ));
        }
        Ok(())
    }

    /// The configuration as TOML, e.g. to print the effective settings.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Turn figment's error (type mismatch, unknown key, bad TOML) into ours, naming the key.
fn from_figment(error: figment::Error) -> ConfigError {
    let key = if error.path.is_empty() {
        "(file)".to_string()
    } else {
        error.path.join(".")
    };
    let source = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    ConfigError::new(
        key,
        format!("{}{source}", error.kind),
        "see the Configuration chapter of the user guide (docs/guide/src/configuration.md); `tinylcm config` prints every key with its default",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    fn no_env() -> Env {
        Env::prefixed("TINYLCM_TEST_NOTHING_")
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let config = Config::load_with_env(None, no_env()).unwrap();
        assert_eq!(config, Config::default());
        let file = write(&config.to_toml());
        assert_eq!(
            Config::load_with_env(Some(file.path()), no_env()).unwrap(),
            config
        );
    }

    #[test]
    fn every_remotely_settable_section_is_a_section_of_this_config() {
        // sphere-lite refuses remote fragments outside these sections; each must exist here,
        // or an operator could push settings the device cannot place.
        let defaults: toml::Table = Config::default().to_toml().parse().unwrap();
        for section in tinylcm_protocol::remote_config::REMOTE_SECTIONS {
            assert!(
                defaults[section].is_table(),
                "[{section}] is not a config section"
            );
        }
    }

    /// The leaf at dotted `key` of `table`.
    fn leaf<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
        let mut segments = key.split('.');
        let mut value = table.get(segments.next()?)?;
        for segment in segments {
            value = value.as_table()?.get(segment)?;
        }
        (!value.is_table()).then_some(value)
    }

    /// The allow-list lives in the protocol crate (the server checks it too): it must not
    /// drift from the sections defined here. Fails when a key is renamed, removed or retyped
    /// in a section config without the list following, or when a default falls outside the
    /// remote bound.
    #[test]
    fn every_allow_listed_remote_key_is_a_key_of_this_config_with_its_type() {
        use tinylcm_protocol::remote_config::{KeyType, REMOTE_KEYS, expand};
        let defaults: toml::Table = Config::default().to_toml().parse().unwrap();
        for entry in REMOTE_KEYS {
            for key in expand(entry.pattern) {
                let value = leaf(&defaults, &key).unwrap_or_else(|| {
                    panic!("allow-listed `{key}` is not a key of the runtime's config")
                });
                let same_type = matches!(
                    (entry.kind, value),
                    (KeyType::Bool, toml::Value::Boolean(_))
                        | (KeyType::Integer { .. }, toml::Value::Integer(_))
                        | (KeyType::Float { .. }, toml::Value::Float(_))
                        | (
                            KeyType::Choice(_) | KeyType::Name { .. },
                            toml::Value::String(_)
                        )
                );
                assert!(
                    same_type,
                    "`{key}` is {value:?} here, {:?} in the list",
                    entry.kind
                );
                entry
                    .kind
                    .check(value)
                    .unwrap_or_else(|e| panic!("the default of `{key}` is off its bound: {e}"));
                // Every choice is a value this runtime takes.
                if let KeyType::Choice(choices) = entry.kind {
                    for choice in choices {
                        let (section, rest) = key.rsplit_once('.').unwrap();
                        let fragment = format!("[{section}]\n{rest} = {choice:?}\n");
                        Config::load_layers(None, Some(&fragment), no_env())
                            .unwrap_or_else(|e| panic!("`{key} = {choice:?}` does not load: {e}"));
                    }
                }
            }
        }
    }

    /// A bound of the allow-list that the runtime's own validation refuses would let the
    /// server queue what every device refuses; at each end of each bound, with the other keys
    /// at their defaults, the configuration must load (the only exceptions are keys whose
    /// runtime check ties them to another key, listed with that reason).
    #[test]
    fn every_remote_bound_is_a_value_the_runtime_takes() {
        use tinylcm_protocol::remote_config::{KeyType, REMOTE_KEYS, expand};
        // Bounded by another key as well (checked on the device, reported if refused).
        let tied = [
            "adaptation.min-pending",      // ≥ min-cluster-size
            "adaptation.min-neighbors",    // < min-cluster-size
            "adaptation.min-cluster-size", // ≤ min-pending, > min-neighbors
            "adaptation.near-factor",      // ≤ far-factor
            "adaptation.far-factor",       // ≥ near-factor
            "quarantine.per-class-cap",    // ≤ max-entries
            "quarantine.max-entries",      // ≥ per-class-cap
            "drift.ewma-confidence.limit", // > exit-limit
            "drift.ewma-confidence.exit-limit",
            "drift.distribution.threshold", // ≥ exit-threshold
            "drift.distribution.exit-threshold",
            "drift.embedding.threshold", // ≥ exit-threshold
            "drift.embedding.exit-threshold",
            "drift.adwin.min-window", // max-window ≥ 4 × min-window
            "drift.adwin.max-window",
        ];
        let mut refused = Vec::new();
        for entry in REMOTE_KEYS {
            let ends: Vec<String> = match entry.kind {
                KeyType::Integer { min, max } => vec![min.to_string(), max.to_string()],
                KeyType::Float { min, max } => vec![format!("{min:?}"), format!("{max:?}")],
                _ => continue,
            };
            for key in expand(entry.pattern) {
                if tied.contains(&key.as_str()) {
                    continue;
                }
                let (section, rest) = key.rsplit_once('.').unwrap();
                for end in &ends {
                    let fragment = format!("[{section}]\n{rest} = {end}\n");
                    if let Err(e) = Config::load_layers(None, Some(&fragment), no_env()) {
                        refused.push(format!("{key} = {end}: {e}"));
                    }
                }
            }
        }
        assert!(refused.is_empty(), "{}", refused.join("\n"));
    }

    #[test]
    fn a_remote_fragment_overrides_the_file_and_may_not_leave_its_sections() {
        let file = write("[knn]\nk = 3\n[run]\nmax-frames = 7\n");
        let config =
            Config::load_layers(Some(file.path()), Some("[knn]\nk = 7\n"), no_env()).unwrap();
        assert_eq!(config.knn.k, 7);
        assert_eq!(config.run.max_frames, 7);
        let err = Config::load_layers(Some(file.path()), Some("[run]\nmax-frames = 1\n"), no_env())
            .unwrap_err();
        assert_eq!(err.key, "run", "{err}");
        let err = Config::load_layers(None, Some("[knn]\nk = \"many\"\n"), no_env()).unwrap_err();
        assert_eq!(err.key, "knn.k", "{err}");
        // A path, even in an allowed section, is refused naming its key.
        let err = Config::load_layers(
            None,
            Some("[quarantine]\nthumbnail-dir = \"/tmp/x\"\n"),
            no_env(),
        )
        .unwrap_err();
        assert_eq!(err.key, "quarantine.thumbnail-dir", "{err}");
    }

    #[test]
    fn the_status_file_may_not_be_the_database() {
        let mut config = Config::default();
        config.status.path = config.state.path.clone();
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("status.path"), "{e}");
    }

    #[test]
    fn file_values_override_defaults() {
        let file = write("[run]\nmax-frames = 7\n");
        let config = Config::load_with_env(Some(file.path()), no_env()).unwrap();
        assert_eq!(config.run.max_frames, 7);
        assert_eq!(config.run.capture_depth, 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let file = write("[run]\nmax-frame = 7\n");
        let err = Config::load_with_env(Some(file.path()), no_env()).unwrap_err();
        assert!(err.problem.contains("max-frame"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let file = write("[run]\nmax-frames = \"lots\"\n");
        let err = Config::load_with_env(Some(file.path()), no_env()).unwrap_err();
        assert_eq!(err.key, "run.max-frames", "{err}");
    }

    #[test]
    fn out_of_range_value_names_key_and_fix() {
        let file = write("[run]\ncapture-depth = 0\n");
        let err = Config::load_with_env(Some(file.path()), no_env()).unwrap_err();
        assert_eq!(err.key, "run.capture-depth");
        assert!(err.to_string().contains("Fix: use 1..=16"), "{err}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Config::load_with_env(Some(Path::new("/nonexistent/tinylcm.toml")), no_env())
            .unwrap_err();
        assert!(err.problem.contains("/nonexistent/tinylcm.toml"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[run]\nmax-frames = 7\n")?;
            jail.set_env("TINYLCM_RUN__MAX_FRAMES", "9");
            jail.set_env("TINYLCM_LOG", "debug"); // not a config key: ignored
            let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.run.max_frames, 9);
            Ok(())
        });
    }
}
