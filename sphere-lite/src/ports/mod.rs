//! The two ports of sphere-lite: `Tracking` (who exists, what arrived) and `Blobs` (the bytes).
//!
//! Why: sphere-lite runs the same domain logic on an embedded default
//! (redb + a local directory) and on MLflow + S3 with no local state. The domain only sees
//! these traits; each method documents what it maps to in the MLflow / S3 adapters
//! (`adapters::mlflow` has the full layout and its guarantees under several replicas).
//!
//! The traits are synchronous: the embedded adapters are blocking (redb, file system), and the
//! HTTP layer calls the domain from `spawn_blocking`. A remote adapter can use a blocking client.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use tinylcm_protocol::api::{ConfigDelivery, ConfigLayer};
use tinylcm_protocol::api::{DriftEventStatus, DriftEventView};
use tinylcm_protocol::datahub::PredictionView;

mod access;
mod config;
mod devices;
mod drift;
mod learning;
mod metrics;
mod packages;
mod predictions;
mod releases;
mod sessions;

pub use access::AccessStore;
pub use config::ConfigStore;
pub use devices::DeviceStore;
pub use drift::DriftStore;
pub use learning::{ClassRename, LearningStore};
pub use metrics::MetricStore;
pub use packages::{PackageStore, ProcessedPackage};
pub use predictions::PredictionStore;
pub use releases::ReleaseStore;
pub use sessions::SessionStore;

/// The traits [`Tracking`] is made of, unnamed: `use crate::ports::prelude::*` lets code call
/// any tracking method on a `dyn Tracking` without naming the part it belongs to.
pub mod prelude {
    pub use super::{
        AccessStore as _, ConfigStore as _, DeviceStore as _, DriftStore as _, LearningStore as _,
        MetricStore as _, PackageStore as _, PredictionStore as _, ReleaseStore as _,
        SessionStore as _,
    };
}

/// A failure inside an adapter (storage unreachable, corrupt record, I/O error).
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct StoreError {
    /// Which adapter failed, e.g. `redb` or `blobs`.
    pub backend: &'static str,
    /// What failed, without secrets.
    pub message: String,
}

impl StoreError {
    /// An error of `backend` with `message`.
    pub fn new(backend: &'static str, message: impl fmt::Display) -> Self {
        StoreError {
            backend,
            message: message.to_string(),
        }
    }
}

/// SHA-256 of a secret (token or enrollment key). Only these are stored, never the secret.
pub type SecretHash = [u8; 32];

/// A device as tracked by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Server-assigned device id (passes `tinylcm_protocol::ids::valid_device_id`).
    pub device_id: String,
    /// Optional human name given at enrollment.
    pub name: Option<String>,
    /// Optional hardware description given at enrollment.
    pub hardware: Option<String>,
    /// SHA-256 of the device's bearer token.
    pub token_hash: SecretHash,
    /// When the device enrolled (Unix ms).
    pub enrolled_unix_ms: u64,
    /// Last authenticated request (Unix ms).
    pub last_seen_unix_ms: u64,
    /// Number of distinct packages accepted from this device.
    pub packages: u64,
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    /// A device, by id: may only write as itself.
    Device(String),
    /// An operator, by name: may read the fleet.
    Operator(String),
}

/// Result of trying to enroll with an enrollment key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// The key was valid; the device and its token were stored, one use of the key consumed.
    Enrolled,
    /// No such key.
    UnknownKey,
    /// The key exists but all its uses are spent.
    KeyUsedUp,
    /// The key exists but its expiry has passed.
    KeyExpired,
    /// The key was revoked by an operator.
    KeyRevoked,
}

/// What an operator token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything an operator can do (the only role before roles existed).
    #[default]
    Admin,
    /// The dashboard's pages, the API's GET routes and the Prometheus endpoint; no writes.
    ReadOnly,
}

impl Role {
    /// `admin` or `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }
}

