//! The `PackageStore` part of the `Tracking` port.
//!
//! It holds accepted packages and whether each was processed.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{PackageRecord, Recorded, StoreError};

/// Accepted packages and whether each was processed.
///
/// MLflow: packages are runs of `<ns>/packages` tagged with device and package id (idempotent
/// via `runs/search` on those tags).
pub trait PackageStore: Send + Sync {
    /// The record of package `package_id` of `device_id`, if accepted before.
    /// MLflow: `runs/search` in `<ns>/packages` on the device and package id tags.
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError>;

    /// Record an accepted package (idempotent on device + package id) and count it for the device.
    /// MLflow: `runs/create` (status `RUNNING` = not processed), searched before and after so
    /// a replica race keeps one canonical copy; the count is a device experiment tag.
    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError>;

    /// Mark a package processed (or failed for good with `failed`), with the `problems` found
    /// in parts of it.
    /// MLflow: `runs/update` status `FINISHED` / `FAILED`; problems as the run tag
    /// `sphere.problems` (JSON list).
    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError>;

    /// Packages of `device_id`, newest accepted first (ties by package id, descending), only
    /// those after `before` (an `(accepted_unix_ms, package_id)` already shown) in that order;
    /// at most `limit`. Lets the dashboard page a device's packages by time without one lookup
    /// per package.
    /// MLflow: `runs/search` in `<ns>/packages` on the device tag, `attributes.start_time <=`
    /// the cursor's time, newest first.
    fn packages_newest_first(
        &self,
        device_id: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError>;

    /// Accepted packages not yet processed, oldest first.
    /// MLflow: `runs/search` in `<ns>/packages` with `attributes.status = 'RUNNING'`.
    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError>;
}
