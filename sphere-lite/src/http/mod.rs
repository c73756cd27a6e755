//! The HTTP API v2 (warp): routes, request parsing and replies.
//!
//! Why: a thin layer that only translates HTTP to domain calls. Domain calls block (redb, files),
//! so they run on tokio's blocking pool. Authentication runs before the body is read, and the
//! body is bounded by `Content-Length` and a hard cap before a byte is buffered.

pub mod access;
mod config;
mod datahub;
mod fleet;
mod form;
mod legacy;
pub mod openapi;
mod ops;
mod reject;
mod releases;
pub(crate) mod spool;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tinylcm_protocol::API_VERSION;
use tinylcm_protocol::api::{
    AckRequest, DriftEventQuery, EnrollRequest, FeedbackResults, RejectRequest, StatusResponse,
    UploadOutcome, ValidateRequest,
};
use tokio::sync::mpsc::UnboundedSender;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

pub(crate) use datahub::embedding_export;
pub use ops::Metrics;
pub use reject::{ApiError, recover};

use crate::domain::{DomainError, Sphere};

/// Largest enrollment request body (bytes).
pub(crate) const MAX_JSON_BYTES: u64 = 16 * 1024;

/// A package to process after it was accepted: (device id, package id).
pub type ProcessJob = (String, String);

/// Run a blocking domain call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DomainError> + Send + 'static,
) -> Result<T, Rejection> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(Rejection::from),
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(warp::reject::custom(ApiError::internal()))
        }
    }
}

/// Requests with an operator token: extracts the operator's name and the service. The token
/// is checked before any body is read.
fn operator(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (String, Arc<Sphere>), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::any().map(move || sphere.clone()))
        .and_then(|auth: Option<String>, sphere: Arc<Sphere>| async move {
            let s = sphere.clone();
            let name = blocking(move || s.authorize_operator(auth.as_deref())).await?;
            Ok::<_, Rejection>((name, sphere))
        })
        .untuple_one()
}

/// Checks `auth` as the device token of `device` (the path's id); passes both on.
async fn authorized_device(
    device: String,
    auth: Option<String>,
    sphere: Arc<Sphere>,
) -> Result<(String, Arc<Sphere>), Rejection> {
    let (d, s) = (device.clone(), sphere.clone());
    blocking(move || s.authorize_device(&d, auth.as_deref())).await?;
    Ok((device, sphere))
}

/// A device's POST to `path` (which extracts its id): the device token is checked before the
/// body (at most `limit` bytes) is read; extracts the id, the service and the body.
fn device_post(
    path: impl Filter<Extract = (String,), Error = Rejection> + Clone,
    sphere: Arc<Sphere>,
    limit: u64,
) -> impl Filter<Extract = (String, Arc<Sphere>, bytes::Bytes), Error = Rejection> + Clone {
    path.and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::any().map(move || sphere.clone()))
        .and_then(authorized_device)
        .untuple_one()
        .and(warp::body::content_length_limit(limit))
        .and(warp::body::bytes())
}

/// A device's POST of a JSON `T` to `path`, as [`device_post`] with a body of at most
/// [`MAX_JSON_BYTES`]: a body that is not a `T` is answered 400 with `fix`; else `handle` runs
/// on the blocking pool with the service, the device id and the request, and its result is
/// the JSON reply.
fn device_json_post<T, R>(
    path: impl Filter<Extract = (String,), Error = Rejection> + Clone,
    sphere: Arc<Sphere>,
    fix: &'static str,
    handle: fn(&Sphere, &str, &T) -> Result<R, DomainError>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone
where
    T: DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    device_post(path, sphere, MAX_JSON_BYTES).and_then(
        move |device: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
            let request: T = parse_json_body(&body, fix)?;
            let reply = blocking(move || handle(&sphere, &device, &request)).await?;
            Ok::<_, Rejection>(warp::reply::json(&reply).into_response())
        },
    )
}

/// Uploads read and processed at once. Uploads in the domain at the same moment share one
/// durable commit (group commit), so the bound is the largest group: measured with
/// `cargo bench --bench ingest` (16 devices at once), 4 made every commit carry 1–4 uploads
/// and held the fleet to the rate of disk flushes. Without any bound a fleet-wide sync storm
/// filled the whole blocking pool with uploads waiting for each other, and feedback polls and
/// listings queued behind them for seconds (measured: `cargo bench --bench fleet`); 32 threads
/// leave the pool to them. A slot is taken before the body is read, so waiting uploads hold
/// neither a thread nor their bodies.
pub const CONCURRENT_UPLOADS: usize = 32;

