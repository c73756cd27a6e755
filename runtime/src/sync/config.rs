//! The `[sync]` section: which server, how to enroll, how often, and how much disk the outbox
//! may use. Owned here, beside the code it configures.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[sync]` configuration. Sync is off until `server` is set (or the device was enrolled with
/// `tinylcm enroll`, which records the server with the credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SyncConfig {
    /// sphere-lite's base URL, e.g. `https://sphere.example:8470`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// A file holding an enrollment key (e.g. on the boot partition), used once when the device
    /// has no credentials yet. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_key_file: Option<PathBuf>,
    /// PEM file of a private CA to trust in addition to the built-in roots. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Seconds between sync rounds (package, upload, pull). Default 60.
    pub interval_seconds: u64,
    /// Largest package built, KiB. Default 4096.
    pub max_package_kib: u64,
    /// Disk the outbox may hold, MiB. Default 64.
    pub max_outbox_mib: u64,
    /// Packages the outbox may hold. Default 1000.
    pub max_outbox_packages: u64,
    /// Longest wait between retries, seconds (the backoff's cap). Default 300.
    pub max_backoff_seconds: u64,
    /// TCP connect timeout, seconds. Default 10.
    pub connect_timeout_seconds: u64,
    /// Whole-request timeout, seconds (uploads and model downloads restart or resume after
    /// it). Default 120.
    pub request_timeout_seconds: u64,
    /// Prediction samples kept per class between two packages. Default 2.
    pub predictions_per_class: usize,
    /// Least time between two prediction samples of one class, seconds. Default 300.
    pub prediction_interval_seconds: u64,
    /// Ship the runtime's logs (JSON lines). Default true.
    pub logs: bool,
    /// Log lines kept on disk at most, KiB (rotating files; the oldest is removed). Default 4096.
    pub max_log_kib: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            server: None,
            enrollment_key_file: None,
            ca_file: None,
            interval_seconds: 60,
            max_package_kib: 4096,
            max_outbox_mib: 64,
            max_outbox_packages: 1000,
            max_backoff_seconds: 300,
            connect_timeout_seconds: 10,
            request_timeout_seconds: 120,
            predictions_per_class: 2,
            prediction_interval_seconds: 300,
            logs: true,
            max_log_kib: 4096,
        }
    }
}

impl SyncConfig {
    /// Time between rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }

    /// Largest package in bytes.
    pub fn max_package_bytes(&self) -> u64 {
        self.max_package_kib * 1024
    }

    /// Outbox byte budget.
    pub fn max_outbox_bytes(&self) -> u64 {
        self.max_outbox_mib * 1024 * 1024
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(server) = &self.server {
            if !(server.starts_with("http://") || server.starts_with("https://")) {
                return Err(ConfigError::new(
                    "sync.server",
                    format!("{server:?} is not an http(s) URL"),
                    "write the server's base URL, e.g. \"https://sphere.example:8470\"",
                ));
            }
        }
        let max_member_mib = crate::state::MAX_VALUE_BYTES as u64 / 1024 / 2;
        ConfigError::first_failed([
            (
                "sync.interval-seconds",
                (1..=86_400).contains(&self.interval_seconds),
                self.interval_seconds.to_string(),
                "use 1..=86400 (60 sends a package a minute)".to_string(),
            ),
            (
                "sync.max-package-kib",
                (64..=max_member_mib).contains(&self.max_package_kib),
                self.max_package_kib.to_string(),
                format!("use 64..={max_member_mib} (a package is kept in the state database)"),
            ),
            (
                "sync.max-outbox-mib",
                self.max_outbox_mib >= 1
                    && self.max_outbox_mib * 1024 >= self.max_package_kib
                    && self.max_outbox_mib <= 1 << 20,
                self.max_outbox_mib.to_string(),
                "use at least one package's worth (max-package-kib) and at most 1048576"
                    .to_string(),
            ),
            (
                "sync.max-outbox-packages",
                (1..=1_000_000).contains(&self.max_outbox_packages),
                self.max_outbox_packages.to_string(),
                "use 1..=1000000".to_string(),
            ),
            (
                "sync.max-backoff-seconds",
                (1..=86_400).contains(&self.max_backoff_seconds),
                self.max_backoff_seconds.to_string(),
                "use 1..=86400 (300 retries at least every five minutes)".to_string(),
            ),
            (
                "sync.connect-timeout-seconds",
                (1..=600).contains(&self.connect_timeout_seconds),
                self.connect_timeout_seconds.to_string(),
                "use 1..=600".to_string(),
            ),
            (
                "sync.request-timeout-seconds",
                (1..=86_400).contains(&self.request_timeout_seconds),
                self.request_timeout_seconds.to_string(),
                "use 1..=86400".to_string(),
            ),
            (
                "sync.predictions-per-class",
                self.predictions_per_class <= 64,
                self.predictions_per_class.to_string(),
                "use 0..=64 (0 sends no prediction samples)".to_string(),
            ),
            (
                "sync.max-log-kib",
                (64..=1 << 20).contains(&self.max_log_kib),
                self.max_log_kib.to_string(),
                "use 64..=1048576".to_string(),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        SyncConfig::default().validate().unwrap();
        let c: SyncConfig = toml::from_str("server = \"ftp://x\"").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("sync.server")
        );
        let c: SyncConfig = toml::from_str("max-outbox-mib = 1\nmax-package-kib = 4096").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sync.max-outbox-mib"), "{e}");
        let c: SyncConfig = toml::from_str("interval-seconds = 0").unwrap();
        assert!(c.validate().is_err());
        assert!(toml::from_str::<SyncConfig>("bogus = 1").is_err());
    }
}
