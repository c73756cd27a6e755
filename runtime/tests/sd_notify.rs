//! systemd notifications through a real Unix datagram socket standing in for systemd's
//! `NOTIFY_SOCKET`: READY after the first good inference, WATCHDOG only while frames
//! progress, STATUS at a low rate, STOPPING at the end — driven by synthetic frame reports
//! (exact timing) and by the real pipeline on the built-in model.

#[path = "support/alloc.rs"]
mod alloc_support;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinylcm::assemble;
use tinylcm::config::Config;
use tinylcm::frame::SourceKind;
use tinylcm::pipeline::Prediction;
use tinylcm::pipeline::runner::{self, FrameReport, Observer, RunOptions};
use tinylcm::stats::{Outcomes, StageLatencies};
use tinylcm::systemd::{Notifier, WatchdogObserver};

/// The fake systemd: a bound datagram socket in a temporary folder, read by a thread (the
/// kernel queues only a few datagrams, `net.unix.max_dgram_qlen`, 10 here, like systemd
/// reading as they come).
struct FakeSystemd {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    received: Arc<Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
}

impl FakeSystemd {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (sink, stop) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8(buf[..n].to_vec()).unwrap();
                    sink.lock().unwrap().push(text);
                }
            }
        });
        FakeSystemd {
            _dir: dir,
            path,
            received,
            done,
        }
    }

    fn notifier(&self) -> Notifier {
        Notifier::connect(self.path.as_os_str()).unwrap()
    }

    /// Every message received until nothing more arrives for 150 ms.
    fn drain(&self) -> Vec<String> {
        let mut seen = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = self.received.lock().unwrap().len();
            if now == seen {
                return std::mem::take(&mut *self.received.lock().unwrap());
            }
            seen = now;
        }
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn count(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| *l == line)
        .count()
}

/// Feeds synthetic frame reports with an exact loop clock.
struct Frames {
    latencies: StageLatencies,
    outcomes: Outcomes,
    scores: Vec<f32>,
    frames: u64,
}

impl Frames {
    fn new() -> Self {
        Frames {
            latencies: StageLatencies::default(),
            outcomes: Outcomes::default(),
            scores: vec![0.1, 0.9],
            frames: 0,
        }
    }

    fn feed(&mut self, observer: &mut dyn Observer, at: Duration, with_outputs: bool) {
        self.frames += 1;
        let scores: &[f32] = if with_outputs { &self.scores } else { &[] };
        let prediction = Prediction {
            class: 1,
            label: "ball",
            confidence: if with_outputs { 0.9 } else { f32::NAN },
            scores,
            embedding: None,
        };
        observer.on_frame(&FrameReport {
            frames: self.frames,
            elapsed: at,
            prediction: &prediction,
            label: "ball",
            autonomy: None,
            truth: None,
            image: &Default::default(),
            latencies: &self.latencies,
            outcomes: &self.outcomes,
        });
    }
}

#[test]
fn ready_after_the_first_good_frame_and_pings_only_while_frames_progress() {
    let systemd = FakeSystemd::new();
    let mut observer =
        WatchdogObserver::new(systemd.notifier(), Some(Duration::from_millis(200)), "m1")
            .with_status_every(Duration::from_secs(1));
    let mut frames = Frames::new();
    let ms = Duration::from_millis;

    // A frame without outputs is no inference: not ready, no ping.
    frames.feed(&mut observer, ms(5), false);
    assert!(systemd.drain().is_empty());
    assert!(!observer.is_ready());

    // The first good frame: READY=1, a first STATUS line and the first ping.
    frames.feed(&mut observer, ms(10), true);
    let first = systemd.drain();
    assert_eq!(count(&first, "READY=1"), 1, "{first:?}");
    assert_eq!(count(&first, "WATCHDOG=1"), 1, "{first:?}");
    assert!(
        first
            .iter()
            .any(|m| m.starts_with("STATUS=running: ") && m.contains("model m1")),
        "{first:?}"
    );

    // 2 s of frames every 10 ms: a ping every 100 ms (half the timeout), a STATUS a second.
    for k in 1..=200u64 {
        frames.feed(&mut observer, ms(10 + 10 * k), true);
        // At most two messages per 10 frames: give the reader time to keep up.
        if k % 10 == 0 {
            std::thread::sleep(ms(2));
        }
    }
    let running = systemd.drain();
    let pings = count(&running, "WATCHDOG=1");
    assert!((19..=21).contains(&pings), "{pings} pings: {running:?}");
    assert_eq!(count(&running, "READY=1"), 0, "READY is sent once");
    let status: Vec<_> = running
        .iter()
        .filter(|m| m.starts_with("STATUS="))
        .collect();
    assert_eq!(status.len(), 2, "{status:?}");
    assert!(status[1].contains("100.0 fps"), "{status:?}");

    // The loop stalls (no frames, so no observer calls): systemd hears nothing.
    std::thread::sleep(ms(300));
    assert!(systemd.drain().is_empty());
    // A repeated frame count is no progress either.
    frames.frames -= 1;
    frames.feed(&mut observer, ms(5000), true);
    assert!(systemd.drain().is_empty());

    // Frames again: pings again.
    frames.feed(&mut observer, ms(5100), true);
    assert_eq!(count(&systemd.drain(), "WATCHDOG=1"), 1);

    observer.notifier_mut().stopping().unwrap();
    assert_eq!(systemd.drain(), vec!["STOPPING=1\n".to_string()]);
    assert_eq!(observer.failures(), 0);
}

