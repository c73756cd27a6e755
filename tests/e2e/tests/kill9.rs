//! kill -9 during upload: a device process syncing through a slow, lossy proxy is SIGKILLed at
//! random moments; after each restart its database opens, and once the server is reachable
//! every drift event it committed arrives exactly once and its outbox ends empty, with the
//! package counts equal on both sides.
//!
//! `TINYLCM_KILL9_ROUNDS` sets the number of kills (10) and `TINYLCM_KILL9_SEED` (decimal)
//! replays a run's kill delays, printed at the start; `scripts/soak-kill9` runs thousands of
//! rounds this way, outside the suite, with `SYNC_CHILD_BIN` naming a copy of `sync-child` that
//! a rebuild alongside cannot replace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tinylcm::autonomy::{EventKind, RuntimeEvent};
use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm::sync::backoff::random_unit;
use tinylcm::sync::outbox::{DROPPED_COUNTER, DUPLICATE_COUNTER, QUEUED_COUNTER, UPLOADED_COUNTER};
use tinylcm_e2e::proxy::{Fault, Proxy};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_e2e::wait_for;

const EVENTS: u64 = 40;

/// A number from the environment variable `name`, or `default` when it is unset.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number"))
    })
}

/// splitmix64: the kill delays of a run follow from its seed alone.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Starts the device process; its stderr goes to `log` (shown if it dies by itself).
fn spawn(dir: &Path, server: &str, key: &str, log: &Path) -> Child {
    let exe = std::env::var_os("SYNC_CHILD_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sync-child").into());
    Command::new(exe)
        .arg(dir)
        .arg(server)
        .arg(key)
        .arg(EVENTS.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGKILLs the device process, which must still be running: one that exited by itself (its
/// store did not open, its client did not start) would make the kill test nothing.
fn kill9(mut child: Child, log: &Path, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("{what}: sync-child exited by itself ({status}) before the kill:\n{log}");
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn every_committed_event_arrives_once_after_random_kills() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("device");
    let sphere = Sphere::embedded(None);
    let proxy = Proxy::start(&sphere.addr);
    // Slow uploads widen the window in which a kill lands mid-upload; some answers are lost
    // after the server stored the package.
    proxy.inject("/packages", Fault::Slow(Duration::from_millis(300)), 1000);
    let rounds = env_number("TINYLCM_KILL9_ROUNDS", 10);
    let seed = env_number("TINYLCM_KILL9_SEED", (random_unit() * 1e15) as u64);
    eprintln!("kill9: {rounds} rounds, seed {seed} (TINYLCM_KILL9_SEED={seed} replays the delays)");
    let mut rng = seed;
    let log = work.path().join("sync-child.stderr");
    for round in 0..rounds {
        if round % 3 == 1 {
            proxy.inject("/packages", Fault::DropResponse, 1);
        }
        let child = spawn(&dir, &proxy.url(), &sphere.enrollment_key, &log);
        let ms = 300 + next(&mut rng) % 1700;
        std::thread::sleep(Duration::from_millis(ms));
        kill9(child, &log, &format!("seed {seed}, round {round}"));
    }
    proxy.clear();

    // A last run with the server reachable: everything committed gets there.
    let child = spawn(&dir, &proxy.url(), &sphere.enrollment_key, &log);
    let id = wait_for(30, "enrollment", || {
        tinylcm::sync::Credentials::load(&dir)
            .ok()
            .flatten()
            .map(|c| c.device_id)
    });
    wait_for(120, "all events on the server", || {
        (sphere.drift_events(&id).len() as u64 >= EVENTS).then_some(())
    });
    // Let the outbox drain (the last package may still be in flight), then stop the device.
    std::thread::sleep(Duration::from_secs(3));
    kill9(child, &log, &format!("seed {seed}, last run"));

    let store = Store::open(dir.join("state.redb"), DurabilityPolicy::default()).unwrap();
    let committed: Vec<u64> = store
        .events_after::<RuntimeEvent>(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| matches!(e.kind, EventKind::Drift { .. }))
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(committed.len() as u64, EVENTS);
    assert_eq!(
        sphere.event_seqs(&id),
        committed,
        "every committed event exactly once"
    );
    assert_eq!(store.outbox_len().unwrap(), 0, "the outbox is drained");
    let queued = store.counter(QUEUED_COUNTER).unwrap();
    let uploaded = store.counter(UPLOADED_COUNTER).unwrap();
    let duplicates = store.counter(DUPLICATE_COUNTER).unwrap();
    assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 0);
    assert_eq!(queued, uploaded + duplicates);
    assert_eq!(sphere.packages(&id), queued);
}
