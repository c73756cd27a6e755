//! The built-in default model, through the real pipeline and real libraries,
//! classifies the synthetic camera it was trained for — on every backend and
//! accelerator this machine has, with the same answers everywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use tinylcm::assemble;
use tinylcm::config::{BuiltinVariant, Config};
use tinylcm::engine::BackendChoice;
use tinylcm::frame::synthetic::PhaseSpec;
use tinylcm::frame::{Phase, SourceKind};
use tinylcm::pipeline::runner::{self, FrameReport, Observer, RunOptions};

/// Frames per run: enough for a stable accuracy. Under qemu (aarch64) fewer: there the test
/// is about LiteRT's aarch64 kernels giving the right answers, and each frame costs ~20x.
const FRAMES: u64 = if cfg!(target_arch = "x86_64") {
    120
} else {
    40
};

/// Records every frame's top class and scores.
#[derive(Default)]
struct Recorder {
    classes: Vec<usize>,
    scores: Vec<Vec<f32>>,
}

impl Observer for Recorder {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.classes.push(report.prediction.class);
        self.scores.push(report.prediction.scores.to_vec());
    }
}

struct Outcome {
    accuracy: f64,
    recorder: Recorder,
}

fn run(backend: BackendChoice, xnnpack: bool, variant: BuiltinVariant, phase: Phase) -> Outcome {
    let mut config = Config::default();
    config.engine.backend = backend;
    config.engine.xnnpack = xnnpack;
    config.model.builtin = variant;
    config.source.kind = SourceKind::Synthetic;
    config.source.synthetic.seed = 4242;
    config.source.synthetic.phases = vec![PhaseSpec {
        phase,
        frames: FRAMES,
    }];
    config.validate().unwrap();
    let model = assemble::load_model(&config.model).unwrap();
    let mut pipeline = assemble::pipeline(&config, &model)
        .unwrap_or_else(|e| panic!("{backend:?}: {e} (run ./scripts/fetch-libs first)"));
    let mut source = assemble::source(&config).unwrap();
    let mut recorder = Recorder::default();
    let summary = runner::run(
        source.as_mut(),
        &mut pipeline,
        &RunOptions {
            capture_depth: 2,
            ..RunOptions::default()
        },
        &mut recorder,
    )
    .unwrap();
    assert_eq!(summary.frames, FRAMES);
    let (correct, total) = summary.outcomes.phase_accuracy(phase.as_str()).unwrap();
    Outcome {
        accuracy: correct as f64 / total as f64,
        recorder,
    }
}

/// The run for these settings, made once per test binary and shared by the tests that need
/// it: a run costs seconds under qemu, most of it LiteRT preparing the model.
fn outcome(
    backend: BackendChoice,
    xnnpack: bool,
    variant: BuiltinVariant,
    phase: Phase,
) -> Arc<Outcome> {
    type Cell = Arc<OnceLock<Arc<Outcome>>>;
    static RUNS: Mutex<BTreeMap<String, Cell>> = Mutex::new(BTreeMap::new());
    let key = format!("{backend:?} {xnnpack} {variant:?} {phase:?}");
    let cell = RUNS.lock().unwrap().entry(key).or_default().clone();
    cell.get_or_init(|| Arc::new(run(backend, xnnpack, variant, phase)))
        .clone()
}

/// The backends and XNNPACK settings this architecture can run.
fn engines() -> Vec<(BackendChoice, bool)> {
    let mut engines = vec![(BackendChoice::Litert, true)];
    // libtensorflowlite_c.so exists for x86_64 only (guide: "Cameras and accelerators").
    if cfg!(target_arch = "x86_64") {
        engines.push((BackendChoice::TfliteC, true));
        engines.push((BackendChoice::TfliteC, false));
    }
    engines
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

#[test]
fn recognises_the_normal_scene_on_every_engine_and_variant() {
    for variant in [BuiltinVariant::F32, BuiltinVariant::Int8] {
        let runs: Vec<_> = engines()
            .into_iter()
            .map(|(backend, xnnpack)| {
                let outcome = outcome(backend, xnnpack, variant, Phase::Normal);
                assert!(
                    outcome.accuracy >= 0.9,
                    "{variant:?} on {backend:?} (xnnpack {xnnpack}): accuracy {:.3}",
                    outcome.accuracy
                );
                outcome
            })
            .collect();
        // Every engine gives the same answers on the same frames.
        let reference = &runs[0].recorder;
        for other in &runs[1..] {
            assert!(
                agreement(&reference.classes, &other.recorder.classes) >= 0.98,
                "{variant:?}: engines disagree"
            );
            let tolerance = match variant {
                BuiltinVariant::F32 => 1e-4,
                // TFLite 2.6's builtin int8 kernels and LiteRT's XNNPACK ones
                // requantise intermediate layers differently; over the network that
                // adds up to a few steps of the scores output (scale 1/256).
                BuiltinVariant::Int8 => 16.0 / 256.0,
            };
            for (a, b) in reference.scores.iter().zip(&other.recorder.scores) {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= tolerance, "{variant:?}: {a:?} vs {b:?}");
                }
            }
        }
    }
}

#[test]
fn int8_and_f32_agree_on_the_normal_scene() {
    let f32 = outcome(
        BackendChoice::Litert,
        true,
        BuiltinVariant::F32,
        Phase::Normal,
    );
    let int8 = outcome(
        BackendChoice::Litert,
        true,
        BuiltinVariant::Int8,
        Phase::Normal,
    );
    assert!(
        agreement(&f32.recorder.classes, &int8.recorder.classes) >= 0.95,
        "int8 and f32 disagree on more than 5 % of frames"
    );
}

#[test]
fn the_unseen_object_is_not_recognised_as_itself() {
    // The star was never trained on: the model can only answer a known class, and
    // does so with less confidence than on the normal scene. This is the drift
    // the runtime will detect.
    let normal = outcome(
        BackendChoice::Litert,
        true,
        BuiltinVariant::F32,
        Phase::Normal,
    );
    let unseen = outcome(
        BackendChoice::Litert,
        true,
        BuiltinVariant::F32,
        Phase::Unseen,
    );
    let mean_top = |r: &Recorder| {
        r.scores
            .iter()
            .map(|s| s.iter().copied().fold(f32::MIN, f32::max) as f64)
            .sum::<f64>()
            / r.scores.len() as f64
    };
    assert!(unseen.accuracy < 0.5, "unseen accuracy {}", unseen.accuracy);
    assert!(
        mean_top(&unseen.recorder) < mean_top(&normal.recorder),
        "confidence on the unseen object should be lower"
    );
}
