//! The writer thread: the only code that opens write transactions. It takes batches from the
//! queue, groups them per the [`DurabilityPolicy`], and commits each group with
//! `Durability::Immediate`. A batch is never split across commits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::batch::{Batch, Op};
use super::error::{DbError, StateError};
use super::policy::DurabilityPolicy;
use super::schema::{COUNTERS, EVENTS, KV, META, NEXT_EVENT_KEY, OUTBOX, QUARANTINE, SYNC};

/// Counter holding how many events retention has pruned.
pub const PRUNED_EVENTS_COUNTER: &str = "store.events_pruned";
/// Counter holding how many snapshots have been restored into this database.
pub const RESTORES_COUNTER: &str = "store.snapshots_restored";

/// A message to the writer.
pub(crate) enum Msg {
    /// A batch whose first event gets `first_event`.
    Batch { batch: Batch, first_event: u64 },
    /// Commit everything queued before this, then answer.
    Flush(SyncSender<Result<(), StateError>>),
    /// Commit everything queued, then replace all component states in one transaction.
    Restore {
        states: Vec<(String, Vec<u8>)>,
        reply: SyncSender<Result<(), StateError>>,
    },
}

/// What the writer has done so far (read with [`Store::stats`](super::Store::stats)).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub last_commit_us: AtomicU64,
    pub max_commit_us: AtomicU64,
    pub max_wait_us: AtomicU64,
}

pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub path: PathBuf,
    pub policy: DurabilityPolicy,
    pub rx: Receiver<Msg>,
    pub counters: Arc<Counters>,
    /// Why the writer stopped, for callers who find the queue closed.
    pub stopped: Arc<Mutex<Option<String>>>,
}

/// Batches waiting for their commit.
#[derive(Default)]
struct Pending {
    batches: Vec<(Batch, u64)>,
    ops: usize,
    oldest: Option<Instant>,
}

impl Writer {
    /// Runs until the queue closes (the store is dropped) or a commit fails.
    pub fn run(self) {
        let mut pending = Pending::default();
        let result = self.serve(&mut pending);
        let reason = match result {
            Ok(()) => "the store was closed".to_string(),
            Err(e) => {
                tracing::error!("{e}");
                e.to_string()
            }
        };
        if let Ok(mut s) = self.stopped.lock() {
            s.get_or_insert(reason);
        }
    }

    fn serve(&self, pending: &mut Pending) -> Result<(), StateError> {
        loop {
            let msg = match pending.oldest {
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                },
                Some(oldest) => {
                    let due = oldest + self.policy.commit_interval;
                    let left = due.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.commit(pending)?;
                        continue;
                    }
                    match self.rx.recv_timeout(left) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => {
                            self.commit(pending)?;
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return self.commit(pending),
                    }
                }
            };
            match msg {
                Msg::Batch { batch, first_event } => {
                    pending.ops += batch.len();
                    pending.oldest.get_or_insert_with(Instant::now);
                    pending.batches.push((batch, first_event));
                    if pending.ops >= self.policy.max_batch {
                        self.commit(pending)?;
                    }
                }
                Msg::Flush(reply) => {
                    let r = self.commit(pending);
                    self.answer(&reply, r)?;
                }
                Msg::Restore { states, reply } => {
                    let r = self.commit(pending).and_then(|()| self.restore(states));
                    self.answer(&reply, r)?;
                }
            }
        }
    }

    /// Answers a waiting caller; a failure stops the writer (redb refuses further writes
    /// after a failed commit anyway).
    fn answer(
        &self,
        reply: &SyncSender<Result<(), StateError>>,
        result: Result<(), StateError>,
    ) -> Result<(), StateError> {
        match result {
            Ok(()) => {
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(StateError::WriterStopped {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }));
                Err(e)
            }
        }
    }

    fn begin(&self) -> Result<WriteTransaction, StateError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| StateError::db(&self.path, "starting a commit", e))?;
        txn.set_durability(Durability::Immediate);
        Ok(txn)
    }

    /// Commits every pending batch in one transaction.
    fn commit(&self, pending: &mut Pending) -> Result<(), StateError> {
        let Some(oldest) = pending.oldest.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let batches = std::mem::take(&mut pending.batches);
        pending.ops = 0;
        let txn = self.begin()?;
        let ops = apply(&txn, &batches, self.policy.max_events)
            .map_err(|e| StateError::db_boxed(&self.path, "writing a batch", e))?;
        txn.commit()
            .map_err(|e| StateError::db(&self.path, "committing a batch", e))?;
        let c = &self.counters;
        let took = started.elapsed().as_micros() as u64;
        let waited = oldest.elapsed().as_micros() as u64;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.batches.fetch_add(batches.len() as u64, Ordering::Relaxed);
        c.ops.fetch_add(ops, Ordering::Relaxed);
        c.last_commit_us.store(took, Ordering::Relaxed);
        c.max_commit_us.fetch_max(took, Ordering::Relaxed);
        c.max_wait_us.fetch_max(waited, Ordering::Relaxed);
        Ok(())
    }

    fn restore(&self, states: Vec<(String, Vec<u8>)>) -> Result<(), StateError> {
        let txn = self.begin()?;
        let write = || -> Result<(), DbError> {
            let mut kv = txn.open_table(KV)?;
            kv.retain(|_, _| false)?;
            for (name, bytes) in &states {
                kv.insert(name.as_str(), bytes.as_slice())?;
            }
            let mut counters = txn.open_table(COUNTERS)?;
            bump(&mut counters, RESTORES_COUNTER, 1)?;
            Ok(())
        };
        write().map_err(|e| StateError::db_boxed(&self.path, "restoring a snapshot", e))?;
        txn.commit()
            .map_err(|e| StateError::db(&self.path, "committing a snapshot restore", e))
    }
}

