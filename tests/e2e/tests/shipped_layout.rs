//! The shipped layout harness itself ([`tinylcm_e2e::shipped`]): the unit's command line, no
//! `--state`, finds its state at the default `/data/tinylcm` on the tmpfs the test sees, infers,
//! and stops cleanly on SIGTERM. The remote-config and disk-full tests build on this.

use tinylcm_e2e::process::Harness;
use tinylcm_e2e::shipped::ShippedDevice;

/// A device on a 64 MiB `/data` runs the unit's command line and keeps its database, status
/// and everything else under `/data/tinylcm` of its own file system, never the host's `/data`.
#[test]
fn the_unit_command_line_keeps_its_state_on_the_data_file_system() {
    let mut device = ShippedDevice::new(Some(64 << 20));
    device.env("TINYLCM_STATUS__INTERVAL_SECONDS", "1");
    let words = device.command_line();
    assert_eq!(
        words[1..],
        [
            "run",
            "--config",
            &device.config_path().display().to_string()
        ]
    );
    device.start();
    let first = device.wait_report(90, "a first status report with frames", |r| r.frames > 0);
    device.wait_report(60, "frames to grow", |r| r.frames > first.frames);
    assert!(device.state_dir().join("state.redb").is_file());
    assert!(
        !std::path::Path::new("/data/tinylcm/state.redb").exists(),
        "the device wrote to the host's /data"
    );
    device.stop();
    let text = std::fs::read_to_string(device.status_path()).unwrap();
    assert!(
        text.contains("\"running\": false") || text.contains("\"running\":false"),
        "{text}"
    );
}
