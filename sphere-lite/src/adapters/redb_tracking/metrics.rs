//! The embedded (redb) adapter: the `MetricStore` part of the `Tracking` port.
//!
//! Layout: one row per package in [`METRIC_ROWS`], keyed (device, time, package), holding all
//! of the package's points (see [`encode`]), and [`METRIC_KEYS`], the keys a device has sent
//! with the time of each one's newest point.
//!
//! Why one row per package, not one per point: processing a package of ≈ 150 points then
//! inserts one row instead of 150 rows in 150 places of the tree (one page dirtied per series a
//! batch touched), which `perf` showed as most of processing's time under the ingest bench.
//! The cost is on reads: a series is read by visiting every package row of its range (a
//! binary search for the key in each), so a read is bounded by [`MAX_SCAN_PACKAGES`] rows
//! (newest first) rather than by points of the one key, and a key a device sends rarely costs
//! as many rows as a frequent one, except that the scan starts at the key's newest point (from
//! [`METRIC_KEYS`]) and a read of one point stops at the first row that has the key.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use std::collections::HashMap;

use super::*;
use crate::ports::MetricStore;

/// One package's metric points: device, package, the points' time and the points.
pub(super) type PackagePoints<'a> = (&'a str, &'a str, u64, &'a [(String, f64)]);

/// Most package rows one series read visits (the newest of its range): 20,000 is two weeks
/// of a device syncing once a minute, ≈ 100 MB of rows of 150 points. Fewer than
/// [`MAX_SCAN_POINTS`], so that bound holds as well.
pub(super) const MAX_SCAN_PACKAGES: usize = 20_000;
const _: () = assert!(MAX_SCAN_PACKAGES <= MAX_SCAN_POINTS);

/// The row of one package's points: the number of points n (u32), n offsets (u32, from the
/// row's start) of the points, then the points sorted by key with no key twice, each the
/// key's length (u16), the key and the value (f64), all little-endian. Of points with the same
/// key the last given stands, as it did when each point was a row. Why the offsets: a series
/// read finds its key in each row by binary search instead of reading the row through.
pub(super) fn encode<'a>(
    points: impl IntoIterator<Item = (&'a str, f64)>,
) -> Result<Vec<u8>, StoreError> {
    let mut sorted: Vec<(&str, f64)> = points.into_iter().collect();
    // Stable: of equal keys the last given ends up last, and is the one kept.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let kept: Vec<(&str, f64)> = sorted
        .iter()
        .enumerate()
        .filter(|&(i, (key, _))| sorted.get(i + 1).is_none_or(|next| next.0 != *key))
        .map(|(_, point)| *point)
        .collect();
    let too_big = || StoreError::new("redb", "a package's metric points do not fit a row");
    let mut at = 4 + 4 * kept.len();
    let mut out = Vec::with_capacity(at + kept.iter().map(|(k, _)| k.len() + 10).sum::<usize>());
    out.extend_from_slice(
        &u32::try_from(kept.len())
            .map_err(|_| too_big())?
            .to_le_bytes(),
    );
    for (key, _) in &kept {
        out.extend_from_slice(&u32::try_from(at).map_err(|_| too_big())?.to_le_bytes());
        at += 2 + key.len() + 8;
    }
    for (key, value) in &kept {
        let len = u16::try_from(key.len()).map_err(|_| too_big())?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    Ok(out)
}

fn corrupt() -> StoreError {
    StoreError::new("redb", "corrupt record: a metric row")
}

fn u32_at(row: &[u8], at: usize) -> Result<usize, StoreError> {
    let bytes = row.get(at..at.checked_add(4).ok_or_else(corrupt)?);
    let bytes: [u8; 4] = bytes
        .ok_or_else(corrupt)?
        .try_into()
        .map_err(|_| corrupt())?;
    usize::try_from(u32::from_le_bytes(bytes)).map_err(|_| corrupt())
}

/// The number of points of a row written by [`encode`], its offsets checked to be there.
fn count(row: &[u8]) -> Result<usize, StoreError> {
    let n = u32_at(row, 0)?;
    let header = n.checked_mul(4).and_then(|b| b.checked_add(4));
    if header.is_none_or(|header| header > row.len()) {
        return Err(corrupt());
    }
    Ok(n)
}

/// The `i`-th point (`i` < [`count`]) of a row written by [`encode`].
fn point(row: &[u8], i: usize) -> Result<(&str, f64), StoreError> {
    let at = u32_at(row, 4 + 4 * i)?;
    let rest = row.get(at..).ok_or_else(corrupt)?;
    let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(corrupt)?;
    let (key, rest) = rest
        .split_at_checked(usize::from(u16::from_le_bytes(*len)))
        .ok_or_else(corrupt)?;
    let (value, _) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let key = std::str::from_utf8(key).map_err(|_| corrupt())?;
    Ok((key, f64::from_le_bytes(*value)))
}

/// The points of a row written by [`encode`], in key order.
pub(super) fn decode(row: &[u8]) -> Result<Vec<(&str, f64)>, StoreError> {
    (0..count(row)?).map(|i| point(row, i)).collect()
}

/// The value of `key` in a row written by [`encode`] (binary search: the keys are sorted).
fn value_of(row: &[u8], key: &str) -> Result<Option<f64>, StoreError> {
    let (mut lo, mut hi) = (0, count(row)?);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (k, v) = point(row, mid)?;
        match k.cmp(key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(Some(v)),
        }
    }
    Ok(None)
}

