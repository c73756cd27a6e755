//! The whole inference loop — capture hand-over, preprocessing, invoke, reading the outputs,
//! the autonomy layer with its KNN, detectors, quarantine and state store, and the loop's own
//! bookkeeping — allocates nothing per frame once warmed up, except the resize library's
//! filter coefficients when the camera's frame size differs from the model's input: checked
//! on the real default model and the synthetic camera.

use tinylcm::assemble;
use tinylcm::config::Config;
use tinylcm::frame::synthetic::PhaseSpec;
use tinylcm::frame::{Phase, SourceKind};
use tinylcm::pipeline::runner::{FrameReport, Observer};

#[path = "support/alloc.rs"]
mod alloc_support;
#[path = "support/scenario.rs"]
mod scenario;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

/// Frames before counting starts: buffers reach their final size, every label has been
/// seen once, the detectors have learnt their references.
const WARM_UP: u64 = 300;
/// Frames counted.
const COUNTED: u64 = 200;

/// Counts the inference thread's allocations in each frame after `WARM_UP` (the observer
/// runs on the inference thread, once per frame, between two frames).
struct Counter {
    last: usize,
    per_frame: Vec<usize>,
}

impl Observer for Counter {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        if report.frames == WARM_UP {
            self.last = alloc_support::track(true);
        } else if report.frames > WARM_UP && report.frames <= WARM_UP + COUNTED {
            let now = alloc_support::track(report.frames < WARM_UP + COUNTED);
            // Within the capacity reserved up front: this push does not allocate.
            self.per_frame.push(now - self.last);
            self.last = now;
        }
    }
}

/// The model's input size (width, height), from the default model's NHWC input tensor.
fn model_input(config: &Config) -> (u32, u32) {
    let model = assemble::load_model(&config.model).unwrap();
    let pipeline = assemble::pipeline(config, &model)
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/fetch-libs first)"));
    match pipeline.engine().inputs()[0].shape[..] {
        [1, h, w, 3] => (w as u32, h as u32),
        ref other => panic!("the default model's input is not NHWC RGB: {other:?}"),
    }
}

/// Allocations in each of the `COUNTED` frames after the warm-up, with the synthetic
/// camera at `size` (`None`: the model's input size, so no frame is resized).
fn allocations_per_frame(size: Option<(u32, u32)>) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.source.kind = SourceKind::Synthetic;
    config.source.synthetic.phases = vec![PhaseSpec {
        phase: Phase::Normal,
        frames: WARM_UP + COUNTED + 10,
    }];
    let (width, height) = size.unwrap_or_else(|| model_input(&config));
    config.source.synthetic.width = width;
    config.source.synthetic.height = height;
    // No time-driven checkpoint inside the counted frames: a checkpoint copies the KNN and
    // the detectors for the store (once every `checkpoint-seconds`, not per frame).
    config.autonomy.checkpoint_seconds = 86_400;
    assemble::state_in(&mut config, dir.path());
    config.validate().unwrap();
    let mut counter = Counter {
        last: 0,
        per_frame: Vec::with_capacity(COUNTED as usize),
    };
    let (summary, autonomy) = scenario::run(&config, |_| {}, &mut counter);
    assert_eq!(summary.frames, WARM_UP + COUNTED + 10);
    assert!(autonomy.knn().is_some(), "the KNN must run in this test");
    assert_eq!(counter.per_frame.len(), COUNTED as usize);
    counter.per_frame
}

/// Fails before this change: reading each output tensor copied the tensor's name for a
/// possible error message, two allocations per frame on the default model.
#[test]
fn a_camera_at_the_model_input_size_allocates_nothing_per_frame() {
    let per_frame = allocations_per_frame(None);
    let total: usize = per_frame.iter().sum();
    assert_eq!(
        total, 0,
        "{total} allocations in {COUNTED} frames: {per_frame:?}"
    );
}

/// `fast_image_resize` computes its filter coefficients on every call (small vectors, one
/// per output row and column, freed in the same call): with a camera of another size that is
/// all the loop allocates, the same number every frame.
#[test]
fn a_resized_camera_allocates_only_the_resize_coefficients() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = {
        let mut config = Config::default();
        assemble::state_in(&mut config, dir.path());
        model_input(&config)
    };
    let per_frame = allocations_per_frame(Some((320, 240)));
    let first = per_frame[0];
    assert!(
        per_frame.iter().all(|&n| n == first),
        "allocations vary from frame to frame: {per_frame:?}"
    );
    let bound = 2 * (w + h) as usize + 16;
    assert!(
        first <= bound,
        "{first} allocations per frame, more than the resize's {bound}"
    );
}
