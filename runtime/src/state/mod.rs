//! The device state store: one redb database, one writer, an explicit durability policy.
//!
//! Everything the runtime learns in the field (KNN memory, detector states, events,
//! counters) must survive `kill -9` and power cuts without wearing out the SD card. The
//! original proof of concept rewrote JSON files on every event, with no versions, checksums
//! or atomic writes, and let them grow without bound; this module is the replacement.
//!
//! # File layout
//!
//! * `<data>/state.redb` (the path given to [`Store::open`]): one redb database with the
//!   tables `meta` (schema version, next event number), `kv` (component states by name,
//!   e.g. `knn`, `detector/<name>`; postcard-encoded), `events` (append-only log,
//!   `u64` sequence from 1 → postcard-encoded event, at most
//!   [`DurabilityPolicy::max_events`] kept), `counters` (name → `u64`) and, since schema 2,
//!   `quarantine` (`u64` entry id → postcard-encoded entry: the suspicious samples of
//!   [`crate::quarantine`], bounded by that module; written with
//!   [`Batch::put_quarantine`]/[`Batch::delete_quarantine`], read in pages with
//!   [`Store::quarantine_entries`]) and, since schema 3, `outbox` (`u64` record id → a sync
//!   package waiting for upload, encoded by [`crate::sync`]; written with
//!   [`Batch::put_outbox`]/[`Batch::delete_outbox`] in the same batch as the sync cursors in
//!   `sync`, read with [`Store::outbox_visit`]) and `sync` (name → the sync client's
//!   postcard-encoded cursors, [`Batch::put_sync`], [`Store::get_sync`]); neither is in
//!   snapshots, so rolling the KNN back never resends or forgets uploads.
//! * `<data>/snapshots/<id>.snap` ([`Snapshots`]): versioned, SHA-256-checksummed copies of
//!   the component states and counters, written atomically, newest N kept. **The quarantine
//!   is not in snapshots**, and restoring one leaves it as it is: it records what the camera
//!   saw and what a human said about it, not learned state, so rolling an adaptation back
//!   must neither bring back evicted samples nor drop samples (or labels) that arrived since.
//!   Whoever rolls back sets the affected entries' status explicitly (adapted → pending).
//!
//! # Durability policy and loss window
//!
//! Callers never write: they queue a [`Batch`] with [`Store::try_submit`] (never blocks;
//! reports back-pressure when the bounded queue is full, for the inference thread) or
//! [`Store::submit`] (waits for room). One writer thread owns all write transactions and
//! commits the queued batches when the oldest has waited
//! [`commit_interval`](DurabilityPolicy::commit_interval) (default 2 s), or when
//! [`max_batch`](DurabilityPolicy::max_batch) operations are waiting, or on
//! [`Store::flush`], with `Durability::Immediate` (fsync before the commit returns).
//!
//! * **Loss window**: on a power cut, the batches queued in the last `commit_interval`
//!   (plus the time one commit takes) may be lost. Everything acknowledged by a completed
//!   [`Store::flush`] is on disk. Measured on the development machine (x86_64, ext4) at the
//!   default policy: longest wait from queueing to durable 2.03 s, commits of 25 ms at most
//!   (`loss_window_at_the_default_policy` in `tests/state_store.rs`, run with `--ignored`);
//!   [`Store::stats`] reports the same figures on a device.
//! * **Atomic batches**: a batch is never split across commits: after any crash each batch is
//!   wholly present or wholly absent, and batches are present in submission order (a gap-free
//!   prefix). Counters incremented in the same batch as the events they count stay equal.
//! * **Full disk**: a failed commit (`ENOSPC` or any I/O error) does not stop the writer. It
//!   keeps the batches in memory (at most 16 MiB; beyond, the oldest are dropped and counted
//!   in [`StoreStats::dropped_batches`]), reopens the database (redb refuses every write on
//!   a handle that saw an I/O error) and retries with back-off from 250 ms to 10 s; flushes
//!   answer [`StateError::CommitsFailing`] meanwhile. The attached space budget
//!   ([`Store::attach_space`]) is asked to shed files at each failure. Dropped batches leave
//!   gaps in the event numbers.
//! * **Reads** see committed data only: call [`Store::flush`] first to read your own writes.
//! * `kill -9` at any instant leaves a database that opens (redb picks the newest commit slot
//!   with a valid checksum and repairs its allocator); `tests/state_crash.rs` kills a writer
//!   hundreds of times and checks exactly this. A power cut also loses what was written but
//!   not fsynced; `power_cut.rs` simulates that with a storage backend that keeps only what
//!   was synced, and checks the same invariants plus "flushed means durable".
//!
//! # Inspecting
//!
//! `Store::open` on a copy of the file, then [`Store::state_names`], [`Store::counters`] and
//! [`Store::events_after`]; [`Snapshots::list`] for snapshots. Only one process may open the
//! database at a time (redb locks the file): copy it off a running device before inspecting.

