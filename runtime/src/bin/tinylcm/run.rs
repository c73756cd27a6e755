//! `tinylcm run` and `tinylcm replay`: the pipeline in the foreground until the
//! source ends, a frame limit is reached, or Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tinylcm::assemble;
use tinylcm::config::Config;
use tinylcm::frame::SourceKind;
use tinylcm::pipeline::Pipeline;
use tinylcm::pipeline::runner::{self, RunOptions};
use tinylcm::report::IncidentLog;

use crate::progress::ProgressLine;
use crate::summary;

/// Options of `tinylcm run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); without it, the built-in defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Stop after this many frames (overrides `run.max-frames`).
    #[arg(long)]
    frames: Option<u64>,
    /// Keep the state (database, snapshots, quarantine, status) in DIR instead of the
    /// configured paths.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

/// Options of `tinylcm replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Folder of JPEG/PNG images (sub-folders are taken as class labels).
    dir: PathBuf,
    /// Configuration file for everything but the source.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Replay at this rate instead of as fast as possible.
    #[arg(long)]
    fps: Option<f64>,
    /// Start again at the first image after the last one (until Ctrl-C or --frames).
    #[arg(long = "loop")]
    looping: bool,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Keep the state (database, snapshots, quarantine, status) in DIR instead of the
    /// configured paths.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

/// Run `tinylcm run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(frames) = args.frames {
        config.run.max_frames = frames;
    }
    if let Some(dir) = &args.state {
        assemble::state_in(&mut config, dir);
    }
    run_config(&config)
}

/// Run `tinylcm replay`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    config.source.kind = SourceKind::Directory;
    config.source.directory.path = args.dir;
    config.source.directory.looping = args.looping;
    config.source.directory.labels_from_folders = true;
    if let Some(fps) = args.fps {
        config.source.directory.fps = fps;
    }
    if let Some(frames) = args.frames {
        config.run.max_frames = frames;
    }
    if let Some(dir) = &args.state {
        assemble::state_in(&mut config, dir);
    }
    config.validate()?;
    run_config(&config)
}

/// Assemble and run `config` with a progress line, then print the summary.
pub fn run_config(config: &Config) -> anyhow::Result<()> {
    let model = assemble::load_model(&config.model).context("cannot load the model")?;
    let mut pipeline = assemble::pipeline(config, &model).context("cannot start the model")?;
    let mut source = assemble::source(config).context("cannot open the frame source")?;
    let engine_line = engine_line(&pipeline, &model.origin, &source.describe());
    tracing::info!("{engine_line}");
    let mut autonomy = if config.autonomy.enabled {
        let store = assemble::store(config).context("cannot open the state store")?;
        Some(
            assemble::autonomy(config, &model, &pipeline, Some(store))
                .context("cannot start the autonomy layer")?,
        )
    } else {
        None
    };

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot install the Ctrl-C handler")?;
    let options = RunOptions {
        max_frames: (config.run.max_frames > 0).then_some(config.run.max_frames),
        stop: Some(stop),
        capture_depth: config.run.capture_depth,
    };
    let store = autonomy.as_ref().and_then(|a| a.store().cloned());
    let mut status = assemble::status(config, &model, &pipeline, &source.describe(), store)
        .context("cannot start the status report")?;
    let mut progress = ProgressLine::new();
    let mut incidents = IncidentLog::default();
    let result = runner::run_with(
        source.as_mut(),
        &mut pipeline,
        autonomy.as_mut(),
        &options,
        &mut ((&mut progress, &mut incidents), status.as_mut()),
    );
    progress.finish();
    if let Some(a) = autonomy.as_mut() {
        a.finish()
            .with_context(|| format!("cannot save the state to {}", config.state.path.display()))?;
    }
    if let Some(s) = status {
        // The run's outcome matters more than its last status report: warn, do not fail.
        if let Err(e) = s.finish(result.as_ref().ok(), autonomy.as_ref()) {
            tracing::warn!("cannot write the final status report: {e}");
        }
    }
    let summary = result.context("the pipeline stopped")?;
    summary::print_run(&summary, &engine_line);
    if let Some(a) = &autonomy {
        summary::print_autonomy(a, &incidents, &config.state.path);
    }
    Ok(())
}

/// One line saying what runs: model, backend, accelerator, source.
pub fn engine_line(pipeline: &Pipeline, model: &str, source: &str) -> String {
    let engine = pipeline.engine();
    format!(
        "model {model} on {} ({}), source: {source}",
        engine.backend(),
        engine.accelerator()
    )
}
