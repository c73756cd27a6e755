//! Shared fixtures of the model store tests: real models, real keys, real signed releases.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinylcm::engine::EngineConfig;
use tinylcm::model::ModelManifest;
use tinylcm::modelstore::{BootChoice, ModelStore, ModelsConfig, Verdict, golden};
use tinylcm::state::{DurabilityPolicy, Store};
use tinylcm_protocol::package::sha256_hex;
use tinylcm_protocol::release::{FORMAT, ReleaseManifest, SignedRelease, SigningKey};

/// A model file with its manifest text.
#[derive(Clone)]
pub struct Model {
    pub bytes: Vec<u8>,
    pub manifest: String,
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

/// `default_f32` or `default_int8` from `runtime/models/default`.
pub fn model(stem: &str) -> Model {
    let dir = models_dir();
    Model {
        bytes: std::fs::read(dir.join(format!("{stem}.tflite"))).unwrap(),
        manifest: std::fs::read_to_string(dir.join(format!("{stem}.toml"))).unwrap(),
    }
}

/// `model` with `n` goldens computed from `from` (usually itself) through the real engine.
pub fn with_goldens(model: &Model, from: &Model, n: usize) -> Model {
    let from_manifest = ModelManifest::parse(&from.manifest, Path::new("from")).unwrap();
    let goldens = golden::compute(
        &EngineConfig::default(),
        Arc::from(from.bytes.clone()),
        &from_manifest,
        n,
        Some(1e-3),
    )
    .unwrap();
    Model {
        bytes: model.bytes.clone(),
        manifest: format!("{}{}", model.manifest, golden::to_toml(&goldens)),
    }
}

/// A signed release of `model` as NAME/VERSION.
pub fn release(model: &Model, key: &SigningKey, name: &str, version: &str) -> SignedRelease {
    release_bound(model, key, name, version, 0, None)
}

/// A signed release of `model` as NAME/VERSION at security `epoch`, bound to `compatible`.
pub fn release_bound(
    model: &Model,
    key: &SigningKey,
    name: &str,
    version: &str,
    epoch: u32,
    compatible: Option<&str>,
) -> SignedRelease {
    key.sign(&ReleaseManifest {
        format: FORMAT,
        name: name.into(),
        version: version.into(),
        size: model.bytes.len() as u64,
        sha256: sha256_hex(&model.bytes),
        model_manifest: model.manifest.clone(),
        created_unix_ms: 1,
        notes: None,
        epoch,
        compatible: compatible.map(str::to_string),
    })
    .unwrap()
}

/// Writes `key`'s public line to DIR/trusted.pub and returns the path.
pub fn trust(dir: &Path, key: &SigningKey) -> PathBuf {
    let path = dir.join("trusted.pub");
    std::fs::write(&path, format!("{}\n", key.public().to_text())).unwrap();
    path
}

/// Store settings for tests: trusted keys, a short health window.
pub fn config(trusted: Option<PathBuf>) -> ModelsConfig {
    ModelsConfig {
        trusted_keys: trusted,
        health_frames: 5,
        ..ModelsConfig::default()
    }
}

/// The state database and model store in DIR.
pub fn open(dir: &Path, config: &ModelsConfig) -> (Arc<Store>, ModelStore) {
    let store = Arc::new(Store::open(dir.join("state.redb"), DurabilityPolicy::default()).unwrap());
    let models = ModelStore::open(
        config,
        dir.join("models"),
        EngineConfig::default(),
        Arc::clone(&store),
    )
    .unwrap();
    (store, models)
}

/// Loads what a boot chose through the real engine and runs one frame; returns the running
/// release's version (`None`: the configured model). `context` prefixes failure messages.
pub fn run_choice(choice: BootChoice, context: &str) -> Option<String> {
    let BootChoice::Installed {
        model,
        manifest,
        identity,
    } = choice
    else {
        return None;
    };
    let loaded = tinylcm::model::LoadedModel::from_file(&model, Some(&manifest))
        .unwrap_or_else(|e| panic!("{context}: the active model does not load: {e}"));
    assert_eq!(loaded.manifest.sha256, identity.sha256, "{context}");
    let mut pipeline =
        tinylcm::assemble::pipeline(&tinylcm::config::Config::default(), &loaded).unwrap();
    let frame = golden::golden_frame(1, 96, 96);
    assert!(
        pipeline.process(&frame).unwrap().confidence.is_finite(),
        "{context}"
    );
    Some(identity.version)
}

/// Feeds the health window of the model on trial good frames until it commits, and commits it;
/// panics on a rollback.
pub fn pass_health_window(models: &ModelStore) {
    let mut window = models.health_window().unwrap().expect("a model on trial");
    loop {
        match window.on_frame(true, Some(0.9)) {
            Verdict::Pending => continue,
            Verdict::Commit => break,
            Verdict::Rollback(why) => panic!("unexpected rollback: {why}"),
        }
    }
    models.commit(window.summary()).unwrap();
}
