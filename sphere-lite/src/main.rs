//! `sphere-lite`: the fleet server binary. Parses the command line, sets up logging and runs
//! one of: `serve`, `token create|list|revoke`, `enrollment-key create|list|revoke`,
//! `device add`.
//!
//! Why here and not in the library: process concerns (arguments, signals, exit codes, anyhow
//! errors for humans) stay at the edge; everything testable lives in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sphere_lite::config::{Config, FileConfig, MlflowOptions, S3Options, TlsOptions};
use sphere_lite::ports::Role;
use sphere_lite::tls::ServerTls;
use sphere_lite::{limits, rss, server};
use tinylcm_protocol::release::PublicKey;

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
    /// s3_access_key, s3_secret_key, s3_region, s3_prefix, mlflow_url, mlflow_namespace,
    /// mlflow_metric_keys, release_keys, tls_cert, tls_key).
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

/// Tracking in MLflow (optional; needs S3 too: the server then keeps no local state).
#[derive(clap::Args)]
struct MlflowArgs {
    /// MLflow server URL, e.g. http://127.0.0.1:5000. Unset: tracking stays in <data>/sphere.redb.
    #[arg(long, env = "SPHERE_LITE_MLFLOW_URL")]
    mlflow_url: Option<String>,
    /// Prefix of every experiment name, so several fleets can share one MLflow. Default
    /// sphere-lite.
    #[arg(long, env = "SPHERE_LITE_MLFLOW_NAMESPACE")]
    mlflow_namespace: Option<String>,
    /// Metric keys logged as MLflow metrics, comma-separated: keys, key prefixes followed by
    /// .* (latency.*), or * for every key (the default). The keys the dashboard reads itself
    /// are logged whatever this says; the embedded backend keeps every key.
    #[arg(long, env = "SPHERE_LITE_MLFLOW_METRIC_KEYS", value_delimiter = ',')]
    mlflow_metric_keys: Option<Vec<String>>,
}

/// Native TLS (optional; both or neither). Without them sphere-lite speaks plain HTTP (put a
/// TLS-terminating reverse proxy in front, or set these).
#[derive(clap::Args)]
struct TlsArgs {
    /// PEM certificate chain (server certificate first): serve HTTPS instead of plain HTTP.
    #[arg(long, env = "SPHERE_LITE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, RSA or SEC1).
    #[arg(long, env = "SPHERE_LITE_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

impl From<TlsArgs> for TlsOptions {
    fn from(a: TlsArgs) -> Self {
        TlsOptions {
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
        }
    }
}

impl From<MlflowArgs> for MlflowOptions {
    fn from(a: MlflowArgs) -> Self {
        MlflowOptions {
            mlflow_url: a.mlflow_url,
            mlflow_namespace: a.mlflow_namespace,
            mlflow_metric_keys: a.mlflow_metric_keys,
        }
    }
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
        /// File of trusted model-release public keys (`tinylcm-release-public:` lines). Without
        /// it, publishing model releases is refused.
        #[arg(long, env = "SPHERE_LITE_RELEASE_KEYS")]
        release_keys: Option<PathBuf>,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        mlflow: MlflowArgs,
        #[command(flatten)]
        tls: TlsArgs,
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
        stores: StoreArgs,
    },
}

/// Where the secrets commands find the fleet: the data directory, or S3 + MLflow.
#[derive(clap::Args)]
struct StoreArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    mlflow: MlflowArgs,
}

