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

/// Why [`fetch`] returned no file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The file system cannot take the rest of the file and keep its minimum free: nothing
    /// was asked of the server; try again when there is room.
    #[error("{0}")]
    NoRoom(String),
    /// The download failed (network, server, disk, a file that contradicts its assignment):
    /// a one-line message for the sync log.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for FetchError {
    fn from(message: String) -> Self {
        FetchError::Failed(message)
    }
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
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
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
        return Err(FetchError::Failed(format!(
            "model download: the server's file contradicted this assignment; not asking \
             again for {} min",
            left.as_secs().div_ceil(60)
        )));
    }
    let contradiction = |reason: String| {
        remember_mismatch(&mismatch, SystemTime::now());
        format!(
            "model download: {reason}; not asked again for {} h",
            MISMATCH_RETRY.as_secs() / 3600
        )
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
                let free = guard.space().map_or("unknown".to_string(), |s| {
                    format!("{} MiB", s.free_bytes >> 20)
                });
                return Err(FetchError::NoRoom(format!(
                    "{need} more bytes would leave less than the {} MiB kept free on {} \
                     (`[board] min-free-mib`; free now: {free}); waiting for room",
                    guard.min_free_bytes() >> 20,
                    guard.path().display()
                )));
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
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("model download: {}", http::describe(&e)))?;
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
                return Err(FetchError::Failed(
                    "model download: range not satisfiable; starting over".into(),
                ));
            }
            _ => {
                let headers = response.headers().clone();
                let body = http::read_bounded(&mut response, 4096)
                    .await
                    .unwrap_or_default();
                let a = http::Answer::new(status, &headers, body);
                return Err(format!("model download: {}", a.error_text()).into());
            }
        };
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("model download: {}", http::describe(&e)))?
        {
            if have + chunk.len() as u64 > a.size {
                drop(f);
                let _ = std::fs::remove_file(&part);
                return Err(contradiction(format!(
                    "more than the assigned {} bytes; discarded",
                    a.size
                ))
                .into());
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
            return Err(contradiction(format!(
                "the server's file ends at byte {have}, the assignment says {}",
                a.size
            ))
            .into());
        }
    }
    let actual = sha256_file(&part).map_err(|e| io("reading", &part, e))?;
    if actual != a.sha256 {
        let _ = std::fs::remove_file(&part);
        if resumed {
            // Part of it came from an earlier answer we kept on disk: that part may be
            // the damaged one. Fetch it whole before blaming the server.
            return Err(format!(
                "model download: SHA-256 {actual} of the resumed file is not the assigned {}; \
                 discarded, fetched whole next round",
                a.sha256
            )
            .into());
        }
        return Err(contradiction(format!(
            "SHA-256 {actual} is not the assigned {}; discarded",
            a.sha256
        ))
        .into());
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
        let Err(FetchError::NoRoom(why)) = got else {
            panic!("{got:?}");
        };
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
