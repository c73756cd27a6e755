//! The writer thread: the only code that opens write transactions. It takes batches from the
//! queue, groups them per the [`DurabilityPolicy`], and commits each group with
//! `Durability::Immediate`. A batch is never split across commits.
//!
//! A failed commit (a full disk, any I/O error) does not stop the writer: the batches stay
//! queued in memory, the database is closed and opened again (redb refuses every later write
//! on a handle that saw an I/O error), and the commit is retried with back-off
//! ([`RetryPolicy`]). While commits fail, the retained batches are bounded in bytes: beyond
//! the bound the oldest are dropped and counted. Flushes answer at once with
//! [`StateError::CommitsFailing`] instead of waiting for space. The first commit that works
//! again clears the condition; the space budget ([`crate::board::SpaceBudget`]), if attached,
//! is asked to shed files at each failure.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::batch::{Batch, Op};
use super::error::{DbError, StateError};
use super::policy::DurabilityPolicy;
use super::schema::{COUNTERS, EVENTS, KV, META, NEXT_EVENT_KEY, OUTBOX, QUARANTINE, SYNC};
use super::slot::DbSlot;

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

/// How the writer rides out failing commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Bytes of batches kept in memory while commits fail; the oldest beyond are dropped.
    pub max_retained_bytes: usize,
    /// Wait before the first retry; doubled after each failure.
    pub first_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            // A few minutes of a device's writes at its usual rate; small beside a Pi's RAM.
            max_retained_bytes: 16 << 20,
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
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
    /// Commits (and reopens) that failed.
    pub failed_commits: AtomicU64,
    /// Batches dropped because commits failed for longer than the memory bound allows.
    pub dropped_batches: AtomicU64,
    /// Operations in those batches.
    pub dropped_ops: AtomicU64,
    /// Batches waiting in memory for a commit that works.
    pub retained_batches: AtomicU64,
    /// The last commit failed and none has worked since.
    pub failing: AtomicBool,
    /// The last failure's message.
    pub last_error: Mutex<Option<String>>,
}

/// Something to call when a commit fails (the space budget's shedding pass).
pub(crate) type FailureHook = Arc<OnceLock<Arc<dyn Fn() + Send + Sync>>>;

pub(crate) struct Writer {
    pub slot: Arc<DbSlot>,
    pub path: PathBuf,
    pub policy: DurabilityPolicy,
    pub retry: RetryPolicy,
    pub rx: Receiver<Msg>,
    pub counters: Arc<Counters>,
    /// Why the writer stopped, for callers who find the queue closed.
    pub stopped: Arc<Mutex<Option<String>>>,
    pub on_failure: FailureHook,
}

/// Batches waiting for their commit.
#[derive(Default)]
struct Pending {
    batches: VecDeque<(Batch, u64)>,
    ops: usize,
    bytes: usize,
    oldest: Option<Instant>,
}

/// The writer's view of failures: when to retry, and whether the database must be reopened.
#[derive(Default)]
struct Retry {
    at: Option<Instant>,
    backoff: Duration,
    reopen: bool,
}

impl Writer {
    /// Runs until the queue closes (the store is dropped).
    pub fn run(self) {
        let mut pending = Pending::default();
        let mut retry = Retry::default();
        self.serve(&mut pending, &mut retry);
        if !pending.batches.is_empty() {
            // The last chance: the store is closing.
            if self.attempt(&mut pending, &mut retry).is_err() {
                let n = pending.batches.len();
                self.drop_oldest(&mut pending, n);
                tracing::error!(
                    "state database {}: closing with {n} batches that could not be committed",
                    self.path.display()
                );
            }
        }
        if let Ok(mut s) = self.stopped.lock() {
            s.get_or_insert("the store was closed".to_string());
        }
    }

    fn serve(&self, pending: &mut Pending, retry: &mut Retry) {
        loop {
            let due = match retry.at {
                Some(at) => Some(at),
                None => pending.oldest.map(|o| o + self.policy.commit_interval),
            };
            let msg = match due {
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
                Some(due) => {
                    let left = due.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let _ = self.attempt(pending, retry);
                        continue;
                    }
                    match self.rx.recv_timeout(left) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = self.attempt(pending, retry);
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            };
            match msg {
                Msg::Batch { batch, first_event } => {
                    pending.ops += batch.len();
                    pending.bytes += batch.approx_bytes();
                    pending.oldest.get_or_insert_with(Instant::now);
                    pending.batches.push_back((batch, first_event));
                    let over = pending.bytes > self.retry.max_retained_bytes;
                    if retry.at.is_none() && (pending.ops >= self.policy.max_batch || over) {
                        let _ = self.attempt(pending, retry);
                    }
                    self.bound(pending);
                }
                Msg::Flush(reply) => {
                    let r = self.attempt_if_due(pending, retry);
                    let _ = reply.send(r);
                }
                Msg::Restore { states, reply } => {
                    let r = self
                        .attempt_if_due(pending, retry)
                        .and_then(|()| self.restore(states).map_err(|e| self.failed(retry, e)));
                    let _ = reply.send(r);
                }
            }
        }
    }

