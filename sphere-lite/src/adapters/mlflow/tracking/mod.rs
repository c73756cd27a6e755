//! The `Tracking` port on MLflow: the mapping of devices, tokens, packages, drift events and
//! feedback onto experiments, runs, tags, params and metrics. The layout and the guarantees
//! under several replicas are described in the [module docs](super).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::{
    DriftEventStatus, DriftEventView, FeedbackItem, FeedbackItemState, FeedbackProgress,
    FeedbackResult, FeedbackVerdict,
};
use tinylcm_protocol::datahub::PredictionView;

use super::client::{Client, Experiment, Metric, MlflowError, ParamOutcome, Run, RunQuery, Tag};
use super::filter::{Cmp, Filter, Literal, hex};
use super::{MlflowSettings, names};
use crate::adapters::series::thin;
use crate::ports::{
    ConfigLayer, DecideOutcome, Decision, DeviceRecord, DeviceSettings, DriftEventFilter,
    EnrollOutcome, EnrollmentKey, OperatorToken, PackageRecord, PredictionCursor, PredictionFilter,
    Principal, Recorded, ReleaseRecord, Rollout, SecretHash, SessionRecord, StoreError,
};

mod access;
mod config;
mod device_changes;
mod devices;
mod drift;
mod feedback_marks;
mod learning;
mod metrics;
mod packages;
mod predictions;
mod releases;
mod sessions;
mod tokens;

/// How long the operator-token snapshot is trusted (a removed operator token stays valid this
/// long on a replica that has it cached).
pub const OPERATOR_CACHE_TTL: Duration = Duration::from_secs(5);
/// An unknown token re-reads the snapshot if it is older than this (a token created on another
/// replica or by the CLI works within this time; bounds the reads an attacker can cause).
pub const OPERATOR_MISS_REFRESH: Duration = Duration::from_secs(1);
/// How long a replica without S3 ([`MlflowTracking::open`] alone) trusts a device record it
/// read (token hash, name, count) before reading it again: a device token rotated through
/// another replica still authenticates here for at most this long. Writes through this replica
/// drop its entry at once. With S3 see [`DEVICE_CACHE_TTL_ANNOUNCED`].
pub const DEVICE_CACHE_TTL: Duration = Duration::from_secs(10);
/// With S3 (how a server runs), a rotated or revoked device token is announced to every
/// replica, which drops its cached record within [`DEVICE_CHANGES_POLL`]: the record is then
/// trusted this long, which bounds only how stale another replica's name, hardware and package
/// count of a device are here.
pub const DEVICE_CACHE_TTL_ANNOUNCED: Duration = Duration::from_secs(60);
/// How often a replica with S3 looks for device token changes made through other replicas:
/// the bound on how long a rotated or revoked token keeps working there.
pub const DEVICE_CHANGES_POLL: Duration = device_changes::POLL;
/// A decided event whose decision is older than this and whose feedback is missing (the
/// deciding replica died in between) gets its feedback queued by the next decision attempt.
pub const DECISION_REPAIR_AFTER_MS: u64 = 30_000;

/// MLflow's limits (3.17): tag values 8000 characters, param values 6000.
const MAX_TAG_VALUE: usize = 8000;
const MAX_PARAM_VALUE: usize = 6000;
/// Caps of "all pages" searches (an error beyond, never a silent truncation).
const MAX_DEVICES: usize = 1_000_000;
const MAX_RELEASES: usize = 1_000_000;
const MAX_DUPLICATES: usize = 100;
/// Attempts at claiming a write-once slot before giving up (contention bound).
const MAX_CLAIM_ATTEMPTS: u64 = 1000;

// Tag, param and metric keys. `sphere.kind` says what a run or experiment is.
const KIND: &str = "sphere.kind";
const DEVICE_ID: &str = "sphere.device_id";
const NAME: &str = "sphere.name";
const HARDWARE: &str = "sphere.hardware";
const TOKEN: &str = "sphere.token_sha256";
const ENROLLED: &str = "sphere.enrolled_unix_ms";
const LAST_SEEN: &str = "sphere.last_seen_unix_ms";
const OPERATOR_TOKEN_PREFIX: &str = "sphere.operator_token.";
const KEY_HASH: &str = "sphere.key_sha256";
const USES: &str = "sphere.uses";
const DEVICE: &str = "sphere.device";
const PACKAGE_ID: &str = "sphere.package_id";
const EVENT_SEQ: &str = "sphere.event_seq";
/// The device database's epoch of a drift event (absent: a device older than epochs).
const EPOCH: &str = "sphere.epoch";
const DETECTOR_HEX: &str = "sphere.detector_hex";
const STATUS: &str = "sphere.status";
const EVENT: &str = "sphere.event";
const DECISION: &str = "sphere.decision";
const NOTE_PREFIX: &str = "sphere.note.";
const FEEDBACK_PREFIX: &str = "sphere.feedback.";
const ID: &str = "sphere.id";
const UNIX_MS: &str = "sphere.unix_ms";
const ACKED: &str = "sphere.feedback_acked";
const FEEDBACK_PARAM_PREFIX: &str = "feedback.";
/// Write-once param of the device's queue run: the device's result of item `<id>` (JSON).
const RESULT_PARAM_PREFIX: &str = "result.";
const USE_PARAM_PREFIX: &str = "use.";

