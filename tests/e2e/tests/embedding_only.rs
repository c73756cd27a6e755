//! An embedding-only model in the field: `tinylcm run` as a process with the committed 1280-d
//! MobileNetV2 feature extractor (no scores output, no labels) and an initial state built
//! by `tinylcm init-state` from `tinylcm synth` frames, against a real sphere-lite. What the
//! server receives is classified by the KNN: the device's metrics carry the KNN's classes.
//!
//! Fails before this change: the manifest needed `labels` and a scores output, so the device
//! could not start on this model at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use tinylcm_e2e::field::{FieldDevice, Settings, binary};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::sphere::Sphere;

const MODEL: &str = "mobilenetv2_int8.tflite";
const CLASSES: [&str; 4] = ["empty", "ball", "box", "bar"];

/// The model with an embedding-only manifest in `dir`, and its initial state beside it.
fn model_with_state(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime/models/test");
    let model = dir.join(MODEL);
    std::fs::copy(src.join(MODEL), &model).unwrap();
    let sha = tinylcm::model::sha256_hex(&std::fs::read(&model).unwrap());
    std::fs::write(
        model.with_extension("toml"),
        format!(
            "name = \"mobilenetv2-features\"\nversion = \"1\"\nsha256 = \"{sha}\"\n\
             [input]\nwidth = 96\nheight = 96\nchannel_order = \"rgb\"\nresize = \"stretch\"\n\
             mean = [0.0, 0.0, 0.0]\nstd = [255.0, 255.0, 255.0]\n"
        ),
    )
    .unwrap();
    let config = dir.join("init.toml");
    std::fs::write(&config, format!("[model]\npath = {model:?}\n")).unwrap();
    let train = dir.join("train");
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.env("TINYLCM_LOG", "warn").output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new(binary())
            .args([
                "synth",
                "--per-class",
                "12",
                "--width",
                "96",
                "--height",
                "96",
            ])
            .arg("--out")
            .arg(&train),
        "tinylcm synth",
    );
    run(
        Command::new(binary())
            .arg("init-state")
            .arg(&train)
            .arg("--config")
            .arg(&config),
        "tinylcm init-state",
    );
    model
}

#[test]
fn an_embedding_only_model_syncs_the_knn_classes() {
    let work = tempfile::tempdir().unwrap();
    let sphere = Sphere::embedded(None);
    let model = model_with_state(&work.path().join("model"));
    let key = sphere.enrollment_key_file(work.path());
    let settings = Settings::new(&sphere.url(), &key, None);
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    let mut text = std::fs::read_to_string(&device.config).unwrap();
    text.push_str(&format!("\n[model]\npath = {model:?}\n"));
    std::fs::write(&device.config, text).unwrap();
    device.start();
    let id = device.wait(60, "the device to enroll from its key file", |d| {
        d.device_id()
    });
    let origin = model.display().to_string();
    let report = device.wait_origin(60, &origin);
    assert_eq!(
        report.model.backend, "litert",
        "an integer model runs on LiteRT"
    );

    // status.json counts the KNN's classes.
    let report = device.wait_report(60, "status.json to count classified frames", |r| {
        r.classes.values().map(|c| c.total).sum::<u64>() > 0
    });
    assert!(
        report.classes.keys().all(|c| CLASSES.contains(&c.as_str())),
        "{:?}",
        report.classes.keys()
    );
    // The server holds the device's metrics: the KNN (4 classes) and a count per KNN class.
    device.wait(90, "sphere-lite to hold autonomy.knn.classes = 4", |_| {
        let (status, body) = sphere.call(
            "GET",
            &format!("/api/v2/devices/{id}/metrics?key=autonomy.knn.classes"),
            None,
        );
        (status == 200
            && body["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|v| v["value"].as_f64() == Some(4.0))))
        .then_some(())
    });
    let class = report.classes.keys().next().unwrap().clone();
    device.wait(60, "sphere-lite to hold a KNN class's count", |_| {
        let (status, body) = sphere.call(
            "GET",
            &format!("/api/v2/devices/{id}/metrics?key=classes.{class}.total"),
            None,
        );
        (status == 200
            && body["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|v| v["value"].as_f64() >= Some(1.0))))
        .then_some(())
    });
    device.stop();
}
