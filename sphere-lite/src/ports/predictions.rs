//! The `PredictionStore` part of the `Tracking` port: the Data Hub's index of prediction samples.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use tinylcm_protocol::datahub::PredictionView;

use super::{PredictionCursor, PredictionFilter, StoreError};

/// The Data Hub's index of prediction samples.
///
/// MLflow: experiment `<ns>/predictions`, one run per prediction sample (tags
/// `sphere.device`, `sphere.package_id`, `sphere.class`, the sample as `sphere.prediction`;
/// metrics `sphere.unix_ms`, `sphere.confidence`). Logs and embeddings are blobs only.
pub trait PredictionStore: Send + Sync {
    /// Index prediction samples; a sample whose blob key is indexed already is skipped
    /// (re-processing a package stores nothing twice). Returns how many were new.
    /// MLflow: `runs/search` on device + package, `runs/create` + `runs/log-batch` for the rest.
    fn put_predictions(&self, samples: &[PredictionView]) -> Result<usize, StoreError>;

    /// Prediction samples matching `filter`, newest first ([`PredictionCursor`] order),
    /// strictly after `after`, at most `limit` (the caller caps it).
    /// MLflow: `runs/search` ordered by `metrics.sphere.unix_ms DESC`; ties sorted here.
    fn predictions(
        &self,
        filter: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError>;
}
