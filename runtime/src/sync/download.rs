//! The model download: resumable, bounded and checked, and careful with a metered link.
//!
//! A release is downloaded into `<state dir>/downloads/<sha256>.part`, resumed after a cut with
//! `Range: bytes=N-`, never written past the assignment's size, and renamed to
//! `<sha256>.tflite` only once its SHA-256 is the assigned one.
//!
//! A server whose file contradicts its own assignment (an answer that ends cleanly before the
//! assigned size, one that goes past it, or a whole file with other bytes) would otherwise be
//! downloaded again at every round, for ever: on a cellular link that is the whole model every
//! few minutes. A cut connection, or a resumed file that fails its check (the kept part may be
//! what was damaged), is not held against the server: the next round tries again. Such a contradiction is remembered beside
//! the download as `<sha256>.mismatch` (the Unix time it was seen) and the server is not asked
//! for that assignment again for [`MISMATCH_RETRY`]; a new assignment clears it, as it clears
//! every other leftover of the old one.
//!
//! A download that would leave the state folder's file system with less than `[board]
//! min-free-mib` free does not start ([`FetchError::NoRoom`]): what is still missing of the
//! file plus that minimum must be free first. Leftovers of older assignments are removed
//! before the check, so they never stand in the way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tinylcm_protocol::api::ModelAssignment;

use super::credentials::Credentials;
use super::http;
use crate::board::DiskGuard;

/// How long an assignment whose file contradicted it is left alone before it is tried again
/// (the server may have been fixed): four downloads a day at most instead of one per round.
pub const MISMATCH_RETRY: Duration = Duration::from_secs(6 * 3600);

/// Why [`fetch`] returned no file. Each message is one line for the sync log, beginning with
/// what failed; none of them is final: the next round tries again (after [`MISMATCH_RETRY`]
/// for a [`FetchError::Contradicted`] one).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The file system cannot take the rest of the file and keep its minimum free: nothing
    /// was asked of the server; try again when there is room.
    #[error(
        "{need} more bytes would leave less than the {} MiB kept free on {} \
         (`[board] min-free-mib`; free now: {}); waiting for room",
        min_free >> 20,
        path.display(),
        free.map_or("unknown".to_string(), |f| format!("{} MiB", f >> 20))
    )]
    NoRoom {
        /// What is still missing of the file, in bytes.
        need: u64,
        /// The free space the guard keeps, in bytes.
        min_free: u64,
        /// The guarded file system's folder.
        path: PathBuf,
        /// Free bytes now, when the file system could say.
        free: Option<u64>,
    },
    /// A file in the downloads folder could not be read or written.
    #[error("model download: {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection failed or was cut.
    #[error("model download: {}", http::describe(.0))]
    Network(#[source] reqwest::Error),
    /// The server answered with an error.
    #[error("model download: {}", .0.error_text())]
    Refused(http::Answer),
    /// A resumed download asked for bytes past the end of the server's file; the partial
    /// file is removed and the next round starts over.
    #[error("model download: range not satisfiable; starting over")]
    RangeNotSatisfiable,
    /// The resumed file's SHA-256 is not the assigned one: the kept part may be the damaged
    /// one, so the next round fetches it whole.
    #[error(
        "model download: SHA-256 {actual} of the resumed file is not the assigned {expected}; \
         discarded, fetched whole next round"
    )]
    ResumedMismatch {
        /// What the file hashed to.
        actual: String,
        /// What the assignment says.
        expected: String,
    },
    /// The server's file contradicts its own assignment: remembered, and not asked for again
    /// for [`MISMATCH_RETRY`].
    #[error(
        "model download: {0}; not asked again for {hours} h",
        hours = MISMATCH_RETRY.as_secs() / 3600
    )]
    Contradicted(Contradiction),
    /// The server's file contradicted this assignment recently: not asked for it again yet.
    #[error(
        "model download: the server's file contradicted this assignment; not asking again \
         for {} min",
        left.as_secs().div_ceil(60)
    )]
    StillContradicted {
        /// Time left before it is tried again.
        left: Duration,
    },
}

