//! `sphere-lite`: the fleet server binary. Parses the command line, sets up logging and runs
//! one of: `serve`, `token create`, `enrollment-key create`, `device add`.
//!
//! Why here and not in the library: process concerns (arguments, signals, exit codes, anyhow
//! errors for humans) stay at the edge; everything testable lives in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sphere_lite::config::{Config, FileConfig, S3Options};
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
    /// TOML config file (keys: data, listen, max_upload_bytes, s3_endpoint, s3_bucket,
    /// s3_access_key, s3_secret_key, s3_region, s3_prefix).
    #[arg(long, env = "SPHERE_LITE_CONFIG")]
    config: Option<PathBuf>,
}

/// Blobs in S3 (all optional; an endpoint switches blobs from `<data>/blobs/` to S3).
#[derive(clap::Args)]
struct S3Args {
    /// S3 endpoint URL, e.g. http://127.0.0.1:8333. Unset: blobs stay in <data>/blobs/.
    #[arg(long, env = "SPHERE_LITE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Bucket (created private if missing). Default sphere-lite.
    #[arg(long, env = "SPHERE_LITE_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Access key id.
    #[arg(long, env = "SPHERE_LITE_S3_ACCESS_KEY")]
    s3_access_key: Option<String>,
    /// Secret key (prefer the environment variable: flags show up in `ps`).
    #[arg(long, env = "SPHERE_LITE_S3_SECRET_KEY", hide_env_values = true)]
    s3_secret_key: Option<String>,
    /// Signing region. Default us-east-1.
    #[arg(long, env = "SPHERE_LITE_S3_REGION")]
    s3_region: Option<String>,
    /// Key prefix inside the bucket (objects at <prefix>/<key>).
    #[arg(long, env = "SPHERE_LITE_S3_PREFIX")]
    s3_prefix: Option<String>,
}

impl From<S3Args> for S3Options {
    fn from(a: S3Args) -> Self {
        S3Options {
            s3_endpoint: a.s3_endpoint,
            s3_bucket: a.s3_bucket,
            s3_access_key: a.s3_access_key,
            s3_secret_key: a.s3_secret_key,
            s3_region: a.s3_region,
            s3_prefix: a.s3_prefix,
        }
    }
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
        #[command(flatten)]
        s3: S3Args,
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
    /// Devices added by an operator (for original TinyLCM Python clients, whose device id is
    /// fixed in their configuration and which cannot enroll themselves).
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
}

#[derive(Subcommand)]
enum DeviceAction {
    /// Add a device with this id and print its token once: configure it as the client's
    /// `api_key`.
    Add {
        /// The device id the client is configured with (A-Z a-z 0-9 _ -, at most 64).
        device_id: String,
        /// A human name for the dashboard.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        data: DataArgs,
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
    s3: S3Options,
) -> anyhow::Result<Config> {
    let file = match &data.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    Ok(Config::resolve(data.data, listen, max_upload, s3, file)?)
}

/// Tracking only (the token and key commands): blobs stay untouched.
fn open(config: &Config) -> anyhow::Result<sphere_lite::domain::Sphere> {
    server::open_embedded(&config.data)
        .with_context(|| format!("opening the data directory {}", config.data.display()))
}

/// Everything `serve` needs: tracking in the data directory, blobs there or in S3.
fn open_serving(config: &Config) -> anyhow::Result<sphere_lite::domain::Sphere> {
    server::open_stores(&config.data, config.s3.as_ref())
        .with_context(|| match &config.s3 {
            Some(s3) => format!(
                "opening the data directory {} and S3 bucket {} at {}",
                config.data.display(),
                s3.bucket,
                s3.endpoint
            ),
            None => format!("opening the data directory {}", config.data.display()),
        })
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
            s3,
        } => {
            let config = config(data, listen, max_upload_bytes, s3.into())?;
            let sphere = Arc::new(open_serving(&config)?);
            let blobs = match &config.s3 {
                Some(s3) => format!("S3 bucket {} at {}", s3.bucket, s3.endpoint),
                None => "local blobs".to_owned(),
            };
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
                    "sphere-lite serving (tracking: redb; blobs: {blobs})"
                );
                server::serve(sphere, listener, server::shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
            tracing::info!("stopped");
        }
        Command::Token {
            action: TokenAction::Create { operator, data },
        } => {
            let sphere = open(&config(data, None, None, S3Options::default())?)?;
            let token = sphere.create_operator_token(&operator)?;
            eprintln!("operator token for {operator:?} (shown once; store it now):");
            println!("{token}");
        }
        Command::EnrollmentKey {
            action: KeyAction::Create { uses, data },
        } => {
            let sphere = open(&config(data, None, None, S3Options::default())?)?;
            let key = sphere.create_enrollment_key(uses)?;
            eprintln!("enrollment key for {uses} device(s) (shown once; store it now):");
            println!("{key}");
        }
        Command::Device {
            action:
                DeviceAction::Add {
                    device_id,
                    name,
                    data,
                },
        } => {
            let sphere = open(&config(data, None, None, S3Options::default())?)?;
            let added = sphere.add_device(&device_id, name.as_deref())?;
            eprintln!("token for device {device_id} (shown once; set it as the client's api_key):");
            println!("{}", added.token);
        }
    }
    Ok(())
}
