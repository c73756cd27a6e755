//! kill -9 at random instants: the database must open consistent every time.
//!
//! The test re-executes its own binary as a writer (selected by an environment variable, so
//! no extra binary is needed): the writer appends a known sequence of batches (batch `b` =
//! `1 + b % 3` events `(b, i)`, the counter `crash.events` incremented by as many, and the
//! state `crash` = `b`), flushes every few batches and prints `ACK <b>` once a flush has
//! returned. The parent SIGKILLs it after a random delay (seeded), reopens the database and
//! checks: it opens; the counter equals the number of events appended (kept + pruned); the
//! events are gap-free and each is the expected one; the state names the batch of the last
//! event; and every acknowledged batch is there.
//!
//! `TINYLCM_CRASH_SEED` (decimal) replays a run's kill delays; `TINYLCM_CRASH_KILLS` sets the
//! number of kills (`scripts/soak-kill9` runs thousands this way, outside the suite).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinylcm::state::{Batch, DurabilityPolicy, PRUNED_EVENTS_COUNTER, Store};

#[path = "support/child.rs"]
mod child;
use child::{Rng, command, pin_binary};

const ROLE_DB: &str = "TINYLCM_STATE_CRASH_DB";
const ROLE_POLICY: &str = "TINYLCM_STATE_CRASH_POLICY";
const STATE: &str = "crash";
const COUNTER: &str = "crash.events";
/// Small, so pruning happens in most commits and is crash-tested too.
const MAX_EVENTS: u64 = 64;

/// Kills per run: at least 200 natively; fewer under qemu, where every start costs ~0.3 s.
const KILLS: u32 = if cfg!(target_arch = "x86_64") {
    200
} else {
    24
};
/// Overrides [`KILLS`]: `scripts/soak-kill9` runs thousands, outside the suite.
const KILLS_ENV: &str = "TINYLCM_CRASH_KILLS";

/// [`KILLS`], or the count in [`KILLS_ENV`].
fn kills() -> u32 {
    std::env::var(KILLS_ENV).map_or(KILLS, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{KILLS_ENV}={s:?} is not a number of kills"))
    })
}
/// Delays are stretched under qemu, where the writer runs about ten times slower.
const STRETCH: u64 = if cfg!(target_arch = "x86_64") { 1 } else { 10 };

fn events_in(batch: u64) -> u64 {
    1 + batch % 3
}

/// Events appended by batches `1..=b`.
fn events_through(b: u64) -> u64 {
    (1..=b).map(events_in).sum()
}

/// The batch and index of event `seq` (1-based).
fn event_at(seq: u64) -> (u64, u64) {
    let mut before = 0;
    let mut b = 1;
    loop {
        let n = events_in(b);
        if seq <= before + n {
            return (b, seq - before - 1);
        }
        before += n;
        b += 1;
    }
}

/// The writer role: only does something when started by the parent test.
#[test]
fn crash_writer_child() {
    let Ok(db) = std::env::var(ROLE_DB) else {
        return;
    };
    let spec = std::env::var(ROLE_POLICY).unwrap_or_default();
    let mut it = spec.split(',').map(|s| s.parse::<u64>().unwrap_or(1));
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_millis(it.next().unwrap_or(5).max(1)),
        max_batch: it.next().unwrap_or(16).max(1) as usize,
        queue_capacity: 64,
        max_events: MAX_EVENTS,
    };
    let store = Store::open(&db, policy).expect("writer: open");
    let start = store
        .get_state::<u64>(STATE)
        .expect("writer: read")
        .unwrap_or(0);
    // libtest has printed "test crash_writer_child ... " without a newline before this.
    println!("READY {start}");
    let mut b = start;
    loop {
        b += 1;
        let mut batch = Batch::new();
        for i in 0..events_in(b) {
            batch.append_event(&(b, i)).unwrap();
        }
        batch.increment(COUNTER, events_in(b));
        batch.put_state(STATE, &b).unwrap();
        let receipt = store.submit(batch).expect("writer: submit");
        assert_eq!(receipt.first_event, events_through(b - 1) + 1);
        if b.is_multiple_of(4) {
            store.flush().expect("writer: flush");
            println!("ACK {b}");
        }
    }
}

