//! Releases in MLflow's model registry, against a real MLflow server (`SPHERE_TEST_MLFLOW_URL`;
//! unset, skipped with a note, or a failure under `./scripts/test`): each release is a version
//! of a registered model, exactly once even when published again, and rollouts move the
//! `rollout-<group>` / `canary-<group>` aliases, so people and tools that read MLflow see what
//! the fleet runs.

use serde_json::Value;
use sphere_lite::adapters::{MlflowSettings, MlflowTracking};
use sphere_lite::ports::prelude::*;
use sphere_lite::ports::{Recorded, ReleaseRecord, Rollout};
use tinylcm_protocol::release::{SignedRelease, SigningKey};

#[path = "support/release.rs"]
mod release;

fn record(key: &SigningKey, name: &str, version: &str) -> ReleaseRecord {
    let model = release::model_bytes(version);
    let signed: SignedRelease =
        serde_json::from_slice(&release::signed(key, name, version, &model)).unwrap();
    ReleaseRecord {
        name: name.into(),
        version: version.into(),
        size: model.len() as u64,
        sha256: tinylcm_protocol::package::sha256_hex(&model),
        signed,
        blob_key: format!("releases/{name}/{version}/model.tflite"),
        uploaded_by: "ops".into(),
        uploaded_unix_ms: 1_764_147_600_000,
    }
}

fn rollout(group: &str, version: &str, percent: u8) -> Rollout {
    Rollout {
        group: group.into(),
        name: "shapes".into(),
        version: version.into(),
        percent,
        previous: None,
        by: "ops".into(),
        unix_ms: 1_764_147_600_000,
    }
}

fn mlflow_get(url: &str, endpoint: &str, query: &[(&str, &str)]) -> Value {
    let mut r = ureq::get(&format!("{url}/api/2.0/mlflow/{endpoint}"));
    for (k, v) in query {
        r = r.query(k, v);
    }
    serde_json::from_str(&r.call().unwrap().into_string().unwrap()).unwrap()
}

#[test]
fn releases_are_registered_model_versions_and_rollouts_move_aliases() {
    let Ok(url) = std::env::var("SPHERE_TEST_MLFLOW_URL") else {
        tinylcm_protocol::test_support::missing(
            "mlflow_registry: an MLflow server (SPHERE_TEST_MLFLOW_URL is not set)",
            "run ./scripts/test sphere, which starts MLflow and sets it",
        );
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("t/registry-{nanos:x}");
    let tracking = MlflowTracking::open(&MlflowSettings {
        url: url.clone(),
        namespace: namespace.clone(),
        metric_keys: Default::default(),
    })
    .unwrap();
    let key = SigningKey::generate().unwrap();
    let (v1, v2) = (record(&key, "shapes", "1-0"), record(&key, "shapes", "2-0"));
    assert_eq!(tracking.put_release(&v1).unwrap(), Recorded::New);
    assert_eq!(tracking.put_release(&v2).unwrap(), Recorded::New);
    // Published again: no second version.
    assert_eq!(tracking.put_release(&v1).unwrap(), Recorded::AlreadyKnown);
    tracking.set_rollout(&rollout("all", "1-0", 100)).unwrap();
    tracking.set_rollout(&rollout("barn", "2-0", 20)).unwrap();

    let model = format!("{}.shapes", namespace.replace('/', "."));
    let got = mlflow_get(&url, "registered-models/get", &[("name", &model)]);
    let found = mlflow_get(
        &url,
        "model-versions/search",
        &[("filter", &format!("name='{model}'"))],
    );
    let versions = found["model_versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{found}");
    let number_of = |release: &str| {
        versions
            .iter()
            .find(|v| {
                v["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["key"] == "sphere.release_version" && t["value"] == release)
            })
            .unwrap_or_else(|| panic!("no version for {release}: {found}"))["version"]
            .clone()
    };
    let alias = |name: &str| {
        got["registered_model"]["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["alias"] == name)
            .unwrap_or_else(|| panic!("no alias {name}: {got}"))["version"]
            .clone()
    };
    assert_eq!(alias("rollout-all"), number_of("1-0"));
    assert_eq!(alias("canary-barn"), number_of("2-0"));
    // The registry mirrors; the releases read back are the same records.
    assert_eq!(tracking.release("shapes", "2-0").unwrap(), Some(v2));
}
