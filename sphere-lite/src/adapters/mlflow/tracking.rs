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
    Principal, Recorded, ReleaseRecord, Rollout, SecretHash, SessionRecord, StoreError, Tracking,
};

#[path = "tokens.rs"]
mod tokens;

/// How long the operator-token snapshot is trusted (a removed operator token stays valid this
/// long on a replica that has it cached).
pub const OPERATOR_CACHE_TTL: Duration = Duration::from_secs(5);
/// An unknown token re-reads the snapshot if it is older than this (a token created on another
/// replica or by the CLI works within this time; bounds the reads an attacker can cause).
pub const OPERATOR_MISS_REFRESH: Duration = Duration::from_secs(1);
/// A decided event whose decision is older than this and whose feedback is missing (the
/// deciding replica died in between) gets its feedback queued by the next decision attempt.
pub const DECISION_REPAIR_AFTER_MS: u64 = 30_000;

/// MLflow's limits (3.17): tag values 8000 characters, param values 6000.
const MAX_TAG_VALUE: usize = 8000;
const MAX_PARAM_VALUE: usize = 6000;
/// Caps of "all pages" searches (an error beyond, never a silent truncation).
const MAX_DEVICES: usize = 1_000_000;
const MAX_PENDING: usize = 1_000_000;
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
const PACKAGES: &str = "sphere.packages";
const OPERATOR_TOKEN_PREFIX: &str = "sphere.operator_token.";
const KEY_HASH: &str = "sphere.key_sha256";
const USES: &str = "sphere.uses";
const DEVICE: &str = "sphere.device";
const PACKAGE_ID: &str = "sphere.package_id";
const RAW_KEY: &str = "sphere.raw_key";
const ACCEPTED: &str = "sphere.accepted_unix_ms";
const PROCESSED: &str = "sphere.processed_unix_ms";
const FAILED: &str = "sphere.failed";
const PROBLEMS: &str = "sphere.problems";
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
const KIND_PACKAGE: &str = "package";
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
/// Metric of a package run with metric points: their time (Unix ms), to search by time.
const METRICS_AT: &str = "sphere.metrics_unix_ms";
/// `runs/log-batch` takes at most this many metrics per call.
const MAX_BATCH_METRICS: usize = 1000;
/// Page size of metric searches: every run carries up to 257 metrics, so pages stay small.
const METRIC_PAGE: u32 = 200;
/// Most package runs read for one series (the newest; with one point per run per key).
const MAX_SERIES_RUNS: usize = 10_000;
/// How many of the newest package runs with metrics give a device's key list.
const KEY_RUNS: u32 = 50;
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

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
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
    packages: String,
    drift: String,
    releases: String,
    predictions: String,
    operators: Mutex<Option<OperatorSnapshot>>,
    /// Last drift event id given by this process.
    last_drift_id: Mutex<u64>,
}

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
        let packages = ensure_experiment(&client, &names::packages(&ns))?;
        let drift = ensure_experiment(&client, &names::drift_events(&ns))?;
        let releases = ensure_experiment(&client, &names::releases(&ns))?;
        let predictions = ensure_experiment(&client, &names::predictions(&ns))?;
        let tracking = MlflowTracking {
            client,
            namespace: ns,
            auth,
            packages,
            drift,
            releases,
            predictions,
            operators: Mutex::new(None),
            last_drift_id: Mutex::new(0),
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

    fn device_experiment(&self, device_id: &str) -> Result<Option<Experiment>, StoreError> {
        Ok(self
            .client
            .experiment_by_name(&names::device(&self.namespace, device_id))?
            .filter(Experiment::is_active))
    }

    fn device_prefix(&self) -> Result<Literal, StoreError> {
        lit(&names::device(&self.namespace, ""))
    }

    fn package_runs(&self, device_id: &str, package_id: &str) -> Result<Vec<Run>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.packages.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_PACKAGE))
                .tag_eq(DEVICE, &lit(device_id)?)
                .tag_eq(PACKAGE_ID, &lit(package_id)?)
                .build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        // Canonical first: the earliest accepted, then the smallest run id.
        runs.sort_by(|a, b| {
            (a.info.start_time, &a.info.run_id).cmp(&(b.info.start_time, &b.info.run_id))
        });
        Ok(runs)
    }

    fn bump_package_count(&self, record: &PackageRecord) -> Result<(), StoreError> {
        let Some(exp) = self.device_experiment(&record.device_id)? else {
            return Ok(());
        };
        let count = tag_u64(exp.tag(PACKAGES), PACKAGES).unwrap_or(0);
        self.client
            .set_experiment_tag(&exp.experiment_id, PACKAGES, &(count + 1).to_string())?;
        let last = tag_u64(exp.tag(LAST_SEEN), LAST_SEEN).unwrap_or(0);
        if record.accepted_unix_ms > last {
            self.client.set_experiment_tag(
                &exp.experiment_id,
                LAST_SEEN,
                &record.accepted_unix_ms.to_string(),
            )?;
        }
        Ok(())
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
    /// [`Tracking::drift_event`]): one read of each device's queue run.
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

    /// The feedback queue run of `device_id` (created at enrollment).
    fn queue_run(&self, device_id: &str) -> Result<Option<Run>, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(None);
        };
        let query = RunQuery {
            experiment_ids: vec![exp.experiment_id],
            filter: Filter::new().tag_eq(KIND, &lit_const(KIND_QUEUE)).build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_DUPLICATES)?;
        runs.sort_by(|a, b| {
            (a.info.start_time, &a.info.run_id).cmp(&(b.info.start_time, &b.info.run_id))
        });
        Ok(runs.into_iter().next())
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
        let mut state = FeedbackItemState {
            id: stored.item.id,
            verdict: stored.item.verdict,
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
        found.push((n, state));
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
        packages: tag_u64(exp.tag(PACKAGES), PACKAGES).unwrap_or(0),
        device_id,
    })
}