/// Reopens the database after a kill and checks every invariant; returns the last batch.
fn check(db: &Path, acked: u64, before: u64, kill: u32) -> u64 {
    let store = Store::open(db, DurabilityPolicy::default())
        .unwrap_or_else(|e| panic!("kill {kill}: the database does not open: {e}"));
    let b = store.get_state::<u64>(STATE).unwrap().unwrap_or(0);
    let counter = store.counter(COUNTER).unwrap();
    let pruned = store.counter(PRUNED_EVENTS_COUNTER).unwrap();
    let events = store.events_after::<(u64, u64)>(0, usize::MAX).unwrap();
    assert_eq!(
        counter,
        events_through(b),
        "kill {kill}: counter disagrees with the state's batch {b}"
    );
    assert_eq!(
        pruned + events.len() as u64,
        counter,
        "kill {kill}: kept + pruned events != counter"
    );
    assert!(events.len() as u64 <= MAX_EVENTS, "kill {kill}: retention");
    for (k, (seq, ev)) in events.iter().enumerate() {
        assert_eq!(
            *seq,
            pruned + 1 + k as u64,
            "kill {kill}: gap in the event log"
        );
        assert_eq!(
            *ev,
            event_at(*seq),
            "kill {kill}: event {seq} is not the expected one"
        );
    }
    assert!(
        b >= acked,
        "kill {kill}: batch {acked} was acknowledged, only {b} survived"
    );
    assert!(
        b >= before,
        "kill {kill}: committed batch {before} disappeared (now {b})"
    );
    store.close().unwrap();
    b
}

#[test]
fn kill_at_random_points_leaves_a_consistent_database() {
    // Beside the build output, so the test binary can be hard-linked rather than copied.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = dir.path().join("state.redb");
    let exe = pin_binary(dir.path(), "state-crash-writer");
    let stderr_path = dir.path().join("writer.stderr");
    let seed = std::env::var("TINYLCM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_7e57_u64);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let kills = kills();
    let (mut last, mut acked_total, mut unacked_survived) = (0u64, 0u64, 0u64);
    for kill in 0..kills {
        let policy = format!("{},{}", 1 + rng.below(20), 1 + rng.below(48));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = command(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_DB, &db)
            .env(ROLE_POLICY, &policy)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the writer");
        let acked = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let out = child.stdout.take().unwrap();
        let (seen, opened) = (Arc::clone(&acked), Arc::clone(&ready));
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(b) = line.strip_prefix("ACK ").and_then(|b| b.parse().ok()) {
                    seen.fetch_max(b, Ordering::SeqCst);
                } else if line.contains("READY ") {
                    opened.store(true, Ordering::SeqCst);
                }
            }
        });
        // One kill in four counts from the start (it lands in process start, open and
        // repair); the others count from the moment the store is open (so they land in
        // writes and commits whatever the start-up costs, e.g. under qemu). Some delays are
        // long so the writer gets deep into its sequence.
        if rng.below(4) != 0 {
            let waiting = Instant::now();
            while !ready.load(Ordering::SeqCst) {
                let exited = child.try_wait().expect("writer status");
                if exited.is_some() || waiting.elapsed() > Duration::from_secs(60) {
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!("kill {kill}: the writer never opened the store ({exited:?}):\n{log}");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let delay = if rng.below(8) == 0 {
            20 + rng.below(60)
        } else {
            rng.below(25)
        };
        std::thread::sleep(Duration::from_millis(delay * STRETCH));
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        reader.join().unwrap();
        let acked = acked.load(Ordering::SeqCst);
        let now = check(&db, acked, last, kill);
        acked_total = acked_total.max(acked);
        unacked_survived += now.saturating_sub(acked.max(last));
        last = now;
    }
    eprintln!(
        "{kills} kills in {:.1} s (seed {seed:#x}): {last} batches committed, highest acknowledged \
         {acked_total}, {unacked_survived} batches committed without an acknowledgement",
        started.elapsed().as_secs_f64()
    );
    assert!(
        last > u64::from(kills) / 4,
        "the writer made almost no progress: {last}"
    );
}
