//! Compatibility with the original TinyLCM Python clients, so deployed devices can move to
//! sphere-lite unchanged.
//!
//! | original call | here |
//! |---|---|
//! | `GET /api/status` | 200, as the connection probe expects |
//! | `POST /api/devices/register` | checks that the bearer token belongs to `device_id`, records the contact |
//! | `POST /api/packages/upload` (multipart `package` + `metadata`) | MD5 checked, archive [`archive`] read under limits, [`translate`]d to a v2 package and accepted idempotently |
//! | `GET /api/drift/validations/pending` | the device's feedback queue, as validations |
//! | `POST /api/drift/validations/acknowledge` | acknowledges the queue in order |
//! | `GET /api/samples/validation-results/{id}` | labelled quarantine samples still queued |
//!
//! What differs on purpose: every call needs the device's own token as the client's
//! `api_key` (the original had no authentication; the client already sends
//! `Authorization: Bearer <api_key>`), created with `sphere-lite device add <id>`. A repeated
//! upload answers 200 (the client drops a package for good on any other status), and errors
//! are real HTTP errors, never a 200 that says "error".

use tinylcm_protocol::api::{FeedbackItem, FeedbackVerdict, UploadOutcome};
use tinylcm_protocol::package::Limits;

use crate::domain::{DomainError, Sphere, now_unix_ms};
use wire::{
    AcknowledgeResponse, AcknowledgeResult, SampleResult, SampleResults, UploadMetadata, Validation,
};

// The parsers of what the clients send (no server state) live in the protocol crate, where
// the fuzz target `legacy_upload` runs them without the server's dependency tree.
pub use tinylcm_protocol::legacy::{Compression, LegacyError, archive, translate, wire};

impl From<LegacyError> for DomainError {
    fn from(e: LegacyError) -> Self {
        match e {
            LegacyError::TooLarge(_) => DomainError::TooLarge {
                error: e.to_string(),
                fix: Some("send smaller packages (sync more often)".into()),
            },
            LegacyError::BadMetadata(_) => DomainError::BadRequest {
                error: e.to_string(),
                fix: Some(
                    "send a `metadata` part with device_id, package_id (UUID), package_type, hash (MD5) and timestamp"
                        .into(),
                ),
            },
            LegacyError::Spool(_) => {
                DomainError::Store(crate::ports::StoreError::new("spool", e.to_string()))
            }
            LegacyError::BadArchive(_) | LegacyError::Unsupported(_) => DomainError::BadRequest {
                error: e.to_string(),
                fix: Some("send a flat TAR (or .tar.gz) of regular files".into()),
            },
        }
    }
}

/// An original client's upload accepted (or recognised as a repeat).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The answer for the client.
    pub response: wire::UploadResponse,
    /// True the first time: the package must be queued for processing.
    pub new: bool,
}

/// Accept `archive` with its `metadata` part from `device_id` (already authenticated).
pub fn accept_upload(
    sphere: &Sphere,
    device_id: &str,
    metadata: &[u8],
    archive: &[u8],
) -> Result<Accepted, DomainError> {
    accept_archive(sphere, device_id, metadata, std::io::Cursor::new(archive))
}

/// As [`accept_upload`], for an archive the HTTP layer spooled to the file `path`. The
/// archive is streamed (MD5, then its members); the translated package is written to a spool
/// file of its own and accepted from there, so only the members' contents are ever held.
pub fn accept_upload_file(
    sphere: &Sphere,
    device_id: &str,
    metadata: &[u8],
    path: &std::path::Path,
) -> Result<Accepted, DomainError> {
    let file = std::fs::File::open(path).map_err(|e| LegacyError::Spool(e.to_string()))?;
    accept_archive(sphere, device_id, metadata, file)
}

/// MD5 (hex) of everything `reader` yields, read in small pieces.
fn md5_hex<R: std::io::Read>(mut reader: R) -> Result<String, LegacyError> {
    let mut context = md5::Context::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => context.consume(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LegacyError::Spool(e.to_string())),
        }
    }
    Ok(format!("{:x}", context.compute()))
}

