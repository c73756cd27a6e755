//! The systemd units in `board/systemd/` and the device configuration example: verified by
//! `systemd-analyze verify` in an alternate root holding the distro's units and the built
//! `tinylcm` binary (it checks that ExecStart binaries exist), silent — any output fails,
//! since systemd only prints and ignores bad values — and their command lines accepted by
//! the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/cli.rs"]
mod cli_support;

const UNITS: [&str; 3] = [
    "tinylcm.service",
    "tinylcm-healthcheck.service",
    "tinylcm-provision.service",
];

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
    for dir in ["etc/systemd/system", "usr/bin", "usr/sbin", "bin"] {
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
    // The provisioning script, installed executable as the image does.
    let provision = r.join("usr/sbin/tinylcm-provision");
    std::fs::copy(board().join("common/tinylcm-provision"), &provision).unwrap();
    let mut perms = std::fs::metadata(&provision).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&provision, perms).unwrap();
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
    // The gate records the installations it confirmed beside the status file; without
    // write access there, a confirmed slot would be marked bad on its next failure.
    assert_eq!(value(&gate, "ProtectSystem"), "strict");
    assert_eq!(value(&gate, "ReadWritePaths"), "/data/tinylcm");

    // Provisioning runs before the runtime, which reads what it wrote; a device never
    // provisioned has no file, hence the "-".
    let provision = unit("tinylcm-provision.service");
    for (key, expected) in [
        ("Type", "oneshot"),
        ("ExecStart", "/usr/sbin/tinylcm-provision"),
        ("RequiresMountsFor", "/data /boot"),
    ] {
        assert_eq!(value(&provision, key), expected, "{key}");
    }
    let before: Vec<String> = directives(&provision)
        .into_iter()
        .filter(|(k, _)| k == "Before")
        .flat_map(|(_, v)| v.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect();
    assert!(before.iter().any(|u| u == "tinylcm.service"), "{before:?}");
    // Wi-Fi starts from the configuration provisioning writes (Before= on this side orders
    // the upstream wpa_supplicant@.service instance without a drop-in).
    assert!(
        before.iter().any(|u| u == "wpa_supplicant@wlan0.service"),
        "tinylcm-provision.service must come before wpa_supplicant@wlan0.service: {before:?}"
    );
    assert_eq!(
        value(&service, "EnvironmentFile"),
        "-/data/tinylcm/provision.env"
    );
}

/// Every `Key=` of a unit, in order.
fn values(text: &str, key: &str) -> Vec<String> {
    directives(text)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The camera stack the image preloads into the service (libcamera's V4L2 compatibility
/// layer) opens the media controller and allocates from the DMA heaps besides the V4L2
/// nodes; with `DevicePolicy=closed` each needs its `/proc/devices` major allowed, or a
/// camera module fails while a USB webcam works.
#[test]
fn the_device_sandbox_admits_the_camera_stack() {
    let service = unit("tinylcm.service");
    assert_eq!(value(&service, "DevicePolicy"), "closed");
    let allowed = values(&service, "DeviceAllow");
    for device in [
        "char-video4linux rw",
        "char-media rw",
        "char-dma_heap rw",
        "char-gpiochip rw",
        "char-usb_device rw",
    ] {
        assert!(
            allowed.iter().any(|a| a == device),
            "tinylcm.service: no DeviceAllow={device} in {allowed:?}"
        );
    }
}

/// `[Section]` -> `Key=value` lines of a systemd-style file.
fn sections(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
        } else if let Some((k, v)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            out.push((section.clone(), k.to_string(), v.to_string()));
        }
    }
    out
}

/// Wi-Fi gets an address: openembedded-core's only `.network` (80-wired.network) matches
/// `Type=ether`, so the image brings its own for wlan0, and the runtime recipe installs it
/// where systemd-networkd reads it.
#[test]
fn wlan0_has_a_network_file_that_the_image_installs() {
    let text = std::fs::read_to_string(board().join("systemd/tinylcm-wlan.network"))
        .expect("board/systemd/tinylcm-wlan.network");
    let keys = sections(&text);
    let has = |s: &str, k: &str, v: &str| keys.iter().any(|e| e == &(s.into(), k.into(), v.into()));
    assert!(has("Match", "Name", "wlan0"), "{keys:?}");
    assert!(
        has("Network", "DHCP", "yes") || has("Network", "DHCP", "ipv4"),
        "{keys:?}"
    );
    let recipe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../yocto/meta-tinylcm/recipes-tinylcm/tinylcm-runtime/tinylcm-runtime_git.bb"),
    )
    .unwrap();
    assert!(
        recipe.contains("${S}/board/systemd/tinylcm-wlan.network ${D}${systemd_unitdir}/network/"),
        "the runtime recipe does not install tinylcm-wlan.network into ${{systemd_unitdir}}/network"
    );
}

/// What `tinylcm-provision` writes for the runtime (`provision.env`) is understood by the
/// binary: the script runs in a fake root with provisioning files on its "boot partition",
/// and `tinylcm config` with the device's config file and that environment prints the
/// server, the key file and the CA it names.
#[test]
fn the_provisioned_environment_configures_sync() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for sub in ["boot/tinylcm", "data", "proc/sys/kernel", "etc"] {
        std::fs::create_dir_all(r.join(sub)).unwrap();
    }
    std::fs::write(
        r.join("boot/tinylcm/provision.conf"),
        "server = https://sphere.example:8470\n",
    )
    .unwrap();
    std::fs::write(r.join("boot/tinylcm/enroll.key"), "enr_units_test\n").unwrap();
    std::fs::write(
        r.join("boot/tinylcm/ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(r.join("proc/cpuinfo"), "Serial\t\t: 00000000feedbeef\n").unwrap();
    std::fs::write(r.join("proc/mounts"), "").unwrap();
    std::fs::write(r.join("proc/sys/kernel/hostname"), "localhost\n").unwrap();
    let out = Command::new("sh")
        .arg(board().join("common/tinylcm-provision"))
        .env("TINYLCM_PROVISION_BOOT", r.join("boot"))
        .env("TINYLCM_PROVISION_DATA", r.join("data"))
        .env("TINYLCM_PROVISION_PROC", r.join("proc"))
        .env("TINYLCM_PROVISION_MACHINE_ID", r.join("etc/machine-id"))
        // Growing partitions is tests/image/provision.sh's part.
        .env("TINYLCM_PROVISION_GROW", "no")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The EnvironmentFile's assignments, as systemd would pass them.
    let env_file = std::fs::read_to_string(r.join("data/tinylcm/provision.env")).unwrap();
    let vars: Vec<(String, String)> = env_file
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(vars.len(), 3, "{env_file}");
    let out = cli_support::tinylcm()
        .args(["config", "--config"])
        .arg(board().join("tinylcm.toml"))
        .envs(vars)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = r.join("data/tinylcm");
    for line in [
        "server = \"https://sphere.example:8470\"".to_string(),
        format!(
            "enrollment-key-file = \"{}\"",
            data.join("enroll.key").display()
        ),
        format!("ca-file = \"{}\"", data.join("ca.pem").display()),
    ] {
        assert!(
            stdout.lines().any(|l| l.trim() == line),
            "{line} in:\n{stdout}"
        );
    }
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
