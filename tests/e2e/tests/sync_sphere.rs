//! The runtime's sync client against a real sphere-lite, embedded and on MLflow + S3: drift
//! events arrive in the Drift Hub with their images, an operator's validation comes back as a
//! feedback file and is acknowledged, a remote configuration reaches the host and shows as
//! applied, and a signed model release is downloaded and handed to the host byte for byte.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tinylcm::sync::SyncClient;
use tinylcm_e2e::device::{Device, add_drift};
use tinylcm_e2e::host::TestHost;
use tinylcm_e2e::release::{self, Model};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_e2e::wait_for;
use tinylcm_protocol::release::SigningKey;

fn model() -> (Vec<u8>, String) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/models/default");
    (
        std::fs::read(models.join("default_f32.tflite")).unwrap(),
        std::fs::read_to_string(models.join("default_f32.toml")).unwrap(),
    )
}

fn scenario(sphere: Sphere, key: SigningKey, work: &Path) {
    let device = Device::new(&work.join("device"));
    let store = device.open_store();
    // Three drift onsets (the first two of one incident), each with a thumbnail.
    let seqs: Vec<u64> = (0..3)
        .map(|i| add_drift(&store, &device, 1 + i / 2, 100 + i, 7 + i))
        .collect();
    store.flush().unwrap();
    let host = Arc::new(TestHost::new(device.inbox(), vec![key.public()]));
    let client = SyncClient::start(
        device.setup(&sphere.url(), &sphere.enrollment_key, 5),
        Arc::clone(&store),
        host.clone(),
    )
    .unwrap();

    // Enrolled from the key file; drift events in the Drift Hub with their images.
    let id = wait_for(30, "enrollment", || device.device_id());
    let events = wait_for(60, "three drift events in the Drift Hub", || {
        let e = sphere.drift_events(&id);
        (e.len() == 3).then_some(e)
    });
    let mut got: Vec<u64> = events
        .iter()
        .map(|e| e["event_seq"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, seqs);
    for e in &events {
        let samples = e["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 1, "{e}");
        assert!(samples[0].as_str().unwrap().ends_with(".jpg"), "{e}");
        assert_eq!(e["detector"], "page-hinkley-distance");
    }

    // An operator validates the first event with a label: a feedback file with the drift
    // verdict and the sample's label appears in the inbox, and the items are acknowledged.
    let first = events.iter().find(|e| e["event_seq"] == seqs[0]).unwrap();
    let (status, body) = sphere.call(
        "POST",
        &format!("/api/v2/drift-events/{}/validate", first["id"]),
        Some(&json!({"label": "star"})),
    );
    assert_eq!(status, 200, "{body}");
    let text = wait_for(30, "a feedback file in the inbox", || {
        let entries = std::fs::read_dir(device.inbox()).ok()?;
        entries
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".toml"))
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
    });
    let file = tinylcm::autonomy::feedback::FeedbackFile::parse(Path::new("f"), &text).unwrap();
    assert_eq!(file.drift.len(), 1, "{text}");
    assert_eq!(file.drift[0].event, Some(seqs[0]));
    assert_eq!(file.sample.len(), 1, "{text}");
    assert_eq!(file.sample[0].id, 7);
    assert_eq!(file.sample[0].label.as_deref(), Some("star"));
    let token = device.token().unwrap();
    wait_for(30, "the feedback to be acknowledged", || {
        sphere.feedback_drained(&token, &id).then_some(())
    });

    // Remote configuration: applied by the host, acknowledged on the server.
    let fragment = "[knn]\nk = 3\n";
    let (status, body) = sphere.call(
        "PUT",
        &format!("/api/v2/devices/{id}/config"),
        Some(&json!({"toml": fragment})),
    );
    assert_eq!(status, 200, "{body}");
    wait_for(30, "the configuration to reach the host", || {
        host.configs
            .lock()
            .unwrap()
            .iter()
            .any(|(_, t)| t.contains("k = 3"))
            .then_some(())
    });
    wait_for(30, "the server to show the configuration applied", || {
        let (_, state) = sphere.call("GET", &format!("/api/v2/devices/{id}/config"), None);
        (state["acknowledged"] == true).then_some(())
    });

    // A signed release rolled out to everyone is downloaded and installed byte for byte.
    let (bytes, manifest_text) = model();
    let m2 = Model {
        bytes: bytes.clone(),
        manifest: manifest_text,
    };
    release::publish_and_roll_out(&sphere, &m2, &release::sign(&m2, &key, "shapes", "2"));
    let install = wait_for(60, "the release to be installed", || {
        host.installs.lock().unwrap().first().cloned()
    });
    assert_eq!(install.bytes, bytes);
    assert_eq!(
        (install.name.as_str(), install.version.as_str()),
        ("shapes", "2")
    );
    // Installed once: the next rounds see it active and download nothing.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(host.installs.lock().unwrap().len(), 1);
    assert!(host.refusals.lock().unwrap().is_empty());

    let status = client.status();
    assert!(status.uploaded >= 1, "{status:?}");
    assert_eq!(status.feedback_items, 3, "{status:?}");
    assert!(client.stop());
    assert_eq!(store.outbox_len().unwrap(), 0);
    let row = sphere.device(&id).unwrap();
    assert_eq!(row["packages"].as_u64().unwrap(), status.uploaded, "{row}");
}

