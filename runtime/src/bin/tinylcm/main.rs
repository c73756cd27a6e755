//! `tinylcm`: the edge runtime's command line.
//!
//! Each subcommand lives in its own module with an `Args` type and a `run`
//! function; this file only parses the command line and sets up logging.

mod bench;
mod config_cmd;
mod demo;
mod enroll;
mod eval;
mod feedback;
mod healthcheck;
mod init_state;
mod inspect;
mod model_cmd;
mod model_store_cmd;
mod progress;
mod quarantine;
mod report;
mod run;
mod snapshot;
mod status;
mod status_show;
mod summary;
mod synth;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

/// TinyLCM edge runtime: camera frames through a TFLite model, on the device.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The built-in model on the built-in synthetic camera, with a live progress line.
    Demo(demo::Args),
    /// Run the pipeline in the foreground with the configured source.
    Run(run::RunArgs),
    /// Run the pipeline over a folder of JPEG/PNG images.
    Replay(run::ReplayArgs),
    /// Show a model's tensors and which backend would run it.
    InspectModel(inspect::Args),
    /// Measure per-stage latency and the pipeline's rate against bare inference.
    Bench(bench::Args),
    /// Run the synthetic scenario and draw what happened as PNG and SVG.
    Report(report::Args),
    /// Score what the device learns against the truth on held-out frames, before and after.
    Eval(eval::Args),
    /// Print the effective configuration (defaults, file and environment merged).
    Config(config_cmd::Args),
    /// Render labelled frames of the synthetic scene into class folders (training data, tests).
    Synth(synth::Args),
    /// Build a model's initial KNN state from a folder of labelled images.
    InitState(init_state::InitArgs),
    /// Fit a standardisation + PCA feature transform to a folder of images.
    FitFeatures(init_state::FitArgs),
    /// Tell the device what a human knows: false alarm or real drift, a sample's class, a class's name.
    Feedback(feedback::Args),
    /// List the samples the device set aside, with status and thumbnail.
    Quarantine(quarantine::Args),
    /// Whether the service runs and how it is doing; or what its state database holds.
    Status(status::Args),
    /// List, take, verify or restore snapshots of the device's state.
    Snapshot(snapshot::Args),
    /// Release keys and signed model releases for over-the-air updates.
    Model(model_cmd::Args),
    /// The boot health gate: exit 0 once the service runs a model on progressing frames.
    Healthcheck(healthcheck::Args),
    /// Enroll this device with a sphere-lite server (once; the sync client then uses the
    /// stored credentials).
    Enroll(enroll::Args),
}

/// The sync client's log layer, set once the state folder is known (`tinylcm run`).
type SyncLogs = tracing_subscriber::reload::Handle<
    Option<tinylcm::sync::LogLayer>,
    tracing_subscriber::Registry,
>;
static SYNC_LOGS: std::sync::OnceLock<SyncLogs> = std::sync::OnceLock::new();

/// Also write log lines into the files the sync client sends to sphere-lite.
pub fn send_logs(layer: tinylcm::sync::LogLayer) {
    if let Some(handle) = SYNC_LOGS.get() {
        if let Err(e) = handle.reload(Some(layer)) {
            tracing::warn!("cannot send logs to the server: {e}");
        }
    }
}

fn main() -> std::process::ExitCode {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TINYLCM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The terminal's filter is the user's; the sync log files keep their own level.
    let (sync_logs, handle) = tracing_subscriber::reload::Layer::new(None);
    tracing_subscriber::registry()
        .with(sync_logs)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter),
        )
        .init();
    let _ = SYNC_LOGS.set(handle);
    let result = match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
        Command::Run(args) => run::run(args),
        Command::Replay(args) => run::replay(args),
        Command::InspectModel(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Report(args) => report::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Config(args) => config_cmd::run(args),
        Command::Synth(args) => synth::run(args),
        Command::InitState(args) => init_state::init(args),
        Command::FitFeatures(args) => init_state::fit(args),
        Command::Feedback(args) => feedback::run(args),
        Command::Quarantine(args) => quarantine::run(args),
        Command::Status(args) => status::run(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Model(args) => model_cmd::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
        Command::Enroll(args) => enroll::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: "cannot load the model: ...: ...".
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