/// How a server's file contradicted its assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Contradiction {
    /// The answer went past the assigned size.
    #[error("more than the assigned {size} bytes; discarded")]
    Longer {
        /// The assigned size.
        size: u64,
    },
    /// The answer ended cleanly before the assigned size.
    #[error("the server's file ends at byte {have}, the assignment says {size}")]
    Shorter {
        /// Bytes received.
        have: u64,
        /// The assigned size.
        size: u64,
    },
    /// A whole file with other bytes.
    #[error("SHA-256 {actual} is not the assigned {expected}; discarded")]
    OtherBytes {
        /// What the file hashed to.
        actual: String,
        /// What the assignment says.
        expected: String,
    },
}

/// Downloads the assignment's file into `dir`, resuming a partial one; returns the complete,
/// checked file. With `disk`, the download starts only when the rest of the file fits and
/// leaves the guard's minimum free.
pub async fn fetch(
    client: &reqwest::Client,
    creds: &Credentials,
    a: &ModelAssignment,
    dir: &Path,
    disk: Option<&DiskGuard>,
) -> Result<PathBuf, FetchError> {
    let io = |what: &'static str, p: &Path, source: std::io::Error| FetchError::Io {
        what,
        path: p.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    // Leftovers of an assignment that was replaced will never be used: remove them.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(&a.sha256) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let mismatch = dir.join(format!("{}.mismatch", a.sha256));
    if let Some(left) = still_mismatched(&mismatch, SystemTime::now()) {
        return Err(FetchError::StillContradicted { left });
    }
    let contradiction = |how: Contradiction| {
        remember_mismatch(&mismatch, SystemTime::now());
        FetchError::Contradicted(how)
    };
    let part = dir.join(format!("{}.part", a.sha256));
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut resumed = false;
    if have > a.size {
        let _ = std::fs::remove_file(&part);
        have = 0;
    }
    if have < a.size {
        if let Some(guard) = disk {
            let need = a.size - have;
            if !guard.ok_to_write(need) {
                return Err(FetchError::NoRoom {
                    need,
                    min_free: guard.min_free_bytes(),
                    path: guard.path().to_path_buf(),
                    free: guard.space().ok().map(|s| s.free_bytes),
                });
            }
        }
        let absolute =
            a.download_url.starts_with("https://") || a.download_url.starts_with("http://");
        let mut request = if absolute {
            // A presigned URL carries its own authorization: never send the token elsewhere.
            client.get(&a.download_url)
        } else {
            client
                .get(http::join(&creds.server, &a.download_url))
                .bearer_auth(&creds.token)
        };
        if have > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut response = request.send().await.map_err(FetchError::Network)?;
        let status = response.status().as_u16();
        let mut f = match status {
            206 if have > 0 => {
                resumed = true;
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&part)
                    .map_err(|e| io("opening", &part, e))?
            }
            200 => {
                have = 0;
                std::fs::File::create(&part).map_err(|e| io("creating", &part, e))?
            }
            416 => {
                // Nothing past what we hold. Our partial file may be what is wrong (a damaged
                // card): start over; a server whose file is short shows it on a whole answer.
                let _ = std::fs::remove_file(&part);
                return Err(FetchError::RangeNotSatisfiable);
            }
            _ => {
                let headers = response.headers().clone();
                let body = http::read_bounded(&mut response, 4096)
                    .await
                    .unwrap_or_default();
                return Err(FetchError::Refused(http::Answer::new(
                    status, &headers, body,
                )));
            }
        };
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Network)? {
            if have + chunk.len() as u64 > a.size {
                drop(f);
                let _ = std::fs::remove_file(&part);
                return Err(contradiction(Contradiction::Longer { size: a.size }));
            }
            f.write_all(&chunk).map_err(|e| io("writing", &part, e))?;
            have += chunk.len() as u64;
        }
        f.sync_all().map_err(|e| io("syncing", &part, e))?;
        if have < a.size {
            // A cut connection is an error above; this answer ended cleanly, so the
            // server's file itself is shorter than it says.
            drop(f);
            let _ = std::fs::remove_file(&part);
            return Err(contradiction(Contradiction::Shorter { have, size: a.size }));
        }
    }
    let actual = sha256_file(&part).map_err(|e| io("reading", &part, e))?;
    if actual != a.sha256 {
        let _ = std::fs::remove_file(&part);
        if resumed {
            // Part of it came from an earlier answer we kept on disk: that part may be
            // the damaged one. Fetch it whole before blaming the server.
            return Err(FetchError::ResumedMismatch {
                actual,
                expected: a.sha256.clone(),
            });
        }
        return Err(contradiction(Contradiction::OtherBytes {
            actual,
            expected: a.sha256.clone(),
        }));
    }
    let done = dir.join(format!("{}.tflite", a.sha256));
    std::fs::rename(&part, &done).map_err(|e| io("renaming", &part, e))?;
    Ok(done)
}

