//! `tinylcm bench`: what the pipeline costs beyond the model itself.
//!
//! The bare-invoke rate and the full-pipeline rate are measured in the same
//! run, on the same engine, so their ratio says how much of the model's speed
//! the rest of the loop gives away — a number that means something on any
//! machine, unlike a wall-clock time.
//!
//! The pipeline is measured twice: with the configured source as it is (a
//! camera-like view, where rendering or decoding may be the bottleneck), and
//! with a few of its frames replayed from memory, which leaves only the loop's
//! own cost beside the model.

use std::time::Instant;

use crate::autonomy::Autonomy;
use crate::frame::{Frame, FrameError, FrameSource};
use crate::pipeline::runner::{self, RunError, RunOptions, RunSummary};
use crate::pipeline::{Pipeline, PipelineError};
use crate::stats::{MemoryUse, Percentiles, ResidentFile, Stage, StageLatencies};

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Invokes (and frames) run before measuring, to warm caches and delegates.
    pub warmup: u64,
    /// Measured invokes, and measured pipeline frames.
    pub iterations: u64,
}

/// What `tinylcm bench` reports.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Latency of `invoke` alone on a fixed input.
    pub bare_invoke: Percentiles,
    /// Invokes per second, bare.
    pub bare_rate: f64,
    /// The full pipeline run (capture thread, preprocess, invoke, outputs).
    pub pipeline: RunSummary,
    /// The same with frames replayed from memory ([`CachedFrames`]).
    pub pipeline_cached: RunSummary,
    /// Peak resident set size of the process after the live-source run (before
    /// the frame cache exists), and what was resident then by kind, where the OS reports it.
    pub memory: Option<MemoryUse>,
    /// The file-backed part of `memory` per file at the same moment, largest first (empty
    /// where the OS does not report it): which code a smaller build has to shrink.
    pub resident_files: Vec<ResidentFile>,
}

impl BenchReport {
    /// Full-pipeline rate divided by the bare-invoke rate (1.0: the loop costs nothing).
    pub fn ratio(&self) -> f64 {
        self.ratio_of(&self.pipeline)
    }

    /// The same ratio with frames from memory: the loop's own cost.
    pub fn ratio_cached(&self) -> f64 {
        self.ratio_of(&self.pipeline_cached)
    }

    fn ratio_of(&self, run: &RunSummary) -> f64 {
        if self.bare_rate > 0.0 {
            run.fps() / self.bare_rate
        } else {
            0.0
        }
    }

    /// Median cost per frame after the model, in microseconds: the autonomy layer and
    /// reading the outputs, on frames from memory (what [`Self::after_inference_ratio`]
    /// divides by the bare invoke).
    pub fn after_inference_us(&self) -> u64 {
        let run = &self.pipeline_cached.latencies;
        run.percentiles(Stage::Autonomy).p50_us + run.percentiles(Stage::Rest).p50_us
    }

    /// Cost per frame after the model (the autonomy layer and reading the outputs, on
    /// frames from memory) over the bare invoke, both measured in this run: 0.01 means
    /// everything after inference costs 1 % of the model. Medians, so that the moments the
    /// thread waited for a core on a busy machine do not count.
    pub fn after_inference_ratio(&self) -> f64 {
        let after = self.after_inference_us();
        if self.bare_invoke.p50_us > 0 {
            after as f64 / self.bare_invoke.p50_us as f64
        } else {
            0.0
        }
    }

    /// Per-stage percentiles of the pipeline run.
    pub fn stage(&self, stage: Stage) -> Percentiles {
        self.pipeline.latencies.percentiles(stage)
    }
}

