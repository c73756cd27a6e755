//! A device laid out as the shipped image runs it: `tinylcm run` started with the exact command
//! line of `ExecStart=` in `board/systemd/tinylcm.service`, no `--state`, the state at its
//! default `/data/tinylcm`, the unit's `Environment=` and its `EnvironmentFile=` (the
//! `provision.env` that `tinylcm-provision` writes), and a config file derived from
//! `board/tinylcm.toml` with only the camera swapped for the synthetic scene and RAUC off.
//!
//! Why: a test that passes `--state` and its own config never sees what the field sees —
//! defaults that point at `/data`, files the runtime keeps beside its database, a data
//! partition that can fill. Here `/data` is a tmpfs of a chosen size: the parent (root) mounts
//! it on a temporary folder, and the child runs in a private mount namespace (`unshare -m`)
//! where that folder is bind-mounted on `/data`, so the host's `/data` is never touched (it is
//! only created, empty, as the mount point when missing). The test sees and fills the data file
//! system through [`ShippedDevice::data_dir`].
//!
//! The only substitutions in the command line: the program (`/usr/bin/tinylcm` is the workspace's
//! build, [`crate::field::binary`]) and the value of `--config` (the derived file; the image's
//! `/etc/tinylcm/config.toml` is read-only and absent here).
//!
//! ```no_run
//! use tinylcm_e2e::process::Harness;
//! use tinylcm_e2e::shipped::ShippedDevice;
//! let mut device = ShippedDevice::new(Some(64 << 20)); // a 64 MiB /data
//! device.provision(&[("TINYLCM_SYNC__SERVER", "http://127.0.0.1:1")]);
//! device.start();
//! let report = device.wait_report(60, "frames", |r| r.frames > 0);
//! device.stop();
//! ```
//!
//! Needs root (mount) and `unshare` (util-linux); without them it panics saying what to install.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use tinylcm::status::StatusReport;

use crate::process::{Harness, Process};

/// The data partition's mount point on the device (and inside the child's namespace).
pub const DATA: &str = "/data";

/// The workspace's `board/` folder.
pub fn board_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board")
}

/// What the shipped unit runs: `ExecStart=`'s words, its `Environment=` pairs and its
/// `EnvironmentFile=` (as the path on the device, `-` prefix removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `ExecStart=` split on whitespace (the unit quotes nothing).
    pub exec_start: Vec<String>,
    /// `Environment=KEY=VALUE` lines in order.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=` paths (optional ones too: systemd skips them when missing, and so
    /// does [`ShippedDevice::start`]).
    pub environment_files: Vec<String>,
}

impl Unit {
    /// `board/systemd/tinylcm.service`, parsed.
    pub fn shipped() -> Unit {
        let path = board_dir().join("systemd/tinylcm.service");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Unit::parse(&text)
    }

    /// Parses a unit file's `[Service]` lines this harness honours.
    pub fn parse(text: &str) -> Unit {
        let mut unit = Unit {
            exec_start: Vec::new(),
            environment: Vec::new(),
            environment_files: Vec::new(),
        };
        for line in text.lines().map(str::trim) {
            if let Some(cmd) = line.strip_prefix("ExecStart=") {
                assert!(
                    !cmd.contains(['"', '\'', '$', '%']),
                    "ExecStart= uses quoting or specifiers this harness does not expand: {cmd}"
                );
                unit.exec_start = cmd.split_whitespace().map(String::from).collect();
            } else if let Some(pair) = line.strip_prefix("Environment=") {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("Environment= without `=`: {line}"));
                unit.environment.push((k.to_string(), v.to_string()));
            } else if let Some(file) = line.strip_prefix("EnvironmentFile=") {
                unit.environment_files
                    .push(file.trim_start_matches('-').to_string());
            }
        }
        assert!(
            !unit.exec_start.is_empty(),
            "the unit has no ExecStart= line"
        );
        unit
    }

    /// The value after `--config` in `ExecStart=`.
    pub fn config_arg(&self) -> &str {
        let i = self
            .exec_start
            .iter()
            .position(|w| w == "--config")
            .expect("ExecStart= has no --config");
        &self.exec_start[i + 1]
    }
}

