//! `tinylcm model keygen|sign` through the binary: the key files, and a signed release of the
//! default model that verifies with the public key and describes the file exactly.

use std::path::Path;

use tinylcm_protocol::release::{PublicKey, SignedRelease};

#[path = "support/cli.rs"]
mod cli;

fn ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_release_signed_by_the_cli_verifies_with_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ok(cli::tinylcm().args(["model", "keygen", "--out"]).arg(&keys));
    let secret = keys.join("release.key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions())
            & 0o777,
        0o600
    );
    // Keys are never overwritten.
    let again = cli::tinylcm()
        .args(["model", "keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let model = dir.path().join("shapes.tflite");
    std::fs::copy(models.join("default_int8.tflite"), &model).unwrap();
    std::fs::copy(
        models.join("default_int8.toml"),
        dir.path().join("shapes.toml"),
    )
    .unwrap();
    ok(cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(&secret)
        .args(["--name", "shapes", "--version", "2", "--notes", "retrained"]));

    let signed: SignedRelease = serde_json::from_slice(
        &std::fs::read(dir.path().join("shapes.tflite.release.json")).unwrap(),
    )
    .unwrap();
    let public =
        PublicKey::all_from_text(&std::fs::read_to_string(keys.join("release.pub")).unwrap())
            .unwrap();
    let manifest = signed.verify(&public).unwrap();
    assert_eq!(
        (manifest.name.as_str(), manifest.version.as_str()),
        ("shapes", "2")
    );
    assert!(manifest.model_manifest.contains("labels"));
    manifest
        .check_model(&std::fs::read(&model).unwrap())
        .unwrap();

    // A bad release name is refused before anything is written.
    let bad = cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(&secret)
        .args(["--name", "../x", "--version", "3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // Fails before this change (no such options): the security epoch and the compatible go
    // into the signed manifest; a compatible that could never match is refused.
    ok(cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(&secret)
        .args(["--name", "shapes", "--version", "4", "--epoch", "3"])
        .args(["--compatible", "tinylcm-cm4"]));
    let signed: SignedRelease = serde_json::from_slice(
        &std::fs::read(dir.path().join("shapes.tflite.release.json")).unwrap(),
    )
    .unwrap();
    let manifest = signed.verify(&public).unwrap();
    assert_eq!(manifest.epoch, 3);
    assert_eq!(manifest.compatible.as_deref(), Some("tinylcm-cm4"));
    let bad = cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(&secret)
        .args(["--name", "shapes", "--version", "5", "--compatible", "a b"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("compatible"));
}

/// `tinylcm model sign` runs the flatbuffer walk the device runs before LiteRT: a truncated
/// model is refused with a clear error and no release file is written. Fails before this
/// change: the truncated file was signed (size and SHA-256 are all `sign` checked).
#[test]
fn a_model_the_walker_rejects_is_not_signed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ok(cli::tinylcm().args(["model", "keygen", "--out"]).arg(&keys));
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let full = std::fs::read(models.join("default_int8.tflite")).unwrap();
    let model = dir.path().join("cut.tflite");
    std::fs::write(&model, &full[..full.len() / 2]).unwrap();
    std::fs::copy(
        models.join("default_int8.toml"),
        dir.path().join("cut.toml"),
    )
    .unwrap();
    let out = cli::tinylcm()
        .args(["model", "sign"])
        .arg(&model)
        .arg("--key")
        .arg(keys.join("release.key"))
        .args(["--name", "cut", "--version", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a truncated model was signed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a well-formed TFLite model") && stderr.contains("refusing to sign"),
        "{stderr}"
    );
    assert!(!dir.path().join("cut.tflite.release.json").exists());
}
