//! The MLflow adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::MetricStore;

/// Run kind of a device's day of metric points (in the device's experiment).
const KIND_DEVICE_DAY: &str = "device-metrics";
/// Tag of a device-day run: its UTC date, `YYYY-MM-DD`.
const DAY: &str = "sphere.day";
const DAY_MS: u64 = 86_400_000;
/// Most (device, day) → run entries cached before the cache starts over (a few per device).
const MAX_CACHED_DAY_RUNS: usize = 100_000;

/// `YYYY-MM-DD` of UTC day `day` (days since 1970-01-01).
fn day_name(day: u64) -> String {
    let (y, m, d, ..) = tinylcm_protocol::time::parts(day * DAY_MS);
    format!("{y:04}-{m:02}-{d:02}")
}

impl MlflowTracking {
    /// Log `points` at `unix_ms` to the device's run of that UTC day (`metrics-YYYY-MM-DD` in
    /// `<ns>/device/<id>`): MLflow timestamp = the point's time, step = seconds since the day
    /// began, so each key is one chart of the day over steps or wall time. A device without
    /// an experiment (removed meanwhile) gets none.
    fn log_device_day(
        &self,
        device_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let day = unix_ms / DAY_MS;
        let Some(run_id) = self.device_day_run(device_id, day)? else {
            return Ok(());
        };
        let timestamp = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        let step = ((unix_ms % DAY_MS) / 1000) as i64;
        let metrics: Vec<Metric> = points
            .iter()
            .map(|(k, v)| Metric {
                key: k.clone(),
                value: *v,
                timestamp,
                step,
            })
            .collect();
        for chunk in metrics.chunks(MAX_BATCH_METRICS) {
            if let Err(e) = self.client.log_batch(&run_id, chunk, &[], &[]) {
                // The run may be gone (deleted in the UI): look it up afresh next time.
                lock(&self.day_runs).remove(&(device_id.to_owned(), day));
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The run of `device_id`'s UTC day `day`, created on first use; cached, since it never
    /// changes once chosen. Two replicas creating it at once both check afterwards and keep
    /// the canonical one (earliest start, then smallest run id), as packages do.
    fn device_day_run(&self, device_id: &str, day: u64) -> Result<Option<String>, StoreError> {
        let cache_key = (device_id.to_owned(), day);
        if let Some(run) = lock(&self.day_runs).get(&cache_key) {
            return Ok(Some(run.clone()));
        }
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(None);
        };
        let name = day_name(day);
        let query = RunQuery {
            experiment_ids: vec![exp.experiment_id.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_DEVICE_DAY))
                .tag_eq(DAY, &lit(&name)?)
                .build(),
            order_by: vec![],
        };
        let canonical = |runs: Vec<Run>| {
            runs.into_iter()
                .min_by(|a, b| {
                    (a.info.start_time, &a.info.run_id).cmp(&(b.info.start_time, &b.info.run_id))
                })
                .map(|r| r.info.run_id)
        };
        let run_id = match canonical(self.client.search_runs(&query, MAX_DUPLICATES)?) {
            Some(id) => id,
            None => {
                let start = day * DAY_MS;
                let mine = self
                    .client
                    .create_run(
                        &exp.experiment_id,
                        &format!("metrics-{name}"),
                        start,
                        &[
                            Tag::new(KIND, KIND_DEVICE_DAY),
                            Tag::new(DEVICE, device_id),
                            Tag::new(DAY, &name),
                        ],
                    )?
                    .info
                    .run_id;
                let chosen = canonical(self.client.search_runs(&query, MAX_DUPLICATES)?)
                    .unwrap_or_else(|| mine.clone());
                if chosen != mine {
                    self.client.delete_run(&mine)?;
                } else {
                    // A day is a closed span: shown as finished, with its length.
                    self.client
                        .update_run(&mine, "FINISHED", start + DAY_MS - 1)?;
                }
                chosen
            }
        };
        let mut cache = lock(&self.day_runs);
        if cache.len() >= MAX_CACHED_DAY_RUNS {
            cache.clear();
        }
        cache.insert(cache_key, run_id.clone());
        Ok(Some(run_id))
    }
}

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
        // The same points again as the device's history of the day, as the MLflow UI charts
        // a run's metrics (the package runs above are what the server itself reads).
        self.log_device_day(device_id, unix_ms, points)
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
