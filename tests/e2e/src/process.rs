//! The `tinylcm run` child process as both device harnesses ([`crate::field`] and
//! [`crate::shipped`]) drive it: one log file per start, stopped with SIGTERM as systemd stops
//! it or killed with SIGKILL (a crash), waited on with the log's tail in every failure.
//!
//! Why a module of its own: the two harnesses start the binary differently (`--state` versus the
//! shipped unit's command line in a mount namespace) but must stop, kill, wait on and report a
//! run the same way; one copy keeps what "a clean stop" means the same for every test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use tinylcm::status::StatusReport;

/// The most of a log a test reads (a full disk can make a run log a lot).
const LOG_READ_LIMIT: u64 = 8 << 20;

/// A device's `tinylcm run` process while it runs, its starts and their logs.
pub struct Process {
    logs: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Process {
    /// No process yet; each start's log goes to `logs/run-N.log` (the folder must exist).
    pub fn new(logs: PathBuf) -> Process {
        Process {
            logs,
            child: None,
            starts: 0,
        }
    }

    /// Counts a new start and creates its log file, for the child's stdout and stderr; panics
    /// when the process runs already.
    pub fn next_log(&mut self) -> std::fs::File {
        assert!(self.child.is_none(), "the device runs already");
        self.starts += 1;
        std::fs::File::create(self.log_path(self.starts)).unwrap()
    }

    /// Takes the spawned child of the start [`Process::next_log`] counted.
    pub fn started(&mut self, child: Child) {
        self.child = Some(child);
    }

    /// Whether a process was started and not yet stopped, killed or seen to exit.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process exited, and how (reaps it); `None` while it runs or when not started.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// The `status.json` at `path` if the running process wrote it (not a report left by an
    /// earlier start).
    pub fn report(&self, path: &Path) -> Option<StatusReport> {
        let pid = self.pid()?;
        let text = std::fs::read_to_string(path).ok()?;
        let report: StatusReport = serde_json::from_str(&text).ok()?;
        (report.pid == pid && report.running).then_some(report)
    }

    /// Stops it with SIGTERM, as systemd does, and expects a clean exit within 60 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "tinylcm run exited with {status} after SIGTERM:\n{}",
                    self.log_tail()
                );
                return;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tinylcm run did not stop within 60 s of SIGTERM:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it with SIGKILL (a crash: nothing saved on the way out) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.logs.join(format!("run-{start}.log"))
    }

    /// The current (or last) start's log (its first 8 MiB).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(f) = std::fs::File::open(self.log_path(self.starts)) {
            let _ = f.take(LOG_READ_LIMIT).read_to_string(&mut text);
        }
        text
    }

    /// The last 60 lines of the current (or last) start's log.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- {} (last {} lines) ---\n{}",
            self.log_path(self.starts).display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a device harness is to a test waiting on it: a [`Process`] and the `status.json` that
/// process writes. The waits are written once, here, for both harnesses.
pub trait Harness: Sized {
    /// The device's process.
    fn process_mut(&mut self) -> &mut Process;

    /// The last `status.json` if the running process wrote it.
    fn current_report(&self) -> Option<StatusReport>;

    /// Polls `f` every 100 ms for at most `seconds`; panics with `what` and the log's tail when
    /// the time is up or the process exited.
    fn wait<T>(&mut self, seconds: u64, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let until = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            let process = self.process_mut();
            if let Some(status) = process.exited() {
                panic!(
                    "tinylcm run exited ({status}) while waiting for {what}:\n{}",
                    process.log_tail()
                );
            }
            if Instant::now() > until {
                panic!(
                    "timed out after {seconds} s waiting for {what}:\n{}",
                    process.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a `status.json` of the running process that satisfies `ok`.
    fn wait_report(
        &mut self,
        seconds: u64,
        what: &str,
        ok: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        self.wait(seconds, what, |d| d.current_report().filter(|r| ok(r)))
    }
}
