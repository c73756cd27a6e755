//! Upload bodies spooled to temporary files, so a large body is never held in memory.
//!
//! Why: a package body may be as large as the upload cap (64 MiB by default), and reading
//! bodies into memory made the server's memory grow with the number of devices uploading at
//! once. A body is streamed to a file in the server's spool folder instead, counted as it
//! arrives and cut off at its bound; the domain checks and stores the package from that file.
//! A body that declares at most [`IN_MEMORY_BYTES`] (the typical metrics package is ~10 KB)
//! is read into memory instead ([`collect`]): a spool file costs a create, a write, two
//! re-opens and an unlink, several times the rest of the upload's work on the file system,
//! and the uploads in flight at once are bounded by the upload gate, so memory stays bounded
//! too (at most that gate's slots times this size).
//! The file is a [`tempfile::NamedTempFile`]: it is deleted when dropped, so on every path —
//! success, a refusal, an error, and a client that goes away mid-body (the request's future
//! is dropped with the file) — nothing is left behind. Files left by a killed process are
//! removed when the folder is prepared at the next start
//! ([`crate::domain::prepare_spool_dir`]).

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;
use warp::Rejection;
use warp::http::StatusCode;

use super::ApiError;
use crate::domain::Sphere;

/// A new, empty spool file in the server's spool folder (deleted when dropped).
pub fn create(sphere: &Sphere) -> Result<NamedTempFile, Rejection> {
    sphere.spool_file().map_err(Rejection::from)
}

/// A received body: in memory when it declared at most [`IN_MEMORY_BYTES`], else in a spool
/// file (deleted when dropped).
pub enum Spooled {
    /// The whole body.
    Memory(Vec<u8>),
    /// The file holding the body.
    File(NamedTempFile),
}

/// Receive `body`, which declared `declared` bytes (if it did), at most `max`: in memory when
/// it declared at most [`IN_MEMORY_BYTES`] (bounded by that declaration), else streamed to a
/// spool file; a body over its bound, broken off or not storable is the answer for the client
/// (`what` names the body).
pub async fn receive<S, B, E>(
    sphere: &Sphere,
    body: S,
    declared: Option<u64>,
    max: u64,
    what: &str,
) -> Result<Spooled, Rejection>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    match declared.filter(|n| *n <= IN_MEMORY_BYTES) {
        Some(declared) => collect(body, declared)
            .await
            .map(Spooled::Memory)
            .map_err(|e| e.rejection(what, declared)),
        None => {
            let file = create(sphere)?;
            write(&file, body, max)
                .await
                .map_err(|e| e.rejection(what, max))?;
            Ok(Spooled::File(file))
        }
    }
}

/// Why a body could not be spooled.
pub enum SpoolError {
    /// More than the bound arrived (the rest is not read).
    TooLarge,
    /// The client's body broke off (it went away or sent a malformed body).
    Body(String),
    /// The spool file could not be written (the server's failure).
    Io(std::io::Error),
}

impl SpoolError {
    /// The answer for the client; `what` names the body, `max` its bound.
    pub fn rejection(self, what: &str, max: u64) -> Rejection {
        match self {
            SpoolError::TooLarge => warp::reject::custom(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what} exceeds {max} bytes"),
                Some("send smaller packages"),
            )),
            SpoolError::Body(e) => warp::reject::custom(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the {what} broke off: {e}"),
                Some("send the whole body"),
            )),
            SpoolError::Io(e) => {
                tracing::error!(error = %e, "cannot write an upload spool file");
                warp::reject::custom(ApiError::internal())
            }
        }
    }
}

/// Largest declared body read into memory instead of a spool file (see the module docs).
pub const IN_MEMORY_BYTES: u64 = 64 * 1024;

/// The chunks of `body` in memory, at most `max` bytes (the declared length, itself at most
/// [`IN_MEMORY_BYTES`]: the allocation is bounded by that, never by what arrives).
pub async fn collect<S, B, E>(body: S, max: u64) -> Result<Vec<u8>, SpoolError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let max = max.min(IN_MEMORY_BYTES);
    let mut out = Vec::with_capacity(usize::try_from(max).unwrap_or(0));
    futures_util::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
        if (out.len() + chunk.remaining()) as u64 > max {
            return Err(SpoolError::TooLarge);
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(out)
}

/// Append the chunks of `body` to `file`, at most `max` bytes; returns how many were written.
/// Stops reading at the first chunk that would pass `max`.
pub async fn write<S, B, E>(file: &NamedTempFile, body: S, max: u64) -> Result<u64, SpoolError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let std_file = file.as_file().try_clone().map_err(SpoolError::Io)?;
    let mut out = tokio::fs::File::from_std(std_file);
    let mut written: u64 = 0;
    futures_util::pin_mut!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
        written = written.saturating_add(chunk.remaining() as u64);
        if written > max {
            return Err(SpoolError::TooLarge);
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            out.write_all(chunk.chunk()).await.map_err(SpoolError::Io)?;
            chunk.advance(n);
        }
    }
    out.flush().await.map_err(SpoolError::Io)?;
    Ok(written)
}
