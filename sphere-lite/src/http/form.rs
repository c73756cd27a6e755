//! Reading `multipart/form-data` bodies part by part, each part under its own byte bound.
//!
//! Why: the original clients' uploads and model releases are multipart; warp only bounds the
//! whole body, and a part named nowhere in the route's list must not be buffered at all. A
//! large part (an original client's package) can go to a spool file instead of memory.

use std::collections::HashMap;

use bytes::Buf;
use futures_util::StreamExt;
use warp::Rejection;
use warp::http::StatusCode;

use super::ApiError;

/// The parts named in `wanted` (name → byte bound), read fully; other parts are skipped
/// unread. A part over its bound answers 413, a malformed body 400 with `fix`.
pub async fn read_parts(
    mut form: warp::multipart::FormData,
    wanted: &[(&'static str, u64)],
    fix: &'static str,
) -> Result<HashMap<&'static str, Vec<u8>>, Rejection> {
    let mut parts = HashMap::new();
    while let Some(part) = form.next().await {
        let part = part.map_err(unreadable(fix))?;
        if let Some(&(name, max)) = wanted.iter().find(|(n, _)| *n == part.name()) {
            parts.insert(name, collect(part, name, max, fix).await?);
        }
    }
    Ok(parts)
}

/// As [`read_parts`], with the part named `spooled.0` (at most `spooled.1` bytes) streamed to
/// `file` instead of memory; returns the other wanted parts and whether the spooled one came.
/// That part sent twice is a malformed body.
pub async fn read_parts_spooling(
    mut form: warp::multipart::FormData,
    wanted: &[(&'static str, u64)],
    spooled: (&'static str, u64),
    file: &tempfile::NamedTempFile,
    fix: &'static str,
) -> Result<(HashMap<&'static str, Vec<u8>>, bool), Rejection> {
    let mut parts = HashMap::new();
    let mut got = false;
    while let Some(part) = form.next().await {
        let part = part.map_err(unreadable(fix))?;
        if part.name() == spooled.0 {
            if got {
                return Err(warp::reject::custom(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("form part `{}` is sent twice", spooled.0),
                    Some(fix),
                )));
            }
            super::spool::write(file, part.stream(), spooled.1)
                .await
                .map_err(|e| e.rejection(&format!("form part `{}`", spooled.0), spooled.1))?;
            got = true;
        } else if let Some(&(name, max)) = wanted.iter().find(|(n, _)| *n == part.name()) {
            parts.insert(name, collect(part, name, max, fix).await?);
        }
    }
    Ok((parts, got))
}

/// A malformed body: 400 with `fix`.
fn unreadable(fix: &'static str) -> impl Fn(warp::Error) -> Rejection {
    move |e| {
        warp::reject::custom(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unreadable multipart body: {e}"),
            Some(fix),
        ))
    }
}

/// One part read into memory, refused with 413 as soon as it passes `max` bytes.
async fn collect(
    part: warp::multipart::Part,
    name: &str,
    max: u64,
    fix: &'static str,
) -> Result<Vec<u8>, Rejection> {
    let mut data = Vec::new();
    let mut stream = part.stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unreadable(fix))?;
        if data.len() as u64 + chunk.remaining() as u64 > max {
            return Err(warp::reject::custom(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("form part `{name}` exceeds {max} bytes"),
                Some("send a smaller file"),
            )));
        }
        data.extend_from_slice(chunk.chunk());
    }
    Ok(data)
}
