//! Feedback marks: one empty S3 object per feedback item id a replica is about to queue for a
//! device, `feedback/<device>/<id, 20 digits>` under the tracking prefix, so that a device's
//! poll of an empty queue costs one S3 listing instead of an MLflow read.
//!
//! Why: devices poll their feedback on every sync and their queue is almost always empty;
//! reading the queue run from MLflow each time made polls the largest share of MLflow's load
//! under a fleet. Guarantee: a mark is written (and acknowledged by S3) *before* the write of
//! the item with that id starts, and only marks below a device's highest one are ever deleted
//! (each new mark deletes the lower ones), so once an item is stored every listing shows a
//! mark at or above its id. A poll that finds no mark above `after` can
//! therefore answer "nothing new" without MLflow; one that finds one reads the queue run as
//! before (at worst for nothing: a mark whose item write failed or lost a race). Listings in
//! S3 are strongly consistent after a write (AWS S3, SeaweedFS), so this holds across replicas.
//!
//! A device enrolled by a version without marks has none: its first poll on each replica
//! reads MLflow, and the replica then marks the queue's current last id (mark `0` for an
//! empty queue), which makes the device "marked" for every replica. Marks of a queue item
//! appended by a replica still running a version without marks are missing: during such a
//! rolling upgrade, an item queued by an old replica reaches a device polling a new replica
//! only together with the device's next item queued by a new one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::adapters::S3Blobs;
use crate::ports::{BlobKey, Blobs, StoreError};

/// Most devices remembered as marked before the set starts over (each is re-learnt with one
/// more listing).
const MAX_KNOWN: usize = 100_000;
/// Most lower marks one new mark deletes (more are left to the next).
const MAX_PRUNED: usize = 64;

/// The marks of all devices' feedback queues (see the module docs).
pub(super) struct FeedbackMarks {
    store: Arc<S3Blobs>,
    /// Devices seen to have at least one mark (a device's highest mark is never removed).
    marked: Mutex<HashSet<String>>,
}

/// What the marks say about a device's queue after some id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Marks {
    /// An item above it may exist: read the queue.
    MaybeNew,
    /// No item above it exists.
    NothingNew,
    /// The device has no marks (enrolled by a version without them): read the queue, then
    /// [`FeedbackMarks::mark`] its last id.
    Unmarked,
}

fn prefix(device: &str) -> String {
    format!("feedback/{device}/")
}

fn key_name(device: &str, id: u64) -> String {
    // Zero-padded so that key order is id order (`start-after` compares keys).
    format!("{}{id:020}", prefix(device))
}

impl FeedbackMarks {
    /// Marks in `store` (the tracking prefix of the S3 bucket).
    pub(super) fn new(store: Arc<S3Blobs>) -> Self {
        FeedbackMarks {
            store,
            marked: Mutex::new(HashSet::new()),
        }
    }

    /// Mark item `id` of `device`'s queue as about to be written: call before writing it.
    /// The device's lower marks are then deleted ([`FeedbackMarks::prune_below`]).
    pub(super) fn mark(&self, device: &str, id: u64) -> Result<(), StoreError> {
        let key = BlobKey::new(key_name(device, id))
            .map_err(|e| StoreError::new("s3", format!("feedback mark key: {}", e.reason)))?;
        self.store.put(&key, &[])?;
        self.remember(device);
        if let Err(e) = self.prune_below(device, id) {
            tracing::warn!(device, error = %e, "old feedback marks not deleted; the next mark retries");
        }
        Ok(())
    }

    /// Delete `device`'s marks below `id` (at most [`MAX_PRUNED`] a call), so a device keeps
    /// about one mark instead of one per item ever queued. Safe because only the highest
    /// mark decides a poll: a cursor below it reads the queue, one at or above it finds
    /// nothing new, with or without the lower marks.
    fn prune_below(&self, device: &str, id: u64) -> Result<(), StoreError> {
        self.store
            .delete_before(&prefix(device), &key_name(device, id), MAX_PRUNED)
    }

    /// Whether `device`'s queue may hold an item with an id above `after`.
    pub(super) fn after(&self, device: &str, after: u64) -> Result<Marks, StoreError> {
        let prefix = prefix(device);
        let start = key_name(device, after);
        if !self.store.list_page(&prefix, Some(&start), 1)?.is_empty() {
            return Ok(Marks::MaybeNew);
        }
        if super::lock(&self.marked).contains(device) {
            return Ok(Marks::NothingNew);
        }
        // Not known here yet: does the device have any mark at all (one more listing, once
        // per device and process)?
        if self.store.list_page(&prefix, None, 1)?.is_empty() {
            return Ok(Marks::Unmarked);
        }
        self.remember(device);
        Ok(Marks::NothingNew)
    }

    fn remember(&self, device: &str) {
        let mut marked = super::lock(&self.marked);
        if marked.len() >= MAX_KNOWN {
            marked.clear();
        }
        marked.insert(device.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key order is id order, and `after` itself is not above `after`.
    #[test]
    fn mark_keys_sort_by_id() {
        assert!(key_name("d", 9) < key_name("d", 10));
        assert!(key_name("d", 99) < key_name("d", u64::MAX));
        assert!(key_name("d", 0).starts_with(&prefix("d")));
        // A device id that is another's prefix has its own folder.
        assert!(!key_name("d1", 0).starts_with(&prefix("d")));
    }
}
