//! `tinylcm model`: both halves of over-the-air model updates.
//!
//! `keygen` and `sign` are the release side: a release is signed on the operator's machine
//! (never on a device or the server), and the signed `.release.json` is uploaded to
//! sphere-lite with the model. Devices accept only releases signed by a key in their trusted
//! list (the `.pub` file written here). `status`, `install`, `activate` and `rollback` are the
//! device side, in `model_store_cmd`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use tinylcm::model::{ModelManifest, read_bounded};
use tinylcm::modelstore::golden;
use tinylcm_protocol::package::sha256_hex;
use tinylcm_protocol::release::{FORMAT, ReleaseManifest, SigningKey};

use crate::model_store_cmd::{self, StoreCommand};
use crate::status::StatePlace;

/// Options of `tinylcm model`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ModelCommand,
    #[command(flatten)]
    place: StatePlace,
}

#[derive(clap::Subcommand)]
enum ModelCommand {
    /// Create a release signing key: DIR/release.key (secret, mode 0600) and DIR/release.pub
    /// (give it to sphere-lite's --release-keys and to devices).
    Keygen {
        /// Folder for the two files (created if missing; existing keys are never overwritten).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Sign MODEL as release NAME/VERSION: writes MODEL.release.json.
    Sign {
        /// The model file (.tflite).
        model: PathBuf,
        /// The secret key file from `tinylcm model keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Release name (A-Z a-z 0-9 _ -).
        #[arg(long)]
        name: String,
        /// Release version (A-Z a-z 0-9 _ -).
        #[arg(long)]
        version: String,
        /// The model's manifest (labels, input spec, output roles). Default: MODEL with `.toml`.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Release notes for operators.
        #[arg(long)]
        notes: Option<String>,
        /// Security epoch (0..=1000000, default 0). A device that has committed a release of
        /// epoch E refuses every release below E for good: raise it when older releases must
        /// never run again (a fixed vulnerability), not for ordinary updates.
        #[arg(long, value_name = "E", default_value_t = 0)]
        epoch: u32,
        /// The product or board this release is for (e.g. `tinylcm-cm4`): only devices whose
        /// `[models] compatible` is the same install it. Absent: not bound, which only devices
        /// without a `compatible` of their own take.
        #[arg(long, value_name = "C")]
        compatible: Option<String>,
        /// Compute N golden checks with the real engine and add them to the signed manifest
        /// (devices refuse the model unless it reproduces them).
        #[arg(long, value_name = "N", default_value_t = 0)]
        golden: usize,
        /// Tolerance of the computed goldens: |got - expected| <= T * max(1, |expected|).
        /// Default: 0.001 for float outputs, two quantisation steps for quantised ones (what
        /// holds across inference libraries).
        #[arg(long, value_name = "T")]
        tolerance: Option<f32>,
    },
    #[command(flatten)]
    Store(StoreCommand),
}

/// Run `tinylcm model`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Keygen { out } => keygen(&out),
        ModelCommand::Sign {
            model,
            key,
            name,
            version,
            manifest,
            notes,
            epoch,
            compatible,
            golden,
            tolerance,
        } => {
            let config = args.place.config()?;
            let goldens = Goldens {
                count: golden,
                tolerance,
                engine: &config.engine,
            };
            let release = Release {
                name,
                version,
                notes,
                epoch,
                compatible,
            };
            sign(&model, &key, release, manifest, &goldens)
        }
        ModelCommand::Store(command) => model_store_cmd::run(command, &args.place),
    }
}

/// What `sign` writes into the release besides the model's own facts.
struct Release {
    name: String,
    version: String,
    notes: Option<String>,
    epoch: u32,
    compatible: Option<String>,
}

/// What `sign --golden` asks for.
struct Goldens<'a> {
    count: usize,
    tolerance: Option<f32>,
    engine: &'a tinylcm::engine::EngineConfig,
}

