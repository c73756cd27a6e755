//! The `[engine]` section of the configuration: which backend, how many
//! threads, which accelerators, and where the libraries are.
//!
//! Owned here (not in `crate::config`) so the engine's knobs and their
//! validation live next to the code that uses them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// Per model, the backend that accelerates it: `tflite-c` first for a float model,
    /// `litert` first for an int8/uint8 one (see [`crate::engine::order_for`]).
    #[default]
    Auto,
    /// Only the classic TF Lite C API.
    TfliteC,
    /// Only LiteRT.
    Litert,
}

/// Whether to use a Coral Edge TPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeTpuMode {
    /// Use it when `libedgetpu.so.1` and a device are present, else fall back.
    #[default]
    Auto,
    /// Never use it.
    Off,
    /// Fail to open the model unless it runs on an Edge TPU.
    Required,
}

/// Highest accepted `engine.threads`.
pub const MAX_THREADS: usize = 64;

/// Default thread count: one.
///
/// Measured with the default model: an interpreter thread pool spins while it
/// waits, so as soon as anything else wants a core (capture and decode on our
/// own capture thread, sync, the OS) two threads made invoke ~10x slower on
/// average with 100x worse tails than one. A large model on an otherwise idle
/// 4-core board can gain from `threads = 4`; that is a deliberate choice.
pub fn default_threads() -> usize {
    1
}

/// `[engine]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineConfig {
    /// `auto` | `tflite-c` | `litert`.
    pub backend: BackendChoice,
    /// Interpreter and XNNPACK threads (tflite-c). LiteRT 2.3 has no thread knob
    /// and runs single-threaded. Default 1 (see [`default_threads`]).
    pub threads: usize,
    /// Use the XNNPACK delegate on the CPU (tflite-c). Default true.
    pub xnnpack: bool,
    /// `auto` | `off` | `required`: Coral Edge TPU use (tflite-c only).
    pub edgetpu: EdgeTpuMode,
    /// Path of `libtensorflowlite_c.so` (else env, cache, system; see `engine::locate`).
    pub tflite_c_library: Option<PathBuf>,
    /// Path of `libLiteRt.so`.
    pub litert_library: Option<PathBuf>,
    /// Path of `libedgetpu.so.1`.
    pub edgetpu_library: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            backend: BackendChoice::Auto,
            threads: default_threads(),
            xnnpack: true,
            edgetpu: EdgeTpuMode::Auto,
            tflite_c_library: None,
            litert_library: None,
            edgetpu_library: None,
        }
    }
}

impl EngineConfig {
    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err(ConfigError::new(
                "engine.threads",
                format!("{} is out of range 1..={MAX_THREADS}", self.threads),
                format!(
                    "set engine.threads to the number of CPU cores to use (default {})",
                    default_threads()
                ),
            ));
        }
        if self.backend == BackendChoice::Litert && self.edgetpu == EdgeTpuMode::Required {
            return Err(ConfigError::new(
                "engine.edgetpu",
                "`required` needs the tflite-c backend, but engine.backend is `litert`",
                "set engine.backend to `tflite-c` or `auto`, or engine.edgetpu to `auto`/`off`",
            ));
        }
        for (key, value) in [
            ("engine.tflite-c-library", &self.tflite_c_library),
            ("engine.litert-library", &self.litert_library),
            ("engine.edgetpu-library", &self.edgetpu_library),
        ] {
            if let Some(path) = value {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::new(
                        key,
                        "is empty",
                        "remove the key to use the default lookup, or give the library's path",
                    ));
                }
                if path.components().count() > 1 && !path.exists() {
                    return Err(ConfigError::new(
                        key,
                        format!("{} does not exist", path.display()),
                        "give the path of an existing library, or remove the key",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_sane() {
        let c = EngineConfig::default();
        assert!(c.validate().is_ok());
        assert!((1..=4).contains(&c.threads));
        assert!(c.xnnpack);
        assert_eq!(c.backend, BackendChoice::Auto);
        assert_eq!(c.edgetpu, EdgeTpuMode::Auto);
    }

    #[test]
    fn parses_kebab_case() {
        let c: EngineConfig = toml::from_str(
            "backend = \"tflite-c\"\nthreads = 2\nxnnpack = false\nedgetpu = \"off\"\n\
             litert-library = \"/opt/libLiteRt.so\"\n",
        )
        .unwrap();
        assert_eq!(c.backend, BackendChoice::TfliteC);
        assert_eq!(c.threads, 2);
        assert!(!c.xnnpack);
        assert_eq!(c.edgetpu, EdgeTpuMode::Off);
        assert_eq!(c.litert_library, Some(PathBuf::from("/opt/libLiteRt.so")));
        let round: EngineConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        assert!(toml::from_str::<EngineConfig>("thread = 2").is_err());
        assert!(toml::from_str::<EngineConfig>("backend = \"tpu\"").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let c = EngineConfig {
            threads: 0,
            ..EngineConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "engine.threads");
        let c = EngineConfig {
            backend: BackendChoice::Litert,
            edgetpu: EdgeTpuMode::Required,
            ..EngineConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "engine.edgetpu");
        let c = EngineConfig {
            litert_library: Some(PathBuf::from("/nonexistent/libLiteRt.so")),
            ..EngineConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "engine.litert-library");
        assert!(e.to_string().contains("does not exist"));
        // A bare name is left to the system loader.
        let c = EngineConfig {
            edgetpu_library: Some(PathBuf::from("libedgetpu.so.1")),
            ..EngineConfig::default()
        };
        assert!(c.validate().is_ok());
    }
}
