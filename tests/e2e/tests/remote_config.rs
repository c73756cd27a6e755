//! A remote configuration never takes a device off the air. The real service runs as the
//! shipped unit runs it ([`tinylcm_e2e::shipped`]: `ExecStart=`'s command line, no `--state`,
//! state at the default `/data/tinylcm`, the image's config with only the camera swapped for
//! the synthetic scene and RAUC off, sync settings from `provision.env`), enrolled with a live
//! sphere-lite:
//!
//! * sphere-lite refuses a fleet-wide `[quarantine] thumbnail-dir` (a path) with a 400 naming
//!   the key, so it reaches no device;
//! * a fragment that passes the allow-list but not the device's own schema is refused on
//!   receipt, reported, and shown by the server as refused with the device's reason;
//! * a `thumbnail-dir` fragment stored by an older runtime from an older server (the fragment
//!   that crash-looped a fleet) is refused at the next start and reported; the device keeps
//!   inferring and never applies it again.

use serde_json::{Value, json};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::shipped::ShippedDevice;
use tinylcm_e2e::sphere::Sphere;

/// The device's configuration state as the operator's API gives it.
fn config_state(sphere: &Sphere, id: &str) -> Value {
    let (status, body) = sphere.call("GET", &tinylcm_protocol::paths::device_config(id), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Fails before this change at step 1: the server took the `thumbnail-dir` fragment (200)
/// and would have queued it to every device. Steps 2 and 3 cannot pass before it either: no
/// device reported a refusal (there was no route), and a stored `thumbnail-dir` fragment was
/// applied at every start, the generation failed to create the thumbnail folder and the
/// process exited (a crash loop; the in-process fallback is shown to fail
/// without this change in `runtime/tests/service.rs`).
#[test]
fn a_configuration_the_device_cannot_run_is_refused_reported_and_the_device_stays_on_the_air() {
    let sphere = Sphere::embedded(None);
    let mut device = ShippedDevice::new(Some(256 << 20));
    device.provision_sync(&sphere.url(), &sphere.enrollment_key);
    for (key, value) in [
        ("TINYLCM_SYNC__INTERVAL_SECONDS", "1"),
        ("TINYLCM_SYNC__MAX_BACKOFF_SECONDS", "2"),
        ("TINYLCM_STATUS__INTERVAL_SECONDS", "1"),
    ] {
        device.env(key, value);
    }
    device.start();
    let id = device.wait(90, "the device to enroll", |d| d.device_id());
    device.wait_report(90, "frames", |r| r.frames > 0);

    // 1. A path is refused by the server, naming the key: nothing is queued.
    let (status, body) = sphere.call(
        "PUT",
        &tinylcm_protocol::paths::scope_config("all"),
        Some(&json!({ "toml": "[quarantine]\nthumbnail-dir = \"/data/tinylcm/state.redb/q\"\n" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("`quarantine.thumbnail-dir`"),
        "{body}"
    );

    // 2. Allowed keys the device's own schema refuses together (exit-limit above limit):
    //    refused on receipt, reported, shown; the device runs on.
    let (status, body) = sphere.call(
        "PUT",
        &tinylcm_protocol::paths::scope_config("all"),
        Some(&json!({ "toml": "[drift.ewma-confidence]\nexit-limit = 50.0\n" })),
    );
    assert_eq!(status, 200, "{body}");
    let refused = device.wait(90, "the server to show the refusal", |_| {
        let state = config_state(&sphere, &id);
        state["refused"].is_object().then_some(state)
    });
    assert_eq!(
        refused["refused"]["revision"], refused["revision"],
        "{refused}"
    );
    let reason = refused["refused"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("drift.ewma-confidence.exit-limit"),
        "{reason}"
    );
    assert!(
        !device.state_dir().join("remote-config.json").exists(),
        "the refused fragment was stored"
    );
    let before = device.wait_report(30, "frames after the refusal", |r| r.frames > 0);
    device.wait_report(60, "frames to grow", |r| r.frames > before.frames + 10);
    device.stop();

    // 3. A fragment an older server sent and an older runtime stored: the path that
    //    crash-looped a fleet. The next start refuses it, reports it, and infers.
    let stored = device.state_dir().join("remote-config.json");
    std::fs::write(
        &stored,
        serde_json::to_vec(&json!({
            "format": 1,
            "revision": "0123456789abcdef",
            "toml": "[quarantine]\nthumbnail-dir = \"/data/tinylcm/state.redb/quarantine\"\n",
            "applied_unix_ms": 1,
        }))
        .unwrap(),
    )
    .unwrap();
    device.start();
    let first = device.wait_report(90, "frames with the stored fragment", |r| r.frames > 0);
    device.wait_report(60, "frames to grow", |r| r.frames > first.frames + 10);
    assert!(!stored.exists(), "the refused fragment is still in force");
    let state = device.wait(90, "the server to show the second refusal", |_| {
        let state = config_state(&sphere, &id);
        (state["refused"]["revision"] == "0123456789abcdef").then_some(state)
    });
    let reason = state["refused"]["reason"].as_str().unwrap();
    assert!(reason.contains("quarantine.thumbnail-dir"), "{reason}");
    let kept: Value = serde_json::from_slice(
        &std::fs::read(device.state_dir().join("remote-config.refused.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(kept["revision"], "0123456789abcdef");
    assert_eq!(kept["reported"], true);

    // A restart runs on the local file at once: the refused fragment is gone for good.
    device.stop();
    device.start();
    device.wait_report(90, "frames after a restart", |r| r.frames > 0);
    assert!(!stored.exists());
    assert!(
        !device.log().contains("remote configuration in force"),
        "{}",
        device.log_tail()
    );
    device.stop();
}