/// `board/tinylcm.toml` with only the camera swapped for the synthetic scene (looping at `fps`
/// frames per second; 0: as fast as the pipeline takes them) and RAUC off (no RAUC service
/// here). Everything else is the image's file as it is.
pub fn shipped_config(fps: f64) -> String {
    let path = board_dir().join("tinylcm.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()));
    let source = table
        .get_mut("source")
        .and_then(toml::Value::as_table_mut)
        .expect("board/tinylcm.toml has a [source] section");
    assert_eq!(
        source.get("kind").and_then(toml::Value::as_str),
        Some("camera"),
        "the image's source is no longer the camera: revisit this harness"
    );
    source.insert("kind".into(), "synthetic".into());
    let mut synthetic = toml::Table::new();
    synthetic.insert("loop".into(), true.into());
    synthetic.insert("fps".into(), fps.into());
    source.insert("synthetic".into(), synthetic.into());
    table
        .get_mut("rauc")
        .and_then(toml::Value::as_table_mut)
        .expect("board/tinylcm.toml has a [rauc] section")
        .insert("enabled".into(), false.into());
    toml::to_string(&table).expect("a TOML table renders")
}

/// A shipped device: a tmpfs as its `/data`, the derived config, and `tinylcm run` while it
/// runs. Dropping it kills the process and unmounts the tmpfs.
pub struct ShippedDevice {
    root: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    unit: Unit,
    env: Vec<(String, String)>,
    process: Process,
    mounted: bool,
}

impl ShippedDevice {
    /// Mounts a tmpfs of `data_bytes` (`None`: tmpfs's default, half the RAM) as the device's
    /// `/data` with an empty `/data/tinylcm` (as `tinylcm.tmpfiles` creates it), and writes the
    /// derived config with frames paced at 30 fps. Not started.
    pub fn new(data_bytes: Option<u64>) -> ShippedDevice {
        ShippedDevice::with_fps(data_bytes, 30.0)
    }

    /// [`ShippedDevice::new`] with the synthetic scene at `fps` (0: unpaced).
    pub fn with_fps(data_bytes: Option<u64>, fps: f64) -> ShippedDevice {
        require_root_and_unshare();
        // The mount point of the child's bind mount; on the host it stays an empty folder.
        std::fs::create_dir_all(DATA)
            .unwrap_or_else(|e| panic!("cannot create {DATA} on the host: {e}"));
        let root = tempfile::Builder::new()
            .prefix("tinylcm-shipped-")
            .tempdir()
            .unwrap();
        let data = root.path().join("data");
        let logs = root.path().join("logs");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        mount_tmpfs(&data, data_bytes);
        let device = ShippedDevice {
            config: root.path().join("config.toml"),
            root,
            data,
            unit: Unit::shipped(),
            env: Vec::new(),
            process: Process::new(logs),
            mounted: true,
        };
        std::fs::create_dir_all(device.state_dir()).unwrap();
        device.write_config(&shipped_config(fps));
        device
    }

    /// The folder the test sees that is `/data` inside the device (the tmpfs).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `/data/tinylcm` as the test sees it: the state folder (database, `status.json`,
    /// `remote-config.json`, credentials, models, thumbnails).
    pub fn state_dir(&self) -> PathBuf {
        self.data.join("tinylcm")
    }

    /// The host path of a path on the device under `/data` (e.g. `/data/tinylcm/enroll.key`).
    pub fn host_path(&self, device_path: &str) -> PathBuf {
        let rest = device_path
            .strip_prefix(DATA)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or_else(|| panic!("{device_path} is not under {DATA}"));
        self.data.join(rest)
    }

    /// The config file `--config` points at.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The unit this device runs as.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// Replaces the config file (read at the next start or SIGHUP).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// Writes `/data/tinylcm/provision.env` with `pairs`, as `tinylcm-provision` does (the
    /// unit's `EnvironmentFile=`; read at each start).
    pub fn provision(&self, pairs: &[(&str, &str)]) {
        let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(self.state_dir().join("provision.env"), text).unwrap();
    }

    /// Provisions sync with `server` and an enrollment `key`, as `tinylcm-provision` leaves a
    /// device whose boot partition carried them: the key in `/data/tinylcm/enroll.key` (0600),
    /// `TINYLCM_SYNC__SERVER` and `TINYLCM_SYNC__ENROLLMENT_KEY_FILE` in `provision.env`.
    pub fn provision_sync(&self, server: &str, key: &str) {
        use std::os::unix::fs::PermissionsExt;
        let file = self.state_dir().join("enroll.key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.provision(&[
            ("TINYLCM_SYNC__SERVER", server),
            (
                "TINYLCM_SYNC__ENROLLMENT_KEY_FILE",
                &format!("{DATA}/tinylcm/enroll.key"),
            ),
        ]);
    }

    /// An extra environment variable for the process (after the unit's and `provision.env`'s),
    /// e.g. `TINYLCM_SYNC__INTERVAL_SECONDS=1` so a test need not wait a minute per round.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The command line the unit runs, with the program and `--config`'s value substituted.
    pub fn command_line(&self) -> Vec<String> {
        let mut words = self.unit.exec_start.clone();
        assert_eq!(
            words[0], "/usr/bin/tinylcm",
            "the unit no longer runs /usr/bin/tinylcm: revisit this harness"
        );
        words[0] = crate::field::binary().display().to_string();
        let i = words.iter().position(|w| w == "--config").unwrap();
        words[i + 1] = self.config.display().to_string();
        assert!(
            !words.iter().any(|w| w == "--state"),
            "the shipped unit passes --state: {words:?}"
        );
        words
    }

    /// Starts the unit's command in a private mount namespace with the tmpfs on `/data`;
    /// stdout and stderr go to a log per start.
    pub fn start(&mut self) {
        let log = self.process.next_log();
        let words = self.command_line();
        // unshare execs sh, which execs tinylcm: the child's pid is the service's pid (the
        // one status.json carries), and SIGTERM reaches it directly, as systemd sends it.
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount --bind \"$0\" /data && exec \"$@\"")
            .arg(&self.data)
            .args(&words)
            .current_dir("/")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Whatever the test process inherited must not override the device's settings.
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"TINYLCM_") {
                cmd.env_remove(&key);
            }
        }
        for (k, v) in &self.unit.environment {
            cmd.env(k, v);
        }
        for file in &self.unit.environment_files {
            for (k, v) in self.read_env_file(file) {
                cmd.env(k, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.process.started(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run unshare (install util-linux): {e}")),
        );
    }

    /// `KEY=VALUE` lines of an environment file given as its device path; a missing file is
    /// skipped (the unit's `-` prefix), as systemd does.
    fn read_env_file(&self, device_path: &str) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(self.host_path(device_path)) else {
            return Vec::new();
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.process.starts()
    }

    /// The pid of the running service.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process exited, and how (reaps it); `None` while it runs or when not started.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// `/data/tinylcm/status.json` as the test sees it, whoever wrote it.
    pub fn status_path(&self) -> PathBuf {
        self.state_dir().join("status.json")
    }

    /// The last `status.json` if the running process wrote it (not one left by an earlier
    /// start).
    pub fn status(&self) -> Option<StatusReport> {
        self.process.report(&self.status_path())
    }

    /// The device id once it enrolled.
    pub fn device_id(&self) -> Option<String> {
        crate::device::enrolled(&self.state_dir()).map(|c| c.device_id)
    }

    /// Stops it with SIGTERM, as systemd does, and expects a clean exit within 60 s.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills it with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// The current (or last) start's log (stdout and stderr, its first 8 MiB).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last 60 lines of the current (or last) start's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// The temporary folder holding the config, the logs and the mount point.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for ShippedDevice {
    fn drop(&mut self) {
        self.kill9();
        if self.mounted {
            if let Ok(path) = CString::new(self.data.as_os_str().as_bytes()) {
                // SAFETY: umount2(2) with a valid NUL-terminated path; a lazy unmount so a
                // test's open file cannot keep the tmpfs (and its memory) alive.
                unsafe {
                    libc::umount2(path.as_ptr(), libc::MNT_DETACH);
                }
            }
            self.mounted = false;
        }
    }
}

impl Harness for ShippedDevice {
    fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    fn current_report(&self) -> Option<StatusReport> {
        self.status()
    }
}

/// Panics, saying what is missing, unless we are root and `unshare` runs.
fn require_root_and_unshare() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the shipped-layout tests mount a tmpfs and use a mount namespace: run them as root"
    );
    let ok = Command::new("unshare")
        .args(["--mount", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(ok, Ok(s) if s.success()),
        "`unshare --mount true` failed ({ok:?}): install util-linux and allow mount namespaces \
         (a container needs CAP_SYS_ADMIN)"
    );
}

