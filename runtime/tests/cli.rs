//! The `tinylcm` binary as a user runs it: the demo works, and every kind of bad
//! input ends with a clear message and a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::tinylcm;
use tinylcm::model::sha256_hex;

#[path = "support/cli.rs"]
mod support;

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("tinylcm runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Assert a clean failure: non-zero exit, an `error:` line containing `needle`, no panic.
fn assert_clean_failure(cmd: &mut Command, needle: &str) {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        !out.status.success(),
        "expected failure\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(
        stderr.contains("error:") && stderr.contains(needle),
        "expected an error mentioning `{needle}`, got:\n{stderr}"
    );
}

/// `tinylcm run --config CONFIG` with its state in DIR/state (tests run in parallel).
fn run_in(dir: &Path, config: &Path) -> Command {
    let mut cmd = tinylcm();
    cmd.arg("run")
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--config")
        .arg(config);
    cmd
}

fn test_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/test")
        .join(name)
}

/// Copy a test model into `dir` with a manifest; `labels` sets how many classes it claims.
fn model_with_manifest(dir: &Path, name: &str, bytes: &[u8], labels: usize) -> PathBuf {
    model_with_input_size(dir, name, bytes, labels, 64)
}

/// Like [`model_with_manifest`], with the manifest claiming a `side` x `side` input.
fn model_with_input_size(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    labels: usize,
    side: u32,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let labels: Vec<String> = (0..labels).map(|i| format!("\"c{i}\"")).collect();
    let manifest = format!(
        r#"name = "test"
version = "1"
sha256 = "{}"
labels = [{}]
[input]
width = {side}
height = {side}
channel_order = "rgb"
resize = "stretch"
mean = [0.0, 0.0, 0.0]
std = [255.0, 255.0, 255.0]
[outputs]
scores = "scores"
embedding = "embedding"
"#,
        sha256_hex(bytes),
        labels.join(", "),
    );
    std::fs::write(path.with_extension("toml"), manifest).unwrap();
    path
}

fn config_file(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("tinylcm.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn demo_runs_every_phase_and_prints_a_summary() {
    let (out, stdout, stderr) = run(tinylcm().args(["demo", "--phase-frames", "5", "--fps", "0"]));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // 3 x 5 normal frames, 5 of each drift phase, each followed by 2 x 5 normal frames.
    assert!(stdout.contains("60 frames"), "{stdout}");
    for phase in ["normal", "lighting", "unseen", "noise"] {
        assert!(
            stdout.contains(&format!("accuracy in phase {phase}")),
            "{stdout}"
        );
    }
    for stage in [
        "capture",
        "preprocess",
        "invoke",
        "autonomy",
        "rest",
        "total",
    ] {
        assert!(stdout.contains(stage), "{stdout}");
    }
}

#[test]
fn run_with_a_model_file_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_int8.tflite")).unwrap();
    let model = model_with_manifest(dir.path(), "tiny.tflite", &bytes, 5);
    let config = config_file(
        dir.path(),
        &format!(
            "[model]\npath = {:?}\n[run]\nmax-frames = 12\n",
            model.to_str().unwrap()
        ),
    );
    let state = dir.path().join("state");
    let (out, stdout, stderr) = run(tinylcm()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--state")
        .arg(&state));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("12 frames"), "{stdout}");
    assert!(state.join("state.redb").is_file());
}

#[test]
fn missing_library_is_a_clear_error() {
    assert_clean_failure(
        tinylcm()
            .args(["demo", "--phase-frames", "1", "--backend", "tflite-c"])
            .env(
                "TINYLCM_TFLITE_C_LIB",
                "/nonexistent/libtensorflowlite_c.so",
            ),
        "/nonexistent/libtensorflowlite_c.so",
    );
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_with_manifest(dir.path(), "bad.tflite", b"this is not a model at all", 5);
    assert_clean_failure(
        tinylcm().arg("inspect-model").arg(&model),
        "not a .tflite model",
    );
    let config = config_file(
        dir.path(),
        &format!("[model]\npath = {:?}\n", model.to_str().unwrap()),
    );
    assert_clean_failure(&mut run_in(dir.path(), &config), "not a .tflite model");
}