const KIND_DEVICE: &str = "device";
const KIND_KEY: &str = "enrollment-key";
const KIND_EVENT: &str = "drift-event";
const KIND_QUEUE: &str = "feedback-queue";
const KIND_RELEASE: &str = "release";
const SETTINGS: &str = "sphere.settings";
/// The device's configuration layer (JSON), apart from [`SETTINGS`].
const DEVICE_CONFIG: &str = "sphere.config";
/// Experiment tag prefix of the fleet-wide and group configuration layers.
const SCOPE_CONFIG_PREFIX: &str = "sphere.config.";
const RELEASE_NAME: &str = "sphere.release_name";
const RELEASE_VERSION: &str = "sphere.release_version";
/// Model-version tags of a release in the model registry.
const RELEASE_SHA256: &str = "sphere.sha256";
const RELEASE_KEY_ID: &str = "sphere.key_id";
/// Registered-model tag naming the namespace it belongs to.
const NAMESPACE: &str = "sphere.namespace";
/// A release record is JSON split over `sphere.record.0`, `.1`, … (a tag holds 8000 chars).
const RECORD_PREFIX: &str = "sphere.record.";
const ROLLOUT_PREFIX: &str = "sphere.rollout.";
/// Device experiment tag `sphere.granted/<name>/<version>` = Unix ms: the device was served
/// that release while assigned it, so it may fetch it again (names and versions are
/// `A-Z a-z 0-9 _ -`, all allowed in tag keys).
const GRANT_PREFIX: &str = "sphere.granted/";
/// `runs/log-batch` takes at most this many metrics per call.
const MAX_BATCH_METRICS: usize = 1000;
const KIND_PREDICTION: &str = "prediction";
const CLASS: &str = "sphere.class";
const PREDICTION: &str = "sphere.prediction";
const CONFIDENCE: &str = "sphere.confidence";
/// Most prediction runs one package may have (its samples and replica-race copies).
const MAX_PACKAGE_PREDICTIONS: usize = 4 * tinylcm_protocol::datahub::MAX_PREDICTIONS_PER_PACKAGE;
/// Most runs one prediction listing reads (ties at one millisecond beyond a page); a page
/// stops there rather than scanning without end.
const MAX_PREDICTION_SCAN: usize = 20_000;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::new("mlflow", format!("corrupt record: {what}"))
}

fn lit(value: &str) -> Result<Literal, StoreError> {
    Literal::new(value).map_err(|e| StoreError::new("mlflow", e))
}

fn lit_const(value: &'static str) -> Literal {
    // Our own constants are all valid literals (checked by the tests).
    Literal::new(value).unwrap_or_else(|_| Literal::new("invalid").expect("a literal"))
}

fn unhex32(s: &str) -> Option<SecretHash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn tag_u64(value: Option<&str>, what: &str) -> Result<u64, StoreError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(format!("{what} is missing or not a number")))
}

/// Metric value → id (ids stay below 2^53, exact in a double).
fn metric_u64(run: &Run, key: &str) -> Option<u64> {
    run.metric(key)
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 9.007_199_254_740_992e15)
        .map(|v| v as u64)
}

fn status_str(s: DriftEventStatus) -> &'static str {
    s.as_str()
}

/// The decision as stored in the write-once `sphere.decision` param.
#[derive(Debug, Serialize, Deserialize)]
struct StoredDecision {
    status: DriftEventStatus,
    #[serde(default)]
    label: Option<String>,
    by: String,
    unix_ms: u64,
    /// Names this attempt's `sphere.note.<nonce>` and `sphere.feedback.<nonce>` tags.
    nonce: String,
}

/// A feedback item as stored in a `feedback.<id>` param of the device's queue run.
#[derive(Debug, Serialize, Deserialize)]
struct StoredItem {
    #[serde(flatten)]
    item: FeedbackItem,
    /// Idempotency key (`drift-event/<id>/<n>`) of items queued by a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src: Option<String>,
    /// Random per write: MLflow accepts a param written again with the *same* value, so two
    /// replicas queueing identical verdicts would both "win" the same id without it.
    #[serde(default)]
    claim: String,
}

struct OperatorSnapshot {
    at: Instant,
    /// token hash (hex) → the token's record.
    by_hash: HashMap<String, OperatorToken>,
}

