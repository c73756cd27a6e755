//! The status observer: a report after the first frame and then every interval, written
//! atomically by its own thread, and a final one with `running: false`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tinylcm::pipeline::Prediction;
use tinylcm::pipeline::runner::{EndReason, FrameReport, Observer, RunSummary};
use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm::stats::{Outcomes, Stage, StageLatencies};
use tinylcm::status::{
    ModelInfo, STATUS_FORMAT, StatusError, StatusObserver, StatusOptions, StatusReport,
};

#[path = "support/alloc.rs"]
mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

fn options(path: &Path, interval: Duration, store: Option<Arc<Store>>) -> StatusOptions {
    StatusOptions {
        path: path.to_path_buf(),
        interval,
        model: ModelInfo {
            origin: "builtin:test".into(),
            sha256: "ab".repeat(32),
            backend: "tflite-c".into(),
            accelerator: "xnnpack".into(),
            source: "synthetic".into(),
        },
        store,
        disk: path.parent().map(Path::to_path_buf),
        extras: None,
    }
}

/// Feeds frame `frames` at loop time `elapsed` with `label` and `confidence`.
fn frame(
    observer: &mut StatusObserver,
    frames: u64,
    elapsed: Duration,
    label: &str,
    confidence: f32,
    latencies: &mut StageLatencies,
    outcomes: &mut Outcomes,
) {
    latencies.record(Stage::Invoke, Duration::from_micros(900 + frames));
    outcomes.record(label, confidence, None);
    let scores = [confidence, 1.0 - confidence];
    let prediction = Prediction {
        class: 0,
        label,
        confidence,
        scores: &scores,
        embedding: None,
    };
    observer.on_frame(&FrameReport {
        frames,
        elapsed,
        prediction: &prediction,
        label,
        autonomy: None,
        truth: None,
        image: &Default::default(),
        latencies,
        outcomes,
    });
}

