//! `tinylcm model sign --golden|status|install|activate|rollback` through the binary, with the
//! service stopped (the CLI opens the database) and running (the database is held, so
//! requests are handed over through `incoming/` and processed by the library call the service
//! makes).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use tinylcm::engine::EngineConfig;
use tinylcm::model::ModelManifest;
use tinylcm::modelstore::{ModelStore, ModelsConfig, Outcome, RolledBack, process_incoming};
use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm_protocol::release::{PublicKey, SignedRelease};

#[path = "support/cli.rs"]
mod cli;

fn run(args: &[&str], config: &Path, state: &Path) -> Output {
    cli::tinylcm()
        .arg("model")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fail(out: Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    state: PathBuf,
    model: PathBuf,
    release: PathBuf,
    keys: PathBuf,
}

/// Keys, a config trusting them, and the default f32 model signed with two goldens.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ok(cli::tinylcm()
        .args(["model", "keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap());
    let config = dir.path().join("tinylcm.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ntrusted-keys = {:?}\nhealth-frames = 10\n",
            keys.join("release.pub")
        ),
    )
    .unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let model = dir.path().join("shapes.tflite");
    std::fs::copy(models.join("default_f32.tflite"), &model).unwrap();
    std::fs::copy(
        models.join("default_f32.toml"),
        dir.path().join("shapes.toml"),
    )
    .unwrap();
    ok(cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(keys.join("release.key"))
        .args(["--name", "shapes", "--version", "7", "--golden", "2"])
        .output()
        .unwrap());
    let state = dir.path().join("state");
    Setup {
        release: dir.path().join("shapes.tflite.release.json"),
        config,
        state,
        model,
        keys,
        dir,
    }
}

#[test]
fn sign_golden_puts_checked_goldens_into_the_signed_manifest() {
    let s = setup();
    let signed: SignedRelease =
        serde_json::from_slice(&std::fs::read(&s.release).unwrap()).unwrap();
    let public =
        PublicKey::all_from_text(&std::fs::read_to_string(s.keys.join("release.pub")).unwrap())
            .unwrap();
    let release = signed.verify(&public).unwrap();
    let manifest = ModelManifest::parse(&release.model_manifest, Path::new("m")).unwrap();
    assert_eq!(manifest.golden.len(), 2);
    assert_eq!(manifest.golden[0].scores.len(), manifest.labels.len());
    assert!(manifest.golden[0].embedding.is_some());
    // The manifest's comments survive: goldens are appended to the text that was signed.
    assert!(release.model_manifest.contains("# index order"));
}

#[test]
fn install_activate_rollback_with_the_service_stopped() {
    let s = setup();
    let empty = ok(run(&["status"], &s.config, &s.state));
    assert!(empty.contains("slot a: empty"), "{empty}");

    let model = s.model.to_str().unwrap();
    let release = s.release.to_str().unwrap();
    let out = ok(run(
        &["install", model, "--release", release],
        &s.config,
        &s.state,
    ));
    assert!(
        out.contains("installed in slot a") && out.contains("2 golden"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&["status", "--json"], &s.config, &s.state))).unwrap();
    assert_eq!(json["state"]["staged"]["version"], "7");
    assert!(json["active"].is_null());

    let out = ok(run(&["activate"], &s.config, &s.state));
    assert!(out.contains("on trial"), "{out}");
    let text = ok(run(&["status"], &s.config, &s.state));
    assert!(text.contains("on trial: shapes 7"), "{text}");
    assert!(text.contains("slot a: shapes 7"), "{text}");

    let out = ok(run(&["rollback", "--reason", "test"], &s.config, &s.state));
    assert!(out.contains("rolled back"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&["status", "--json"], &s.config, &s.state))).unwrap();
    assert!(json["active"].is_null());
    assert_eq!(json["state"]["last_refusal"]["reason"], "test");

    // Nothing left to roll back or activate: clear refusals, not obscure failures.
    assert!(fail(run(&["rollback"], &s.config, &s.state)).contains("nothing to roll back"));
    assert!(fail(run(&["activate"], &s.config, &s.state)).contains("install one first"));

    // A truncated file is refused with the reason.
    let cut = s.dir.path().join("cut.tflite");
    let bytes = std::fs::read(&s.model).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fail(run(
        &["install", cut.to_str().unwrap(), "--release", release],
        &s.config,
        &s.state,
    ));
    assert!(
        err.contains("does not match") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn without_trusted_keys_install_says_how_to_configure_them() {
    let s = setup();
    let bare = s.dir.path().join("bare.toml");
    std::fs::write(&bare, "").unwrap();
    let err = fail(run(
        &[
            "install",
            s.model.to_str().unwrap(),
            "--release",
            s.release.to_str().unwrap(),
        ],
        &bare,
        &s.state,
    ));
    assert!(err.contains("[models] trusted-keys"), "{err}");
}

#[test]
fn a_running_service_gets_requests_handed_over() {
    let s = setup();
    // The "service": holds the database.
    let store =
        Arc::new(Store::open(s.state.join("state.redb"), DurabilityPolicy::default()).unwrap());
    let model = s.model.to_str().unwrap();
    let release = s.release.to_str().unwrap();
    let out = ok(run(
        &["install", model, "--release", release, "--activate"],
        &s.config,
        &s.state,
    ));
    assert!(out.contains("handed over"), "{out}");
    let text = ok(run(&["status"], &s.config, &s.state));
    assert!(text.contains("the service runs"), "{text}");
    assert!(text.contains("1 hand-over request(s)"), "{text}");
    assert!(
        ok(run(
            &["rollback", "--reason", "by hand"],
            &s.config,
            &s.state
        ))
        .contains("handed over")
    );

    // The service processes the folder with the library call it makes.
    let config = ModelsConfig {
        trusted_keys: Some(s.keys.join("release.pub")),
        ..ModelsConfig::default()
    };
    let models = ModelStore::open(
        &config,
        s.state.join("models"),
        EngineConfig::default(),
        Arc::clone(&store),
    )
    .unwrap();
    let done = process_incoming(&models).unwrap();
    assert_eq!(done.len(), 2);
    let Ok(Outcome::Installed {
        installed,
        activated: true,
    }) = &done[0].result
    else {
        panic!("{:?}", done[0].result);
    };
    assert_eq!(installed.record.version, "7");
    assert!(matches!(
        done[1].result,
        Ok(Outcome::RolledBack(RolledBack::Trial(_)))
    ));
    assert!(
        done.iter()
            .all(|d| d.result.as_ref().unwrap().changes_active_model())
    );
    // Requests and their files are gone; a second pass finds nothing.
    let left: Vec<_> = std::fs::read_dir(s.state.join("models/incoming"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(process_incoming(&models).unwrap().is_empty());
    assert_eq!(
        models.state().unwrap().last_refusal.unwrap().reason,
        "by hand"
    );

    // A request the service cannot carry out is recorded where the operator looks.
    assert!(ok(run(&["activate"], &s.config, &s.state)).contains("handed over"));
    let done = process_incoming(&models).unwrap();
    assert!(done[0].result.is_err());
    let why = models.state().unwrap().last_refusal.unwrap().reason;
    assert!(why.contains("install one first"), "{why}");
}
