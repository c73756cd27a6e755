//! The `[storage]` section of the config file: how long stored packages are kept, how much a
//! device may store, and how often a device's last-seen time is written.
//!
//! Why beside the domain and not in `config`: each section type lives beside the code it
//! configures (retention in [`super::retention`], last-seen in [`super::seen`]); `config` only
//! composes them (and turns a bad value into its `ConfigError`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Default `retention_days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Default `device_quota_mib`.
pub const DEFAULT_DEVICE_QUOTA_MIB: u64 = 1024;
/// Default `last_seen_interval_secs`.
pub const DEFAULT_LAST_SEEN_INTERVAL_SECS: u64 = 60;

/// What sphere-lite keeps and for how long; `Default` is what `serve` runs with when the
/// config file has no `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSettings {
    /// A processed package's files are deleted this long after it was accepted (`None`: kept
    /// for ever). Files a pending drift event shows are kept until it is decided.
    pub retention: Option<Duration>,
    /// Most bytes of packages (raw and unpacked) one device may have stored (`None`: no quota).
    pub device_quota_bytes: Option<u64>,
    /// A device's last-seen time is written at most this often (memory has it fresh).
    pub last_seen_interval: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            retention: Some(days(DEFAULT_RETENTION_DAYS)),
            device_quota_bytes: Some(DEFAULT_DEVICE_QUOTA_MIB << 20),
            last_seen_interval: Duration::from_secs(DEFAULT_LAST_SEEN_INTERVAL_SECS),
        }
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 3600)
}

/// `[storage]` of the TOML file: every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `retention_days = 90` (0 keeps packages for ever; at most 36500)
    pub retention_days: Option<u32>,
    /// `device_quota_mib = 1024` (0: no quota; at most 1048576)
    pub device_quota_mib: Option<u64>,
    /// `last_seen_interval_secs = 60` (0 writes on every request; at most 3600)
    pub last_seen_interval_secs: Option<u64>,
}

impl StorageSection {
    /// Apply defaults and bounds.
    pub fn resolve(self) -> Result<StorageSettings, ConfigError> {
        let retention_days = self.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if retention_days > 36_500 {
            return Err(ConfigError::Invalid {
                key: "storage.retention_days",
                problem: format!("{retention_days} is more than 100 years"),
                fix: "write 0 (keep for ever) or a number of days up to 36500 (default 90)",
            });
        }
        let quota_mib = self.device_quota_mib.unwrap_or(DEFAULT_DEVICE_QUOTA_MIB);
        if quota_mib > 1 << 20 {
            return Err(ConfigError::Invalid {
                key: "storage.device_quota_mib",
                problem: format!("{quota_mib} MiB is more than 1 TiB per device"),
                fix: "write 0 (no quota) or up to 1048576 (default 1024)",
            });
        }
        let interval = self
            .last_seen_interval_secs
            .unwrap_or(DEFAULT_LAST_SEEN_INTERVAL_SECS);
        if interval > 3600 {
            return Err(ConfigError::Invalid {
                key: "storage.last_seen_interval_secs",
                problem: format!("{interval} s is more than an hour"),
                fix: "write 0..=3600 (default 60)",
            });
        }
        Ok(StorageSettings {
            retention: (retention_days > 0).then(|| days(retention_days)),
            device_quota_bytes: (quota_mib > 0).then_some(quota_mib << 20),
            last_seen_interval: Duration::from_secs(interval),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_zero_and_bounds() {
        let none: StorageSection = toml::from_str("").unwrap();
        assert_eq!(none.resolve().unwrap(), StorageSettings::default());
        let off: StorageSection =
            toml::from_str("retention_days = 0\ndevice_quota_mib = 0\nlast_seen_interval_secs = 0")
                .unwrap();
        let off = off.resolve().unwrap();
        assert_eq!(off.retention, None);
        assert_eq!(off.device_quota_bytes, None);
        assert_eq!(off.last_seen_interval, Duration::ZERO);
        for bad in [
            "retention_days = 36501",
            "device_quota_mib = 1048577",
            "last_seen_interval_secs = 3601",
        ] {
            let section: StorageSection = toml::from_str(bad).unwrap();
            let e = section.resolve().unwrap_err().to_string();
            assert!(e.contains("storage."), "{e}");
        }
        assert!(toml::from_str::<StorageSection>("quota = 1").is_err());
    }
}
