//! `tinylcm`: the edge runtime's command line.
//!
//! Each subcommand lives in its own module with an `Args` type and a `run`
//! function; this file only parses the command line and sets up logging.

mod synth;

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
    /// Render labelled frames of the synthetic scene into class folders (training data, tests).
    Synth(synth::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TINYLCM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Synth(args) => synth::run(args),
    }
}
