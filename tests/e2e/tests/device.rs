//! The device end to end: `tinylcm run` as a process (the synthetic scene looping, as the demo
//! runs it) against a real sphere-lite, observed only through what an operator sees: the
//! server's API, the device's `status.json`, `tinylcm model status --json`, and the state
//! database once the device stopped.
//!
//! * drift events reach the Drift Hub with JPEG samples, and an operator's validation with a
//!   label teaches the device's KNN that label (embedded, and on MLflow + S3);
//! * a signed release rolled out to the device is downloaded, installed through the A/B
//!   store, runs on trial and is committed, and runs committed after a restart;
//! * releases signed by a key the device does not trust (never downloaded), whose goldens do
//!   not match the model, or whose file is truncated (each downloaded once) are refused, the
//!   model unchanged; a
//!   server whose file is shorter than its assignment is not asked again at every round; a
//!   download cut half-way is resumed and installs the exact release;
//! * a trial killed again and again right after it starts (a crash loop under systemd) is
//!   rolled back after `max-trial-starts` starts, and stays rolled back;
//! * a release rolled out while another is on trial is installed once that one is committed.

use std::path::Path;

use serde_json::{Value, json};
use tinylcm::autonomy::{EventKind, RuntimeEvent};
use tinylcm::knn::KnnState;
use tinylcm::modelstore::ActiveState;
use tinylcm::state::{MAX_EVENTS_PER_READ, Store};
use tinylcm_e2e::field::{BUILTIN_ORIGIN, FieldDevice, Settings};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::proxy::{Fault, Proxy};
use tinylcm_e2e::release::{self, Model};
use tinylcm_e2e::sphere::Sphere;

/// The label an operator gives a drift sample (no class of the default model has it).
const LABEL: &str = "star";

/// `origin` of an installed release as `status.json` shows it.
fn origin(name: &str, version: &str, state: &str, slot: &str) -> String {
    format!("release {name} {version} ({state}, slot {slot})")
}

/// Every event in a stopped device's log.
fn all_events(store: &Store) -> Vec<(u64, RuntimeEvent)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<(u64, RuntimeEvent)> =
            store.events_after(after, MAX_EVENTS_PER_READ).unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = *last;
        out.extend(page);
    }
}

