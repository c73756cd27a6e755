//! A published release as a data scientist reads it from MLflow: the real `mlflow` client of
//! the test venv (`SPHERE_TEST_PYTHON`) downloads `models:/<name>/<version>` from the real
//! MLflow server (`SPHERE_TEST_MLFLOW_URL`, artifacts proxied to the real S3 gateway) and gets
//! the model file, its manifest and the signed release that sphere-lite published, by version
//! and by the rollout's alias.

use std::path::Path;
use std::process::Command;

use tinylcm_protocol::package::sha256_hex;
use tinylcm_protocol::release::{ReleaseManifest, SignedRelease, SigningKey};

#[path = "support/backend.rs"]
mod backend;
#[path = "support/release.rs"]
mod release;

use backend::Backend;

/// `mlflow artifacts download -u <uri> -d <dir>` with the venv's MLflow against `url`.
fn mlflow_download(python: &str, url: &str, uri: &str, dir: &Path) -> std::process::Output {
    Command::new(python)
        .args(["-m", "mlflow", "artifacts", "download", "-u", uri, "-d"])
        .arg(dir)
        .env("MLFLOW_TRACKING_URI", url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} -m mlflow: {e}"))
}

/// Fails before this change: the model version's source `runs:/<run>/model` named an empty
/// folder; MLflow answered "No artifacts found to download" and the folder stayed empty.
#[test]
fn mlflow_artifacts_download_of_a_models_uri_returns_the_published_release() {
    let Some(backend) = Backend::mlflow("mlflow_artifacts") else {
        return;
    };
    let Ok(python) = std::env::var("SPHERE_TEST_PYTHON") else {
        tinylcm_protocol::test_support::missing(
            "mlflow_artifacts: the venv's Python with MLflow (SPHERE_TEST_PYTHON is not set)",
            "run ./scripts/test sphere, which sets it to the sphere stack's venv",
        );
        return;
    };
    let settings = backend.mlflow_settings().unwrap().clone();
    let key = SigningKey::generate().unwrap();
    let sphere = backend.open().with_release_keys(vec![key.public()]);
    let model = release::model_bytes("1");
    let signed = release::signed(&key, "shapes", "1-0", &model);
    sphere.publish_release("ops", &signed, &model).unwrap();
    // Published again: the files are there already, nothing changes.
    sphere.publish_release("ops", &signed, &model).unwrap();

    // One registered model per namespace and name, so its first version is this release.
    let model_name = format!("{}.shapes", settings.namespace.replace('/', "."));
    let uri = format!("models:/{model_name}/1");
    let out = tempfile::tempdir().unwrap();
    let done = mlflow_download(&python, &settings.url, &uri, out.path());
    assert!(
        done.status.success(),
        "mlflow artifacts download -u {uri} failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let file = |name: &str| {
        std::fs::read(out.path().join(name)).unwrap_or_else(|e| {
            panic!(
                "{name} not downloaded from {uri} ({e}); got {:?}",
                std::fs::read_dir(out.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect::<Vec<_>>()
            )
        })
    };
    assert_eq!(sha256_hex(&file("model.tflite")), sha256_hex(&model));
    let sent: SignedRelease = serde_json::from_slice(&signed).unwrap();
    let got: SignedRelease = serde_json::from_slice(&file("release.json")).unwrap();
    assert_eq!(
        got, sent,
        "the signed release, verifiable as devices verify it"
    );
    got.verify(&[key.public()]).unwrap();
    let manifest: ReleaseManifest = serde_json::from_str(&sent.manifest).unwrap();
    assert_eq!(
        String::from_utf8(file("model.toml")).unwrap(),
        manifest.model_manifest
    );
    // What the fleet runs, by the rollout's alias: the same files.
    sphere
        .set_rollout(
            "ops",
            "shapes",
            "1-0",
            &tinylcm_protocol::api::RolloutRequest {
                group: None,
                percent: None,
            },
        )
        .unwrap();
    let by_alias = format!("models:/{model_name}@rollout-all");
    let out = tempfile::tempdir().unwrap();
    let done = mlflow_download(&python, &settings.url, &by_alias, out.path());
    assert!(
        done.status.success(),
        "{by_alias}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let model_by_alias = std::fs::read(out.path().join("model.tflite")).unwrap();
    assert_eq!(sha256_hex(&model_by_alias), sha256_hex(&model));
    // The release is served from sphere-lite's own store as before.
    let tracking = backend.tracking();
    let record = tracking.release("shapes", "1-0").unwrap().unwrap();
    assert_eq!(record.sha256, sha256_hex(&model));
}
