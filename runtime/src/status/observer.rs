//! [`StatusObserver`]: watches the inference loop and publishes a [`StatusReport`] every
//! interval through a writer thread.
//!
//! The loop must never wait on the disk, so the work is split: per frame the observer only
//! counts (a confidence bin, a comparison with the next due time: no I/O, no allocation);
//! once per interval it builds the report from what the loop already measured (latency
//! histograms, outcomes, the autonomy layer's counts) and offers it to the writer over a
//! channel of one slot with `try_send`. If the writer is still busy (a slow SD card) the
//! report is dropped and counted, never queued without bound. The writer thread samples
//! the system metrics (file reads, so not on the inference thread), then replaces the file
//! atomically: a temporary file in the same folder, renamed over the old one, so a reader
//! sees the old report or the new one and never half of one.
//!
//! The file is not fsynced: it is rewritten every few seconds, losing the last one to a
//! power cut costs nothing, and an fsync every interval would wear the SD card. A reader
//! must therefore tolerate an empty or damaged file after a power cut
//! ([`StatusReport::read`] reports it as damaged).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::report::{
    AutonomyStatus, ModelInfo, STATUS_FORMAT, StatusExtras, StatusReport, StoreFigures,
};
use super::system::{SystemMetrics, SystemSampler};
use super::window::ConfidenceWindow;
use super::{StatusError, now_unix_ms};
use crate::autonomy::Autonomy;
use crate::pipeline::runner::{FrameReport, Observer, RunSummary};
use crate::state::Store;
use crate::stats::{Outcomes, Stage, StageLatencies};

/// What a [`StatusObserver`] is started with.
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The status file.
    pub path: PathBuf,
    /// Time between reports (at least 1 ms).
    pub interval: Duration,
    /// What runs.
    pub model: ModelInfo,
    /// The state store, for its writer's figures.
    pub store: Option<Arc<Store>>,
    /// The folder whose file system's free space is reported (the state folder).
    pub disk: Option<PathBuf>,
    /// What the service adds to each report on the writer thread.
    pub extras: Option<StatusExtras>,
}

/// The loop's figures a report is built from: a frame's, or a finished run's.
struct View<'a> {
    frames: u64,
    elapsed: Duration,
    latencies: &'a StageLatencies,
    outcomes: &'a Outcomes,
    autonomy: Option<&'a Autonomy>,
}

/// Publishes the status of a run to a file; see the module documentation.
pub struct StatusObserver {
    path: PathBuf,
    interval: Duration,
    model: ModelInfo,
    store: Option<Arc<Store>>,
    started: Instant,
    started_unix_ms: u64,
    /// `FrameReport::elapsed` at which the next report is due.
    next_due: Duration,
    window: ConfidenceWindow,
    /// Frames and loop time at the start of the current interval.
    window_start: (u64, Duration),
    /// Class totals at the start of the current interval.
    classes_before: BTreeMap<String, u64>,
    /// The last report sent, for a final report after a failed run.
    last: Option<StatusReport>,
    dropped: u64,
    tx: Option<SyncSender<StatusReport>>,
    writer: Option<JoinHandle<Result<(), StatusError>>>,
}

