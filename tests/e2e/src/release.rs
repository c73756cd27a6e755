//! Signed model releases as an operator makes them: the project's default models (with goldens
//! computed through the real engine, from the model itself or, for a release that must fail
//! its smoke test, from another model), signed with a test key, uploaded to sphere-lite and
//! rolled out to every device.
//!
//! Why here: the device-level tests publish a handful of good and bad releases each, and every
//! one of them must be a real release the server accepts, so the bad ones fail only on the
//! device for the one reason each test names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tinylcm::engine::EngineConfig;
use tinylcm::model::ModelManifest;
use tinylcm::modelstore::golden;
use tinylcm_protocol::package::sha256_hex;
use tinylcm_protocol::release::{FORMAT, ReleaseManifest, SignedRelease, SigningKey};

use crate::sphere::Sphere;

/// A model file with its manifest text (what a release carries).
#[derive(Debug, Clone)]
pub struct Model {
    /// The `.tflite` bytes.
    pub bytes: Vec<u8>,
    /// The runtime's model manifest (`<model>.toml`), goldens included.
    pub manifest: String,
}

impl Model {
    /// Its SHA-256 (lowercase hex), as releases and the device name it.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// `default_f32` or `default_int8` from `runtime/models/default`, without goldens.
pub fn default_model(stem: &str) -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/models/default");
    Model {
        bytes: std::fs::read(dir.join(format!("{stem}.tflite"))).unwrap(),
        manifest: std::fs::read_to_string(dir.join(format!("{stem}.toml"))).unwrap(),
    }
}

/// `model` with `n` goldens whose expected outputs come from running `from` through the real
/// engine (`from` = `model` for a release that passes its smoke test).
pub fn with_goldens(model: &Model, from: &Model, n: usize) -> Model {
    let from_manifest = ModelManifest::parse(&from.manifest, Path::new("golden source"))
        .expect("the golden source's manifest parses");
    let goldens = golden::compute(
        &EngineConfig::default(),
        Arc::from(from.bytes.clone()),
        &from_manifest,
        n,
        Some(1e-3),
    )
    .expect("goldens computed through the engine (are the libraries fetched?)");
    Model {
        bytes: model.bytes.clone(),
        manifest: format!("{}{}", model.manifest, golden::to_toml(&goldens)),
    }
}

/// `model` with `tag`-filled bytes appended, its manifest's SHA-256 updated: the same network
/// (flatbuffers ignore what follows the model) under another SHA-256, so each release of a test
/// is a file the device has neither run nor refused before.
pub fn variant(model: &Model, tag: u8) -> Model {
    let old = model.sha256();
    let mut bytes = model.bytes.clone();
    bytes.extend_from_slice(&[tag; 64]);
    let new = sha256_hex(&bytes);
    assert!(model.manifest.contains(&old), "{}", model.manifest);
    Model {
        bytes,
        manifest: model.manifest.replace(&old, &new),
    }
}

/// A fresh release key with its public line written to `dir/<name>.pub`.
pub fn key(dir: &Path, name: &str) -> (SigningKey, PathBuf) {
    let key = SigningKey::generate().unwrap();
    let file = dir.join(format!("{name}.pub"));
    std::fs::write(&file, format!("{}\n", key.public().to_text())).unwrap();
    (key, file)
}

/// A trusted-keys file `dir/<name>` holding the public lines of `keys`.
pub fn key_file(dir: &Path, name: &str, keys: &[&SigningKey]) -> PathBuf {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.public().to_text()))
        .collect();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// `model` signed with `key` as release NAME/VERSION (security epoch 0, bound to no
/// compatible: what releases were before either existed).
pub fn sign(model: &Model, key: &SigningKey, name: &str, version: &str) -> SignedRelease {
    sign_at(model, key, name, version, 0)
}

/// `model` signed with `key` as release NAME/VERSION at security `epoch`.
pub fn sign_at(
    model: &Model,
    key: &SigningKey,
    name: &str,
    version: &str,
    epoch: u32,
) -> SignedRelease {
    key.sign(&ReleaseManifest {
        format: FORMAT,
        name: name.into(),
        version: version.into(),
        size: model.bytes.len() as u64,
        sha256: model.sha256(),
        model_manifest: model.manifest.clone(),
        created_unix_ms: tinylcm::utc::now_unix_ms(),
        notes: None,
        epoch,
        compatible: None,
    })
    .unwrap()
}

/// Uploads `model` with its signed release to `sphere`: its answer's status and body.
pub fn try_publish(
    sphere: &Sphere,
    model: &Model,
    release: &SignedRelease,
) -> (u16, serde_json::Value) {
    let release_json = serde_json::to_vec(release).unwrap();
    sphere.post_multipart(
        "/api/v2/models",
        &[
            ("release", Some("release.json"), &release_json),
            ("model", Some("model.tflite"), &model.bytes),
        ],
    )
}

/// Uploads `model` with its signed release to `sphere`, which must accept it.
pub fn publish(sphere: &Sphere, model: &Model, release: &SignedRelease) {
    let manifest: ReleaseManifest = serde_json::from_str(&release.manifest).unwrap();
    let (status, body) = try_publish(sphere, model, release);
    assert_eq!(
        status, 201,
        "sphere-lite refused release {}/{}: {body}",
        manifest.name, manifest.version
    );
}

/// Rolls release NAME/VERSION out to every device (100 % of group `all`).
pub fn roll_out(sphere: &Sphere, name: &str, version: &str) {
    let (status, body) = sphere.call(
        "POST",
        &format!("/api/v2/models/{name}/{version}/rollout"),
        Some(&json!({"percent": 100})),
    );
    assert!(
        status == 200 || status == 201,
        "rollout of {name}/{version}: {status} {body}"
    );
}

/// [`publish`], then [`roll_out`] to every device.
pub fn publish_and_roll_out(sphere: &Sphere, model: &Model, release: &SignedRelease) {
    publish(sphere, model, release);
    let manifest: ReleaseManifest = serde_json::from_str(&release.manifest).unwrap();
    roll_out(sphere, &manifest.name, &manifest.version);
}
