//! `sync-child DIR SERVER KEY EVENTS`: a device process for the kill -9 test. Opens the state
//! store in DIR, starts the sync client against SERVER (enrolling with KEY), appends drift
//! events until the log holds EVENTS of them, then keeps syncing until it is killed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tinylcm::sync::SyncClient;
use tinylcm_e2e::device::{Device, add_drift};
use tinylcm_e2e::host::TestHost;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, server, key, events] = args.as_slice() else {
        bail!("usage: sync-child DIR SERVER KEY EVENTS");
    };
    let target: u64 = events.parse().context("EVENTS")?;
    let device = Device::new(&PathBuf::from(dir));
    let store = device.open_store();
    let host = Arc::new(TestHost::new(device.inbox(), Vec::new()));
    let mut setup = device.setup(server, key, 1);
    setup.config.request_timeout_seconds = 5;
    let _client = SyncClient::start(setup, Arc::clone(&store), host)?;
    loop {
        let have = store
            .events_after::<tinylcm::autonomy::RuntimeEvent>(0, 10_000)?
            .len() as u64;
        if have < target {
            // Each event gets its own frame and quarantine entry, numbered after the log.
            let n = have + 1;
            add_drift(&store, &device, n, 1000 + n, n);
            store.flush()?;
            std::thread::sleep(Duration::from_millis(30));
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
