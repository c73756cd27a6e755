//! The fleet logic of sphere-lite: enrollment, authentication, package ingest, listings, and
//! the Drift Hub (drift events, decisions, feedback).
//!
//! Why: this is the one place that decides what is allowed and in which order things become
//! durable; it sees only the [`Tracking`] and [`Blobs`] ports, so the same rules hold on the
//! embedded default and on MLflow + S3. It is synchronous (the ports are); the HTTP layer runs
//! it on the blocking pool.

mod admission;
mod auth;
mod credentials;
mod dashboard;
mod datahub;
#[doc(hidden)]
pub mod device_json;
mod drift;
mod drift_incident;
mod error;
mod fleet;
mod group_commit;
pub mod health;
mod ingest;
mod learning;
mod metrics;
mod process;
mod releases;
mod remote_config;
mod reported;
mod retention;
mod seen;
pub mod storage;

use std::sync::Arc;

pub use ingest::prepare_spool_dir;
pub use process::PROCESS_BATCH;

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::{EnrollRequest, EnrollResponse};

pub use credentials::{
    KeyView, MAX_EXPIRY_MS, Operator, SESSION_IDLE_MS, SESSION_LIFETIME_MS, TokenView,
    USE_RECORD_INTERVAL_MS, parse_lifetime,
};
pub use dashboard::{
    DriftTally, IMAGE_SCAN_PACKAGES, ImagePage, MAX_DASHBOARD_PAGE, PackagePage, SampleImage,
    TALLY_SCAN_CAP, TREND_HOURS, is_image_key, package_cursor, parse_package_cursor,
};
pub use datahub::{MAX_LOG_SCAN_BYTES, embedding_key};
pub use drift::quarantine_id;
pub use drift_incident::{
    INCIDENT_WINDOW_MS, IncidentKey, MAX_INCIDENT_SCAN, PROPOSED_CLASS_PREFIX, classes_of_keys,
    group_by_incident,
};
pub use error::DomainError;
pub use fleet::DeviceUpdate;
pub use learning::MAX_LEARNING_PAGE;
pub use metrics::{
    DEFAULT_SERIES_POINTS, MAX_SERIES_POINTS, MetricKeys, MetricPoint, MetricQuery, MetricSeries,
};
pub use releases::{ReleaseList, ReleaseSummary, release_key};
pub use remote_config::DEVICE_SCOPE;
pub use reported::Reported;
pub use retention::Pruned;
pub use tinylcm_protocol::device_json::metrics::valid_key as valid_metric_key;

use crate::ports::{Blobs, DeviceRecord, EnrollOutcome, PackageRecord, Tracking};
use crate::secret::{self, SecretKind};

/// Longest accepted device name or hardware description at enrollment, in bytes.
pub const MAX_LABEL_BYTES: usize = 200;

/// Largest package body the server takes by default (bytes); see [`Sphere::with_max_upload`].
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// One device as shown to operators (`GET /api/v2/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceSummary {
    /// Device id.
    pub device_id: String,
    /// Name given at enrollment.
    pub name: Option<String>,
    /// Hardware given at enrollment.
    pub hardware: Option<String>,
    /// Enrollment time (Unix ms).
    pub enrolled_unix_ms: u64,
    /// Last authenticated request (Unix ms).
    pub last_seen_unix_ms: u64,
    /// Distinct packages accepted.
    pub packages: u64,
}

/// Body of `GET /api/v2/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceList {
    /// All devices, ordered by id.
    pub devices: Vec<DeviceSummary>,
}

/// Refuse a device-supplied `field` longer than [`MAX_LABEL_BYTES`] or with control characters.
fn check_label(field: &str, value: Option<&str>) -> Result<(), DomainError> {
    match value {
        Some(v) if v.len() > MAX_LABEL_BYTES || v.chars().any(char::is_control) => {
            Err(DomainError::BadRequest {
                error: format!("`{field}` must be at most 200 printable characters"),
                fix: Some(format!("shorten `{field}` or leave it out")),
            })
        }
        _ => Ok(()),
    }
}

/// Something an open dashboard should show: sent on [`Sphere::subscribe`]'s channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Change {
    /// A package of `device` was processed (or failed for good): its files, drift events and
    /// counts may have changed.
    Package {
        /// The device.
        device: String,
    },
    /// Drift event `id` of `device` was decided.
    Decided {
        /// The event's server id.
        id: u64,
        /// The device.
        device: String,
    },
    /// `device` reported what became of feedback items (applied or refused).
    FeedbackResults {
        /// The device.
        device: String,
    },
}