/// Uploads one device may have in flight (waiting or being read); more answer 429 before
/// their bodies are read, so one device cannot take every slot of the gate.
pub const UPLOADS_PER_DEVICE: usize = 2;

/// Gate for [`CONCURRENT_UPLOADS`] and [`UPLOADS_PER_DEVICE`]; waiting uploads wait
/// asynchronously, holding no thread.
#[derive(Clone)]
pub(crate) struct UploadGate {
    slots: Arc<tokio::sync::Semaphore>,
    /// Uploads in flight per device (entries at zero are removed).
    devices: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// One device's place in the gate; released when dropped (also when the request is dropped).
struct DeviceTurn {
    device: String,
    devices: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for DeviceTurn {
    fn drop(&mut self) {
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = devices.get_mut(&self.device) {
            *n -= 1;
            if *n == 0 {
                devices.remove(&self.device);
            }
        }
    }
}

/// An upload's slot in the gate; the slot is free again when this is dropped.
pub(crate) struct UploadPermit {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _turn: DeviceTurn,
}

impl UploadGate {
    fn new() -> Self {
        UploadGate {
            slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_UPLOADS)),
            devices: Arc::default(),
        }
    }

    /// Wait for a slot for an upload of `device`; 429 at once when the device has
    /// [`UPLOADS_PER_DEVICE`] uploads in flight already. Call before reading the body.
    pub(crate) async fn enter(&self, device: &str) -> Result<UploadPermit, Rejection> {
        let turn = {
            let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
            let n = devices.entry(device.to_owned()).or_insert(0);
            if *n >= UPLOADS_PER_DEVICE {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("this device has {UPLOADS_PER_DEVICE} uploads in progress already"),
                    Some("upload one package at a time; retry when the others are answered"),
                )));
            }
            *n += 1;
            DeviceTurn {
                device: device.to_owned(),
                devices: self.devices.clone(),
            }
        };
        let slot = self.slots.clone().acquire_owned().await.map_err(|_| {
            tracing::error!("upload gate closed");
            warp::reject::custom(ApiError::internal())
        })?;
        Ok(UploadPermit {
            _slot: slot,
            _turn: turn,
        })
    }
}

/// The query string of a request, `""` when it has none (warp rejects a missing one).
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Parse a query string into `T` (unknown parameters are refused) or answer 400.
fn parse_query<T: DeserializeOwned>(raw: &str, fix: &str) -> Result<T, Rejection> {
    serde_urlencoded::from_str(raw).map_err(|e| {
        warp::reject::custom(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid query string: {e}"),
            Some(fix),
        ))
    })
}

/// Parse a JSON body into `T` (an empty body is `T::default()` when `empty_ok`) or answer 400.
fn parse_json<T: DeserializeOwned + Default>(
    body: &[u8],
    empty_ok: bool,
    fix: &str,
) -> Result<T, Rejection> {
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json_body(body, fix)
}

/// Parse a JSON body into `T` or answer 400 saying what is wrong and `fix`.
fn parse_json_body<T: DeserializeOwned>(body: &[u8], fix: &str) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        warp::reject::custom(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
            Some(fix),
        ))
    })
}

/// `POST /api/v2/devices` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDeviceRequest {
    device_id: String,
    #[serde(default)]
    name: Option<String>,
}

/// `?after=N` of the device feedback route.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackQuery {
    #[serde(default)]
    after: Option<u64>,
}

