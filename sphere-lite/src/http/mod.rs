//! The HTTP API v2 (warp): routes, request parsing and replies.
//!
//! Why: a thin layer that only translates HTTP to domain calls. Domain calls block (redb, files),
//! so they run on tokio's blocking pool. Authentication runs before the body is read, and the
//! body is bounded by `Content-Length` and a hard cap before a byte is buffered.

mod reject;

use std::sync::Arc;

use tinylcm_protocol::API_VERSION;
use tinylcm_protocol::api::{EnrollRequest, StatusResponse, UploadOutcome};
use tokio::sync::mpsc::UnboundedSender;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

pub use reject::{ApiError, recover};

use crate::domain::{DomainError, Sphere};

/// Largest enrollment request body (bytes).
const MAX_JSON_BYTES: u64 = 16 * 1024;

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

    let max_upload = sphere.max_upload_bytes();
    let upload = warp::path!("api" / "v2" / "devices" / String / "packages")
        .and(warp::post())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(
            |device: String, auth: Option<String>, sphere: Arc<Sphere>| async move {
                let checked = device.clone();
                let s = sphere.clone();
                blocking(move || s.authorize_device(&checked, auth.as_deref())).await?;
                Ok::<_, Rejection>((device, sphere))
            },
        )
        .untuple_one()
        .and(warp::body::content_length_limit(max_upload))
        .and(warp::body::bytes())
        .and_then(
            move |device: String, sphere: Arc<Sphere>, body: bytes::Bytes| {
                let jobs = jobs.clone();
                async move {
                    let d = device.clone();
                    let response = blocking(move || sphere.accept_upload(&d, &body)).await?;
                    if response.outcome == UploadOutcome::Accepted {
                        // The package is durable already; a lost job is redone at next start.
                        let _ = jobs.send((device, response.package_id.clone()));
                    }
                    Ok::<_, Rejection>(warp::reply::json(&response).into_response())
                }
            },
        );

    status
        .or(enroll)
        .unify()
        .or(list)
        .unify()
        .or(upload)
        .unify()
        .recover(recover)
        .unify()
        .with(warp::log::custom(|info| {
            tracing::info!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                ms = info.elapsed().as_millis() as u64,
                "request"
            )
        }))
}
