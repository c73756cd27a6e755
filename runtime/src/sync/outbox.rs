//! The outbox: packages waiting for upload, in the state database's `outbox` table, with the
//! cursors of the data they hold in the `sync` table.
//!
//! A record is `[u32 LE header length][postcard RecordHeader][package TAR]`, so the index
//! (ids, sizes, priorities) is read at start without copying any package. Queuing a package
//! writes, in **one batch** flushed before [`Outbox::enqueue`] returns: the drops the disk
//! policy chose (deleted and counted), the new record, and the advanced [`Cursors`]. After a
//! crash the database holds either all of it or none of it, so data is never packaged twice
//! and never skipped. A record is deleted only by [`Outbox::remove`] after the server confirmed
//! it, flushed before the next upload starts.
//!
//! # Drop policy
//!
//! Limits: `max-outbox-packages` records and `max-outbox-mib` bytes. To make room, the oldest
//! *routine* package goes first (metrics, logs, predictions, snapshot metadata: the newest of
//! those say more than the oldest); packages holding drift events go only when no routine one
//! is left and the new package holds drift events too. A routine package that does not fit
//! beside drift packages is itself dropped. Every drop is logged at warn and counted in
//! [`DROPPED_COUNTER`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::SyncError;
use crate::state::{Batch, MAX_OUTBOX_PER_READ, Store};

/// Store counter: packages queued.
pub const QUEUED_COUNTER: &str = "sync.queued";
/// Store counter: packages the server accepted.
pub const UPLOADED_COUNTER: &str = "sync.uploaded";
/// Store counter: packages the server already had.
pub const DUPLICATE_COUNTER: &str = "sync.duplicates";
/// Store counter: packages dropped by the disk policy or a 413.
pub const DROPPED_COUNTER: &str = "sync.dropped";
/// Store counter: packages the server refused as invalid (moved aside).
pub const REJECTED_COUNTER: &str = "sync.rejected";

/// Name of the cursors in the `sync` table.
const CURSORS: &str = "cursors";
/// Version of [`RecordHeader`].
const RECORD_VERSION: u32 = 1;

/// How much a package matters when disk runs short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    /// Metrics, logs, predictions, snapshot metadata: dropped first.
    Routine,
    /// Holds drift events: dropped last.
    Drift,
}

/// What a record says about its package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordHeader {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The package id inside the package's manifest.
    pub package_id: String,
    /// When it was built (Unix ms).
    pub created_unix_ms: u64,
    /// Its drop priority.
    pub priority: Priority,
    /// Drift events it holds.
    pub drift_events: u32,
}

/// Where packaging stands: everything up to these marks is in a queued (or sent) package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursors {
    /// The last event-log sequence number looked at.
    pub events_after: u64,
    /// The log file generation being read.
    pub log_generation: u64,
    /// The byte offset in it.
    pub log_offset: u64,
    /// `written_unix_ms` of the last `status.json` packaged.
    pub metrics_unix_ms: u64,
    /// Digest of the snapshot list last packaged.
    pub snapshots_digest: String,
    /// The next record id.
    pub next_record: u64,
}

/// One queued record, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Record bytes (header and package).
    pub bytes: u64,
    /// Drop priority.
    pub priority: Priority,
    /// The package id.
    pub package_id: String,
}

/// The outbox's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most records.
    pub max_packages: u64,
    /// Most record bytes.
    pub max_bytes: u64,
}

