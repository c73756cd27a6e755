//! Server configuration: defaults, then an optional TOML file, then `SPHERE_LITE_*`
//! environment variables and command-line flags (the latter two via clap).
//!
//! Why: systemd units and containers set environment variables, operators prefer a file, and
//! tests pass flags; one struct with validation errors that name the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default listen address (loopback: expose it deliberately).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// Default data directory.
pub const DEFAULT_DATA: &str = "./sphere-data";

/// The settings sphere-lite runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Data directory (`sphere.redb` and `blobs/`).
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Hard cap on a package body in bytes.
    pub max_upload_bytes: u64,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `data = "/var/lib/sphere-lite"`
    pub data: Option<PathBuf>,
    /// `listen = "127.0.0.1:8470"`
    pub listen: Option<String>,
    /// `max_upload_bytes = 67108864`
    pub max_upload_bytes: Option<u64>,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error(
        "config file {path}: {message}. Fix: check the file's TOML (keys: data, listen, max_upload_bytes)"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("config key `{key}`: {problem}. Fix: {fix}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// What to write instead.
        fix: &'static str,
    },
}

impl FileConfig {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

impl Config {
    /// Combine flags/environment (`Some` wins), the file, and defaults; validate.
    pub fn resolve(
        data: Option<PathBuf>,
        listen: Option<String>,
        max_upload_bytes: Option<u64>,
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let data = data.or(file.data).unwrap_or_else(|| DEFAULT_DATA.into());
        let listen_text = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            problem: format!("{listen_text:?} is not an address"),
            fix: "write IP:PORT, e.g. 127.0.0.1:8470 or 0.0.0.0:8470",
        })?;
        let max_upload_bytes = max_upload_bytes
            .or(file.max_upload_bytes)
            .unwrap_or(crate::domain::DEFAULT_MAX_UPLOAD_BYTES);
        if max_upload_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_upload_bytes",
                problem: format!("{max_upload_bytes} is too small"),
                fix: "use at least 1024 (default 67108864)",
            });
        }
        Ok(Config {
            data,
            listen,
            max_upload_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: FileConfig = toml::from_str("listen = \"0.0.0.0:1\"\ndata = \"/d\"").unwrap();
        let c = Config::resolve(None, Some("127.0.0.1:2".into()), None, file).unwrap();
        assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.data, PathBuf::from("/d"));
        let d = Config::resolve(None, None, None, FileConfig::default()).unwrap();
        assert_eq!(d.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(Config::resolve(None, Some("nope".into()), None, FileConfig::default()).is_err());
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }
}