impl std::fmt::Debug for StatusObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusObserver")
            .field("path", &self.path)
            .field("interval", &self.interval)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl StatusObserver {
    /// Starts the writer thread. The first report is written after the first frame, then
    /// one every `interval`.
    pub fn start(options: StatusOptions) -> Result<Self, StatusError> {
        // One slot: a report waiting while another is written is all the buffering a
        // periodic snapshot needs; older ones are worthless once a newer one exists.
        let (tx, rx) = sync_channel(1);
        let path = options.path.clone();
        let sampler = SystemSampler::new(options.disk.clone());
        let extras = options.extras.clone();
        let writer = std::thread::Builder::new()
            .name("status-writer".into())
            .spawn(move || write_loop(&path, rx, sampler, extras))
            .map_err(|e| StatusError::Thread(format!("cannot start: {e}")))?;
        Ok(StatusObserver {
            path: options.path,
            interval: options.interval.max(Duration::from_millis(1)),
            model: options.model,
            store: options.store,
            started: Instant::now(),
            started_unix_ms: now_unix_ms(),
            next_due: Duration::ZERO,
            window: ConfidenceWindow::default(),
            window_start: (0, Duration::ZERO),
            classes_before: BTreeMap::new(),
            last: None,
            dropped: 0,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// The status file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reports dropped so far because the writer was busy.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the final report (`running: false`) from the run's summary, or from the last
    /// report when the run failed, waits until it is written and stops the writer.
    pub fn finish(
        mut self,
        summary: Option<&RunSummary>,
        autonomy: Option<&Autonomy>,
    ) -> Result<(), StatusError> {
        let report = match (summary, self.last.take()) {
            (Some(s), _) => self.build(
                &View {
                    frames: s.frames,
                    elapsed: s.elapsed,
                    latencies: &s.latencies,
                    outcomes: &s.outcomes,
                    autonomy,
                },
                false,
            ),
            (None, Some(mut last)) => {
                last.running = false;
                last.uptime_s = self.started.elapsed().as_secs_f64();
                last.autonomy = autonomy.map(AutonomyStatus::of).or(last.autonomy);
                last.store = self.store_figures();
                last.dropped_reports = self.dropped;
                last
            }
            (None, None) => self.build(
                &View {
                    frames: 0,
                    elapsed: Duration::ZERO,
                    latencies: &StageLatencies::default(),
                    outcomes: &Outcomes::default(),
                    autonomy,
                },
                false,
            ),
        };
        let tx = self
            .tx
            .take()
            .ok_or_else(|| StatusError::Thread("the writer had already stopped".into()))?;
        // Blocking: at shutdown the final report must not be dropped.
        let sent = tx.send(report);
        drop(tx);
        let written = match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StatusError::Thread("the writer panicked".into())),
            None => Ok(()),
        };
        sent.map_err(|_| StatusError::Thread("the writer had already stopped".into()))?;
        written
    }

    fn store_figures(&self) -> Option<StoreFigures> {
        self.store.as_ref().map(|s| StoreFigures::of(s))
    }

    /// A report of `view`; starts the next interval.
    fn build(&mut self, view: &View<'_>, running: bool) -> StatusReport {
        let secs = view.elapsed.as_secs_f64();
        let (frames_before, elapsed_before) = self.window_start;
        let interval_secs = (view.elapsed.saturating_sub(elapsed_before)).as_secs_f64();
        let rate = |frames: u64, secs: f64| {
            if secs > 0.0 {
                frames as f64 / secs
            } else {
                0.0
            }
        };
        let classes = view
            .outcomes
            .predicted
            .iter()
            .map(|(label, &total)| {
                let before = self.classes_before.get(label).copied().unwrap_or(0);
                let count = super::report::ClassCount {
                    total,
                    interval: total.saturating_sub(before),
                };
                (label.clone(), count)
            })
            .collect();
        let report = StatusReport {
            format: STATUS_FORMAT,
            running,
            // Set by the writer when it writes.
            written_unix_ms: 0,
            started_unix_ms: self.started_unix_ms,
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            interval_s: self.interval.as_secs_f64(),
            model: self.model.clone(),
            frames: view.frames,
            fps: rate(view.frames, secs),
            fps_interval: rate(view.frames.saturating_sub(frames_before), interval_secs),
            latency: Stage::ALL
                .iter()
                .map(|&s| (s.name().to_string(), view.latencies.percentiles(s)))
                .collect(),
            confidence: self.window.stats(),
            classes,
            autonomy: view.autonomy.map(AutonomyStatus::of),
            // Sampled by the writer: reading files is no work for the inference thread.
            system: SystemMetrics::default(),
            store: self.store_figures(),
            dropped_reports: self.dropped,
            failed_writes: 0,
            release: None,
            sync: None,
            rauc: None,
        };
        self.window.clear();
        self.window_start = (view.frames, view.elapsed);
        self.classes_before.clone_from(&view.outcomes.predicted);
        report
    }

    fn send(&mut self, report: StatusReport) {
        let Some(tx) = &self.tx else { return };
        self.last = Some(report.clone());
        match tx.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(
                    "the status writer stopped; {} is no longer updated",
                    self.path.display()
                );
                self.tx = None;
            }
        }
    }
}

