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
use tinylcm_protocol::api::{
    DriftEventStatus, DriftEventView, FeedbackItem, FeedbackResult, FeedbackVerdict,
};
use tinylcm_protocol::datahub::PredictionView;

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
pub trait Tracking: Send + Sync {
    // --- Credentials: enrollment keys, operator tokens, dashboard sessions -------------------
    // Embedded: tables `enrollment_key_records`, `operator_tokens`, `sessions` (a database of
    // an older version is migrated when opened). MLflow: `adapters::mlflow::tokens`.

    /// Store a new enrollment key.
    /// MLflow: a run in `<ns>/auth` tagged `sphere.key_sha256`, `sphere.uses`, `sphere.key_id`,
    /// `sphere.expires_unix_ms`, `sphere.key_name`.
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError>;

    /// Every enrollment key (spent, expired and revoked ones too), oldest first.
    /// MLflow: `runs/search` of the key runs; uses counted from their `use.<i>` params.
    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError>;

    /// Revoke the key with public id `id` at `now_unix_ms`; false if there is no such key.
    /// A revoked key stays listed and never enrolls again.
    /// MLflow: run tag `sphere.revoked_unix_ms` on the key's run.
    fn revoke_enrollment_key(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError>;

    /// Atomically check the key at `now_unix_ms` (known, not revoked, not expired, a use left),
    /// consume one use and store `device` and its token.
    /// MLflow: claim a write-once param `use.<i>` on the key's run (exact across replicas),
    /// then `experiments/create` for the device and `runs/create` for its feedback queue.
    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now_unix_ms: u64,
    ) -> Result<EnrollOutcome, StoreError>;

    /// Store a new operator token.
    /// MLflow: tag `sphere.operator_token.<hash>` (the record as JSON) on `<ns>/auth`.
    fn add_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError>;

    /// The operator token with this hash (revoked and expired ones too), if any.
    /// MLflow: `<ns>/auth`'s tags (cached briefly; a revocation made by this process is seen
    /// at once, one made elsewhere within the cache time).
    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError>;

    /// Every operator token (revoked and expired ones too), oldest first.
    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError>;