/// Measure bare invoke, then the whole pipeline, on frames from `source`.
///
/// With `autonomy`, every pipeline frame also goes through the autonomy layer (its cost is
/// the `autonomy` stage); the bare measurement is the model alone either way.
pub fn run(
    source: &mut dyn FrameSource,
    pipeline: &mut Pipeline,
    mut autonomy: Option<&mut Autonomy>,
    options: BenchOptions,
) -> Result<BenchReport, RunError> {
    // One real frame as the fixed input of the bare measurement.
    let mut frame = Frame::default();
    if !source.next_frame(&mut frame)? {
        return Err(RunError::Source(FrameError::Open {
            what: source.describe(),
            reason: "the source gave no frame to benchmark with".into(),
        }));
    }
    pipeline.load_input(&frame)?;
    let (bare_invoke, bare_rate) = bare_invoke(pipeline, options)?;

    let warm = RunOptions {
        max_frames: Some(options.warmup),
        capture_depth: 2,
        ..RunOptions::default()
    };
    let measured = RunOptions {
        max_frames: Some(options.iterations.max(1)),
        ..warm.clone()
    };
    // The warm-up run consumes the source's first frames; the measured run continues it.
    runner::run_with(source, pipeline, autonomy.as_deref_mut(), &warm, &mut ())?;
    let summary = runner::run_with(
        source,
        pipeline,
        autonomy.as_deref_mut(),
        &measured,
        &mut (),
    )?;
    let memory = MemoryUse::read();
    let resident_files = crate::stats::resident_files().unwrap_or_default();
    let mut cached = CachedFrames::capture(source, CACHED_FRAMES)?;
    let summary_cached = runner::run_with(&mut cached, pipeline, autonomy, &measured, &mut ())?;
    Ok(BenchReport {
        bare_invoke,
        bare_rate,
        pipeline: summary,
        pipeline_cached: summary_cached,
        memory,
        resident_files,
    })
}

/// Frames kept by [`CachedFrames`] in a benchmark (a few MiB at 320x240).
const CACHED_FRAMES: usize = 16;

/// Frames captured once and replayed from memory, endlessly, so that a
/// benchmark measures the loop rather than rendering or decoding.
pub struct CachedFrames {
    frames: Vec<Frame>,
    next: usize,
    sequence: u64,
}

impl CachedFrames {
    /// Take up to `count` frames from `source` (at least one).
    pub fn capture(source: &mut dyn FrameSource, count: usize) -> Result<Self, FrameError> {
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let mut frame = Frame::default();
            if !source.next_frame(&mut frame)? {
                break;
            }
            frames.push(frame);
        }
        if frames.is_empty() {
            return Err(FrameError::Open {
                what: source.describe(),
                reason: "the source gave no frame to cache".into(),
            });
        }
        Ok(CachedFrames {
            frames,
            next: 0,
            sequence: 0,
        })
    }
}

impl FrameSource for CachedFrames {
    fn next_frame(&mut self, frame: &mut Frame) -> Result<bool, FrameError> {
        let cached = &self.frames[self.next];
        self.next = (self.next + 1) % self.frames.len();
        frame.reshape(cached.width, cached.height);
        frame.data.copy_from_slice(&cached.data);
        match &cached.truth {
            Some(t) => frame.set_truth(t.label.as_deref(), t.phase.as_deref()),
            None => frame.truth = None,
        }
        frame.sequence = self.sequence;
        self.sequence += 1;
        Ok(true)
    }

    fn describe(&self) -> String {
        format!("{} cached frames", self.frames.len())
    }
}

/// Time `invoke` alone, input already loaded.
fn bare_invoke(
    pipeline: &mut Pipeline,
    options: BenchOptions,
) -> Result<(Percentiles, f64), PipelineError> {
    for _ in 0..options.warmup {
        pipeline.invoke()?;
    }
    let mut latencies = StageLatencies::default();
    let iterations = options.iterations.max(1);
    let start = Instant::now();
    for _ in 0..iterations {
        let t = Instant::now();
        pipeline.invoke()?;
        latencies.record(Stage::Invoke, t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        iterations as f64 / secs
    } else {
        0.0
    };
    Ok((latencies.percentiles(Stage::Invoke), rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{SyntheticConfig, SyntheticSource};

    #[test]
    fn cached_frames_replay_the_captured_ones_in_a_loop() {
        let mut source = SyntheticSource::new(SyntheticConfig {
            width: 32,
            height: 24,
            ..SyntheticConfig::default()
        })
        .unwrap();
        let mut cached = CachedFrames::capture(&mut source, 3).unwrap();
        let mut fresh = SyntheticSource::new(SyntheticConfig {
            width: 32,
            height: 24,
            ..SyntheticConfig::default()
        })
        .unwrap();
        let mut expected = Vec::new();
        for _ in 0..3 {
            let mut f = Frame::default();
            assert!(fresh.next_frame(&mut f).unwrap());
            expected.push(f);
        }
        let mut frame = Frame::default();
        for i in 0..7u64 {
            assert!(cached.next_frame(&mut frame).unwrap());
            let want = &expected[(i % 3) as usize];
            assert_eq!(frame.data, want.data);
            assert_eq!(frame.truth, want.truth);
            assert_eq!(frame.sequence, i);
        }
    }
}