fn accept_archive<R: std::io::Read + std::io::Seek>(
    sphere: &Sphere,
    device_id: &str,
    metadata: &[u8],
    mut archive: R,
) -> Result<Accepted, DomainError> {
    let metadata: UploadMetadata = serde_json::from_slice(metadata)
        .map_err(|e| LegacyError::BadMetadata(format!("not the expected JSON object: {e}")))?;
    if metadata.device_id != device_id {
        return Err(DomainError::Forbidden {
            error: "the metadata names another device than the token's".into(),
            fix: Some("configure the client with the token created for its device_id".into()),
        });
    }
    if !tinylcm_protocol::ids::valid_package_id(&metadata.package_id) {
        return Err(LegacyError::BadMetadata(format!(
            "package_id {:?} is not 1 to 64 characters of A-Z a-z 0-9 _ -",
            metadata.package_id.chars().take(80).collect::<String>()
        ))
        .into());
    }
    if let Some(expected) = metadata.hash.as_deref().filter(|h| !h.is_empty()) {
        let actual = md5_hex(&mut archive)?;
        archive
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| LegacyError::Spool(e.to_string()))?;
        if !actual.eq_ignore_ascii_case(expected.trim()) {
            return Err(LegacyError::BadArchive(format!(
                "the archive's MD5 is {actual}, the metadata says {expected}: it was damaged on the way"
            ))
            .into());
        }
    }
    // The translated package adds a manifest and headers; keep room for them under the cap.
    let limits = Limits {
        max_package_bytes: sphere.max_upload_bytes() / 16 * 15,
        ..sphere.limits()
    };
    let members = archive::read_members_from(archive, &limits)?;
    let builder = translate::to_builder(device_id, &metadata, members, &limits, now_unix_ms())?;
    let spool = sphere.spool_file()?;
    let mut out = std::io::BufWriter::new(spool.as_file());
    builder.finish_to(&mut out).map_err(|e| match e {
        tinylcm_protocol::package::PackageError::Tar { .. } => LegacyError::Spool(e.to_string()),
        e if e.is_too_large() => LegacyError::TooLarge(e.to_string()),
        e => LegacyError::BadArchive(e.to_string()),
    })?;
    std::io::Write::flush(&mut out).map_err(|e| LegacyError::Spool(e.to_string()))?;
    drop(out);
    let v2 = sphere.accept_upload_file(device_id, spool.path())?;
    let new = v2.outcome == UploadOutcome::Accepted;
    Ok(Accepted {
        response: wire::UploadResponse {
            server_id: format!("{device_id}/{}", v2.package_id),
            package_id: v2.package_id,
            status: "success",
            message: if new {
                "Package uploaded successfully and processing started"
            } else {
                "Package was already received"
            },
            uploaded: true,
        },
        new,
    })
}

/// The device's unacknowledged feedback as the original's pending validations.
pub fn pending_validations(
    sphere: &Sphere,
    device_id: &str,
) -> Result<Vec<Validation>, DomainError> {
    let page = sphere.feedback_page(device_id, 0)?;
    Ok(page
        .items
        .iter()
        .map(|item| validation(device_id, item))
        .collect())
}

fn validation(device_id: &str, item: &FeedbackItem) -> Validation {
    let mut v = Validation {
        validation_id: item.id.to_string(),
        drift_event_id: None,
        drift_sample_id: None,
        is_valid_drift: true,
        true_label: None,
        validated_by: "operator",
        validated_at: tinylcm_protocol::time::iso8601(item.created_unix_ms),
        notes: None,
        device_id: device_id.to_owned(),
    };
    match &item.verdict {
        FeedbackVerdict::Drift {
            incident,
            event,
            verdict,
        } => {
            v.drift_event_id = event.or(*incident).map(|n| n.to_string());
            v.is_valid_drift = *verdict == tinylcm_protocol::api::DriftVerdict::Confirmed;
        }
        FeedbackVerdict::Sample { id, label, reject } => {
            v.drift_sample_id = Some(id.to_string());
            v.true_label = label.clone();
            v.is_valid_drift = !reject;
        }
        FeedbackVerdict::Class { from, to } => {
            v.notes = Some(format!("class {from:?} renamed to {to:?}"));
            v.true_label = Some(to.clone());
        }
        // Original clients have no remote configuration: they see a note, and acknowledging
        // it keeps their queue moving.
        FeedbackVerdict::Config { revision, .. } => {
            v.notes = Some(format!(
                "remote configuration {revision} (not applied by original clients)"
            ));
        }
    }
    v
}

/// Acknowledge the validations `ids`. The queue is acknowledged in order: an id counts only
/// when every earlier pending id is in `ids` too, so nothing unseen is ever skipped.
pub fn acknowledge(
    sphere: &Sphere,
    device_id: &str,
    ids: &[String],
) -> Result<AcknowledgeResponse, DomainError> {
    let sent: std::collections::HashSet<u64> =
        ids.iter().filter_map(|s| s.trim().parse().ok()).collect();
    let pending = sphere.feedback_page(device_id, 0)?.items;
    let up_to = pending
        .iter()
        .take_while(|item| sent.contains(&item.id))
        .last()
        .map(|item| item.id);
    // Acknowledging 0 moves nothing and returns the watermark (acknowledgements never move
    // backwards), so repeats of earlier acknowledgements are recognised too.
    let watermark = sphere
        .ack_feedback(
            device_id,
            &tinylcm_protocol::api::AckRequest {
                up_to: up_to.unwrap_or(0),
            },
        )?
        .acknowledged_up_to;
    let results = ids
        .iter()
        .map(|raw| AcknowledgeResult {
            validation_id: raw.clone(),
            success: raw
                .trim()
                .parse::<u64>()
                .is_ok_and(|id| (1..=watermark).contains(&id)),
        })
        .collect();
    Ok(AcknowledgeResponse { results })
}

/// Labelled quarantine samples still in the device's feedback queue.
pub fn sample_results(sphere: &Sphere, device_id: &str) -> Result<SampleResults, DomainError> {
    let items = sphere.feedback_page(device_id, 0)?.items;
    let results = items
        .iter()
        .filter_map(|item| match &item.verdict {
            FeedbackVerdict::Sample {
                id,
                label: Some(label),
                reject: false,
            } => Some(SampleResult {
                sample_id: id.to_string(),
                validated_label: label.clone(),
            }),
            _ => None,
        })
        .collect();
    Ok(SampleResults { results })
}
