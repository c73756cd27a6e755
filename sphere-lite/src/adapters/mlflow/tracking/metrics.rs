//! The MLflow adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use std::collections::BTreeMap;

use super::*;
use crate::adapters::mlflow::KeptKeys;
use crate::ports::{MetricStore, ProcessedPackage};

/// Run kind of a device's day of metric points (in the device's experiment).
const KIND_DEVICE_DAY: &str = "device-metrics";
/// Tag of a device-day run: its UTC date, `YYYY-MM-DD`.
const DAY: &str = "sphere.day";
const DAY_MS: u64 = 86_400_000;
/// Most (device, day) → run entries cached before the cache starts over (a few per device).
const MAX_CACHED_DAY_RUNS: usize = 100_000;
/// Most day runs one series reads (the newest that overlap its range): two months.
const MAX_SERIES_DAYS: usize = 62;
/// How many of a device's newest days give its key list.
const KEY_DAYS: usize = 7;
/// Most day runs of one device read by a search (about 27 years).
const MAX_DAY_RUNS: usize = 10_000;
/// Most values of one key in one day run (a package a second all day, with room for copies).
const MAX_DAY_POINTS: usize = 200_000;

/// `YYYY-MM-DD` of UTC day `day` (days since 1970-01-01).
fn day_name(day: u64) -> String {
    let (y, m, d, ..) = tinylcm_protocol::time::parts(day * DAY_MS);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The points of `points` whose keys `kept` keeps, at `unix_ms`, as MLflow metrics of their
/// day run: timestamp = the point's time, step = seconds since the UTC day began, so each key
/// is one chart of the day over steps or wall time.
fn day_metrics<'a>(
    kept: &'a KeptKeys,
    unix_ms: u64,
    points: &'a [(String, f64)],
) -> impl Iterator<Item = Metric> + 'a {
    let timestamp = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    let step = ((unix_ms % DAY_MS) / 1000) as i64;
    points
        .iter()
        .filter(|(k, _)| kept.keeps(k))
        .map(move |(k, v)| Metric {
            key: k.clone(),
            value: *v,
            timestamp,
            step,
        })
}

impl MlflowTracking {
    /// Log the metric points of `batch` (packages processed together) to their devices' day
    /// runs: one `runs/log-batch` per device and UTC day, more only past [`MAX_BATCH_METRICS`]
    /// points, instead of one per package. MLflow's cost is a fixed ~30 ms per call plus each
    /// point's row, so a batch of a device's packages costs little more than its rows.
    pub(super) fn log_processed_points(
        &self,
        batch: &[ProcessedPackage],
    ) -> Result<(), StoreError> {
        let mut days: BTreeMap<(&str, u64), Vec<Metric>> = BTreeMap::new();
        for done in batch {
            if let Some((unix_ms, points)) = &done.metrics {
                days.entry((done.device_id.as_str(), unix_ms / DAY_MS))
                    .or_default()
                    .extend(day_metrics(&self.kept_keys, *unix_ms, points));
            }
        }
        for ((device_id, day), metrics) in days {
            self.log_device_day(device_id, day, &metrics)?;
        }
        Ok(())
    }

    /// Log `metrics` to the run of `device_id`'s UTC day `day` (`metrics-YYYY-MM-DD` in
    /// `<ns>/device/<id>`), at most [`MAX_BATCH_METRICS`] a call. A device without an
    /// experiment (removed meanwhile) gets none.
    fn log_device_day(
        &self,
        device_id: &str,
        day: u64,
        metrics: &[Metric],
    ) -> Result<(), StoreError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let Some(mut run_id) = self.device_day_run(device_id, day)? else {
            return Ok(());
        };
        for chunk in metrics.chunks(MAX_BATCH_METRICS) {
            if self.client.log_batch(&run_id, chunk, &[], &[]).is_ok() {
                continue;
            }
            // The run may be gone: deleted in the UI, or created by another replica at the
            // same moment as this day's run and deleted by it as not the canonical one after
            // this replica had chosen it. Looked up afresh, once; a point logged twice is
            // stored once.
            lock(&self.day_runs).remove(&(device_id.to_owned(), day));
            let Some(fresh) = self.device_day_run(device_id, day)? else {
                return Ok(());
            };
            if let Err(e) = self.client.log_batch(&fresh, chunk, &[], &[]) {
                lock(&self.day_runs).remove(&(device_id.to_owned(), day));
                return Err(e.into());
            }
            run_id = fresh;
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
        let Some((experiment_id, _)) = self.cached_device(device_id)? else {
            return Ok(None);
        };
        let name = day_name(day);
        let query = RunQuery {
            experiment_ids: vec![experiment_id.clone()],
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
                        &experiment_id,
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

impl MlflowTracking {
    /// `device_id`'s day runs that overlap `since..until`, newest day first, at most
    /// [`MAX_SERIES_DAYS`]; each with its first millisecond.
    fn day_runs_in(
        &self,
        device_id: &str,
        since: u64,
        until: u64,
        max: usize,
    ) -> Result<Vec<(u64, Run)>, StoreError> {
        if since >= until || Literal::new(device_id).is_err() {
            return Ok(Vec::new());
        }
        let Some((experiment_id, _)) = self.cached_device(device_id)? else {
            return Ok(Vec::new());
        };
        let query = RunQuery {
            experiment_ids: vec![experiment_id],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_DEVICE_DAY))
                .build(),
            order_by: vec!["attributes.start_time DESC".into()],
        };
        let mut days: Vec<(u64, Run)> = Vec::new();
        for run in self.client.search_runs(&query, MAX_DAY_RUNS)? {
            let start = u64::try_from(run.info.start_time).unwrap_or(0);
            // A day's run starts at its first millisecond; a replica race's copy is skipped.
            if start.saturating_add(DAY_MS) <= since
                || start >= until
                || days.iter().any(|(d, _)| *d == start)
            {
                continue;
            }
            days.push((start, run));
        }
        days.sort_by_key(|d| std::cmp::Reverse(d.0));
        days.truncate(max);
        Ok(days)
    }
}

impl MetricStore for MlflowTracking {
    fn put_metrics(
        &self,
        device_id: &str,
        _package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError> {
        // One point per key at the package's time in the device's run of that day: logging
        // the same point again (a re-processed package) is idempotent, as MLflow skips an
        // identical key, value, time and step.
        let metrics: Vec<Metric> = day_metrics(&self.kept_keys, unix_ms, points).collect();
        self.log_device_day(device_id, unix_ms / DAY_MS, &metrics)
    }

    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        let mut points: Vec<(u64, f64)> = Vec::new();
        for (_, run) in self.day_runs_in(device_id, since, until, MAX_SERIES_DAYS)? {
            for m in self
                .client
                .metric_history(&run.info.run_id, key, MAX_DAY_POINTS)?
            {
                let Ok(at) = u64::try_from(m.timestamp) else {
                    continue;
                };
                if (since..until).contains(&at) {
                    points.push((at, m.value));
                }
            }
        }
        points.sort_by_key(|p| p.0);
        // Two packages at one instant (or a value logged twice): one point per time.
        points.dedup_by(|later, earlier| later.0 == earlier.0);
        Ok(thin(points, max_points))
    }

    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let days = self.day_runs_in(device_id, 0, u64::MAX, KEY_DAYS)?;
        let keys: std::collections::BTreeSet<&str> = days
            .iter()
            .flat_map(|(_, r)| r.data.metrics.iter().map(|m| m.key.as_str()))
            .filter(|k| !k.starts_with("sphere."))
            .collect();
        Ok(keys.into_iter().take(limit).map(str::to_owned).collect())
    }
}
