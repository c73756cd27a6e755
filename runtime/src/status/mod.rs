//! Operational status of a running `tinylcm`: what it runs, how fast, how sure, what the
//! autonomy layer sees, and how the device is doing (CPU, memory, temperature, disk).
//!
//! The state database can be open in one process only and the service holds it, so
//! another process (`tinylcm status`, a monitoring agent) cannot ask the database while the
//! service runs. The service therefore publishes a [`StatusReport`] to a small JSON file
//! (`[status] path`, default `/data/tinylcm/status.json`) every `interval-seconds`:
//!
//! ```text
//! inference thread ── StatusObserver::on_frame (counts; no I/O, no allocation)
//!        │ every interval: build a StatusReport, try_send (dropped and counted when busy)
//!        ▼
//! status writer thread ── sample /proc and /sys (system) ── write temp file ── rename
//! ```
//!
//! * [`system`]: optional system metrics parsed from Linux files.
//! * [`report`]: the versioned report and its JSON form.
//! * [`window`]: one interval's confidence statistics in fixed memory.
//! * [`observer`]: the pipeline observer and its writer thread.
//! * [`store_view`]: what a stopped device's state database holds, for `tinylcm status`.
//! * [`config`]: the `[status]` section.

pub mod config;
pub mod observer;
pub mod report;
pub mod store_view;
pub mod system;
pub mod window;

use std::path::{Path, PathBuf};

pub use config::StatusConfig;
pub use observer::{StatusObserver, StatusOptions};
pub use report::{
    AutonomyStatus, ClassCount, ConfidenceStats, KnnStatus, MAX_STATUS_BYTES, ModelInfo,
    OpenIncident, STATUS_FORMAT, StatusExtras, StatusReport, StoreFigures,
};
pub use store_view::{EventView, StoreView};
pub use system::{SystemMetrics, SystemSampler, Throttled};

/// What can go wrong writing or reading a status report.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The file system refused.
    #[error("{what} status file {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or its folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be turned into JSON (a bug: every field is plain data).
    #[error("cannot encode the status report: {0}")]
    Encode(#[source] serde_json::Error),
    /// The file is not a status report.
    #[error(
        "status file {path} is damaged ({reason}); a running service rewrites it every \
         interval, otherwise delete it"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The report has a layout this runtime does not read.
    #[error(
        "status file {path} has format {found}, this tinylcm reads format {supported}: read it \
         with the tinylcm that wrote it"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format version.
        found: u32,
        /// The version this runtime reads.
        supported: u32,
    },
    /// The writer thread could not start, or ended early.
    #[error("status writer thread: {0}")]
    Thread(String),
}

impl StatusError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        StatusError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) use crate::utc::now_unix_ms;
