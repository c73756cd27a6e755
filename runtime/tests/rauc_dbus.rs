//! The RAUC D-Bus client against Debian's real `rauc` service on a private session bus,
//! with file-backed A/B slots and a bootloader backend emulating U-Boot's try counters
//! (`support/rauc-harness.sh`). The harness needs its own mount namespace (a fake
//! `/proc/cmdline` tells RAUC which slot booted), so this test starts
//! `unshare -m rauc-harness.sh run ...` which runs this test binary again in a phase
//! that makes the client calls:
//!
//! 1. `no-service`: a bus without RAUC gives an error saying to start rauc.service.
//! 2. `booted-a`: booted from A, the factory image RAUC never installed: a failed health
//!    gate does not mark it bad (it is not on trial); a bundle signed by a foreign CA is
//!    refused with RAUC's reason; the real bundle installs and makes the other slot (B)
//!    primary.
//! 3. `booted-b` ("rebooted" into B): mark-good on the booted slot, then mark-bad rolls
//!    back: A is primary again; then `tinylcm healthcheck --mark-good
//!    --mark-bad-on-failure` as the unit runs it: a dead service while B is on trial marks
//!    it bad, a healthy one marks it good and records the installation as confirmed, and a
//!    dead service after that leaves the confirmed slot alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tinylcm::rauc::{BusAddress, RaucClient, RaucError};
use tinylcm_protocol::test_support;

#[path = "support/cli.rs"]
mod cli_support;
#[path = "support/status_writer.rs"]
mod status_writer;

