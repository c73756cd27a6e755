//! The `PackageStore` part of the `Tracking` port.
//!
//! It holds accepted packages and whether each was processed.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{PackageRecord, Recorded, StoreError};

/// Accepted packages and whether each was processed.
///
/// MLflow + S3: packages are not in MLflow but small objects in the S3 bucket's tracking prefix
/// (`adapters::mlflow::package_objects`): a record per package, a pending copy until it is
/// processed, an index entry for newest-first listings.
pub trait PackageStore: Send + Sync {
    /// The record of package `package_id` of `device_id`, if accepted before.
    /// MLflow + S3: a GET of the record object.
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError>;

    /// Record an accepted package (idempotent on device + package id) and count it for the device.
    /// MLflow + S3: PUTs of the pending copy, the index entry and the record (one record per
    /// package id whatever replicas race; a device's count is a listing of its records).
    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError>;

    /// Mark a package processed (or failed for good with `failed`), with the `problems` found
    /// in parts of it.
    /// MLflow + S3: the record rewritten with the mark and problems, then the pending copy
    /// deleted.
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
    /// MLflow + S3: one listing of the device's index entries (named so S3's key order is
    /// newest first) from the cursor's millisecond, and a GET per package shown.
    fn packages_newest_first(
        &self,
        device_id: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError>;

    /// Accepted packages not yet processed, oldest first.
    /// MLflow + S3: a listing of the pending copies (their records read).
    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError>;
}