/// Raise the newest time of each (device, key) of `times` in [`METRIC_KEYS`] inside `tx`.
pub(super) fn note_keys<'a>(
    tx: &redb::WriteTransaction,
    times: impl IntoIterator<Item = ((&'a str, &'a str), u64)>,
) -> Result<(), StoreError> {
    let mut newest: HashMap<(&str, &str), u64> = HashMap::new();
    for (key, unix_ms) in times {
        let at = newest.entry(key).or_insert(unix_ms);
        *at = (*at).max(unix_ms);
    }
    let mut newest: Vec<_> = newest.into_iter().collect();
    // In key order: each page of the table is visited once per run of its keys.
    newest.sort_unstable();
    let mut keys = tx.open_table(METRIC_KEYS).map_err(err)?;
    for (key, unix_ms) in newest {
        let stored = keys.get(key).map_err(err)?.map(|v| v.value());
        if stored.is_none_or(|stored| unix_ms > stored) {
            keys.insert(key, unix_ms).map_err(err)?;
        }
    }
    Ok(())
}

/// Store the metric points of several packages inside `tx` (see [`MetricStore::put_metrics`]):
/// one row per package, written again whole when a package is processed again (same key,
/// same points), so a re-run adds nothing. Each (device, key) gets its newest time written
/// once per call.
pub(super) fn put_metrics_in(
    tx: &redb::WriteTransaction,
    packages: &[PackagePoints<'_>],
) -> Result<(), StoreError> {
    let mut rows = packages
        .iter()
        // A package without points has no row, as it had no point rows before.
        .filter(|(_, _, _, points)| !points.is_empty())
        .map(|&(device, package, unix_ms, points)| {
            let row = encode(points.iter().map(|(k, v)| (k.as_str(), *v)))?;
            Ok(((device, unix_ms, package), row))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut table = tx.open_table(METRIC_ROWS).map_err(err)?;
    for (key, row) in &rows {
        table.insert(*key, row.as_slice()).map_err(err)?;
    }
    note_keys(
        tx,
        packages.iter().flat_map(|&(device, _, unix_ms, points)| {
            points
                .iter()
                .map(move |(key, _)| ((device, key.as_str()), unix_ms))
        }),
    )
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
        if since >= until || max_points == 0 {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(err)?;
        // No package after the key's newest point holds it: the scan starts there (a key the
        // device never sent costs one read).
        let Some(newest) = tx
            .open_table(METRIC_KEYS)
            .map_err(err)?
            .get((device_id, key))
            .map_err(err)?
            .map(|v| v.value())
        else {
            return Ok(Vec::new());
        };
        let until = until.min(newest.saturating_add(1));
        if since >= until {
            return Ok(Vec::new());
        }
        let table = tx.open_table(METRIC_ROWS).map_err(err)?;
        // Newest first, so a range longer than the scan bound keeps its recent end.
        let mut points = Vec::new();
        let range = table
            .range((device_id, since, "")..(device_id, until, ""))
            .map_err(err)?;
        for row in range.rev().take(MAX_SCAN_PACKAGES) {
            let (k, v) = row.map_err(err)?;
            if let Some(value) = value_of(v.value(), key)? {
                points.push((k.value().1, value));
                // Thinning to one point keeps the newest: no need to read on.
                if max_points == 1 {
                    break;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_sorted_with_the_last_of_a_key_kept() {
        let row = encode([("b", 2.0), ("a", 1.0), ("b", 3.0), ("", -0.5)]).unwrap();
        assert_eq!(
            decode(&row).unwrap(),
            vec![("", -0.5), ("a", 1.0), ("b", 3.0)]
        );
        for (key, want) in [("", Some(-0.5)), ("a", Some(1.0)), ("b", Some(3.0))] {
            assert_eq!(value_of(&row, key).unwrap(), want);
        }
        for absent in ["0", "ab", "c"] {
            assert_eq!(value_of(&row, absent).unwrap(), None);
        }
        assert_eq!(decode(&encode([]).unwrap()).unwrap(), vec![]);
        assert!(encode([("k".repeat(70_000).as_str(), 1.0)]).is_err());
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_panic() {
        let row = encode([("abc", 1.0), ("def", 2.0)]).unwrap();
        for cut in 0..row.len() {
            assert!(decode(&row[..cut]).is_err(), "cut at {cut}");
        }
        assert!(value_of(&row[..row.len() - 1], "def").is_err());
        assert!(value_of(&[0xff; 7], "def").is_err());
        let mut bad_offset = row.clone();
        bad_offset[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bad_offset).is_err());
    }
}
