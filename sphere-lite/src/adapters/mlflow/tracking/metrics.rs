//! The MLflow adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::MetricStore;

impl MetricStore for MlflowTracking {
    fn put_metrics(
        &self,
        device_id: &str,
        package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError> {
        let Some(run) = self.package_runs(device_id, package_id)?.into_iter().next() else {
            return Err(StoreError::new(
                "mlflow",
                format!("no run of package {device_id}/{package_id}"),
            ));
        };
        let timestamp = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        let metric = |key: &str, value: f64| Metric {
            key: key.to_owned(),
            value,
            timestamp,
            step: 0,
        };
        // The search key goes last: a run that searches find has all its points. Logging the
        // same point again is idempotent (MLflow skips an identical key, value, time and step,
        // and a run's latest value of a key is one point either way).
        let metrics: Vec<Metric> = points
            .iter()
            .map(|(k, v)| metric(k, *v))
            .chain(std::iter::once(metric(METRICS_AT, unix_ms as f64)))
            .collect();
        for chunk in metrics.chunks(MAX_BATCH_METRICS) {
            self.client.log_batch(&run.info.run_id, chunk, &[], &[])?;
        }
        Ok(())
    }

    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        let Some(query) = self.metric_runs(device_id, since, until)? else {
            return Ok(Vec::new());
        };
        let mut points = Vec::new();
        let mut scanned = 0;
        let mut token: Option<String> = None;
        while scanned < MAX_SERIES_RUNS {
            let (runs, next) =
                self.client
                    .search_runs_page(&query, METRIC_PAGE, token.as_deref())?;
            scanned += runs.len();
            for run in &runs {
                if let (Some(at), Some(value)) = (metric_u64(run, METRICS_AT), run.metric(key)) {
                    points.push((at, value));
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // Searched newest first; a chart wants time order.
        points.reverse();
        Ok(thin(points, max_points))
    }

    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let Some(query) = self.metric_runs(device_id, 0, u64::MAX)? else {
            return Ok(Vec::new());
        };
        let (runs, _) = self.client.search_runs_page(&query, KEY_RUNS, None)?;
        let keys: std::collections::BTreeSet<&str> = runs
            .iter()
            .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
            .filter(|k| !k.starts_with("sphere."))
            .collect();
        Ok(keys.into_iter().take(limit).map(str::to_owned).collect())
    }
}
