//! Downgrade protection of the A/B model store with real models through the real engine: the
//! security epoch floor (raised by a commit, kept across restarts and rollbacks, enforced on
//! every install), the `compatible` binding, revoked release keys, and the checks a release
//! gets before its file is downloaded.
//!
//! Every test here fails before this change: releases carried no epoch or compatible, the
//! store kept no floor and had no revoked keys, so an older signed release installed.

use tinylcm::modelstore::{BootChoice, ModelStore, ModelStoreError, ModelsConfig, RolledBack};
use tinylcm_protocol::release::SigningKey;

mod modelstore_support;
use modelstore_support::{
    Model, config, model, open, pass_health_window, release_bound, run_choice, trust, with_goldens,
};

/// `stem` with goldens computed from itself.
fn good(stem: &str) -> Model {
    let m = model(stem);
    with_goldens(&m, &m, 1)
}

/// Installs, activates, boots and commits `m` as `version` at `epoch`.
fn install_and_commit(models: &ModelStore, m: &Model, key: &SigningKey, version: &str, epoch: u32) {
    models
        .install(
            &m.bytes,
            &release_bound(m, key, "shapes", version, epoch, None),
            true,
        )
        .unwrap();
    models.boot().unwrap();
    pass_health_window(models);
}

#[test]
fn the_epoch_floor_refuses_older_releases_across_restarts_and_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let cfg = config(Some(trust(dir.path(), &key)));
    let (f32, int8) = (good("default_f32"), good("default_int8"));
    {
        let (_store, models) = open(dir.path(), &cfg);
        install_and_commit(&models, &f32, &key, "1", 1);
        assert_eq!(models.state().unwrap().epoch_floor, 1);
        install_and_commit(&models, &int8, &key, "2", 2);
        let state = models.state().unwrap();
        assert_eq!(state.epoch_floor, 2);
        assert_eq!(state.committed.as_ref().unwrap().epoch, 2);
        assert!(
            state
                .history
                .iter()
                .any(|h| h.detail.contains("floor raised to 2")),
            "{:#?}",
            state.history
        );

        // The old release (still validly signed) is refused, by sync and by a person alike.
        let old = release_bound(&f32, &key, "shapes", "1", 1, None);
        let e = models.install(&f32.bytes, &old, true).unwrap_err();
        assert!(
            matches!(
                e,
                ModelStoreError::BelowFloor {
                    epoch: 1,
                    floor: 2,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("--epoch 2"), "{e}");
        assert!(matches!(
            models.check_release(&old),
            Err(ModelStoreError::BelowFloor { .. })
        ));
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("m.tflite"), &f32.bytes).unwrap();
        std::fs::write(
            files.join("m.release.json"),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        let e = models
            .install_files(&files.join("m.tflite"), &files.join("m.release.json"), true)
            .unwrap_err();
        assert!(matches!(e, ModelStoreError::BelowFloor { .. }), "{e}");
        assert_eq!(models.active().unwrap().unwrap().version, "2");
        assert!(
            models
                .state()
                .unwrap()
                .last_refusal
                .unwrap()
                .reason
                .contains("below this device's floor 2")
        );
    }

    // A restart keeps the floor.
    let (_store, models) = open(dir.path(), &cfg);
    assert_eq!(models.state().unwrap().epoch_floor, 2);
    // A rollback does not return to the previous model below the floor, nor lower the floor.
    let back = models.rollback("operator").unwrap();
    assert!(matches!(back, RolledBack::ToConfigured(_)), "{back:?}");
    assert_eq!(run_choice(models.boot().unwrap().choice, "boot"), None);
    let state = models.state().unwrap();
    assert_eq!(state.epoch_floor, 2);
    assert!(state.committed.is_none() && state.previous.is_none());
    let again = release_bound(&f32, &key, "shapes", "1", 1, None);
    assert!(matches!(
        models.install(&f32.bytes, &again, true),
        Err(ModelStoreError::BelowFloor { .. })
    ));
    // The same epoch (or a higher one) still installs.
    let same = release_bound(&f32, &key, "shapes", "3", 2, None);
    models.install(&f32.bytes, &same, true).unwrap();
}

#[test]
fn a_rollback_within_the_floor_still_returns_to_the_previous_model() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let (_store, models) = open(dir.path(), &config(Some(trust(dir.path(), &key))));
    install_and_commit(&models, &good("default_f32"), &key, "1", 3);
    install_and_commit(&models, &good("default_int8"), &key, "2", 3);
    let back = models.rollback("operator").unwrap();
    assert!(matches!(back, RolledBack::ToPrevious { .. }), "{back:?}");
    assert_eq!(
        run_choice(models.boot().unwrap().choice, "boot").as_deref(),
        Some("1")
    );
}

