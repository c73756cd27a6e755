//! kill -9 during upload: a device process syncing through a slow, lossy proxy is SIGKILLed at
//! random moments; after each restart its database opens, and once the server is reachable
//! every drift event it committed arrives exactly once and its outbox ends empty, with the
//! package counts equal on both sides.

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

fn spawn(dir: &std::path::Path, server: &str, key: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sync-child"))
        .arg(dir)
        .arg(server)
        .arg(key)
        .arg(EVENTS.to_string())
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill9(mut child: Child) {
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
    for round in 0..10 {
        if round % 3 == 1 {
            proxy.inject("/packages", Fault::DropResponse, 1);
        }
        let child = spawn(&dir, &proxy.url(), &sphere.enrollment_key);
        let ms = 300 + (random_unit() * 1700.0) as u64;
        std::thread::sleep(Duration::from_millis(ms));
        kill9(child);
    }
    proxy.clear();

    // A last run with the server reachable: everything committed gets there.
    let child = spawn(&dir, &proxy.url(), &sphere.enrollment_key);
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
    kill9(child);

    let store = Store::open(dir.join("state.redb"), DurabilityPolicy::default()).unwrap();
    let committed: Vec<u64> = store
        .events_after::<RuntimeEvent>(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| matches!(e.kind, EventKind::Drift { .. }))
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(committed.len() as u64, EVENTS);
    let mut on_server: Vec<u64> = sphere
        .drift_events(&id)
        .iter()
        .map(|e| e["event_seq"].as_u64().unwrap())
        .collect();
    on_server.sort_unstable();
    assert_eq!(on_server, committed, "every committed event exactly once");
    assert_eq!(store.outbox_len().unwrap(), 0, "the outbox is drained");
    let queued = store.counter(QUEUED_COUNTER).unwrap();
    let uploaded = store.counter(UPLOADED_COUNTER).unwrap();
    let duplicates = store.counter(DUPLICATE_COUNTER).unwrap();
    assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 0);
    assert_eq!(queued, uploaded + duplicates);
    let row = sphere.device(&id).unwrap();
    assert_eq!(row["packages"].as_u64().unwrap(), queued, "{row}");
}
