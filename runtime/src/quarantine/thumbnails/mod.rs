//! Thumbnails of quarantined frames: small JPEGs a human looks at to label a sample later.
//!
//! JPEG encoding and file writes take milliseconds and may stall on a busy SD card, so they
//! happen on a background thread fed through a bounded queue of [`QUEUE_CAPACITY`] jobs.
//! The caller only shrinks the frame (cheap, see [`scale`]) and tries to queue it: when the
//! queue is full the job is dropped and counted ([`ThumbnailStats::dropped`]); the
//! inference thread never waits. Deleting a thumbnail is a job too (dropped and counted in
//! [`ThumbnailStats::deletes_dropped`] when the queue is full; the next start removes the
//! leftover, see `files`).
//!
//! The directory is kept under `max-thumbnail-bytes` by removing the oldest thumbnails
//! (lowest ids) after each write, so an entry may outlive its thumbnail. With the data
//! partition's [`SpaceBudget`] (the service's case) that budget is also capped to a quarter
//! of the partition, a write that would cross the partition's floor is skipped (counted in
//! [`ThumbnailStats::refused_for_space`]), and the thumbnails are one tier the budget sheds,
//! oldest first, when the partition falls below its floor.

mod files;
pub mod scale;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::config::QuarantineConfig;
use super::entry::thumbnail_name;
use super::error::QuarantineError;
use crate::board::SpaceBudget;
use crate::board::space::Tier;
use crate::frame::Frame;
use files::Inventory;

/// Jobs the writer queue holds. Small: a waiting job holds a thumbnail-sized buffer (at most
/// 256²×3 bytes), and thumbnails of a burst beyond this are the least needed.
pub const QUEUE_CAPACITY: usize = 8;

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ThumbnailStats {
    /// Thumbnails written.
    pub written: u64,
    /// Write jobs dropped because the queue was full.
    pub dropped: u64,
    /// Delete jobs dropped because the queue was full (removed at the next start).
    pub deletes_dropped: u64,
    /// Frames that were not `width × height` RGB8 (no thumbnail).
    pub bad_frames: u64,
    /// Writes that failed (encoding or file system; logged).
    pub failed: u64,
    /// Thumbnails removed to stay under the byte budget.
    pub removed_for_budget: u64,
    /// Thumbnails removed because their entry went.
    pub deleted: u64,
    /// Thumbnails the space budget shed because the data partition was below its floor.
    pub shed_for_space: u64,
    /// Thumbnails not written because the data partition was at its floor.
    pub refused_for_space: u64,
    /// Thumbnails of vanished entries and temporaries removed at start.
    pub cleaned_at_start: u64,
    /// Bytes of thumbnails on disk (after the last job).
    pub bytes_on_disk: u64,
    /// Thumbnails on disk (after the last job).
    pub files: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    deletes_dropped: AtomicU64,
    bad_frames: AtomicU64,
    failed: AtomicU64,
    removed_for_budget: AtomicU64,
    deleted: AtomicU64,
    shed_for_space: AtomicU64,
    refused_for_space: AtomicU64,
    cleaned_at_start: AtomicU64,
    bytes_on_disk: AtomicU64,
    files: AtomicU64,
    /// Jobs sent and not yet taken: lets `submit` skip shrinking a frame whose job could not
    /// be queued anyway.
    queued: AtomicUsize,
}

enum Job {
    Write {
        id: u64,
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    Delete {
        id: u64,
    },
    Flush(SyncSender<()>),
    /// Test only: the writer reports `started`, then waits for `release`, so a test can
    /// fill the queue deterministically.
    #[cfg(test)]
    Hold {
        started: SyncSender<()>,
        release: Receiver<()>,
    },
}

/// The background thumbnail writer. Dropping it waits for the queued jobs.
#[derive(Debug)]
pub struct ThumbnailWriter {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    dir: PathBuf,
    size: u32,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write { id, .. } => write!(f, "Write({id})"),
            Job::Delete { id } => write!(f, "Delete({id})"),
            Job::Flush(_) => write!(f, "Flush"),
            #[cfg(test)]
            Job::Hold { .. } => write!(f, "Hold"),
        }
    }
}

impl ThumbnailWriter {
    /// Creates the directory (an error here is a setting to fix, so it is reported now),
    /// then starts the writer thread, whose first act is to list the directory and remove
    /// thumbnails whose id `keep` does not hold, and leftover temporaries.
    pub fn start(config: &QuarantineConfig, keep: Vec<u64>) -> Result<Self, QuarantineError> {
        Self::start_with_space(config, keep, None)
    }