#[test]
fn a_truncated_model_is_refused_by_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_f32.tflite")).unwrap();
    let model = model_with_manifest(dir.path(), "cut.tflite", &bytes[..bytes.len() / 2], 5);
    // libtensorflowlite_c.so exists for x86_64 only.
    let backends: &[&str] = if cfg!(target_arch = "x86_64") {
        &["tflite-c", "litert"]
    } else {
        &["litert"]
    };
    for backend in backends {
        let config = config_file(
            dir.path(),
            &format!(
                "[model]\npath = {:?}\n[engine]\nbackend = \"{backend}\"\n",
                model.to_str().unwrap()
            ),
        );
        assert_clean_failure(&mut run_in(dir.path(), &config), "invalid model");
    }
}

#[test]
fn a_model_changed_after_its_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_f32.tflite")).unwrap();
    let model = model_with_manifest(dir.path(), "m.tflite", &bytes, 5);
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&model, tampered).unwrap();
    let config = config_file(
        dir.path(),
        &format!("[model]\npath = {:?}\n", model.to_str().unwrap()),
    );
    assert_clean_failure(&mut run_in(dir.path(), &config), "SHA-256");
}

#[test]
fn scores_that_do_not_match_the_labels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_f32.tflite")).unwrap();
    let model = model_with_manifest(dir.path(), "m.tflite", &bytes, 4);
    let config = config_file(
        dir.path(),
        &format!("[model]\npath = {:?}\n", model.to_str().unwrap()),
    );
    assert_clean_failure(&mut run_in(dir.path(), &config), "manifest lists 4 labels");
}

#[test]
fn an_output_the_model_does_not_have_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_f32.tflite")).unwrap();
    let model = model_with_manifest(dir.path(), "m.tflite", &bytes, 5);
    let config = config_file(
        dir.path(),
        &format!(
            "[model]\npath = {:?}\nscores = 7\n",
            model.to_str().unwrap()
        ),
    );
    assert_clean_failure(&mut run_in(dir.path(), &config), "no such tensor");
}

#[test]
fn an_input_shape_that_differs_from_the_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(test_model("tiny_uint8.tflite")).unwrap();
    let model = model_with_input_size(dir.path(), "m.tflite", &bytes, 5, 96);
    let config = config_file(
        dir.path(),
        &format!("[model]\npath = {:?}\n", model.to_str().unwrap()),
    );
    assert_clean_failure(
        &mut run_in(dir.path(), &config),
        "the manifest says the input is 96x96",
    );
}

#[test]
fn an_unreadable_camera_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        "[source]\nkind = \"camera\"\n[source.camera]\ndevice = \"/dev/video-nonexistent\"\nreopen-attempts = 0\n",
    );
    assert_clean_failure(&mut run_in(dir.path(), &config), "/dev/video-nonexistent");
}

#[test]
fn a_bad_config_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "[engine]\nthreads = 0\n");
    assert_clean_failure(&mut run_in(dir.path(), &config), "engine.threads");
    let config = config_file(dir.path(), "[engine]\nbackend = \"gpu\"\n");
    assert_clean_failure(
        tinylcm().arg("config").arg("--config").arg(&config),
        "engine.backend",
    );
}

#[test]
fn replay_reads_a_folder_with_class_labels() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let (out, _, stderr) = run(tinylcm()
        .args(["synth", "--per-class", "2", "--out"])
        .arg(&images));
    assert!(out.status.success(), "{stderr}");
    let (out, stdout, stderr) = run(tinylcm()
        .arg("replay")
        .arg(&images)
        .arg("--state")
        .arg(dir.path().join("state")));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Four known classes, two frames each.
    assert!(stdout.contains("8 frames"), "{stdout}");
    assert!(stdout.contains("accuracy in phase all"), "{stdout}");
}

#[test]
fn replay_of_an_empty_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_clean_failure(tinylcm().arg("replay").arg(dir.path()), "cannot open");
}

#[test]
fn report_draws_the_scenario_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let (status, stdout, stderr) = run(tinylcm()
        .args(["report", "--phase-frames", "10", "--out"])
        .arg(&out));
    assert!(status.status.success(), "{stdout}\n{stderr}");
    let png = image::open(out.join("report.png")).unwrap();
    assert!(png.width() >= 800 && png.height() >= 600);
    let svg = std::fs::read_to_string(out.join("report.svg")).unwrap();
    for phase in ["normal", "lighting", "unseen", "noise"] {
        assert!(svg.contains(phase), "SVG lacks phase {phase}");
    }
}

#[test]
fn report_into_an_unwritable_place_is_a_clear_error() {
    assert_clean_failure(
        tinylcm().args([
            "report",
            "--phase-frames",
            "2",
            "--out",
            "/proc/tinylcm-report",
        ]),
        "/proc/tinylcm-report",
    );
}