/// Mounts a tmpfs of `bytes` (or tmpfs's default size) on `dir`.
fn mount_tmpfs(dir: &Path, bytes: Option<u64>) {
    let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let options = match bytes {
        Some(b) => format!("size={b},mode=0755"),
        None => "mode=0755".to_string(),
    };
    let options = CString::new(options).unwrap();
    // SAFETY: mount(2) with valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tinylcm-e2e-data".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    assert_eq!(
        rc,
        0,
        "cannot mount a tmpfs on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_unit_runs_tinylcm_with_the_image_config_and_no_state_flag() {
        let unit = Unit::shipped();
        assert_eq!(unit.exec_start[..2], ["/usr/bin/tinylcm", "run"]);
        assert_eq!(unit.config_arg(), "/etc/tinylcm/config.toml");
        assert!(
            unit.environment_files
                .iter()
                .any(|f| f == "/data/tinylcm/provision.env")
        );
    }

    #[test]
    fn the_derived_config_differs_from_the_image_only_in_source_and_rauc() {
        let board: toml::Table = std::fs::read_to_string(board_dir().join("tinylcm.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let derived: toml::Table = shipped_config(5.0).parse().unwrap();
        for (key, value) in &board {
            if key != "source" && key != "rauc" {
                assert_eq!(derived.get(key), Some(value), "[{key}] changed");
            }
        }
        assert_eq!(derived.len(), board.len());
        assert_eq!(derived["source"]["kind"].as_str(), Some("synthetic"));
        assert_eq!(derived["rauc"]["enabled"].as_bool(), Some(false));
        assert_eq!(derived["rauc"]["bus"], board["rauc"]["bus"]);
    }
}