fn package_of(run: &Run) -> Result<PackageRecord, StoreError> {
    let tag = |k: &str| {
        run.tag(k)
            .map(str::to_owned)
            .ok_or_else(|| corrupt(format!("package run {} has no {k}", run.info.run_id)))
    };
    let problems = match run.tag(PROBLEMS) {
        Some(p) => serde_json::from_str(p).map_err(|e| corrupt(format!("problems: {e}")))?,
        None => vec![],
    };
    Ok(PackageRecord {
        device_id: tag(DEVICE)?,
        package_id: tag(PACKAGE_ID)?,
        raw_key: tag(RAW_KEY)?,
        accepted_unix_ms: tag_u64(run.tag(ACCEPTED), ACCEPTED)?,
        processed_unix_ms: run.tag(PROCESSED).and_then(|v| v.parse().ok()),
        failed: run.tag(FAILED).map(str::to_owned),
        problems,
    })
}

/// `problems` as a JSON list that fits in a tag: later ones are summarised if it would not.
fn problems_json(problems: &[String]) -> String {
    let mut kept: Vec<String> = problems.iter().map(|p| cut(p, 1000)).collect();
    loop {
        let json = serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into());
        if json.chars().count() <= MAX_TAG_VALUE - 100 || kept.is_empty() {
            return json;
        }
        let dropped = problems.len() - kept.len() + 1;
        kept.truncate(kept.len().saturating_sub(2));
        kept.push(format!("... and {dropped} more problems"));
        if kept.len() == 1 {
            return serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into());
        }
    }
}

