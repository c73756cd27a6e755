//! Routes of fleet operations on one device (operator token): read and change its settings,
//! rotate its token, decommission it, read its metric series.

use std::sync::Arc;

use warp::{Filter, Rejection, Reply};

use super::{MAX_JSON_BYTES, blocking, parse_json, parse_query, raw_query};
use crate::domain::{DeviceUpdate, MetricQuery, Sphere};

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
        .and(operator.clone())
        .and_then(|id: String, sphere: Arc<Sphere>| async move {
            let settings = blocking(move || sphere.decommission_device(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&settings).into_response())
        });

    let metric_keys = warp::path!("api" / "v2" / "devices" / String / "metrics" / "keys")
        .and(warp::get())
        .and(operator.clone())
        .and_then(|id: String, sphere: Arc<Sphere>| async move {
            let keys = blocking(move || sphere.metric_keys(&id)).await?;
            Ok::<_, Rejection>(warp::reply::json(&keys).into_response())
        });

    let metric_series = warp::path!("api" / "v2" / "devices" / String / "metrics")
        .and(warp::get())
        .and(operator)
        .and(raw_query())
        .and_then(|id: String, sphere: Arc<Sphere>, raw: String| async move {
            let query: MetricQuery = parse_query(
                &raw,
                "pass ?key=<metric key>[&since=<unix ms>][&until=<unix ms>][&limit=1..=2000]",
            )?;
            let series = blocking(move || sphere.metric_series(&id, &query)).await?;
            Ok::<_, Rejection>(warp::reply::json(&series).into_response())
        });

    get.or(update)
        .unify()
        .or(metric_keys)
        .unify()
        .or(metric_series)
        .unify()
        .or(rotate)
        .unify()
        .or(decommission)
        .unify()
}
