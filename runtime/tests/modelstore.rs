//! The A/B model store with real models through the real engine: install, activate, health
//! window and commit; refusals (untrusted key, altered manifest, truncated file, goldens of
//! another model, no trusted keys) that leave the active model unchanged; the crash loop.

use std::path::Path;

use tinylcm::modelstore::{ActiveState, BootChoice, ModelStore, ModelStoreError, RolledBack, Slot};
use tinylcm_protocol::release::SigningKey;

mod modelstore_support;
use modelstore_support::{
    config, model, open, pass_health_window, release, run_choice, trust, with_goldens,
};

/// Loads what `boot` chose through the real engine and runs one frame.
fn run_boot_choice(models: &ModelStore) -> Option<String> {
    run_choice(models.boot().unwrap().choice, "boot")
}

#[test]
fn install_activate_health_window_commit() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let (_store, models) = open(dir.path(), &config(Some(trust(dir.path(), &key))));
    assert_eq!(models.active().unwrap(), None);
    assert_eq!(
        run_boot_choice(&models),
        None,
        "nothing installed: configured model"
    );

    let f32 = with_goldens(&model("default_f32"), &model("default_f32"), 2);
    let installed = models
        .install(&f32.bytes, &release(&f32, &key, "shapes", "1"), false)
        .unwrap();
    assert_eq!(installed.smoke.goldens, 2);
    assert_eq!(installed.record.slot, Slot::A);
    // Installed is not active.
    assert_eq!(models.active().unwrap(), None);
    models.activate().unwrap();
    let active = models.active().unwrap().unwrap();
    assert_eq!(
        (active.version.as_str(), active.state),
        ("1", ActiveState::Trial)
    );
    assert_eq!(active.key_id, key.public().id());

    assert_eq!(run_boot_choice(&models).as_deref(), Some("1"));
    assert_eq!(models.state().unwrap().trial.unwrap().starts, 1);
    pass_health_window(&models);
    let active = models.active().unwrap().unwrap();
    assert_eq!(active.state, ActiveState::Committed);
    let committed = models.state().unwrap().committed.unwrap();
    assert!((committed.mean_confidence.unwrap() - 0.9).abs() < 1e-6);

    // The next release goes to the other slot, activated at install; the first stays.
    let int8 = with_goldens(&model("default_int8"), &model("default_int8"), 1);
    let second = models
        .install(&int8.bytes, &release(&int8, &key, "shapes", "2"), true)
        .unwrap();
    assert_eq!(second.record.slot, Slot::B);
    assert_eq!(run_boot_choice(&models).as_deref(), Some("2"));
    pass_health_window(&models);
    let state = models.state().unwrap();
    assert_eq!(state.committed.unwrap().version, "2");
    assert_eq!(state.previous.unwrap().version, "1");

    // An explicit rollback returns to the previous release, whose files are still there.
    let back = models.rollback("operator").unwrap();
    assert!(matches!(back, RolledBack::ToPrevious { .. }), "{back:?}");
    assert_eq!(run_boot_choice(&models).as_deref(), Some("1"));
}

#[test]
fn refused_releases_leave_the_active_model_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let (_store, models) = open(dir.path(), &config(Some(trust(dir.path(), &key))));
    let f32 = with_goldens(&model("default_f32"), &model("default_f32"), 1);
    models
        .install(&f32.bytes, &release(&f32, &key, "shapes", "1"), true)
        .unwrap();
    models.boot().unwrap();
    pass_health_window(&models);
    let before = models.active().unwrap();
    let slot_b = dir.path().join("models/b/model.tflite");

    let int8 = with_goldens(&model("default_int8"), &model("default_int8"), 1);
    let stranger = SigningKey::generate().unwrap();
    let untrusted = models.install(&int8.bytes, &release(&int8, &stranger, "shapes", "2"), true);
    assert!(
        matches!(untrusted, Err(ModelStoreError::UntrustedKey { .. })),
        "{untrusted:?}"
    );

    let mut tampered = release(&int8, &key, "shapes", "2");
    tampered.manifest = tampered.manifest.replace("\"2\"", "\"3\"");
    let altered = models.install(&int8.bytes, &tampered, true);
    assert!(
        matches!(altered, Err(ModelStoreError::BadSignature { .. })),
        "{altered:?}"
    );

    let truncated = models.install(
        &int8.bytes[..int8.bytes.len() - 100],
        &release(&int8, &key, "shapes", "2"),
        true,
    );
    let Err(e @ ModelStoreError::ModelMismatch { .. }) = truncated else {
        panic!("{truncated:?}");
    };
    assert!(e.to_string().contains("truncated"), "{e}");

    // The int8 model with goldens computed from the f32 one.
    let foreign = with_goldens(&model("default_int8"), &model("default_f32"), 1);
    let mismatch = models.install(
        &foreign.bytes,
        &release(&foreign, &key, "shapes", "2"),
        true,
    );
    let Err(e @ ModelStoreError::GoldenMismatch { .. }) = mismatch else {
        panic!("{mismatch:?}");
    };
    let text = e.to_string();
    assert!(text.contains("expected") && text.contains("got"), "{text}");

    for _ in 0..2 {
        assert_eq!(models.active().unwrap(), before);
        assert!(!slot_b.exists(), "a refused release wrote files");
        assert_eq!(models.state().unwrap().staged, None);
        assert_eq!(run_boot_choice(&models).as_deref(), Some("1"));
    }
    let state = models.state().unwrap();
    assert!(state.last_refusal.unwrap().reason.contains("golden"));
    assert!(state.history.len() >= 6);

    // Without trusted keys every install is refused, saying how to configure them.
    drop(models);
    drop(_store);
    let (_store, models) = open(dir.path(), &config(None));
    let none = models.install(&int8.bytes, &release(&int8, &key, "shapes", "2"), true);
    let Err(e @ ModelStoreError::NoTrustedKeys) = none else {
        panic!("{none:?}");
    };
    assert!(e.to_string().contains("trusted-keys"), "{e}");
    assert_eq!(models.active().unwrap(), before);

    // A broken keys file does not stop the store (the service must still start); installs
    // are refused naming the file.
    drop(models);
    drop(_store);
    let bad = dir.path().join("bad.pub");
    std::fs::write(&bad, "tinylcm-release-public:not-base64\n").unwrap();
    let (_store, models) = open(dir.path(), &config(Some(bad)));
    assert_eq!(run_boot_choice(&models).as_deref(), Some("1"));
    let refused = models.install(&int8.bytes, &release(&int8, &key, "shapes", "2"), true);
    let Err(e @ ModelStoreError::TrustedKeys { .. }) = refused else {
        panic!("{refused:?}");
    };
    assert!(e.to_string().contains("bad.pub"), "{e}");
}

