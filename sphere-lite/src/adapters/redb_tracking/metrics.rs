//! The embedded (redb) adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::MetricStore;

/// Store one package's metric points inside `tx` (see [`MetricStore::put_metrics`]).
pub(super) fn put_metrics_in(
    tx: &redb::WriteTransaction,
    device_id: &str,
    package_id: &str,
    unix_ms: u64,
    points: &[(String, f64)],
) -> Result<(), StoreError> {
    let mut table = tx.open_table(METRIC_POINTS).map_err(err)?;
    let mut keys = tx.open_table(METRIC_KEYS).map_err(err)?;
    for (key, value) in points {
        table
            .insert((device_id, key.as_str(), unix_ms, package_id), *value)
            .map_err(err)?;
        let newest = keys
            .get((device_id, key.as_str()))
            .map_err(err)?
            .map_or(0, |v| v.value());
        if unix_ms >= newest {
            keys.insert((device_id, key.as_str()), unix_ms)
                .map_err(err)?;
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
        put_metrics_in(&tx, device_id, package_id, unix_ms, points)?;
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
