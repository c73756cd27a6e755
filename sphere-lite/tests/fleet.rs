//! Load test: a simulated fleet of 500 devices enrolls and syncs concurrently against a real
//! sphere-lite (embedded default). What a user relies on: under that load no request fails,
//! and every package is stored exactly once. The latencies are printed, never asserted
//! (`cargo bench -p sphere-lite --bench fleet` measures them on a release build).

use sphere_lite::server::open_embedded;

#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/server.rs"]
mod server;

const DEVICES: usize = 500;
const ROUNDS: usize = 2;

#[test]
fn five_hundred_devices_sync_at_once_without_an_error_or_a_lost_package() {
    // Server and 500 clients share this process: 1000+ sockets, as `sphere-lite serve` does.
    sphere_lite::limits::raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let key = sphere.create_enrollment_key(DEVICES as u32).unwrap();
    let operator = sphere.create_operator_token("load").unwrap();
    let server = server::TestServer::start(sphere);

    let report = fleet::simulate(&server.url(""), &key, DEVICES, ROUNDS);
    eprintln!("{}", report.table());
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    assert_eq!(report.upload.len(), DEVICES * ROUNDS);

    let (status, body) = server.get("/api/v2/devices", Some(&operator));
    assert_eq!(status, 200);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), DEVICES);
    assert!(
        devices.iter().all(|d| d["packages"] == ROUNDS as u64),
        "every device has exactly {ROUNDS} packages"
    );
}