mod batch;
mod codec;
mod config;
mod error;
mod policy;
#[cfg(test)]
mod power_cut;
mod read;
mod schema;
mod slot;
mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::Database;

pub use batch::{Batch, Receipt};
pub use codec::MAX_VALUE_BYTES;
pub use config::StateConfig;
pub use error::{StateError, TrySubmitError};
pub use policy::DurabilityPolicy;
pub use read::{MAX_EVENTS_PER_READ, MAX_OUTBOX_PER_READ, MAX_QUARANTINE_PER_READ};
pub use schema::{OLDEST_SNAPSHOT_SCHEMA, SCHEMA_VERSION};
pub use snapshot::{MAX_SNAPSHOT_BYTES, SNAPSHOT_FORMAT, SnapshotInfo, Snapshots};
pub use writer::{PRUNED_EVENTS_COUNTER, RESTORES_COUNTER};

use slot::{DbSlot, Opener};
use writer::{FailureHook, Msg, RetryPolicy, Writer};

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Batches committed.
    pub batches: u64,
    /// Operations committed.
    pub ops: u64,
    /// Batches refused by [`Store::try_submit`] because the queue was full.
    pub rejected: u64,
    /// Duration of the last commit, µs.
    pub last_commit_us: u64,
    /// Longest commit, µs.
    pub max_commit_us: u64,
    /// Longest time a batch waited from queueing to the end of its commit, µs: the measured
    /// loss window.
    pub max_wait_us: u64,
    /// Commits that failed (a full disk, an I/O error); the writer keeps the batches and
    /// retries.
    pub failed_commits: u64,
    /// Batches dropped because commits failed for longer than the writer's memory bound.
    pub dropped_batches: u64,
    /// Operations in the dropped batches.
    pub dropped_ops: u64,
    /// Batches waiting in memory for their commit.
    pub retained_batches: u64,
    /// The last commit failed and none has worked since.
    pub commits_failing: bool,
}

/// The queue's sending side and the next event number, kept together so that event numbers
/// follow queue order.
struct Queue {
    tx: Option<SyncSender<Msg>>,
    next_event: u64,
}