    /// [`start`](Self::start), under the data partition's `space` budget when given: the byte
    /// budget is capped by it, writes respect its floor, and it may shed the oldest
    /// thumbnails.
    pub fn start_with_space(
        config: &QuarantineConfig,
        keep: Vec<u64>,
        space: Option<Arc<SpaceBudget>>,
    ) -> Result<Self, QuarantineError> {
        let dir = config.thumbnail_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| QuarantineError::Io {
            what: "creating the thumbnails directory",
            path: dir.clone(),
            source,
        })?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let budget = match &space {
            Some(space) => space.cap(config.max_thumbnail_bytes),
            None => config.max_thumbnail_bytes,
        };
        if budget < config.max_thumbnail_bytes {
            tracing::info!(
                "quarantine thumbnails {}: keeping at most {budget} bytes, a quarter of the data \
                 partition (quarantine.max-thumbnail-bytes is {})",
                dir.display(),
                config.max_thumbnail_bytes
            );
        }
        let worker = Worker {
            dir: dir.clone(),
            budget,
            space,
            quality: config.thumbnail_quality.clamp(1, 100),
            counters: Arc::clone(&counters),
        };
        let thread = std::thread::Builder::new()
            .name("quarantine-thumbs".into())
            .spawn(move || worker.run(rx, keep))
            .map_err(|source| QuarantineError::Io {
                what: "starting the thumbnail writer for",
                path: dir.clone(),
                source,
            })?;
        Ok(ThumbnailWriter {
            tx: Some(tx),
            thread: Some(thread),
            counters,
            dir,
            size: config.thumbnail_size,
        })
    }

    /// The directory thumbnails are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where thumbnail `id` is (or would be) written.
    pub fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(thumbnail_name(id))
    }

    /// Shrinks `frame` and queues its thumbnail as `id`, without ever waiting. False when
    /// nothing was queued: the queue was full (counted in `dropped`) or the frame is not a
    /// valid RGB8 image (counted in `bad_frames`).
    pub fn submit(&self, id: u64, frame: &Frame) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.counters.queued.load(Ordering::Relaxed) >= QUEUE_CAPACITY {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut rgb = Vec::new();
        let Some((width, height)) =
            scale::downscale(&frame.data, frame.width, frame.height, self.size, &mut rgb)
        else {
            self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        self.try_send(
            tx,
            Job::Write {
                id,
                width,
                height,
                rgb,
            },
            &self.counters.dropped,
        )
    }

    /// Queues the removal of thumbnail `id`, without ever waiting. False when the queue was
    /// full (counted in `deletes_dropped`; the file is removed at the next start).
    pub fn delete(&self, id: u64) -> bool {
        let Some(tx) = &self.tx else { return false };
        self.try_send(tx, Job::Delete { id }, &self.counters.deletes_dropped)
    }

    fn try_send(&self, tx: &SyncSender<Job>, job: Job, dropped: &AtomicU64) -> bool {
        // Counted before sending: the writer may take the job before try_send returns.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Waits until every job queued before this call is done (for tests, and before reading
    /// the directory). Not for the inference thread: it blocks while the queue is full.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (reply, done) = sync_channel(1);
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if tx.send(Job::Flush(reply)).is_ok() {
            let _ = done.recv();
        } else {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> ThumbnailStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ThumbnailStats {
            written: get(&c.written),
            dropped: get(&c.dropped),
            deletes_dropped: get(&c.deletes_dropped),
            bad_frames: get(&c.bad_frames),
            failed: get(&c.failed),
            removed_for_budget: get(&c.removed_for_budget),
            deleted: get(&c.deleted),
            shed_for_space: get(&c.shed_for_space),
            refused_for_space: get(&c.refused_for_space),
            cleaned_at_start: get(&c.cleaned_at_start),
            bytes_on_disk: get(&c.bytes_on_disk),
            files: get(&c.files),
        }
    }

    /// Finishes the queued jobs and stops the thread.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!(
                    "quarantine thumbnails {}: the writer panicked",
                    self.dir.display()
                );
            }
        }
    }

    /// Test only: blocks the writer until the returned sender is dropped or sent to.
    #[cfg(test)]
    fn hold(&self) -> SyncSender<()> {
        let (started, is_holding) = sync_channel(1);
        let (release_tx, release) = sync_channel(1);
        let tx = self.tx.as_ref().expect("running");
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        tx.send(Job::Hold { started, release }).expect("queued");
        is_holding.recv().expect("holding");
        release_tx
    }
}

impl Drop for ThumbnailWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The writer thread's side.
struct Worker {
    dir: PathBuf,
    budget: u64,
    space: Option<Arc<SpaceBudget>>,
    quality: u8,
    counters: Arc<Counters>,
}

