//! A device as it runs in the field: the `tinylcm` binary's `run` as a child process with a
//! config file and a state folder, stopped with SIGTERM (as systemd stops it) or killed with
//! SIGKILL (a crash), observed only through what users see: `status.json`, `tinylcm model
//! status --json`, and, once stopped, its state database.
//!
//! Why a child process and not the library: what a field device relies on (enrollment from a key file,
//! models installed and tried across restarts, crash loops rolled back) only exists in the
//! service loop of the binary, across process starts.
//!
//! The binary comes from `TINYLCM_BIN`, else `$CARGO_TARGET_DIR/debug/tinylcm`, else the
//! workspace's `target/debug/tinylcm` (`scripts/test e2e` builds it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm::status::StatusReport;

use crate::process::{Harness, Process};

/// The origin `status.json` shows for the model built into the runtime.
pub const BUILTIN_ORIGIN: &str = "builtin:default-f32";

/// Where the tinylcm binary is.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TINYLCM_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let bin = target.join("debug").join("tinylcm");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tinylcm --bin tinylcm` (scripts/test e2e does) or \
         set TINYLCM_BIN",
        bin.display()
    );
    bin
}

/// What a test device's config file says (everything else is the runtime's default).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[sync] server`: sphere-lite or a proxy in front of it.
    pub server: String,
    /// `[sync] enrollment-key-file`.
    pub enrollment_key_file: PathBuf,
    /// `[models] trusted-keys`.
    pub trusted_keys: Option<PathBuf>,
    /// `[models] health-frames`.
    pub health_frames: u64,
    /// `[models] max-trial-starts`.
    pub max_trial_starts: u32,
    /// `[source.synthetic] fps` (0: as fast as the pipeline takes frames).
    pub fps: f64,
    /// More TOML appended to the file as given (whole sections a test needs, e.g.
    /// `[quarantine]`); empty by default.
    pub extra: String,
}

impl Settings {
    /// Settings for `server`, enrolling with the key in `key_file`; models trusted from
    /// `trusted_keys`; a 100-frame health window, 3 trial starts, unpaced frames.
    pub fn new(server: &str, key_file: &Path, trusted_keys: Option<&Path>) -> Settings {
        Settings {
            server: server.to_string(),
            enrollment_key_file: key_file.to_path_buf(),
            trusted_keys: trusted_keys.map(Path::to_path_buf),
            health_frames: 100,
            max_trial_starts: 3,
            fps: 0.0,
            extra: String::new(),
        }
    }

    /// The config file's text: the synthetic scene looping (it drifts at frames 600, 1200 and
    /// 1800 of each pass), sync rounds and status reports every second.
    pub fn toml(&self) -> String {
        let mut text = format!(
            "[source]\nkind = \"synthetic\"\n\n\
             [source.synthetic]\nloop = true\nfps = {fps:?}\n\n\
             [sync]\nserver = {server:?}\nenrollment-key-file = {key:?}\ninterval-seconds = 1\n\
             max-backoff-seconds = 2\nconnect-timeout-seconds = 2\n\n\
             [status]\ninterval-seconds = 1\n\n\
             [models]\nhealth-frames = {health}\nmax-trial-starts = {starts}\n",
            fps = self.fps,
            server = self.server,
            key = self.enrollment_key_file.display().to_string(),
            health = self.health_frames,
            starts = self.max_trial_starts,
        );
        if let Some(keys) = &self.trusted_keys {
            text.push_str(&format!(
                "trusted-keys = {:?}\n",
                keys.display().to_string()
            ));
        }
        if !self.extra.is_empty() {
            text.push('\n');
            text.push_str(&self.extra);
        }
        text
    }
}

/// A device: its config file, its state folder, and the `tinylcm run` process while it runs.
pub struct FieldDevice {
    /// The state folder (`--state`): database, status.json, credentials, models.
    pub dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    process: Process,
}

impl FieldDevice {
    /// A device under `root` (state in `root/state`, logs in `root/logs`) configured by
    /// `settings`; not started.
    pub fn new(root: &Path, settings: &Settings) -> FieldDevice {
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let d = FieldDevice {
            dir: root.join("state"),
            config: root.join("tinylcm.toml"),
            process: Process::new(logs),
        };
        std::fs::create_dir_all(&d.dir).unwrap();
        d.configure(settings);
        d
    }

    /// Rewrites the config file (read at the next start).
    pub fn configure(&self, settings: &Settings) {
        std::fs::write(&self.config, settings.toml()).unwrap();
    }

    /// Starts `tinylcm run` (stderr into a log file per start).
    pub fn start(&mut self) {
        let log = self.process.next_log();
        let child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.dir)
            .env("TINYLCM_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process.started(child);
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.process.starts()
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops it with SIGTERM, as systemd does, and expects a clean exit within 60 s.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills it with SIGKILL (a crash: nothing saved on the way out) and reaps it.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// The last `status.json` if this process wrote it (not a report left by an earlier one).
    pub fn report(&self) -> Option<StatusReport> {
        self.process.report(&self.dir.join("status.json"))
    }

    /// The running model's origin in the current process's status report, once it has one.
    pub fn wait_origin(&mut self, seconds: u64, expected: &str) -> StatusReport {
        self.wait_report(
            seconds,
            &format!("status.json to say the model is `{expected}`"),
            |r| r.model.origin == expected && r.frames > 0,
        )
    }

    /// Starts the device and waits until it enrolled and runs the built-in model; its id.
    pub fn start_enrolled(&mut self) -> String {
        self.start();
        let id = self.wait(60, "the device to enroll from its key file", |d| {
            d.device_id()
        });
        self.wait_origin(60, BUILTIN_ORIGIN);
        id
    }

    /// The device id once it enrolled.
    pub fn device_id(&self) -> Option<String> {
        crate::device::enrolled(&self.dir).map(|c| c.device_id)
    }

    /// The device token once it enrolled.
    pub fn token(&self) -> Option<String> {
        crate::device::enrolled(&self.dir).map(|c| c.token)
    }

    /// `tinylcm model status --json` (the device must be stopped: a running service holds the
    /// database and the store's state is not shown).
    pub fn model_status(&self) -> Value {
        assert!(!self.process.running(), "stop the device first");
        self.cli_json(&["model", "status", "--json"])
    }

    /// Runs `tinylcm ARGS --config C --state DIR` and parses its stdout as JSON.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--state")
            .arg(&self.dir)
            .env("TINYLCM_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tinylcm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tinylcm {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Opens the stopped device's state database (to read its KNN and event log).
    pub fn open_store(&self) -> Store {
        assert!(!self.process.running(), "stop the device first");
        Store::open(self.dir.join("state.redb"), DurabilityPolicy::default()).unwrap()
    }

    /// The current (or last) start's log (its first 8 MiB).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last 60 lines of the current (or last) start's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

impl Harness for FieldDevice {
    fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    fn current_report(&self) -> Option<StatusReport> {
        self.report()
    }
}
