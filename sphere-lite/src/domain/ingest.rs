//! Package ingest: accept an upload durably and idempotently, then process it.
//!
//! Why: a device drops a package for good when the server answers with an error, so the order
//! matters: the package is validated completely first (nothing is stored for a bad one), then
//! its raw TAR is stored as a blob and recorded as accepted *before* the 200, and only then
//! unpacked into per-file blobs. A crash between accept and process is repaired at startup by
//! [`Sphere::process_pending`]. A package id seen before from the same device answers
//! `Duplicate`, never an error.

use tinylcm_protocol::api::{UploadOutcome, UploadResponse};
use tinylcm_protocol::package::{Limits, Package, read_package};

use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::{BlobKey, PackageRecord, Recorded};

/// Blob key of a package's raw TAR.
pub fn raw_key(device_id: &str, package_id: &str) -> Result<BlobKey, DomainError> {
    BlobKey::new(format!("incoming/{device_id}/{package_id}.tar")).map_err(bad_key)
}

/// Blob key of one file of a processed package.
pub fn file_key(device_id: &str, package_id: &str, name: &str) -> Result<BlobKey, DomainError> {
    BlobKey::new(format!("devices/{device_id}/packages/{package_id}/{name}")).map_err(bad_key)
}

fn bad_key(e: crate::ports::InvalidKey) -> DomainError {
    DomainError::BadRequest {
        error: format!("package rejected: {}", e.reason),
        fix: Some(
            "use ids and file names made of A-Z a-z 0-9 . _ - (not starting with '.')".into(),
        ),
    }
}

fn parse(bytes: &[u8]) -> Result<Package, DomainError> {
    read_package(bytes, &Limits::default()).map_err(|e| {
        if e.is_too_large() {
            DomainError::TooLarge {
                error: format!("package rejected: {e}"),
                fix: Some("send smaller packages (split the data over several packages)".into()),
            }
        } else {
            DomainError::BadRequest {
                error: format!("package rejected: {e}"),
                fix: Some("build packages with tinylcm_protocol::package::PackageBuilder".into()),
            }
        }
    })
}

/// Blob keys of every file of `package` (all validated before anything is stored).
fn file_keys(package: &Package) -> Result<Vec<BlobKey>, DomainError> {
    let m = &package.manifest;
    package
        .files
        .iter()
        .map(|(entry, _)| file_key(&m.device_id, &m.package_id, &entry.name))
        .collect()
}

impl Sphere {
    /// Validate and durably accept `body` as a package from `device_id` (already authorised).
    pub fn accept_upload(
        &self,
        device_id: &str,
        body: &[u8],
    ) -> Result<UploadResponse, DomainError> {
        if body.len() as u64 > self.max_upload_bytes {
            return Err(DomainError::TooLarge {
                error: format!("package body exceeds {} bytes", self.max_upload_bytes),
                fix: Some("send smaller packages".into()),
            });
        }
        let package = parse(body)?;
        let manifest = &package.manifest;
        if manifest.device_id != device_id {
            return Err(DomainError::Forbidden {
                error: "the package's manifest names another device".into(),
                fix: Some("a device may only upload packages built with its own device id".into()),
            });
        }
        let package_id = manifest.package_id.clone();
        let raw = raw_key(device_id, &package_id)?;
        file_keys(&package)?;

        let _guard = self
            .accept_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let duplicate = UploadResponse {
            package_id: package_id.clone(),
            outcome: UploadOutcome::Duplicate,
        };
        if self.tracking.package(device_id, &package_id)?.is_some() {
            tracing::info!(device = %device_id, package = %package_id, "duplicate upload");
            return Ok(duplicate);
        }
        self.blobs.put(&raw, body)?;
        let record = PackageRecord {
            device_id: device_id.to_owned(),
            package_id: package_id.clone(),
            raw_key: raw.to_string(),
            accepted_unix_ms: now_unix_ms(),
            processed_unix_ms: None,
            failed: None,
        };
        match self.tracking.record_accepted(&record)? {
            Recorded::New => {
                tracing::info!(device = %device_id, package = %package_id, bytes = body.len(), "package accepted");
                Ok(UploadResponse {
                    package_id,
                    outcome: UploadOutcome::Accepted,
                })
            }
            Recorded::AlreadyKnown => Ok(duplicate),
        }
    }

    /// Unpack an accepted package into per-file blobs and mark it processed. A package whose
    /// raw TAR is missing or no longer parses is marked failed (kept for inspection); a store
    /// failure leaves it pending for the next attempt.
    pub fn process(&self, device_id: &str, package_id: &str) -> Result<(), DomainError> {
        let Some(record) = self.tracking.package(device_id, package_id)? else {
            return Ok(());
        };
        if record.processed_unix_ms.is_some() {
            return Ok(());
        }
        let fail = |reason: String| -> Result<(), DomainError> {
            tracing::error!(device = %device_id, package = %package_id, %reason, "package processing failed");
            self.tracking
                .mark_processed(device_id, package_id, now_unix_ms(), Some(reason))?;
            Ok(())
        };
        let raw = raw_key(device_id, package_id)?;
        let Some(bytes) = self.blobs.get(&raw)? else {
            return fail("raw package blob is missing".into());
        };
        let package = match parse(&bytes) {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        let keys = match file_keys(&package) {
            Ok(k) => k,
            Err(e) => return fail(e.to_string()),
        };
        for (key, (_, content)) in keys.iter().zip(&package.files) {
            self.blobs.put(key, content)?;
        }
        self.tracking
            .mark_processed(device_id, package_id, now_unix_ms(), None)?;
        tracing::info!(device = %device_id, package = %package_id, files = keys.len(), "package processed");
        Ok(())
    }

    /// Process every accepted-but-unprocessed package (at startup, after a crash). Returns how
    /// many were processed; failures are logged and left for the next start.
    pub fn process_pending(&self) -> Result<usize, DomainError> {
        let pending = self.tracking.unprocessed()?;
        let mut done = 0;
        for record in pending {
            match self.process(&record.device_id, &record.package_id) {
                Ok(()) => done += 1,
                Err(e) => tracing::error!(
                    device = %record.device_id, package = %record.package_id, error = %e,
                    "pending package not processed; will retry at next start"
                ),
            }
        }
        Ok(done)
    }
}
