//! Routes of the original TinySphere API that the original Python clients call
//! (see [`crate::legacy`] for what each does and what differs).
//!
//! Why apart from the v2 routes: different paths, multipart bodies and answer shapes, and one
//! rule the v2 API does not need: the device is named by its token, not by the path.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{
    ApiError, MAX_JSON_BYTES, Metrics, ProcessJob, UploadGate, blocking, parse_json_body,
    parse_query,
};
use crate::domain::Sphere;
use crate::legacy::{self, wire};

/// `?device_id=` of the pending-validations route.
#[derive(Debug, Default, serde::Deserialize)]
struct DeviceQuery {
    #[serde(default)]
    device_id: Option<String>,
}

fn bad_request(error: String, fix: &str) -> Rejection {
    warp::reject::custom(ApiError::new(StatusCode::BAD_REQUEST, error, Some(fix)))
}

/// The token's device; a `device_id` the client names (header or query) must be that device.
async fn device_of(
    sphere: Arc<Sphere>,
    auth: Option<String>,
    named: Option<String>,
) -> Result<String, Rejection> {
    let device = blocking(move || sphere.device_of_token(auth.as_deref())).await?;
    match named {
        Some(named) if named != device => Err(warp::reject::custom(ApiError::new(
            StatusCode::FORBIDDEN,
            "a device may only act as itself",
            Some("configure the client with the token created for its device_id"),
        ))),
        _ => Ok(device),
    }
}

/// Every route of the original API that sphere-lite answers.
pub fn routes(
    sphere: Arc<Sphere>,
    jobs: UnboundedSender<ProcessJob>,
    gate: UploadGate,
    metrics: Metrics,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with_sphere = warp::any().map(move || sphere.clone());
    let auth_header = warp::header::optional::<String>("authorization");
    let device_header = warp::header::optional::<String>("x-device-id");

    let status = warp::path!("api" / "status").and(warp::get()).map(|| {
        warp::reply::json(&wire::Status {
            status: "OK",
            version: env!("CARGO_PKG_VERSION"),
            name: "TinySphere API",
        })
        .into_response()
    });

    let register = warp::path!("api" / "devices" / "register")
        .and(warp::post())
        .and(auth_header)
        .and(with_sphere.clone())
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |auth: Option<String>, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: wire::RegisterRequest =
                    serde_json::from_slice(&body).map_err(|e| {
                        bad_request(
                            format!("invalid registration: {e}"),
                            r#"send JSON {"device_id": "...", "device_info": {...}}"#,
                        )
                    })?;
                let device = device_of(sphere, auth, Some(request.device_id)).await?;
                tracing::info!(device = %device, "original client registered");
                Ok::<_, Rejection>(
                    warp::reply::json(&wire::RegisterResponse {
                        message: format!("device {device} is registered"),
                        device_id: device,
                        status: "success",
                        registered: true,
                    })
                    .into_response(),
                )
            },
        );

    let upload = warp::path!("api" / "packages" / "upload")
        .and(warp::post())
        .and(auth_header)
        .and(device_header)
        .and(with_sphere.clone())
        .and_then(
            |auth: Option<String>, named: Option<String>, sphere: Arc<Sphere>| async move {
                let device = device_of(sphere.clone(), auth, named).await?;
                Ok::<_, Rejection>((device, sphere))
            },
        )
        .untuple_one()
        .and(warp::multipart::form().max_length(None))
        .and_then(
            move |device: String, sphere: Arc<Sphere>, form: warp::multipart::FormData| {
                let jobs = jobs.clone();
                let gate = gate.clone();
                let metrics = metrics.clone();
                async move {
                    let fix =
                        "send multipart/form-data with a `package` file and a `metadata` JSON part";
                    // The gate before a byte of the body is read; the archive goes to a spool
                    // file, never to memory.
                    let permit = gate.enter(&device).await?;
                    let archive = super::spool::create(&sphere)?;
                    let (mut parts, got_archive) = super::form::read_parts_spooling(
                        form,
                        &[("metadata", MAX_JSON_BYTES)],
                        ("package", sphere.max_upload_bytes()),
                        &archive,
                        fix,
                    )
                    .await?;
                    let (true, Some(metadata)) = (got_archive, parts.remove("metadata")) else {
                        return Err(bad_request(
                            "the `package` or `metadata` part is missing".into(),
                            fix,
                        ));
                    };
                    let d = device.clone();
                    let accepted = blocking(move || {
                        // Both live until the package is stored, even if the client left.
                        let result =
                            legacy::accept_upload_file(&sphere, &d, &metadata, archive.path());
                        drop((archive, permit));
                        result
                    })
                    .await?;
                    metrics.package(accepted.new);
                    if accepted.new {
                        // Durable already; a lost job is redone at the next start.
                        let _ = jobs.send((device, accepted.response.package_id.clone()));
                    }
                    Ok::<_, Rejection>(warp::reply::json(&accepted.response).into_response())
                }
            },
        );

    let pending = warp::path!("api" / "drift" / "validations" / "pending")
        .and(warp::get())
        .and(auth_header)
        .and(super::raw_query())
        .and(with_sphere.clone())
        .and_then(
            |auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
                let query: DeviceQuery =
                    parse_query(&raw, "the only parameter is device_id (optional)")?;
                let device = device_of(sphere.clone(), auth, query.device_id).await?;
                let list = blocking(move || legacy::pending_validations(&sphere, &device)).await?;
                Ok::<_, Rejection>(warp::reply::json(&list).into_response())
            },
        );

    let acknowledge = warp::path!("api" / "drift" / "validations" / "acknowledge")
        .and(warp::post())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(|auth: Option<String>, sphere: Arc<Sphere>| async move {
            let device = device_of(sphere.clone(), auth, None).await?;
            Ok::<_, Rejection>((device, sphere))
        })
        .untuple_one()
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |device: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: wire::AcknowledgeRequest =
                    parse_json_body(&body, r#"send JSON {"validation_ids": ["1", "2"]}"#)?;
                let response = blocking(move || {
                    legacy::acknowledge(&sphere, &device, &request.validation_ids)
                })
                .await?;
                Ok::<_, Rejection>(warp::reply::json(&response).into_response())
            },
        );

    let sample_results = warp::path!("api" / "samples" / "validation-results" / String)
        .and(warp::get())
        .and(auth_header)
        .and(with_sphere)
        .and_then(
            |named: String, auth: Option<String>, sphere: Arc<Sphere>| async move {
                let device = device_of(sphere.clone(), auth, Some(named)).await?;
                let results = blocking(move || legacy::sample_results(&sphere, &device)).await?;
                Ok::<_, Rejection>(warp::reply::json(&results).into_response())
            },
        );

    status
        .or(register)
        .unify()
        .or(upload)
        .unify()
        .or(pending)
        .unify()
        .or(acknowledge)
        .unify()
        .or(sample_results)
        .unify()
}