/// Encodes a record.
pub fn encode_record(header: &RecordHeader, package: &[u8]) -> Result<Vec<u8>, SyncError> {
    let head = postcard::to_stdvec(header).map_err(|e| SyncError::Record {
        id: 0,
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(4 + head.len() + package.len());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(package);
    Ok(out)
}

/// Decodes a record's header and returns where the package starts; bad bytes are an error.
pub fn decode_header(id: u64, bytes: &[u8]) -> Result<(RecordHeader, usize), SyncError> {
    let bad = |reason: String| SyncError::Record { id, reason };
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("shorter than its header length".into()))?;
    let head = bytes
        .get(4..4 + len)
        .ok_or_else(|| bad(format!("header of {len} bytes does not fit")))?;
    let header: RecordHeader = postcard::from_bytes(head).map_err(|e| bad(e.to_string()))?;
    if header.version != RECORD_VERSION {
        return Err(bad(format!("record version {}", header.version)));
    }
    Ok((header, 4 + len))
}

/// Which records to drop so that one more record of `new_bytes` and `new_priority` fits;
/// `None` when the new record itself must be dropped (a routine package that only drift
/// packages could make room for).
pub fn plan_drops(
    index: &BTreeMap<u64, IndexEntry>,
    new_bytes: u64,
    new_priority: Priority,
    limits: Limits,
) -> Option<Vec<u64>> {
    let mut count = index.len() as u64;
    let mut bytes: u64 = index.values().map(|e| e.bytes).sum();
    let fits = |count: u64, bytes: u64| {
        count < limits.max_packages && bytes.saturating_add(new_bytes) <= limits.max_bytes
    };
    let mut drops = Vec::new();
    let order = index
        .iter()
        .filter(|(_, e)| e.priority == Priority::Routine)
        .chain(
            index
                .iter()
                .filter(|(_, e)| e.priority == Priority::Drift && new_priority == Priority::Drift),
        );
    for (id, e) in order {
        if fits(count, bytes) {
            break;
        }
        drops.push(*id);
        count -= 1;
        bytes -= e.bytes;
    }
    fits(count, bytes).then_some(drops)
}

/// A package ready to queue.
#[derive(Debug, Clone)]
pub struct NewPackage {
    /// Its header.
    pub header: RecordHeader,
    /// The TAR.
    pub tar: Vec<u8>,
}

/// What [`Outbox::enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The new record's id, `None` when the policy dropped the new package itself.
    pub id: Option<u64>,
    /// Package ids of the records dropped to make room.
    pub dropped: Vec<String>,
}

/// The outbox and its in-memory index (the sync thread is its only writer).
#[derive(Debug)]
pub struct Outbox {
    store: Arc<Store>,
    index: BTreeMap<u64, IndexEntry>,
    cursors: Cursors,
    limits: Limits,
}

impl Outbox {
    /// Reads the index and the cursors. A record whose header does not decode is deleted and
    /// counted as dropped (it could never be sent).
    pub fn open(store: Arc<Store>, limits: Limits) -> Result<Outbox, SyncError> {
        let mut index = BTreeMap::new();
        let mut broken = Vec::new();
        let mut after = 0;
        loop {
            let mut last = None;
            let n = store.outbox_visit(after, MAX_OUTBOX_PER_READ, |id, bytes| {
                last = Some(id);
                match decode_header(id, bytes) {
                    Ok((h, _)) => {
                        index.insert(
                            id,
                            IndexEntry {
                                bytes: bytes.len() as u64,
                                priority: h.priority,
                                package_id: h.package_id,
                            },
                        );
                    }
                    Err(e) => broken.push((id, e)),
                }
            })?;
            match last {
                Some(l) if n > 0 => after = l,
                _ => break,
            }
        }
        let mut cursors: Cursors = store.get_sync(CURSORS)?.unwrap_or_default();
        let after_last = store.outbox_last_id()?.map_or(1, |l| l + 1);
        cursors.next_record = cursors.next_record.max(after_last).max(1);
        if !broken.is_empty() {
            let mut b = Batch::new();
            for (id, e) in &broken {
                tracing::warn!("sync outbox: dropping record {id}, it cannot be read: {e}");
                b.delete_outbox(*id);
            }
            b.increment(DROPPED_COUNTER, broken.len() as u64);
            store.submit(b)?;
            store.flush()?;
        }
        Ok(Outbox {
            store,
            index,
            cursors,
            limits,
        })
    }

