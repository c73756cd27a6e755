//! `tinylcm status` and `tinylcm snapshot` as a user runs them: against a state folder left
//! by the demo, against a database another process holds, with nothing there, and with
//! damaged snapshots.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::tinylcm;
use tinylcm::pipeline::Prediction;
use tinylcm::pipeline::runner::{FrameReport, Observer};
use tinylcm::state::{DurabilityPolicy, RESTORES_COUNTER, Store};
use tinylcm::stats::{Outcomes, StageLatencies};
use tinylcm::status::{ModelInfo, StatusObserver, StatusOptions, StatusReport};

#[path = "support/cli.rs"]
mod support;

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("tinylcm runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out, stdout, stderr)
}

/// Runs `tinylcm ARGS --state DIR`, expecting success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let (out, stdout, stderr) = run(tinylcm().args(args).arg("--state").arg(dir));
    assert!(out.status.success(), "{args:?}\n{stdout}\n{stderr}");
    stdout
}

/// Runs `tinylcm ARGS --state DIR`, expecting exit 1 with an `error:` line; returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let (out, stdout, stderr) = run(tinylcm().args(args).arg("--state").arg(dir));
    assert_eq!(out.status.code(), Some(1), "{args:?}\n{stdout}\n{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    stderr
}

fn status_json(dir: &Path) -> Value {
    let stdout = ok(dir, &["status", "--json"]);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("state.redb"), DurabilityPolicy::default()).unwrap()
}

/// A state database with a KNN state and some frames, written by this process.
fn database(dir: &Path, knn: &[u32]) {
    let store = open(dir);
    store.put_state("knn", &knn.to_vec()).unwrap();
    store.increment("frames", 42).unwrap();
    store.close().unwrap();
}

fn knn_of(dir: &Path) -> (Vec<u32>, u64) {
    let store = open(dir);
    let knn = store.get_state::<Vec<u32>>("knn").unwrap().unwrap();
    (knn, store.counter(RESTORES_COUNTER).unwrap())
}

/// The id printed by `snapshot create`.
fn create(dir: &Path) -> String {
    let stdout = ok(dir, &["snapshot", "create"]);
    let id = stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no id in {stdout:?}"))
        .to_string();
    assert!(
        dir.join("snapshots").join(format!("{id}.snap")).is_file(),
        "{stdout}"
    );
    id
}

/// The number just before `suffix` in `text`: `"600 frames in"`, `" frames in"` → 600.
fn number_before(text: &str, suffix: &str) -> u64 {
    let at = text
        .find(suffix)
        .unwrap_or_else(|| panic!("no {suffix:?} in {text}"));
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn status_after_the_demo_shows_its_frames_drift_and_events() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped under emulation: 600 frames take minutes with qemu");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Shorter references than the default so the demo's 50-frame phases produce drift.
    let config = dir.path().join("drift.toml");
    std::fs::write(&config, "[drift]\nreference-samples = 100\n").unwrap();
    let (out, demo, stderr) = run(tinylcm()
        .args(["demo", "--phase-frames", "50", "--fps", "0", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(&state));
    assert!(out.status.success(), "{demo}\n{stderr}");
    let frames = number_before(&demo, " frames in ");
    let incidents = number_before(&demo, " incidents from ");
    let onsets = number_before(&demo, " detector onsets");
    assert!(onsets > 0, "the scenario should drift: {demo}");

    let v = status_json(&state);
    // The demo ended cleanly: its last report says so, and the database was free to open.
    assert_eq!(v["service"], "stopped", "{v:#}");
    let report = &v["status_file"]["report"];
    assert_eq!(report["running"], false);
    assert_eq!(report["frames"], frames);
    assert_eq!(report["autonomy"]["onsets"], onsets);
    assert_eq!(report["autonomy"]["knn"]["samples"], 200);
    assert!(report["latency"]["invoke"]["count"].as_u64() == Some(frames));
    let store = &v["store"];
    assert_eq!(store["frames"], frames, "{store:#}");
    assert_eq!(store["drift_onsets"], onsets);
    assert_eq!(store["drift_incidents"], incidents);
    assert_eq!(store["counters"]["frames"], frames);
    for name in ["autonomy", "drift", "knn"] {
        assert!(
            store["states"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == name),
            "{name}: {store:#}"
        );
    }
    let events = store["events"].as_array().unwrap();
    let drift_events = events
        .iter()
        .filter(|e| e["event"]["kind"].get("Drift").is_some())
        .count() as u64;
    assert_eq!(drift_events, onsets.min(20), "{events:#?}");
    assert!(events.iter().all(|e| e["error"].is_null()));

    let human = ok(&state, &["status"]);
    for needle in [
        "not running".to_string(),
        format!("{frames} frames, {onsets} drift onsets, {incidents} incidents"),
        "drift onset".to_string(),
        "page-hinkley-distance".to_string(),
        "SoC temperature".to_string(),
    ] {
        assert!(human.contains(&needle), "{needle:?} missing:\n{human}");
    }
}

#[test]
fn snapshots_round_trip_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert!(ok(dir, &["snapshot", "list"]).contains("no snapshots"));
    database(dir, &[1, 2, 3]);
    let id = create(dir);
    let listed = ok(dir, &["snapshot", "list"]);
    assert!(listed.contains(&id), "{listed}");
    assert!(ok(dir, &["snapshot", "verify", &id]).contains("intact"));

    database(dir, &[9]);
    assert_eq!(knn_of(dir).0, [9]);
    let restored = ok(dir, &["snapshot", "restore", &id]);
    assert!(
        restored.contains(&id) && restored.contains("counters kept"),
        "{restored}"
    );
    assert_eq!(knn_of(dir), (vec![1, 2, 3], 1));
    // status shows the snapshot too.
    let v = status_json(dir);
    assert_eq!(v["snapshots"][0]["id"], id.as_str());
    assert_eq!(v["store"]["counters"][RESTORES_COUNTER], 1);
}

#[test]
fn a_damaged_snapshot_is_refused_and_the_database_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    database(dir, &[1, 2, 3]);
    let id = create(dir);
    let file = dir.join("snapshots").join(format!("{id}.snap"));
    let good = std::fs::read(&file).unwrap();
    database(dir, &[9]);

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let truncated = good[..good.len() - 7].to_vec();
    for bad in [flipped, truncated, b"not a snapshot".to_vec(), Vec::new()] {
        std::fs::write(&file, &bad).unwrap();
        let e = fails(dir, &["snapshot", "verify", &id]);
        assert!(e.contains("corrupt"), "{e}");
        let e = fails(dir, &["snapshot", "restore", &id]);
        assert!(e.contains("corrupt") && e.contains("not changed"), "{e}");
        assert_eq!(knn_of(dir), (vec![9], 0), "the database changed");
    }
    let e = fails(dir, &["snapshot", "restore", "../../etc/passwd"]);
    assert!(e.contains("not valid"), "{e}");
    let e = fails(dir, &["snapshot", "restore", "000099-nope"]);
    assert!(e.contains("no snapshot"), "{e}");
}