/// An operator token as stored (only its hash, never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorToken {
    /// Public id (`tok-` + 12 hex, derived from the hash): what `token list` shows and
    /// `token revoke` takes.
    pub id: String,
    /// The operator's name (recorded as `decided_by`, `uploaded_by`, ...).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// SHA-256 of the token.
    pub token_hash: SecretHash,
    /// When it was created (Unix ms; 0 for a token stored before records had times).
    pub created_unix_ms: u64,
    /// When it stops working (Unix ms), if ever.
    pub expires_unix_ms: Option<u64>,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_unix_ms: Option<u64>,
    /// Last authenticated use (Unix ms, recorded at most once a minute), if any.
    pub last_used_unix_ms: Option<u64>,
}

impl OperatorToken {
    /// Whether the token authenticates at `now_unix_ms` (not revoked, not expired).
    pub fn active(&self, now_unix_ms: u64) -> bool {
        self.revoked_unix_ms.is_none() && self.expires_unix_ms.is_none_or(|t| now_unix_ms < t)
    }
}

/// An enrollment key as stored (only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentKey {
    /// Public id (`key-` + 12 hex, derived from the hash).
    pub id: String,
    /// What it is for (free text), if given.
    pub name: Option<String>,
    /// SHA-256 of the key.
    pub key_hash: SecretHash,
    /// Enrollments left (`None`: no count, until it expires or is revoked).
    pub remaining: Option<u32>,
    /// Enrollments made with it.
    pub used: u64,
    /// When it was created (Unix ms; 0 for a key stored before records had times).
    pub created_unix_ms: u64,
    /// When it stops working (Unix ms), if ever.
    pub expires_unix_ms: Option<u64>,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_unix_ms: Option<u64>,
}

impl EnrollmentKey {
    /// Why the key cannot enroll a device at `now_unix_ms`, or `None` if it can.
    pub fn refusal(&self, now_unix_ms: u64) -> Option<EnrollOutcome> {
        if self.revoked_unix_ms.is_some() {
            Some(EnrollOutcome::KeyRevoked)
        } else if self.expires_unix_ms.is_some_and(|t| now_unix_ms >= t) {
            Some(EnrollOutcome::KeyExpired)
        } else if self.remaining == Some(0) {
            Some(EnrollOutcome::KeyUsedUp)
        } else {
            None
        }
    }
}

/// A dashboard session (the browser holds the random session id; only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// SHA-256 of the session id.
    pub session_hash: SecretHash,
    /// SHA-256 of the operator token that logged in: the session lives only as long as it.
    pub token_hash: SecretHash,
    /// When the login happened (Unix ms).
    pub created_unix_ms: u64,
    /// When it ends whatever happens (Unix ms).
    pub expires_unix_ms: u64,
    /// Last request seen (Unix ms, recorded at most once a minute): the idle timeout counts
    /// from here.
    pub last_active_unix_ms: u64,
}

/// A package the server has accepted (its raw TAR is stored as a blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// The device that sent it.
    pub device_id: String,
    /// The package id from its manifest.
    pub package_id: String,
    /// Blob key of the raw TAR (`incoming/<device>/<package>.tar`).
    pub raw_key: String,
    /// When it was accepted (Unix ms).
    pub accepted_unix_ms: u64,
    /// When processing finished (Unix ms), if it has.
    pub processed_unix_ms: Option<u64>,
    /// Why processing failed for good, if it did (the raw TAR is kept for inspection).
    pub failed: Option<String>,
    /// Problems with parts of a package that was otherwise processed (e.g. a malformed
    /// `drift-events` member): the rest of the package is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Result of recording an accepted package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time this (device, package id) was seen.
    New,
    /// Already recorded earlier: the upload is a duplicate.
    AlreadyKnown,
}

