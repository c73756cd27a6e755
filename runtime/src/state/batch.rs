//! A batch: the unit of submission and of atomicity. The writer never splits a batch across
//! commits, so after any crash a batch is either wholly in the database or wholly absent.

use std::path::Path;

use serde::Serialize;

use super::codec;
use super::error::StateError;

/// One typed operation on the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Replace a component state (`kv` table).
    PutState { name: String, bytes: Vec<u8> },
    /// Remove a component state.
    DeleteState { name: String },
    /// Append an event; its sequence number is given when the batch is queued.
    AppendEvent { bytes: Vec<u8> },
    /// Add to a counter (saturating).
    Increment { counter: String, by: u64 },
    /// Insert or replace a quarantine entry (`quarantine` table).
    PutQuarantine { id: u64, bytes: Vec<u8> },
    /// Remove a quarantine entry.
    DeleteQuarantine { id: u64 },
    /// Insert or replace an outbox record (`outbox` table).
    PutOutbox { id: u64, bytes: Vec<u8> },
    /// Remove an outbox record.
    DeleteOutbox { id: u64 },
    /// Replace a sync cursor (`sync` table).
    PutSync { name: String, bytes: Vec<u8> },
}

/// Operations committed together, all or nothing.
///
/// Values are encoded when added (on the caller's thread), so the writer only copies bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) events: u64,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets component state `name` (e.g. `"knn"`, `"detector/ph-distance"`) to `value`.
    pub fn put_state<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, StateError> {
        let bytes = codec::encode(Path::new("<batch>"), name, value)?;
        self.ops.push(Op::PutState {
            name: name.to_string(),
            bytes,
        });
        Ok(self)
    }

    /// Removes component state `name` (no error if absent).
    pub fn delete_state(&mut self, name: &str) -> &mut Self {
        self.ops.push(Op::DeleteState {
            name: name.to_string(),
        });
        self
    }

    /// Appends `event` to the event log; its sequence number is in the [`Receipt`].
    pub fn append_event<T: Serialize + ?Sized>(
        &mut self,
        event: &T,
    ) -> Result<&mut Self, StateError> {
        let bytes = codec::encode(Path::new("<batch>"), "event", event)?;
        self.ops.push(Op::AppendEvent { bytes });
        self.events += 1;
        Ok(self)
    }

    /// Adds `by` to counter `name` (created at 0; saturates at `u64::MAX`).
    pub fn increment(&mut self, name: &str, by: u64) -> &mut Self {
        self.ops.push(Op::Increment {
            counter: name.to_string(),
            by,
        });
        self
    }

    /// Moves every operation of `other` to the end of this batch (e.g. to retry a batch the
    /// queue refused together with the next one, still as one atomic unit).
    pub fn append(&mut self, mut other: Batch) -> &mut Self {
        self.ops.append(&mut other.ops);
        self.events += other.events;
        self
    }

    /// Sets quarantine entry `id` to `value` (insert or replace). The quarantine is not part
    /// of snapshots: see [`crate::state`].
    pub fn put_quarantine<T: Serialize + ?Sized>(
        &mut self,
        id: u64,
        value: &T,
    ) -> Result<&mut Self, StateError> {
        let bytes = codec::encode(Path::new("<batch>"), "quarantine entry", value)?;
        self.ops.push(Op::PutQuarantine { id, bytes });
        Ok(self)
    }

    /// Removes quarantine entry `id` (no error if absent).
    pub fn delete_quarantine(&mut self, id: u64) -> &mut Self {
        self.ops.push(Op::DeleteQuarantine { id });
        self
    }

    /// Sets outbox record `id` to `bytes` (insert or replace), refusing more than
    /// [`MAX_VALUE_BYTES`](super::MAX_VALUE_BYTES). The sync client encodes its records
    /// itself so that it can read a record's header without copying the package.
    pub fn put_outbox(&mut self, id: u64, bytes: Vec<u8>) -> Result<&mut Self, StateError> {
        codec::check_len("outbox record", bytes.len())?;
        self.ops.push(Op::PutOutbox { id, bytes });
        Ok(self)
    }

    /// Removes outbox record `id` (no error if absent).
    pub fn delete_outbox(&mut self, id: u64) -> &mut Self {
        self.ops.push(Op::DeleteOutbox { id });
        self
    }

    /// Sets sync cursor `name` to `value` (table `sync`: not in snapshots, so restoring one
    /// never moves a cursor back).
    pub fn put_sync<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<&mut Self, StateError> {
        let bytes = codec::encode(Path::new("<batch>"), name, value)?;
        self.ops.push(Op::PutSync {
            name: name.to_string(),
            bytes,
        });
        Ok(self)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Roughly the memory the batch holds (value and name bytes plus a word per op): what
    /// the writer counts against its bound while commits fail.
    pub fn approx_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| {
                16 + match op {
                    Op::PutState { name, bytes } | Op::PutSync { name, bytes } => {
                        name.len() + bytes.len()
                    }
                    Op::DeleteState { name } => name.len(),
                    Op::Increment { counter, .. } => counter.len(),
                    Op::AppendEvent { bytes }
                    | Op::PutQuarantine { bytes, .. }
                    | Op::PutOutbox { bytes, .. } => bytes.len(),
                    Op::DeleteQuarantine { .. } | Op::DeleteOutbox { .. } => 0,
                }
            })
            .sum()
    }

    /// Number of events the batch appends.
    pub fn event_count(&self) -> u64 {
        self.events
    }
}

/// What the store assigned to a queued batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Sequence number of the batch's first event (events are numbered from 1, gap-free);
    /// when the batch has no event, the number the next event will get.
    pub first_event: u64,
    /// Number of events in the batch: they get `first_event..first_event + events`.
    pub events: u64,
}
