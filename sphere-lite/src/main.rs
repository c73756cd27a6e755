//! `sphere-lite`: the fleet server binary. Parses the command line, sets up logging and runs
//! one of: `serve`, `token create`, `enrollment-key create`.
//!
//! Why here and not in the library: process concerns (arguments, signals, exit codes, anyhow
//! errors for humans) stay at the edge; everything testable lives in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sphere_lite::config::{Config, FileConfig};
use sphere_lite::{rss, server};

/// The slim fleet server for TinyLCM devices.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives (shared by all subcommands).
#[derive(clap::Args)]
struct DataArgs {
    /// Data directory (sphere.redb and blobs/). Default ./sphere-data.
    #[arg(long, env = "SPHERE_LITE_DATA")]
    data: Option<PathBuf>,
    /// TOML config file (keys: data, listen, max_upload_bytes).
    #[arg(long, env = "SPHERE_LITE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve {
        #[command(flatten)]
        data: DataArgs,
        /// Listen address. Default 127.0.0.1:8470.
        #[arg(long, env = "SPHERE_LITE_LISTEN")]
        listen: Option<String>,
        /// Hard cap on a package upload in bytes. Default 67108864.
        #[arg(long, env = "SPHERE_LITE_MAX_UPLOAD_BYTES")]
        max_upload_bytes: Option<u64>,
    },
    /// Operator tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Enrollment keys for new devices.
    EnrollmentKey {
        #[command(subcommand)]
        action: KeyAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create an operator token and print it once (only its hash is stored).
    Create {
        /// Operator name.
        #[arg(long)]
        operator: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create an enrollment key and print it once (only its hash is stored).
    Create {
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[command(flatten)]
        data: DataArgs,
    },
}

fn config(
    data: DataArgs,
    listen: Option<String>,
    max_upload: Option<u64>,
) -> anyhow::Result<Config> {
    let file = match &data.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    Ok(Config::resolve(data.data, listen, max_upload, file)?)
}

fn open(config: &Config) -> anyhow::Result<sphere_lite::domain::Sphere> {
    server::open_embedded(&config.data)
        .with_context(|| format!("opening the data directory {}", config.data.display()))
        .map(|s| s.with_max_upload(config.max_upload_bytes))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPHERE_LITE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            data,
            listen,
            max_upload_bytes,
        } => {
            let config = config(data, listen, max_upload_bytes)?;
            let sphere = Arc::new(open(&config)?);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(8)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("listening on {}", config.listen))?;
                tracing::info!(
                    listen = %listener.local_addr()?,
                    data = %config.data.display(),
                    vm_rss_kib = rss::vm_rss_kib(),
                    "sphere-lite serving (embedded: redb + local blobs)"
                );
                server::serve(sphere, listener, server::shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
            tracing::info!("stopped");
        }
        Command::Token {
            action: TokenAction::Create { operator, data },
        } => {
            let sphere = open(&config(data, None, None)?)?;
            let token = sphere.create_operator_token(&operator)?;
            eprintln!("operator token for {operator:?} (shown once; store it now):");
            println!("{token}");
        }
        Command::EnrollmentKey {
            action: KeyAction::Create { uses, data },
        } => {
            let sphere = open(&config(data, None, None)?)?;
            let key = sphere.create_enrollment_key(uses)?;
            eprintln!("enrollment key for {uses} device(s) (shown once; store it now):");
            println!("{key}");
        }
    }
    Ok(())
}
