//! The move of metric points from the layout before package rows (one row per point in
//! `metric_points`) into [`METRIC_ROWS`] (one row per package), run on open.
//!
//! Why in chunks: a database of a fleet can hold millions of points; one transaction for all of
//! them would hold them all in its write buffer. Each chunk is one transaction that writes
//! package rows and removes the points it wrote, so a crash between chunks leaves every point
//! in exactly one of the two tables, and a crash inside one loses only that chunk's
//! uncommitted work. A point is merged into its package's row by key, so a package whose
//! points span two chunks is completed by the second, and nothing is ever counted twice.

use std::collections::BTreeMap;

use redb::{Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

use super::metrics::{decode, encode, note_keys};
use super::{METRIC_ROWS, err};
use crate::ports::StoreError;

/// (device, key, unix ms, package) → value: the layout of versions before package rows. Read
/// only by the migration, which empties it and then deletes it.
pub(super) const LEGACY_METRIC_POINTS: TableDefinition<(&str, &str, u64, &str), f64> =
    TableDefinition::new("metric_points");

/// Points moved per transaction: ≈ 1,300 packages of 150 points, a few MB of rows.
const CHUNK_POINTS: usize = 200_000;

/// Move every point of [`LEGACY_METRIC_POINTS`] into package rows, chunk by chunk, then delete
/// the old table. Nothing to do (one read) on a database that never had it or was migrated.
pub(super) fn migrate(db: &Database) -> Result<(), StoreError> {
    let mut moved = 0;
    while let Some(n) = migrate_chunk(db, CHUNK_POINTS)? {
        moved += n;
        tracing::info!(moved, "moved metric points into package rows");
    }
    Ok(())
}

/// Move at most about `budget` points in one transaction; `None` when the old table is gone
/// (or was found empty and deleted).
pub(super) fn migrate_chunk(db: &Database, budget: usize) -> Result<Option<usize>, StoreError> {
    match db
        .begin_read()
        .map_err(err)?
        .open_table(LEGACY_METRIC_POINTS)
    {
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        other => drop(other.map_err(err)?),
    }
    let tx = db.begin_write().map_err(err)?;
    let mut moved = 0;
    let empty = {
        let mut legacy = tx.open_table(LEGACY_METRIC_POINTS).map_err(err)?;
        while moved < budget {
            match move_device_points(&tx, &mut legacy, budget - moved)? {
                0 => break,
                n => moved += n,
            }
        }
        legacy.is_empty().map_err(err)?
    };
    if empty {
        tx.delete_table(LEGACY_METRIC_POINTS).map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok((!empty || moved > 0).then_some(moved))
}

/// Move up to about `budget` points of the first device left in `legacy` (at least one point
/// of each of its keys, the oldest first), merged into their packages' rows; the count moved.
fn move_device_points(
    tx: &redb::WriteTransaction,
    legacy: &mut Table<(&str, &str, u64, &str), f64>,
    budget: usize,
) -> Result<usize, StoreError> {
    let Some(device) = legacy
        .first()
        .map_err(err)?
        .map(|(k, _)| k.value().0.to_owned())
    else {
        return Ok(0);
    };
    let device = device.as_str();
    // The device's keys, one seek each: the first key after `key` is at or after `key\0`.
    let mut keys: Vec<String> = Vec::new();
    loop {
        let after = keys.last().map(|k| format!("{k}\0")).unwrap_or_default();
        let next = legacy
            .range((device, after.as_str(), 0, "")..)
            .map_err(err)?
            .next()
            .transpose()
            .map_err(err)?;
        match next {
            Some((k, _)) if k.value().0 == device => keys.push(k.value().1.to_owned()),
            _ => break,
        }
    }
    let per_key = (budget / keys.len().max(1)).max(1);
    // (time, package) → the points read of it; (key, time, package) of every point read.
    let mut packages: BTreeMap<(u64, String), Vec<(String, f64)>> = BTreeMap::new();
    let mut read: Vec<(String, u64, String)> = Vec::new();
    for key in &keys {
        let end = format!("{key}\0");
        let range = legacy
            .range((device, key.as_str(), 0, "")..(device, end.as_str(), 0, ""))
            .map_err(err)?;
        for row in range.take(per_key) {
            let (k, v) = row.map_err(err)?;
            let (_, _, unix_ms, package) = k.value();
            packages
                .entry((unix_ms, package.to_owned()))
                .or_default()
                .push((key.clone(), v.value()));
            read.push((key.clone(), unix_ms, package.to_owned()));
        }
    }
    let mut rows = tx.open_table(METRIC_ROWS).map_err(err)?;
    for ((unix_ms, package), points) in &packages {
        let row_key = (device, *unix_ms, package.as_str());
        // Points of this package moved by an earlier chunk stay; the ones read now join them.
        let mut all: Vec<(String, f64)> = match rows.get(row_key).map_err(err)? {
            Some(row) => decode(row.value())?
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            None => Vec::new(),
        };
        all.extend(points.iter().cloned());
        let row = encode(all.iter().map(|(k, v)| (k.as_str(), *v)))?;
        rows.insert(row_key, row.as_slice()).map_err(err)?;
    }
    note_keys(
        tx,
        read.iter()
            .map(|(key, unix_ms, _)| ((device, key.as_str()), *unix_ms)),
    )?;
    for (key, unix_ms, package) in &read {
        legacy
            .remove((device, key.as_str(), *unix_ms, package.as_str()))
            .map_err(err)?;
    }
    Ok(read.len())
}

#[cfg(test)]
mod tests {
    use super::super::RedbTracking;
    use super::*;
    use crate::ports::MetricStore;

    /// Every point left in the old table and in package rows, as (device, key, time,
    /// package, value), sorted: what a reader of both layouts would see.
    fn all_points(db: &Database) -> Vec<(String, String, u64, String, f64)> {
        let tx = db.begin_read().unwrap();
        let mut out = Vec::new();
        if let Ok(legacy) = tx.open_table(LEGACY_METRIC_POINTS) {
            for row in legacy.iter().unwrap() {
                let (k, v) = row.unwrap();
                let (d, key, t, p) = k.value();
                out.push((d.into(), key.into(), t, p.into(), v.value()));
            }
        }
        for row in tx.open_table(METRIC_ROWS).unwrap().iter().unwrap() {
            let (k, v) = row.unwrap();
            let (d, t, p) = k.value();
            for (key, value) in decode(v.value()).unwrap() {
                out.push((d.into(), key.into(), t, p.into(), value));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1, a.2, &a.3).cmp(&(&b.0, &b.1, b.2, &b.3)));
        out
    }

    /// A migration stopped after any chunk (a crash between transactions) has every point
    /// exactly once across the two tables, and the next open finishes it with every series
    /// whole (fails if a chunk loses, doubles or splits points it does not complete).
    #[test]
    fn a_migration_interrupted_between_chunks_loses_and_doubles_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut want = Vec::new();
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut legacy = tx.open_table(LEGACY_METRIC_POINTS).unwrap();
                for device in ["a", "b"] {
                    for i in 0..30u64 {
                        for (k, key) in ["fps", "temp", "x.y"].iter().enumerate() {
                            // Sparse keys: a package has some of the keys only.
                            if (i + k as u64).is_multiple_of(k as u64 + 1) {
                                let p = format!("p{i:02}");
                                let v = (i * 10 + k as u64) as f64;
                                legacy
                                    .insert((device, *key, 1000 + i / 3, p.as_str()), v)
                                    .unwrap();
                                want.push((device.into(), (*key).into(), 1000 + i / 3, p, v));
                            }
                        }
                    }
                }
            }
            tx.commit().unwrap();
            want.sort_by(|a: &(String, String, u64, String, f64), b| {
                (&a.0, &a.1, a.2, &a.3).cmp(&(&b.0, &b.1, b.2, &b.3))
            });
            // Chunks of 7 points: packages are split across chunks, devices share one.
            let mut chunks = 0;
            while migrate_chunk(&db, 7).unwrap().is_some() {
                chunks += 1;
                assert_eq!(all_points(&db), want, "after chunk {chunks}");
                if chunks == 4 {
                    break;
                }
            }
            assert_eq!(chunks, 4);
        }
        let t = RedbTracking::open(&path).unwrap();
        assert_eq!(all_points(&t.db), want);
        assert!(
            t.db.begin_read()
                .unwrap()
                .open_table(LEGACY_METRIC_POINTS)
                .is_err(),
            "the old table is deleted once empty"
        );
        for device in ["a", "b"] {
            for key in ["fps", "temp", "x.y"] {
                let series: Vec<(u64, f64)> = want
                    .iter()
                    .filter(|p| p.0 == device && p.1 == key)
                    .map(|p| (p.2, p.4))
                    .collect();
                assert_eq!(
                    t.metric_series(device, key, 0, u64::MAX, 1000).unwrap(),
                    series
                );
            }
        }
    }
}
