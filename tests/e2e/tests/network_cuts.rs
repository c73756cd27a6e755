//! Network cuts between the sync client and a real sphere-lite, through a fault-injecting
//! proxy: the server answering 500, garbage, late, a connection reset half-way through an
//! upload, an answer lost after the server stored the package, and the server stopped and
//! started again. Counted on both sides: no package lost, none stored twice.

use std::sync::Arc;
use std::time::Duration;

use tinylcm::sync::SyncClient;
use tinylcm::sync::outbox::{
    DROPPED_COUNTER, DUPLICATE_COUNTER, QUEUED_COUNTER, REJECTED_COUNTER, UPLOADED_COUNTER,
};
use tinylcm_e2e::device::{Device, add_drift};
use tinylcm_e2e::host::TestHost;
use tinylcm_e2e::proxy::{Fault, Proxy};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_e2e::wait_for;

#[test]
fn no_package_is_lost_or_duplicated_through_faults_and_restarts() {
    let work = tempfile::tempdir().unwrap();
    let mut sphere = Sphere::embedded(None);
    let proxy = Proxy::start(&sphere.addr);
    let device = Device::new(&work.path().join("device"));
    let store = device.open_store();
    let host = Arc::new(TestHost::new(device.inbox(), Vec::new()));
    let mut setup = device.setup(&proxy.url(), &sphere.enrollment_key, 1);
    setup.config.request_timeout_seconds = 3;
    let client = SyncClient::start(setup, Arc::clone(&store), host).unwrap();
    let id = wait_for(30, "enrollment", || device.device_id());

    let mut events = Events {
        device: &device,
        store: &store,
        sent: Vec::new(),
        next: 1,
    };
    let phase = |events: &mut Events<'_>, sphere: &Sphere, what: &str| {
        events.add(2);
        let want = events.sent.len();
        wait_for(90, what, || {
            let n = sphere.drift_events(&id).len();
            assert!(n <= want, "{what}: {n} events on the server, {want} sent");
            (n == want && proxy.pending_rules() == 0).then_some(())
        });
    };

    proxy.inject("/packages", Fault::Status500, 2);
    phase(&mut events, &sphere, "events through two 500s");
    proxy.inject("/packages", Fault::GarbageBody, 1);
    proxy.inject("/packages", Fault::GarbageBytes, 1);
    phase(&mut events, &sphere, "events through garbage answers");
    // Slower than the request timeout: the server stores the package after the device gave
    // up, so the retry is a duplicate.
    proxy.inject("/packages", Fault::Slow(Duration::from_secs(5)), 1);
    phase(&mut events, &sphere, "events through a slow answer");
    proxy.inject("/packages", Fault::Slow(Duration::from_millis(800)), 1);
    phase(
        &mut events,
        &sphere,
        "events through a late but timely answer",
    );
    proxy.inject("/packages", Fault::ResetMidUpload, 2);
    phase(&mut events, &sphere, "events through resets mid-upload");
    proxy.inject("/packages", Fault::DropResponse, 1);
    phase(&mut events, &sphere, "events through a lost answer");
    proxy.inject("/feedback", Fault::Status500, 1);
    proxy.inject("/model", Fault::GarbageBytes, 1);
    phase(&mut events, &sphere, "events while pulls fail");

    // The server goes away for a while, then comes back on another port.
    sphere.stop();
    let failures = client.status().failures;
    events.add(2);
    // Rounds fail while the package waits in the outbox (it is built at the next round
    // that is due, failing or not).
    wait_for(30, "failed rounds with the package queued", || {
        let failed = client.status().failures >= failures + 2;
        (failed && store.outbox_len().unwrap() == 1).then_some(())
    });
    sphere.start();
    proxy.set_upstream(&sphere.addr);
    phase(&mut events, &sphere, "events after the restart");
    let sent = events.sent.clone();

    let status = client.status();
    assert!(client.stop());
    // Device side: everything confirmed, nothing dropped or refused.
    assert_eq!(store.outbox_len().unwrap(), 0);
    let queued = store.counter(QUEUED_COUNTER).unwrap();
    let uploaded = store.counter(UPLOADED_COUNTER).unwrap();
    let duplicates = store.counter(DUPLICATE_COUNTER).unwrap();
    assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 0);
    assert_eq!(store.counter(REJECTED_COUNTER).unwrap(), 0);
    assert_eq!(queued, uploaded + duplicates, "{status:?}");
    // The lost answer comes back as a duplicate (the slow one may too, or its retry may
    // overtake it in the proxy and be the one stored).
    assert!(
        duplicates >= 1,
        "the lost answer is retried as a duplicate: {status:?}"
    );
    // Server side: every package once, every event once.
    assert_eq!(sphere.packages(&id), queued);
    assert_eq!(sphere.event_seqs(&id), sent);
    assert!(proxy.counts().faults >= 10, "{:?}", proxy.counts());
}

/// Drift events appended to the device's log, as the autonomy layer would.
struct Events<'a> {
    device: &'a Device,
    store: &'a tinylcm::state::Store,
    sent: Vec<u64>,
    next: u64,
}

impl Events<'_> {
    fn add(&mut self, n: u64) {
        for _ in 0..n {
            let k = self.next;
            self.sent
                .push(add_drift(self.store, self.device, k, 500 + k, k));
            self.next += 1;
        }
        self.store.flush().unwrap();
    }
}
