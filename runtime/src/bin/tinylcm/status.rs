//! `tinylcm status`: what the device is doing, or, when the service is not running, what
//! its state database holds.
//!
//! The running service holds the database (redb lets one process open it), so the live
//! figures come from the status file it rewrites every interval (`[status]`). A report is
//! trusted as live when it says it is running, is younger than three intervals and its
//! process exists; otherwise the database is opened and summarised, and a stale report is
//! still shown (labelled) because its last figures are often what a user is after.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;
use tinylcm::config::Config;
use tinylcm::state::{SnapshotInfo, StateConfig, StateError, Store};
use tinylcm::status::{StatusConfig, StatusError, StatusReport, StoreView};

/// Events shown from the log.
const EVENTS_SHOWN: usize = 20;
/// A report older than this many intervals is stale.
const STALE_INTERVALS: f64 = 3.0;

/// Options of `tinylcm status`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub place: StatePlace,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// Where the service keeps its state: `--config` and/or `--state`, shared with `snapshot`.
#[derive(clap::Args)]
pub struct StatePlace {
    /// The service's configuration file (its `[state]` and `[status]` are used).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// A state folder as `demo --state DIR` makes it: DIR/state.redb, DIR/snapshots and
    /// DIR/status.json (overrides the configuration's paths).
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
}

impl StatePlace {
    /// The configuration with the state folder applied.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.state {
            tinylcm::assemble::state_in(&mut config, dir);
        }
        Ok(config)
    }
}

/// Is the service running, judging by its status file?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// A fresh report from a live process.
    Running,
    /// The process lives but has not reported for more than three intervals.
    Stalled,
    /// The last report says it stopped, or its process is gone.
    Stopped,
    /// No report to judge by.
    Unknown,
}

/// The status file as read.
#[derive(Debug, Serialize)]
pub struct FileView {
    /// The file.
    pub path: PathBuf,
    /// Seconds since it was written.
    pub age_s: f64,
    /// Fresh and from a live process.
    pub fresh: bool,
    /// The report.
    pub report: StatusReport,
}

/// One snapshot, for JSON.
#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: u32,
    pub created_unix_ms: u64,
}

impl From<&SnapshotInfo> for SnapshotView {
    fn from(s: &SnapshotInfo) -> Self {
        SnapshotView {
            id: s.id.clone(),
            path: s.path.clone(),
            bytes: s.bytes,
            schema_version: s.schema_version,
            created_unix_ms: s.created_unix_ms,
        }
    }
}

