//! The `[status]` section: whether the running service publishes its status file, where,
//! and how often. Owned here, beside the code it configures.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// `[status]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatusConfig {
    /// Write the status file while running. Default `true`.
    pub enabled: bool,
    /// The status file (JSON, replaced atomically). Default `/data/tinylcm/status.json`.
    pub path: PathBuf,
    /// Seconds between reports. Default 5.
    pub interval_seconds: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            enabled: true,
            path: PathBuf::from("/data/tinylcm/status.json"),
            interval_seconds: 5,
        }
    }
}

impl StatusConfig {
    /// Time between reports.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.interval_seconds) {
            return Err(ConfigError::new(
                "status.interval-seconds",
                format!("{} is out of range", self.interval_seconds),
                "use 1..=3600 (5 keeps the file fresh without wearing the SD card)",
            ));
        }
        if self.path.file_name().is_none() {
            return Err(ConfigError::new(
                "status.path",
                format!("{:?} names no file", self.path.display().to_string()),
                "give a file path, e.g. /data/tinylcm/status.json",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keys_are_kebab_case() {
        StatusConfig::default().validate().unwrap();
        let c: StatusConfig = toml::from_str("interval-seconds = 0").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("status.interval-seconds"), "{e}");
        let c: StatusConfig = toml::from_str("path = \"/\"").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("status.path")
        );
        assert!(toml::from_str::<StatusConfig>("bogus = 1").is_err());
    }
}
