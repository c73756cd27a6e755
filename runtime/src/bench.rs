//! `tinylcm bench`: what the pipeline costs beyond the model itself.
//!
//! The bare-invoke rate and the full-pipeline rate are measured in the same
//! run, on the same engine, so their ratio says how much of the model's speed
//! the rest of the loop gives away — a number that means something on any
//! machine, unlike a wall-clock time.

use std::time::Instant;

use crate::frame::{Frame, FrameError, FrameSource};
use crate::pipeline::runner::{self, RunError, RunOptions, RunSummary};
use crate::pipeline::{Pipeline, PipelineError};
use crate::stats::{Percentiles, Stage, StageLatencies, peak_rss_bytes};

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
    /// Peak resident set size of the process, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

impl BenchReport {
    /// Full-pipeline rate divided by the bare-invoke rate (1.0: the loop costs nothing).
    pub fn ratio(&self) -> f64 {
        if self.bare_rate > 0.0 {
            self.pipeline.fps() / self.bare_rate
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
pub fn run(
    source: &mut dyn FrameSource,
    pipeline: &mut Pipeline,
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
    runner::run(source, pipeline, &warm, &mut ())?;
    let summary = runner::run(source, pipeline, &measured, &mut ())?;
    Ok(BenchReport {
        bare_invoke,
        bare_rate,
        pipeline: summary,
        peak_rss_bytes: peak_rss_bytes(),
    })
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