/// Devices, packages, tokens, drift events and feedback queues: the tracking store.
///
/// Embedded: one redb file. MLflow (`<ns>` = the namespace): devices are experiments
/// `<ns>/device/<id>` with tags for name, hardware and token hash; packages are runs of
/// `<ns>/packages` tagged with device and package id (idempotent via `runs/search` on those
/// tags); operator tokens are tags and enrollment keys runs of `<ns>/auth` (hashes only).
///
/// The methods are grouped by aggregate into the traits it is made of (one file each in
/// `ports/` and in each adapter); code that calls them imports [`prelude`].
pub trait Tracking:
    AccessStore
    + SessionStore
    + DeviceStore
    + PackageStore
    + DriftStore
    + LearningStore
    + PredictionStore
    + ReleaseStore
    + ConfigStore
    + MetricStore
    + Send
    + Sync
{
}

/// Every store that has all the parts is a [`Tracking`] store.
impl<T> Tracking for T where
    T: AccessStore
        + SessionStore
        + DeviceStore
        + PackageStore
        + DriftStore
        + LearningStore
        + PredictionStore
        + ReleaseStore
        + ConfigStore
        + MetricStore
        + ?Sized
{
}

/// What the operator decides about a device (the [`DeviceRecord`] is what the device said
/// about itself at enrollment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct DeviceSettings {
    /// A name that replaces the one given at enrollment.
    pub name: Option<String>,
    /// The device group (rollouts target groups).
    pub group: Option<String>,
    /// Free tags for filtering.
    pub tags: Vec<String>,
    /// Where the device is, when known.
    pub location: Option<Location>,
    /// The operator's notes (free text: where it hangs, who to call).
    pub notes: Option<String>,
    /// Taken out of service: its token is revoked and it is hidden from rollouts.
    pub decommissioned: bool,
    /// The device's own configuration layer (scope `"device"`).
    pub config: Option<ConfigLayer>,
    /// The effective configuration queued for it last.
    pub config_delivered: Option<ConfigDelivery>,
    /// The remote configuration the device refused last (that revision is never delivered to
    /// it again). Kept with the settings, so both stores hold it without a port of its own.
    pub config_refused: Option<tinylcm_protocol::api::ConfigRefused>,
}

/// A position on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Location {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Accuracy radius in metres, when known.
    #[serde(default)]
    pub accuracy_m: Option<f64>,
}

/// A model release the server holds (its model file is the blob at `blob_key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// Model name (an id).
    pub name: String,
    /// Version (an id).
    pub version: String,
    /// The signed release exactly as uploaded (devices verify it themselves).
    pub signed: tinylcm_protocol::release::SignedRelease,
    /// Model file size in bytes.
    pub size: u64,
    /// Model file SHA-256 (hex).
    pub sha256: String,
    /// Blob key of the model file.
    pub blob_key: String,
    /// The operator who uploaded it.
    pub uploaded_by: String,
    /// When (Unix ms).
    pub uploaded_unix_ms: u64,
}

/// Which release the devices of a group should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rollout {
    /// A device group, or [`ALL_DEVICES`].
    pub group: String,
    /// Release name.
    pub name: String,
    /// Release version.
    pub version: String,
    /// Share of the group (1..=100) that gets it; the others keep `previous`.
    pub percent: u8,
    /// What the rest of the group runs during a canary: (name, version) of the last release
    /// the group had at 100 %.
    pub previous: Option<(String, String)>,
    /// The operator who set it.
    pub by: String,
    /// When (Unix ms).
    pub unix_ms: u64,
}

/// The group name that targets every device without a group rollout of its own.
pub const ALL_DEVICES: &str = "all";

/// Which drift events a listing wants (all set fields must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftEventFilter {
    /// Reporting device.
    pub device: Option<String>,
    /// Detector name.
    pub detector: Option<String>,
    /// Review status.
    pub status: Option<DriftEventStatus>,
    /// Device time at or after (Unix ms).
    pub since: Option<u64>,
    /// Device time before (Unix ms).
    pub until: Option<u64>,
}

impl DriftEventFilter {
    /// Whether `event` matches.
    pub fn matches(&self, event: &DriftEventView) -> bool {
        self.device.as_deref().is_none_or(|d| d == event.device_id)
            && self.detector.as_deref().is_none_or(|d| d == event.detector)
            && self.status.is_none_or(|s| s == event.status)
            && self.since.is_none_or(|t| event.unix_ms >= t)
            && self.until.is_none_or(|t| event.unix_ms < t)
    }
}