/// Tracking in an MLflow server (see the [module docs](super) for the layout).
pub struct MlflowTracking {
    client: Client,
    namespace: String,
    auth: String,
    drift: String,
    releases: String,
    predictions: String,
    operators: Mutex<Option<OperatorSnapshot>>,
    /// Last drift event id given by this process.
    last_drift_id: Mutex<u64>,
    /// Where release model files are read from to be logged as artifacts of their run
    /// ([`MlflowTracking::with_release_files`]).
    release_files: Option<std::sync::Arc<dyn crate::ports::Blobs>>,
    /// The metric keys logged to day runs.
    kept_keys: super::KeptKeys,
    /// (device id, UTC day) → the run holding that day's metric points (never changes).
    day_runs: Mutex<HashMap<(String, u64), String>>,
    /// Package records (S3 objects, [`super::package_objects`]); required for the
    /// `PackageStore` part and for device package counts.
    package_objects: Option<super::package_objects::PackageObjects>,
    /// Device records read recently, with their experiment id ([`DEVICE_CACHE_TTL`]).
    device_cache: Mutex<HashMap<String, CachedDevice>>,
    device_ttl: Duration,
    /// Device id → its feedback queue run's id (never changes).
    queue_runs: Mutex<HashMap<String, String>>,
    /// Marks of the ids being queued, so that a poll of an empty queue needs no MLflow read
    /// (with the package store; without, every poll reads the queue run).
    feedback_marks: Option<feedback_marks::FeedbackMarks>,
    /// Token changes announced by every replica (with the package store).
    device_changes: Option<device_changes::DeviceChanges>,
}

/// A device record as read at `at`.
struct CachedDevice {
    at: Instant,
    experiment_id: String,
    record: DeviceRecord,
}

/// Most device records cached before the cache starts over.
const MAX_CACHED_DEVICES: usize = 100_000;

