//! The `MetricStore` part of the `Tracking` port: device metrics.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::StoreError;

/// Device metrics: one point per key and package (keys checked by
/// `domain::valid_metric_key`).
///
/// MLflow: metric histories of the device's day runs (`metrics-YYYY-MM-DD` in
/// `<ns>/device/<id>`).
pub trait MetricStore: Send + Sync {
    /// Store one package's metric points, all at `unix_ms`, one per key. Idempotent per
    /// (device, package): storing the same package again adds nothing.
    /// MLflow: `runs/log-batch` onto the device's run of that UTC day (`metrics-YYYY-MM-DD` in
    /// `<ns>/device/<id>`, ≤ 1000 metrics per call), every point with `timestamp` = `unix_ms`
    /// and step = second of the day: the history the MLflow UI charts. Logging identical
    /// points again adds nothing.
    fn put_metrics(
        &self,
        device_id: &str,
        package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError>;

    /// The (Unix ms, value) points of `key` with `since <= t < until`, ascending by time, at
    /// most `max_points` (evenly thinned when more match; of very long ranges the newest
    /// points are read).
    /// MLflow: a search of the device's day runs, then `metrics/get-history` of `key` in each
    /// day of the range (the newest 62 days at most).
    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError>;

    /// The metric keys of `device_id`, sorted, at most `limit`.
    /// MLflow: the keys of the device's most recent day runs (7 days).
    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError>;
}
