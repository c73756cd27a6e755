//! A fake running service for the health gate's tests: writes `status.json` the way the
//! service does (atomic replace), fresh and with a frame count that grows by `step`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tinylcm::status::{ModelInfo, STATUS_FORMAT, StatusReport};
use tinylcm::utc::now_unix_ms;

pub fn report(frames: u64, written_unix_ms: u64, sha256: &str) -> StatusReport {
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
        release: None,
        sync: None,
        rauc: None,
    }
}

pub fn write(path: &Path, report: &StatusReport) {
    // Atomic replace, as the service does: the reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, report.to_json().unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A fake service rewriting `path` every 50 ms; `step` frames more each time.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(path: PathBuf, step: u64, sha256: &'static str) -> Self {
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

pub const SHA: &str = "abababababababababababababababababababababababababababababababab";