/// Which prediction samples a listing wants (all set fields must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PredictionFilter {
    /// Sending device.
    pub device: Option<String>,
    /// Predicted class.
    pub class: Option<String>,
    /// Device time at or after (Unix ms).
    pub since: Option<u64>,
    /// Device time before (Unix ms).
    pub until: Option<u64>,
}

impl PredictionFilter {
    /// Whether `sample` matches.
    pub fn matches(&self, sample: &PredictionView) -> bool {
        self.device.as_deref().is_none_or(|d| d == sample.device_id)
            && self.class.as_deref().is_none_or(|c| c == sample.class)
            && self.since.is_none_or(|t| sample.unix_ms >= t)
            && self.until.is_none_or(|t| sample.unix_ms < t)
    }
}

/// A position in the prediction listing, which is ordered newest first: by device time, then
/// by blob key, both descending. Written `<unix_ms>:<key>` ([`PredictionView::cursor`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PredictionCursor {
    /// Device time of the sample (Unix ms).
    pub unix_ms: u64,
    /// Its blob key.
    pub key: String,
}

impl PredictionCursor {
    /// The cursor of `sample`.
    pub fn of(sample: &PredictionView) -> Self {
        PredictionCursor {
            unix_ms: sample.unix_ms,
            key: sample.key.clone(),
        }
    }

    /// Parse `<unix_ms>:<key>`; `None` unless the key is a valid blob key.
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, key) = text.split_once(':')?;
        if ms.is_empty() || ms.len() > 20 || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        BlobKey::new(key).ok()?;
        Some(PredictionCursor {
            unix_ms: ms.parse().ok()?,
            key: key.to_owned(),
        })
    }

    /// Whether `sample` comes after this position in the listing (is older).
    pub fn precedes(&self, sample: &PredictionView) -> bool {
        (sample.unix_ms, sample.key.as_str()) < (self.unix_ms, self.key.as_str())
    }
}

/// An operator's decision on a pending drift event, with its audit fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `Validated` or `Rejected`.
    pub status: DriftEventStatus,
    /// The label given (validate only).
    pub label: Option<String>,
    /// The note given.
    pub note: Option<String>,
    /// The operator's name (from their token).
    pub by: String,
    /// When (Unix ms); also the feedback items' creation time.
    pub unix_ms: u64,
}

/// Result of [`DriftStore::decide_drift_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum DecideOutcome {
    /// Decided now; the event as stored.
    Decided(DriftEventView),
    /// It was decided before; the event as it stands (unchanged).
    AlreadyDecided(DriftEventView),
    /// No event with this id.
    NotFound,
}

/// A validated blob key: relative, `[A-Za-z0-9._-/]`, no empty, `.` or `..` segments, no
/// segment starting with `.` (reserved for temporary files), at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey(String);

// The rule itself is the protocol crate's, so the parsers of device JSON there (fuzzed
// without the server) turn file names into keys exactly as the stores accept them.
pub use tinylcm_protocol::blob_key::{InvalidKey, MAX_KEY_LEN};