impl StoreArgs {
    /// Open the fleet's stores for a one-shot command.
    fn open(self) -> anyhow::Result<sphere_lite::domain::Sphere> {
        open(&config(
            self.data,
            None,
            None,
            self.s3.into(),
            self.mlflow.into(),
            TlsOptions::default(),
        )?)
    }
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create an operator token and print it once (only its hash is stored). With MLflow
    /// tracking this works while servers are running; embedded, stop the server first.
    Create {
        /// Operator name (recorded on decisions and uploads), e.g. alice or grafana.
        #[arg(long, visible_alias = "operator")]
        name: String,
        /// admin (everything) or read-only (the dashboard, GET routes and /metrics; no writes).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
        /// Lifetime, e.g. 30d, 12h, 90m, 2w (default: until revoked).
        #[arg(long, value_parser = parse_lifetime_arg)]
        expires: Option<u64>,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// List operator tokens (never their secrets).
    List {
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Revoke an operator token by id (`tok-…`) or name: it stops working and its dashboard
    /// sessions end. With MLflow, other running servers notice within 5 s.
    Revoke {
        /// The token's id, or its name when one active token has it.
        which: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create an enrollment key and print it once (only its hash is stored). With MLflow
    /// tracking this works while servers are running; embedded, stop the server first.
    Create {
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1, conflicts_with = "unlimited")]
        uses: u32,
        /// No use count: any number of devices until it expires (needs --expires) or is revoked.
        #[arg(long, requires = "expires")]
        unlimited: bool,
        /// Lifetime, e.g. 7d, 12h (default: until used up or revoked).
        #[arg(long, value_parser = parse_lifetime_arg)]
        expires: Option<u64>,
        /// What the key is for, e.g. the batch of devices (lets `revoke` find it by name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// List enrollment keys (never their secrets).
    List {
        #[command(flatten)]
        stores: StoreArgs,
    },
    /// Revoke an enrollment key by id (`key-…`) or name: no device enrolls with it again.
    Revoke {
        /// The key's id, or its name when one unrevoked key has it.
        which: String,
        #[command(flatten)]
        stores: StoreArgs,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "admin" => Ok(Role::Admin),
        "read-only" => Ok(Role::ReadOnly),
        _ => Err("admin or read-only".into()),
    }
}

fn parse_lifetime_arg(text: &str) -> Result<u64, String> {
    sphere_lite::domain::parse_lifetime(text).map_err(|e| e.to_string())
}

/// A Unix ms time as `YYYY-MM-DDTHH:MMZ` (`-` for none, `unknown` for 0: records of versions
/// before times were kept).
fn when(unix_ms: Option<u64>) -> String {
    match unix_ms {
        None => "-".into(),
        Some(0) => "unknown".into(),
        Some(ms) => {
            let (y, m, d, h, min, _) = tinylcm_protocol::time::parts(ms);
            format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}Z")
        }
    }
}

fn config(
    data: DataArgs,
    listen: Option<String>,
    max_upload: Option<u64>,
    s3: S3Options,
    mlflow: MlflowOptions,
    tls: TlsOptions,
) -> anyhow::Result<Config> {
    let file = match &data.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    Ok(Config::resolve(
        data.data, listen, max_upload, s3, mlflow, tls, file,
    )?)
}

/// For the token and key commands: the embedded database (blobs untouched), or MLflow.
fn open(config: &Config) -> anyhow::Result<sphere_lite::domain::Sphere> {
    match &config.mlflow {
        Some(m) => server::open_stores(&config.data, config.s3.as_ref(), Some(m))
            .with_context(|| format!("opening MLflow at {} (namespace {})", m.url, m.namespace)),
        None => server::open_embedded(&config.data)
            .with_context(|| format!("opening the data directory {}", config.data.display())),
    }
}

/// Everything `serve` needs: tracking in the data directory or MLflow, blobs there or in S3.
fn open_serving(config: &Config) -> anyhow::Result<sphere_lite::domain::Sphere> {
    server::open_stores(&config.data, config.s3.as_ref(), config.mlflow.as_ref())
        .with_context(|| match (&config.mlflow, &config.s3) {
            (Some(m), Some(s3)) => format!(
                "opening MLflow at {} (namespace {}) and S3 bucket {} at {}",
                m.url, m.namespace, s3.bucket, s3.endpoint
            ),
            (_, Some(s3)) => format!(
                "opening the data directory {} and S3 bucket {} at {}",
                config.data.display(),
                s3.bucket,
                s3.endpoint
            ),
            (_, None) => format!("opening the data directory {}", config.data.display()),
        })
        .map(|s| {
            s.with_max_upload(config.max_upload_bytes)
                .with_storage(&config.storage)
        })
        .and_then(|s| Ok(s.with_release_keys(release_keys(config)?)))
}

/// The trusted release keys of `config`'s key file (none without one).
fn release_keys(config: &Config) -> anyhow::Result<Vec<PublicKey>> {
    let Some(path) = &config.release_keys else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the release keys {}", path.display()))?;
    let keys = PublicKey::all_from_text(&text)
        .with_context(|| format!("release keys {}", path.display()))?;
    anyhow::ensure!(
        !keys.is_empty(),
        "release keys {}: no key in the file",
        path.display()
    );
    tracing::info!(keys = keys.len(), "trusting release keys");
    Ok(keys)
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
            release_keys,
            s3,
            mlflow,
            tls,
        } => {
            let mut config = config(
                data,
                listen,
                max_upload_bytes,
                s3.into(),
                mlflow.into(),
                tls.into(),
            )?;
            if release_keys.is_some() {
                config.release_keys = release_keys;
            }
            // Before the stores: a bad certificate should not wait for S3 or MLflow to answer.
            let tls = match &config.tls {
                Some(files) => Some(ServerTls::load(&files.cert, &files.key).with_context(
                    || "loading the TLS certificate and key (--tls-cert, --tls-key)",
                )?),
                None => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let open_files = limits::raise_open_files_limit();
            let sphere = Arc::new(open_serving(&config)?);
            let blobs = match &config.s3 {
                Some(s3) => format!("S3 bucket {} at {}", s3.bucket, s3.endpoint),
                None => "local blobs".to_owned(),
            };
            let tracking = match &config.mlflow {
                Some(m) => format!("MLflow at {} (namespace {})", m.url, m.namespace),
                None => "redb".to_owned(),
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
                    scheme,
                    data = %config.data.display(),
                    vm_rss_kib = rss::vm_rss_kib(),
                    open_files = ?open_files,
                    "sphere-lite serving (tracking: {tracking}; blobs: {blobs})"
                );
                server::serve_door(
                    sphere,
                    listener,
                    tls,
                    &config.server,
                    server::shutdown_signal(),
                )
                .await?;
                anyhow::Ok(())
            })?;
            tracing::info!("stopped");
        }
        Command::Token {
            action:
                TokenAction::Create {
                    name,
                    role,
                    expires,
                    stores,
                },
        } => {
            let sphere = stores.open()?;
            let (token, view) = sphere.issue_operator_token(&name, role, expires)?;
            eprintln!(
                "{} token {} for {:?}, expires {} (shown once; store it now):",
                view.role.as_str(),
                view.id,
                view.name,
                when(view.expires_unix_ms).replace('-', "never")
            );
            println!("{token}");
        }
        Command::Token {
            action: TokenAction::List { stores },
        } => {
            let sphere = stores.open()?;
            println!(
                "{:<16} {:<9} {:<8} {:<17} {:<17} {:<17} NAME",
                "ID", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST USED"
            );
            for t in sphere.list_operator_tokens()? {
                println!(
                    "{:<16} {:<9} {:<8} {:<17} {:<17} {:<17} {}",
                    t.id,
                    t.role.as_str(),
                    t.state,
                    when(Some(t.created_unix_ms)),
                    when(t.expires_unix_ms),
                    when(t.last_used_unix_ms),
                    t.name.escape_debug()
                );
            }
        }
        Command::Token {
            action: TokenAction::Revoke { which, stores },
        } => {
            let sphere = stores.open()?;
            let t = sphere.revoke_operator_token(&which)?;
            eprintln!("revoked {} ({:?})", t.id, t.name);
        }
        Command::EnrollmentKey {
            action:
                KeyAction::Create {
                    uses,
                    unlimited,
                    expires,
                    name,
                    stores,
                },
        } => {
            let sphere = stores.open()?;
            let uses = (!unlimited).then_some(uses);
            let (key, view) = sphere.issue_enrollment_key(uses, expires, name.as_deref())?;
            let count = match uses {
                Some(n) => format!("{n} device(s)"),
                None => "any number of devices".into(),
            };
            let until = match view.expires_unix_ms {
                Some(_) => format!(", expires {}", when(view.expires_unix_ms)),
                None => String::new(),
            };
            eprintln!(
                "enrollment key {} for {count}{until} (shown once; store it now):",
                view.id
            );
            println!("{key}");
        }
        Command::EnrollmentKey {
            action: KeyAction::List { stores },
        } => {
            let sphere = stores.open()?;
            println!(
                "{:<16} {:<8} {:<9} {:>6} {:<17} {:<17} NAME",
                "ID", "STATE", "REMAINING", "USED", "CREATED", "EXPIRES"
            );
            for k in sphere.list_enrollment_keys()? {
                println!(
                    "{:<16} {:<8} {:<9} {:>6} {:<17} {:<17} {}",
                    k.id,
                    k.state,
                    k.remaining
                        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
                    k.used,
                    when(Some(k.created_unix_ms)),
                    when(k.expires_unix_ms),
                    k.name.as_deref().unwrap_or("-").escape_debug()
                );
            }
        }
        Command::EnrollmentKey {
            action: KeyAction::Revoke { which, stores },
        } => {
            let sphere = stores.open()?;
            let k = sphere.revoke_enrollment_key(&which)?;
            eprintln!("revoked enrollment key {}", k.id);
        }
        Command::Device {
            action:
                DeviceAction::Add {
                    device_id,
                    name,
                    stores,
                },
        } => {
            let sphere = stores.open()?;
            let added = sphere.add_device(&device_id, name.as_deref())?;
            eprintln!("token for device {device_id} (shown once; set it as the client's api_key):");
            println!("{}", added.token);
        }
    }
    Ok(())
}
