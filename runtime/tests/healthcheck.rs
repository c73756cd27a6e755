//! `tinylcm healthcheck`, the boot health gate, against status files written by the test
//! the way the service writes them: healthy only with a fresh report, a model and growing
//! frame counts; a one-line reason and exit 1 otherwise.

#[path = "support/cli.rs"]
mod cli_support;

use std::path::Path;

use status_writer::{SHA, Writer, report, write};
use tinylcm::utc::now_unix_ms;

#[path = "support/status_writer.rs"]
mod status_writer;

/// `tinylcm healthcheck` on `status` with a short poll and `timeout` seconds.
fn healthcheck(status: &Path, timeout: u64, extra: &[&str]) -> (i32, String, String) {
    let out = cli_support::tinylcm()
        .arg("healthcheck")
        .arg("--status-file")
        .arg(status)
        .args(["--timeout", &timeout.to_string(), "--poll-ms", "50"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_service_with_growing_frames_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let _writer = Writer::start(status.clone(), 3, SHA);
    let (code, stdout, stderr) = healthcheck(&status, 20, &["--mark-good"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("healthy: "), "{stdout}");
    // RAUC is off by default: nothing is marked, and the output says so.
    assert!(stdout.contains("RAUC is disabled"), "{stdout}");
}

#[test]
fn unhealthy_services_fail_with_one_line_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let stale = dir.path().join("stale.json");
    write(&stale, &report(10, now_unix_ms() - 60_000, SHA));
    let stuck = dir.path().join("stuck.json");
    let no_model = dir.path().join("no-model.json");
    let _stuck = Writer::start(stuck.clone(), 0, SHA);
    let _no_model = Writer::start(no_model.clone(), 5, "");
    for (path, reason) in [
        (&missing, "no status report at"),
        (&stale, "the status report is stale"),
        (&stuck, "frames are not increasing"),
        (&no_model, "no model loaded"),
    ] {
        let (code, stdout, stderr) = healthcheck(path, 1, &[]);
        assert_eq!(code, 1, "{path:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("unhealthy after 1 s") && stderr.contains(reason),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn a_failed_gate_with_an_unreachable_rauc_says_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[rauc]\nenabled = true\nbus = \"unix:path=/nonexistent/tinylcm-test-bus\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = healthcheck(
        &dir.path().join("missing.json"),
        1,
        &[
            "--config",
            config.to_str().unwrap(),
            "--mark-bad-on-failure",
        ],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("marking the slot bad failed too") && stderr.contains("rauc.bus"),
        "{stderr}"
    );
}
