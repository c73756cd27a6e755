//! Routes of model releases: operators publish and roll out; devices ask which release to run
//! and download its file (resumable with `Range`).

use std::sync::Arc;

use tinylcm_protocol::api::RolloutRequest;
use tinylcm_protocol::release::{MAX_MANIFEST_BYTES, MAX_MODEL_BYTES};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::{ApiError, MAX_JSON_BYTES, blocking, parse_json};
use crate::domain::Sphere;

/// The byte range of a `Range: bytes=START-[END]` header within a file of `len` bytes.
/// `None`: no header, or one this server does not serve (then the whole file is sent).
/// `Some(Err)`: a range that starts beyond the file (416).
fn byte_range(header: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    if start >= len {
        return Some(Err(()));
    }
    let end = match end.trim() {
        "" => len - 1,
        e => e.parse::<u64>().ok()?.min(len - 1),
    };
    (start <= end).then_some(Ok((start, end)))
}

/// Chunks of a model file that may wait between the blob store and a slow client.
const DOWNLOAD_CHUNKS: usize = 4;
/// Bytes read from the blob store per chunk.
const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// A response body of the `count` bytes `stream` yields, read on the blocking pool a chunk at
/// a time: a download holds at most [`DOWNLOAD_CHUNKS`] chunks whatever the file's size. A
/// stream that ends early or fails ends the body with an error, so the client sees a broken
/// download (and resumes it), never a short file presented as whole.
fn stream_body(mut stream: crate::ports::BlobStream, count: u64) -> warp::reply::Response {
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(DOWNLOAD_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut left = count;
        while left > 0 {
            let want = DOWNLOAD_CHUNK_BYTES.min(usize::try_from(left).unwrap_or(usize::MAX));
            let mut buf = vec![0u8; want];
            let chunk = match std::io::Read::read(&mut stream, &mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the model file ended {left} bytes early"),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if let Err(e) = &chunk {
                tracing::error!(error = %e, "model download broken off");
            }
            // The client went away: stop reading.
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    warp::reply::stream(stream).into_response()
}

/// All release routes.
pub fn routes(
    sphere: Arc<Sphere>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let operator = super::operator(sphere.clone());
    let with_sphere = warp::any().map(move || sphere.clone());
    let auth_header = warp::header::optional::<String>("authorization");

    let publish = warp::path!("api" / "v2" / "models")
        .and(warp::post())
        .and(operator.clone())
        .and(warp::multipart::form().max_length(MAX_MODEL_BYTES + 2 * MAX_MANIFEST_BYTES as u64))
        .and_then(
            |operator: String, sphere: Arc<Sphere>, form: warp::multipart::FormData| async move {
                let fix = "send multipart/form-data with a `release` part (the .release.json) and a `model` part (the file)";
                let mut parts = super::form::read_parts(
                    form,
                    &[
                        ("release", 2 * MAX_MANIFEST_BYTES as u64),
                        ("model", MAX_MODEL_BYTES),
                    ],
                    fix,
                )
                .await?;
                let (Some(release), Some(model)) = (parts.remove("release"), parts.remove("model"))
                else {
                    return Err(warp::reject::custom(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "the `release` or `model` part is missing",
                        Some(fix),
                    )));
                };
                let summary =
                    blocking(move || sphere.publish_release(&operator, &release, &model)).await?;
                Ok::<_, Rejection>(
                    warp::reply::with_status(warp::reply::json(&summary), StatusCode::CREATED)
                        .into_response(),
                )
            },
        );

    let list = warp::path!("api" / "v2" / "models")
        .and(warp::get())
        .and(operator.clone())
        .and_then(|_operator: String, sphere: Arc<Sphere>| async move {
            let list = blocking(move || sphere.list_releases()).await?;
            Ok::<_, Rejection>(warp::reply::json(&list).into_response())
        });

    let rollout = warp::path!("api" / "v2" / "models" / String / String / "rollout")
        .and(warp::post())
        .and(operator)
        .and(warp::body::content_length_limit(MAX_JSON_BYTES))
        .and(warp::body::bytes())
        .and_then(
            |name: String,
             version: String,
             operator: String,
             sphere: Arc<Sphere>,
             body: bytes::Bytes| async move {
                let request: RolloutRequest = parse_json(
                    &body,
                    true,
                    r#"send JSON {"group": "all", "percent": 100} (both optional)"#,
                )?;
                let rollout =
                    blocking(move || sphere.set_rollout(&operator, &name, &version, &request))
                        .await?;
                Ok::<_, Rejection>(warp::reply::json(&rollout).into_response())
            },
        );

    let device = |sphere: Arc<Sphere>, device: String, auth: Option<String>| async move {
        let s = sphere.clone();
        let d = device.clone();
        blocking(move || s.authorize_device(&d, auth.as_deref())).await?;
        Ok::<_, Rejection>((device, sphere))
    };

    let assignment = warp::path!("api" / "v2" / "devices" / String / "model")
        .and(warp::get())
        .and(auth_header)
        .and(with_sphere.clone())
        .and_then(
            move |id: String, auth: Option<String>, sphere: Arc<Sphere>| async move {
                let (id, sphere) = device(sphere, id, auth).await?;
                let reply = match blocking(move || sphere.model_for_device(&id)).await? {
                    Some(assignment) => warp::reply::json(&assignment).into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                };
                Ok::<_, Rejection>(reply)
            },
        );

    let download = warp::path!("api" / "v2" / "devices" / String / "models" / String / String)
        .and(warp::get())
        .and(auth_header)
        .and(warp::header::optional::<String>("range"))
        .and(with_sphere)
        .and_then(
            move |id: String,
                  name: String,
                  version: String,
                  auth: Option<String>,
                  range: Option<String>,
                  sphere: Arc<Sphere>| async move {
                let (id, sphere) = device(sphere, id, auth).await?;
                let (s, n, v) = (sphere.clone(), name.clone(), version.clone());
                let release = blocking(move || s.model_release_for(&id, &n, &v)).await?;
                let (s, n, v) = (sphere.clone(), name.clone(), version.clone());
                let len = blocking(move || s.stored_model_len(&n, &v, release.size)).await?;
                let (status, start, count, content_range) = match byte_range(range.as_deref(), len)
                {
                    None => (StatusCode::OK, 0, len, None),
                    Some(Ok((start, end))) => (
                        StatusCode::PARTIAL_CONTENT,
                        start,
                        end - start + 1,
                        Some(format!("bytes {start}-{end}/{len}")),
                    ),
                    Some(Err(())) => (
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        0,
                        0,
                        Some(format!("bytes */{len}")),
                    ),
                };
                let mut reply = if count == 0 {
                    warp::reply::Response::new(Vec::new().into())
                } else {
                    let stream = blocking(move || {
                        sphere.open_model_file(&name, &version, start, Some(count))
                    })
                    .await?;
                    stream_body(stream, count)
                };
                *reply.status_mut() = status;
                let headers = reply.headers_mut();
                headers.insert(
                    "content-type",
                    warp::http::HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert("content-length", warp::http::HeaderValue::from(count));
                headers.insert(
                    "accept-ranges",
                    warp::http::HeaderValue::from_static("bytes"),
                );
                if let Some(value) =
                    content_range.and_then(|v| warp::http::HeaderValue::from_str(&v).ok())
                {
                    headers.insert("content-range", value);
                }
                Ok::<_, Rejection>(reply)
            },
        );

    publish
        .or(list)
        .unify()
        .or(rollout)
        .unify()
        .or(assignment)
        .unify()
        .or(download)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_resume_downloads() {
        assert_eq!(byte_range(None, 10), None);
        assert_eq!(byte_range(Some("bytes=4-"), 10), Some(Ok((4, 9))));
        assert_eq!(byte_range(Some("bytes=0-3"), 10), Some(Ok((0, 3))));
        assert_eq!(byte_range(Some("bytes=8-99"), 10), Some(Ok((8, 9))));
        assert_eq!(byte_range(Some("bytes=10-"), 10), Some(Err(())));
        assert_eq!(byte_range(Some("bytes=0-1,4-5"), 10), None);
        assert_eq!(byte_range(Some("bytes=5-2"), 10), None);
        assert_eq!(byte_range(Some("items=1-"), 10), None);
    }
}
