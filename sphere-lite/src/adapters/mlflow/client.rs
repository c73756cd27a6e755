//! A thin, typed, blocking client for the parts of the MLflow 3.x REST API the tracking
//! adapter uses (experiments, runs, tags, params, metrics, search with pagination).
//!
//! Why a module of its own: the mapping in [`super::tracking`] should read as domain logic, not
//! as HTTP plumbing. Every request here sends `Content-Type: application/json` (MLflow refuses
//! JSON POSTs without it) and never an `Origin` header (MLflow's cross-origin check would refuse
//! it); answers are read up to [`MAX_RESPONSE_BYTES`] only, and MLflow's error bodies
//! (`{"error_code","message"}`) become [`MlflowError::Api`].

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Largest MLflow answer read, in bytes. Search pages are bounded by `max_results`; a single
/// run's params (a device's feedback queue, an enrollment key's uses) stay far below this.
pub const MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;

/// Longest part of an MLflow error message kept in an error (they can echo long values).
const MAX_MESSAGE_CHARS: usize = 300;

/// Page size of search calls.
pub const PAGE_SIZE: u32 = 1000;

/// A failed MLflow call.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// MLflow could not be reached (connection refused, timeout, TLS).
    #[error("MLflow unreachable ({endpoint}): {message}")]
    Transport {
        /// The endpoint path called.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// MLflow answered with an error.
    #[error("MLflow {endpoint} answered {status} {code}: {message}")]
    Api {
        /// The endpoint path called.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// MLflow's `error_code`, e.g. `RESOURCE_ALREADY_EXISTS`.
        code: String,
        /// MLflow's message (shortened).
        message: String,
    },
    /// The answer was too large or not the expected JSON.
    #[error("MLflow {endpoint}: unexpected answer: {message}")]
    Response {
        /// The endpoint path called.
        endpoint: String,
        /// What was wrong with it.
        message: String,
    },
}

impl MlflowError {
    fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// `RESOURCE_ALREADY_EXISTS` (e.g. an experiment name that is taken).
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some("RESOURCE_ALREADY_EXISTS")
    }

    /// `RESOURCE_DOES_NOT_EXIST` (unknown run or experiment).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("RESOURCE_DOES_NOT_EXIST")
    }

    /// A failure on the server's side (a 5xx), which a repeat may not meet. A transport
    /// failure is not one: it may be a 30 s timeout, not worth tripling.
    pub fn is_transient(&self) -> bool {
        matches!(self, MlflowError::Api { status, .. } if *status >= 500)
    }

    /// `INVALID_PARAMETER_VALUE` (among others: a param logged again with another value).
    pub fn is_invalid_parameter(&self) -> bool {
        self.code() == Some("INVALID_PARAMETER_VALUE")
    }
}

/// Attempts at a read before its error is returned.
const READ_ATTEMPTS: u32 = 3;