fn bump(counters: &mut redb::Table<&str, u64>, name: &str, by: u64) -> Result<(), DbError> {
    let now = counters.get(name)?.map_or(0, |v| v.value());
    counters.insert(name, now.saturating_add(by))?;
    Ok(())
}

/// Writes `batches` into `txn`, prunes events beyond `max_events`; returns the op count.
fn apply(
    txn: &WriteTransaction,
    batches: &[(Batch, u64)],
    max_events: u64,
) -> Result<u64, DbError> {
    let mut kv = txn.open_table(KV)?;
    let mut events = txn.open_table(EVENTS)?;
    let mut counters = txn.open_table(COUNTERS)?;
    let mut quarantine = txn.open_table(QUARANTINE)?;
    let mut outbox = txn.open_table(OUTBOX)?;
    let mut sync = txn.open_table(SYNC)?;
    let mut ops = 0u64;
    let mut next_event = None;
    for (batch, first_event) in batches {
        let mut seq = *first_event;
        for op in &batch.ops {
            ops += 1;
            match op {
                Op::PutState { name, bytes } => {
                    kv.insert(name.as_str(), bytes.as_slice())?;
                }
                Op::DeleteState { name } => {
                    kv.remove(name.as_str())?;
                }
                Op::AppendEvent { bytes } => {
                    events.insert(seq, bytes.as_slice())?;
                    seq += 1;
                    next_event = Some(seq);
                }
                Op::Increment { counter, by } => bump(&mut counters, counter, *by)?,
                Op::PutQuarantine { id, bytes } => {
                    quarantine.insert(*id, bytes.as_slice())?;
                }
                Op::DeleteQuarantine { id } => {
                    quarantine.remove(*id)?;
                }
                Op::PutOutbox { id, bytes } => {
                    outbox.insert(*id, bytes.as_slice())?;
                }
                Op::DeleteOutbox { id } => {
                    outbox.remove(*id)?;
                }
                Op::PutSync { name, bytes } => {
                    sync.insert(name.as_str(), bytes.as_slice())?;
                }
            }
        }
    }
    if let Some(next) = next_event {
        let mut meta = txn.open_table(META)?;
        meta.insert(NEXT_EVENT_KEY, next.to_le_bytes().as_slice())?;
        let over = events.len()?.saturating_sub(max_events);
        for _ in 0..over {
            events.pop_first()?;
        }
        if over > 0 {
            bump(&mut counters, PRUNED_EVENTS_COUNTER, over)?;
        }
    }
    Ok(ops)
}
