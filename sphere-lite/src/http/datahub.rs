//! Routes of the Data Hub for operators: prediction samples, a device's log lines, and the
//! drift-sample embedding export (NDJSON, streamed).
//!
//! Why apart from the dashboard: scripts (retraining pipelines, log shippers) read the same
//! data with an operator token. The export streams: events are read a page at a time on the
//! blocking pool and sent through a small bounded channel, so a large fleet's export never sits
//! in memory and a slow client slows the reader instead of growing a buffer.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tinylcm_protocol::datahub::{EmbeddingExportQuery, LogQuery, PredictionQuery};
use warp::http::{HeaderValue, header};
use warp::{Filter, Rejection, Reply};

use super::blocking;
use crate::domain::{DomainError, Sphere};

/// Export lines buffered between the reader and a slow client.
const EXPORT_BUFFER: usize = 16;

/// Parse a query string (after the token check, so a stranger learns nothing from a 400).
fn query<T: DeserializeOwned>(raw: &str, fix: &str) -> Result<T, DomainError> {
    serde_urlencoded::from_str(raw).map_err(|e| DomainError::BadRequest {
        error: format!("invalid query string: {e}"),
        fix: Some(fix.into()),
    })
}

/// The Data Hub's API routes (operator token).
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with_sphere = warp::any().map(move || sphere.clone());
    let request = warp::header::optional::<String>("authorization")
        .and(super::raw_query())
        .and(with_sphere);

    let predictions = warp::path!("api" / "v2" / "predictions")
        .and(warp::get())
        .and(request.clone())
        .and_then(|auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
            let list = blocking(move || {
                sphere.authorize_operator(auth.as_deref())?;
                let q: PredictionQuery = query(
                    &raw,
                    "parameters: device, class, since, until (Unix ms), after (the previous next_after), limit (1..=500)",
                )?;
                sphere.list_predictions(&q)
            })
            .await?;
            Ok::<_, Rejection>(warp::reply::json(&list).into_response())
        });

    let logs = warp::path!("api" / "v2" / "devices" / String / "logs")
        .and(warp::get())
        .and(request.clone())
        .and_then(
            |device: String, auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
                let page = blocking(move || {
                    sphere.authorize_operator(auth.as_deref())?;
                    let q: LogQuery = query(
                        &raw,
                        "parameters: level (error|warn|info|debug|trace), q (text), after (the previous next_after), limit (1..=500)",
                    )?;
                    sphere.device_logs(&device, &q)
                })
                .await?;
                Ok::<_, Rejection>(warp::reply::json(&page).into_response())
            },
        );

    let export = warp::path!("api" / "v2" / "exports" / "embeddings")
        .and(warp::get())
        .and(request)
        .and_then(
            |auth: Option<String>, raw: String, sphere: Arc<Sphere>| async move {
                let s = sphere.clone();
                let q = blocking(move || {
                    s.authorize_operator(auth.as_deref())?;
                    let q: EmbeddingExportQuery = query(
                        &raw,
                        "parameters: status (pending|validated|rejected), device, since (Unix ms)",
                    )?;
                    // Checked before the 200, so a bad device id is a 400 and not a cut stream.
                    Sphere::check_export_query(&q)?;
                    Ok(q)
                })
                .await?;
                Ok::<_, Rejection>(embedding_export(sphere, q))
            },
        );

    predictions.or(logs).unify().or(export).unify()
}

/// The NDJSON response of the embedding export for `query` (already validated with
/// [`Sphere::check_export_query`]); also the dashboard's download.
pub(crate) fn embedding_export(
    sphere: Arc<Sphere>,
    query: EmbeddingExportQuery,
) -> warp::reply::Response {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(EXPORT_BUFFER);
    tokio::task::spawn_blocking(move || {
        let result = sphere.export_embeddings(&query, |line| {
            let mut json = match serde_json::to_vec(&line) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "embedding export: encoding failed");
                    return false;
                }
            };
            json.push(b'\n');
            // An error means the client went away: stop reading.
            tx.blocking_send(Ok(json.into())).is_ok()
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "embedding export failed midway");
            // Ends the body with an error, so the client sees a broken transfer, not a
            // complete-looking export.
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut response = warp::reply::stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
