//! `tinylcm enroll`: trade an enrollment key for this device's id and token on a sphere-lite
//! server, once, before (or instead of) placing a key file for the service.
//!
//! The credentials go where the sync client reads them (`<state folder>/sync/credentials.json`,
//! mode 0600); the key itself is not kept. The token is never printed.

use std::path::PathBuf;

use anyhow::{Context, bail};
use tinylcm::sync::{Credentials, credentials};

use crate::status::StatePlace;

/// Options of `tinylcm enroll`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    place: StatePlace,
    /// The server's base URL, e.g. https://sphere.example:8470 (default: `[sync] server`).
    #[arg(long)]
    server: Option<String>,
    /// The enrollment key (visible in the process list: prefer --key-file).
    #[arg(long, conflicts_with = "key_file")]
    key: Option<String>,
    /// A file holding the enrollment key (default: `[sync] enrollment-key-file`).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Enroll again even if the device has credentials already.
    #[arg(long)]
    force: bool,
}

/// Runs `tinylcm enroll`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.place.config()?;
    let state_dir = tinylcm::sync::SyncSetup::from_config(&config).state_dir;
    if !args.force {
        if let Some(c) = Credentials::load(&state_dir)? {
            bail!(
                "this device is enrolled already as {} with {}; pass --force to enroll again",
                c.device_id,
                c.server
            );
        }
    }
    let Some(server) = args.server.or_else(|| config.sync.server.clone()) else {
        bail!("no server: pass --server URL or set [sync] server in the configuration");
    };
    let mut sync = config.sync.clone();
    sync.server = Some(server.clone());
    sync.validate()?;
    let key = match (
        args.key,
        args.key_file.or(config.sync.enrollment_key_file.clone()),
    ) {
        (Some(k), _) => k,
        (None, Some(f)) => credentials::read_small(&f)
            .with_context(|| format!("reading the enrollment key from {}", f.display()))?,
        (None, None) => bail!("no enrollment key: pass --key KEY or --key-file FILE"),
    };
    let c = tinylcm::sync::enroll(&sync, &state_dir, &server, &key)?;
    println!(
        "enrolled as {} with {}; credentials in {}",
        c.device_id,
        c.server,
        credentials::credentials_path(&state_dir).display()
    );
    Ok(())
}
