//! Power cuts, simulated: redb runs on a storage backend that keeps what was written since
//! the last `sync_data` in a volatile image; a "power cut" takes the durable image at an
//! arbitrary instant. Unlike `kill -9` (after which the page cache still reaches the disk),
//! this loses everything not fsynced, so it checks that commits really are durable when the
//! store says so.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, StorageBackend};

use super::{Batch, DurabilityPolicy, PRUNED_EVENTS_COUNTER, Store};

#[derive(Debug, Default)]
struct Disk {
    volatile: Mutex<Vec<u8>>,
    durable: Mutex<Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Backend(Arc<Disk>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StorageBackend for Backend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(lock(&self.0.volatile).len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let v = lock(&self.0.volatile);
        let start = offset as usize;
        v.get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        lock(&self.0.volatile).resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        let v = lock(&self.0.volatile).clone();
        *lock(&self.0.durable) = v;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut v = lock(&self.0.volatile);
        let end = offset as usize + data.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

/// A store on a fresh simulated disk holding `image`.
fn boot(image: Vec<u8>, policy: DurabilityPolicy) -> (Store, Arc<Disk>) {
    let disk = Arc::new(Disk {
        volatile: Mutex::new(image.clone()),
        durable: Mutex::new(image),
    });
    let db = Database::builder()
        .create_with_backend(Backend(Arc::clone(&disk)))
        .expect("the database opens after a power cut");
    let store = Store::start(db, PathBuf::from("<simulated>"), policy).unwrap();
    (store, disk)
}

fn cut(disk: &Disk) -> Vec<u8> {
    lock(&disk.durable).clone()
}

fn events_in(b: u64) -> u64 {
    1 + b % 3
}

fn events_through(b: u64) -> u64 {
    (1..=b).map(events_in).sum()
}

fn batch(b: u64) -> Batch {
    let mut batch = Batch::new();
    for i in 0..events_in(b) {
        batch.append_event(&(b, i)).unwrap();
    }
    batch.increment("n", events_in(b));
    batch.put_state("b", &b).unwrap();
    batch
}

/// The invariants after a cut; returns the last batch present.
fn check(store: &Store, acked: u64) -> u64 {
    let b = store.get_state::<u64>("b").unwrap().unwrap_or(0);
    let n = store.counter("n").unwrap();
    let pruned = store.counter(PRUNED_EVENTS_COUNTER).unwrap();
    let events = store.events_after::<(u64, u64)>(0, usize::MAX).unwrap();
    assert_eq!(n, events_through(b), "counter vs state");
    assert_eq!(pruned + events.len() as u64, n, "kept + pruned vs counter");
    for (k, (seq, _)) in events.iter().enumerate() {
        assert_eq!(*seq, pruned + 1 + k as u64, "gap in the event log");
    }
    assert!(b >= acked, "acknowledged batch {acked} lost (have {b})");
    b
}

#[test]
fn after_a_power_cut_flushed_batches_are_there_and_unflushed_ones_are_not() {
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (store, disk) = boot(Vec::new(), policy);
    for b in 1..=10 {
        store.submit(batch(b)).unwrap();
    }
    store.flush().unwrap();
    for b in 11..=15 {
        store.submit(batch(b)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let image = cut(&disk);
    drop(store);
    let (store, _) = boot(image, policy);
    // Within the loss window: 11..=15 were queued but not yet due, so they are gone; the
    // flushed 1..=10 are all there.
    assert_eq!(check(&store, 10), 10);
}

#[test]
fn power_cuts_at_random_instants_leave_a_consistent_database() {
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_millis(3),
        max_batch: 8,
        queue_capacity: 16,
        max_events: 40,
    };
    let mut image = Vec::new();
    let mut last = 0;
    let mut rng = 0x2545_f491_u64;
    for _ in 0..40 {
        let (store, disk) = boot(image, policy);
        let store = Arc::new(store);
        let start = check(&store, last);
        let acked = Arc::new(AtomicU64::new(start));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, acked, stop) = (Arc::clone(&store), Arc::clone(&acked), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut b = start;
                while !stop.load(Ordering::SeqCst) {
                    b += 1;
                    store.submit(batch(b)).unwrap();
                    if b.is_multiple_of(5) {
                        store.flush().unwrap();
                        acked.store(b, Ordering::SeqCst);
                    }
                }
            })
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 15_000));
        // The cut: what was fsynced is all that survives. Acknowledgements read before it
        // are durable by then.
        let acked_before = acked.load(Ordering::SeqCst);
        image = cut(&disk);
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        drop(store);
        let (store, _) = boot(image.clone(), policy);
        last = check(&store, acked_before);
    }
    assert!(last > 0, "the writer made no progress");
}
