//! An embedding-only model (a headless feature extractor, the original TinyLCM's design):
//! the committed 1280-d MobileNetV2 (`mobilenetv2_int8.tflite`, uint8 in and out, one
//! output) with a manifest that names no scores and no labels. `tinylcm init-state` builds
//! its KNN from `tinylcm synth` frames; the KNN is then the classifier, and detectors,
//! quarantine, adaptation, `status.json` and the sync metrics run on its classes.
//!
//! Fails before this change: the manifest needed `labels` and `[outputs] scores`, so the
//! model could not be loaded at all ("missing field `labels`" / "`scores`").

use std::path::{Path, PathBuf};
use std::process::Output;

use tinylcm::assemble::{self, AssembleError};
use tinylcm::autonomy::{Classifier, Note};
use tinylcm::config::Config;
use tinylcm::model::{LoadedModel, ModelManifest};
use tinylcm::pipeline::runner::{FrameReport, Observer};
use tinylcm::status::StatusReport;

#[path = "support/scenario.rs"]
mod scenario;
#[path = "support/cli.rs"]
mod support;

const MODEL: &str = "mobilenetv2_int8.tflite";
const CLASSES: [&str; 4] = ["empty", "ball", "box", "bar"];

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The model copied into `dir` with an embedding-only manifest (no labels, no `[outputs]`:
/// its single output is the embedding).
fn model_in(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/test")
        .join(MODEL);
    let model = dir.join(MODEL);
    std::fs::copy(&src, &model).unwrap();
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
    model
}

/// A configuration file for the model: the synthetic camera at the model's size (normal,
/// then noise, then normal again), adaptation on.
fn config_file(dir: &Path, model: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[model]\npath = {model:?}\n\
             [source]\nkind = \"synthetic\"\n\
             [source.synthetic]\nwidth = 96\nheight = 96\nseed = 3\n\
             phases = [{{ phase = \"normal\", frames = 250 }}, {{ phase = \"noise\", frames = 300 }}, \
             {{ phase = \"normal\", frames = 150 }}]\n\
             [adaptation]\nenabled = true\n\
             [status]\ninterval-seconds = 1\n"
        ),
    )
    .unwrap();
    path
}

/// Model, config and an initial state built by `tinylcm init-state` from `tinylcm synth`.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    model: PathBuf,
    config: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let model = model_in(&dir);
    let config = config_file(&dir, &model);
    let train = dir.join("train");
    check(
        support::tinylcm()
            .args(["synth", "--per-class", "15", "--seed", "7"])
            .args(["--width", "96", "--height", "96", "--out"])
            .arg(&train)
            .output()
            .unwrap(),
        "tinylcm synth",
    );
    let printed = check(
        support::tinylcm()
            .arg("init-state")
            .arg(&train)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap(),
        "tinylcm init-state",
    );
    assert!(
        printed.contains("60 samples of 4 classes (1280-d features)"),
        "{printed}"
    );
    assert!(tinylcm::autonomy::initial::beside(&model).is_file());
    Fixture {
        _dir: tmp,
        dir,
        model,
        config,
    }
}

fn load(f: &Fixture, state: &str) -> Config {
    let mut config = Config::load(Some(&f.config)).unwrap();
    assemble::state_in(&mut config, &f.dir.join(state));
    config
}

/// What the observers of the loop were shown.
#[derive(Default)]
struct Seen {
    labels: std::collections::BTreeSet<String>,
    unfinite: u64,
    notes: u64,
    applied: u64,
    quarantined: u64,
}

impl Observer for Seen {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.labels.insert(report.label.to_string());
        assert_eq!(report.label, report.prediction.label);
        if !report.prediction.confidence.is_finite() {
            self.unfinite += 1;
        }
        if let Some(a) = report.autonomy {
            let step = a.last();
            self.notes += step.notes.len() as u64;
            self.applied += step
                .notes
                .iter()
                .filter(|n| matches!(n, Note::Applied(_)))
                .count() as u64;
            self.quarantined += u64::from(step.quarantined.is_some());
        }
    }
}

/// Everything logged in this test process at `debug` and above (the adaptation planner logs
/// on its own worker thread, so the subscriber is the global one).
fn captured_log() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOG: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Capture(log))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

