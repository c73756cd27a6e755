//! `tinylcm snapshot list|create|restore|verify`: point-in-time copies of what the device
//! has learnt, for rolling back by hand (the runtime also takes them before adapting).
//!
//! `create` and `restore` need the database, which the running service holds: they refuse
//! with a clear message instead of waiting or touching it from the side. `list` and
//! `verify` read only the snapshot files and work while the service runs.

use anyhow::{Context, bail};
use tinylcm::config::Config;
use tinylcm::state::{StateError, Store};

use crate::status::{SnapshotView, StatePlace};
use crate::status_show::{emit, snapshot_table, utc};

/// Options of `tinylcm snapshot`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SnapshotCommand,
    #[command(flatten)]
    place: StatePlace,
}

#[derive(clap::Subcommand)]
enum SnapshotCommand {
    /// The snapshots, oldest first.
    List,
    /// Take a snapshot of the component states and counters now (the service must be stopped).
    Create,
    /// Replace every component state with snapshot ID's (verified first; the service must
    /// be stopped; counters are kept).
    Restore {
        /// The snapshot (see `tinylcm snapshot list`).
        id: String,
    },
    /// Check snapshot ID completely (size, checksum, versions) without using it.
    Verify {
        /// The snapshot (see `tinylcm snapshot list`).
        id: String,
    },
}

/// Run `tinylcm snapshot`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.place.config()?;
    let snapshots = config
        .state
        .snapshots()
        .context("cannot use the snapshots folder")?;
    let text = match args.command {
        SnapshotCommand::List => {
            let list = snapshots.list().context("cannot list the snapshots")?;
            if list.is_empty() {
                format!("no snapshots in {}", snapshots.dir().display())
            } else {
                let views: Vec<SnapshotView> = list.iter().map(SnapshotView::from).collect();
                format!(
                    "snapshots in {}:\n{}",
                    snapshots.dir().display(),
                    snapshot_table(&views)
                )
            }
        }
        SnapshotCommand::Verify { id } => {
            let info = snapshots.verify(&id)?;
            format!(
                "snapshot {} is intact: {} bytes, schema {}, taken {} ({})",
                info.id,
                info.bytes,
                info.schema_version,
                utc(info.created_unix_ms),
                info.path.display()
            )
        }
        SnapshotCommand::Create => {
            if !config.state.path.is_file() {
                bail!(
                    "no state database at {}: nothing to snapshot. Fix: pass the --config or \
                     --state the service uses",
                    config.state.path.display()
                );
            }
            let store = open(&config, "take a snapshot")?;
            let info = snapshots.create(&store)?;
            store.close()?;
            format!(
                "snapshot {} taken: {} bytes in {}",
                info.id,
                info.bytes,
                info.path.display()
            )
        }
        SnapshotCommand::Restore { id } => {
            // Verified before the database is opened, so a bad snapshot is reported as such
            // even while the service runs, and nothing is touched.
            snapshots.verify(&id)?;
            let created = !config.state.path.exists();
            let store = open(&config, "restore a snapshot")?;
            let info = snapshots.restore(&store, &id)?;
            store.close()?;
            format!(
                "restored snapshot {} (taken {}) into {}{}: component states replaced, \
                 counters kept",
                info.id,
                utc(info.created_unix_ms),
                config.state.path.display(),
                if created { " (a new database)" } else { "" }
            )
        }
    };
    emit(&format!("{text}\n"))
}

/// Opens the database, turning "another process holds it" into the instruction to stop it.
pub fn open(config: &Config, to: &str) -> anyhow::Result<Store> {
    match Store::open(&config.state.path, config.state.policy()) {
        Ok(store) => Ok(store),
        Err(StateError::Locked { path }) => bail!(
            "cannot {to}: the state database {} is open in another process (the service is \
             running). Fix: stop the service first (e.g. `systemctl stop tinylcm`), then run \
             this again; it was not changed",
            path.display()
        ),
        Err(e) => Err(e).context(format!("cannot {to}")),
    }
}