/// systemd's socket read by the test's own thread after each frame, so the kernel's queue
/// (ten datagrams) never fills however the machine schedules a reader thread; reading into
/// a buffer on the stack allocates nothing.
struct InlineSystemd {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
}

impl InlineSystemd {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        InlineSystemd {
            _dir: dir,
            path,
            socket,
        }
    }

    /// Reads every queued datagram: how many there were and how many were STATUS lines.
    fn take(&self) -> (usize, usize) {
        let mut buf = [0u8; 4096];
        let (mut all, mut status) = (0, 0);
        while let Ok(n) = self.socket.recv(&mut buf) {
            all += 1;
            if buf[..n].starts_with(b"STATUS=") {
                status += 1;
            }
        }
        (all, status)
    }

    /// Reads every queued datagram as text.
    fn take_text(&self) -> Vec<String> {
        let mut buf = [0u8; 4096];
        let mut messages = Vec::new();
        while let Ok(n) = self.socket.recv(&mut buf) {
            messages.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        messages
    }
}

/// The watchdog observer with systemd's socket read right after each frame it saw.
struct ReadAfterEachFrame<'a> {
    observer: WatchdogObserver,
    systemd: &'a InlineSystemd,
    messages: Vec<String>,
}

impl Observer for ReadAfterEachFrame<'_> {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.observer.on_frame(report);
        self.messages.extend(self.systemd.take_text());
    }
}

#[test]
fn pings_and_status_lines_allocate_nothing() {
    let systemd = InlineSystemd::new();
    let notifier = Notifier::connect(systemd.path.as_os_str()).unwrap();
    let mut observer = WatchdogObserver::new(notifier, Some(Duration::from_millis(2)), "m")
        .with_status_every(Duration::from_millis(3));
    let mut frames = Frames::new();
    frames.feed(&mut observer, Duration::from_millis(1), true);
    systemd.take();
    let (mut received, mut status) = (0, 0);
    let allocations = alloc_support::allocations(|| {
        for k in 2..200u64 {
            frames.feed(&mut observer, Duration::from_millis(k), true);
            // Up to two datagrams per frame; the kernel queues ten.
            let (all, lines) = systemd.take();
            received += all;
            status += lines;
        }
    });
    assert_eq!(allocations, 0);
    assert!(observer.pings() > 50);
    assert!(status > 0, "no STATUS line among {received} datagrams");
    assert_eq!(observer.failures(), 0);
}

#[test]
fn the_real_pipeline_makes_the_service_ready_and_feeds_the_watchdog() {
    let systemd = InlineSystemd::new();
    let mut config = Config::default();
    config.source.kind = SourceKind::Synthetic;
    let model = assemble::load_model(&config.model).unwrap();
    let mut pipeline = assemble::pipeline(&config, &model)
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/fetch-libs first)"));
    let mut source = assemble::source(&config).unwrap();
    // A 2 µs timeout pings every frame: 40 frames, 40 pings.
    let mut reading = ReadAfterEachFrame {
        observer: WatchdogObserver::new(
            Notifier::connect(systemd.path.as_os_str()).unwrap(),
            Some(Duration::from_micros(2)),
            "builtin",
        ),
        systemd: &systemd,
        messages: Vec::new(),
    };
    let summary = runner::run(
        source.as_mut(),
        &mut pipeline,
        &RunOptions {
            max_frames: Some(40),
            capture_depth: 2,
            ..RunOptions::default()
        },
        &mut reading,
    )
    .unwrap();
    assert_eq!(summary.frames, 40);
    let ReadAfterEachFrame {
        mut observer,
        mut messages,
        ..
    } = reading;
    observer.notifier_mut().stopping().unwrap();
    messages.extend(systemd.take_text());
    assert_eq!(count(&messages, "READY=1"), 1, "{messages:?}");
    assert_eq!(count(&messages, "WATCHDOG=1"), 40, "{messages:?}");
    assert_eq!(messages.last().map(String::as_str), Some("STOPPING=1\n"));
    assert_eq!(observer.failures(), 0);
    assert!(Path::new(&systemd.path).exists());
}