impl BlobKey {
    /// Validate `key` ([`tinylcm_protocol::blob_key::check`]).
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        tinylcm_protocol::blob_key::check(&key)?;
        Ok(BlobKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Byte objects by key: the blob store.
///
/// Embedded: files under `<data>/blobs/`. S3 (`minio` crate): objects in one private bucket.
pub trait Blobs: Send + Sync {
    /// Store `bytes` under `key` atomically (readers see the old object or the new one, never half).
    /// S3: `PutObject`.
    fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError>;

    /// The object under `key`, if any.
    /// S3: `GetObject` (404 → `None`).
    fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// All keys starting with `prefix` (a key prefix ending in `/`, or empty for all), sorted.
    /// S3: `ListObjectsV2` with `prefix`, following continuation tokens.
    fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError>;

    /// Remove the object; removing a missing object is not an error.
    /// S3: `DeleteObject`.
    fn delete(&self, key: &BlobKey) -> Result<(), StoreError>;

    /// As [`Blobs::list`], with each object's size in bytes (what retention and quotas count).
    /// The default reads every object: adapters override it.
    /// S3: `ListObjectsV2` (it gives the sizes).
    fn list_sizes(&self, prefix: &str) -> Result<Vec<(BlobKey, u64)>, StoreError> {
        let mut out = Vec::new();
        for key in self.list(prefix)? {
            if let Some(bytes) = self.get(&key)? {
                out.push((key, bytes.len() as u64));
            }
        }
        Ok(out)
    }

    /// A URL that lets anyone holding it download the object with a plain HTTP GET until
    /// `expiry` has passed, or `None` if this store cannot hand out such URLs (the directory
    /// adapter: there the server itself must serve the bytes). Does not check that the object
    /// exists. S3: a SigV4 presigned `GetObject` URL (at most 7 days).
    fn presigned_get(&self, key: &BlobKey, expiry: Duration) -> Result<Option<String>, StoreError>;

    /// As [`Blobs::put`], except that the object may be lost in a power cut (or a crash of the
    /// machine) until [`Blobs::sync`] has returned for it: lets a caller make many objects
    /// durable at once. The default is [`Blobs::put`] (durable when it returns).
    fn put_unsynced(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
        self.put(key, bytes)
    }

    /// As [`Blobs::put_file`], durable only after [`Blobs::sync`] (see
    /// [`Blobs::put_unsynced`]). The default is [`Blobs::put_file`].
    fn put_file_unsynced(&self, key: &BlobKey, path: &std::path::Path) -> Result<(), StoreError> {
        self.put_file(key, path)
    }

    /// Make the objects `keys` stored with [`Blobs::put_unsynced`] or
    /// [`Blobs::put_file_unsynced`] durable (they are once this returns `Ok`). The default does
    /// nothing: its unsynced puts are durable already.
    fn sync(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }

    /// Store the file at `path` under `key`, as [`Blobs::put`] does, without holding it in
    /// memory (the file is read as it is written; it is left in place). The default reads the
    /// file whole: adapters override it.
    /// S3: `PutObject` (multipart above its part size) streamed from the file.
    fn put_file(&self, key: &BlobKey, path: &std::path::Path) -> Result<(), StoreError> {
        let bytes = std::fs::read(path)
            .map_err(|e| StoreError::new("blobs", format!("read {}: {e}", path.display())))?;
        self.put(key, &bytes)
    }

    /// A stream of the object under `key` from byte `start`, `len` bytes of it (`None`: to the
    /// end), if the object exists; the caller checks `start` and `len` against the object's
    /// size. The default reads the object whole: adapters override it.
    /// S3: `GetObject` with a `Range` header, streamed.
    fn open(
        &self,
        key: &BlobKey,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<BlobStream>, StoreError> {
        Ok(self.get(key)?.map(|bytes| {
            let from = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let to = len.map_or(bytes.len(), |n| {
                from.saturating_add(usize::try_from(n).unwrap_or(usize::MAX))
                    .min(bytes.len())
            });
            let part = bytes[from..to].to_vec();
            Box::new(std::io::Cursor::new(part)) as BlobStream
        }))
    }
}

/// The bytes of an object, read as they arrive (see [`Blobs::open`]).
pub type BlobStream = Box<dyn std::io::Read + Send>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for good in [
            "a",
            "incoming/dev-1/p.tar",
            "devices/d/packages/p/metrics.json",
            "A_b-c.9",
        ] {
            assert!(BlobKey::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/",
            "../x",
            "a/../b",
            "./a",
            "a/.hidden",
            "a b",
            "a\\b",
            "ä",
            "a\0b",
        ] {
            assert!(BlobKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(BlobKey::new("a".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
