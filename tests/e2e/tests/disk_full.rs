//! A full data partition does not take the device off the air. The real service runs as the
//! shipped unit runs it ([`tinylcm_e2e::shipped`]: `ExecStart=`'s command line, state at the
//! default `/data/tinylcm`, the image's config with its `[board] min-free-mib = 64`, systemd's
//! notify socket and a watchdog as `Type=notify` and `WatchdogSec=` give it) on a 128 MiB
//! tmpfs as `/data`. Once the quarantine has written thumbnails, the test fills the file
//! system from outside to 0 bytes free, then deletes the filler.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::shipped::ShippedDevice;

const MIB: u64 = 1 << 20;

/// Bytes of the regular files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Writes `path` until the file system refuses, down to single pages: 0 bytes free.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut chunk = 4 * MIB as usize;
    let block = vec![0x5Au8; chunk];
    while chunk >= 4096 {
        match f.write(&block[..chunk]) {
            Ok(0) | Err(_) => chunk /= 2,
            Ok(_) => {}
        }
    }
    let _ = f.sync_all();
}

/// Counts the `WATCHDOG=1` pings received so far (the runtime sends them only from the
/// per-frame observer, so they prove frames go through the model).
fn pings(socket: &UnixDatagram, seen: &mut u64) -> u64 {
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        if buf[..n].split(|b| *b == b'\n').any(|l| l == b"WATCHDOG=1") {
            *seen += 1;
        }
    }
    *seen
}

/// Fails before this change (checked against the binary built from 8c648e9): nothing was
/// shed, so the wait for the thumbnails to go timed out while the thumbnail writer logged
/// `ENOSPC` for every frame; nor could status.json be replaced on a full file system. Whether
/// the state database's commits fail too depends on whether redb finds free pages inside its
/// file; the writer's retry after failed commits is covered by `state::writer`'s unit tests,
/// and here the figures are printed (`failed_commits`) for whoever runs it with
/// `--nocapture`.
#[test]
fn a_full_data_partition_sheds_keeps_inferring_and_recovers_by_itself() {
    let mut device = ShippedDevice::with_fps(Some(128 * MIB), 0.0);
    device.env("TINYLCM_STATUS__INTERVAL_SECONDS", "1");
    let socket_path = device.root().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    device.env("NOTIFY_SOCKET", &socket_path.display().to_string());
    device.env("WATCHDOG_USEC", "1000000");
    device.start();
    let thumbs = device.state_dir().join("quarantine");

    let before = device.wait(240, "quarantine thumbnails and commits", |d| {
        let r = d.status()?;
        let commits = r.store.as_ref()?.commits;
        (dir_bytes(&thumbs) >= 64 << 10 && commits >= 2).then_some(r)
    });
    let thumbs_before = dir_bytes(&thumbs);
    assert!(!before.store.as_ref().unwrap().disk_full, "{before:?}");

    let filler = device.data_dir().join("filler");
    fill(&filler);
    let mut seen = 0;
    let pings_at_fill = pings(&socket, &mut seen);

    // While full: the process lives, frames go on, the thumbnails are shed.
    device.wait(60, "frames to go on and thumbnails to be shed", |_| {
        let shed = dir_bytes(&thumbs) < thumbs_before / 2;
        (pings(&socket, &mut seen) >= pings_at_fill + 5 && shed).then_some(())
    });
    let full = device.wait_report(60, "a report showing the disk full", |r| {
        r.frames > before.frames
            && r.store.as_ref().is_some_and(|s| {
                s.disk_full && s.space.is_some_and(|sp| sp.shed_bytes.thumbnails > 0)
            })
    });
    // What shedding freed is taken too: nothing expendable is left, the disk stays full.
    let filler2 = device.data_dir().join("filler-2");
    fill(&filler2);
    let at = pings(&socket, &mut seen);
    device.wait(60, "frames to go on while the disk is full", |_| {
        (pings(&socket, &mut seen) >= at + 5).then_some(())
    });
    assert!(device.exited().is_none(), "{}", device.log_tail());

    // Space returns: the device recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&filler2).unwrap();
    let recovered = device.wait_report(120, "commits to work again", |r| {
        r.frames > full.frames
            && r.store.as_ref().is_some_and(|s| {
                !s.disk_full && s.retained_batches == 0 && s.commits > full.store.unwrap().commits
            })
    });
    // Detection went on: the autonomy layer stepped every frame, across the full period.
    let stepped = |r: &tinylcm::status::StatusReport| r.autonomy.as_ref().map_or(0, |a| a.frames);
    assert!(stepped(&recovered) > stepped(&full) && stepped(&full) > stepped(&before));
    eprintln!(
        "while full: {:?}\nrecovered: {:?}",
        full.store, recovered.store
    );
    let detected = recovered.autonomy.as_ref().map_or(0, |a| a.onsets);
    device.stop();

    // The database holds what happened while the disk was full and after.
    let store = Store::open(
        device.state_dir().join("state.redb"),
        DurabilityPolicy::default(),
    )
    .unwrap();
    let frames = store.counter("frames").unwrap();
    assert!(
        frames >= recovered.frames,
        "{frames} frames stored, {} reported before the stop",
        recovered.frames
    );
    assert!(
        store.counter("drift.onsets").unwrap() >= detected,
        "drift onsets detected before the stop are stored"
    );
    let status = std::fs::read_to_string(device.status_path()).unwrap();
    assert!(status.contains("\"disk_full\": false"), "{status}");
}
