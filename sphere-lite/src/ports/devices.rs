//! The `DeviceStore` part of the `Tracking` port.
//!
//! It holds enrolled devices, when each was last seen and the operator's settings.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{DeviceRecord, DeviceSettings, StoreError};

/// Enrolled devices, when each was last seen and the operator's settings of each.
///
/// MLflow: devices are experiments `<ns>/device/<id>` with tags for name, hardware and token
/// hash.
pub trait DeviceStore: Send + Sync {
    /// One device by id.
    /// MLflow: `experiments/get-by-name` `<ns>/device/<id>`, kept by each replica for
    /// `DEVICE_CACHE_TTL` (10 s); the package count is a listing of its records in S3.
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;

    /// All devices, ordered by id.
    /// MLflow: `experiments/search` with `name LIKE '<ns>/device/%'`, paginated; each package
    /// count a listing in S3.
    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;

    /// How many devices there are, for monitoring. The default counts [`DeviceStore::devices`].
    /// MLflow: the `experiments/search` alone, no package count.
    fn device_count(&self) -> Result<usize, StoreError> {
        Ok(self.devices()?.len())
    }

    /// Update a device's last-seen time (never moves backwards).
    /// MLflow: `experiments/set-experiment-tag` `last_seen`.
    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError>;

    /// The operator's settings for `device_id` (default settings for a device that has none
    /// stored), or `None` for an unknown device.
    /// MLflow: device experiment tags `sphere.settings` (JSON).
    fn device_settings(&self, device_id: &str) -> Result<Option<DeviceSettings>, StoreError>;

    /// Replace the operator's settings of `device_id`; false for an unknown device.
    /// MLflow: `experiments/set-experiment-tag` `sphere.settings`.
    fn set_device_settings(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
    ) -> Result<bool, StoreError>;
}