    /// The committed cursors.
    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.index.len() as u64
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.index.values().map(|e| e.bytes).sum()
    }

    /// Record ids, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.index.keys().copied().collect()
    }

    /// Queues `package` with the cursors that cover its data, after the drops the policy
    /// needs; all in one flushed commit. `package = None` only moves the cursors (data looked
    /// at that needs no package, e.g. events that are not drift).
    pub fn enqueue(
        &mut self,
        package: Option<NewPackage>,
        cursors: Cursors,
    ) -> Result<Enqueued, SyncError> {
        let mut cursors = cursors;
        cursors.next_record = self.cursors.next_record;
        let mut batch = Batch::new();
        let mut result = Enqueued {
            id: None,
            dropped: Vec::new(),
        };
        let mut new_entry = None;
        if let Some(p) = package {
            let record = encode_record(&p.header, &p.tar)?;
            let bytes = record.len() as u64;
            match plan_drops(&self.index, bytes, p.header.priority, self.limits) {
                Some(drops) => {
                    for id in drops {
                        if let Some(e) = self.index.get(&id) {
                            tracing::warn!(
                                "sync outbox full: dropping {:?} package {} ({} bytes) to make room",
                                e.priority,
                                e.package_id,
                                e.bytes
                            );
                            result.dropped.push(e.package_id.clone());
                        }
                        batch.delete_outbox(id);
                    }
                    let id = cursors.next_record;
                    cursors.next_record += 1;
                    batch.put_outbox(id, record)?;
                    batch.increment(QUEUED_COUNTER, 1);
                    new_entry = Some((
                        id,
                        IndexEntry {
                            bytes,
                            priority: p.header.priority,
                            package_id: p.header.package_id.clone(),
                        },
                    ));
                    result.id = Some(id);
                }
                None => {
                    tracing::warn!(
                        "sync outbox full of drift packages: dropping the new {:?} package {} \
                         ({bytes} bytes)",
                        p.header.priority,
                        p.header.package_id
                    );
                    result.dropped.push(p.header.package_id.clone());
                }
            }
        }
        if !result.dropped.is_empty() {
            batch.increment(DROPPED_COUNTER, result.dropped.len() as u64);
        }
        batch.put_sync(CURSORS, &cursors)?;
        self.store.submit(batch)?;
        self.store.flush()?;
        // Only now, with everything durable, does the in-memory view follow.
        let dropped_ids: Vec<u64> = self
            .index
            .iter()
            .filter(|(_, e)| result.dropped.contains(&e.package_id))
            .map(|(id, _)| *id)
            .collect();
        for id in dropped_ids {
            self.index.remove(&id);
        }
        if let Some((id, e)) = new_entry {
            self.index.insert(id, e);
        }
        self.cursors = cursors;
        Ok(result)
    }

    /// Reads record `id`: its header and package bytes.
    pub fn load(&self, id: u64) -> Result<(RecordHeader, Vec<u8>), SyncError> {
        let bytes = self
            .store
            .outbox_get(id)?
            .ok_or_else(|| SyncError::Record {
                id,
                reason: "not in the outbox".into(),
            })?;
        let (header, start) = decode_header(id, &bytes)?;
        Ok((header, bytes[start..].to_vec()))
    }

    /// Deletes record `id` and adds one to `counter`, durably, before returning.
    pub fn remove(&mut self, id: u64, counter: &str) -> Result<(), SyncError> {
        let mut b = Batch::new();
        b.delete_outbox(id);
        b.increment(counter, 1);
        self.store.submit(b)?;
        self.store.flush()?;
        self.index.remove(&id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DurabilityPolicy;

    fn entry(bytes: u64, priority: Priority) -> IndexEntry {
        IndexEntry {
            bytes,
            priority,
            package_id: format!("p{bytes}"),
        }
    }

    #[test]
    fn routine_packages_go_first_then_drift_only_for_drift() {
        use Priority::*;
        let limits = Limits {
            max_packages: 4,
            max_bytes: 100,
        };
        let mut index = BTreeMap::new();
        index.insert(1, entry(10, Drift));
        index.insert(2, entry(20, Routine));
        index.insert(3, entry(30, Drift));
        index.insert(4, entry(25, Routine));
        // Count full: the oldest routine goes.
        assert_eq!(plan_drops(&index, 1, Routine, limits), Some(vec![2]));
        // Bytes: 85 + 40 > 100 → both routine ones.
        assert_eq!(plan_drops(&index, 40, Drift, limits), Some(vec![2, 4]));
        // Routine ones are not enough for 80 bytes: a drift package may go for drift...
        assert_eq!(
            plan_drops(&index, 80, Drift, limits),
            Some(vec![2, 4, 1, 3])
        );
        // ...but never for a routine package, which is dropped itself.
        assert_eq!(plan_drops(&index, 80, Routine, limits), None);
        // Room left: nothing to drop.
        index.remove(&4);
        assert_eq!(plan_drops(&index, 40, Routine, limits), Some(vec![]));
    }

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let h = RecordHeader {
            version: RECORD_VERSION,
            package_id: "abc".into(),
            created_unix_ms: 5,
            priority: Priority::Drift,
            drift_events: 2,
        };
        let r = encode_record(&h, b"TAR").unwrap();
        let (back, start) = decode_header(1, &r).unwrap();
        assert_eq!(back, h);
        assert_eq!(&r[start..], b"TAR");
        assert!(decode_header(1, &[1, 0]).is_err());
        assert!(decode_header(1, &[200, 0, 0, 0, 1]).is_err());
        assert!(decode_header(1, &[1, 0, 0, 0, 0xff]).is_err());
    }

    fn package(id: &str, priority: Priority, size: usize) -> NewPackage {
        NewPackage {
            header: RecordHeader {
                version: RECORD_VERSION,
                package_id: id.into(),
                created_unix_ms: 1,
                priority,
                drift_events: 0,
            },
            tar: vec![7; size],
        }
    }

    /// Record, cursors and drops commit together; a reopened outbox sees exactly that.
    #[test]
    fn enqueue_is_atomic_with_the_cursors_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let limits = Limits {
            max_packages: 2,
            max_bytes: 1 << 20,
        };
        let store = Arc::new(Store::open(&path, DurabilityPolicy::default()).unwrap());
        let mut ob = Outbox::open(Arc::clone(&store), limits).unwrap();
        let mut c = ob.cursors().clone();
        c.events_after = 10;
        let r = ob
            .enqueue(Some(package("a", Priority::Routine, 100)), c.clone())
            .unwrap();
        assert_eq!(r.id, Some(1));
        c.events_after = 20;
        ob.enqueue(Some(package("b", Priority::Drift, 100)), c.clone())
            .unwrap();
        c.events_after = 30;
        let r = ob
            .enqueue(Some(package("c", Priority::Drift, 100)), c.clone())
            .unwrap();
        assert_eq!(r.dropped, vec!["a".to_string()]);
        assert_eq!(ob.ids(), vec![2, 3]);
        // A routine package beside two drift packages is dropped itself; cursors still move.
        c.events_after = 40;
        let r = ob
            .enqueue(Some(package("d", Priority::Routine, 10)), c.clone())
            .unwrap();
        assert_eq!(r.id, None);
        assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 2);
        ob.remove(2, UPLOADED_COUNTER).unwrap();
        drop(ob);
        drop(store);
        let store = Arc::new(Store::open(&path, DurabilityPolicy::default()).unwrap());
        let ob = Outbox::open(Arc::clone(&store), limits).unwrap();
        assert_eq!(ob.ids(), vec![3]);
        assert_eq!(ob.cursors().events_after, 40);
        assert_eq!(ob.cursors().next_record, 4);
        let (h, tar) = ob.load(3).unwrap();
        assert_eq!(h.package_id, "c");
        assert_eq!(tar, vec![7; 100]);
        assert_eq!(store.counter(QUEUED_COUNTER).unwrap(), 3);
        assert_eq!(store.counter(UPLOADED_COUNTER).unwrap(), 1);
    }

    #[test]
    fn unreadable_records_are_dropped_and_counted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap());
        let mut b = Batch::new();
        b.put_outbox(5, vec![9, 9]).unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let limits = Limits {
            max_packages: 10,
            max_bytes: 1 << 20,
        };
        let ob = Outbox::open(Arc::clone(&store), limits).unwrap();
        assert!(ob.is_empty());
        assert_eq!(ob.cursors().next_record, 6);
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 1);
    }
}