/// The Drift Hub routes: operators list, read, validate and reject drift events; devices pull
/// and acknowledge their own feedback.
fn drift_routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let ack_sphere = sphere.clone();
    let with_sphere = warp::any().map(move || sphere.clone());
    let auth_header = warp::header::optional::<String>("authorization");

    let list = warp::path!("api" / "v2" / "drift-events")
        .and(warp::get())
        .and(auth_header)
        .and(raw_query())
        .and(with_sphere.clone())
        .and_then(
            |auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
                let list = blocking(move || {
                    sphere.authorize_operator(auth.as_deref())?;
                    // Parsed after the token check, so a stranger learns nothing from a 400.
                    let query: DriftEventQuery = serde_urlencoded::from_str(&raw).map_err(|e| {
                        crate::domain::DomainError::BadRequest {
                            error: format!("invalid query string: {e}"),
                            fix: Some(
                                "parameters: device, detector, status (pending|validated|rejected), since, until (Unix ms), after (event id), limit (1..=500)"
                                    .into(),
                            ),
                        }
                    })?;
                    sphere.list_drift_events(&query)
                })
                .await?;
                Ok::<_, Rejection>(warp::reply::json(&list).into_response())
            },
        );

    let one = warp::path!("api" / "v2" / "drift-events" / u64)
        .and(warp::get())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(
            |id: u64, auth: Option<String>, sphere: Arc<Sphere>| async move {
                let event = blocking(move || {
                    sphere.authorize_operator(auth.as_deref())?;
                    sphere.get_drift_event(id)
                })
                .await?;
                Ok::<_, Rejection>(warp::reply::json(&event).into_response())
            },
        );

    // Operator routes with a body: the token is checked before the body is read.
    let operator = warp::post()
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(|auth: Option<String>, sphere: Arc<Sphere>| async move {
            let s = sphere.clone();
            let name = blocking(move || s.authorize_operator(auth.as_deref())).await?;
            Ok::<_, Rejection>((name, sphere))
        })
        .untuple_one()
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes());

    let validate = warp::path!("api" / "v2" / "drift-events" / u64 / "validate")
        .and(operator.clone())
        .and_then(
            |id: u64, operator: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: ValidateRequest = parse_json(
                    &body,
                    true,
                    r#"send JSON {"label": "...", "note": "..."} (both optional)"#,
                )?;
                let event =
                    blocking(move || sphere.validate_drift_event(id, &operator, &request)).await?;
                Ok::<_, Rejection>(warp::reply::json(&event).into_response())
            },
        );

    let reject = warp::path!("api" / "v2" / "drift-events" / u64 / "reject")
        .and(operator)
        .and_then(
            |id: u64, operator: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: RejectRequest =
                    parse_json(&body, true, r#"send JSON {"note": "..."} (optional)"#)?;
                let event =
                    blocking(move || sphere.reject_drift_event(id, &operator, &request)).await?;
                Ok::<_, Rejection>(warp::reply::json(&event).into_response())
            },
        );

    let feedback = warp::path!("api" / "v2" / "devices" / String / "feedback")
        .and(warp::get())
        .and(auth_header)
        .and(raw_query())
        .and(with_sphere.clone())
        .and_then(
            |device: String, auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
                let d = device.clone();
                let s = sphere.clone();
                blocking(move || s.authorize_device(&d, auth.as_deref())).await?;
                let query: FeedbackQuery =
                    parse_query(&raw, "the only parameter is after=N (a feedback id)")?;
                let page =
                    blocking(move || sphere.feedback_page(&device, query.after.unwrap_or(0)))
                        .await?;
                Ok::<_, Rejection>(warp::reply::json(&page).into_response())
            },
        );

    let results = device_json_post(
        warp::path!("api" / "v2" / "devices" / String / "feedback" / "results"),
        ack_sphere.clone(),
        r#"send JSON {"results": [{"id": N, "outcome": "applied"|"refused", "reason": "...", "unix_ms": T}]}"#,
        |sphere, device, request: &FeedbackResults| sphere.record_feedback_results(device, request),
    );

    let ack = device_json_post(
        warp::path!("api" / "v2" / "devices" / String / "feedback" / "ack"),
        ack_sphere,
        r#"send JSON {"up_to": N}"#,
        |sphere, device, request: &AckRequest| sphere.ack_feedback(device, request),
    );

    list.or(one)
        .unify()
        .or(validate)
        .unify()
        .or(reject)
        .unify()
        .or(feedback)
        .unify()
        .or(ack)
        .unify()
        .or(results)
        .unify()
}

