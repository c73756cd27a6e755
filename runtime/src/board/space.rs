//! [`SpaceBudget`]: the one place that knows the data partition's free space, the floor that
//! must stay free (`[board] min-free-mib`), and what may be shed, in which order, when the
//! partition falls below it.
//!
//! A full data partition must not take the device off the air: inference and detection go
//! on, and what can be fetched again or is only nice to have goes first. Each kind of
//! expendable file registers a shedder under its [`Tier`]; a shedding pass asks the tiers in
//! order (downloads, old log files, thumbnails oldest first, old snapshots) for the missing
//! bytes, re-reading the free space after each, and stops as soon as the floor holds again.
//! A pass runs on a small keeper thread every few seconds, and at once when a writer is
//! refused or the state database fails a commit ([`SpaceBudget::nudge`]). Writers that can
//! wait or drop ask [`SpaceBudget::ok_to_write`] first; byte budgets given by settings (the
//! thumbnails' `max-thumbnail-bytes`) are capped by [`SpaceBudget::cap`], so no setting can
//! fill the card.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DiskGuard;

/// Kinds of expendable files, in the order they are shed (cheapest loss first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Model downloads (`<state dir>/downloads`): fetched again when space returns.
    Downloads,
    /// Log files other than the one being written.
    Logs,
    /// Quarantine thumbnails, oldest first: the entries stay, only their pictures go.
    Thumbnails,
    /// State snapshots but the newest (which a rollback needs).
    Snapshots,
}

impl Tier {
    /// Every tier, in shedding order.
    pub const ALL: [Tier; 4] = [
        Tier::Downloads,
        Tier::Logs,
        Tier::Thumbnails,
        Tier::Snapshots,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A shedder: frees up to about `want` bytes (it may free more or less), returns what it
/// freed.
pub type Shedder = Box<dyn Fn(u64) -> u64 + Send + Sync>;

/// What the budget says about the partition, for the status report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceStatus {
    /// Free bytes at the last look.
    pub free_bytes: u64,
    /// Size of the partition.
    pub total_bytes: u64,
    /// Bytes that must stay free (`[board] min-free-mib`).
    pub min_free_bytes: u64,
    /// Free space was below the floor at the last look even after shedding.
    pub below_floor: bool,
    /// Shedding passes that had something to do.
    pub passes: u64,
    /// Bytes shed per tier since start: downloads, logs, thumbnails, snapshots.
    pub shed_bytes: ShedBytes,
    /// Writes refused by [`SpaceBudget::ok_to_write`].
    pub refused_writes: u64,
}

/// Bytes shed per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShedBytes {
    /// Model downloads.
    pub downloads: u64,
    /// Old log files.
    pub logs: u64,
    /// Thumbnails.
    pub thumbnails: u64,
    /// Old snapshots.
    pub snapshots: u64,
}

struct Entry {
    id: u64,
    tier: Tier,
    shed: Shedder,
}

/// Wakes the keeper thread early; shared so the thread can wait without owning the budget.
#[derive(Default)]
struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    fn ring(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits for a ring or `timeout`.
    fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (mut rung, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |rung| !*rung)
            .unwrap_or_else(|p| p.into_inner());
        *rung = false;
    }
}

/// The data partition's budget. Share it as `Arc<SpaceBudget>`.
pub struct SpaceBudget {
    guard: DiskGuard,
    shedders: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
    /// Serialises passes (the keeper and a caller may both run one).
    pass_lock: Mutex<()>,
    free: AtomicU64,
    total: AtomicU64,
    below_floor: AtomicBool,
    passes: AtomicU64,
    shed: [AtomicU64; 4],
    refused: AtomicU64,
    wake: Arc<Wake>,
}

impl std::fmt::Debug for SpaceBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceBudget")
            .field("path", &self.guard.path())
            .field("min_free_bytes", &self.guard.min_free_bytes())
            .finish_non_exhaustive()
    }
}

/// A shedder's place in the budget; dropping it takes the shedder out (a thumbnail writer
/// that stops must not be asked any more).
pub struct Registration {
    budget: Weak<SpaceBudget>,
    id: u64,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.id)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(b) = self.budget.upgrade() {
            b.lock_shedders().retain(|e| e.id != self.id);
        }
    }
}

