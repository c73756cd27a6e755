//! The inference loop: frames from a source through the pipeline until the
//! source ends, a frame limit is reached, or someone asks to stop.
//!
//! The loop itself never touches the disk or the network; whatever watches it
//! (a progress line, later the sync outbox) does so through [`Observer`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::capture::{CaptureThread, Captured};
use super::{Pipeline, PipelineError, Prediction};
use crate::autonomy::Autonomy;
use crate::frame::{FrameError, FrameSource, Truth};
use crate::stats::{Outcomes, Stage, StageLatencies};

/// How a run is bounded.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many frames (`None`: until the source ends or a stop is requested).
    pub max_frames: Option<u64>,
    /// Set to `true` (e.g. from a signal handler) to stop after the current frame.
    pub stop: Option<Arc<AtomicBool>>,
    /// Frames the capture thread may prepare ahead (at least 1).
    pub capture_depth: usize,
}

/// What the loop tells its observer after every frame.
#[derive(Debug)]
pub struct FrameReport<'a> {
    /// Frames processed so far, this one included.
    pub frames: u64,
    /// Time since the loop started.
    pub elapsed: Duration,
    /// This frame's prediction by the model (for an embedding-only model, the KNN's class
    /// and confidence, when the KNN ran).
    pub prediction: &'a Prediction<'a>,
    /// The label reported for the frame: the KNN's when the autonomy layer classifies,
    /// else the model's.
    pub label: &'a str,
    /// The autonomy layer, when it runs (its [`Autonomy::last`] is this frame's step).
    pub autonomy: Option<&'a Autonomy>,
    /// What the source knows about the frame.
    pub truth: Option<&'a Truth>,
    /// The frame itself (e.g. for prediction samples); recycled after the observer returns.
    pub image: &'a crate::frame::Frame,
    /// Latencies so far.
    pub latencies: &'a StageLatencies,
    /// Outcomes so far.
    pub outcomes: &'a Outcomes,
}

/// Watches the loop; must return quickly (it runs on the inference thread).
pub trait Observer {
    /// Called after every frame.
    fn on_frame(&mut self, report: &FrameReport<'_>);
}

impl Observer for () {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {}
}

/// Two observers watching the same run, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.0.on_frame(report);
        self.1.on_frame(report);
    }
}

/// An observer that may be switched off (e.g. by configuration).
impl<O: Observer> Observer for Option<O> {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        if let Some(o) = self {
            o.on_frame(report);
        }
    }
}

impl<O: Observer + ?Sized> Observer for &mut O {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        (**self).on_frame(report);
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The source had no more frames.
    SourceEnded,
    /// `max_frames` was reached.
    FrameLimit,
    /// A stop was requested.
    Stopped,
}

/// Totals of a run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Frames processed.
    pub frames: u64,
    /// Wall time of the loop.
    pub elapsed: Duration,
    /// Per-stage latencies.
    pub latencies: StageLatencies,
    /// Predictions and accuracy.
    pub outcomes: Outcomes,
    /// Why it ended.
    pub end: EndReason,
}

impl RunSummary {
    /// Frames per second over the whole run.
    pub fn fps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            0.0
        }
    }
}