impl MlflowTracking {
    /// Connect to the MLflow server of `settings` and make sure the namespace's shared
    /// experiments exist (`<ns>/auth`, `<ns>/packages`, `<ns>/drift-events`, `<ns>/releases`).
    pub fn open(settings: &MlflowSettings) -> Result<Self, StoreError> {
        if !names::valid_namespace(&settings.namespace) {
            return Err(StoreError::new(
                "mlflow",
                format!("invalid namespace {:?}", settings.namespace),
            ));
        }
        let client = Client::new(&settings.url);
        let ns = settings.namespace.clone();
        let auth = ensure_experiment(&client, &names::auth(&ns))?;
        let drift = ensure_experiment(&client, &names::drift_events(&ns))?;
        let releases = ensure_experiment(&client, &names::releases(&ns))?;
        let predictions = ensure_experiment(&client, &names::predictions(&ns))?;
        let tracking = MlflowTracking {
            client,
            namespace: ns,
            auth,
            drift,
            releases,
            predictions,
            operators: Mutex::new(None),
            last_drift_id: Mutex::new(0),
            release_files: None,
            kept_keys: settings.metric_keys.clone(),
            day_runs: Mutex::new(HashMap::new()),
            package_objects: None,
            device_cache: Mutex::new(HashMap::new()),
            device_ttl: DEVICE_CACHE_TTL,
            queue_runs: Mutex::new(HashMap::new()),
            feedback_marks: None,
            device_changes: None,
        };
        // Ids continue above the largest stored one even if this host's clock is behind.
        let query = RunQuery {
            experiment_ids: vec![tracking.drift.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_EVENT))
                .metric(ID, Cmp::Ge, 0)
                .build(),
            order_by: vec![format!("metrics.`{ID}` DESC")],
        };
        let (top, _) = tracking.client.search_runs_page(&query, 1, None)?;
        if let Some(max) = top.first().and_then(|r| metric_u64(r, ID)) {
            *lock(&tracking.last_drift_id) = max;
        }
        Ok(tracking)
    }

    /// [`MlflowTracking::open`] with its package records in the S3 bucket of `s3`, under the
    /// tracking prefix ([`S3Settings::tracking`](crate::adapters::S3Settings::tracking)): how
    /// a server opens it.
    pub fn open_with_s3(
        settings: &MlflowSettings,
        s3: &crate::adapters::S3Settings,
    ) -> Result<Self, StoreError> {
        let objects = crate::adapters::S3Blobs::open(&s3.tracking())?;
        Ok(Self::open(settings)?.with_package_store(std::sync::Arc::new(objects)))
    }

    /// Read release model files from `blobs` (the server's blob store, where publishing puts
    /// them first), so that each release's run gets the model file as an artifact beside its
    /// manifest and signed release. Without it a release run has only those two.
    pub fn with_release_files(mut self, blobs: std::sync::Arc<dyn crate::ports::Blobs>) -> Self {
        self.release_files = Some(blobs);
        self
    }

    /// Keep package records in `store` (the S3 bucket's tracking prefix,
    /// [`S3Settings::tracking`](crate::adapters::S3Settings::tracking)). Without it the
    /// `PackageStore` methods fail and device package counts read 0. The same prefix holds the
    /// marks of feedback ids being queued, which spare a device's poll of an empty queue its
    /// MLflow read, and the announcements of device token changes, which let a device record
    /// be cached for [`DEVICE_CACHE_TTL_ANNOUNCED`].
    pub fn with_package_store(mut self, store: std::sync::Arc<crate::adapters::S3Blobs>) -> Self {
        self.feedback_marks = Some(feedback_marks::FeedbackMarks::new(store.clone()));
        self.device_changes = Some(device_changes::DeviceChanges::new(store.clone()));
        self.device_ttl = DEVICE_CACHE_TTL_ANNOUNCED;
        self.package_objects = Some(super::package_objects::PackageObjects::new(store));
        self
    }

    /// Trust a device record read from MLflow for `ttl` ([`DEVICE_CACHE_TTL`] by default,
    /// [`DEVICE_CACHE_TTL_ANNOUNCED`] once [`MlflowTracking::with_package_store`] set it; zero:
    /// read it every time).
    pub fn with_device_cache_ttl(mut self, ttl: Duration) -> Self {
        self.device_ttl = ttl;
        self
    }

    /// How many requests this adapter has sent to MLflow: what tests and benchmarks count to
    /// bound the MLflow calls an operation costs.
    pub fn mlflow_calls(&self) -> u64 {
        self.client.calls()
    }

    fn objects(&self) -> Result<&super::package_objects::PackageObjects, StoreError> {
        self.package_objects.as_ref().ok_or_else(|| {
            StoreError::new(
                "mlflow",
                "no package store: MLflow tracking keeps package records in S3",
            )
        })
    }

    /// How many packages `device_id` has (0 without a package store).
    fn package_count(&self, device_id: &str) -> Result<u64, StoreError> {
        match &self.package_objects {
            Some(objects) => objects.count(device_id),
            None => Ok(0),
        }
    }

    /// `exp`'s device record with its package count.
    fn device_record(&self, exp: &Experiment) -> Result<DeviceRecord, StoreError> {
        let mut record = device_of(exp)?;
        record.packages = self.package_count(&record.device_id)?;
        Ok(record)
    }

    /// The record of `device_id` and its experiment id, from the cache while fresh.
    fn cached_device(&self, device_id: &str) -> Result<Option<(String, DeviceRecord)>, StoreError> {
        if let Some(changes) = &self.device_changes {
            let changed = changes.changed()?;
            if !changed.is_empty() {
                let mut cache = lock(&self.device_cache);
                for device in changed {
                    cache.remove(&device);
                }
            }
        }
        if let Some(c) = lock(&self.device_cache).get(device_id) {
            if c.at.elapsed() < self.device_ttl {
                return Ok(Some((c.experiment_id.clone(), c.record.clone())));
            }
        }
        let Some(exp) = self.device_experiment(device_id)? else {
            lock(&self.device_cache).remove(device_id);
            return Ok(None);
        };
        let record = self.device_record(&exp)?;
        self.remember_device(&exp.experiment_id, record.clone());
        Ok(Some((exp.experiment_id, record)))
    }

    /// `experiments/set-experiment-tag`, dropping a cached device record of that experiment.
    fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        self.client.set_experiment_tag(experiment_id, key, value)?;
        lock(&self.device_cache).retain(|_, c| c.experiment_id != experiment_id);
        Ok(())
    }

    fn device_experiment(&self, device_id: &str) -> Result<Option<Experiment>, StoreError> {
        Ok(self
            .client
            .experiment_by_name(&names::device(&self.namespace, device_id))?
            .filter(Experiment::is_active))
    }

    fn device_prefix(&self) -> Result<Literal, StoreError> {
        lit(&names::device(&self.namespace, ""))
    }

    /// The runs of drift event (device, epoch, event_seq), canonical first. Events without an
    /// epoch (devices older than epochs) have no `sphere.epoch` tag; MLflow cannot filter on a
    /// missing tag, so those are picked out here.
    fn event_runs(
        &self,
        device_id: &str,
        epoch: Option<&str>,
        event_seq: u64,
    ) -> Result<Vec<Run>, StoreError> {
        let mut filter = Filter::new()
            .tag_eq(KIND, &lit_const(KIND_EVENT))
            .tag_eq(DEVICE, &lit(device_id)?)
            .tag_eq(EVENT_SEQ, &lit(&event_seq.to_string())?);
        if let Some(epoch) = epoch {
            filter = filter.tag_eq(EPOCH, &lit(epoch)?);
        }
        let query = RunQuery {
            experiment_ids: vec![self.drift.clone()],
            filter: filter.build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        runs.retain(|run| run.tag(EPOCH) == epoch);
        runs.sort_by(event_order);
        Ok(runs)
    }

    fn runs_with_id(&self, id: u64) -> Result<Vec<Run>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.drift.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_EVENT))
                .metric(ID, Cmp::Eq, id)
                .build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        runs.sort_by(event_order);
        Ok(runs)
    }

    /// The next `n` drift event ids of this process: `unix ms × 1024 + k`, increasing, above
    /// any id this process gave or found at startup (below 2^53 until the year 2248).
    fn next_drift_id(&self) -> u64 {
        let mut last = lock(&self.last_drift_id);
        let id = (*last + 1).max(crate::domain::now_unix_ms().saturating_mul(1024));
        *last = id;
        id
    }

    /// Give `run` the drift event id `id` (as its `sphere.id` metric at `step`), then make sure
    /// no other run has it: ids are taken from the clock, so two replicas can pick the same one
    /// in the same millisecond; whoever sees the other takes a new id (a larger step wins
    /// MLflow's "latest value").
    fn assign_id(&self, run: &Run, unix_ms: u64) -> Result<u64, StoreError> {
        let now = crate::domain::now_unix_ms() as i64;
        let first_step = run
            .data
            .metrics
            .iter()
            .find(|m| m.key == ID)
            .map_or(0, |m| m.step + 1);
        for step in first_step..first_step + 8 {
            let id = self.next_drift_id();
            let metrics = [
                Metric {
                    key: ID.into(),
                    value: id as f64,
                    timestamp: now,
                    step,
                },
                Metric {
                    key: UNIX_MS.into(),
                    value: unix_ms as f64,
                    timestamp: now,
                    step: 0,
                },
            ];
            self.client
                .log_batch(&run.info.run_id, &metrics, &[], &[])?;
            let holders = self.runs_with_id(id)?;
            if holders.iter().all(|r| r.info.run_id == run.info.run_id) {
                return Ok(id);
            }
        }
        Err(StoreError::new(
            "mlflow",
            "could not give a drift event a unique id after 8 attempts",
        ))
    }

    fn event_view(&self, run: &Run) -> Result<DriftEventView, StoreError> {
        let json = run
            .tag(EVENT)
            .ok_or_else(|| corrupt(format!("drift event run {} has no event", run.info.run_id)))?;
        let mut view: DriftEventView =
            serde_json::from_str(json).map_err(|e| corrupt(format!("drift event: {e}")))?;
        view.id = metric_u64(run, ID).unwrap_or(0);
        if let Some(d) = decision_of(run)? {
            view.status = d.status;
            view.label = d.label;
            view.note = run
                .tag(&format!("{NOTE_PREFIX}{}", d.nonce))
                .map(str::to_owned);
            view.decided_by = Some(d.by);
            view.decided_unix_ms = Some(d.unix_ms);
        }
        Ok(view)
    }

    /// The event of `id` as it stands, with its run.
    fn find_event(&self, id: u64) -> Result<Option<(Run, DriftEventView)>, StoreError> {
        match self.runs_with_id(id)?.into_iter().next() {
            Some(run) => {
                let view = self.event_view(&run)?;
                Ok(Some((run, view)))
            }
            None => Ok(None),
        }
    }

    /// Fills the decision feedback of the decided events in `views` (see
    /// [`DriftStore::drift_event`](crate::ports::DriftStore::drift_event)): one read of each
    /// device's queue run.
    fn with_feedback(&self, views: &mut [DriftEventView]) -> Result<(), StoreError> {
        let mut runs: HashMap<String, Option<Run>> = HashMap::new();
        for view in views.iter_mut() {
            if view.status == DriftEventStatus::Pending {
                continue;
            }
            if !runs.contains_key(&view.device_id) {
                let run = self.queue_run(&view.device_id)?;
                runs.insert(view.device_id.clone(), run);
            }
            if let Some(Some(run)) = runs.get(&view.device_id) {
                view.feedback = decision_feedback(run, view.id)?;
            }
        }
        Ok(())
    }

    /// The feedback queue run of `device_id` (created at enrollment), read fresh: one
    /// `runs/get` once its id is known (it never changes, so it is kept for the process).
    fn queue_run(&self, device_id: &str) -> Result<Option<Run>, StoreError> {
        let known = lock(&self.queue_runs).get(device_id).cloned();
        if let Some(run_id) = known {
            match self.client.run(&run_id)? {
                Some(run) if run.info.lifecycle_stage != "deleted" => {
                    return Ok(Some(run));
                }
                // Gone (deleted in the UI): look it up afresh.
                _ => {
                    lock(&self.queue_runs).remove(device_id);
                }
            }
        }
        let Some((experiment_id, _)) = self.cached_device(device_id)? else {
            return Ok(None);
        };
        let query = RunQuery {
            experiment_ids: vec![experiment_id],
            filter: Filter::new().tag_eq(KIND, &lit_const(KIND_QUEUE)).build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        runs.sort_by(|a, b| {
            (a.info.start_time, &a.info.run_id).cmp(&(b.info.start_time, &b.info.run_id))
        });
        let run = runs.into_iter().next();
        if let Some(r) = &run {
            self.remember_queue_run(device_id, &r.info.run_id);
        }
        Ok(run)
    }

    /// Remember that `run_id` is `device_id`'s feedback queue run.
    fn remember_queue_run(&self, device_id: &str, run_id: &str) {
        let mut runs = lock(&self.queue_runs);
        if runs.len() >= MAX_CACHED_DEVICES {
            runs.clear();
        }
        runs.insert(device_id.to_owned(), run_id.to_owned());
    }

    /// Remember `record` as just read (or written) with its experiment.
    fn remember_device(&self, experiment_id: &str, record: DeviceRecord) {
        let mut cache = lock(&self.device_cache);
        if cache.len() >= MAX_CACHED_DEVICES {
            cache.clear();
        }
        cache.insert(
            record.device_id.clone(),
            CachedDevice {
                at: Instant::now(),
                experiment_id: experiment_id.to_owned(),
                record,
            },
        );
    }

    /// Queue `items` (verdict, idempotency key) for `device_id`; items whose key is queued
    /// already are not queued again (their ids are returned).
    fn append_items(
        &self,
        device_id: &str,
        items: &[(FeedbackVerdict, Option<String>)],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let run = self
            .queue_run(device_id)?
            .ok_or_else(|| StoreError::new("mlflow", format!("no device {device_id}")))?;
        let queued = queue_items(&run)?;
        let mut next = queued.iter().map(|s| s.item.id).max().unwrap_or(0) + 1;
        let mut ids = Vec::with_capacity(items.len());
        let claim =
            hex(&crate::secret::random_bytes::<8>().map_err(|e| StoreError::new("mlflow", e))?);
        for (verdict, src) in items {
            if let Some(s) = src {
                if let Some(q) = queued.iter().find(|q| q.src.as_deref() == Some(s)) {
                    ids.push(q.item.id);
                    continue;
                }
            }
            let mut attempts = 0;
            loop {
                let stored = StoredItem {
                    item: FeedbackItem {
                        id: next,
                        created_unix_ms: now_unix_ms,
                        verdict: verdict.clone(),
                    },
                    src: src.clone(),
                    claim: claim.clone(),
                };
                let value = serde_json::to_string(&stored)
                    .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
                if value.chars().count() > MAX_PARAM_VALUE {
                    return Err(StoreError::new("mlflow", "feedback item too large"));
                }
                let key = format!("{FEEDBACK_PARAM_PREFIX}{next}");
                // The mark first: a poll that sees no mark above its `after` skips MLflow.
                if let Some(marks) = &self.feedback_marks {
                    marks.mark(device_id, next)?;
                }
                match self.client.claim_param(&run.info.run_id, &key, &value)? {
                    ParamOutcome::Stored => {
                        ids.push(next);
                        next += 1;
                        break;
                    }
                    ParamOutcome::Taken => {
                        next += 1;
                        attempts += 1;
                        if attempts >= MAX_CLAIM_ATTEMPTS {
                            return Err(StoreError::new(
                                "mlflow",
                                "feedback queue too contended; try again",
                            ));
                        }
                    }
                }
            }
        }
        Ok(ids)
    }

    /// After a lost or repeated decision: make the status tag match the decision, and (if the
    /// winner seems to have died before it) queue the winner's feedback.
    fn repair_decided(&self, run: &Run, view: &DriftEventView) -> Result<(), StoreError> {
        if run.tag(STATUS) != Some(status_str(view.status)) {
            self.client
                .set_tag(&run.info.run_id, STATUS, status_str(view.status))?;
        }
        let Some(decision) = decision_of(run)? else {
            return Ok(());
        };
        let age = crate::domain::now_unix_ms().saturating_sub(decision.unix_ms);
        if age < DECISION_REPAIR_AFTER_MS {
            return Ok(());
        }
        let Some(json) = run.tag(&format!("{FEEDBACK_PREFIX}{}", decision.nonce)) else {
            return Ok(());
        };
        let verdicts: Vec<FeedbackVerdict> =
            serde_json::from_str(json).map_err(|e| corrupt(format!("decision feedback: {e}")))?;
        self.append_items(
            &view.device_id,
            &with_sources(view.id, &verdicts),
            decision.unix_ms,
        )?;
        Ok(())
    }
}