    /// Revoke the operator token with public id `id` at `now_unix_ms` and end its dashboard
    /// sessions; false if there is no such token.
    /// MLflow: tag `sphere.operator_revoked.<hash>` on `<ns>/auth` (never overwritten by
    /// anything else, so no other write can undo it).
    fn revoke_operator_token(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError>;

    /// Record a use of the token with this hash at `now_unix_ms` (the caller throttles).
    /// MLflow: tag `sphere.operator_used.<hash>` on `<ns>/auth`.
    fn touch_operator_token(
        &self,
        token_hash: &SecretHash,
        now_unix_ms: u64,
    ) -> Result<(), StoreError>;

    /// Store a new dashboard session.
    /// MLflow: a run in `<ns>/auth` tagged `sphere.kind=session`, `sphere.session_sha256`, ...
    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session with this hash, if stored (expired ones too: the caller checks).
    /// MLflow: `runs/search` on `sphere.session_sha256`.
    fn session(&self, session_hash: &SecretHash) -> Result<Option<SessionRecord>, StoreError>;

    /// Record activity of a session at `now_unix_ms` (the caller throttles).
    fn touch_session(&self, session_hash: &SecretHash, now_unix_ms: u64) -> Result<(), StoreError>;

    /// Delete a session (logout, or found expired); deleting a missing one is not an error.
    /// MLflow: `runs/delete`.
    fn delete_session(&self, session_hash: &SecretHash) -> Result<(), StoreError>;

    /// Delete every session that ended by `now_unix_ms` (expired, or idle for `idle_ms`);
    /// returns how many.
    fn purge_sessions(&self, now_unix_ms: u64, idle_ms: u64) -> Result<usize, StoreError>;

    /// Who owns the token with this hash, if anyone (an operator token whatever its state:
    /// the caller checks it with [`Tracking::operator_token`]).
    /// MLflow: `<ns>/auth`'s tags (cached briefly), else `experiments/search` on the device
    /// experiments' `sphere.token_sha256` tag.
    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError>;

    /// One device by id.
    /// MLflow: `experiments/get-by-name` `<ns>/device/<id>`.
    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError>;

    /// All devices, ordered by id.
    /// MLflow: `experiments/search` with `name LIKE '<ns>/device/%'`, paginated.
    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;

    /// Update a device's last-seen time (never moves backwards).
    /// MLflow: `experiments/set-experiment-tag` `last_seen`.
    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError>;

    /// The record of package `package_id` of `device_id`, if accepted before.
    /// MLflow: `runs/search` in `<ns>/packages` on the device and package id tags.
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError>;

    /// Record an accepted package (idempotent on device + package id) and count it for the device.
    /// MLflow: `runs/create` (status `RUNNING` = not processed), searched before and after so
    /// a replica race keeps one canonical copy; the count is a device experiment tag.
    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError>;

    /// Mark a package processed (or failed for good with `failed`), with the `problems` found
    /// in parts of it.
    /// MLflow: `runs/update` status `FINISHED` / `FAILED`; problems as the run tag
    /// `sphere.problems` (JSON list).
    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError>;

    /// Accepted packages not yet processed, oldest first.
    /// MLflow: `runs/search` in `<ns>/packages` with `attributes.status = 'RUNNING'`.
    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError>;

    // --- Drift Hub -------------------------------------------------------------------------
    // MLflow: one experiment `<ns>/drift-events`; each event is a run tagged
    // `sphere.kind=drift-event`, `sphere.device`, `sphere.event_seq`, `sphere.detector_hex`,
    // `sphere.status`, with the report as the JSON tag `sphere.event` and the metrics
    // `sphere.id` (server id) and `sphere.unix_ms`; a decision is the write-once param
    // `sphere.decision`. Feedback items are write-once params `feedback.<id>` of the device's
    // `feedback-queue` run; the ack watermark is its metric `sphere.feedback_acked`; the
    // device's result of an item is the write-once param `result.<id>` of the same run.

    /// Store new drift events (their `id` is ignored and assigned here, increasing), skipping any
    /// whose (device, event_seq) is stored already; returns how many were new. Idempotent, so
    /// re-processing a package after a crash stores nothing twice.
    /// MLflow: `runs/search` on `sphere.device` + `sphere.event_seq`, then `runs/create` for
    /// the missing ones, with ids from the clock checked for uniqueness after writing.
    fn put_drift_events(&self, events: &[DriftEventView]) -> Result<usize, StoreError>;

    /// One drift event by server id, a decided one with its decision's feedback items and how
    /// far each got ([`DriftEventView::feedback`]: queued, delivered = at or below the
    /// device's ack watermark, applied / refused = the device's result).
    /// MLflow: `runs/search` with `metrics.sphere.id = <id>`; for a decided event also the
    /// device's queue run: its items whose idempotency key is `drift-event/<id>/<n>`, its ack
    /// watermark and its `result.<id>` params.
    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError>;

    /// Drift events matching `filter` with an id above `after`, ascending by id, at most
    /// `limit` (the caller caps it), decided ones with their feedback as in
    /// [`Tracking::drift_event`].
    /// MLflow: `runs/search` with the filter as tag/metric conditions (the detector through
    /// its hex tag), ordered by `metrics.sphere.id`, `max_results = limit`; the queue run of
    /// each device with a decided event on the page, read once per page.
    fn drift_events(
        &self,
        filter: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError>;

    /// Atomically move a *pending* event to `decision.status` with the audit fields, and queue
    /// `feedback` for its device in the same step (so a decision never exists without its
    /// feedback, nor twice). A decided event is left unchanged: `AlreadyDecided`.
    /// MLflow: the write-once param `sphere.decision` decides (exact across replicas), then
    /// `runs/set-tag sphere.status` and the feedback items (idempotent per event).
    fn decide_drift_event(
        &self,
        id: u64,
        decision: &Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError>;

    /// Queue `verdicts` for `device_id`, each with the next per-device id (1, 2, …).
    /// Returns the ids given.
    /// MLflow: each id claimed as the write-once param `feedback.<id>` of the device's queue run
    /// (unique and increasing across replicas).
    fn append_feedback(
        &self,
        device_id: &str,
        verdicts: &[FeedbackVerdict],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError>;

    /// Unacknowledged feedback of `device_id` with an id above `after`, ascending, at most
    /// `limit`.
    /// MLflow: the queue run's params above the larger of `after` and the ack watermark.
    fn feedback_after(
        &self,
        device_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError>;

    /// Record what `device_id` did with feedback items it was given: per item the first result
    /// stands (a repeat changes nothing); a result for an id never given to the device is
    /// skipped. Returns how many were recorded now.
    /// MLflow: each result claimed as the write-once param `result.<id>` of the device's queue
    /// run (`Taken` = reported before; exact across replicas).
    fn record_feedback_results(
        &self,
        device_id: &str,
        results: &[FeedbackResult],
    ) -> Result<usize, StoreError>;

    /// Acknowledge every item of `device_id` up to `up_to` (clamped to the last id given, never
    /// moving backwards); acknowledged items are never returned again. Returns the watermark.
    /// MLflow: metric `sphere.feedback_acked` logged with `step` = watermark (MLflow's latest
    /// value is the largest step: never backwards); acknowledged params stay but are skipped.
    fn ack_feedback(&self, device_id: &str, up_to: u64) -> Result<u64, StoreError>;

    // --- Data Hub --------------------------------------------------------------------------
    // MLflow: experiment `<ns>/predictions`, one run per prediction sample (tags
    // `sphere.device`, `sphere.package_id`, `sphere.class`, the sample as `sphere.prediction`;
    // metrics `sphere.unix_ms`, `sphere.confidence`). Logs and embeddings are blobs only.

    /// Index prediction samples; a sample whose blob key is indexed already is skipped
    /// (re-processing a package stores nothing twice). Returns how many were new.
    /// MLflow: `runs/search` on device + package, `runs/create` + `runs/log-batch` for the rest.
    fn put_predictions(&self, samples: &[PredictionView]) -> Result<usize, StoreError>;

    /// Prediction samples matching `filter`, newest first ([`PredictionCursor`] order),
    /// strictly after `after`, at most `limit` (the caller caps it).
    /// MLflow: `runs/search` ordered by `metrics.sphere.unix_ms DESC`; ties sorted here.
    fn predictions(
        &self,
        filter: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError>;

    // --- Fleet operations ----------------------------------------------------------------

    /// The operator's settings for `device_id` (default settings for a device that has none
    /// stored), or `None` for an unknown device.
    /// MLflow: device experiment tags `sphere.settings` (JSON).
    fn device_settings(&self, device_id: &str) -> Result<Option<DeviceSettings>, StoreError>;

    /// Replace the operator's settings of `device_id`; false for an unknown device.
    /// MLflow: `experiments/set-experiment-tag` `sphere.settings`.
    fn set_device_settings(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
    ) -> Result<bool, StoreError>;

    /// Replace the token of `device_id` with `new_hash`, or revoke it (`None`): the old token
    /// stops working in the same step. False for an unknown device.
    /// MLflow: device experiment tag `token_hash` (and the token index tag).
    fn replace_device_token(
        &self,
        device_id: &str,
        new_hash: Option<SecretHash>,
    ) -> Result<bool, StoreError>;

    // --- Model releases (OTA) -------------------------------------------------------------

    /// Record a verified release (its model blob stored before); idempotent on
    /// (name, version): a second record of the same pair is `AlreadyKnown` and changes nothing.
    /// MLflow: a run of `<ns>/releases` holds the record (tags); the release is also made a
    /// version of the registered model `<ns with / as .>.<name>` (once per run; a repeat of
    /// the publish completes a registration that failed).
    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError>;

    /// One release.
    /// MLflow: `runs/search` of `<ns>/releases` on the name and version tags (oldest run).
    fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>, StoreError>;

    /// Every release, by name then upload time.
    /// MLflow: `runs/search` of `<ns>/releases`, paginated.
    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError>;

    /// Set the rollout of `rollout.group` (replacing the group's previous one).
    /// MLflow: tag `sphere.rollout.<group>` (JSON) of `<ns>/releases`, mirrored as the
    /// registered model's alias `rollout-<group>` (100 %) or `canary-<group>`.
    fn set_rollout(&self, rollout: &Rollout) -> Result<(), StoreError>;

    /// Every group's rollout, by group.
    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError>;

    /// Remember that device `device_id` was served release `name`/`version` while it was
    /// assigned it, so it may fetch that file again later (a resumed download, a rollback)
    /// after its assignment moved on. Idempotent.
    /// MLflow: tag `sphere.granted/<name>/<version>` of the device's experiment.
    fn grant_release(&self, device_id: &str, name: &str, version: &str) -> Result<(), StoreError>;

    /// Whether [`Tracking::grant_release`] was recorded for this device and release.
    /// MLflow: that tag of the device's experiment.
    fn release_granted(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError>;

    /// Set the configuration layer of `layer.scope` (`"all"` or a group), replacing it.
    /// MLflow: tag `sphere.config.<scope>` (JSON) of the releases experiment.
    fn set_scope_config(&self, layer: &ConfigLayer) -> Result<(), StoreError>;

    /// Every fleet-wide and group layer, by scope.
    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError>;

    // --- Device metrics (keys checked by `domain::valid_metric_key`) -------------------------

    /// Store one package's metric points, all at `unix_ms`, one per key. Idempotent per
    /// (device, package): storing the same package again adds nothing.
    /// MLflow: `runs/log-batch` onto the package's run (≤ 1000 metrics per call), every point
    /// with `timestamp` = `unix_ms`, plus the metric `sphere.metrics_unix_ms` for searches.
    fn put_metrics(
        &self,
        device_id: &str,
        package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError>;

    /// The (Unix ms, value) points of `key` with `since <= t < until`, ascending by time, at
    /// most `max_points` (evenly thinned when more match; of very long ranges the newest
    /// points are read).
    /// MLflow: `runs/search` of the device's package runs on `sphere.metrics_unix_ms`: each
    /// run's latest value of `key` is the package's one point.
    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError>;

    /// The metric keys of `device_id`, sorted, at most `limit`.
    /// MLflow: the keys of the device's most recent package runs with metrics.
    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError>;
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

/// Result of [`Tracking::decide_drift_event`].
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