impl Worker {
    fn run(self, rx: Receiver<Job>, mut keep: Vec<u64>) {
        keep.sort_unstable();
        let (inv, scan) =
            Inventory::scan(&self.dir, self.budget, |id| keep.binary_search(&id).is_ok());
        drop(keep);
        let inv = Arc::new(Mutex::new(inv));
        // Held for as long as this thread runs: a stopped writer is not asked to shed.
        let _shedder = self.space.as_ref().map(|space| {
            let inv = Arc::clone(&inv);
            let counters = Arc::clone(&self.counters);
            space.register(
                Tier::Thumbnails,
                Box::new(move |want| {
                    let mut inv = lock(&inv);
                    let (n, freed) = inv.shed_oldest(want);
                    counters
                        .shed_for_space
                        .fetch_add(n as u64, Ordering::Relaxed);
                    publish(&counters, &inv);
                    freed
                }),
            )
        });
        let cleaned = scan.orphans + scan.temporaries;
        if cleaned > 0 {
            tracing::info!(
                "quarantine thumbnails {}: removed {} thumbnails without an entry and {} \
                 temporaries",
                self.dir.display(),
                scan.orphans,
                scan.temporaries
            );
        }
        self.counters
            .cleaned_at_start
            .store(cleaned as u64, Ordering::Relaxed);
        self.budget_and_publish(&mut lock(&inv));
        let mut jpeg = Vec::new();
        for job in rx {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            match job {
                Job::Write {
                    id,
                    width,
                    height,
                    rgb,
                } => {
                    jpeg.clear();
                    let encoded = self.encode(&rgb, width, height, &mut jpeg);
                    let room = self
                        .space
                        .as_ref()
                        .is_none_or(|s| s.ok_to_write(jpeg.len() as u64));
                    match encoded {
                        Ok(()) if !room => {
                            self.counters
                                .refused_for_space
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => match lock(&inv).write(id, &jpeg) {
                            Ok(()) => {
                                self.counters.written.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => self.failed(id, &format!("writing: {e}")),
                        },
                        Err(e) => self.failed(id, &format!("encoding: {e}")),
                    }
                }
                Job::Delete { id } => {
                    if lock(&inv).remove(id) {
                        self.counters.deleted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Job::Flush(reply) => {
                    let _ = reply.send(());
                    continue;
                }
                #[cfg(test)]
                Job::Hold { started, release } => {
                    let _ = started.send(());
                    let _ = release.recv();
                    continue;
                }
            }
            self.budget_and_publish(&mut lock(&inv));
        }
    }

    fn encode(
        &self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) -> image::ImageResult<()> {
        image::codecs::jpeg::JpegEncoder::new_with_quality(out, self.quality).encode(
            rgb,
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
    }

    fn failed(&self, id: u64, what: &str) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "quarantine thumbnails {}: thumbnail {id} not written ({what})",
            self.dir.display()
        );
    }

    fn budget_and_publish(&self, inv: &mut Inventory) {
        let removed = inv.enforce_budget();
        if removed > 0 {
            self.counters
                .removed_for_budget
                .fetch_add(removed as u64, Ordering::Relaxed);
            tracing::debug!(
                "quarantine thumbnails {}: removed the {removed} oldest to stay under {} bytes",
                self.dir.display(),
                self.budget
            );
        }
        publish(&self.counters, inv);
    }
}

fn lock(inv: &Mutex<Inventory>) -> std::sync::MutexGuard<'_, Inventory> {
    // A panic half-way through a file operation leaves the inventory no worse than a crash
    // would: it is still usable.
    inv.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes the inventory's totals.
fn publish(counters: &Counters, inv: &Inventory) {
    counters.bytes_on_disk.store(inv.total(), Ordering::Relaxed);
    counters.files.store(inv.len() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, budget: u64) -> QuarantineConfig {
        QuarantineConfig {
            thumbnail_dir: dir.to_path_buf(),
            max_thumbnail_bytes: budget,
            ..Default::default()
        }
    }

    /// A frame with detail (so JPEG sizes are realistic, not a flat colour).
    fn frame(w: u32, h: u32, seed: u32) -> Frame {
        let mut f = Frame::default();
        f.reshape(w, h);
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        for b in &mut f.data {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        f
    }

    #[test]
    fn thumbnails_are_jpegs_of_the_configured_size() {
        let dir = tempfile::tempdir().unwrap();
        let w = ThumbnailWriter::start(&config(dir.path(), 1 << 20), vec![]).unwrap();
        assert!(w.submit(1, &frame(640, 480, 1)));
        assert!(w.submit(2, &frame(100, 300, 2)));
        w.flush();
        let a = image::open(w.path_of(1)).unwrap();
        assert_eq!((a.width(), a.height()), (64, 48));
        let b = image::open(w.path_of(2)).unwrap();
        assert_eq!((b.width(), b.height()), (21, 64));
        let bytes = std::fs::read(w.path_of(1)).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
        let s = w.stats();
        assert_eq!((s.written, s.files, s.dropped), (2, 2, 0));
        // A frame whose buffer does not match its size gets no thumbnail.
        let mut bad = frame(10, 10, 3);
        bad.data.truncate(7);
        assert!(!w.submit(3, &bad));
        assert!(w.delete(1));
        w.flush();
        assert!(!w.path_of(1).exists());
        let s = w.stats();
        assert_eq!((s.bad_frames, s.deleted, s.files), (1, 1, 1));
    }

    /// The queue is full while the writer is busy: submit returns at once, dropping and
    /// counting, and the queued jobs are still done.
    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let w = ThumbnailWriter::start(&config(dir.path(), 1 << 20), vec![]).unwrap();
        let f = frame(64, 64, 1);
        let release = w.hold();
        let extra = 5;
        let mut queued = 0;
        for id in 1..=(QUEUE_CAPACITY + extra) as u64 {
            queued += usize::from(w.submit(id, &f));
        }
        assert_eq!(queued, QUEUE_CAPACITY);
        assert!(!w.delete(1), "a delete is dropped too");
        let s = w.stats();
        assert_eq!((s.dropped, s.deletes_dropped), (extra as u64, 1));
        drop(release);
        w.flush();
        let s = w.stats();
        assert_eq!(s.written, QUEUE_CAPACITY as u64);
        assert_eq!(s.files, QUEUE_CAPACITY as u64);
        // Room again.
        assert!(w.submit(100, &f));
    }

    #[test]
    fn the_directory_stays_under_its_budget_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let budget = 64 << 10;
        let w = ThumbnailWriter::start(&config(dir.path(), budget), vec![]).unwrap();
        for id in 1..=60u64 {
            while !w.submit(id, &frame(320, 240, id as u32)) {
                w.flush();
            }
        }
        w.flush();
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let s = w.stats();
        assert!(on_disk <= budget, "{on_disk} > {budget}");
        assert_eq!(on_disk, s.bytes_on_disk);
        assert!(s.removed_for_budget > 0, "{s:?}");
        assert!(w.path_of(60).exists(), "the newest is kept");
        assert!(!w.path_of(1).exists(), "the oldest went first");
    }

    /// Fails before this change: thumbnails ignored the data partition (`board`'s docs said
    /// they asked the disk guard; nothing did), and nothing could shed them.
    #[test]
    fn under_a_space_budget_writes_respect_the_floor_and_the_budget_sheds_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let w = ThumbnailWriter::start(&config(dir.path(), 1 << 20), vec![]).unwrap();
        for id in 1..=3 {
            assert!(w.submit(id, &frame(64, 64, id as u32)));
        }
        w.close();
        let free = crate::board::DiskGuard::new(dir.path(), 0)
            .space()
            .unwrap()
            .free_bytes;
        // A floor above the free space: the partition counts as full.
        let space = SpaceBudget::new(dir.path(), free + (1 << 30));
        let w = ThumbnailWriter::start_with_space(
            &config(dir.path(), 1 << 20),
            vec![1, 2, 3],
            Some(Arc::clone(&space)),
        )
        .unwrap();
        assert!(w.submit(4, &frame(64, 64, 4)));
        w.flush();
        let s = w.stats();
        assert_eq!(
            (s.refused_for_space, s.written, s.files),
            (1, 0, 3),
            "{s:?}"
        );
        assert!(!w.path_of(4).exists());
        space.pass();
        let s = w.stats();
        assert_eq!(
            (s.shed_for_space, s.files, s.bytes_on_disk),
            (3, 0, 0),
            "{s:?}"
        );
        assert!((1..=3).all(|id| !w.path_of(id).exists()));
        assert!(space.status().shed_bytes.thumbnails > 0);
        // A stopped writer is not asked any more.
        w.close();
        assert_eq!(space.pass(), 0);
    }

    #[test]
    fn start_removes_thumbnails_of_vanished_entries() {
        let dir = tempfile::tempdir().unwrap();
        let w = ThumbnailWriter::start(&config(dir.path(), 1 << 20), vec![]).unwrap();
        for id in 1..=3 {
            assert!(w.submit(id, &frame(64, 64, id as u32)));
        }
        w.close();
        let w = ThumbnailWriter::start(&config(dir.path(), 1 << 20), vec![2]).unwrap();
        w.flush();
        assert!(w.path_of(2).exists());
        assert!(!w.path_of(1).exists() && !w.path_of(3).exists());
        assert_eq!(w.stats().cleaned_at_start, 2);
        assert_eq!(w.stats().files, 1);
    }
}