/// How many changes a slow dashboard subscriber may fall behind before it is told it lagged
/// (it then reloads everything instead of applying each change).
pub const CHANGE_BUFFER: usize = 64;

/// The fleet service over a tracking store and a blob store.
pub struct Sphere {
    tracking: Arc<dyn Tracking>,
    blobs: Arc<dyn Blobs>,
    max_upload_bytes: u64,
    /// Where upload bodies are spooled (see [`prepare_spool_dir`]).
    spool_dir: std::path::PathBuf,
    /// Claims on package ids in upload and the devices' stored-bytes bounds: two concurrent
    /// uploads of the same package cannot overwrite each other's raw blob after one was
    /// recorded, and the quota stays exact.
    admission: admission::Admission,
    /// Accepted uploads waiting for their shared durable commit.
    accepted: ingest::AcceptGroup,
    /// When an upload was last accepted: background processing waits for a storm to pass.
    uploads: process::UploadActivity,
    /// Live changes for dashboards (bounded; nobody listening is fine).
    changes: tokio::sync::broadcast::Sender<Change>,
    /// Set once the server shuts down, so open live streams end and do not hold it up.
    live_closed: tokio::sync::watch::Sender<bool>,
    /// Keys whose signatures a published release must carry (none: publishing is refused).
    release_keys: Vec<tinylcm_protocol::release::PublicKey>,
    /// When this process last wrote a token's use or a session's activity.
    use_throttle: credentials::UseThrottle,
    /// Devices' last-seen times, fresh in memory and written at most once per interval.
    seen: seen::SeenThrottle,
    /// Retention and quota of stored packages (`[storage]`).
    storage: storage::StorageSettings,
}

pub use tinylcm_protocol::time::now_unix_ms;

impl Sphere {
    /// A service over `tracking` and `blobs` with the default upload cap.
    pub fn new(tracking: Arc<dyn Tracking>, blobs: Arc<dyn Blobs>) -> Self {
        Sphere {
            tracking,
            blobs,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            spool_dir: std::env::temp_dir(),
            admission: Default::default(),
            accepted: Default::default(),
            uploads: Default::default(),
            changes: tokio::sync::broadcast::channel(CHANGE_BUFFER).0,
            live_closed: tokio::sync::watch::channel(false).0,
            release_keys: Vec::new(),
            use_throttle: Default::default(),
            seen: Default::default(),
            storage: Default::default(),
        }
    }

    /// Accept model releases signed by one of `keys`.
    pub fn with_release_keys(mut self, keys: Vec<tinylcm_protocol::release::PublicKey>) -> Self {
        self.release_keys = keys;
        self
    }