#[test]
fn a_database_held_by_a_running_process_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    database(dir, &[1, 2, 3]);
    let id = create(dir);
    // This process plays the running service: it holds the database.
    let held = open(dir);
    for args in [vec!["snapshot", "restore", &id], vec!["snapshot", "create"]] {
        let e = fails(dir, &args);
        assert!(
            e.contains("open in another process") && e.contains("stop the service first"),
            "{e}"
        );
    }
    // Without a status report, status cannot show anything and says how to get one.
    let e = fails(dir, &["status"]);
    assert!(
        e.contains("open in another process") && e.contains("Fix:"),
        "{e}"
    );
    // Reading snapshot files needs no database.
    assert!(ok(dir, &["snapshot", "verify", &id]).contains("intact"));
    drop(held);
    assert_eq!(knn_of(dir), (vec![1, 2, 3], 0));
}

#[test]
fn status_with_nothing_there_fails_with_a_fix_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(dir.path(), &["status"]);
    assert!(e.contains("nothing to show") && e.contains("Fix:"), "{e}");
    let e = fails(dir.path(), &["status", "--json"]);
    assert!(e.contains("nothing to show"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let e = fails(dir.path(), &["snapshot", "create"]);
    assert!(e.contains("no state database"), "{e}");
    // A damaged status file alone is nothing to show either, and is named.
    std::fs::write(dir.path().join("status.json"), "{\"format\": 1").unwrap();
    let e = fails(dir.path(), &["status"]);
    assert!(
        e.contains("nothing to show") && e.contains("damaged"),
        "{e}"
    );
}

/// A live status report from this process, as the service writes it.
fn live_report(dir: &Path, interval: Duration) -> StatusObserver {
    let path = dir.join("status.json");
    let mut observer = StatusObserver::start(StatusOptions {
        path: path.clone(),
        interval,
        model: ModelInfo {
            origin: "builtin:test".into(),
            ..ModelInfo::default()
        },
        store: None,
        disk: Some(dir.to_path_buf()),
        extras: None,
    })
    .unwrap();
    let scores = [0.75];
    let prediction = Prediction {
        class: 0,
        label: "ball",
        confidence: 0.75,
        scores: &scores,
        embedding: None,
    };
    let mut outcomes = Outcomes::default();
    outcomes.record("ball", 0.75, None);
    observer.on_frame(&FrameReport {
        frames: 1,
        elapsed: Duration::from_millis(5),
        prediction: &prediction,
        label: "ball",
        autonomy: None,
        truth: None,
        image: &Default::default(),
        latencies: &StageLatencies::default(),
        outcomes: &outcomes,
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while StatusReport::read(&path).is_err() {
        assert!(Instant::now() < deadline, "no status file");
        std::thread::sleep(Duration::from_millis(5));
    }
    observer
}

#[test]
fn a_fresh_report_means_running_and_the_database_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    database(dir, &[1]);
    let held = open(dir);
    let observer = live_report(dir, Duration::from_secs(60));
    let v = status_json(dir);
    assert_eq!(v["service"], "running", "{v:#}");
    assert_eq!(v["status_file"]["fresh"], true);
    assert_eq!(v["status_file"]["report"]["pid"], std::process::id());
    assert_eq!(v["status_file"]["report"]["classes"]["ball"]["total"], 1);
    assert!(v["store"].is_null(), "{v:#}");
    let human = ok(dir, &["status"]);
    assert!(human.contains("tinylcm: running"), "{human}");
    assert!(human.contains("builtin:test"), "{human}");

    // A clean stop: the last report says so, and the database (released) is shown.
    observer.finish(None, None).unwrap();
    drop(held);
    let v = status_json(dir);
    assert_eq!(v["service"], "stopped", "{v:#}");
    assert_eq!(v["store"]["frames"], 42);
}

#[test]
fn a_live_process_that_stopped_reporting_is_called_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let held = open(dir);
    let observer = live_report(dir, Duration::from_millis(10));
    // Three intervals without a report, while this process (its writer) lives on.
    std::thread::sleep(Duration::from_millis(200));
    let v = status_json(dir);
    assert_eq!(v["service"], "stalled", "{v:#}");
    let notes = v["notes"].to_string();
    assert!(notes.contains("open in another process"), "{notes}");
    assert!(ok(dir, &["status"]).contains("STALLED"));
    drop(observer);
    drop(held);
}
