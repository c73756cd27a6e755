//! Package records of the MLflow tracking adapter, kept as small S3 objects instead of runs.
//!
//! Why: a package run cost the upload five MLflow calls (look up, create, look up again for a
//! replica's copy, read and bump the device's count) and processing three more, each 17–50 ms
//! on a small MLflow, which held the distributed backend to a few packages per second. S3
//! answers a PUT, GET or LIST in a few milliseconds and scales with the bucket, and every
//! operation here is a whole-object write or a listing, so replicas need no lock. Keys, under
//! the tracking prefix of [`S3Settings::tracking`](crate::adapters::S3Settings::tracking):
//!
//! * `packages/<device>/<package>.json`: the [`PackageRecord`] (JSON), written at acceptance
//!   and rewritten when processed. Kept for ever (it is what makes a re-sent package a
//!   duplicate after retention pruned its raw TAR), one per package id whatever the replicas
//!   do, so a device's package count is a listing of its folder.
//! * `pending/<device>/<package>.json`: a copy of the record while the package waits for
//!   processing; any replica, or a restarted one, finds the work by listing `pending/`.
//! * `accepted/<device>/<inverted ms>.<package>`: an empty object per acceptance, named so
//!   S3's key order is newest first (`inverted ms` = `9999999999999 - accepted ms`, 13 digits):
//!   a page of a device's packages newest first is one listing.
//!
//! Order of writes at acceptance: the pending copy, the index entry, then the record. A crash
//! before the record leaves a pending copy that [`PackageObjects::pending`] completes (so the
//! package is processed and the device's retry is a duplicate); nothing is answered `accepted`
//! before all three exist.
//!
//! **Replicas.** Two replicas accepting the same package at the same moment both write the
//! pending copy and an index entry; the record is written only where none exists
//! (`If-None-Match: *`), so the second usually answers `duplicate`, and where the server lets
//! both conditional writes through, the last writer stands and both answer `accepted` (the raw
//! TAR is the same bytes). Either way it is one record, counted once, processed idempotently.
//! Their two index entries (two acceptance times) are shown as one package: listings keep the
//! entry whose time the record holds.
//!
//! **Processing** reads no record: it has each package's record from its pending listing or
//! from this process's own acceptance, and [`PackageObjects::mark_processed`] writes the
//! record whole (a PUT) and deletes the pending copy (a DELETE).

use std::sync::Arc;

use crate::adapters::S3Blobs;
use crate::parallel::each_parallel;
use crate::ports::{BlobKey, Blobs, PackageRecord, ProcessedPackage, Recorded, StoreError};

/// Largest acceptance time an index name can hold (13 digits: until the year 2286).
const MAX_MS: u64 = 9_999_999_999_999;
/// Index entries read beyond a page: replica duplicates and entries of the cursor's own
/// millisecond already shown are dropped after the listing, so a page stays full unless more
/// than this many share one millisecond.
const PAGE_SLACK: usize = 64;
/// Most pending packages one listing returns (an error beyond, never a silent truncation).
const MAX_PENDING: usize = 1_000_000;

/// The package records of one namespace in S3 (see the module docs).
pub struct PackageObjects {
    store: Arc<S3Blobs>,
}

fn key(k: String) -> Result<BlobKey, StoreError> {
    BlobKey::new(k).map_err(|e| StoreError::new("s3", format!("package record key: {}", e.reason)))
}

fn record_key(device: &str, package: &str) -> Result<BlobKey, StoreError> {
    key(format!("packages/{device}/{package}.json"))
}

fn pending_key(device: &str, package: &str) -> Result<BlobKey, StoreError> {
    key(format!("pending/{device}/{package}.json"))
}

/// (device, package) of a pending copy's key, `None` if it is not one.
fn parse_pending(k: &BlobKey) -> Option<(&str, &str)> {
    k.as_str()
        .strip_prefix("pending/")?
        .strip_suffix(".json")?
        .split_once('/')
}

fn index_prefix(device: &str) -> String {
    format!("accepted/{device}/")
}

/// The index name part of acceptance time `ms`: newer sorts first.
fn inverted(ms: u64) -> String {
    format!("{:013}", MAX_MS.saturating_sub(ms.min(MAX_MS)))
}

fn index_key(record: &PackageRecord) -> Result<BlobKey, StoreError> {
    key(format!(
        "{}{}.{}",
        index_prefix(&record.device_id),
        inverted(record.accepted_unix_ms),
        record.package_id
    ))
}

/// (accepted ms, package id) of an index entry's key.
fn parse_index(device: &str, k: &BlobKey) -> Option<(u64, String)> {
    let rest = k.as_str().strip_prefix(&index_prefix(device))?;
    let (inv, package) = rest.split_once('.')?;
    let inv: u64 = inv.parse().ok()?;
    Some((MAX_MS - inv.min(MAX_MS), package.to_owned()))
}