/// Everything `status` found: the `--json` document.
#[derive(Debug, Serialize)]
pub struct Found {
    /// The service, judging by the status file.
    pub service: Service,
    /// The status file, when readable.
    pub status_file: Option<FileView>,
    /// The state database, when it was opened.
    pub store: Option<StoreView>,
    /// The snapshots.
    pub snapshots: Vec<SnapshotView>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// Why the database was not shown.
enum StoreOutcome {
    Shown(StoreView),
    /// A fresh report exists: the service holds the database.
    Skipped,
    Missing,
    Locked,
    Failed(StateError),
}

/// Run `tinylcm status`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.place.config()?;
    let mut notes = Vec::new();
    let now = tinylcm::autonomy::event::now_unix_ms();
    let (service, status_file) = read_status_file(&config, now, &mut notes);
    // Why the status file could not be used, for the error when nothing else is there.
    let file_notes = notes.len();
    let outcome = if service == Service::Running {
        StoreOutcome::Skipped
    } else {
        inspect_store(&config.state)
    };
    let snapshots = match config.state.snapshots().and_then(|s| s.list()) {
        Ok(list) => list.iter().map(SnapshotView::from).collect(),
        Err(e) => {
            notes.push(format!("cannot list snapshots: {e}"));
            Vec::new()
        }
    };
    let db = config.state.path.display();
    let store = match outcome {
        StoreOutcome::Shown(view) => Some(view),
        StoreOutcome::Skipped => None,
        StoreOutcome::Missing => {
            notes.push(format!("no state database at {db}"));
            None
        }
        StoreOutcome::Locked => {
            if status_file.is_none() {
                bail!(
                    "the state database {db} is open in another process (the service is probably \
                     running) and there is no status report at {}. Fix: enable `[status]` in the \
                     service's configuration and restart it, or stop the service to inspect its \
                     database",
                    config.status.path.display()
                );
            }
            notes.push(format!(
                "the state database {db} is open in another process: showing the last status \
                 report only"
            ));
            None
        }
        StoreOutcome::Failed(e) => {
            if status_file.is_none() {
                return Err(e).context("cannot read the state database");
            }
            notes.push(format!("cannot read the state database: {e}"));
            None
        }
    };
    if status_file.is_none() && store.is_none() {
        let seen = notes[..file_notes]
            .iter()
            .map(|n| format!(" ({n})"))
            .collect::<String>();
        bail!(
            "nothing to show: no status report at {} and no state database at {db}{seen}. Fix: \
             start the service (`tinylcm run --config FILE`, or `systemctl start tinylcm`), or \
             pass the --config or --state it uses",
            config.status.path.display()
        );
    }
    let found = Found {
        service,
        status_file,
        store,
        snapshots,
        notes,
    };
    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&found).context("cannot encode the status as JSON")?;
        json.push('\n');
        json
    } else {
        crate::status_show::render(&found)
    };
    crate::status_show::emit(&text)
}

/// The status file and what it says about the service; problems go to `notes`.
fn read_status_file(
    config: &Config,
    now_unix_ms: u64,
    notes: &mut Vec<String>,
) -> (Service, Option<FileView>) {
    let path = &config.status.path;
    let report = match StatusReport::read(path) {
        Ok(r) => r,
        Err(StatusError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            if !config.status.enabled {
                notes.push("`status.enabled` is false: the service writes no status file".into());
            }
            return (Service::Unknown, None);
        }
        Err(e) => {
            notes.push(e.to_string());
            return (Service::Unknown, None);
        }
    };
    let age_s = report.age_ms(now_unix_ms) as f64 / 1000.0;
    let alive = process_alive(report.pid);
    // A report carrying a nonsensical interval is judged by the default one.
    let interval_s = Some(report.interval_s)
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or_else(|| StatusConfig::default().interval().as_secs_f64());
    let recent = age_s <= STALE_INTERVALS * interval_s;
    let service = match (report.running, alive, recent) {
        (true, true, true) => Service::Running,
        (true, true, false) => Service::Stalled,
        _ => Service::Stopped,
    };
    let file = FileView {
        path: path.clone(),
        age_s,
        fresh: service == Service::Running,
        report,
    };
    (service, Some(file))
}

/// Whether the process that wrote a report lives (assumed where `/proc` cannot tell; a
/// report naming this very process is an old one whose pid was reused).
fn process_alive(pid: u32) -> bool {
    pid != 0
        && pid != std::process::id()
        && tinylcm::status::system::process_alive(pid).unwrap_or(true)
}

/// Opens the configured database if it exists and summarises it.
fn inspect_store(state: &StateConfig) -> StoreOutcome {
    let path = &state.path;
    // Store::open creates a missing database: looking must not leave an empty one behind.
    if !path.is_file() {
        return StoreOutcome::Missing;
    }
    // Only reads happen; the writer starts and stops with nothing to commit.
    let store = match Store::open(path, state.policy()) {
        Ok(s) => s,
        Err(StateError::Locked { .. }) => return StoreOutcome::Locked,
        Err(e) => return StoreOutcome::Failed(e),
    };
    let view = StoreView::read(&store, EVENTS_SHOWN);
    let closed = store.close();
    match (view, closed) {
        (Ok(v), Ok(())) => StoreOutcome::Shown(v),
        (Err(e), _) | (Ok(_), Err(e)) => StoreOutcome::Failed(e),
    }
}