/// Failures that end a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The frame source failed (and could not recover by itself).
    #[error("frame source failed: {0}")]
    Source(#[from] FrameError),
    /// A frame could not be processed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The capture thread could not be started.
    #[error("cannot start the capture thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The KNN's class index, label and confidence for the last frame, when it decided one.
fn knn_class(autonomy: &Autonomy) -> Option<(usize, &str, f32)> {
    let step = autonomy.last();
    let id = step.knn_label?;
    let label = autonomy.knn()?.labels().name(id)?;
    Some((usize::from(id.0), label, step.knn_confidence))
}

/// Run frames from `source` through `pipeline`.
///
/// The source is borrowed, so a caller can run it again (e.g. warm-up, then measure).
pub fn run(
    source: &mut dyn FrameSource,
    pipeline: &mut Pipeline,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    run_with(source, pipeline, None, options, observer)
}

/// [`run`], with every prediction also going through the autonomy layer.
pub fn run_with(
    source: &mut dyn FrameSource,
    pipeline: &mut Pipeline,
    autonomy: Option<&mut Autonomy>,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    std::thread::scope(|scope| {
        let capture = CaptureThread::spawn(scope, source, options.capture_depth.max(1))?;
        drive(&capture, pipeline, autonomy, options, observer)
    })
}

/// The loop proper, fed by a running capture thread.
fn drive(
    capture: &CaptureThread<'_>,
    pipeline: &mut Pipeline,
    mut autonomy: Option<&mut Autonomy>,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunSummary, RunError> {
    let mut latencies = StageLatencies::default();
    let mut outcomes = Outcomes::default();
    let started = Instant::now();
    let mut frames = 0u64;
    let embedding_only = pipeline.embedding_only();
    let stop_requested = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    };
    let end = loop {
        if options.max_frames.is_some_and(|max| frames >= max) {
            break EndReason::FrameLimit;
        }
        if stop_requested() {
            break EndReason::Stopped;
        }
        let frame_start = Instant::now();
        let (frame, capture_time) = match capture.next() {
            Captured::Frame(frame, took) => (frame, took),
            Captured::End => break EndReason::SourceEnded,
            // The source gave up a wait (a camera's reopen) because a stop was asked.
            Captured::Failed(FrameError::Interrupted { .. }) => break EndReason::Stopped,
            Captured::Failed(e) => return Err(e.into()),
        };
        latencies.record(Stage::Capture, capture_time);
        let preprocess_start = Instant::now();
        pipeline.load_input(&frame)?;
        let invoke_start = Instant::now();
        pipeline.invoke()?;
        let rest_start = Instant::now();
        latencies.record(Stage::Preprocess, invoke_start - preprocess_start);
        latencies.record(Stage::Invoke, rest_start - invoke_start);
        let prediction = pipeline.read_outputs()?;
        frames += 1;
        let autonomy_start = Instant::now();
        if let Some(a) = autonomy.as_deref_mut() {
            a.step(frames, &prediction, &frame);
        }
        let autonomy_end = Instant::now();
        let autonomy = autonomy.as_deref();
        if autonomy.is_some() {
            latencies.record(Stage::Autonomy, autonomy_end - autonomy_start);
        }
        // An embedding-only model knows no class: the KNN's is the frame's prediction, for
        // the counts and every observer (status, prediction samples, health window).
        let classified;
        let prediction = match autonomy.filter(|_| embedding_only).and_then(knn_class) {
            Some((class, label, confidence)) => {
                classified = Prediction {
                    class,
                    label,
                    confidence,
                    scores: &[],
                    embedding: prediction.embedding,
                };
                &classified
            }
            None => &prediction,
        };
        let label = autonomy
            .and_then(Autonomy::label)
            .unwrap_or(prediction.label);
        let truth = frame
            .truth
            .as_ref()
            .and_then(|t| Some((t.phase.as_deref().unwrap_or("all"), t.label.as_deref()?)));
        outcomes.record(label, prediction.confidence, truth);
        observer.on_frame(&FrameReport {
            frames,
            elapsed: started.elapsed(),
            prediction,
            label,
            autonomy,
            truth: frame.truth.as_ref(),
            image: &frame,
            latencies: &latencies,
            outcomes: &outcomes,
        });
        let done = Instant::now();
        latencies.record(
            Stage::Rest,
            (done - rest_start) - (autonomy_end - autonomy_start),
        );
        latencies.record(Stage::Total, done - frame_start);
        // Handed back only after the clock is read: the hand-back wakes the capture thread,
        // and where no other core is free (one core, or a busy machine) it renders the next
        // frame before this thread runs again. Inside the window that ~60 us of capture work
        // was counted as this thread's "rest" (74 us on a 1280-d model whose own reading and
        // bookkeeping take a few); now it is waiting for the next frame, where it belongs.
        capture.recycle(frame);
    };
    Ok(RunSummary {
        frames,
        elapsed: started.elapsed(),
        latencies,
        outcomes,
        end,
    })
}