impl MlflowTracking {
    /// The metrics of a prediction run (device time for filters and order, confidence).
    fn log_prediction_metrics(
        &self,
        run_id: &str,
        sample: &PredictionView,
    ) -> Result<(), StoreError> {
        let now = crate::domain::now_unix_ms() as i64;
        let metric = |key: &str, value: f64| Metric {
            key: key.into(),
            value,
            timestamp: now,
            step: 0,
        };
        let metrics = [
            metric(UNIX_MS, sample.unix_ms as f64),
            metric(CONFIDENCE, f64::from(sample.confidence)),
        ];
        Ok(self.client.log_batch(run_id, &metrics, &[], &[])?)
    }

    /// Index the samples of one package (all of `samples` share device and package).
    fn put_package_predictions(&self, samples: &[&PredictionView]) -> Result<usize, StoreError> {
        let Some(first) = samples.first() else {
            return Ok(0);
        };
        let query = RunQuery {
            experiment_ids: vec![self.predictions.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_PREDICTION))
                .tag_eq(DEVICE, &lit(&first.device_id)?)
                .tag_eq(PACKAGE_ID, &lit(&first.package_id)?)
                .build(),
            order_by: vec![],
        };
        let mut existing: HashMap<String, Run> = HashMap::new();
        for run in self.client.search_runs(&query, MAX_PACKAGE_PREDICTIONS)? {
            existing.insert(prediction_of(&run)?.key, run);
        }
        let mut new = 0;
        for sample in samples {
            if let Some(run) = existing.get(&sample.key) {
                // A crash between creating the run and logging its metrics left it out of
                // every listing (they filter on the metric): complete it now.
                if metric_u64(run, UNIX_MS).is_none() {
                    self.log_prediction_metrics(&run.info.run_id, sample)?;
                    new += 1;
                }
                continue;
            }
            let json = serde_json::to_string(sample)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            let run = self.client.create_run(
                &self.predictions,
                &sample.key,
                sample.unix_ms,
                &[
                    Tag::new(KIND, KIND_PREDICTION),
                    Tag::new(DEVICE, &sample.device_id),
                    Tag::new(PACKAGE_ID, &sample.package_id),
                    Tag::new(CLASS, &sample.class),
                    Tag::new(PREDICTION, json),
                ],
            )?;
            self.log_prediction_metrics(&run.info.run_id, sample)?;
            new += 1;
        }
        Ok(new)
    }
}

