//! The embedded (redb) adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::MetricStore;

/// One package's metric points: device, package, the points' time and the points.
pub(super) type PackagePoints<'a> = (&'a str, &'a str, u64, &'a [(String, f64)]);

/// A row's key in [`METRIC_POINTS`]: device, metric key, time, package.
type PointKey<'a> = (&'a str, &'a str, u64, &'a str);

/// Store the metric points of several packages inside `tx` (see [`MetricStore::put_metrics`]).
///
/// Why all at once: a batch of processed packages carries ~150 points each, and inserting
/// them package by package, with a read and a write of each key's newest time per point,
/// was most of the server's CPU under `cargo bench --bench ingest`'s fleet phase (`perf`).
/// Points go in key order (each B-tree page is visited once per run of its keys), and each
/// (device, key) gets its newest time written once per call instead of once per point.
pub(super) fn put_metrics_in(
    tx: &redb::WriteTransaction,
    packages: &[PackagePoints<'_>],
) -> Result<(), StoreError> {
    let mut rows: Vec<(PointKey<'_>, f64)> = packages
        .iter()
        .flat_map(|&(device, package, unix_ms, points)| {
            points
                .iter()
                .map(move |(key, value)| ((device, key.as_str(), unix_ms, package), *value))
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut newest: Vec<((&str, &str), u64)> = Vec::new();
    let mut table = tx.open_table(METRIC_POINTS).map_err(err)?;
    for (key, value) in &rows {
        table.insert(*key, *value).map_err(err)?;
        let (device, name, unix_ms, _) = *key;
        match newest.last_mut() {
            // Sorted: a key's rows are adjacent, its newest time last.
            Some((last, at)) if *last == (device, name) => *at = (*at).max(unix_ms),
            _ => newest.push(((device, name), unix_ms)),
        }
    }
    let mut keys = tx.open_table(METRIC_KEYS).map_err(err)?;
    for (key, unix_ms) in newest {
        let stored = keys.get(key).map_err(err)?.map(|v| v.value());
        if stored.is_none_or(|stored| unix_ms > stored) {
            keys.insert(key, unix_ms).map_err(err)?;
        }
    }
    Ok(())
}

impl MetricStore for RedbTracking {
    fn put_metrics(
        &self,
        device_id: &str,
        package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        put_metrics_in(&tx, &[(device_id, package_id, unix_ms, points)])?;
        tx.commit().map_err(err)
    }

    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        if since >= until {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(METRIC_POINTS).map_err(err)?;
        // Newest first, so a range longer than the scan bound keeps its recent end.
        let mut points = Vec::new();
        let range = table
            .range((device_id, key, since, "")..(device_id, key, until, ""))
            .map_err(err)?;
        for row in range.rev().take(MAX_SCAN_POINTS) {
            let (k, v) = row.map_err(err)?;
            points.push((k.value().2, v.value()));
        }
        points.reverse();
        Ok(thin(points, max_points))
    }

    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(METRIC_KEYS).map_err(err)?;
        let mut out = Vec::new();
        // Keys of `device_id` sort between (device, "") and the next device id.
        for row in table.range((device_id, "")..).map_err(err)?.take(limit) {
            let (k, _) = row.map_err(err)?;
            let (device, key) = k.value();
            if device != device_id {
                break;
            }
            out.push(key.to_owned());
        }
        Ok(out)
    }
}