    /// Watches for [`Sphere::close_live`]: it turns `true` at shutdown, and live streams end.
    pub fn live_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.live_closed.subscribe()
    }

    /// End every live stream (at shutdown; a graceful shutdown waits for open requests).
    pub fn close_live(&self) {
        self.live_closed.send_replace(true);
    }

    /// Live changes (packages processed, drift events decided) from now on. A receiver that
    /// falls more than [`CHANGE_BUFFER`] behind gets `Lagged` and should reload.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Tell subscribers about `change` (no subscribers is not an error).
    fn notify(&self, change: Change) {
        let _ = self.changes.send(change);
    }

    /// Spool upload bodies in `dir` (default: the system's temporary folder).
    pub fn with_spool_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.spool_dir = dir;
        self
    }

    /// Set the hard cap on package bodies (bytes).
    pub fn with_max_upload(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// The hard cap on package bodies (bytes).
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    /// Trade an enrollment key for a new device id and device token.
    pub fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, DomainError> {
        check_label("name", request.name.as_deref())?;
        check_label("hardware", request.hardware.as_deref())?;
        let id_bytes: [u8; 8] = secret::random_bytes()?;
        let device_id = format!(
            "dev-{}",
            id_bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        debug_assert!(tinylcm_protocol::ids::valid_device_id(&device_id));
        let token = secret::generate(SecretKind::DeviceToken)?;
        let now = now_unix_ms();
        let record = DeviceRecord {
            device_id: device_id.clone(),
            name: request.name.clone(),
            hardware: request.hardware.clone(),
            token_hash: secret::hash(&token),
            enrolled_unix_ms: now,
            last_seen_unix_ms: now,
            packages: 0,
        };
        match self
            .tracking
            .enroll(secret::hash(&request.enrollment_key), &record, now)?
        {
            EnrollOutcome::Enrolled => {
                tracing::info!(device = %device_id, name = ?request.name, "device enrolled");
                self.deliver_config_logged(&device_id);
                Ok(EnrollResponse { device_id, token })
            }
            EnrollOutcome::UnknownKey => Err(DomainError::Unauthorized {
                error: "unknown enrollment key".into(),
                fix: Some(
                    "ask the operator for a key (`sphere-lite enrollment-key create`) and copy it exactly"
                        .into(),
                ),
            }),
            EnrollOutcome::KeyUsedUp => Err(DomainError::Forbidden {
                error: "this enrollment key has been used up".into(),
                fix: Some("ask the operator for a new enrollment key".into()),
            }),
            EnrollOutcome::KeyExpired => Err(DomainError::Forbidden {
                error: "this enrollment key has expired".into(),
                fix: Some("ask the operator for a new enrollment key".into()),
            }),
            EnrollOutcome::KeyRevoked => Err(DomainError::Forbidden {
                error: "this enrollment key was revoked".into(),
                fix: Some("ask the operator for a new enrollment key".into()),
            }),
        }
    }

    /// Register a device under an id the operator chooses (for devices that cannot enroll
    /// themselves, e.g. original TinyLCM Python clients, whose `device_id` is fixed in their
    /// configuration); returns its token (shown once). Goes through a single-use enrollment
    /// key, so both tracking adapters keep one code path for creating devices.
    pub fn add_device(
        &self,
        device_id: &str,
        name: Option<&str>,
    ) -> Result<EnrollResponse, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Err(DomainError::BadRequest {
                error: format!("invalid device id {device_id:?}"),
                fix: Some("use 1 to 64 characters of A-Z a-z 0-9 _ -".into()),
            });
        }
        check_label("name", name)?;
        if self.tracking.device(device_id)?.is_some() {
            return Err(DomainError::Exists {
                error: format!("device {device_id} exists already"),
                fix: Some("choose another id, or rotate the existing device's token".into()),
            });
        }
        let key_hash = self.internal_key(device_id)?;
        let token = secret::generate(SecretKind::DeviceToken)?;
        let now = now_unix_ms();
        let record = DeviceRecord {
            device_id: device_id.to_owned(),
            name: name.map(str::to_owned),
            hardware: None,
            token_hash: secret::hash(&token),
            enrolled_unix_ms: now,
            last_seen_unix_ms: now,
            packages: 0,
        };
        match self.tracking.enroll(key_hash, &record, now)? {
            EnrollOutcome::Enrolled => {
                tracing::info!(device = %device_id, ?name, "device added by an operator");
                self.deliver_config_logged(device_id);
                Ok(EnrollResponse {
                    device_id: device_id.to_owned(),
                    token,
                })
            }
            other => Err(DomainError::Store(crate::ports::StoreError::new(
                "tracking",
                format!("a fresh single-use key was refused: {other:?}"),
            ))),
        }
    }

    /// All devices with last-seen time and package count.
    pub fn list_devices(&self) -> Result<DeviceList, DomainError> {
        let devices = self
            .tracking
            .devices()?
            .into_iter()
            .map(|d| self.summary(d))
            .collect();
        Ok(DeviceList { devices })
    }

    /// Whether both stores answer: a lookup of a device and a blob that do not exist (cheap on
    /// every adapter, and it goes all the way to MLflow / S3 when those are configured).
    pub fn check_ready(&self) -> Result<(), DomainError> {
        self.tracking.device("readiness-probe")?;
        let probe = crate::ports::BlobKey::new("readiness/probe")
            .map_err(|e| crate::ports::StoreError::new("blobs", e))?;
        self.blobs.get(&probe)?;
        Ok(())
    }

    /// Fleet figures for monitoring: (devices, accepted packages not processed yet).
    pub fn fleet_gauges(&self) -> Result<(usize, usize), DomainError> {
        Ok((self.tracking.device_count()?, self.pending_count()?))
    }

    /// The record of one package (accepted, processed, failed, problems), if it exists.
    pub fn package_record(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, DomainError> {
        Ok(self.tracking.package(device_id, package_id)?)
    }
}