/// The device state store. Share it between threads (`&Store` or `Arc<Store>`).
pub struct Store {
    path: PathBuf,
    /// This database's epoch (`meta/epoch`, see `schema::ensure_epoch`).
    epoch: String,
    slot: Arc<DbSlot>,
    policy: DurabilityPolicy,
    queue: Mutex<Queue>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<writer::Counters>,
    rejected: std::sync::atomic::AtomicU64,
    stopped: Arc<Mutex<Option<String>>>,
    on_failure: FailureHook,
    space: OnceLock<Arc<crate::board::SpaceBudget>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, migrates it to [`SCHEMA_VERSION`] and
    /// starts the writer.
    ///
    /// After a crash, redb repairs the file on open (this reads the whole file once).
    /// A database from a newer runtime is refused ([`StateError::SchemaTooNew`]) untouched.
    pub fn open(path: impl AsRef<Path>, policy: DurabilityPolicy) -> Result<Store, StateError> {
        policy.validate()?;
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StateError::io("creating the state directory", parent, e))?;
        }
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::Locked { path: path.clone() },
            e => StateError::db(&path, "opening", e),
        })?;
        let file = path.clone();
        let opener: Opener = Box::new(move || Database::create(&file));
        Self::start_with(db, path, policy, Some(opener), RetryPolicy::default())
    }

    /// Migrates an opened database and starts the writer (`path` names it in errors). The
    /// database is never reopened: a failed commit is retried on the same handle.
    #[cfg(test)]
    pub(crate) fn start(
        db: Database,
        path: PathBuf,
        policy: DurabilityPolicy,
    ) -> Result<Store, StateError> {
        Self::start_with(db, path, policy, None, RetryPolicy::default())
    }

    /// Migrates an opened database and starts the writer, which reopens it through `opener`
    /// after a failed commit and retries per `retry`.
    pub(crate) fn start_with(
        db: Database,
        path: PathBuf,
        policy: DurabilityPolicy,
        opener: Option<Opener>,
        retry: RetryPolicy,
    ) -> Result<Store, StateError> {
        policy.validate()?;
        schema::migrate(&db, &path, SCHEMA_VERSION, schema::MIGRATIONS)?;
        let next_event = schema::next_event_seq(&db, &path)?;
        let epoch = schema::ensure_epoch(&db, &path)?;
        let slot = Arc::new(DbSlot::new(db, opener));
        let (tx, rx) = sync_channel(policy.queue_capacity);
        let counters = Arc::new(writer::Counters::default());
        let stopped = Arc::new(Mutex::new(None));
        let on_failure: FailureHook = Arc::new(OnceLock::new());
        let w = Writer {
            slot: Arc::clone(&slot),
            path: path.clone(),
            policy,
            retry,
            rx,
            counters: Arc::clone(&counters),
            stopped: Arc::clone(&stopped),
            on_failure: Arc::clone(&on_failure),
        };
        let writer = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || w.run())
            .map_err(|e| StateError::io("starting the state writer for", &path, e))?;
        Ok(Store {
            path,
            slot,
            policy,
            queue: Mutex::new(Queue {
                tx: Some(tx),
                next_event,
            }),
            epoch,
            writer: Some(writer),
            counters,
            rejected: Default::default(),
            stopped,
            on_failure,
            space: OnceLock::new(),
        })
    }

    /// Attaches the data partition's space budget: the writer asks it to shed expendable
    /// files whenever a commit fails, and other writers ([`Store::space`]) consult it.
    /// Only the first call counts.
    pub fn attach_space(&self, space: Arc<crate::board::SpaceBudget>) {
        if self.space.set(Arc::clone(&space)).is_ok() {
            let _ = self.on_failure.set(Arc::new(move || space.nudge()));
        }
    }

    /// The space budget attached with [`Store::attach_space`], if any.
    pub fn space(&self) -> Option<&Arc<crate::board::SpaceBudget>> {
        self.space.get()
    }

    /// The database for one transaction (an error while the writer reopens it).
    pub(crate) fn db(&self) -> Result<Arc<Database>, StateError> {
        self.slot.get(&self.path)
    }

    /// The last failed commit's message while commits fail.
    pub fn write_error(&self) -> Option<String> {
        if !self.counters.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.counters.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This database's epoch: random, made with the database and kept for its life; drift
    /// events carry it so that sphere-lite tells a recreated database's events (numbered from
    /// 1 again) from the old ones.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The policy the store was opened with.
    pub fn policy(&self) -> DurabilityPolicy {
        self.policy
    }

    fn stopped_error(&self) -> StateError {
        let reason = self
            .stopped
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| "the writer thread ended".into());
        StateError::WriterStopped {
            path: self.path.clone(),
            reason,
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The lock guards no invariant a panic could break half-way (a send either happened
        // or not), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `batch` without ever waiting: for the inference thread. When the queue is full
    /// the batch comes back in [`TrySubmitError::Full`].
    pub fn try_submit(&self, batch: Batch) -> Result<Receipt, TrySubmitError> {
        let r = self.enqueue(batch);
        if matches!(r, Err(TrySubmitError::Full { .. })) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn enqueue(&self, batch: Batch) -> Result<Receipt, TrySubmitError> {
        let mut q = self.lock_queue();
        let first_event = q.next_event;
        let events = batch.event_count();
        let Some(tx) = q.tx.as_ref() else {
            return Err(self.stopped_error().into());
        };
        match tx.try_send(Msg::Batch { batch, first_event }) {
            Ok(()) => {
                q.next_event = first_event + events;
                Ok(Receipt {
                    first_event,
                    events,
                })
            }
            Err(TrySendError::Full(Msg::Batch { batch, .. })) => Err(TrySubmitError::Full {
                batch,
                capacity: self.policy.queue_capacity,
            }),
            Err(_) => Err(self.stopped_error().into()),
        }
    }

    /// Queues `batch`, waiting for room in the queue if needed (not for the inference
    /// thread). Returns when queued, not when durable: see [`Store::flush`].
    pub fn submit(&self, batch: Batch) -> Result<Receipt, StateError> {
        let mut batch = batch;
        let mut pause = Duration::from_micros(200);
        loop {
            match self.enqueue(batch) {
                Ok(r) => return Ok(r),
                Err(TrySubmitError::Stopped(e)) => return Err(e),
                Err(TrySubmitError::Full { batch: b, .. }) => {
                    batch = b;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Sends a message that needs an answer, waiting for room in the queue.
    pub(crate) fn request(
        &self,
        make: impl FnOnce(SyncSender<Result<(), StateError>>) -> Msg,
    ) -> Result<(), StateError> {
        let (reply_tx, reply_rx) = sync_channel(1);
        let tx = self
            .lock_queue()
            .tx
            .clone()
            .ok_or_else(|| self.stopped_error())?;
        // A blocking send outside the queue lock: try_submit callers are never held up.
        // Ordering with batches queued earlier by this thread is kept by the channel.
        tx.send(make(reply_tx)).map_err(|_| self.stopped_error())?;
        reply_rx.recv().map_err(|_| self.stopped_error())?
    }

    /// Commits everything queued so far and returns once it is durable on disk. Use at
    /// shutdown, before snapshots, and wherever a caller must know its data is safe.
    pub fn flush(&self) -> Result<(), StateError> {
        self.request(Msg::Flush)
    }

    /// Sets component state `name` to `value` (queued; waits for room).
    pub fn put_state<T: serde::Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StateError> {
        let mut b = Batch::new();
        b.put_state(name, value)?;
        self.submit(b).map(|_| ())
    }

    /// Appends `event` to the event log (queued; waits for room); returns its sequence number.
    pub fn append_event<T: serde::Serialize + ?Sized>(&self, event: &T) -> Result<u64, StateError> {
        let mut b = Batch::new();
        b.append_event(event)?;
        self.submit(b).map(|r| r.first_event)
    }

    /// Adds `by` to counter `name` (queued; waits for room).
    pub fn increment(&self, name: &str, by: u64) -> Result<(), StateError> {
        let mut b = Batch::new();
        b.increment(name, by);
        self.submit(b).map(|_| ())
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            last_commit_us: c.last_commit_us.load(Ordering::Relaxed),
            max_commit_us: c.max_commit_us.load(Ordering::Relaxed),
            max_wait_us: c.max_wait_us.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            dropped_batches: c.dropped_batches.load(Ordering::Relaxed),
            dropped_ops: c.dropped_ops.load(Ordering::Relaxed),
            retained_batches: c.retained_batches.load(Ordering::Relaxed),
            commits_failing: c.failing.load(Ordering::Relaxed),
        }
    }

    /// Commits what is queued, stops the writer and closes the database, reporting any
    /// error (dropping the store does the same but can only log).
    pub fn close(mut self) -> Result<(), StateError> {
        let flushed = self.flush();
        self.shutdown();
        flushed
    }

    fn shutdown(&mut self) {
        self.lock_queue().tx = None;
        if let Some(w) = self.writer.take() {
            if w.join().is_err() {
                tracing::error!(
                    "state database {}: the writer panicked",
                    self.path.display()
                );
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue makes the writer commit what is pending and end.
        self.shutdown();
    }
}