fn drift_and_feedback(sphere: Sphere, work: &Path) {
    let key = sphere.enrollment_key_file(work);
    let mut settings = Settings::new(&sphere.url(), &key, None);
    // Unpaced: the scene's first drift (frame 600) comes within seconds.
    settings.fps = 0.0;
    let mut device = FieldDevice::new(&work.join("device"), &settings);
    let id = device.start_enrolled();

    // Enrolled from the key file, the device is listed under the machine's host name (what
    // provisioning sets from the serial number), as after `tinylcm enroll`.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let row = sphere.device(&id).expect("the enrolled device is listed");
    assert_eq!(row["name"], hostname.trim(), "{row:#}");

    // Drift events in the Drift Hub, one with a sample image that is a JPEG.
    let event = device.wait(
        120,
        "a drift event with a sample image in the Drift Hub",
        |_| {
            sphere.drift_events(&id).into_iter().find(|e| {
                e["samples"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty() && s.iter().all(Value::is_string))
            })
        },
    );
    let sample = event["samples"][0].as_str().unwrap().to_string();
    let (status, bytes) = sphere.get_bytes(&format!("/ui/img/{sample}"));
    assert_eq!(
        status,
        200,
        "sample {sample}: {}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        bytes.starts_with(&[0xff, 0xd8, 0xff]),
        "sample {sample} is not a JPEG"
    );
    image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("sample {sample} does not decode as a JPEG: {e}"));
    // The sample is named after its quarantine entry: that entry gets the label.
    let quarantine_id: u64 = Path::new(&sample)
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("sample {sample} is not named <quarantine id>.jpg"));

    // An operator validates it with a label: the device pulls the feedback, applies it and
    // acknowledges it.
    let (status, body) = sphere.call(
        "POST",
        &format!("/api/v2/drift-events/{}/validate", event["id"]),
        Some(&json!({"label": LABEL, "note": "device e2e"})),
    );
    assert_eq!(status, 200, "{body}");
    let token = device.token().unwrap();
    device.wait(60, "the device to acknowledge the feedback", |_| {
        sphere.feedback_drained(&token, &id).then_some(())
    });
    // The inbox file goes only once what it changed is durable.
    let inbox = tinylcm::autonomy::feedback::inbox_dir(&device.dir.join("state.redb"));
    device.wait(60, "the feedback file to be applied", |_| {
        let pending = std::fs::read_dir(&inbox)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".toml"))
                    .count()
            })
            .unwrap_or(0);
        (pending == 0).then_some(())
    });
    device.stop();

    // The KNN learnt the sample under the operator's label.
    let store = device.open_store();
    let applied = all_events(&store)
        .into_iter()
        .find_map(|(_, e)| match e.kind {
            EventKind::SampleFeedback { id, label, learnt } if id == quarantine_id => {
                Some((label, learnt))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no feedback event for quarantine entry {quarantine_id}"));
    assert_eq!(applied, (Some(LABEL.to_string()), true));
    let knn: KnnState = store
        .get_state(tinylcm::autonomy::persist::KNN)
        .unwrap()
        .expect("the device saved its KNN");
    let star = knn
        .labels
        .iter()
        .position(|l| l == LABEL)
        .unwrap_or_else(|| panic!("the KNN has no class {LABEL}: {:?}", knn.labels));
    assert!(
        knn.sample_labels.iter().any(|&l| usize::from(l) == star),
        "the KNN holds no {LABEL} sample"
    );
}

#[test]
fn drift_reaches_the_drift_hub_and_a_validation_teaches_the_knn() {
    let work = tempfile::tempdir().unwrap();
    drift_and_feedback(Sphere::embedded(None), work.path());
}

#[test]
fn drift_and_feedback_with_sphere_lite_on_mlflow_and_s3() {
    let work = tempfile::tempdir().unwrap();
    let Some(sphere) = Sphere::mlflow("device", None) else {
        return;
    };
    drift_and_feedback(sphere, work.path());
}

#[test]
fn a_signed_release_is_installed_tried_and_committed() {
    let work = tempfile::tempdir().unwrap();
    let (key, trusted) = release::key(work.path(), "release");
    let sphere = Sphere::embedded(Some(&trusted));
    let enroll = sphere.enrollment_key_file(work.path());
    let mut settings = Settings::new(&sphere.url(), &enroll, Some(&trusted));
    settings.health_frames = 200;
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    device.start_enrolled();

    let int8 = release::default_model("default_int8");
    let model = release::with_goldens(&int8, &int8, 3);
    release::publish_and_roll_out(&sphere, &model, &release::sign(&model, &key, "shapes", "2"));
    let trial = device.wait_origin(90, &origin("shapes", "2", "on trial", "a"));
    assert_eq!(trial.model.sha256, model.sha256());
    // Its health window passes: status.json shows the running release committed.
    let committed = device.wait_report(60, "status.json to show shapes 2 committed", |r| {
        r.release
            .as_ref()
            .is_some_and(|m| m.state == ActiveState::Committed)
    });
    let running = committed.release.unwrap();
    assert_eq!(
        (running.name.as_str(), running.version.as_str()),
        ("shapes", "2")
    );
    assert_eq!(running.sha256, model.sha256());
    device.stop();

    let status = device.model_status();
    let state = &status["state"];
    assert_eq!(state["committed"]["name"], "shapes", "{status:#}");
    assert_eq!(state["committed"]["version"], "2", "{status:#}");
    assert_eq!(state["committed"]["sha256"], model.sha256(), "{status:#}");
    assert!(state["trial"].is_null(), "{status:#}");
    assert!(state["last_refusal"].is_null(), "{status:#}");
    assert_eq!(status["active"]["state"], "committed", "{status:#}");
    let happened: Vec<&str> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["what"].as_str())
        .collect();
    assert_eq!(
        happened,
        ["installed", "activated", "committed"],
        "{status:#}"
    );

    // The next start runs it committed, and the release is not installed again.
    device.start();
    device.wait_origin(60, &origin("shapes", "2", "committed", "a"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    device.stop();
    let again = device.model_status();
    assert_eq!(again["state"]["history"], state["history"], "{again:#}");
}

/// One bad release: published, downloaded `downloads` times by the device (0 when its signed
/// release alone shows it is refused, 1 when its file does), refused, not fetched again.
fn refused_once(
    sphere: &Sphere,
    proxy: &Proxy,
    device: &mut FieldDevice,
    model: &Model,
    release: &tinylcm_protocol::release::SignedRelease,
    version: &str,
    downloads: usize,
) {
    release::publish_and_roll_out(sphere, model, release);
    let path = format!("/models/shapes/{version}");
    if downloads > 0 {
        device.wait(
            60,
            &format!("the device to download shapes {version}"),
            |_| (proxy.counts().to(&path) >= 1).then_some(()),
        );
    }
    let refused = format!("model release shapes/{version} (");
    device.wait(60, &format!("the device to refuse shapes {version}"), |d| {
        d.log()
            .lines()
            .any(|l| l.contains(&refused) && l.contains("refused"))
            .then_some(())
    });
    // Several more rounds: the refused release is not downloaded again, the model unchanged.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        proxy.counts().to(&path),
        downloads,
        "shapes {version} was downloaded again after its refusal"
    );
    device.wait_origin(10, BUILTIN_ORIGIN);
}

#[test]
fn bad_releases_are_refused_and_a_cut_download_resumes() {
    let work = tempfile::tempdir().unwrap();
    let (trusted_key, trusted) = release::key(work.path(), "device");
    // The server trusts a second key (a rotation, say) the device was never given.
    let (other_key, _) = release::key(work.path(), "other");
    let server_keys = release::key_file(work.path(), "server.pub", &[&trusted_key, &other_key]);
    let sphere = Sphere::embedded(Some(&server_keys));
    let proxy = Proxy::start(&sphere.addr);
    let enroll = sphere.enrollment_key_file(work.path());
    let mut settings = Settings::new(&proxy.url(), &enroll, Some(&trusted));
    settings.health_frames = 100;
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    device.start_enrolled();

    let int8 = release::default_model("default_int8");
    let f32 = release::default_model("default_f32");
    // 1. A good model signed by a key the device does not trust: refused from its signed
    //    release alone, never downloaded.
    let m1 = release::with_goldens(&release::variant(&int8, 1), &release::variant(&int8, 1), 2);
    let r1 = release::sign(&m1, &other_key, "shapes", "1");
    refused_once(&sphere, &proxy, &mut device, &m1, &r1, "1", 0);
    // 2. The int8 model with goldens computed from the float model: out of tolerance.
    let m2 = release::with_goldens(&release::variant(&int8, 2), &f32, 2);
    let r2 = release::sign(&m2, &trusted_key, "shapes", "2");
    refused_once(&sphere, &proxy, &mut device, &m2, &r2, "2", 1);
    // 3. A truncated model file, signed as it is (size and SHA-256 are the truncated file's):
    //    sphere-lite's publish runs the same .tflite walker as the device and refuses it, so
    //    no device is offered it (the device's own refusal of such a file is covered by the
    //    runtime's model store and engine tests).
    let cut = &int8.bytes[..int8.bytes.len() / 2];
    let m3 = Model {
        bytes: cut.to_vec(),
        manifest: int8
            .manifest
            .replace(&int8.sha256(), &tinylcm_protocol::package::sha256_hex(cut)),
    };
    let r3 = release::sign(&m3, &trusted_key, "shapes", "3");
    let (status, body) = release::try_publish(&sphere, &m3, &r3);
    assert_eq!(status, 400, "a truncated model was published: {body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a well-formed TFLite")),
        "{body}"
    );
    // 3b. The server's file is shorter than its own assignment (the blob cut on the server's
    //     disk after publishing): its answer ends cleanly before the assigned size, and the
    //     release is then left alone instead of fetched again at every round (a metered link).
    let m5 = release::with_goldens(&release::variant(&int8, 5), &release::variant(&int8, 5), 2);
    release::publish(
        &sphere,
        &m5,
        &release::sign(&m5, &trusted_key, "shapes", "5"),
    );
    let blob = sphere
        .dir
        .path()
        .join("data/blobs/models/shapes/5/model.tflite");
    let stored = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &stored[..stored.len() / 2]).unwrap();
    release::roll_out(&sphere, "shapes", "5");
    device.wait(
        60,
        "the device to find shapes 5 shorter than assigned",
        |d| {
            d.log()
                .lines()
                .any(|l| l.contains("the assignment says") && l.contains("not asked again"))
                .then_some(())
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(
        proxy.counts().to("/models/shapes/5"),
        1,
        "shapes 5 was fetched again after its short answer"
    );
    device.wait_origin(10, BUILTIN_ORIGIN);
    device.stop();

    // Each refusal is in the store's history, with its reason; nothing was installed.
    let status = device.model_status();
    let state = &status["state"];
    assert!(status["active"].is_null(), "{status:#}");
    assert!(
        state["committed"].is_null() && state["trial"].is_null(),
        "{status:#}"
    );
    let refusals: Vec<String> = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["what"] == "refused")
        .map(|h| h["detail"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    assert_eq!(refusals.len(), 2, "{status:#}");
    assert!(
        refusals[0].contains("key"),
        "untrusted key: {}",
        refusals[0]
    );
    assert!(refusals[1].contains("golden"), "goldens: {}", refusals[1]);
    assert_eq!(
        state["last_refusal"]["reason"]
            .as_str()
            .map(str::to_lowercase),
        Some(refusals[1].clone()),
        "{status:#}"
    );

    // 4. A good release whose first download is cut half-way: resumed with Range, installed
    //    byte for byte, on trial.
    device.start();
    device.wait_origin(60, BUILTIN_ORIGIN);
    let m4 = release::with_goldens(&release::variant(&int8, 4), &release::variant(&int8, 4), 2);
    proxy.inject("/models/shapes/4", Fault::CutAnswer(m4.bytes.len() / 2), 1);
    release::publish_and_roll_out(
        &sphere,
        &m4,
        &release::sign(&m4, &trusted_key, "shapes", "4"),
    );
    let trial = device.wait_origin(90, &origin("shapes", "4", "on trial", "a"));
    assert_eq!(trial.model.sha256, m4.sha256());
    let counts = proxy.counts();
    assert!(
        counts.range_requests >= 1,
        "no resumed download: {counts:?}"
    );
    assert_eq!(counts.to("/models/shapes/4"), 2, "{:?}", counts.paths);
    device.stop();
}

#[test]
fn a_crash_looping_trial_is_rolled_back() {
    let work = tempfile::tempdir().unwrap();
    let (key, trusted) = release::key(work.path(), "release");
    let sphere = Sphere::embedded(Some(&trusted));
    let enroll = sphere.enrollment_key_file(work.path());
    let mut settings = Settings::new(&sphere.url(), &enroll, Some(&trusted));
    // The trial never passes its window by itself: only the kills decide it.
    settings.health_frames = 10_000_000;
    settings.max_trial_starts = 3;
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    device.start_enrolled();

    let int8 = release::default_model("default_int8");
    let model = release::with_goldens(&release::variant(&int8, 7), &release::variant(&int8, 7), 2);
    release::publish_and_roll_out(&sphere, &model, &release::sign(&model, &key, "shapes", "7"));
    let on_trial = origin("shapes", "7", "on trial", "a");
    device.wait_origin(90, &on_trial);
    device.kill9();

    // systemd restarts it; each start that runs the trial is killed as soon as it runs.
    let mut trial_starts = 0;
    let running = loop {
        device.start();
        let report = device.wait_report(60, "the restarted device to run", |r| r.frames > 0);
        if report.model.origin != on_trial {
            break report;
        }
        trial_starts += 1;
        let log = device.log_tail();
        device.kill9();
        let status = device.model_status();
        assert!(
            trial_starts <= settings.max_trial_starts,
            "restart {trial_starts} still runs the trial (max-trial-starts = {}); the model \
             history says why: {:#}\n{log}",
            settings.max_trial_starts,
            status["state"]["history"]
        );
        // Each start on trial was counted before the model loaded (the process that installed
        // it ran it without a start).
        assert_eq!(
            status["state"]["trial"]["starts"], trial_starts,
            "after {trial_starts} restarts: {status:#}"
        );
    };
    assert_eq!(trial_starts, settings.max_trial_starts);
    assert_eq!(running.model.origin, BUILTIN_ORIGIN);
    // It stays on the previous model: the rolled-back release is not installed again.
    std::thread::sleep(std::time::Duration::from_secs(4));
    device.wait_report(
        10,
        "the device to stay on the built-in model after the rollback (was the rolled-back \
         release installed again?)",
        |r| r.model.origin == BUILTIN_ORIGIN,
    );
    device.stop();

    let status = device.model_status();
    let state = &status["state"];
    assert!(state["trial"].is_null(), "{status:#}");
    assert!(status["active"].is_null(), "{status:#}");
    let reason = state["last_refusal"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("shapes 7") && reason.contains("crash loop"),
        "{status:#}"
    );
    let installs = state["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["what"] == "installed")
        .count();
    assert_eq!(
        installs, 1,
        "installed again after the rollback: {status:#}"
    );
}

/// A release rolled out while another runs on trial cannot be installed yet (the store refuses
/// installs during a trial); once the trial is committed, the device installs it.
#[test]
fn a_release_rolled_out_during_a_trial_follows_it() {
    let work = tempfile::tempdir().unwrap();
    let (key, trusted) = release::key(work.path(), "release");
    let sphere = Sphere::embedded(Some(&trusted));
    let enroll = sphere.enrollment_key_file(work.path());
    let mut settings = Settings::new(&sphere.url(), &enroll, Some(&trusted));
    // Paced, so the trial lasts several sync rounds.
    settings.fps = 200.0;
    settings.health_frames = 500;
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    device.start_enrolled();

    let int8 = release::default_model("default_int8");
    let first = release::with_goldens(&release::variant(&int8, 1), &release::variant(&int8, 1), 2);
    release::publish_and_roll_out(&sphere, &first, &release::sign(&first, &key, "shapes", "1"));
    device.wait_origin(90, &origin("shapes", "1", "on trial", "a"));
    let second = release::with_goldens(&release::variant(&int8, 2), &release::variant(&int8, 2), 2);
    release::publish_and_roll_out(
        &sphere,
        &second,
        &release::sign(&second, &key, "shapes", "2"),
    );
    device.wait_origin(60, &origin("shapes", "2", "on trial", "b"));
    device.stop();
    let status = device.model_status();
    assert_eq!(status["state"]["committed"]["version"], "1", "{status:#}");
    assert_eq!(
        status["state"]["trial"]["record"]["version"], "2",
        "{status:#}"
    );
}