#[test]
fn sync_with_embedded_sphere_lite() {
    let work = tempfile::tempdir().unwrap();
    let (key, keys) = release::key(work.path(), "release");
    let sphere = Sphere::embedded(Some(&keys));
    scenario(sphere, key, work.path());
}

#[test]
fn sync_with_sphere_lite_on_mlflow_and_s3() {
    let work = tempfile::tempdir().unwrap();
    let (key, keys) = release::key(work.path(), "release");
    let Some(sphere) = Sphere::mlflow("sync", Some(&keys)) else {
        return;
    };
    scenario(sphere, key, work.path());
}

/// What `tinylcm enroll` does: a good key gives credentials saved privately; a bad key is an
/// error naming the server and its reason, and saves nothing.
#[test]
fn enroll_saves_credentials_and_a_bad_key_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let sphere = Sphere::embedded(None);
    let config = tinylcm::sync::SyncConfig::default();
    let bad = tempfile::tempdir().unwrap();
    let e = tinylcm::sync::enroll(&config, bad.path(), &sphere.url(), "sle_not-a-key")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&sphere.url()) && e.contains("401"), "{e}");
    assert!(
        tinylcm::sync::Credentials::load(bad.path())
            .unwrap()
            .is_none()
    );

    let c =
        tinylcm::sync::enroll(&config, work.path(), &sphere.url(), &sphere.enrollment_key).unwrap();
    assert_eq!(
        tinylcm::sync::Credentials::load(work.path()).unwrap(),
        Some(c.clone())
    );
    assert!(sphere.device(&c.device_id).is_some());
    let (status, _) = sphere.call_as(
        &c.token,
        "GET",
        &format!("/api/v2/devices/{}/feedback?after=0", c.device_id),
        None,
    );
    assert_eq!(status, 200);
}

/// A model download cut half-way resumes with `Range` from where it stopped and installs the
/// exact bytes; a partial file with wrong bytes is caught by the SHA-256 check and fetched
/// again whole.
#[test]
fn a_cut_model_download_resumes_and_installs_the_exact_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (key, keys) = release::key(work.path(), "release");
    let sphere = Sphere::embedded(Some(&keys));
    let proxy = tinylcm_e2e::proxy::Proxy::start(&sphere.addr);
    let device = Device::new(&work.path().join("device"));
    let store = device.open_store();
    let host = Arc::new(TestHost::new(device.inbox(), vec![key.public()]));
    let client = SyncClient::start(
        device.setup(&proxy.url(), &sphere.enrollment_key, 1),
        Arc::clone(&store),
        host.clone(),
    )
    .unwrap();
    wait_for(30, "enrollment", || device.device_id());

    let (bytes, manifest_text) = model();
    let m3 = Model {
        bytes: bytes.clone(),
        manifest: manifest_text,
    };
    release::publish(&sphere, &m3, &release::sign(&m3, &key, "shapes", "3"));
    // The first download gets the headers and part of the file, then the connection resets.
    proxy.inject(
        "/models/shapes/3",
        tinylcm_e2e::proxy::Fault::CutAnswer(bytes.len() / 2),
        1,
    );
    let (status, body) = sphere.call(
        "POST",
        "/api/v2/models/shapes/3/rollout",
        Some(&json!({"percent": 100})),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let install = wait_for(60, "the release to be installed", || {
        host.installs.lock().unwrap().first().cloned()
    });
    assert_eq!(install.bytes, bytes);
    assert!(proxy.counts().range_requests >= 1, "{:?}", proxy.counts());

    // A partial file whose bytes are wrong (a damaged card): the resumed file fails the
    // SHA-256 check, is discarded, and the next round fetches it whole.
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/models/default");
    let other = std::fs::read(models.join("default_int8.tflite")).unwrap();
    let manifest = std::fs::read_to_string(models.join("default_int8.toml")).unwrap();
    let sha = tinylcm_protocol::package::sha256_hex(&other);
    std::fs::create_dir_all(device.dir.join("downloads")).unwrap();
    std::fs::write(
        device.dir.join("downloads").join(format!("{sha}.part")),
        vec![0x5a; other.len() / 2],
    )
    .unwrap();
    let m4 = Model {
        bytes: other.clone(),
        manifest,
    };
    release::publish(&sphere, &m4, &release::sign(&m4, &key, "shapes", "4"));
    let (status, body) = sphere.call(
        "POST",
        "/api/v2/models/shapes/4/rollout",
        Some(&json!({"percent": 100})),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let second = wait_for(60, "the second release to be installed", || {
        host.installs.lock().unwrap().get(1).cloned()
    });
    assert_eq!(second.bytes, other);
    assert_eq!(host.installs.lock().unwrap().len(), 2);
    assert!(client.stop());
    // Nothing left behind in the download folder.
    let left: Vec<_> = std::fs::read_dir(device.dir.join("downloads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