    /// Commits now unless a retry is scheduled later; then answers that commits fail.
    fn attempt_if_due(&self, pending: &mut Pending, retry: &mut Retry) -> Result<(), StateError> {
        if retry.at.is_some_and(|at| at > Instant::now()) {
            return Err(self.failing_error());
        }
        self.attempt(pending, retry)
    }

    fn failing_error(&self) -> StateError {
        let reason = self
            .counters
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "a commit failed".into());
        StateError::CommitsFailing {
            path: self.path.clone(),
            reason,
        }
    }

    /// Reopens the database if a failure asked for it, then commits what is pending.
    fn attempt(&self, pending: &mut Pending, retry: &mut Retry) -> Result<(), StateError> {
        let result = if retry.reopen {
            self.slot.reopen(&self.path).and_then(|()| {
                retry.reopen = false;
                self.commit(pending)
            })
        } else {
            self.commit(pending)
        };
        match result {
            Ok(()) => {
                if self.counters.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("state database {}: commits work again", self.path.display());
                }
                *retry = Retry::default();
                Ok(())
            }
            Err(e) => Err(self.failed(retry, e)),
        }
    }

    /// Records a failure and schedules the retry; returns the error callers see.
    fn failed(&self, retry: &mut Retry, e: StateError) -> StateError {
        let c = &self.counters;
        c.failed_commits.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = c.last_error.lock() {
            *last = Some(e.to_string());
        }
        if !c.failing.swap(true, Ordering::Relaxed) {
            tracing::error!("{e}; keeping the queued batches in memory and retrying");
        } else {
            tracing::debug!("{e}");
        }
        retry.reopen = true;
        retry.backoff = if retry.backoff.is_zero() {
            self.retry.first_backoff
        } else {
            (retry.backoff * 2).min(self.retry.max_backoff)
        };
        retry.at = Some(Instant::now() + retry.backoff);
        if let Some(hook) = self.on_failure.get() {
            hook();
        }
        self.failing_error()
    }

    /// Drops the oldest batches while more than the memory bound is retained (the newest
    /// stays: it is what the next commit most needs).
    fn bound(&self, pending: &mut Pending) {
        let mut n = 0;
        let mut bytes = pending.bytes;
        for (b, _) in &pending.batches {
            if bytes <= self.retry.max_retained_bytes || n + 1 >= pending.batches.len() {
                break;
            }
            bytes -= b.approx_bytes();
            n += 1;
        }
        if n > 0 {
            self.drop_oldest(pending, n);
        }
        self.counters
            .retained_batches
            .store(pending.batches.len() as u64, Ordering::Relaxed);
    }

    fn drop_oldest(&self, pending: &mut Pending, n: usize) {
        let mut ops = 0;
        for (b, _) in pending.batches.drain(..n) {
            ops += b.len();
            pending.bytes -= b.approx_bytes();
        }
        pending.ops -= ops;
        if pending.batches.is_empty() {
            pending.oldest = None;
        }
        let c = &self.counters;
        c.dropped_batches.fetch_add(n as u64, Ordering::Relaxed);
        c.dropped_ops.fetch_add(ops as u64, Ordering::Relaxed);
        c.retained_batches
            .store(pending.batches.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            "state database {}: dropped the {n} oldest uncommitted batches ({ops} operations) \
             to stay within {} bytes while commits fail",
            self.path.display(),
            self.retry.max_retained_bytes
        );
    }

    fn begin(&self, db: &Database) -> Result<WriteTransaction, StateError> {
        let mut txn = db
            .begin_write()
            .map_err(|e| StateError::db(&self.path, "starting a commit", e))?;
        txn.set_durability(Durability::Immediate);
        Ok(txn)
    }

    /// Commits every pending batch in one transaction; on failure they stay pending.
    fn commit(&self, pending: &mut Pending) -> Result<(), StateError> {
        let Some(oldest) = pending.oldest else {
            return Ok(());
        };
        let started = Instant::now();
        let db = self.slot.get(&self.path)?;
        let txn = self.begin(&db)?;
        let ops = apply(&txn, &pending.batches, self.policy.max_events)
            .map_err(|e| StateError::db_boxed(&self.path, "writing a batch", e))?;
        txn.commit()
            .map_err(|e| StateError::db(&self.path, "committing a batch", e))?;
        let committed = pending.batches.len();
        *pending = Pending::default();
        let c = &self.counters;
        let took = started.elapsed().as_micros() as u64;
        let waited = oldest.elapsed().as_micros() as u64;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.batches.fetch_add(committed as u64, Ordering::Relaxed);
        c.ops.fetch_add(ops, Ordering::Relaxed);
        c.last_commit_us.store(took, Ordering::Relaxed);
        c.max_commit_us.fetch_max(took, Ordering::Relaxed);
        c.max_wait_us.fetch_max(waited, Ordering::Relaxed);
        c.retained_batches.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn restore(&self, states: Vec<(String, Vec<u8>)>) -> Result<(), StateError> {
        let db = self.slot.get(&self.path)?;
        let txn = self.begin(&db)?;
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
    batches: &VecDeque<(Batch, u64)>,
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

#[cfg(test)]
mod tests {
    //! A full disk, simulated: redb on a memory backend whose writes fail with `ENOSPC` while
    //! a switch is on.

    use std::io;
    use std::sync::atomic::AtomicBool;

    use redb::StorageBackend;

    use super::super::{Store, slot::Opener};
    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Disk {
        bytes: Arc<Mutex<Vec<u8>>>,
        full: Arc<AtomicBool>,
    }

    impl Disk {
        fn check(&self) -> io::Result<()> {
            if self.full.load(Ordering::Relaxed) {
                Err(io::Error::from_raw_os_error(28)) // ENOSPC
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> io::Result<u64> {
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
        fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            let b = self.bytes.lock().unwrap();
            let at = offset as usize;
            b.get(at..at + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            if len > self.len()? {
                self.check()?;
            }
            self.bytes.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self, _: bool) -> io::Result<()> {
            self.check()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.check()?;
            let mut b = self.bytes.lock().unwrap();
            let end = offset as usize + data.len();
            if b.len() < end {
                b.resize(end, 0);
            }
            b[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
    }

    fn open(disk: &Disk, retry: RetryPolicy) -> Store {
        let d = disk.clone();
        let opener: Opener = Box::new(move || Database::builder().create_with_backend(d.clone()));
        let db = opener().unwrap();
        let policy = DurabilityPolicy {
            commit_interval: Duration::from_millis(5),
            ..DurabilityPolicy::default()
        };
        Store::start_with(db, PathBuf::from("<memory>"), policy, Some(opener), retry).unwrap()
    }

    fn quick(max_retained_bytes: usize) -> RetryPolicy {
        RetryPolicy {
            max_retained_bytes,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
        }
    }

    /// Flushes until a commit works (the writer retries on its own; this only waits).
    fn flush_until_ok(store: &Store) {
        for _ in 0..2000 {
            if store.flush().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("commits never worked again: {:?}", store.stats());
    }

    fn events(store: &Store) -> Vec<u32> {
        store
            .events_after::<u32>(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// Fails before this change: the first failed commit stopped the writer for good
    /// (`WriterStopped`), so nothing queued afterwards was ever written, even with space back.
    #[test]
    fn a_full_disk_keeps_the_batches_and_they_commit_when_space_returns() {
        let disk = Disk::default();
        let store = open(&disk, quick(16 << 20));
        store.append_event(&1u32).unwrap();
        store.flush().unwrap();

        disk.full.store(true, Ordering::Relaxed);
        for e in 2..=20u32 {
            store.append_event(&e).unwrap();
        }
        let err = store.flush().unwrap_err();
        assert!(matches!(err, StateError::CommitsFailing { .. }), "{err}");
        let s = store.stats();
        assert!(s.commits_failing && s.failed_commits >= 1, "{s:?}");
        assert!(store.write_error().is_some_and(|e| e.contains("No space")));
        // Still accepting work while full.
        let mut b = Batch::new();
        b.append_event(&21u32).unwrap();
        assert!(store.try_submit(b).is_ok());

        disk.full.store(false, Ordering::Relaxed);
        flush_until_ok(&store);
        assert_eq!(events(&store), (1..=21).collect::<Vec<_>>());
        let s = store.stats();
        assert!(!s.commits_failing && s.dropped_batches == 0, "{s:?}");
        assert!(store.write_error().is_none());
    }

    /// Fails before this change: there was no bound, the writer had stopped instead.
    #[test]
    fn while_commits_fail_memory_is_bounded_by_dropping_the_oldest_batches() {
        let disk = Disk::default();
        let store = open(&disk, quick(4096));
        store.flush().unwrap();
        disk.full.store(true, Ordering::Relaxed);
        let n = 200u32;
        for e in 1..=n {
            let mut b = Batch::new();
            b.append_event(&e)
                .unwrap()
                .put_state("pad", &vec![0u8; 100])
                .unwrap();
            store.submit(b).unwrap();
        }
        // Let the writer take every batch off the queue before space returns.
        let _ = store.flush();
        let s = store.stats();
        assert!(s.dropped_batches > 0, "{s:?}");
        assert!(s.retained_batches < 50, "bounded by bytes: {s:?}");
        disk.full.store(false, Ordering::Relaxed);
        flush_until_ok(&store);
        let kept = events(&store);
        let s = store.stats();
        assert_eq!(kept.len() as u64 + s.dropped_batches, u64::from(n), "{s:?}");
        assert_eq!(kept.last(), Some(&n), "the newest are kept");
        assert!(
            kept.windows(2).all(|w| w[1] == w[0] + 1),
            "a suffix is kept"
        );
        assert_eq!(s.dropped_ops, 2 * s.dropped_batches);
    }
}
