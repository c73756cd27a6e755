//! The durability policy: when queued batches are committed, and how much is kept.

use std::time::Duration;

use super::error::StateError;

/// When the writer commits, and the store's bounds.
///
/// A commit happens when the oldest uncommitted batch is `commit_interval` old, or when
/// `max_batch` operations are waiting, or on [`Store::flush`](super::Store::flush),
/// whichever comes first. Every commit is `redb::Durability::Immediate` (fsync before the
/// commit returns). So at most the batches queued in the last `commit_interval` (plus the
/// duration of one commit) are lost on a power cut; fewer and larger commits spare the
/// SD card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurabilityPolicy {
    /// Longest time a queued batch waits for its commit (the loss window). Default 2 s.
    pub commit_interval: Duration,
    /// Commit as soon as this many operations are waiting. Default 512.
    pub max_batch: usize,
    /// Batches the queue holds before [`Store::try_submit`](super::Store::try_submit)
    /// reports back-pressure. Default 1024.
    pub queue_capacity: usize,
    /// Events kept; older ones are pruned in the same transaction that appends new ones
    /// (counted in [`PRUNED_EVENTS_COUNTER`](super::PRUNED_EVENTS_COUNTER)). Default 100 000.
    pub max_events: u64,
}

impl Default for DurabilityPolicy {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_secs(2),
            max_batch: 512,
            queue_capacity: 1024,
            max_events: 100_000,
        }
    }
}

impl DurabilityPolicy {
    /// Checks the bounds; errors name the setting.
    pub fn validate(&self) -> Result<(), StateError> {
        if self.commit_interval.is_zero() || self.commit_interval > Duration::from_secs(3600) {
            return Err(StateError::Config {
                key: "commit_interval",
                reason: format!(
                    "{:?} is outside 1 ms ..= 1 h; 2 s is a good value for an SD card",
                    self.commit_interval
                ),
            });
        }
        if self.max_batch == 0 {
            return Err(StateError::Config {
                key: "max_batch",
                reason: "must be at least 1 (default 512)".into(),
            });
        }
        if self.queue_capacity == 0 {
            return Err(StateError::Config {
                key: "queue_capacity",
                reason: "must be at least 1 (default 1024)".into(),
            });
        }
        if self.max_events == 0 {
            return Err(StateError::Config {
                key: "max_events",
                reason: "must be at least 1 (default 100000)".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zero_is_not() {
        DurabilityPolicy::default().validate().unwrap();
        let p = DurabilityPolicy {
            max_batch: 0,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("max_batch"));
        let p = DurabilityPolicy {
            commit_interval: Duration::ZERO,
            ..Default::default()
        };
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("commit_interval")
        );
    }
}