impl SpaceBudget {
    /// The budget of the file system holding `path`, keeping `min_free_bytes` free.
    pub fn new(path: impl Into<PathBuf>, min_free_bytes: u64) -> Arc<Self> {
        Arc::new(SpaceBudget {
            guard: DiskGuard::new(path, min_free_bytes),
            shedders: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            pass_lock: Mutex::new(()),
            free: AtomicU64::new(0),
            total: AtomicU64::new(0),
            below_floor: AtomicBool::new(false),
            passes: AtomicU64::new(0),
            shed: Default::default(),
            refused: AtomicU64::new(0),
            wake: Arc::new(Wake::default()),
        })
    }

    /// The partition's path (as given).
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// The guard with the same path and floor (for code that asks only "may I write").
    pub fn guard(&self) -> &DiskGuard {
        &self.guard
    }

    fn lock_shedders(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.shedders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a shedder of `tier`; it stays until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, tier: Tier, shed: Shedder) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_shedders().push(Entry { id, tier, shed });
        Registration {
            budget: Arc::downgrade(self),
            id,
        }
    }

    /// Adds a shedder of `tier` for as long as the budget lives (for files no running
    /// component owns: downloads, old logs, old snapshots).
    pub fn register_for_life(&self, tier: Tier, shed: Shedder) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock_shedders().push(Entry { id, tier, shed });
    }

    /// Whether writing `bytes` keeps the floor; a refusal is counted and wakes the keeper
    /// for a shedding pass.
    pub fn ok_to_write(&self, bytes: u64) -> bool {
        if self.guard.ok_to_write(bytes) {
            return true;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.nudge();
        false
    }

    /// `wanted` bytes, but at most a quarter of the partition: what one kind of expendable
    /// file may hold whatever its setting says (a partition that cannot be read caps
    /// nothing).
    pub fn cap(&self, wanted: u64) -> u64 {
        match self.guard.space() {
            Ok(s) => wanted.min(s.total_bytes / 4),
            Err(_) => wanted,
        }
    }

    /// Asks the keeper thread for a shedding pass now.
    pub fn nudge(&self) {
        self.wake.ring();
    }

    /// Looks at the free space and, below the floor, sheds tier by tier until it holds
    /// again. Returns the bytes shed.
    pub fn pass(&self) -> u64 {
        let _one = self.pass_lock.lock().unwrap_or_else(|p| p.into_inner());
        let floor = self.guard.min_free_bytes();
        let Some(mut free) = self.look() else {
            return 0;
        };
        if free >= floor {
            self.below_floor.store(false, Ordering::Relaxed);
            return 0;
        }
        let mut shed_total = 0;
        for tier in Tier::ALL {
            let shedders = self.lock_shedders();
            for e in shedders.iter().filter(|e| e.tier == tier) {
                let want = floor.saturating_sub(free);
                if want == 0 {
                    break;
                }
                let freed = (e.shed)(want);
                if freed > 0 {
                    self.shed[tier.index()].fetch_add(freed, Ordering::Relaxed);
                    shed_total += freed;
                    tracing::info!(
                        "{}: {free} bytes free, below the {floor} of `board.min-free-mib`: \
                         shed {freed} bytes of {tier:?}",
                        self.guard.path().display()
                    );
                }
                free = self.look().unwrap_or(free);
            }
            drop(shedders);
            if free >= floor {
                break;
            }
        }
        self.passes.fetch_add(1, Ordering::Relaxed);
        let below = free < floor;
        if below && !self.below_floor.load(Ordering::Relaxed) {
            tracing::warn!(
                "{}: {free} bytes free after shedding everything expendable, below the {floor} \
                 of `board.min-free-mib`; inference goes on, writes wait for space",
                self.guard.path().display()
            );
        }
        self.below_floor.store(below, Ordering::Relaxed);
        shed_total
    }

    /// Reads the free space and remembers it.
    fn look(&self) -> Option<u64> {
        match self.guard.space() {
            Ok(s) => {
                self.free.store(s.free_bytes, Ordering::Relaxed);
                self.total.store(s.total_bytes, Ordering::Relaxed);
                Some(s.free_bytes)
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Whether the partition was below the floor at the last pass.
    pub fn below_floor(&self) -> bool {
        self.below_floor.load(Ordering::Relaxed)
    }

    /// The figures for the status report.
    pub fn status(&self) -> SpaceStatus {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SpaceStatus {
            free_bytes: get(&self.free),
            total_bytes: get(&self.total),
            min_free_bytes: self.guard.min_free_bytes(),
            below_floor: self.below_floor(),
            passes: get(&self.passes),
            shed_bytes: ShedBytes {
                downloads: get(&self.shed[0]),
                logs: get(&self.shed[1]),
                thumbnails: get(&self.shed[2]),
                snapshots: get(&self.shed[3]),
            },
            refused_writes: get(&self.refused),
        }
    }

    /// Starts the keeper thread: a pass every `interval`, and at each [`nudge`]. It ends
    /// when the last `Arc` of the budget goes.
    ///
    /// [`nudge`]: SpaceBudget::nudge
    pub fn start_keeper(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        let wake = Arc::clone(&self.wake);
        self.pass();
        std::thread::Builder::new()
            .name("space-keeper".into())
            .spawn(move || {
                loop {
                    wake.wait(interval);
                    let Some(budget) = weak.upgrade() else { break };
                    budget.pass();
                }
            })
            .map(|_| ())
    }
}

impl Drop for SpaceBudget {
    fn drop(&mut self) {
        // Lets the keeper see that the budget is gone.
        self.wake.ring();
    }
}

/// Removes the regular files directly in `dir` for which `take` says yes, in name order,
/// until `want` bytes are freed; returns the bytes freed. Shared by the file-level shedders.
pub fn shed_files(dir: &Path, want: u64, take: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<(String, PathBuf, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            (meta.file_type().is_file() && take(&name)).then(|| (name, e.path(), meta.len()))
        })
        .collect();
    files.sort();
    let mut freed = 0;
    for (_, path, len) in files {
        if freed >= want {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            freed += len;
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_sheds_in_tier_order_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let free = DiskGuard::new(dir.path(), 0).space().unwrap().free_bytes;
        // A floor just above the free space: every pass is short of a few bytes.
        let budget = SpaceBudget::new(dir.path(), free + (1 << 30));
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut regs = Vec::new();
        for tier in [
            Tier::Snapshots,
            Tier::Thumbnails,
            Tier::Downloads,
            Tier::Logs,
        ] {
            let order = Arc::clone(&order);
            regs.push(budget.register(
                tier,
                Box::new(move |want| {
                    assert!(want > 0);
                    order.lock().unwrap().push(tier);
                    10
                }),
            ));
        }
        assert_eq!(budget.pass(), 40);
        assert_eq!(
            *order.lock().unwrap(),
            [
                Tier::Downloads,
                Tier::Logs,
                Tier::Thumbnails,
                Tier::Snapshots
            ]
        );
        let s = budget.status();
        assert!(s.below_floor && s.passes == 1, "{s:?}");
        assert_eq!((s.shed_bytes.downloads, s.shed_bytes.snapshots), (10, 10));
        assert!(!budget.ok_to_write(1));
        assert_eq!(budget.status().refused_writes, 1);
        // A dropped registration is not asked again.
        regs.truncate(1);
        order.lock().unwrap().clear();
        budget.pass();
        assert_eq!(*order.lock().unwrap(), [Tier::Snapshots]);
    }

    #[test]
    fn above_the_floor_nothing_is_shed_and_caps_follow_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let budget = SpaceBudget::new(dir.path(), 0);
        let _r = budget.register(Tier::Downloads, Box::new(|_| panic!("not below the floor")));
        assert_eq!(budget.pass(), 0);
        assert!(!budget.below_floor());
        let total = budget.guard().space().unwrap().total_bytes;
        assert_eq!(budget.cap(4 << 30), (4u64 << 30).min(total / 4));
        assert_eq!(budget.cap(1), 1);
    }

    #[test]
    fn shed_files_takes_matching_files_in_name_order_until_enough() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in [("a.part", 10), ("b.part", 10), ("c.part", 10), ("keep", 10)] {
            std::fs::write(dir.path().join(name), vec![0u8; len]).unwrap();
        }
        let freed = shed_files(dir.path(), 15, |n| n.ends_with(".part"));
        assert_eq!(freed, 20);
        assert!(!dir.path().join("a.part").exists() && !dir.path().join("b.part").exists());
        assert!(dir.path().join("c.part").exists() && dir.path().join("keep").exists());
    }
}
