//! When a device was last seen, written to the tracking store at most once per interval.
//!
//! Why: every authenticated device request used to write the device's record (one fsync'ed
//! redb commit, or an MLflow call, per request), so a device polling or retrying in a burst
//! turned into a burst of durable writes. The last-seen time is only shown to operators (the
//! dashboard's online dot, the device listing), so it is kept fresh in memory and written at
//! most once per [`Sphere::with_last_seen_interval`] per device by this process; readers
//! overlay the in-memory value on the stored one. What a crash loses is at most one interval
//! of last-seen time, never data.

use std::collections::HashMap;
use std::sync::Mutex;

use super::storage::DEFAULT_LAST_SEEN_INTERVAL_SECS;
use super::{DeviceSummary, DomainError, Sphere, now_unix_ms};
use crate::ports::DeviceRecord;

/// Devices remembered at most; beyond it, entries with nothing left to write are forgotten
/// (their stored value is as fresh as the remembered one), so the table stays bounded.
const MAX_ENTRIES: usize = 100_000;

/// One device's last-seen times in this process.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When this process last wrote it to the store.
    written: u64,
    /// The latest request (≥ `written`).
    latest: u64,
}

/// The in-memory side of last-seen times (see the module documentation).
#[derive(Debug)]
pub(crate) struct SeenThrottle {
    interval_ms: u64,
    map: Mutex<HashMap<String, Seen>>,
}

impl Default for SeenThrottle {
    fn default() -> Self {
        SeenThrottle::new(DEFAULT_LAST_SEEN_INTERVAL_SECS * 1000)
    }
}

impl SeenThrottle {
    pub(crate) fn new(interval_ms: u64) -> Self {
        SeenThrottle {
            interval_ms,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Note a request of `device` at `now`; whether it is due to be written (and, if so,
    /// counted as written).
    fn note(&self, device: &str, now: u64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = map.get_mut(device) {
            seen.latest = seen.latest.max(now);
            if now < seen.written.saturating_add(self.interval_ms) {
                return false;
            }
            seen.written = now;
            return true;
        }
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, s| s.latest > s.written);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            device.to_owned(),
            Seen {
                written: now,
                latest: now,
            },
        );
        true
    }

    /// The latest request of `device` this process saw, if any.
    fn latest(&self, device: &str) -> Option<u64> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(device).map(|s| s.latest)
    }

    /// Forget that `device`'s time was written (its write failed: the next request retries).
    fn unwrite(&self, device: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = map.get_mut(device) {
            seen.written = 0;
        }
    }
}

impl Sphere {
    /// Write a device's last-seen time at most once per `interval_ms` (0: on every request).
    pub fn with_last_seen_interval(mut self, interval_ms: u64) -> Self {
        self.seen = SeenThrottle::new(interval_ms);
        self
    }

    /// Record that `device_id` made an authenticated request now.
    pub(super) fn saw_device(&self, device_id: &str) -> Result<(), DomainError> {
        let now = now_unix_ms();
        if self.seen.note(device_id, now) {
            if let Err(e) = self.tracking.touch_device(device_id, now) {
                self.seen.unwrite(device_id);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// A device's record as listed, its last-seen time as fresh as this process knows it.
    pub(super) fn summary(&self, d: DeviceRecord) -> DeviceSummary {
        let last_seen_unix_ms = match self.seen.latest(&d.device_id) {
            Some(latest) => d.last_seen_unix_ms.max(latest),
            None => d.last_seen_unix_ms,
        };
        DeviceSummary {
            device_id: d.device_id,
            name: d.name,
            hardware: d.hardware,
            enrolled_unix_ms: d.enrolled_unix_ms,
            last_seen_unix_ms,
            packages: d.packages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_once_per_interval_and_the_latest_is_remembered() {
        let t = SeenThrottle::new(1000);
        assert!(t.note("d", 10));
        for now in 11..500 {
            assert!(!t.note("d", now));
        }
        assert_eq!(t.latest("d"), Some(499));
        assert!(t.note("d", 1010));
        assert!(t.note("e", 11), "each device has its own interval");
        t.unwrite("d");
        assert!(
            t.note("d", 1011),
            "a failed write is retried by the next request"
        );
    }

    #[test]
    fn interval_zero_writes_every_request() {
        let t = SeenThrottle::new(0);
        assert!(t.note("d", 5));
        assert!(t.note("d", 5));
    }
}