/// Run an idempotent read, again after a short pause when the server failed on its side (a
/// 5xx) or the connection broke. MLflow answers the odd concurrent request with a 500 that a
/// repeat does not get (measured: `runs/search` racing its own lazy import of
/// `mlflow.server.auth` under six parallel requests), and a proxy in front of it may answer
/// 502/503 while it restarts; a read is safe to repeat, a write is not (it is checked by the
/// caller instead, as [`Client::claim_param`] does).
fn retry_read<T>(mut read: impl FnMut() -> Result<T, MlflowError>) -> Result<T, MlflowError> {
    let mut attempt = 1;
    loop {
        match read() {
            Err(e) if attempt < READ_ATTEMPTS && e.is_transient() => {
                tracing::debug!(error = %e, attempt, "MLflow read failed; trying again");
                std::thread::sleep(Duration::from_millis(50 << attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A key/value tag (runs and experiments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: String,
    /// Value (MLflow omits empty values).
    #[serde(default)]
    pub value: String,
}

impl Tag {
    /// A tag `key` = `value`.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run param (write-once per run: MLflow refuses another value for the same key).
pub type Param = Tag;

/// A metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Key.
    pub key: String,
    /// Value.
    pub value: f64,
    /// Unix ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Step; MLflow's "latest value" of a key is the one with the largest step.
    #[serde(default)]
    pub step: i64,
}

/// An experiment as MLflow returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    /// Id.
    pub experiment_id: String,
    /// Unique name.
    pub name: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Experiment {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.tags, key)
    }

    /// Whether it is not deleted.
    pub fn is_active(&self) -> bool {
        self.lifecycle_stage.is_empty() || self.lifecycle_stage == "active"
    }
}

fn find<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

/// Run metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    /// Id.
    pub run_id: String,
    /// `RUNNING`, `SCHEDULED`, `FINISHED`, `FAILED` or `KILLED`.
    #[serde(default)]
    pub status: String,
    /// Start time (Unix ms), as given at creation.
    #[serde(default)]
    pub start_time: i64,
    /// Where the run's artifacts live (`mlflow-artifacts:/<experiment>/<run>/artifacts` when
    /// the server proxies artifacts, see [`super::artifacts`]).
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted` (`runs/get` returns deleted runs too).
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// Run contents.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Params.
    #[serde(default)]
    pub params: Vec<Param>,
    /// Latest value per metric key.
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

/// A run.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// Metadata.
    pub info: RunInfo,
    /// Tags, params, latest metrics.
    #[serde(default)]
    pub data: RunData,
}

impl Run {
    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        find(&self.data.tags, key)
    }

    /// The value of param `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        find(&self.data.params, key)
    }

    /// The latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    }
}

/// Result of logging a write-once param.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamOutcome {
    /// Stored now, or it was already stored with exactly this value.
    Stored,
    /// The run already has this key with another value (someone else wrote it first).
    Taken,
}

/// A search of runs: which experiments, filter, order.
#[derive(Debug, Clone, Serialize)]
pub struct RunQuery {
    /// Experiments searched.
    pub experiment_ids: Vec<String>,
    /// MLflow filter string (build it with [`super::filter`]).
    pub filter: String,
    /// e.g. `["metrics.`sphere.id` ASC"]`.
    pub order_by: Vec<String>,
}

/// The MLflow REST client.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// Requests sent so far ([`Client::calls`]).
    calls: AtomicU64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

impl Client {
    /// A client for the MLflow server at `base_url` (`http(s)://host:port`, optionally with a
    /// path prefix).
    pub fn new(base_url: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .max_idle_connections_per_host(16)
            .build();
        Client {
            agent,
            base: base_url.trim_end_matches('/').to_owned(),
            calls: AtomicU64::new(0),
        }
    }

    /// How many requests this client has sent (answered or not): what a test or benchmark
    /// counts to see how many MLflow calls an operation costs.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<T, MlflowError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (status, response) = match result {
            Ok(r) => (r.status(), r),
            Err(ureq::Error::Status(code, r)) => (code, r),
            Err(e) => {
                return Err(MlflowError::Transport {
                    endpoint: endpoint.to_owned(),
                    message: shorten(&e.to_string()),
                });
            }
        };
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| MlflowError::Transport {
                endpoint: endpoint.to_owned(),
                message: format!("reading the answer: {e}"),
            })?;
        if body.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(MlflowError::Response {
                endpoint: endpoint.to_owned(),
                message: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
        if !(200..300).contains(&status) {
            let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            let (code, message) = match parsed {
                Some(e) => (e.error_code, shorten(&e.message)),
                None => (
                    String::new(),
                    shorten(&String::from_utf8_lossy(&body).replace(['\n', '\r'], " ")),
                ),
            };
            return Err(MlflowError::Api {
                endpoint: endpoint.to_owned(),
                status,
                code,
                message,
            });
        }
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(body).map_err(|e| MlflowError::Response {
            endpoint: endpoint.to_owned(),
            message: format!("not the expected JSON: {e}"),
        })
    }

    fn post<T: DeserializeOwned>(&self, endpoint: &str, body: &Value) -> Result<T, MlflowError> {
        let result = self
            .agent
            .post(&self.url(endpoint))
            .set("Content-Type", "application/json")
            .set("Accept", "application/json")
            .send_string(&body.to_string());
        self.answer(endpoint, result)
    }

    /// A read-only POST (the search endpoints): retried like [`Client::get`].
    fn post_read<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Value,
    ) -> Result<T, MlflowError> {
        retry_read(|| self.post(endpoint, body))
    }

    fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        retry_read(|| self.get_once(endpoint, query))
    }

    fn get_once<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let mut request = self
            .agent
            .get(&self.url(endpoint))
            .set("Accept", "application/json");
        for (k, v) in query {
            request = request.query(k, v);
        }
        self.answer(endpoint, request.call())
    }

    /// `experiments/create`: the id of the new experiment. A taken name is
    /// [`MlflowError::is_already_exists`] (names are unique, also against deleted experiments).
    pub fn create_experiment(&self, name: &str, tags: &[Tag]) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            experiment_id: String,
        }
        let created: Created =
            self.post("experiments/create", &json!({"name": name, "tags": tags}))?;
        Ok(created.experiment_id)
    }

    /// `experiments/get-by-name`; `None` if there is none (deleted ones are returned: check
    /// [`Experiment::is_active`]).
    pub fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        #[derive(Deserialize)]
        struct Got {
            experiment: Experiment,
        }
        match self.get::<Got>("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(g) => Ok(Some(g.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `experiments/search` (active only), every page, at most `cap` experiments.
    pub fn search_experiments(
        &self,
        filter: &str,
        cap: usize,
    ) -> Result<Vec<Experiment>, MlflowError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            experiments: Vec<Experiment>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"max_results": PAGE_SIZE, "filter": filter, "view_type": "ACTIVE_ONLY"});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let page: Page = self.post_read("experiments/search", &body)?;
            out.extend(page.experiments);
            if out.len() > cap {
                return Err(MlflowError::Response {
                    endpoint: "experiments/search".into(),
                    message: format!("more than {cap} experiments match {filter:?}"),
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `experiments/set-experiment-tag` (overwrites).
    pub fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        self.post::<Value>(
            "experiments/set-experiment-tag",
            &json!({"experiment_id": experiment_id, "key": key, "value": value}),
        )
        .map(drop)
    }

    /// `runs/create` with `tags`, started at `start_time` (Unix ms); status `RUNNING`.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: u64,
        tags: &[Tag],
    ) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            run: Run,
        }
        let created: Created = self.post(
            "runs/create",
            &json!({"experiment_id": experiment_id, "run_name": run_name,
                    "start_time": start_time, "tags": tags}),
        )?;
        Ok(created.run)
    }

    /// `runs/get`; `None` for an unknown run.
    pub fn run(&self, run_id: &str) -> Result<Option<Run>, MlflowError> {
        #[derive(Deserialize)]
        struct Got {
            run: Run,
        }
        match self.get::<Got>("runs/get", &[("run_id", run_id)]) {
            Ok(g) => Ok(Some(g.run)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of `runs/search` (active runs): the runs and the next page's token.
    pub fn search_runs_page(
        &self,
        query: &RunQuery,
        max_results: u32,
        page_token: Option<&str>,
    ) -> Result<(Vec<Run>, Option<String>), MlflowError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            runs: Vec<Run>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut body = json!({
            "experiment_ids": query.experiment_ids, "filter": query.filter,
            "order_by": query.order_by, "max_results": max_results.clamp(1, 50_000),
            "run_view_type": "ACTIVE_ONLY",
        });
        if let Some(t) = page_token {
            body["page_token"] = json!(t);
        }
        let page: Page = self.post_read("runs/search", &body)?;
        Ok((page.runs, page.next_page_token.filter(|t| !t.is_empty())))
    }

    /// Every page of `runs/search`, at most `cap` runs (more is an error, not a truncation).
    pub fn search_runs(&self, query: &RunQuery, cap: usize) -> Result<Vec<Run>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (runs, next) = self.search_runs_page(query, PAGE_SIZE, token.as_deref())?;
            out.extend(runs);
            if out.len() > cap {
                return Err(MlflowError::Response {
                    endpoint: "runs/search".into(),
                    message: format!("more than {cap} runs match {:?}", query.filter),
                });
            }
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `metrics/get-history` of `key` in run `run_id`: every value logged, at most `cap`
    /// (more is an error, not a truncation).
    pub fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        cap: usize,
    ) -> Result<Vec<Metric>, MlflowError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            metrics: Vec<Metric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let page_size = PAGE_SIZE.to_string();
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", page_size.as_str()),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t.as_str()));
            }
            let page: Page = self.get("metrics/get-history", &query)?;
            out.extend(page.metrics);
            if out.len() > cap {
                return Err(MlflowError::Response {
                    endpoint: "metrics/get-history".into(),
                    message: format!("more than {cap} values of {key:?}"),
                });
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// `runs/log-batch`: metrics, params and tags in one call (at most 1000 metrics, 100
    /// params, 100 tags per call, as MLflow allows).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<(), MlflowError> {
        self.post::<Value>(
            "runs/log-batch",
            &json!({"run_id": run_id, "metrics": metrics, "params": params, "tags": tags}),
        )
        .map(drop)
    }

    /// `runs/log-parameter` as a write-once claim: [`ParamOutcome::Taken`] when the run has
    /// `key` with another value already. MLflow enforces this with the params table's primary
    /// key (run, key) in its database, so of several concurrent writers of different values
    /// exactly one gets `Stored`.
    pub fn claim_param(
        &self,
        run_id: &str,
        key: &str,
        value: &str,
    ) -> Result<ParamOutcome, MlflowError> {
        match self.post::<Value>(
            "runs/log-parameter",
            &json!({"run_id": run_id, "key": key, "value": value}),
        ) {
            Ok(_) => Ok(ParamOutcome::Stored),
            Err(e) if e.is_invalid_parameter() => {
                // Tell "another value is there" apart from other invalid input by looking.
                match self.run(run_id)?.as_ref().and_then(|r| r.param(key)) {
                    Some(v) if v == value => Ok(ParamOutcome::Stored),
                    Some(_) => Ok(ParamOutcome::Taken),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `runs/log-metric`.
    pub fn log_metric(&self, run_id: &str, metric: &Metric) -> Result<(), MlflowError> {
        self.post::<Value>(
            "runs/log-metric",
            &json!({"run_id": run_id, "key": metric.key, "value": metric.value,
                    "timestamp": metric.timestamp, "step": metric.step}),
        )
        .map(drop)
    }

    /// `runs/set-tag` (overwrites).
    pub fn set_tag(&self, run_id: &str, key: &str, value: &str) -> Result<(), MlflowError> {
        self.post::<Value>(
            "runs/set-tag",
            &json!({"run_id": run_id, "key": key, "value": value}),
        )
        .map(drop)
    }

    /// `runs/delete-tag`.
    pub fn delete_tag(&self, run_id: &str, key: &str) -> Result<(), MlflowError> {
        self.post::<Value>("runs/delete-tag", &json!({"run_id": run_id, "key": key}))
            .map(drop)
    }

    /// `runs/update`: status (`FINISHED`, `FAILED`, ...) and end time.
    pub fn update_run(&self, run_id: &str, status: &str, end_time: u64) -> Result<(), MlflowError> {
        self.post::<Value>(
            "runs/update",
            &json!({"run_id": run_id, "status": status, "end_time": end_time}),
        )
        .map(drop)
    }

    /// `runs/delete` (soft delete: searches no longer return it).
    pub fn delete_run(&self, run_id: &str) -> Result<(), MlflowError> {
        self.post::<Value>("runs/delete", &json!({"run_id": run_id}))
            .map(drop)
    }

    /// `registered-models/create`; a model that exists already is fine.
    pub fn ensure_registered_model(&self, name: &str, tags: &[Tag]) -> Result<(), MlflowError> {
        match self.post::<Value>(
            "registered-models/create",
            &json!({"name": name, "tags": tags}),
        ) {
            Err(e) if e.is_already_exists() => Ok(()),
            other => other.map(drop),
        }
    }

    /// `model-versions/search` for the versions of registered model `name` made from run
    /// `run_id` (both [`super::filter::Literal`]-safe, checked by the caller).
    pub fn model_versions_of_run(
        &self,
        name: &super::filter::Literal,
        run_id: &super::filter::Literal,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        #[derive(Deserialize)]
        struct Found {
            #[serde(default)]
            model_versions: Vec<ModelVersion>,
        }
        let filter = format!("name='{}' and run_id='{}'", name.as_str(), run_id.as_str());
        let found: Found = self.get("model-versions/search", &[("filter", &filter)])?;
        Ok(found.model_versions)
    }

    /// `model-versions/create` from run `run_id`: the new version's number.
    pub fn create_model_version(
        &self,
        name: &str,
        run_id: &str,
        tags: &[Tag],
        description: &str,
    ) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Created {
            model_version: ModelVersion,
        }
        let created: Created = self.post(
            "model-versions/create",
            &json!({"name": name, "source": format!("runs:/{run_id}/model"), "run_id": run_id,
                    "tags": tags, "description": description}),
        )?;
        Ok(created.model_version.version)
    }

    /// `registered-models/alias`: point `alias` of model `name` at `version` (moving it).
    pub fn set_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<(), MlflowError> {
        self.post::<Value>(
            "registered-models/alias",
            &json!({"name": name, "alias": alias, "version": version}),
        )
        .map(drop)
    }
}

/// A file or folder in a run's artifacts, as the artifact proxy lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactFile {
    /// Path relative to the listed folder.
    pub path: String,
    /// Whether it is a folder.
    #[serde(default)]
    pub is_dir: bool,
    /// Size in bytes (files only).
    #[serde(default)]
    pub file_size: Option<u64>,
}

impl Client {
    fn artifact_url(&self, path: &super::artifacts::ProxyPath) -> String {
        format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            path.as_str()
        )
    }

    /// Store `bytes` as the artifact at `path` through MLflow's artifact proxy
    /// (`PUT /api/2.0/mlflow-artifacts/artifacts/<path>`; overwrites).
    pub fn put_artifact(
        &self,
        path: &super::artifacts::ProxyPath,
        bytes: &[u8],
    ) -> Result<(), MlflowError> {
        let result = self
            .agent
            .put(&self.artifact_url(path))
            .set("Content-Type", "application/octet-stream")
            .set("Accept", "application/json")
            .send_bytes(bytes);
        self.answer::<Value>("mlflow-artifacts/artifacts", result)
            .map(drop)
    }

    /// The files and folders directly in artifact folder `path` (empty if there is none).
    pub fn list_artifacts(
        &self,
        path: &super::artifacts::ProxyPath,
    ) -> Result<Vec<ArtifactFile>, MlflowError> {
        #[derive(Deserialize)]
        struct Listed {
            #[serde(default)]
            files: Vec<ArtifactFile>,
        }
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts", self.base);
        let listed: Listed = retry_read(|| {
            let result = self
                .agent
                .get(&url)
                .query("path", path.as_str())
                .set("Accept", "application/json")
                .call();
            self.answer("mlflow-artifacts/artifacts", result)
        })?;
        Ok(listed.files)
    }
}

/// A registered model's version as MLflow returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelVersion {
    /// The version number MLflow assigned (`"1"`, `"2"`, …).
    pub version: String,
    /// The run it was made from.
    #[serde(default)]
    pub run_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> MlflowError {
        MlflowError::Api {
            endpoint: "runs/search".into(),
            status,
            code: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn a_read_is_repeated_after_a_server_error_and_not_after_a_refusal() {
        let mut calls = 0;
        let got = retry_read(|| {
            calls += 1;
            if calls < READ_ATTEMPTS {
                Err(api(500))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.unwrap(), READ_ATTEMPTS);

        let mut calls = 0;
        let got: Result<(), _> = retry_read(|| {
            calls += 1;
            Err(api(400))
        });
        assert!(got.is_err());
        assert_eq!(calls, 1, "a 400 is an answer, not a hiccup");

        let mut calls = 0;
        let got: Result<(), _> = retry_read(|| {
            calls += 1;
            Err(api(503))
        });
        assert!(matches!(got, Err(MlflowError::Api { status: 503, .. })));
        assert_eq!(calls, READ_ATTEMPTS, "bounded");
    }
}
