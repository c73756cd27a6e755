//! kill -9 during model installs: after every kill the active model must be a working one.
//!
//! The test re-executes its own binary as an installer (selected by an environment variable):
//! it installs two signed releases alternately (with goldens, so each install runs the smoke
//! test through the real engine), activating some, committing or rolling back some, and
//! booting as a restarted service does. The parent SIGKILLs it at random moments (seeded),
//! reopens the database and checks: the state opens; every slot the state refers to holds
//! exactly the files of its release (signature, size, SHA-256, manifest), so no half-written
//! file is ever referenced; and what `boot` chooses loads through the real engine and runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinylcm::modelstore::{HealthSummary, ModelStore, ModelStoreError, SlotRecord};
use tinylcm_protocol::release::{PublicKey, SignedRelease, SigningKey};

#[path = "support/child.rs"]
mod child;
mod modelstore_support;
use child::{Rng, command, pin_binary};
use modelstore_support::{config, model, open, release, run_choice, trust, with_goldens};

const ROLE_DIR: &str = "TINYLCM_MODELSTORE_CRASH_DIR";
const ROLE_SEED: &str = "TINYLCM_MODELSTORE_CRASH_SEED";
/// Kills per run: at least 50 natively; fewer under qemu, where every start is slow.
const KILLS: u32 = if cfg!(target_arch = "x86_64") { 60 } else { 12 };
/// Delays are stretched under qemu.
const STRETCH: u64 = if cfg!(target_arch = "x86_64") { 1 } else { 10 };

fn ignore_refusal<T>(r: Result<T, ModelStoreError>) {
    match r {
        Ok(_) | Err(ModelStoreError::Refused(_)) => {}
        Err(e) => panic!("installer: {e}"),
    }
}

/// The installer role: only does something when started by the parent test.
#[test]
fn installer_child() {
    let Ok(dir) = std::env::var(ROLE_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let seed = std::env::var(ROLE_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng(seed | 1);
    let (_store, models) = open(&dir, &config(Some(dir.join("trusted.pub"))));
    println!("\nREADY");
    for n in 0u64.. {
        let r = 1 + n % 2;
        match rng.below(6) {
            0..=2 => {
                let activate = rng.below(2) == 0;
                ignore_refusal(models.install_files(
                    &dir.join(format!("r{r}.tflite")),
                    &dir.join(format!("r{r}.release.json")),
                    activate,
                ));
                println!("INSTALLED");
            }
            3 => ignore_refusal(models.boot()),
            4 => ignore_refusal(models.commit(HealthSummary {
                frames: 5,
                mean_confidence: Some(0.8),
            })),
            _ => ignore_refusal(models.activate()),
        }
        if rng.below(10) == 0 {
            ignore_refusal(models.rollback("installer"));
        }
    }
}

/// The slot of `record` holds exactly its release's files.
fn check_slot(models: &ModelStore, record: &SlotRecord, trusted: &[PublicKey], kill: u32) {
    let layout = models.layout();
    let signed: SignedRelease =
        serde_json::from_slice(&std::fs::read(layout.release(record.slot)).unwrap())
            .unwrap_or_else(|e| panic!("kill {kill}: slot {} release: {e}", record.slot));
    let release = signed.verify(trusted).unwrap();
    let bytes = std::fs::read(layout.model(record.slot)).unwrap();
    release.check_model(&bytes).unwrap_or_else(|e| {
        panic!(
            "kill {kill}: slot {} referenced half-written: {e}",
            record.slot
        )
    });
    assert_eq!(release.sha256, record.sha256, "kill {kill}");
    assert_eq!(
        std::fs::read_to_string(layout.manifest(record.slot)).unwrap(),
        release.model_manifest,
        "kill {kill}: manifest of slot {}",
        record.slot
    );
}

fn check(dir: &Path, trusted: &[PublicKey], kill: u32) -> Option<String> {
    let (_store, models) = open(dir, &config(Some(dir.join("trusted.pub"))));
    let state = models.state().unwrap();
    let records: Vec<&SlotRecord> = [
        state.committed.as_ref(),
        state.previous.as_ref(),
        state.staged.as_ref(),
        state.trial.as_ref().map(|t| &t.record),
    ]
    .into_iter()
    .flatten()
    .collect();
    for r in &records {
        check_slot(&models, r, trusted, kill);
    }
    if let (Some(c), Some(t)) = (&state.committed, &state.trial) {
        assert_ne!(
            c.slot, t.record.slot,
            "kill {kill}: trial and committed share a slot"
        );
    }
    let boot = models.boot().unwrap();
    if let Some(why) = &boot.rolled_back {
        assert!(why.contains("crash loop"), "kill {kill}: {why}");
    }
    run_choice(boot.choice, &format!("kill {kill}"))
}

#[test]
fn kill_during_install_leaves_a_working_model() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let key = SigningKey::generate().unwrap();
    trust(dir.path(), &key);
    let trusted = vec![key.public()];
    for (r, stem) in [(1, "default_f32"), (2, "default_int8")] {
        let m = with_goldens(&model(stem), &model(stem), 1);
        std::fs::write(dir.path().join(format!("r{r}.tflite")), &m.bytes).unwrap();
        let signed = release(&m, &key, "shapes", &r.to_string());
        std::fs::write(
            dir.path().join(format!("r{r}.release.json")),
            serde_json::to_vec(&signed).unwrap(),
        )
        .unwrap();
    }
    let exe = pin_binary(dir.path(), "modelstore-installer");
    let stderr_path = dir.path().join("installer.stderr");
    let seed = std::env::var("TINYLCM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0a0b_u64);
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut installs, mut installed_runs) = (0u64, 0u32);
    for kill in 0..KILLS {
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = command(&exe)
            .args([
                "--exact",
                "installer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE_DIR, dir.path())
            .env(ROLE_SEED, (rng.below(1 << 40) + 1).to_string())
            .env("TINYLCM_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the installer");
        let count = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let out = child.stdout.take().unwrap();
        let (seen, opened) = (Arc::clone(&count), Arc::clone(&ready));
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line == "INSTALLED" {
                    seen.fetch_add(1, Ordering::SeqCst);
                } else if line == "READY" {
                    opened.store(true, Ordering::SeqCst);
                }
            }
        });
        // Most kills count from the open store, so they land in installs whatever start-up
        // costs; some land in start-up itself.
        if rng.below(5) != 0 {
            let waiting = Instant::now();
            while !ready.load(Ordering::SeqCst) {
                let exited = child.try_wait().expect("installer status");
                if exited.is_some() || waiting.elapsed() > Duration::from_secs(60) {
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!("kill {kill}: the installer never started ({exited:?}):\n{log}");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis((5 + rng.below(300)) * STRETCH));
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("kill {kill}: the installer ended by itself ({status}):\n{log}");
        }
        child.kill().expect("SIGKILL the installer");
        child.wait().expect("reap the installer");
        reader.join().unwrap();
        installs += count.load(Ordering::SeqCst);
        if check(dir.path(), &trusted, kill).is_some() {
            installed_runs += 1;
        }
    }
    eprintln!(
        "{KILLS} kills in {:.1} s (seed {seed:#x}): {installs} install calls returned, an \
         installed model was active after {installed_runs} kills",
        started.elapsed().as_secs_f64()
    );
    assert!(
        installs >= u64::from(KILLS),
        "the installer made almost no progress: {installs}"
    );
    assert!(
        installed_runs > KILLS / 4,
        "installed models were rarely active: {installed_runs}"
    );
}