struct Capture(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The KNN classifies every frame with the initial state's classes; the drift detectors see
/// the noise phase; unusual frames are quarantined and adaptation plans rounds from them.
#[test]
fn embedding_only_model_runs_with_the_knn_as_classifier() {
    let log = captured_log();
    let f = fixture();
    let config = load(&f, "state");
    let manifest = LoadedModel::from_file(&f.model, None).unwrap().manifest;
    assert!(manifest.embedding_only() && manifest.labels.is_empty());

    let mut seen = Seen::default();
    let (summary, autonomy) = scenario::run(&config, |_| {}, &mut seen);
    assert_eq!(summary.frames, 700);
    // Classified by the KNN: its classes, a finite vote share, never "unknown".
    assert_eq!(seen.unfinite, 0, "frames without a finite confidence");
    assert!(
        seen.labels
            .iter()
            .all(|l| CLASSES.contains(&l.as_str()) || l.starts_with("new-")),
        "{:?}",
        seen.labels
    );
    assert!(seen.labels.len() >= 2, "{:?}", seen.labels);
    let knn = autonomy.knn().expect("the KNN runs");
    for class in CLASSES {
        assert!(knn.labels().get(class).is_some(), "{class}");
    }
    let counts = autonomy.counts();
    assert_eq!(counts.bad_embeddings, 0);
    assert!(
        counts.onsets >= 1,
        "no drift onset in the noise phase: {counts:?}"
    );
    assert!(counts.incidents >= 1, "{counts:?}");
    assert!(seen.quarantined >= 1, "nothing quarantined: {counts:?}");
    assert_eq!(counts.quarantined, seen.quarantined);
    assert!(
        autonomy.quarantine().is_some_and(|q| !q.is_empty()),
        "the quarantine holds nothing"
    );
    // Every detector of the set has run past its warm-up on the KNN's signals.
    let phases: Vec<_> = autonomy
        .detectors()
        .detectors()
        .iter()
        .map(|d| (d.kind(), d.state()))
        .collect();
    assert!(
        phases
            .iter()
            .all(|(_, p)| *p != tinylcm::drift::Phase::WarmUp),
        "{phases:?}"
    );
    // Adaptation ran on the KNN's quarantine: it planned rounds from the noise frames (what
    // it then decides is the adaptation rules' business; with this random-init extractor the
    // noise cluster is usually left alone or pseudo-labelled).
    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let planned = log
        .lines()
        .filter(|l| l.contains("adaptation planned"))
        .count();
    assert!(planned >= 1, "no adaptation round was planned: {counts:?}");
    eprintln!(
        "adaptation: {planned} rounds planned, {} notes ({} applied), counts {counts:?}",
        seen.notes, seen.applied
    );
}

/// `tinylcm run` with the embedding-only model: `status.json` counts the KNN's classes and
/// confidence, and the sync metrics built from it carry them.
#[test]
fn run_reports_the_knn_classes_in_status_and_metrics() {
    let f = fixture();
    let state = f.dir.join("run-state");
    let out = support::tinylcm()
        .arg("run")
        .arg("--config")
        .arg(&f.config)
        .arg("--state")
        .arg(&state)
        .args(["--frames", "120"])
        .output()
        .unwrap();
    check(out, "tinylcm run");
    let text = std::fs::read_to_string(state.join("status.json")).unwrap();
    let report: StatusReport = serde_json::from_str(&text).unwrap();
    assert_eq!(report.frames, 120, "{text}");
    assert_eq!(report.model.backend, "litert", "an integer model: LiteRT");
    assert!(!report.classes.is_empty(), "{text}");
    assert!(
        report.classes.keys().all(|c| CLASSES.contains(&c.as_str())),
        "{:?}",
        report.classes.keys()
    );
    assert_eq!(
        report.classes.values().map(|c| c.total).sum::<u64>(),
        120,
        "{text}"
    );
    // The confidence window (its last interval) holds the KNN's vote shares.
    assert!(report.confidence.frames > 0, "{text}");
    assert!(report.confidence.mean.is_some_and(|m| m > 0.0 && m <= 1.0));
    let autonomy = report.autonomy.as_ref().expect("autonomy status");
    let knn = autonomy.knn.as_ref().expect("knn status");
    assert_eq!((knn.samples, knn.classes), (60, 4));

    let metrics = tinylcm::sync::metrics::metrics_json(
        Some(&report),
        &tinylcm::sync::SyncStatusView::default(),
        None,
        None,
    );
    let classes = metrics["classes"].as_object().expect("classes in metrics");
    assert!(
        classes
            .keys()
            .any(|k| CLASSES.iter().any(|c| k.starts_with(c))),
        "{metrics}"
    );
    assert_eq!(metrics["autonomy"]["knn"]["classes"], 4, "{metrics}");
}

/// Configurations under which nothing would classify an embedding-only model are refused
/// with what to do; a manifest naming labels without a scores output too.
#[test]
fn refusals_say_what_to_do() {
    let f = fixture();
    let model = LoadedModel::from_file(&f.model, None).unwrap();
    let mut config = load(&f, "refusals");
    let pipeline = assemble::pipeline(&config, &model).unwrap();
    assert!(pipeline.embedding_only());
    assert_eq!(pipeline.embedding_len(), Some(1280));

    config.autonomy.classifier = Classifier::Model;
    let e = assemble::autonomy(&config, &model, &pipeline, None).unwrap_err();
    assert!(matches!(e, AssembleError::EmbeddingOnly(_)), "{e}");
    assert!(
        e.to_string().contains("autonomy.classifier = \"knn\""),
        "{e}"
    );

    config.autonomy.classifier = Classifier::Knn;
    std::fs::remove_file(tinylcm::autonomy::initial::beside(&f.model)).unwrap();
    let e = assemble::autonomy(&config, &model, &pipeline, None).unwrap_err();
    assert!(e.to_string().contains("tinylcm init-state"), "{e}");

    let text = std::fs::read_to_string(f.model.with_extension("toml")).unwrap();
    let e = ModelManifest::parse(&format!("labels = [\"a\"]\n{text}"), Path::new("m.toml"))
        .unwrap_err();
    assert!(e.to_string().contains("embedding-only"), "{e}");
}
