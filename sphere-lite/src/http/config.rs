//! Routes of remote configuration: the fleet-wide and group layers, and each device's own
//! layer with its delivery state (operator token); and the device's report of a configuration
//! it refused (device token).

use std::sync::Arc;

use tinylcm_protocol::api::{ConfigRefusal, ConfigRequest};
use warp::{Filter, Rejection, Reply};

use super::{blocking, device_json_post, parse_json};
use crate::domain::Sphere;

/// Largest configuration request body: the fragment limit plus JSON escaping.
const MAX_CONFIG_BODY: u64 = 4 * tinylcm_protocol::remote_config::MAX_CONFIG_BYTES as u64;

const FIX: &str =
    r#"send JSON {"toml": "[drift.page-hinkley-distance]\nlambda = 80.0"} ("" clears the layer)"#;

/// All configuration routes.
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let device_sphere = sphere.clone();
    let operator = super::operator(sphere);
    let body = warp::body::content_length_limit(MAX_CONFIG_BODY).and(warp::body::bytes());

    let scopes = warp::path!("api" / "v2" / "config")
        .and(warp::get())
        .and(operator.clone())
        .and_then(|_: String, sphere: Arc<Sphere>| async move {
            let layers = blocking(move || sphere.scope_configs()).await?;
            Ok::<_, Rejection>(warp::reply::json(&layers).into_response())
        });

    let set_scope = warp::path!("api" / "v2" / "config" / String)
        .and(warp::put())
        .and(operator.clone())
        .and(body)
        .and_then(
            |scope: String, by: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: ConfigRequest = parse_json(&body, false, FIX)?;
                let result =
                    blocking(move || sphere.set_scope_config(&scope, &request.toml, &by)).await?;
                Ok::<_, Rejection>(warp::reply::json(&result).into_response())
            },
        );

    let device = warp::path!("api" / "v2" / "devices" / String / "config")
        .and(warp::get())
        .and(operator.clone())
        .and_then(|id: String, _: String, sphere: Arc<Sphere>| async move {
            let state = blocking(move || sphere.device_config(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&state).into_response())
        });

    let refusal = device_json_post(
        warp::path!("api" / "v2" / "devices" / String / "config" / "refusal"),
        device_sphere,
        r#"send JSON {"revision": "<16 hex digits>", "reason": "..."}"#,
        |sphere, device, refusal: &ConfigRefusal| sphere.refuse_config(device, refusal),
    );

    let set_device = warp::path!("api" / "v2" / "devices" / String / "config")
        .and(warp::put())
        .and(operator)
        .and(body)
        .and_then(
            |id: String, by: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let request: ConfigRequest = parse_json(&body, false, FIX)?;
                let state =
                    blocking(move || sphere.set_device_config(&id, &request.toml, &by)).await?;
                Ok::<_, Rejection>(warp::reply::json(&state).into_response())
            },
        );

    scopes
        .or(set_scope)
        .unify()
        .or(device)
        .unify()
        .or(set_device)
        .unify()
        .or(refusal)
        .unify()
}
