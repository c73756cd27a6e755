//! `tinylcm run` and `tinylcm replay`: the pipeline in the foreground until the
//! source ends, a frame limit is reached, or Ctrl-C / SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tinylcm::assemble;
use tinylcm::config::Config;
use tinylcm::frame::SourceKind;
use tinylcm::pipeline::runner::{self, RunOptions};
use tinylcm::pipeline::runner::{FrameReport, Observer};
use tinylcm::report::IncidentLog;
use tinylcm::service::{Control, GenerationEnd, Service, ServiceObserver, ServiceOptions};
use tinylcm::signals::Signals;
use tinylcm::sync::SyncSetup;

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

/// Run `tinylcm run`: the field service, until stopped (reloading on new settings).
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let signals = Signals::install().context("cannot install the signal handlers")?;
    let mut service = Service::new(
        ServiceOptions {
            config_file: args.config,
            state_dir: args.state,
            max_frames: args.frames,
            sync: true,
            notify: true,
        },
        Control::new(),
    );
    service.attach_signals(signals);
    let config = service.config()?;
    if config.sync.logs {
        let state_dir = SyncSetup::from_config(&config).state_dir;
        crate::send_logs(tinylcm::sync::log_layer(
            tinylcm::sync::logs::log_dir(&state_dir),
            config.sync.max_log_kib,
            tracing::Level::INFO,
        ));
    }
    let mut foreground = Foreground::new();
    let result = service.run(&mut foreground);
    foreground.progress.finish();
    let summary = result?;
    if summary.generations > 1 {
        println!(
            "{} frames over {} generations (reloaded {} times)",
            summary.frames,
            summary.generations,
            summary.generations - 1
        );
    }
    Ok(())
}

/// What `tinylcm run` shows in the foreground: a progress line, and a summary per generation.
struct Foreground {
    progress: ProgressLine,
    incidents: IncidentLog,
}

impl Foreground {
    fn new() -> Self {
        Foreground {
            progress: ProgressLine::new(),
            incidents: IncidentLog::default(),
        }
    }
}

impl Observer for Foreground {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.progress.on_frame(report);
        self.incidents.on_frame(report);
    }
}

impl ServiceObserver for Foreground {
    fn on_generation_end(&mut self, end: GenerationEnd<'_>) {
        self.progress.finish();
        // A new line for the next generation (a finished bar stays hidden).
        self.progress = ProgressLine::new();
        summary::print_run(end.summary, end.engine_line);
        if let Some(a) = end.autonomy {
            summary::print_autonomy(a, &self.incidents, end.state_path);
        }
        self.incidents = IncidentLog::default();
    }
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
    let engine_line = assemble::describe(&pipeline, &model.origin, &source.describe());
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
    let mut status = assemble::status(config, &model, &pipeline, &source.describe(), store, None)
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
