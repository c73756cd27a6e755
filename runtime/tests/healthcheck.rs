//! `tinylcm healthcheck`, the boot health gate, against status files written by the test
//! the way the service writes them: healthy only with a fresh report, a model and growing
//! frame counts; a one-line reason and exit 1 otherwise.

#[path = "support/cli.rs"]
mod cli_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tinylcm::status::{ModelInfo, STATUS_FORMAT, StatusReport};
use tinylcm::utc::now_unix_ms;

fn report(frames: u64, written_unix_ms: u64, sha256: &str) -> StatusReport {
    StatusReport {
        format: STATUS_FORMAT,
        running: true,
        written_unix_ms,
        started_unix_ms: 1_000,
        pid: 4242,
        uptime_s: 1.0,
        interval_s: 0.2,
        model: ModelInfo {
            origin: "builtin:default-f32".into(),
            sha256: sha256.into(),
            backend: "tflite-c 2.6.0".into(),
            accelerator: "xnnpack".into(),
            source: "synthetic".into(),
        },
        frames,
        fps: 10.0,
        fps_interval: 10.0,
        latency: Default::default(),
        confidence: Default::default(),
        classes: Default::default(),
        autonomy: None,
        system: Default::default(),
        store: None,
        dropped_reports: 0,
        failed_writes: 0,
    }
}

fn write(path: &Path, report: &StatusReport) {
    // Atomic replace, as the service does: the reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, report.to_json().unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A fake service rewriting `path` every 50 ms; `step` frames more each time.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: PathBuf, step: u64, sha256: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        write(&path, &report(1, now_unix_ms(), sha256));
        let thread = std::thread::spawn(move || {
            let mut frames = 1;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                frames += step;
                write(&path, &report(frames, now_unix_ms(), sha256));
            }
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SHA: &str = "abababababababababababababababababababababababababababababababab";

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
