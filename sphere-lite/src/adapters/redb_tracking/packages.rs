//! The embedded (redb) adapter: the `PackageStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::{PackageStore, ProcessedPackage};
use redb::ReadableTableMetadata;

/// Record `record` inside `tx` (idempotent on device + package id) and count it for its device.
fn record_accepted_in(
    tx: &redb::WriteTransaction,
    record: &PackageRecord,
) -> Result<Recorded, StoreError> {
    let key = package_key(&record.device_id, &record.package_id);
    let mut packages = tx.open_table(PACKAGES).map_err(err)?;
    if packages.get(key.as_str()).map_err(err)?.is_some() {
        return Ok(Recorded::AlreadyKnown);
    }
    packages
        .insert(key.as_str(), to_json(record)?.as_slice())
        .map_err(err)?;
    if record.processed_unix_ms.is_none() {
        tx.open_table(PENDING)
            .map_err(err)?
            .insert(pending_key(record).as_str(), ())
            .map_err(err)?;
    }
    let mut devices = tx.open_table(DEVICES).map_err(err)?;
    if let Some(mut device) = RedbTracking::read_device(&devices, &record.device_id)? {
        device.packages += 1;
        device.last_seen_unix_ms = device.last_seen_unix_ms.max(record.accepted_unix_ms);
        devices
            .insert(record.device_id.as_str(), to_json(&device)?.as_slice())
            .map_err(err)?;
    }
    Ok(Recorded::New)
}

/// Mark a package processed (or failed) inside `tx`.
fn mark_processed_in(
    tx: &redb::WriteTransaction,
    device_id: &str,
    package_id: &str,
    now_unix_ms: u64,
    failed: Option<String>,
    problems: &[String],
) -> Result<(), StoreError> {
    let key = package_key(device_id, package_id);
    let mut packages = tx.open_table(PACKAGES).map_err(err)?;
    let mut record: PackageRecord = match packages.get(key.as_str()).map_err(err)? {
        Some(v) => from_json(v.value())?,
        None => return Err(StoreError::new("redb", format!("no package {key}"))),
    };
    tx.open_table(PENDING)
        .map_err(err)?
        .remove(pending_key(&record).as_str())
        .map_err(err)?;
    record.processed_unix_ms = Some(now_unix_ms);
    record.failed = failed;
    record.problems = problems.to_vec();
    packages
        .insert(key.as_str(), to_json(&record)?.as_slice())
        .map_err(err)
        .map(drop)
}

impl PackageStore for RedbTracking {
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(PACKAGES).map_err(err)?;
        match table
            .get(package_key(device_id, package_id).as_str())
            .map_err(err)?
        {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        Ok(self.record_accepted_group(std::slice::from_ref(record))?[0])
    }

    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        mark_processed_in(&tx, device_id, package_id, now_unix_ms, failed, problems)?;
        tx.commit().map_err(err)
    }

    fn packages_newest_first(
        &self,
        device_id: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(PACKAGES).map_err(err)?;
        // Keys are `<device>/<package>` (ids never contain `/`): `<device>0`
        // is the first key past the device's range (`'0'` follows `'/'` in ASCII).
        let (from, to) = (format!("{device_id}/"), format!("{device_id}0"));
        let mut out: Vec<PackageRecord> = Vec::new();
        for row in table.range(from.as_str()..to.as_str()).map_err(err)? {
            let (_, v) = row.map_err(err)?;
            let record: PackageRecord = from_json(v.value())?;
            if before.is_none_or(|(t, id)| {
                (record.accepted_unix_ms, record.package_id.as_str()) < (t, id)
            }) {
                out.push(record);
            }
        }
        out.sort_by(|a, b| {
            (b.accepted_unix_ms, &b.package_id).cmp(&(a.accepted_unix_ms, &a.package_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn commits_in_groups(&self) -> bool {
        true
    }

    fn record_accepted_group(
        &self,
        records: &[PackageRecord],
    ) -> Result<Vec<Recorded>, StoreError> {
        // One transaction, one durable commit, for every upload that waited for it.
        let tx = self.db.begin_write().map_err(err)?;
        let outcomes = records
            .iter()
            .map(|record| record_accepted_in(&tx, record))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().map_err(err)?;
        Ok(outcomes)
    }

    fn record_processed(
        &self,
        batch: &[ProcessedPackage],
    ) -> Result<Option<Vec<usize>>, StoreError> {
        // One transaction for the batch: everything it stores is keyed so that a re-run after
        // a crash before the commit stores the same again (see each part's own method).
        let tx = self.db.begin_write().map_err(err)?;
        let mut new_events = Vec::with_capacity(batch.len());
        for done in batch {
            predictions::put_predictions_in(&tx, &done.predictions)?;
            new_events.push(drift::put_drift_events_in(&tx, &done.drift_events)?);
            learning::put_learning_events_in(&tx, &done.learning_events)?;
            mark_processed_in(
                &tx,
                &done.device_id,
                &done.package_id,
                done.processed_unix_ms,
                done.failed.clone(),
                &done.problems,
            )?;
        }
        let points: Vec<metrics::PackagePoints<'_>> = batch
            .iter()
            .filter_map(|done| {
                let (at, points) = done.metrics.as_ref()?;
                Some((
                    done.device_id.as_str(),
                    done.package_id.as_str(),
                    *at,
                    points.as_slice(),
                ))
            })
            .collect();
        metrics::put_metrics_in(&tx, &points)?;
        tx.commit().map_err(err)?;
        Ok(Some(new_events))
    }

    fn sole_writer(&self) -> bool {
        // The database file is locked by the one process that opened it.
        true
    }

    /// The pending table's length, which redb keeps in the table's header: a `/metrics`
    /// scrape or the retry loop's check during a backlog reads no record.
    fn unprocessed_count(&self) -> Result<usize, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let pending = tx.open_table(PENDING).map_err(err)?;
        let n = pending.len().map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let pending = tx.open_table(PENDING).map_err(err)?;
        let packages = tx.open_table(PACKAGES).map_err(err)?;
        let mut out = Vec::new();
        for row in pending.iter().map_err(err)? {
            let (k, _) = row.map_err(err)?;
            let key = k.value();
            // `<ms>/<device>/<package>` → `<device>/<package>`
            let Some((_, rest)) = key.split_once('/') else {
                continue;
            };
            if let Some(v) = packages.get(rest).map_err(err)? {
                out.push(from_json(v.value())?);
            }
        }
        Ok(out)
    }
}