/// `text` with `goldens.count` computed `[[golden]]` entries appended.
fn with_goldens(
    text: String,
    bytes: Vec<u8>,
    manifest_path: &std::path::Path,
    goldens: &Goldens<'_>,
) -> anyhow::Result<String> {
    if goldens.count == 0 {
        return Ok(text);
    }
    if goldens.count > tinylcm::model::MAX_GOLDENS {
        bail!(
            "--golden {} is more than the {} a manifest may carry",
            goldens.count,
            tinylcm::model::MAX_GOLDENS
        );
    }
    if goldens.tolerance.is_some_and(|t| !t.is_finite() || t < 0.0) {
        bail!("--tolerance must be a finite number >= 0");
    }
    let manifest = ModelManifest::parse(&text, manifest_path)?;
    if !manifest.golden.is_empty() {
        bail!(
            "{} already has [[golden]] entries: remove them, or sign without --golden",
            manifest_path.display()
        );
    }
    let computed = golden::compute(
        goldens.engine,
        Arc::from(bytes),
        &manifest,
        goldens.count,
        goldens.tolerance,
    )
    .map_err(|e| anyhow::anyhow!("cannot compute goldens: {e}"))?;
    let mut text = text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&golden::to_toml(&computed));
    // What devices will parse: check it here, where the operator can still fix it.
    ModelManifest::parse(&text, manifest_path).context("the manifest with goldens")?;
    Ok(text)
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (secret, public) = (out.join("release.key"), out.join("release.pub"));
    for path in [&secret, &public] {
        if path.exists() {
            bail!(
                "{} exists; move it away first (keys are never overwritten)",
                path.display()
            );
        }
    }
    let key = SigningKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .with_context(|| format!("cannot create {}", secret.display()))?;
    std::io::Write::write_all(&mut file, format!("{}\n", key.to_text()).as_bytes())?;
    file.sync_all()?;
    std::fs::write(&public, format!("{}\n", key.public().to_text()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    println!(
        "release key {} written:\n  secret {} (keep it off devices and servers)\n  public {}",
        key.public().id(),
        secret.display(),
        public.display()
    );
    Ok(())
}

fn sign(
    model: &std::path::Path,
    key: &std::path::Path,
    what: Release,
    manifest: Option<PathBuf>,
    goldens: &Goldens<'_>,
) -> anyhow::Result<()> {
    let key_text =
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
    let key = SigningKey::from_text(&key_text).with_context(|| key.display().to_string())?;
    let bytes = read_bounded(model, tinylcm::model::MAX_MODEL_BYTES)
        .with_context(|| format!("cannot read {}", model.display()))?;
    // The walk the device runs before LiteRT sees the file: a release no device can load is
    // refused here, where the operator can still fix it, not on the fleet.
    if let Err(reason) = tinylcm_protocol::tflite::verify_tflite(&bytes) {
        bail!(
            "{} is not a well-formed TFLite model ({reason}); refusing to sign it (sign the \
             .tflite file your converter wrote)",
            model.display()
        );
    }
    let manifest_path = manifest.unwrap_or_else(|| model.with_extension("toml"));
    let model_manifest = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "cannot read the model manifest {} (pass --manifest)",
            manifest_path.display()
        )
    })?;
    let model_manifest = with_goldens(model_manifest, bytes.clone(), &manifest_path, goldens)?;
    let release = ReleaseManifest {
        format: FORMAT,
        name: what.name,
        version: what.version,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
        model_manifest,
        created_unix_ms: tinylcm::utc::now_unix_ms(),
        notes: what.notes,
        epoch: what.epoch,
        compatible: what.compatible,
    };
    let signed = key.sign(&release)?;
    let mut out = model.as_os_str().to_owned();
    out.push(".release.json");
    let out = PathBuf::from(out);
    std::fs::write(&out, serde_json::to_vec_pretty(&signed)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{} {} (epoch {}, {}) signed with key {}: {}",
        release.name,
        release.version,
        release.epoch,
        release
            .compatible
            .as_deref()
            .map_or("not bound to a compatible".to_string(), |c| format!(
                "for {c}"
            )),
        signed.key_id,
        out.display()
    );
    Ok(())
}
