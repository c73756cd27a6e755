//! The `[state]` section of the configuration: where the database and snapshots live, and
//! the durability policy. Owned here so the knobs and their validation sit beside the store.
//! (Not yet composed into `crate::config::Config`: that is the wiring step.)

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::policy::DurabilityPolicy;
use super::snapshot::Snapshots;
use crate::config_error::ConfigError;

/// `[state]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    /// The database file. Default `/data/tinylcm/state.redb`.
    pub path: PathBuf,
    /// The snapshots directory. Default `/data/tinylcm/snapshots`.
    pub snapshots: PathBuf,
    /// Snapshots kept (newest first). Default 10.
    pub keep_snapshots: usize,
    /// Longest wait of a queued write for its commit: the loss window on power loss, ms.
    /// Default 2000.
    pub commit_interval_ms: u64,
    /// Commit as soon as this many operations wait. Default 512.
    pub max_batch: usize,
    /// Batches queued before the inference thread is told to back off. Default 1024.
    pub queue_capacity: usize,
    /// Events kept; the oldest are pruned. Default 100000.
    pub max_events: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        let p = DurabilityPolicy::default();
        StateConfig {
            path: PathBuf::from("/data/tinylcm/state.redb"),
            snapshots: PathBuf::from("/data/tinylcm/snapshots"),
            keep_snapshots: 10,
            commit_interval_ms: p.commit_interval.as_millis() as u64,
            max_batch: p.max_batch,
            queue_capacity: p.queue_capacity,
            max_events: p.max_events,
        }
    }
}

impl StateConfig {
    /// The durability policy these settings describe.
    pub fn policy(&self) -> DurabilityPolicy {
        DurabilityPolicy {
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            max_batch: self.max_batch,
            queue_capacity: self.queue_capacity,
            max_events: self.max_events,
        }
    }

    /// The snapshots directory with its retention.
    pub fn snapshots(&self) -> Result<Snapshots, super::StateError> {
        Snapshots::new(&self.snapshots, self.keep_snapshots)
    }

    /// Check values that cannot work, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = StateConfig::default();
        let checks: [crate::config_error::Check<'_>; 6] = [
            (
                "state.commit-interval-ms",
                (1..=3_600_000).contains(&self.commit_interval_ms),
                self.commit_interval_ms.to_string(),
                format!(
                    "set 1..=3600000; {} suits an SD card (it is also the loss window)",
                    d.commit_interval_ms
                ),
            ),
            (
                "state.max-batch",
                self.max_batch >= 1,
                self.max_batch.to_string(),
                format!("set at least 1 (default {})", d.max_batch),
            ),
            (
                "state.queue-capacity",
                self.queue_capacity >= 1,
                self.queue_capacity.to_string(),
                format!("set at least 1 (default {})", d.queue_capacity),
            ),
            (
                "state.max-events",
                self.max_events >= 1,
                self.max_events.to_string(),
                format!("set at least 1 (default {})", d.max_events),
            ),
            (
                "state.keep-snapshots",
                self.keep_snapshots >= 1,
                self.keep_snapshots.to_string(),
                format!("set at least 1 (default {})", d.keep_snapshots),
            ),
            (
                "state.path",
                !self.path.as_os_str().is_empty() && self.path != self.snapshots,
                format!("{:?}", self.path.display().to_string()),
                "give the database file's path, different from state.snapshots".into(),
            ),
        ];
        ConfigError::first_failed(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_policy() {
        let c = StateConfig::default();
        c.validate().unwrap();
        assert_eq!(c.policy(), DurabilityPolicy::default());
        c.policy().validate().unwrap();
    }

    #[test]
    fn kebab_case_keys_and_errors_naming_them() {
        let c: StateConfig = toml::from_str("commit-interval-ms = 500\nmax-batch = 0").unwrap();
        assert_eq!(c.policy().commit_interval, Duration::from_millis(500));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("state.max-batch"), "{err}");
        assert!(toml::from_str::<StateConfig>("bogus = 1").is_err());
    }
}
