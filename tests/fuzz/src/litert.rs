//! The differential check of the `.tflite` walker: a model the walker accepts must not crash
//! LiteRT when it is loaded.
//!
//! The walker exists because LiteRT 2.3.0 does not verify flatbuffers; a file it passes that
//! still crashes LiteRT is a hole in the guard. LiteRT is C++ and crashes by signal, so it
//! runs in a child process — the real `tinylcm inspect-model` with `engine.backend = litert`,
//! i.e. the device's own loading path — and a crash there is recorded as a *finding* (the
//! input and the child's output kept in the findings folder), not as a crash of the fuzzer.
//!
//! A child per input would cost far more than the walk, so a background thread checks one
//! accepted input at a time: while it is busy, accepted inputs are skipped (never queued), and
//! an input checked once is not checked again. The fuzzer's speed is not held back; how many
//! inputs were checked is written to `stats` in the findings folder after each check, which
//! `scripts/fuzz` reads and reports.
//!
//! Settings (environment): `TINYLCM_FUZZ_LITERT` the `tinylcm` binary (unset: the check is
//! off, said once on stderr), `TINYLCM_FUZZ_LITERT_DIR` the findings folder (default
//! `litert-findings` in the working directory).

use std::collections::HashSet;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Longest a load may take before it counts as a hang (a finding too).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code of a Rust panic in the child: our own loading code panicked on a model the
/// walker accepted, which is a finding as much as a LiteRT crash.
const PANIC_EXIT: i32 = 101;

struct Checker {
    tx: SyncSender<Vec<u8>>,
    busy: AtomicBool,
}

static CHECKER: OnceLock<Option<Checker>> = OnceLock::new();

/// Hand a model the walker accepted to the checker (skipped while it is busy).
pub fn offer(model: &[u8]) {
    let Some(checker) = CHECKER.get_or_init(start) else {
        return;
    };
    if checker.busy.swap(true, Ordering::AcqRel) {
        return;
    }
    if checker.tx.try_send(model.to_vec()).is_err() {
        checker.busy.store(false, Ordering::Release);
    }
}

fn start() -> Option<Checker> {
    let Some(bin) = std::env::var_os("TINYLCM_FUZZ_LITERT").filter(|v| !v.is_empty()) else {
        eprintln!(
            "tflite_walker: the LiteRT differential check is off (set TINYLCM_FUZZ_LITERT to \
             the tinylcm binary; scripts/fuzz does)"
        );
        return None;
    };
    let dir = std::env::var_os("TINYLCM_FUZZ_LITERT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("litert-findings"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create the findings folder {}: {e}", dir.display());
    }
    let (tx, rx) = sync_channel(1);
    let bin = PathBuf::from(bin);
    std::thread::Builder::new()
        .name("litert-check".into())
        .spawn(move || run(&bin, &dir, rx))
        .expect("cannot start the LiteRT check thread");
    Some(Checker {
        tx,
        busy: AtomicBool::new(false),
    })
}

/// Counts written to `stats` after every check.
#[derive(Default)]
struct Stats {
    checked: u64,
    loaded: u64,
    refused: u64,
    findings: u64,
}

fn run(bin: &Path, dir: &Path, rx: Receiver<Vec<u8>>) {
    let mut stats = Stats::default();
    let mut seen = HashSet::new();
    let model_path = dir.join("current.tflite");
    let log_path = dir.join("current.log");
    for model in rx {
        let sha = tinylcm_protocol::package::sha256_hex(&model);
        if seen.insert(sha.clone()) {
            check(bin, dir, &model, &sha, &model_path, &log_path, &mut stats);
            write_stats(dir, &stats);
        }
        if let Some(Some(checker)) = CHECKER.get() {
            checker.busy.store(false, Ordering::Release);
        }
    }
}

fn check(
    bin: &Path,
    dir: &Path,
    model: &[u8],
    sha: &str,
    model_path: &Path,
    log_path: &Path,
    stats: &mut Stats,
) {
    let (Ok(()), Ok(log)) = (
        std::fs::write(model_path, model),
        std::fs::File::create(log_path),
    ) else {
        eprintln!("tflite_walker: cannot write to {}", dir.display());
        return;
    };
    let Ok(err) = log.try_clone() else { return };
    let child = Command::new(bin)
        .arg("inspect-model")
        .arg(model_path)
        .env("TINYLCM_ENGINE__BACKEND", "litert")
        .env("TINYLCM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tflite_walker: cannot start {}: {e}", bin.display());
            return;
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    stats.checked += 1;
    let finding = match status {
        Some(s) if s.code() == Some(0) => {
            stats.loaded += 1;
            None
        }
        Some(s) if s.code() == Some(PANIC_EXIT) => Some("the tinylcm child panicked".to_string()),
        Some(s) if s.code().is_some() => {
            stats.refused += 1;
            None
        }
        Some(s) => Some(format!("the child died by signal {:?}", s.signal())),
        None => Some(format!("the load took more than {TIMEOUT:?}")),
    };
    if let Some(what) = finding {
        stats.findings += 1;
        let stem = dir.join(format!("finding-{}", &sha[..16]));
        let _ = std::fs::write(stem.with_extension("tflite"), model);
        let _ = std::fs::copy(log_path, stem.with_extension("log"));
        eprintln!(
            "tflite_walker: LITERT FINDING: the walker accepted {} and {what}",
            stem.with_extension("tflite").display()
        );
    }
}

fn write_stats(dir: &Path, s: &Stats) {
    let tmp = dir.join("stats.tmp");
    if let Ok(mut f) = std::fs::File::create(&tmp) {
        let _ = writeln!(
            f,
            "checked {} loaded {} refused {} findings {}",
            s.checked, s.loaded, s.refused, s.findings
        );
        let _ = std::fs::rename(&tmp, dir.join("stats"));
    }
}