fn encode(record: &PackageRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::new("s3", format!("encode: {e}")))
}

fn decode(k: &BlobKey, bytes: &[u8]) -> Result<PackageRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::new("s3", format!("corrupt package record {k}: {e}")))
}

impl PackageObjects {
    /// Records in `store` (opened on [`S3Settings::tracking`](crate::adapters::S3Settings::tracking)).
    pub fn new(store: Arc<S3Blobs>) -> Self {
        PackageObjects { store }
    }

    fn read(&self, k: &BlobKey) -> Result<Option<PackageRecord>, StoreError> {
        self.store.get(k)?.map(|b| decode(k, &b)).transpose()
    }

    /// The record of (device, package), if accepted before: one GET.
    pub fn get(&self, device: &str, package: &str) -> Result<Option<PackageRecord>, StoreError> {
        self.read(&record_key(device, package)?)
    }

    /// Record an accepted package: three PUTs (pending copy, index entry, record), the
    /// record's only if there is none yet (`If-None-Match: *`), else
    /// [`Recorded::AlreadyKnown`].
    ///
    /// Why no GET first: the upload has just read the record to answer a duplicate before
    /// storing anything (`domain::ingest`), so a record found here is a race with another
    /// replica or a late re-send, and the conditional PUT tells that without a request of its
    /// own. The pending copy and index entry it wrote first are harmless then: the index
    /// entry's time is not the record's, so listings skip it, and a pending copy of a
    /// processed record is deleted here (rare: one GET) or by the next [`PackageObjects::pending`].
    pub fn accept(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        let bytes = encode(record)?;
        let pending = pending_key(&record.device_id, &record.package_id)?;
        if record.processed_unix_ms.is_none() {
            self.store.put(&pending, &bytes)?;
        }
        self.store.put(&index_key(record)?, b"")?;
        let record_key = record_key(&record.device_id, &record.package_id)?;
        if self.store.put_if_absent(&record_key, &bytes)? {
            return Ok(Recorded::New);
        }
        if record.processed_unix_ms.is_none()
            && self
                .read(&record_key)?
                .is_some_and(|known| known.processed_unix_ms.is_some())
        {
            self.store.delete(&pending)?;
        }
        Ok(Recorded::AlreadyKnown)
    }

    /// Rewrite the record as processed, then drop its pending copy. An error if there is no
    /// record.
    pub fn mark(
        &self,
        device: &str,
        package: &str,
        done: impl FnOnce(&mut PackageRecord),
    ) -> Result<(), StoreError> {
        let k = record_key(device, package)?;
        let Some(mut record) = self.read(&k)? else {
            return Err(StoreError::new(
                "s3",
                format!("no package {device}/{package}"),
            ));
        };
        done(&mut record);
        self.store.put(&k, &encode(&record)?)?;
        self.store.delete(&pending_key(device, package)?)
    }

    /// Marks every package of `batch` processed, a few at once: its record rewritten from
    /// [`ProcessedPackage::record`] (PUT), then its pending copy deleted; the first error after
    /// all were tried.
    ///
    /// Why no GET of the record, unlike [`PackageObjects::mark`]: processing read the record
    /// already (its pending listing, or the accept of this process), a record is never deleted,
    /// and every field of it is in the batch. A second replica processing the same package at
    /// the same moment writes the same record but for its processing time, the last writer
    /// stands, as before; a crash between the PUT and the DELETE leaves a pending copy of a
    /// processed record, which [`PackageObjects::pending`] deletes.
    pub fn mark_processed(&self, batch: &[ProcessedPackage]) -> Result<(), StoreError> {
        each_parallel(batch, "s3", "a processed mark", |done| {
            self.store.put(
                &record_key(&done.device_id, &done.package_id)?,
                &encode(&done.record())?,
            )?;
            self.store
                .delete(&pending_key(&done.device_id, &done.package_id)?)
        })
        .map(drop)
    }

    /// Packages not processed yet, oldest first: a listing of the pending copies and a GET of
    /// each one's record (a few at once). A pending copy whose record is missing (a crash
    /// during acceptance) gets its record written now from the copy; one whose record says
    /// processed (a crash after the mark) is dropped.
    pub fn pending(&self) -> Result<Vec<PackageRecord>, StoreError> {
        self.pending_written_by(u64::MAX)
    }

    /// How many pending copies there are: the listing alone, no record read (see
    /// [`crate::ports::PackageStore::unprocessed_count`]).
    pub fn pending_count(&self) -> Result<usize, StoreError> {
        Ok(self.pending_copies()?.len())
    }