const PHASE: &str = "TINYLCM_RAUC_PHASE";
const DIR: &str = "TINYLCM_RAUC_DIR";
const TEST: &str = "the_client_drives_a_real_rauc_service";

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/rauc-harness.sh")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_client_drives_a_real_rauc_service() {
    if let Some(phase) = std::env::var_os(PHASE) {
        let dir = PathBuf::from(std::env::var_os(DIR).expect("harness directory"));
        return child(phase.to_str().unwrap(), &dir);
    }
    let missing: Vec<_> = ["rauc", "unshare", "dbus-daemon", "mke2fs", "openssl"]
        .into_iter()
        .filter(|p| !have(p))
        .collect();
    if !missing.is_empty() {
        test_support::missing(
            &format!("{missing:?} (with root, for unshare -m)"),
            "apt-get install rauc rauc-service dbus e2fsprogs openssl util-linux, as root \
             (./scripts/test runtime installs them)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let setup = Command::new("sh")
        .arg(harness())
        .arg("setup")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(setup.status.success(), "harness setup: {setup:?}");
    phase(dir.path(), "A", "no-service", true);
    phase(dir.path(), "A", "booted-a", false);
    phase(dir.path(), "B", "booted-b", false);
}

/// Run this test again as `name` inside the harness, booted from `slot`.
fn phase(dir: &Path, slot: &str, name: &str, no_service: bool) {
    let mut cmd = Command::new("unshare");
    cmd.arg("-m")
        .arg("sh")
        .arg(harness())
        .arg("run")
        .arg(dir)
        .arg(slot);
    let runner = std::env::var("TINYLCM_TEST_RUNNER").unwrap_or_default();
    cmd.args(runner.split_whitespace());
    cmd.arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(PHASE, name)
        .env(DIR, dir);
    if no_service {
        cmd.env("NO_RAUC_SERVICE", "1");
    }
    let out = cmd.output().unwrap();
    let log = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "phase {name} failed\n--- stdout\n{}\n--- stderr\n{}\n--- rauc service log\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

fn bus() -> BusAddress {
    BusAddress::Address(std::env::var("DBUS_SESSION_BUS_ADDRESS").expect("the harness's bus"))
}

fn slot(client: &RaucClient, name: &str) -> tinylcm::rauc::SlotSummary {
    client
        .slot_status()
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no slot {name}"))
}

/// The gate's configuration: RAUC on the harness's bus.
fn gate_config(dir: &Path) -> PathBuf {
    let config = dir.join("tinylcm.toml");
    let toml = format!("[rauc]\nenabled = true\nbus = {:?}\n", bus().to_string());
    std::fs::write(&config, toml).unwrap();
    config
}

/// `tinylcm healthcheck --mark-good --mark-bad-on-failure` with a short timeout.
fn healthcheck(config: &Path, status: &Path) -> (i32, String, String) {
    let out = cli_support::tinylcm()
        .arg("healthcheck")
        .arg("--config")
        .arg(config)
        .arg("--status-file")
        .arg(status)
        .args(["--timeout", "2", "--poll-ms", "50"])
        .args(["--mark-good", "--mark-bad-on-failure"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn child(phase: &str, dir: &Path) {
    let timeout = Duration::from_secs(60);
    match phase {
        "no-service" => {
            let e = RaucClient::connect(&bus()).unwrap_err();
            assert!(matches!(e, RaucError::NotRunning { .. }), "{e}");
            assert!(e.to_string().contains("is rauc.service running?"), "{e}");
        }
        "booted-a" => {
            // The session bus by name, as `[rauc] bus = "session"` gives it.
            let client = RaucClient::connect(&BusAddress::Session).unwrap();
            assert_eq!(client.booted_slot().unwrap(), "A");
            assert_eq!(client.compatible().unwrap(), "tinylcm-test-board");
            assert_eq!(client.operation().unwrap(), "idle");
            assert_eq!(client.primary().unwrap(), "rootfs.0");
            let a = slot(&client, "rootfs.0");
            assert_eq!(a.bootname.as_deref(), Some("A"));
            assert_eq!(a.state.as_deref(), Some("booted"));
            assert_eq!(a.class, "rootfs");

            // The factory slot is not on trial: a dead runtime (no status report at all)
            // fails the gate without marking it bad.
            let config = gate_config(dir);
            let (code, stdout, stderr) = healthcheck(&config, &dir.join("status-a.json"));
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                stderr.contains("booted slot rootfs.0 not marked bad: RAUC never installed it"),
                "{stderr}"
            );
            assert_eq!(
                slot(&client, "rootfs.0").boot_status.as_deref(),
                Some("good")
            );
            assert_eq!(client.primary().unwrap(), "rootfs.0");

            let client = RaucClient::connect(&bus()).unwrap();
            let e = client
                .install_bundle(&dir.join("other-ca.raucb"), timeout)
                .unwrap_err();
            match &e {
                RaucError::InstallFailed { last_error, .. } => {
                    assert!(last_error.contains("signature"), "{e}")
                }
                other => panic!("expected a refused install, got {other}"),
            }
            assert_eq!(
                client.primary().unwrap(),
                "rootfs.0",
                "a refused bundle changes nothing"
            );
            let e = client
                .install_bundle(&dir.join("none.raucb"), timeout)
                .unwrap_err();
            assert!(matches!(e, RaucError::Bundle { .. }), "{e}");

            client
                .install_bundle(&dir.join("good.raucb"), timeout)
                .unwrap();
            assert_eq!(client.primary().unwrap(), "rootfs.1");
            let b = slot(&client, "rootfs.1");
            assert_eq!(b.bundle_version.as_deref(), Some("2.0"));
            assert_eq!(b.installed_status.as_deref(), Some("ok"));
            let status = client.status().unwrap();
            assert_eq!(
                status.booted_slot().map(|s| s.name.as_str()),
                Some("rootfs.0")
            );
            let json = serde_json::to_string(&status).unwrap();
            assert!(
                json.contains("\"booted\":\"A\"") && json.contains("\"primary\":\"rootfs.1\""),
                "{json}"
            );
            assert!(status.last_error.is_none(), "{json}");
        }
        "booted-b" => {
            let client = RaucClient::connect(&bus()).unwrap();
            let boot_status = |name| slot(&client, name).boot_status;
            assert_eq!(client.booted_slot().unwrap(), "B");
            assert_eq!(client.mark_good_booted().unwrap(), "rootfs.1");
            assert_eq!(boot_status("rootfs.1").as_deref(), Some("good"));
            assert_eq!(client.primary().unwrap(), "rootfs.1");
            // A failed health gate marks the booted slot bad: the bootloader falls back.
            assert_eq!(client.mark_bad_booted().unwrap(), "rootfs.1");
            assert_eq!(boot_status("rootfs.1").as_deref(), Some("bad"));
            assert_eq!(client.primary().unwrap(), "rootfs.0");

            // The same through `tinylcm healthcheck` as the unit runs it. B is on trial (RAUC
            // installed it, no gate passed since): a dead service gets it marked bad ...
            let config = gate_config(dir);
            let status = dir.join("status.json");
            let record = dir.join(tinylcm::rauc::trial::FILE_NAME);
            let installed_at = slot(&client, "rootfs.1")
                .installed_at
                .expect("B was installed");
            assert!(client.mark_good_booted().is_ok());
            let (code, stdout, stderr) = healthcheck(&config, &status);
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                stderr.contains(&format!(
                    "booted slot rootfs.1 marked bad (on trial since its installation at {installed_at})"
                )),
                "{stderr}"
            );
            assert_eq!(boot_status("rootfs.1").as_deref(), Some("bad"));
            assert_eq!(client.primary().unwrap(), "rootfs.0");
            assert!(!record.exists(), "nothing confirmed yet");

            // ... a healthy service gets it marked good (primary again) and its
            // installation recorded as confirmed ...
            let writer = status_writer::Writer::start(status.clone(), 2, status_writer::SHA);
            let (code, stdout, stderr) = healthcheck(&config, &status);
            assert_eq!(code, 0, "{stdout}{stderr}");
            assert!(
                stdout.contains("marked booted slot rootfs.1 good"),
                "{stdout}"
            );
            assert_eq!(boot_status("rootfs.1").as_deref(), Some("good"));
            assert_eq!(client.primary().unwrap(), "rootfs.1");
            let text = std::fs::read_to_string(&record).unwrap();
            assert!(
                text.lines()
                    .any(|l| l == format!("rootfs.1 {installed_at}")),
                "{text}"
            );

            // ... and once confirmed, a dead service (the camera unplugged, say) fails the
            // gate without marking the slot bad: it stays primary and good.
            drop(writer);
            std::fs::remove_file(&status).unwrap();
            let (code, stdout, stderr) = healthcheck(&config, &status);
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(
                stderr.contains("booted slot rootfs.1 not marked bad: its installation at"),
                "{stderr}"
            );
            assert_eq!(boot_status("rootfs.1").as_deref(), Some("good"));
            assert_eq!(client.primary().unwrap(), "rootfs.1");
        }
        other => panic!("unknown phase {other}"),
    }
}