impl Observer for StatusObserver {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.window.add(report.prediction.confidence);
        if report.elapsed < self.next_due {
            return;
        }
        self.next_due = report.elapsed + self.interval;
        let status = self.build(
            &View {
                frames: report.frames,
                elapsed: report.elapsed,
                latencies: report.latencies,
                outcomes: report.outcomes,
                autonomy: report.autonomy,
            },
            true,
        );
        self.send(status);
    }
}

/// The writer thread: each report gets the system metrics and is written; returns the
/// outcome of the last write.
fn write_loop(
    path: &Path,
    rx: Receiver<StatusReport>,
    mut sampler: SystemSampler,
    extras: Option<StatusExtras>,
) -> Result<(), StatusError> {
    let mut last = Ok(());
    let mut failed_writes = 0u64;
    for mut report in rx {
        report.system = sampler.sample();
        if let Some(StatusExtras(extras)) = &extras {
            extras(&mut report);
        }
        report.failed_writes = failed_writes;
        report.written_unix_ms = now_unix_ms();
        let result = report.to_json().and_then(|json| write_atomic(path, &json));
        match (&result, &last) {
            // Logged once when writes start failing and once when they work again, so a
            // full disk does not flood the journal every interval.
            (Err(e), Ok(())) => tracing::warn!("cannot write the status report: {e}"),
            (Ok(()), Err(_)) => {
                tracing::info!("status report written again to {}", path.display())
            }
            _ => {}
        }
        failed_writes += u64::from(result.is_err());
        last = result;
    }
    last
}

/// Writes `text` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, text: &str) -> Result<(), StatusError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| StatusError::io("creating the folder of", dir, e))?;
    // Not fsynced: it is rewritten every few seconds, and SD card wear matters more.
    match crate::files::write_atomic(path, text.as_bytes(), crate::files::Durability::Unsynced) {
        Err(e) if e.raw_os_error() == Some(ENOSPC) => overwrite_in_place(path, text)
            .map_err(|_| StatusError::io("replacing (the disk is full)", path, e)),
        r => r.map_err(|e| StatusError::io("replacing", path, e)),
    }
}

/// `ENOSPC`: no space left on the device.
const ENOSPC: i32 = 28;

/// The full-disk fallback: a full data partition has no room for the temporary file of an
/// atomic replace, but the status file's own blocks are still there. Rewrites them in place,
/// padding a shorter report with spaces (JSON allows trailing whitespace) so the file never
/// needs a new block. A reader may see a torn file meanwhile and reads again; that beats a
/// status that stops while the disk is full, which is when it matters.
fn overwrite_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let old = f.metadata()?.len() as usize;
    let mut bytes = text.as_bytes().to_vec();
    if bytes.len() < old {
        bytes.resize(old, b' ');
    }
    f.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_disk_fallback_overwrites_in_place_and_stays_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, r#"{"a": "a longer old report"}"#).unwrap();
        overwrite_in_place(&path, r#"{"a": 1}"#).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), r#"{"a": "a longer old report"}"#.len());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["a"], 1);
        assert!(overwrite_in_place(&dir.path().join("absent.json"), "{}").is_err());
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/status.json");
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        // A folder where the file should be: an error naming it, and no temporary left.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        let e = write_atomic(&blocked, "three").unwrap_err().to_string();
        assert!(e.contains("blocked"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