    /// Every pending copy's key, size and time written: one listing, an error past
    /// [`MAX_PENDING`] (never a silent truncation).
    fn pending_copies(&self) -> Result<Vec<(BlobKey, u64, u64)>, StoreError> {
        let keys = self
            .store
            .list_modified("pending/", None, MAX_PENDING + 1)?;
        if keys.len() > MAX_PENDING {
            return Err(StoreError::new(
                "s3",
                format!("more than {MAX_PENDING} pending packages"),
            ));
        }
        Ok(keys)
    }

    /// [`PackageObjects::pending`] for the pending copies written at or before `by_ms` (Unix
    /// ms, by the S3 server's clock: the listing says when each was written), so a sweep for
    /// packages pending too long reads only their records, not every young one's.
    pub fn pending_written_by(&self, by_ms: u64) -> Result<Vec<PackageRecord>, StoreError> {
        let mut keys = self.pending_copies()?;
        keys.retain(|(_, _, written)| *written <= by_ms);
        let mut out: Vec<PackageRecord> =
            each_parallel(&keys, "s3", "a pending record read", |(k, _, _)| {
                self.pending_one(k)
            })?
            .into_iter()
            .flatten()
            .collect();
        out.sort_by(|a, b| {
            (a.accepted_unix_ms, &a.device_id, &a.package_id).cmp(&(
                b.accepted_unix_ms,
                &b.device_id,
                &b.package_id,
            ))
        });
        Ok(out)
    }

    /// The record behind pending copy `k`, completed or cleaned up as [`PackageObjects::pending`]
    /// says; `None` if it is not pending (any more) or `k` is no pending copy's key.
    fn pending_one(&self, k: &BlobKey) -> Result<Option<PackageRecord>, StoreError> {
        // The key names the package: its record is read, the copy only when it is missing.
        let Some((device, package)) = parse_pending(k) else {
            return Ok(None);
        };
        match self.get(device, package)? {
            Some(r) if r.processed_unix_ms.is_some() => {
                self.store.delete(k)?;
                Ok(None)
            }
            Some(r) => Ok(Some(r)),
            None => {
                let Some(copy) = self.read(k)? else {
                    return Ok(None);
                };
                self.store.put(&index_key(&copy)?, b"")?;
                self.store.put(
                    &record_key(&copy.device_id, &copy.package_id)?,
                    &encode(&copy)?,
                )?;
                Ok(Some(copy))
            }
        }
    }

    /// How many packages `device` has: one listing of its records (a page per 1000).
    pub fn count(&self, device: &str) -> Result<u64, StoreError> {
        let prefix = format!("packages/{device}/");
        Ok(self.store.list_page(&prefix, None, usize::MAX)?.len() as u64)
    }

    /// `device`'s packages newest accepted first (ties by package id, descending), those
    /// before the cursor `before` only, at most `limit`: one listing of the index and one GET
    /// per package shown.
    pub fn newest_first(
        &self,
        device: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = index_prefix(device);
        // From the start of the cursor's millisecond: its entries sort by ascending id, and the
        // ones with smaller ids come after the cursor in the page's order.
        let start = before.map(|(t, _)| format!("{prefix}{}", inverted(t.saturating_add(1))));
        let mut entries: Vec<(u64, String)> = self
            .store
            .list_page(&prefix, start.as_deref(), limit + PAGE_SLACK)?
            .iter()
            .filter_map(|(k, _)| parse_index(device, k))
            .filter(|(t, id)| before.is_none_or(|(bt, bid)| (*t, id.as_str()) < (bt, bid)))
            .collect();
        entries.sort_by(|a, b| b.cmp(a));
        let mut out: Vec<PackageRecord> = Vec::new();
        for (t, id) in entries {
            if out.len() == limit {
                break;
            }
            if out.iter().any(|r| r.package_id == id) {
                continue;
            }
            // A replica race's second entry: the record holds the acceptance time that counts.
            match self.get(device, &id)? {
                Some(record) if record.accepted_unix_ms == t => out.push(record),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_sort_newest_first_and_parse_back() {
        let record = |ms, id: &str| PackageRecord {
            device_id: "d".into(),
            package_id: id.into(),
            raw_key: String::new(),
            accepted_unix_ms: ms,
            processed_unix_ms: None,
            failed: None,
            problems: vec![],
        };
        let older = index_key(&record(1_700_000_000_000, "a")).unwrap();
        let newer = index_key(&record(1_700_000_000_001, "a")).unwrap();
        assert!(newer.as_str() < older.as_str());
        assert_eq!(
            parse_index("d", &older),
            Some((1_700_000_000_000, "a".to_owned()))
        );
        assert_eq!(parse_index("e", &older), None);
        assert_eq!(inverted(u64::MAX), "0000000000000");
    }

    #[test]
    fn a_pending_copy_key_names_its_package() {
        let k = pending_key("dev-1", "p.2").unwrap();
        assert_eq!(parse_pending(&k), Some(("dev-1", "p.2")));
        let record = record_key("dev-1", "p.2").unwrap();
        assert_eq!(parse_pending(&record), None);
    }
}