/// Time left before an assignment remembered in `marker` as contradicted may be fetched
/// again; `None` when there is no marker, it is unreadable, or its time has passed (a clock
/// that went back, as a Pi's does before NTP, also counts as passed: one extra download at
/// worst).
fn still_mismatched(marker: &Path, now: SystemTime) -> Option<Duration> {
    let text = std::fs::read_to_string(marker).ok()?;
    let seen = UNIX_EPOCH + Duration::from_secs(text.trim().parse().ok()?);
    let age = now.duration_since(seen).ok()?;
    MISMATCH_RETRY.checked_sub(age).filter(|d| !d.is_zero())
}

/// Records in `marker` that the assignment's file contradicted it at `now`. Best effort: if
/// the disk refuses, the next round downloads again, as before.
fn remember_mismatch(marker: &Path, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Err(e) = std::fs::write(marker, format!("{secs}\n")) {
        tracing::warn!(
            "sync: cannot remember a mismatched download in {}: {e}",
            marker.display()
        );
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(tinylcm_protocol::package::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails before this change: the download started whatever the free space, filling the
    /// data partition the database and the logs need.
    #[test]
    fn a_download_without_room_is_not_even_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let creds = Credentials {
            server: format!("http://{}", server.local_addr().unwrap()),
            device_id: "d".into(),
            token: "t".into(),
        };
        let release = tinylcm_protocol::release::SignedRelease {
            manifest: String::new(),
            key_id: String::new(),
            signature: String::new(),
        };
        let a = ModelAssignment {
            name: "m".into(),
            version: "1".into(),
            size: 1 << 20,
            sha256: "a".repeat(64),
            release,
            download_url: "/x".into(),
        };
        // Keeping more free than the file system holds: no download fits.
        let guard = DiskGuard::new(dir.path(), u64::MAX / 4);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::new();
        let got = rt.block_on(fetch(&client, &creds, &a, dir.path(), Some(&guard)));
        let Err(e @ FetchError::NoRoom { .. }) = got else {
            panic!("{got:?}");
        };
        let why = e.to_string();
        assert!(why.contains("min-free-mib"), "{why}");
        assert!(
            matches!(server.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the server was asked for the file"
        );
        assert!(!dir.path().join(format!("{}.part", a.sha256)).exists());
    }

    #[test]
    fn a_mismatch_is_left_alone_for_the_retry_time_then_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("abc.mismatch");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(still_mismatched(&marker, t0), None, "no marker, no wait");
        remember_mismatch(&marker, t0);
        let hour = Duration::from_secs(3600);
        assert_eq!(still_mismatched(&marker, t0), Some(MISMATCH_RETRY));
        assert_eq!(
            still_mismatched(&marker, t0 + hour),
            Some(MISMATCH_RETRY - hour)
        );
        assert_eq!(still_mismatched(&marker, t0 + MISMATCH_RETRY), None);
        // A clock that went back (no RTC before NTP) does not block for ever.
        assert_eq!(still_mismatched(&marker, t0 - hour), None);
        // A damaged marker is ignored rather than trusted.
        std::fs::write(&marker, "yesterday").unwrap();
        assert_eq!(still_mismatched(&marker, t0), None);
    }
}