impl Tracking for MlflowTracking {
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError> {
        self.store_key(key)
    }

    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        self.all_keys()
    }

    fn revoke_enrollment_key(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        self.revoke_key(id, now_unix_ms)
    }

    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now_unix_ms: u64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.enroll_with_key(key_hash, device, now_unix_ms)
    }

    fn add_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError> {
        self.store_operator(token)
    }

    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError> {
        self.find_operator(token_hash)
    }

    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        self.all_operators()
    }

    fn revoke_operator_token(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        self.revoke_operator(id, now_unix_ms)
    }

    fn touch_operator_token(
        &self,
        token_hash: &SecretHash,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.touch_operator(token_hash, now_unix_ms)
    }

    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.store_session(session)
    }

    fn session(&self, session_hash: &SecretHash) -> Result<Option<SessionRecord>, StoreError> {
        self.find_session(session_hash)
    }

    fn touch_session(&self, session_hash: &SecretHash, now_unix_ms: u64) -> Result<(), StoreError> {
        self.touch_session_at(session_hash, now_unix_ms)
    }

    fn delete_session(&self, session_hash: &SecretHash) -> Result<(), StoreError> {
        self.remove_session(session_hash)
    }

    fn purge_sessions(&self, now_unix_ms: u64, idle_ms: u64) -> Result<usize, StoreError> {
        self.purge(now_unix_ms, idle_ms)
    }

    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError> {
        if let Some(token) = self.find_operator(token_hash)? {
            return Ok(Some(Principal::Operator(token.name)));
        }
        let h = hex(token_hash);
        let prefix = self.device_prefix()?;
        let filter = Filter::new()
            .name_like_prefix(&prefix)
            .tag_eq(TOKEN, &lit(&h)?)
            .build();
        let found = self.client.search_experiments(&filter, MAX_DUPLICATES)?;
        Ok(found
            .iter()
            .filter(|e| e.name.starts_with(prefix.as_str()) && e.tag(TOKEN) == Some(h.as_str()))
            .find_map(|e| e.tag(DEVICE_ID))
            .map(|d| Principal::Device(d.to_owned())))
    }

    fn device(&self, device_id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        self.device_experiment(device_id)?
            .map(|e| device_of(&e))
            .transpose()
    }

    fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let prefix = self.device_prefix()?;
        let filter = Filter::new()
            .name_like_prefix(&prefix)
            .tag_eq(KIND, &lit_const(KIND_DEVICE))
            .build();
        let mut out = self
            .client
            .search_experiments(&filter, MAX_DEVICES)?
            .iter()
            .filter(|e| e.name.starts_with(prefix.as_str()))
            .map(device_of)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    fn touch_device(&self, device_id: &str, now_unix_ms: u64) -> Result<(), StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(());
        };
        let last = tag_u64(exp.tag(LAST_SEEN), LAST_SEEN).unwrap_or(0);
        if now_unix_ms > last {
            self.client.set_experiment_tag(
                &exp.experiment_id,
                LAST_SEEN,
                &now_unix_ms.to_string(),
            )?;
        }
        Ok(())
    }

    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError> {
        self.package_runs(device_id, package_id)?
            .first()
            .map(package_of)
            .transpose()
    }

    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        if !self
            .package_runs(&record.device_id, &record.package_id)?
            .is_empty()
        {
            return Ok(Recorded::AlreadyKnown);
        }
        let run = self.client.create_run(
            &self.packages,
            &format!("{}/{}", record.device_id, record.package_id),
            record.accepted_unix_ms,
            &[
                Tag::new(KIND, KIND_PACKAGE),
                Tag::new(DEVICE, &record.device_id),
                Tag::new(PACKAGE_ID, &record.package_id),
                Tag::new(RAW_KEY, &record.raw_key),
                Tag::new(ACCEPTED, record.accepted_unix_ms.to_string()),
            ],
        )?;
        // Another replica may have recorded the same package meanwhile: the canonical record
        // (earliest, then smallest run id) stays, a later one is removed again.
        let runs = self.package_runs(&record.device_id, &record.package_id)?;
        if runs
            .first()
            .is_some_and(|first| first.info.run_id != run.info.run_id)
        {
            self.client.delete_run(&run.info.run_id)?;
            return Ok(Recorded::AlreadyKnown);
        }
        if let Some(done) = record.processed_unix_ms {
            self.mark_processed(
                &record.device_id,
                &record.package_id,
                done,
                record.failed.clone(),
                &record.problems,
            )?;
        }
        self.bump_package_count(record)?;
        Ok(Recorded::New)
    }

    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError> {
        let runs = self.package_runs(device_id, package_id)?;
        if runs.is_empty() {
            return Err(StoreError::new(
                "mlflow",
                format!("no package {device_id}/{package_id}"),
            ));
        }
        let mut tags = vec![
            Tag::new(PROCESSED, now_unix_ms.to_string()),
            Tag::new(PROBLEMS, problems_json(problems)),
        ];
        if let Some(f) = &failed {
            tags.push(Tag::new(FAILED, cut(f, MAX_TAG_VALUE - 100)));
        }
        let status = if failed.is_some() {
            "FAILED"
        } else {
            "FINISHED"
        };
        // Every copy (duplicates from a replica race): none may stay pending.
        for run in &runs {
            self.client.log_batch(&run.info.run_id, &[], &[], &tags)?;
            self.client
                .update_run(&run.info.run_id, status, now_unix_ms)?;
        }
        Ok(())
    }

    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.packages.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_PACKAGE))
                .status_eq(&lit_const("RUNNING"))
                .build(),
            order_by: vec!["attributes.start_time ASC".into()],
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in self.client.search_runs(&query, MAX_PENDING)? {
            let record = package_of(&run)?;
            if seen.insert((record.device_id.clone(), record.package_id.clone())) {
                out.push(record);
            }
        }
        Ok(out)
    }

    fn put_drift_events(&self, events: &[DriftEventView]) -> Result<usize, StoreError> {
        let mut new = 0;
        for event in events {
            let epoch = event.epoch.as_deref();
            let existing = self.event_runs(&event.device_id, epoch, event.event_seq)?;
            if let Some(first) = existing.first() {
                // Stored before; if a crash left it without an id, give it one now.
                if metric_u64(first, ID).is_none() {
                    self.assign_id(first, event.unix_ms)?;
                    new += 1;
                }
                continue;
            }
            let mut stored = event.clone();
            stored.id = 0;
            stored.status = DriftEventStatus::Pending;
            stored.label = None;
            stored.note = None;
            stored.decided_by = None;
            stored.decided_unix_ms = None;
            let json = serde_json::to_string(&stored)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            if json.chars().count() > MAX_TAG_VALUE {
                return Err(StoreError::new(
                    "mlflow",
                    "drift event too large for an MLflow tag",
                ));
            }
            let name = match epoch {
                Some(epoch) => format!("{}/{epoch}/{}", event.device_id, event.event_seq),
                None => format!("{}/{}", event.device_id, event.event_seq),
            };
            let mut tags = vec![
                Tag::new(KIND, KIND_EVENT),
                Tag::new(DEVICE, &event.device_id),
                Tag::new(EVENT_SEQ, event.event_seq.to_string()),
                Tag::new(DETECTOR_HEX, hex(event.detector.as_bytes())),
                Tag::new(STATUS, status_str(DriftEventStatus::Pending)),
                Tag::new(EVENT, json),
            ];
            if let Some(epoch) = epoch {
                tags.push(Tag::new(EPOCH, epoch));
            }
            let run = self
                .client
                .create_run(&self.drift, &name, event.received_unix_ms, &tags)?;
            self.assign_id(&run, event.unix_ms)?;
            // Another replica may have stored the same (device, event_seq) meanwhile: the
            // canonical copy (smallest id) stays, the other is removed again.
            let copies = self.event_runs(&event.device_id, epoch, event.event_seq)?;
            if copies
                .first()
                .is_some_and(|first| first.info.run_id != run.info.run_id)
            {
                self.client.delete_run(&run.info.run_id)?;
                continue;
            }
            new += 1;
        }
        Ok(new)
    }

    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError> {
        let Some((_, view)) = self.find_event(id)? else {
            return Ok(None);
        };
        let mut views = [view];
        self.with_feedback(&mut views)?;
        let [view] = views;
        Ok(Some(view))
    }

    fn drift_events(
        &self,
        filter: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || after == u64::MAX {
            return Ok(out);
        }
        let mut f = Filter::new()
            .tag_eq(KIND, &lit_const(KIND_EVENT))
            .metric(ID, Cmp::Gt, after);
        if let Some(d) = &filter.device {
            match Literal::new(d) {
                Ok(l) => f = f.tag_eq(DEVICE, &l),
                // No device has such an id.
                Err(_) => return Ok(out),
            }
        }
        if let Some(d) = &filter.detector {
            f = f.tag_eq(DETECTOR_HEX, &lit(&hex(d.as_bytes()))?);
        }
        if let Some(s) = filter.status {
            f = f.tag_eq(STATUS, &lit(status_str(s))?);
        }
        if let Some(t) = filter.since {
            f = f.metric(UNIX_MS, Cmp::Ge, t);
        }
        if let Some(t) = filter.until {
            f = f.metric(UNIX_MS, Cmp::Lt, t);
        }
        let query = RunQuery {
            experiment_ids: vec![self.drift.clone()],
            filter: f.build(),
            order_by: vec![format!("metrics.`{ID}` ASC")],
        };
        let page = u32::try_from(limit).unwrap_or(u32::MAX);
        let mut token: Option<String> = None;
        loop {
            let (runs, next) = self
                .client
                .search_runs_page(&query, page, token.as_deref())?;
            for run in &runs {
                let view = self.event_view(run)?;
                // The status tag can lag the decision param after a crash: the param decides.
                if view.id > after && filter.matches(&view) {
                    out.push(view);
                    if out.len() >= limit {
                        self.with_feedback(&mut out)?;
                        return Ok(out);
                    }
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => {
                    self.with_feedback(&mut out)?;
                    return Ok(out);
                }
            }
        }
    }

    fn decide_drift_event(
        &self,
        id: u64,
        decision: &Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError> {
        let Some((run, view)) = self.find_event(id)? else {
            return Ok(DecideOutcome::NotFound);
        };
        if view.status != DriftEventStatus::Pending {
            self.repair_decided(&run, &view)?;
            return Ok(DecideOutcome::AlreadyDecided(view));
        }
        let nonce =
            hex(&crate::secret::random_bytes::<8>().map_err(|e| StoreError::new("mlflow", e))?);
        // The note and the feedback go first, under this attempt's nonce, so the winning
        // decision is never without them (a loser's are removed again).
        let feedback_json = serde_json::to_string(feedback)
            .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        let mut tags = vec![Tag::new(format!("{FEEDBACK_PREFIX}{nonce}"), feedback_json)];
        if let Some(note) = &decision.note {
            tags.push(Tag::new(format!("{NOTE_PREFIX}{nonce}"), note));
        }
        if tags.iter().any(|t| t.value.chars().count() > MAX_TAG_VALUE) {
            return Err(StoreError::new("mlflow", "decision too large for MLflow"));
        }
        self.client.log_batch(&run.info.run_id, &[], &[], &tags)?;
        let stored = StoredDecision {
            status: decision.status,
            label: decision.label.clone(),
            by: decision.by.clone(),
            unix_ms: decision.unix_ms,
            nonce: nonce.clone(),
        };
        let value = serde_json::to_string(&stored)
            .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        if value.chars().count() > MAX_PARAM_VALUE {
            return Err(StoreError::new("mlflow", "decision too large for MLflow"));
        }
        match self
            .client
            .claim_param(&run.info.run_id, DECISION, &value)?
        {
            ParamOutcome::Stored => {
                self.client
                    .set_tag(&run.info.run_id, STATUS, status_str(decision.status))?;
                self.append_items(
                    &view.device_id,
                    &with_sources(id, feedback),
                    decision.unix_ms,
                )?;
                let mut decided = view;
                decided.status = decision.status;
                decided.label = decision.label.clone();
                decided.note = decision.note.clone();
                decided.decided_by = Some(decision.by.clone());
                decided.decided_unix_ms = Some(decision.unix_ms);
                let mut views = [decided];
                self.with_feedback(&mut views)?;
                let [decided] = views;
                Ok(DecideOutcome::Decided(decided))
            }
            ParamOutcome::Taken => {
                for t in &tags {
                    // Best effort: a left-over tag of a lost attempt is never read.
                    if let Err(e) = self.client.delete_tag(&run.info.run_id, &t.key) {
                        tracing::warn!(error = %e, "could not remove a lost decision's tag");
                    }
                }
                let run = self
                    .client
                    .run(&run.info.run_id)?
                    .ok_or_else(|| StoreError::new("mlflow", "drift event run vanished"))?;
                let current = self.event_view(&run)?;
                Ok(DecideOutcome::AlreadyDecided(current))
            }
        }
    }

    fn append_feedback(
        &self,
        device_id: &str,
        verdicts: &[FeedbackVerdict],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let items: Vec<_> = verdicts.iter().map(|v| (v.clone(), None)).collect();
        self.append_items(device_id, &items, now_unix_ms)
    }

    fn feedback_after(
        &self,
        device_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(vec![]);
        };
        let acked = metric_u64(&run, ACKED).unwrap_or(0);
        let from = after.max(acked);
        let mut sources = HashSet::new();
        let mut out = Vec::new();
        for stored in queue_items(&run)? {
            // A decision's item queued twice (a repair racing the decider) is delivered once.
            let first = stored
                .src
                .as_ref()
                .is_none_or(|s| sources.insert(s.clone()));
            if stored.item.id > from && first {
                out.push(stored.item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn record_feedback_results(
        &self,
        device_id: &str,
        results: &[FeedbackResult],
    ) -> Result<usize, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(0);
        };
        let last = queue_items(&run)?.last().map_or(0, |s| s.item.id);
        let mut new = 0;
        for r in results {
            let key = format!("{RESULT_PARAM_PREFIX}{}", r.id);
            if r.id == 0 || r.id > last || run.param(&key).is_some() {
                continue;
            }
            let value = serde_json::to_string(r)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            if value.chars().count() > MAX_PARAM_VALUE {
                return Err(StoreError::new("mlflow", "feedback result too large"));
            }
            // Write-once: a result reported before (by this or another replica) stands.
            if let ParamOutcome::Stored = self.client.claim_param(&run.info.run_id, &key, &value)? {
                new += 1;
            }
        }
        Ok(new)
    }

    fn ack_feedback(&self, device_id: &str, up_to: u64) -> Result<u64, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(0);
        };
        let acked = metric_u64(&run, ACKED).unwrap_or(0);
        let last = queue_items(&run)?.last().map_or(0, |s| s.item.id);
        let new = acked.max(up_to.min(last));
        if new > acked {
            // step = the watermark: MLflow's latest value is the one with the largest step, so
            // concurrent acks can never move it backwards.
            self.client.log_metric(
                &run.info.run_id,
                &Metric {
                    key: ACKED.into(),
                    value: new as f64,
                    timestamp: crate::domain::now_unix_ms() as i64,
                    step: i64::try_from(new).unwrap_or(i64::MAX),
                },
            )?;
        }
        Ok(new)
    }

    fn put_predictions(&self, samples: &[PredictionView]) -> Result<usize, StoreError> {
        let mut packages: Vec<((&str, &str), Vec<&PredictionView>)> = Vec::new();
        for sample in samples {
            let id = (sample.device_id.as_str(), sample.package_id.as_str());
            match packages.iter_mut().find(|(p, _)| *p == id) {
                Some((_, list)) => list.push(sample),
                None => packages.push((id, vec![sample])),
            }
        }
        let mut new = 0;
        for (_, list) in &packages {
            new += self.put_package_predictions(list)?;
        }
        Ok(new)
    }

    fn predictions(
        &self,
        filter: &PredictionFilter,
        after: Option<&PredictionCursor>,
        limit: usize,
    ) -> Result<Vec<PredictionView>, StoreError> {
        let mut out: Vec<PredictionView> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut f = Filter::new().tag_eq(KIND, &lit_const(KIND_PREDICTION));
        for (key, value) in [(DEVICE, &filter.device), (CLASS, &filter.class)] {
            if let Some(v) = value {
                match Literal::new(v) {
                    Ok(l) => f = f.tag_eq(key, &l),
                    // No sample has such a device id or class.
                    Err(_) => return Ok(out),
                }
            }
        }
        f = f.metric(UNIX_MS, Cmp::Ge, filter.since.unwrap_or(0));
        // `< until`, and `<= cursor time` (ties at the cursor's ms are sorted by key below).
        let cursor_bound = after.map(|c| c.unix_ms.saturating_add(1));
        if let Some(bound) = [filter.until, cursor_bound].into_iter().flatten().min() {
            f = f.metric(UNIX_MS, Cmp::Lt, bound);
        }
        let query = RunQuery {
            experiment_ids: vec![self.predictions.clone()],
            filter: f.build(),
            order_by: vec![format!("metrics.`{UNIX_MS}` DESC")],
        };
        // MLflow orders by time only; samples of one millisecond come in any order. So read
        // until the page is full *and* the time has moved past the page's oldest sample, then
        // sort by (time, key) and cut: the page is then exact, ties included.
        let page = u32::try_from(limit.max(100)).unwrap_or(u32::MAX);
        let mut seen: HashSet<String> = HashSet::new();
        let mut scanned = 0;
        let mut token: Option<String> = None;
        'pages: loop {
            let (runs, next) = self
                .client
                .search_runs_page(&query, page, token.as_deref())?;
            for run in &runs {
                scanned += 1;
                let sample = prediction_of(run)?;
                if out.len() >= limit && out.last().is_some_and(|l| sample.unix_ms < l.unix_ms) {
                    break 'pages;
                }
                if after.is_some_and(|c| !c.precedes(&sample)) || !filter.matches(&sample) {
                    continue;
                }
                // A copy left by two replicas processing one package is listed once.
                if seen.insert(sample.key.clone()) {
                    out.push(sample);
                }
            }
            match next {
                Some(t) if scanned < MAX_PREDICTION_SCAN => token = Some(t),
                _ => break,
            }
        }
        out.sort_by(|a, b| (b.unix_ms, &b.key).cmp(&(a.unix_ms, &a.key)));
        out.truncate(limit);
        Ok(out)
    }

    fn device_settings(&self, device_id: &str) -> Result<Option<DeviceSettings>, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(None);
        };
        let mut settings: DeviceSettings = match exp.tag(SETTINGS) {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| corrupt(format!("settings of {device_id}: {e}")))?,
            None => DeviceSettings::default(),
        };
        if let Some(json) = exp.tag(DEVICE_CONFIG) {
            settings.config = serde_json::from_str(json)
                .map_err(|e| corrupt(format!("configuration of {device_id}: {e}")))?;
        }
        Ok(Some(settings))
    }

    fn set_device_settings(
        &self,
        device_id: &str,
        settings: &DeviceSettings,
    ) -> Result<bool, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(false);
        };
        // The configuration layer has a tag of its own: with the tags it would not fit in one.
        let config = serde_json::to_string(&settings.config).map_err(corrupt)?;
        let rest = DeviceSettings {
            config: None,
            ..settings.clone()
        };
        let json = serde_json::to_string(&rest).map_err(corrupt)?;
        if json.chars().count() > MAX_TAG_VALUE || config.chars().count() > MAX_TAG_VALUE {
            return Err(StoreError::new(
                "mlflow",
                "device settings exceed one MLflow tag",
            ));
        }
        if exp.tag(DEVICE_CONFIG).unwrap_or("null") != config {
            self.client
                .set_experiment_tag(&exp.experiment_id, DEVICE_CONFIG, &config)?;
        }
        self.client
            .set_experiment_tag(&exp.experiment_id, SETTINGS, &json)?;
        Ok(true)
    }

    fn replace_device_token(
        &self,
        device_id: &str,
        new_hash: Option<SecretHash>,
    ) -> Result<bool, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(false);
        };
        // Revoked: a hash no token has (finding a preimage of all zeros is infeasible).
        let hash = new_hash.unwrap_or([0; 32]);
        self.client
            .set_experiment_tag(&exp.experiment_id, TOKEN, &hex(&hash))?;
        Ok(true)
    }

    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError> {
        let mut runs = self.release_runs(&release.name, &release.version)?;
        runs.sort_by_key(|r| r.info.start_time);
        if let Some(run) = runs.first() {
            // A publish that failed after its run was made is finished by the repeat.
            self.register(release, &run.info.run_id)?;
            return Ok(Recorded::AlreadyKnown);
        }
        let json = serde_json::to_string(release).map_err(corrupt)?;
        let chars: Vec<char> = json.chars().collect();
        let mut tags = vec![
            Tag::new(KIND, KIND_RELEASE),
            Tag::new(RELEASE_NAME, release.name.clone()),
            Tag::new(RELEASE_VERSION, release.version.clone()),
        ];
        for (i, chunk) in chars.chunks(MAX_TAG_VALUE).enumerate() {
            tags.push(Tag::new(
                format!("{RECORD_PREFIX}{i}"),
                chunk.iter().collect::<String>(),
            ));
        }
        let run_name = format!("{}-{}", release.name, release.version);
        let run =
            self.client
                .create_run(&self.releases, &run_name, release.uploaded_unix_ms, &tags)?;
        // Two replicas recording the same release at once both create a run; readers take the
        // oldest, and both describe the same verified file (same name, version and SHA-256
        // checked by the domain), so either answer is right.
        self.register(release, &run.info.run_id)?;
        Ok(Recorded::New)
    }

    fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        let mut runs = self.release_runs(name, version)?;
        runs.sort_by_key(|r| r.info.start_time);
        runs.first().map(release_of).transpose()
    }

    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.releases.clone()],
            filter: Filter::new().tag_eq(KIND, &lit_const(KIND_RELEASE)).build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_PENDING)?;
        runs.sort_by_key(|r| r.info.start_time);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in &runs {
            let record = release_of(run)?;
            if seen.insert((record.name.clone(), record.version.clone())) {
                out.push(record);
            }
        }
        out.sort_by(|a, b| {
            (a.name.as_str(), a.uploaded_unix_ms).cmp(&(b.name.as_str(), b.uploaded_unix_ms))
        });
        Ok(out)
    }

    fn set_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let json = serde_json::to_string(rollout).map_err(corrupt)?;
        self.client.set_experiment_tag(
            &self.releases,
            &format!("{ROLLOUT_PREFIX}{}", rollout.group),
            &json,
        )?;
        // The tag above is what devices are served from; the alias mirrors it in the model
        // registry for people and tools that read MLflow.
        let mut runs = self.release_runs(&rollout.name, &rollout.version)?;
        runs.sort_by_key(|r| r.info.start_time);
        if let Some(run) = runs.first() {
            let release = release_of(run)?;
            let version = self.register(&release, &run.info.run_id)?;
            let alias = if rollout.percent >= 100 {
                format!("rollout-{}", rollout.group)
            } else {
                format!("canary-{}", rollout.group)
            };
            self.client
                .set_model_alias(&self.registry_name(&rollout.name), &alias, &version)?;
        }
        Ok(())
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.releases_tags(ROLLOUT_PREFIX, "rollout")
    }

    fn grant_release(&self, device_id: &str, name: &str, version: &str) -> Result<(), StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(());
        };
        let key = format!("{GRANT_PREFIX}{name}/{version}");
        if exp.tag(&key).is_none() {
            let now = crate::domain::now_unix_ms().to_string();
            self.client
                .set_experiment_tag(&exp.experiment_id, &key, &now)?;
        }
        Ok(())
    }

    fn release_granted(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let key = format!("{GRANT_PREFIX}{name}/{version}");
        Ok(self
            .device_experiment(device_id)?
            .is_some_and(|exp| exp.tag(&key).is_some()))
    }

    fn set_scope_config(&self, layer: &ConfigLayer) -> Result<(), StoreError> {
        let json = serde_json::to_string(layer).map_err(corrupt)?;
        if json.chars().count() > MAX_TAG_VALUE {
            return Err(StoreError::new(
                "mlflow",
                "configuration too large for an MLflow tag",
            ));
        }
        self.client.set_experiment_tag(
            &self.releases,
            &format!("{SCOPE_CONFIG_PREFIX}{}", layer.scope),
            &json,
        )?;
        Ok(())
    }

    fn scope_configs(&self) -> Result<Vec<ConfigLayer>, StoreError> {
        self.releases_tags(SCOPE_CONFIG_PREFIX, "configuration")
    }

    fn put_metrics(
        &self,
        device_id: &str,
        package_id: &str,
        unix_ms: u64,
        points: &[(String, f64)],
    ) -> Result<(), StoreError> {
        let Some(run) = self.package_runs(device_id, package_id)?.into_iter().next() else {
            return Err(StoreError::new(
                "mlflow",
                format!("no run of package {device_id}/{package_id}"),
            ));
        };
        let timestamp = i64::try_from(unix_ms).unwrap_or(i64::MAX);
        let metric = |key: &str, value: f64| Metric {
            key: key.to_owned(),
            value,
            timestamp,
            step: 0,
        };
        // The search key goes last: a run that searches find has all its points. Logging the
        // same point again is idempotent (MLflow skips an identical key, value, time and step,
        // and a run's latest value of a key is one point either way).
        let metrics: Vec<Metric> = points
            .iter()
            .map(|(k, v)| metric(k, *v))
            .chain(std::iter::once(metric(METRICS_AT, unix_ms as f64)))
            .collect();
        for chunk in metrics.chunks(MAX_BATCH_METRICS) {
            self.client.log_batch(&run.info.run_id, chunk, &[], &[])?;
        }
        Ok(())
    }

    fn metric_series(
        &self,
        device_id: &str,
        key: &str,
        since: u64,
        until: u64,
        max_points: usize,
    ) -> Result<Vec<(u64, f64)>, StoreError> {
        let Some(query) = self.metric_runs(device_id, since, until)? else {
            return Ok(Vec::new());
        };
        let mut points = Vec::new();
        let mut scanned = 0;
        let mut token: Option<String> = None;
        while scanned < MAX_SERIES_RUNS {
            let (runs, next) =
                self.client
                    .search_runs_page(&query, METRIC_PAGE, token.as_deref())?;
            scanned += runs.len();
            for run in &runs {
                if let (Some(at), Some(value)) = (metric_u64(run, METRICS_AT), run.metric(key)) {
                    points.push((at, value));
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // Searched newest first; a chart wants time order.
        points.reverse();
        Ok(thin(points, max_points))
    }

    fn metric_keys(&self, device_id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let Some(query) = self.metric_runs(device_id, 0, u64::MAX)? else {
            return Ok(Vec::new());
        };
        let (runs, _) = self.client.search_runs_page(&query, KEY_RUNS, None)?;
        let keys: std::collections::BTreeSet<&str> = runs
            .iter()
            .flat_map(|r| r.data.metrics.iter().map(|m| m.key.as_str()))
            .filter(|k| !k.starts_with("sphere."))
            .collect();
        Ok(keys.into_iter().take(limit).map(str::to_owned).collect())
    }
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

    /// The search of `device_id`'s package runs with metric points in `since..until`, newest
    /// first; `None` when nothing can match (an id that is no literal, an empty range).
    fn metric_runs(
        &self,
        device_id: &str,
        since: u64,
        until: u64,
    ) -> Result<Option<RunQuery>, StoreError> {
        let Ok(device) = Literal::new(device_id) else {
            return Ok(None);
        };
        if since >= until {
            return Ok(None);
        }
        let mut filter = Filter::new()
            .tag_eq(KIND, &lit_const(KIND_PACKAGE))
            .tag_eq(DEVICE, &device)
            .metric(METRICS_AT, Cmp::Ge, since);
        if until != u64::MAX {
            filter = filter.metric(METRICS_AT, Cmp::Lt, until);
        }
        Ok(Some(RunQuery {
            experiment_ids: vec![self.packages.clone()],
            filter: filter.build(),
            order_by: vec![format!("metrics.`{METRICS_AT}` DESC")],
        }))
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
        for v in [
            KIND_DEVICE,
            KIND_KEY,
            KIND_PACKAGE,
            KIND_EVENT,
            KIND_QUEUE,
            "RUNNING",
        ] {
            assert_eq!(lit_const(v).as_str(), v);
        }
        let h = [0xab; 32];
        assert_eq!(unhex32(&hex(&h)), Some(h));
        assert_eq!(unhex32("zz"), None);
        assert_eq!(unhex32(&"g".repeat(64)), None);
    }

    #[test]
    fn problems_fit_in_a_tag() {
        let many: Vec<String> = (0..500)
            .map(|i| format!("problem {i}: {}", "x".repeat(100)))
            .collect();
        let json = problems_json(&many);
        assert!(json.chars().count() <= MAX_TAG_VALUE);
        let back: Vec<String> = serde_json::from_str(&json).unwrap();
        assert!(back.last().unwrap().contains("more problems"), "{back:?}");
        assert_eq!(problems_json(&[]), "[]");
        let huge = vec!["y".repeat(20_000)];
        assert!(problems_json(&huge).chars().count() <= MAX_TAG_VALUE);
    }
}
