//! The systemd units in `board/systemd/` and the device configuration example: verified by
//! `systemd-analyze verify` in an alternate root holding the distro's units and the built
//! `tinylcm` binary (it checks that ExecStart binaries exist), silent — any output fails,
//! since systemd only prints and ignores bad values — and their command lines accepted by
//! the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/cli.rs"]
mod cli_support;

const UNITS: [&str; 2] = ["tinylcm.service", "tinylcm-healthcheck.service"];

fn board() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../board")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(board().join("systemd").join(name)).unwrap()
}

/// `Key=value` lines of a unit (comments and sections left out).
fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(text: &str, key: &str) -> String {
    directives(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

/// An alternate root with the distro's units, ours in /etc, and the real binary.
fn root(units: &[(&str, String)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
    let copy = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(r.join("usr/lib/systemd/"))
        .status();
    assert!(copy.unwrap().success(), "copying the distro's units");
    for dir in ["etc/systemd/system", "usr/bin", "bin"] {
        std::fs::create_dir_all(r.join(dir)).unwrap();
    }
    for (name, text) in units {
        std::fs::write(r.join("etc/systemd/system").join(name), text).unwrap();
    }
    let binary = Path::new(env!("CARGO_BIN_EXE_tinylcm"));
    let target = r.join("usr/bin/tinylcm");
    if std::fs::hard_link(binary, &target).is_err() {
        std::fs::copy(binary, &target).unwrap();
    }
    std::fs::copy("/bin/kill", r.join("bin/kill")).unwrap();
    root
}

/// `systemd-analyze verify`'s exit status and everything it printed.
fn verify(units: &[(&str, String)]) -> (bool, String) {
    let root = root(units);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(units.iter().map(|(n, _)| *n))
        .current_dir(root.path())
        .output()
        .expect("systemd-analyze (package systemd)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn systemd_analyze_verify_is_silent_on_our_units() {
    let ours: Vec<_> = UNITS.iter().map(|n| (*n, unit(n))).collect();
    let (ok, output) = verify(&ours);
    assert!(
        ok && output.trim().is_empty(),
        "systemd-analyze verify:\n{output}"
    );
    // The check can fail: a bad value is only printed (exit status 0), and is caught.
    let broken: Vec<_> = ours
        .iter()
        .map(|(n, t)| (*n, t.replace("WatchdogSec=30s", "WatchdogSec=thirty")))
        .collect();
    let (_, output) = verify(&broken);
    assert!(output.contains("thirty"), "{output}");
}

#[test]
fn the_service_is_a_watched_notify_service_in_a_sandbox() {
    let service = unit("tinylcm.service");
    for (key, expected) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/bin/tinylcm run --config /etc/tinylcm/config.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/data/tinylcm"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("SupplementaryGroups", "video"),
    ] {
        assert_eq!(value(&service, key), expected, "{key}");
    }
    assert!(value(&service, "StartLimitBurst").parse::<u32>().unwrap() > 1);
    let gate = unit("tinylcm-healthcheck.service");
    for (key, expected) in [
        ("Type", "oneshot"),
        ("After", "tinylcm.service"),
        ("Before", "boot-complete.target"),
        ("RequiredBy", "boot-complete.target"),
    ] {
        assert_eq!(value(&gate, key), expected, "{key}");
    }
    let exec = value(&gate, "ExecStart");
    assert!(exec.starts_with("/usr/bin/tinylcm healthcheck "), "{exec}");
    assert!(exec.contains("--mark-good") && exec.contains("--mark-bad-on-failure"));
}

#[test]
fn the_command_lines_and_the_device_config_are_accepted_by_the_binary() {
    let example = board().join("tinylcm.toml");
    let config = tinylcm::config::Config::load(Some(&example)).unwrap();
    assert!(config.rauc.enabled, "the image talks to rauc.service");

    // Device paths moved into a temporary folder; everything else as on the device.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let config_file = dir.path().join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            "{text}\n[status]\npath = \"{}\"\n",
            dir.path().join("status.json").display()
        ),
    )
    .unwrap();
    let on_device = "/etc/tinylcm/config.toml";

    // The gate's ExecStart, with no service running: exit 1, one line, flags understood
    // (clap would exit 2 on an unknown flag).
    let gate = value(&unit("tinylcm-healthcheck.service"), "ExecStart");
    let args: Vec<String> = gate
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == on_device {
                config_file.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = cli_support::tinylcm()
        .args(&args)
        .args(["--timeout", "1", "--poll-ms", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unhealthy after 1 s: no status report"),
        "{stderr}"
    );

    // The service's ExecStart parses; the missing device config is the error (exit 1).
    let run = value(&unit("tinylcm.service"), "ExecStart");
    let missing = dir.path().join("absent.toml");
    let args: Vec<String> = run
        .split_whitespace()
        .skip(1)
        .map(|a| {
            if a == on_device {
                missing.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let out = cli_support::tinylcm().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("absent.toml does not exist"), "{stderr}");
}
