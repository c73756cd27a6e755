//! The disk guard on a real, small file system: a 4 MiB tmpfs mounted in a private mount
//! namespace (`unshare -m`, so nothing leaks to the machine), filled by the test until the
//! guard refuses, then emptied until it allows again.

use std::path::PathBuf;
use std::process::Command;

use tinylcm::board::{BoardError, DiskGuard};
use tinylcm_protocol::test_support::missing;

const CHILD: &str = "TINYLCM_DISK_GUARD_DIR";
const TEST: &str = "the_guard_refuses_writes_on_a_nearly_full_tmpfs";
const MIB: u64 = 1 << 20;

#[test]
fn the_guard_refuses_writes_on_a_nearly_full_tmpfs() {
    if let Some(dir) = std::env::var_os(CHILD) {
        return child(PathBuf::from(dir));
    }
    let unshare = Command::new("unshare").args(["-m", "true"]).status();
    if !unshare.is_ok_and(|s| s.success()) {
        missing(
            "`unshare -m` (a private mount namespace for the tmpfs)",
            "run as root with util-linux installed (apt-get install util-linux)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runner = std::env::var("TINYLCM_TEST_RUNNER").unwrap_or_default();
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=4m tmpfs \"$0\" && shift && exec \"$@\"",
        ])
        .arg(dir.path())
        .arg("--")
        .args(runner.split_whitespace())
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tmpfs checked"));
}

fn child(dir: PathBuf) {
    let guard = DiskGuard::new(dir.join("outbox"), MIB);
    let empty = guard.space().unwrap();
    assert_eq!(
        empty.total_bytes,
        4 * MIB,
        "the 4 MiB tmpfs, not the temp folder's disk"
    );
    assert!(empty.free_percent() > 99.0, "{empty:?}");
    assert!(guard.ok_to_write(2 * MIB));
    assert!(
        !guard.ok_to_write(3 * MIB + MIB / 2),
        "would leave less than 1 MiB"
    );

    let fill = dir.join("fill");
    std::fs::write(&fill, vec![7u8; (2 * MIB + MIB / 2) as usize]).unwrap();
    let full = guard.space().unwrap();
    assert!(full.free_bytes <= 3 * MIB / 2 + 4096, "{full:?}");
    assert!(guard.ok_to_write(64 << 10), "a small write still fits");
    assert!(
        !guard.ok_to_write(MIB),
        "a write into the reserve is refused"
    );
    match guard.check_write(MIB) {
        Err(BoardError::DiskFull { free, min_free, .. }) => {
            assert_eq!((free, min_free), (full.free_bytes, MIB));
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }

    std::fs::remove_file(&fill).unwrap();
    assert!(guard.ok_to_write(2 * MIB), "room again after deleting");
    println!("tmpfs checked");
}