#[test]
fn a_crash_loop_rolls_back_to_the_committed_slot() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let cfg = config(Some(trust(dir.path(), &key)));
    {
        let (_store, models) = open(dir.path(), &cfg);
        let f32 = model("default_f32");
        models
            .install(&f32.bytes, &release(&f32, &key, "shapes", "1"), true)
            .unwrap();
        models.boot().unwrap();
        pass_health_window(&models);
        let int8 = model("default_int8");
        models
            .install(&int8.bytes, &release(&int8, &key, "shapes", "2"), true)
            .unwrap();
    }
    // Each start reopens everything, as a restarted service does, and never commits.
    for start in 1..=cfg.max_trial_starts {
        let (_store, models) = open(dir.path(), &cfg);
        let boot = models.boot().unwrap();
        assert_eq!(boot.rolled_back, None);
        let BootChoice::Installed { identity, .. } = boot.choice else {
            panic!("start {start}: the trial must run");
        };
        assert_eq!(
            (identity.version.as_str(), identity.state),
            ("2", ActiveState::Trial)
        );
    }
    let (_store, models) = open(dir.path(), &cfg);
    let boot = models.boot().unwrap();
    let why = boot.rolled_back.expect("the crash loop is rolled back");
    assert!(why.contains("crash loop"), "{why}");
    let BootChoice::Installed { identity, .. } = boot.choice else {
        panic!("the committed slot must run");
    };
    assert_eq!(
        (identity.version.as_str(), identity.state),
        ("1", ActiveState::Committed)
    );
    let state = models.state().unwrap();
    assert!(state.trial.is_none());
    assert!(state.last_refusal.unwrap().reason.contains("crash loop"));
    // Later starts stay on the committed model.
    assert_eq!(run_boot_choice(&models).as_deref(), Some("1"));
}

#[test]
fn a_damaged_slot_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let (_store, models) = open(dir.path(), &config(Some(trust(dir.path(), &key))));
    let f32 = model("default_f32");
    models
        .install(&f32.bytes, &release(&f32, &key, "shapes", "1"), true)
        .unwrap();
    // The file changes behind the store's back (SD card corruption).
    let path = dir.path().join("models/a/model.tflite");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let boot = models.boot().unwrap();
    assert_eq!(boot.choice, BootChoice::Configured);
    assert!(boot.rolled_back.unwrap().contains("cannot be used"));
    assert!(Path::new(&path).exists());
}

#[test]
fn goldens_computed_on_one_backend_hold_on_the_other() {
    use std::sync::Arc;
    use tinylcm::engine::{BackendChoice, EngineConfig};
    use tinylcm::model::ModelManifest;
    use tinylcm::modelstore::golden;
    // libtensorflowlite_c.so exists for x86_64 only: elsewhere there is one backend. A layer
    // choice, not a missing dependency: the runtime layer runs this on x86_64.
    if !cfg!(target_arch = "x86_64") {
        eprintln!(
            "skipped on this architecture: no libtensorflowlite_c.so exists for it, so there is \
             no second backend; ./scripts/test runtime runs this on x86_64"
        );
        return;
    }
    let engine = |backend| EngineConfig {
        backend,
        ..EngineConfig::default()
    };
    for stem in ["default_f32", "default_int8"] {
        let m = model(stem);
        let manifest = ModelManifest::parse(&m.manifest, Path::new(stem)).unwrap();
        let bytes: Arc<[u8]> = Arc::from(m.bytes.clone());
        let goldens = golden::compute(
            &engine(BackendChoice::TfliteC),
            Arc::clone(&bytes),
            &manifest,
            3,
            None,
        )
        .unwrap();
        let signed = ModelManifest {
            golden: goldens,
            ..manifest
        };
        golden::smoke_test(&engine(BackendChoice::Litert), bytes, &signed, stem)
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
    }
}
