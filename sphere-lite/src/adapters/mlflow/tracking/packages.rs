//! The MLflow adapter: the `PackageStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::{DriftStore, LearningStore, PackageStore, PredictionStore, ProcessedPackage};

impl PackageStore for MlflowTracking {
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError> {
        self.objects()?.get(device_id, package_id)
    }

    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        let recorded = self.objects()?.accept(record)?;
        if recorded == Recorded::New {
            // The cached record counts it too (dropping it would cost the next request of the
            // device an MLflow read).
            if let Some(c) = lock(&self.device_cache).get_mut(&record.device_id) {
                c.record.packages += 1;
            }
        }
        Ok(recorded)
    }

    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError> {
        self.objects()?.mark(device_id, package_id, |record| {
            record.processed_unix_ms = Some(now_unix_ms);
            record.failed = failed;
            record.problems = problems.to_vec();
        })
    }

    fn packages_newest_first(
        &self,
        device_id: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        self.objects()?.newest_first(device_id, before, limit)
    }

    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        self.objects()?.pending()
    }

    fn unprocessed_count(&self) -> Result<usize, StoreError> {
        self.objects()?.pending_count()
    }

    fn unprocessed_accepted_by(
        &self,
        accepted_by_ms: u64,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        let mut pending = self.objects()?.pending_written_by(accepted_by_ms)?;
        pending.retain(|r| r.accepted_unix_ms <= accepted_by_ms);
        Ok(pending)
    }

    /// A batch's parts in a few calls instead of five per package: each package's prediction
    /// index, drift and learning events (rare; each keyed, so a re-run adds nothing), then the
    /// batch's metric points in one MLflow `log-batch` per device and UTC day, then the
    /// processed marks in S3, a few at once. A failure anywhere leaves every unmarked package
    /// pending, and its re-run stores nothing twice (MLflow keeps one copy of an identical
    /// point); so does a second replica processing the same packages at the same time.
    fn record_processed(
        &self,
        batch: &[ProcessedPackage],
    ) -> Result<Option<Vec<usize>>, StoreError> {
        let objects = self.objects()?;
        let mut new_events = Vec::with_capacity(batch.len());
        for done in batch {
            if !done.predictions.is_empty() {
                self.put_predictions(&done.predictions)?;
            }
            new_events.push(if done.drift_events.is_empty() {
                0
            } else {
                self.put_drift_events(&done.drift_events)?
            });
            if !done.learning_events.is_empty() {
                self.put_learning_events(&done.learning_events)?;
            }
        }
        self.log_processed_points(batch)?;
        objects.mark_processed(batch)?;
        Ok(Some(new_events))
    }
}