fn prediction_of(run: &Run) -> Result<PredictionView, StoreError> {
    let json = run
        .tag(PREDICTION)
        .ok_or_else(|| corrupt(format!("prediction run {} has no sample", run.info.run_id)))?;
    serde_json::from_str(json).map_err(|e| corrupt(format!("prediction: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Canonical event first: the smallest id (a run without one last), then the smallest run id.
fn event_order(a: &Run, b: &Run) -> std::cmp::Ordering {
    let key = |r: &Run| (metric_u64(r, ID).unwrap_or(u64::MAX), r.info.run_id.clone());
    key(a).cmp(&key(b))
}

fn decision_of(run: &Run) -> Result<Option<StoredDecision>, StoreError> {
    run.param(DECISION)
        .map(|d| serde_json::from_str(d).map_err(|e| corrupt(format!("decision: {e}"))))
        .transpose()
}

fn with_sources(
    event_id: u64,
    verdicts: &[FeedbackVerdict],
) -> Vec<(FeedbackVerdict, Option<String>)> {
    verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), Some(format!("drift-event/{event_id}/{i}"))))
        .collect()
}

/// How far `item` of `run` (a device's queue, `acked` items acknowledged) got: queued,
/// delivered, or the result the device reported for it.
pub(super) fn feedback_state(
    run: &Run,
    item: FeedbackItem,
    acked: u64,
) -> Result<FeedbackItemState, StoreError> {
    let mut state = FeedbackItemState {
        id: item.id,
        verdict: item.verdict,
        progress: FeedbackProgress::Queued,
        reason: None,
        reported_unix_ms: None,
    };
    crate::adapters::redb_tracking::progress(&mut state, acked, |id| {
        run.param(&format!("{RESULT_PARAM_PREFIX}{id}"))
            .map(|v| {
                serde_json::from_str::<FeedbackResult>(v)
                    .map_err(|e| corrupt(format!("feedback result {id}: {e}")))
            })
            .transpose()
    })?;
    Ok(state)
}

/// The items of `run` (a device's queue) that the decision on event `event_id` queued, in
/// order, with how far each got.
fn decision_feedback(run: &Run, event_id: u64) -> Result<Vec<FeedbackItemState>, StoreError> {
    let prefix = format!("drift-event/{event_id}/");
    let acked = metric_u64(run, ACKED).unwrap_or(0);
    let mut found: Vec<(u64, FeedbackItemState)> = Vec::new();
    for stored in queue_items(run)? {
        let Some(n) = stored
            .src
            .as_deref()
            .and_then(|s| s.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        // A decision's item queued twice (a repair racing the decider): the first counts, as
        // it is the one delivered.
        if found.iter().any(|(m, _)| *m == n) {
            continue;
        }
        found.push((n, feedback_state(run, stored.item, acked)?));
    }
    found.sort_by_key(|(n, _)| *n);
    Ok(found.into_iter().map(|(_, s)| s).collect())
}

/// The items of a device's queue run, by id.
fn queue_items(run: &Run) -> Result<Vec<StoredItem>, StoreError> {
    let mut items = Vec::new();
    for p in &run.data.params {
        let Some(n) = p.key.strip_prefix(FEEDBACK_PARAM_PREFIX) else {
            continue;
        };
        let stored: StoredItem = serde_json::from_str(&p.value)
            .map_err(|e| corrupt(format!("feedback item {n}: {e}")))?;
        if n.parse::<u64>().ok() != Some(stored.item.id) {
            return Err(corrupt(format!(
                "feedback item {n} has id {}",
                stored.item.id
            )));
        }
        items.push(stored);
    }
    items.sort_by_key(|s| s.item.id);
    Ok(items)
}

/// The id of the experiment `name`, created if missing.
fn ensure_experiment(client: &Client, name: &str) -> Result<String, StoreError> {
    let existing = |client: &Client| -> Result<Option<String>, StoreError> {
        match client.experiment_by_name(name)? {
            Some(e) if e.is_active() => Ok(Some(e.experiment_id)),
            Some(_) => Err(StoreError::new(
                "mlflow",
                format!(
                    "experiment {name:?} is deleted in MLflow; restore it (`mlflow experiments \
                     restore`) or use another namespace"
                ),
            )),
            None => Ok(None),
        }
    };
    if let Some(id) = existing(client)? {
        return Ok(id);
    }
    match client.create_experiment(name, &[Tag::new(KIND, "sphere-lite")]) {
        Ok(id) => Ok(id),
        // Another replica created it meanwhile.
        Err(e) if e.is_already_exists() => existing(client)?
            .ok_or_else(|| StoreError::new("mlflow", format!("experiment {name:?} vanished"))),
        Err(e) => Err(e.into()),
    }
}

fn device_of(exp: &Experiment) -> Result<DeviceRecord, StoreError> {
    let device_id = exp
        .tag(DEVICE_ID)
        .ok_or_else(|| corrupt(format!("experiment {} has no device id", exp.name)))?
        .to_owned();
    let token_hash = exp
        .tag(TOKEN)
        .and_then(unhex32)
        .ok_or_else(|| corrupt(format!("device {device_id} has no valid token hash")))?;
    Ok(DeviceRecord {
        name: exp.tag(NAME).map(str::to_owned),
        hardware: exp.tag(HARDWARE).map(str::to_owned),
        token_hash,
        enrolled_unix_ms: tag_u64(exp.tag(ENROLLED), ENROLLED)?,
        last_seen_unix_ms: tag_u64(exp.tag(LAST_SEEN), LAST_SEEN)?,
        packages: 0,
        device_id,
    })
}

/// The release record of a release run (its JSON reassembled from the chunk tags).
fn release_of(run: &Run) -> Result<ReleaseRecord, StoreError> {
    let mut json = String::new();
    for i in 0.. {
        match run.tag(&format!("{RECORD_PREFIX}{i}")) {
            Some(chunk) => json.push_str(chunk),
            None => break,
        }
    }
    serde_json::from_str(&json).map_err(|e| corrupt(format!("release record: {e}")))
}

impl MlflowTracking {
    /// The JSON records kept as tags `<prefix><key>` of the releases experiment, by tag key.
    fn releases_tags<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let exp = self
            .client
            .experiment_by_name(&names::releases(&self.namespace))?
            .ok_or_else(|| StoreError::new("mlflow", "the releases experiment is gone"))?;
        let mut tags: Vec<_> = exp
            .tags
            .iter()
            .filter(|t| t.key.starts_with(prefix))
            .collect();
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        tags.iter()
            .map(|t| serde_json::from_str(&t.value).map_err(|e| corrupt(format!("{what}: {e}"))))
            .collect()
    }

    /// The registered model of release `name`: MLflow model names cannot hold `/`, so the
    /// namespace's `/` become `.` (`fleet/a` + `shapes` → `fleet.a.shapes`).
    fn registry_name(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace.replace('/', "."))
    }

    /// Make `release` (recorded in run `run_id`) a version of its registered model, once;
    /// returns the version number.
    fn register(&self, release: &ReleaseRecord, run_id: &str) -> Result<String, StoreError> {
        let model = self.registry_name(&release.name);
        self.client
            .ensure_registered_model(&model, &[Tag::new(NAMESPACE, self.namespace.clone())])?;
        let versions = self
            .client
            .model_versions_of_run(&lit(&model)?, &lit(run_id)?)?;
        if let Some(v) = versions
            .iter()
            .min_by_key(|v| v.version.parse::<u64>().unwrap_or(u64::MAX))
        {
            return Ok(v.version.clone());
        }
        let tags = [
            Tag::new(RELEASE_VERSION, release.version.clone()),
            Tag::new(RELEASE_SHA256, release.sha256.clone()),
            Tag::new(RELEASE_KEY_ID, release.signed.key_id.clone()),
        ];
        let description = format!(
            "{} {} ({} bytes), published by {}",
            release.name, release.version, release.size, release.uploaded_by
        );
        Ok(self
            .client
            .create_model_version(&model, run_id, &tags, &description)?)
    }

    fn release_runs(&self, name: &str, version: &str) -> Result<Vec<Run>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.releases.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_RELEASE))
                .tag_eq(RELEASE_NAME, &lit(name)?)
                .tag_eq(RELEASE_VERSION, &lit(version)?)
                .build(),
            order_by: vec![],
        };
        let runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        // The filter is exact, but check the tags too (MLflow's string compare rules).
        Ok(runs
            .into_iter()
            .filter(|r| {
                r.tag(RELEASE_NAME) == Some(name) && r.tag(RELEASE_VERSION) == Some(version)
            })
            .collect())
    }
}

impl From<MlflowError> for StoreError {
    fn from(e: MlflowError) -> Self {
        StoreError::new("mlflow", e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_values_are_filter_literals_and_hashes_round_trip() {
        for v in [KIND_DEVICE, KIND_KEY, KIND_EVENT, KIND_QUEUE, "RUNNING"] {
            assert_eq!(lit_const(v).as_str(), v);
        }
        let h = [0xab; 32];
        assert_eq!(unhex32(&hex(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
        assert_eq!(unhex32(&"g".repeat(64)), None);
    }
}
