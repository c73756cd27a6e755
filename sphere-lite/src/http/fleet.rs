//! Routes of fleet operations on one device (operator token): read and change its settings,
//! rotate its token, decommission it.

use std::sync::Arc;

use warp::{Filter, Rejection, Reply};

use super::{MAX_JSON_BYTES, blocking, parse_json};
use crate::domain::{DeviceUpdate, Sphere};

/// All fleet-operation routes.
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    // The operator's name is not needed here.
    let operator = super::operator(sphere).map(|_: String, sphere: Arc<Sphere>| sphere);

    let get = warp::path!("api" / "v2" / "devices" / String / "settings")
        .and(warp::get())
        .and(operator.clone())
        .and_then(|id: String, sphere: Arc<Sphere>| async move {
            let settings = blocking(move || sphere.device_settings(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&settings).into_response())
        });

    let update = warp::path!("api" / "v2" / "devices" / String / "settings")
        .and(warp::patch())
        .and(operator.clone())
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |id: String, sphere: Arc<Sphere>, body: bytes::Bytes| async move {
                let update: DeviceUpdate = parse_json(
                    &body,
                    false,
                    r#"send JSON with any of {"name": "...", "group": "..." | null, "tags": ["..."], "location": {"latitude": 0, "longitude": 0} | null}"#,
                )?;
                let settings = blocking(move || sphere.update_device(&id, &update)).await?;
                Ok::<_, Rejection>(warp::reply::json(&settings).into_response())
            },
        );

    let rotate = warp::path!("api" / "v2" / "devices" / String / "token")
        .and(warp::post())
        .and(operator.clone())
        .and_then(|id: String, sphere: Arc<Sphere>| async move {
            let token = blocking(move || sphere.rotate_device_token(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&token).into_response())
        });

    let decommission = warp::path!("api" / "v2" / "devices" / String / "decommission")
        .and(warp::post())
        .and(operator)
        .and_then(|id: String, sphere: Arc<Sphere>| async move {
            let settings = blocking(move || sphere.decommission_device(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&settings).into_response())
        });

    get.or(update)
        .unify()
        .or(rotate)
        .unify()
        .or(decommission)
        .unify()
}
