//! The `PackageStore` part of the `Tracking` port.
//!
//! It holds accepted packages and whether each was processed.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use tinylcm_protocol::api::DriftEventView;
use tinylcm_protocol::datahub::PredictionView;
use tinylcm_protocol::learning::LearningEventView;

use super::{PackageRecord, Recorded, StoreError};

/// Everything processing one package adds to the tracking store, for
/// [`PackageStore::record_processed`]: its index entries, events and metric points, and its
/// processed (or failed) mark.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedPackage {
    /// The device that sent it.
    pub device_id: String,
    /// Its package id.
    pub package_id: String,
    /// Its raw TAR's blob key, as its record holds it.
    pub raw_key: String,
    /// When it was accepted (Unix ms), as its record holds it.
    pub accepted_unix_ms: u64,
    /// When processing finished (Unix ms).
    pub processed_unix_ms: u64,
    /// Why it failed for good, if it did (then the parts below are empty).
    pub failed: Option<String>,
    /// Problems with parts of it.
    pub problems: Vec<String>,
    /// Its prediction samples ([`super::PredictionStore::put_predictions`]).
    pub predictions: Vec<PredictionView>,
    /// Its drift events ([`super::DriftStore::put_drift_events`]).
    pub drift_events: Vec<DriftEventView>,
    /// Its learning events ([`super::LearningStore::put_learning_events`]).
    pub learning_events: Vec<LearningEventView>,
    /// Its metric points and their time ([`super::MetricStore::put_metrics`]), if any.
    pub metrics: Option<(u64, Vec<(String, f64)>)>,
}

impl ProcessedPackage {
    /// Its whole record as processed: what a store that rewrites records whole writes
    /// without reading the record first (processing read it already).
    pub fn record(&self) -> PackageRecord {
        PackageRecord {
            device_id: self.device_id.clone(),
            package_id: self.package_id.clone(),
            raw_key: self.raw_key.clone(),
            accepted_unix_ms: self.accepted_unix_ms,
            processed_unix_ms: Some(self.processed_unix_ms),
            failed: self.failed.clone(),
            problems: self.problems.clone(),
        }
    }
}

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
    /// MLflow + S3: PUTs of the pending copy, the index entry and the record, the last only if
    /// no record exists (`If-None-Match: *`; one record per package id whatever replicas race;
    /// a device's count is a listing of its records).
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

    /// How many accepted packages are not processed yet, for monitoring (polled by scrapers
    /// however long the backlog is). The default counts [`PackageStore::unprocessed`].
    /// Embedded: the pending table's length (redb keeps it in the table header).
    /// MLflow + S3: a listing of the pending copies, no record read (a copy left by a crash
    /// after its package was processed counts until the next sweep deletes it).
    fn unprocessed_count(&self) -> Result<usize, StoreError> {
        Ok(self.unprocessed()?.len())
    }

    /// [`PackageStore::unprocessed`], only those accepted at or before `accepted_by_ms`.
    /// MLflow + S3: a listing of the pending copies, and a read of the record of each copy
    /// written by then (the listing gives each copy's time, by the S3 server's clock: a
    /// server clock ahead of the replica's delays a package by that much, never drops it).
    fn unprocessed_accepted_by(
        &self,
        accepted_by_ms: u64,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        let mut pending = self.unprocessed()?;
        pending.retain(|r| r.accepted_unix_ms <= accepted_by_ms);
        Ok(pending)
    }

    /// Whether [`PackageStore::record_accepted_group`] costs about what one
    /// [`PackageStore::record_accepted`] does (one durable commit for the whole group), so
    /// concurrent uploads should wait for one another and be recorded together. The default,
    /// `false`: each upload records itself, concurrently with the others.
    fn commits_in_groups(&self) -> bool {
        false
    }

    /// [`PackageStore::record_accepted`] for each of `records`, in order; the outcome of each.
    /// The default records one after the other; a store that
    /// [commits in groups](PackageStore::commits_in_groups) makes them durable together, and
    /// fails them together.
    fn record_accepted_group(
        &self,
        records: &[PackageRecord],
    ) -> Result<Vec<Recorded>, StoreError> {
        records.iter().map(|r| self.record_accepted(r)).collect()
    }

    /// Store a batch of processed packages (each one's predictions, drift events, learning
    /// events, metric points, then its mark) in one durable commit, returning how many drift
    /// events of each were new; `Ok(None)` when this store cannot (the default): the caller
    /// then stores each part with the aggregate's own method, in that order.
    /// MLflow + S3: each mark is a PUT of [`ProcessedPackage::record`] and a DELETE of the
    /// pending copy, with no read of the record.
    fn record_processed(
        &self,
        batch: &[ProcessedPackage],
    ) -> Result<Option<Vec<usize>>, StoreError> {
        let _ = batch;
        Ok(None)
    }

    /// Whether this process alone writes the stores (the embedded default: its database file
    /// is locked by the one process that opened it), so what it remembers of them (a device's
    /// stored bytes) stays true between reads. The default, `false`: other replicas may write.
    fn sole_writer(&self) -> bool {
        false
    }
}