/// Waits until the status file holds a report satisfying `done` (the writer is a thread).
fn wait_for(path: &Path, done: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = StatusReport::read(path) {
            if done(&r) {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching report in {}: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn reports_after_the_first_frame_then_every_interval_then_a_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let store =
        Arc::new(Store::open(dir.path().join("state.redb"), DurabilityPolicy::default()).unwrap());
    store.increment("frames", 1).unwrap();
    store.flush().unwrap();
    let interval = Duration::from_millis(100);
    let mut observer = StatusObserver::start(options(&path, interval, Some(store))).unwrap();
    let mut lat = StageLatencies::default();
    let mut out = Outcomes::default();
    let ms = Duration::from_millis;

    frame(&mut observer, 1, ms(1), "ball", 0.9, &mut lat, &mut out);
    let first = wait_for(&path, |r| r.frames == 1);
    assert_eq!(first.format, STATUS_FORMAT);
    assert!(first.running);
    assert_eq!(first.pid, std::process::id());
    assert_eq!(first.interval_s, 0.1);
    assert_eq!(first.model.origin, "builtin:test");
    assert!(first.written_unix_ms >= first.started_unix_ms);
    assert_eq!(first.latency["invoke"].count, 1);
    assert_eq!(first.classes["ball"].total, 1);
    assert_eq!(first.store.unwrap().commits, 1);
    // Sampled by the writer on Linux.
    if cfg!(target_os = "linux") {
        assert!(first.system.rss_bytes.is_some());
    }

    // Frames within the interval do not report; the one at the interval does, with the
    // interval's own confidence statistics and class counts.
    for i in 2..=10u64 {
        let label = if i % 2 == 0 { "box" } else { "ball" };
        frame(
            &mut observer,
            i,
            ms(10 * i),
            label,
            i as f32 / 10.0,
            &mut lat,
            &mut out,
        );
    }
    std::thread::sleep(ms(50));
    assert_eq!(
        StatusReport::read(&path).unwrap().frames,
        1,
        "reported early"
    );
    frame(&mut observer, 11, ms(101), "box", 0.05, &mut lat, &mut out);
    let second = wait_for(&path, |r| r.frames == 11);
    assert_eq!(second.confidence.frames, 10);
    assert_eq!(second.confidence.min, Some(0.05f32 as f64));
    assert_eq!(second.confidence.p10, Some(0.05));
    let mean = second.confidence.mean.unwrap();
    assert!((mean - (5.4 + 0.05) / 10.0).abs() < 1e-6, "{mean}");
    assert_eq!(second.classes["box"].total, 6);
    assert_eq!(second.classes["box"].interval, 6);
    assert_eq!(second.classes["ball"].total, 5);
    assert_eq!(second.classes["ball"].interval, 4);
    assert!(
        (second.fps_interval - 100.0).abs() < 1e-6,
        "{}",
        second.fps_interval
    );
    assert!((second.fps - 11.0 / 0.101).abs() < 1e-6, "{}", second.fps);
    assert_eq!(second.dropped_reports, 0);

    frame(&mut observer, 12, ms(150), "ball", 0.5, &mut lat, &mut out);
    let summary = RunSummary {
        frames: 12,
        elapsed: ms(150),
        latencies: lat,
        outcomes: out,
        end: EndReason::Stopped,
    };
    observer.finish(Some(&summary), None).unwrap();
    // finish waits for the write: no polling needed.
    let last = StatusReport::read(&path).unwrap();
    assert!(!last.running);
    assert_eq!(last.frames, 12);
    assert_eq!(last.confidence.frames, 1);
    assert_eq!(last.latency["invoke"].count, 12);
    // Only the report is left in the folder besides the database: no temporaries.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["state.redb", "status.json"]);
}

#[test]
fn a_failed_run_still_gets_a_final_report_from_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let mut observer =
        StatusObserver::start(options(&path, Duration::from_secs(60), None)).unwrap();
    let mut lat = StageLatencies::default();
    let mut out = Outcomes::default();
    frame(
        &mut observer,
        1,
        Duration::from_millis(3),
        "bar",
        0.7,
        &mut lat,
        &mut out,
    );
    wait_for(&path, |r| r.running);
    observer.finish(None, None).unwrap();
    let last = StatusReport::read(&path).unwrap();
    assert!(!last.running);
    assert_eq!(last.frames, 1);
    assert_eq!(last.classes["bar"].total, 1);
}

#[test]
fn a_final_report_that_cannot_be_written_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // The status file's folder would have to be inside a regular file.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let path = blocker.join("status.json");
    let observer = StatusObserver::start(options(&path, Duration::from_secs(1), None)).unwrap();
    let e = observer.finish(None, None).unwrap_err();
    assert!(matches!(e, StatusError::Io { .. }), "{e}");
    assert!(e.to_string().contains("not-a-folder"), "{e}");
}

#[test]
fn frames_between_reports_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.json");
    let mut observer =
        StatusObserver::start(options(&path, Duration::from_secs(3600), None)).unwrap();
    let mut lat = StageLatencies::default();
    let mut out = Outcomes::default();
    // The first frame reports (and allocates the report); the next ones only count.
    frame(
        &mut observer,
        1,
        Duration::from_millis(1),
        "ball",
        0.9,
        &mut lat,
        &mut out,
    );
    let scores = [0.8, 0.2];
    let prediction = Prediction {
        class: 0,
        label: "ball",
        confidence: 0.8,
        scores: &scores,
        embedding: None,
    };
    let n = alloc_support::allocations(|| {
        for i in 2..1000u64 {
            observer.on_frame(&FrameReport {
                frames: i,
                elapsed: Duration::from_millis(i),
                prediction: &prediction,
                label: "ball",
                autonomy: None,
                truth: None,
                image: &Default::default(),
                latencies: &lat,
                outcomes: &out,
            });
        }
    });
    assert_eq!(n, 0);
    observer.finish(None, None).unwrap();
}