/// The message of an `Incompatible` refusal (anything else fails the test).
fn incompatible<T: std::fmt::Debug>(r: Result<T, ModelStoreError>) -> String {
    let e = r.unwrap_err();
    assert!(matches!(e, ModelStoreError::Incompatible { .. }), "{e}");
    e.to_string()
}

#[test]
fn compatible_must_match_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let trusted = trust(dir.path(), &key);
    let f32 = good("default_f32");
    let bound = |c: Option<&str>| release_bound(&f32, &key, "shapes", "1", 0, c);
    let store_for = |name: &str, compatible: Option<&str>| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let cfg = ModelsConfig {
            compatible: compatible.map(str::to_string),
            ..config(Some(trusted.clone()))
        };
        open(&sub, &cfg)
    };

    // A device without a compatible takes unbound releases only.
    let (_s1, unbound) = store_for("unbound", None);
    unbound.check_release(&bound(None)).unwrap();
    let e = incompatible(unbound.check_release(&bound(Some("tinylcm-cm4"))));
    assert!(
        e.contains("\"tinylcm-cm4\"") && e.contains("no `[models] compatible`"),
        "{e}"
    );

    // A device with one takes releases bound to the same only.
    let (_s2, cm4) = store_for("cm4", Some("tinylcm-cm4"));
    incompatible(cm4.check_release(&bound(None)));
    let e = incompatible(cm4.install(&f32.bytes, &bound(Some("tinylcm-rpi0-2w")), true));
    assert!(
        e.contains("tinylcm-rpi0-2w") && e.contains("tinylcm-cm4"),
        "{e}"
    );
    assert!(cm4.active().unwrap().is_none());
    cm4.install(&f32.bytes, &bound(Some("tinylcm-cm4")), true)
        .unwrap();
}

#[test]
fn a_revoked_key_is_refused_and_its_model_no_longer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let trusted = trust(dir.path(), &key);
    let f32 = good("default_f32");
    {
        let (_store, models) = open(dir.path(), &config(Some(trusted.clone())));
        install_and_commit(&models, &f32, &key, "1", 0);
    }
    // The key stays in the trusted file; revoking it is enough.
    let cfg = ModelsConfig {
        revoked_keys: vec![key.public().id().to_uppercase()],
        ..config(Some(trusted))
    };
    cfg.validate().unwrap();
    let (_store, models) = open(dir.path(), &cfg);
    let e = models
        .check_release(&release_bound(&f32, &key, "shapes", "2", 0, None))
        .unwrap_err();
    assert!(matches!(e, ModelStoreError::RevokedKey { .. }), "{e}");
    let e = models
        .install(
            &f32.bytes,
            &release_bound(&f32, &key, "shapes", "2", 0, None),
            true,
        )
        .unwrap_err();
    assert!(matches!(e, ModelStoreError::RevokedKey { .. }), "{e}");
    let boot = models.boot().unwrap();
    assert_eq!(boot.choice, BootChoice::Configured);
    assert!(
        boot.rolled_back
            .as_deref()
            .unwrap_or_default()
            .contains("revoked"),
        "{boot:?}"
    );
}

#[test]
fn a_release_over_max_bytes_is_refused_from_its_signed_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let f32 = good("default_f32");
    let cfg = ModelsConfig {
        max_bytes: f32.bytes.len() as u64 - 1,
        ..config(Some(trust(dir.path(), &key)))
    };
    let (_store, models) = open(dir.path(), &cfg);
    let e = models
        .check_release(&release_bound(&f32, &key, "shapes", "1", 0, None))
        .unwrap_err();
    assert!(matches!(e, ModelStoreError::TooLarge { .. }), "{e}");
    assert!(e.is_refusal());
}