/// All routes of API v2, with JSON errors. Accepted packages are sent to `jobs` for processing.
pub fn routes(
    sphere: Arc<Sphere>,
    jobs: UnboundedSender<ProcessJob>,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    let with_sphere = {
        let sphere = sphere.clone();
        warp::any().map(move || sphere.clone())
    };
    let auth_header = warp::header::optional::<String>("authorization");

    // Built once: the document only changes with the binary.
    let document = Arc::new(openapi::document());
    let openapi = warp::path!("api" / "v2" / "openapi.json")
        .and(warp::get())
        .map(move || warp::reply::json(&*document).into_response());
    let status = warp::path!("api" / "v2" / "status")
        .and(warp::get())
        .map(|| {
            warp::reply::json(&StatusResponse {
                service: "sphere-lite".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                api: API_VERSION.into(),
            })
            .into_response()
        });

    let enroll = warp::path!("api" / "v2" / "devices" / "enroll")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and(with_sphere.clone())
        .and_then(|body: bytes::Bytes, sphere: Arc<Sphere>| async move {
            let request: EnrollRequest = serde_json::from_slice(&body).map_err(|e| {
                warp::reject::custom(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid enrollment request: {e}"),
                    Some(
                        r#"send JSON {"enrollment_key": "...", "name": "...", "hardware": "..."}"#,
                    ),
                ))
            })?;
            let response = blocking(move || sphere.enroll(&request)).await?;
            Ok::<_, Rejection>(warp::reply::json(&response).into_response())
        });

    let list = warp::path!("api" / "v2" / "devices")
        .and(warp::get())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(|auth: Option<String>, sphere: Arc<Sphere>| async move {
            let list = blocking(move || {
                sphere.authorize_operator(auth.as_deref())?;
                sphere.list_devices()
            })
            .await?;
            Ok::<_, Rejection>(warp::reply::json(&list).into_response())
        });

    let gate = UploadGate::new();
    let metrics = Metrics::new();
    // Boxed: each group is a type of its own, so the combined filter's type stays shallow
    // enough for the compiler (unboxed, it overflowed the query depth limit).
    let legacy =
        legacy::routes(sphere.clone(), jobs.clone(), gate.clone(), metrics.clone()).boxed();
    let ops = ops::routes(sphere.clone(), metrics.clone()).boxed();
    let fleet = fleet::routes(sphere.clone()).boxed();
    let releases = releases::routes(sphere.clone()).boxed();
    let config = config::routes(sphere.clone()).boxed();
    let datahub = datahub::routes(sphere.clone()).boxed();
    let counted = metrics.clone();
    // An operator adds a device under a chosen id (original clients cannot enroll).
    let add = warp::path!("api" / "v2" / "devices")
        .and(warp::post())
        .and(auth_header)
        .and(with_sphere.clone())
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |auth: Option<String>, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let s = sphere.clone();
                blocking(move || s.authorize_operator(auth.as_deref()).map(drop)).await?;
                let request: AddDeviceRequest = parse_json_body(
                    &body,
                    r#"send JSON {"device_id": "...", "name": "..."} (name optional)"#,
                )?;
                let added = blocking(move || {
                    sphere.add_device(&request.device_id, request.name.as_deref())
                })
                .await?;
                Ok::<_, Rejection>(
                    warp::reply::with_status(warp::reply::json(&added), StatusCode::CREATED)
                        .into_response(),
                )
            },
        );

    let max_upload = sphere.max_upload_bytes();
    // The device token, the declared length and the gate are all checked before a byte of the
    // body is read; a small declared body is then read into memory, any other streams to a
    // spool file under the cap (a body without `Content-Length` too) and is checked and
    // stored from there.
    let upload = warp::path!("api" / "v2" / "devices" / String / "packages")
        .and(warp::post())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(authorized_device)
        .untuple_one()
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(
            move |device: String, sphere: Arc<Sphere>, length: Option<u64>, body| {
                let jobs = jobs.clone();
                let gate = gate.clone();
                let metrics = metrics.clone();
                async move {
                    if length.is_some_and(|n| n > max_upload) {
                        return Err(
                            spool::SpoolError::TooLarge.rejection("package body", max_upload)
                        );
                    }
                    let permit = gate.enter(&device).await?;
                    let d = device.clone();
                    let spooled =
                        spool::receive(&sphere, body, length, max_upload, "package body").await?;
                    let response = blocking(move || {
                        // The body and the slot live until the check and store are done, even
                        // if the client left.
                        let result = match &spooled {
                            spool::Spooled::Memory(bytes) => sphere.accept_upload(&d, bytes),
                            spool::Spooled::File(file) => {
                                sphere.accept_upload_file(&d, file.path())
                            }
                        };
                        drop((spooled, permit));
                        result
                    })
                    .await?;
                    metrics.package(response.outcome == UploadOutcome::Accepted);
                    if response.outcome == UploadOutcome::Accepted {
                        // The package is durable already; a lost job is redone at next start.
                        let _ = jobs.send((device, response.package_id.clone()));
                    }
                    Ok::<_, Rejection>(warp::reply::json(&response).into_response())
                }
            },
        );

    let drift = drift_routes(sphere.clone()).boxed();
    let dashboard = crate::web::routes(sphere.clone()).boxed();
    let read_only_gate = access::read_only_gate(sphere.clone());

    let all = status
        .or(openapi)
        .unify()
        .or(ops)
        .unify()
        .or(dashboard)
        .unify()
        .or(drift)
        .unify()
        .or(fleet)
        .unify()
        .or(releases)
        .unify()
        .or(config)
        .unify()
        .or(datahub)
        .unify()
        .or(legacy)
        .unify()
        .or(enroll)
        .unify()
        .or(list)
        .unify()
        .or(add)
        .unify()
        .or(upload)
        .unify()
        .boxed();
    read_only_gate
        .and(all)
        .recover(recover)
        .unify()
        .with(warp::log::custom(move |info| {
            counted.request(info.path(), info.status().as_u16());
            tracing::info!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                ms = info.elapsed().as_millis() as u64,
                "request"
            )
        }))
}
