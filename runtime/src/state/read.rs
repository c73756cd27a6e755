//! Reads: component states, events, counters, quarantine entries, outbox records. Each read is one read transaction, so it sees
//! one committed state of the database and never waits for the writer.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;

use super::Store;
use super::codec;
use super::error::StateError;
use super::schema::{self, COUNTERS, EVENTS, KV, OUTBOX, QUARANTINE, SYNC};

/// The most events one [`Store::events_after`] call returns.
pub const MAX_EVENTS_PER_READ: usize = 10_000;

/// The most entries one [`Store::quarantine_entries`] call returns: an entry carries a
/// feature vector (at most 32 KiB at the largest feature dimension), so a page stays
/// within about 4 MiB.
pub const MAX_QUARANTINE_PER_READ: usize = 128;

/// The most records one [`Store::outbox_visit`] call visits.
pub const MAX_OUTBOX_PER_READ: usize = 1024;

impl Store {
    fn read_txn(&self, what: &'static str) -> Result<ReadTransaction, StateError> {
        self.db()?
            .begin_read()
            .map_err(|e| StateError::db(&self.path, what, e))
    }

    fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &ReadTransaction,
        def: TableDefinition<K, V>,
        what: &'static str,
    ) -> Result<redb::ReadOnlyTable<K, V>, StateError> {
        // Every table is created at open, so a missing one is an error like any other.
        txn.open_table(def)
            .map_err(|e| StateError::db(&self.path, what, e))
    }

    /// The raw bytes of component state `name`, if set.
    pub fn get_state_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        const WHAT: &str = "reading a component state";
        let txn = self.read_txn(WHAT)?;
        let kv = self.read_table(&txn, KV, WHAT)?;
        let v = kv
            .get(name)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Component state `name` decoded as `T`, if set. Bytes that do not decode are
    /// [`StateError::Decode`], never a panic.
    pub fn get_state<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        match self.get_state_bytes(name)? {
            Some(bytes) => codec::decode(&self.path, name, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The names of all component states, sorted.
    pub fn state_names(&self) -> Result<Vec<String>, StateError> {
        const WHAT: &str = "listing component states";
        let txn = self.read_txn(WHAT)?;
        let kv = self.read_table(&txn, KV, WHAT)?;
        let iter = kv.iter().map_err(|e| StateError::db(&self.path, WHAT, e))?;
        iter.map(|r| {
            r.map(|(k, _)| k.value().to_string())
                .map_err(|e| StateError::db(&self.path, WHAT, e))
        })
        .collect()
    }

    /// Up to `limit` (at most [`MAX_EVENTS_PER_READ`]) events with a sequence number greater
    /// than `after`, oldest first, decoded as `T`. `after = 0` starts at the oldest kept.
    pub fn events_after<T: DeserializeOwned>(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StateError> {
        self.events_after_raw(after, limit)?
            .into_iter()
            .map(|(seq, bytes)| {
                codec::decode(&self.path, &format!("event {seq}"), &bytes).map(|v| (seq, v))
            })
            .collect()
    }

    /// Like [`Store::events_after`], undecoded.
    pub fn events_after_raw(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        const WHAT: &str = "reading events";
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let txn = self.read_txn(WHAT)?;
        let events = self.read_table(&txn, EVENTS, WHAT)?;
        let range = events
            .range(start..)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        range
            .take(limit.min(MAX_EVENTS_PER_READ))
            .map(|r| {
                r.map(|(k, v)| (k.value(), v.value().to_vec()))
                    .map_err(|e| StateError::db(&self.path, WHAT, e))
            })
            .collect()
    }

    /// Decodes one event from [`Store::events_after_raw`] as `T`: for readers that must
    /// show the events they can decode and skip the others (e.g. written by a newer runtime).
    pub fn decode_event<T: DeserializeOwned>(
        &self,
        seq: u64,
        bytes: &[u8],
    ) -> Result<T, StateError> {
        codec::decode(&self.path, &format!("event {seq}"), bytes)
    }

    /// The oldest and newest kept event sequence numbers, or `None` when the log is empty.
    pub fn event_bounds(&self) -> Result<Option<(u64, u64)>, StateError> {
        const WHAT: &str = "reading event bounds";
        let txn = self.read_txn(WHAT)?;
        let events = self.read_table(&txn, EVENTS, WHAT)?;
        let first = events
            .first()
            .map_err(|e| StateError::db(&self.path, WHAT, e))?
            .map(|(k, _)| k.value());
        let last = events
            .last()
            .map_err(|e| StateError::db(&self.path, WHAT, e))?
            .map(|(k, _)| k.value());
        Ok(first.zip(last))
    }

    /// Counter `name` (0 when never incremented).
    pub fn counter(&self, name: &str) -> Result<u64, StateError> {
        const WHAT: &str = "reading a counter";
        let txn = self.read_txn(WHAT)?;
        let counters = self.read_table(&txn, COUNTERS, WHAT)?;
        let v = counters
            .get(name)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        Ok(v.map_or(0, |v| v.value()))
    }

    /// All counters.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>, StateError> {
        const WHAT: &str = "reading counters";
        let txn = self.read_txn(WHAT)?;
        let counters = self.read_table(&txn, COUNTERS, WHAT)?;
        counters_in(&self.path, &counters)
    }

    /// Up to `limit` (at most [`MAX_QUARANTINE_PER_READ`]) quarantine entries with an id
    /// greater than `after`, lowest id first, decoded as `T`. Page with the last id returned.
    pub fn quarantine_entries<T: DeserializeOwned>(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StateError> {
        self.quarantine_entries_raw(after, limit)?
            .into_iter()
            .map(|(id, bytes)| {
                codec::decode(&self.path, &format!("quarantine entry {id}"), &bytes)
                    .map(|v| (id, v))
            })
            .collect()
    }

    /// Like [`Store::quarantine_entries`], undecoded (so that one damaged entry can be
    /// skipped instead of failing the whole page).
    pub fn quarantine_entries_raw(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StateError> {
        const WHAT: &str = "reading quarantine entries";
        let Some(start) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, QUARANTINE, WHAT)?;
        let range = table
            .range(start..)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        range
            .take(limit.min(MAX_QUARANTINE_PER_READ))
            .map(|r| {
                r.map(|(k, v)| (k.value(), v.value().to_vec()))
                    .map_err(|e| StateError::db(&self.path, WHAT, e))
            })
            .collect()
    }

    /// Number of quarantine entries committed.
    pub fn quarantine_len(&self) -> Result<u64, StateError> {
        const WHAT: &str = "counting quarantine entries";
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, QUARANTINE, WHAT)?;
        table.len().map_err(|e| StateError::db(&self.path, WHAT, e))
    }

    /// Calls `visit` with up to `limit` (at most [`MAX_OUTBOX_PER_READ`]) outbox records with
    /// an id greater than `after`, lowest id first, borrowing their bytes from one read
    /// transaction (a record holds a whole package: the visitor reads what it needs, e.g. a
    /// header, without copying the rest). Returns the number of records visited.
    pub fn outbox_visit(
        &self,
        after: u64,
        limit: usize,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> Result<usize, StateError> {
        const WHAT: &str = "reading the outbox";
        let Some(start) = after.checked_add(1) else {
            return Ok(0);
        };
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, OUTBOX, WHAT)?;
        let range = table
            .range(start..)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        let mut n = 0;
        for r in range.take(limit.min(MAX_OUTBOX_PER_READ)) {
            let (k, v) = r.map_err(|e| StateError::db(&self.path, WHAT, e))?;
            visit(k.value(), v.value());
            n += 1;
        }
        Ok(n)
    }

    /// The bytes of outbox record `id`, if it is committed.
    pub fn outbox_get(&self, id: u64) -> Result<Option<Vec<u8>>, StateError> {
        const WHAT: &str = "reading an outbox record";
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, OUTBOX, WHAT)?;
        let v = table
            .get(id)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Number of outbox records committed.
    pub fn outbox_len(&self) -> Result<u64, StateError> {
        const WHAT: &str = "counting outbox records";
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, OUTBOX, WHAT)?;
        table.len().map_err(|e| StateError::db(&self.path, WHAT, e))
    }

    /// The highest outbox record id committed, if any.
    pub fn outbox_last_id(&self) -> Result<Option<u64>, StateError> {
        const WHAT: &str = "reading the outbox";
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, OUTBOX, WHAT)?;
        let last = table
            .last()
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        Ok(last.map(|(k, _)| k.value()))
    }

    /// Sync cursor `name` decoded as `T`, if set.
    pub fn get_sync<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        const WHAT: &str = "reading a sync cursor";
        let txn = self.read_txn(WHAT)?;
        let table = self.read_table(&txn, SYNC, WHAT)?;
        let v = table
            .get(name)
            .map_err(|e| StateError::db(&self.path, WHAT, e))?;
        match v {
            Some(v) => codec::decode(&self.path, name, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StateError> {
        schema::read_version(&*self.db()?, &self.path)
    }

    /// All component states and counters from one read transaction (for snapshots).
    pub(crate) fn dump(&self) -> Result<super::snapshot::Contents, StateError> {
        const WHAT: &str = "reading state for a snapshot";
        let txn = self.read_txn(WHAT)?;
        let kv = self.read_table(&txn, KV, WHAT)?;
        let iter = kv.iter().map_err(|e| StateError::db(&self.path, WHAT, e))?;
        let states = iter
            .map(|r| {
                r.map(|(k, v)| (k.value().to_string(), v.value().to_vec()))
                    .map_err(|e| StateError::db(&self.path, WHAT, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let counters = self.read_table(&txn, COUNTERS, WHAT)?;
        let counters = counters_in(&self.path, &counters)?.into_iter().collect();
        Ok(super::snapshot::Contents { states, counters })
    }
}

fn counters_in(
    path: &std::path::Path,
    table: &redb::ReadOnlyTable<&str, u64>,
) -> Result<BTreeMap<String, u64>, StateError> {
    const WHAT: &str = "reading counters";
    let iter = table.iter().map_err(|e| StateError::db(path, WHAT, e))?;
    iter.map(|r| {
        r.map(|(k, v)| (k.value().to_string(), v.value()))
            .map_err(|e| StateError::db(path, WHAT, e))
    })
    .collect()
}
