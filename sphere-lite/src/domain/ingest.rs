//! Package ingest: accept an upload durably and idempotently (processing it is
//! [`super::process`]).
//!
//! Why: a device drops a package for good when the server answers with an error, so the order
//! matters: the package is validated completely first (nothing is stored for a bad one), then
//! its raw TAR is stored as a blob and recorded as accepted, both durably, *before* the 200,
//! and only then unpacked into per-file blobs. A crash between accept and process is repaired
//! at startup by [`Sphere::process_pending`]. A package id seen before from the same device
//! answers `Duplicate`, never an error.
//!
//! Durable at once for many: where the tracking store commits in groups (the embedded redb),
//! the raw TAR is written without its own flush and the upload joins a [`GroupCommit`]: one
//! leader flushes every raw TAR of its group ([`crate::ports::Blobs::sync`]) and then records
//! them all in one durable commit; each upload is answered only after the commit that holds
//! its record has returned. Only the claim on the package id and the quota accounting are
//! serialised, in memory ([`super::admission`]).

use std::io::{Seek, SeekFrom};
use std::path::Path;

use tinylcm_protocol::api::{UploadOutcome, UploadResponse};
use tinylcm_protocol::package::{Limits, Manifest, PackageError, check_package};

use super::group_commit::GroupCommit;
use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::{BlobKey, PackageRecord, Recorded, StoreError};

/// Accepted uploads waiting to be made durable together: (raw TAR's key, record).
pub(crate) type AcceptGroup = GroupCommit<(BlobKey, PackageRecord), Recorded>;

/// Name prefix of upload spool files (what [`prepare_spool_dir`] removes).
const SPOOL_PREFIX: &str = "upload-";
/// Name suffix of upload spool files.
const SPOOL_SUFFIX: &str = ".spool";

/// Create `dir` for upload spool files if needed and delete those a killed process left in
/// it; returns `dir`. Only for a folder this process owns alone (the embedded default's data
/// folder is locked by its database): replicas sharing a folder would delete each other's
/// uploads.
pub fn prepare_spool_dir(dir: &Path) -> Result<std::path::PathBuf, crate::ports::StoreError> {
    let fail = |e: std::io::Error| {
        crate::ports::StoreError::new("spool", format!("{}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SPOOL_PREFIX) && name.ends_with(SPOOL_SUFFIX) {
            let removed = std::fs::remove_file(entry.path());
            tracing::info!(file = %name, ok = removed.is_ok(), "removed a stale upload spool file");
        }
    }
    Ok(dir.to_path_buf())
}

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

/// A package error as the device's answer (413 for a limit, 400 otherwise); an error of the
/// server's own copy of the body (its spool file) is the server's failure, not the device's.
pub(super) fn refused(e: PackageError) -> DomainError {
    if let PackageError::Read { source } = &e {
        return DomainError::Store(crate::ports::StoreError::new(
            "spool",
            format!("read the upload: {source}"),
        ));
    }
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
}

/// Blob keys of every file of `manifest` (all validated before anything is stored).
pub(super) fn file_keys(manifest: &Manifest) -> Result<Vec<BlobKey>, DomainError> {
    manifest
        .files
        .iter()
        .map(|entry| file_key(&manifest.device_id, &manifest.package_id, &entry.name))
        .collect()
}

/// Where an upload's body is: in memory, or spooled to a file by the HTTP layer.
enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

impl Body<'_> {
    /// Check the package (its files streamed through their hashes, none kept).
    fn check(&self, limits: &Limits) -> Result<Manifest, DomainError> {
        match self {
            Body::Bytes(bytes) => check_package(*bytes, limits).map_err(refused),
            Body::File(path) => {
                let mut file = std::fs::File::open(path).map_err(spool_error)?;
                file.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                check_package(std::io::BufReader::new(file), limits).map_err(refused)
            }
        }
    }

    fn len(&self) -> Result<u64, DomainError> {
        match self {
            Body::Bytes(bytes) => Ok(bytes.len() as u64),
            Body::File(path) => Ok(std::fs::metadata(path).map_err(spool_error)?.len()),
        }
    }

    /// Store the body under `key`, durable only after [`crate::ports::Blobs::sync`].
    fn store_unsynced(&self, sphere: &Sphere, key: &BlobKey) -> Result<(), DomainError> {
        match self {
            Body::Bytes(bytes) => sphere.blobs.put_unsynced(key, bytes)?,
            Body::File(path) => sphere.blobs.put_file_unsynced(key, path)?,
        }
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> DomainError {
    DomainError::Store(crate::ports::StoreError::new(
        "spool",
        format!("read the upload: {e}"),
    ))
}

impl Sphere {
    /// Validate and durably accept `body` as a package from `device_id` (already authorised).
    pub fn accept_upload(
        &self,
        device_id: &str,
        body: &[u8],
    ) -> Result<UploadResponse, DomainError> {
        self.accept(device_id, Body::Bytes(body))
    }

    /// A new, empty file in the spool folder for an upload's body (or a translated legacy
    /// package); deleted when dropped, so no path leaves it behind.
    pub fn spool_file(&self) -> Result<tempfile::NamedTempFile, DomainError> {
        tempfile::Builder::new()
            .prefix(SPOOL_PREFIX)
            .suffix(SPOOL_SUFFIX)
            .tempfile_in(&self.spool_dir)
            .map_err(|e| {
                DomainError::Store(crate::ports::StoreError::new(
                    "spool",
                    format!("create a file in {}: {e}", self.spool_dir.display()),
                ))
            })
    }

    /// As [`Sphere::accept_upload`], for a body the HTTP layer spooled to the file `path`:
    /// the package is checked and stored from the file, never held in memory. The file is
    /// left for the caller to delete.
    pub fn accept_upload_file(
        &self,
        device_id: &str,
        path: &Path,
    ) -> Result<UploadResponse, DomainError> {
        self.accept(device_id, Body::File(path))
    }

    fn accept(&self, device_id: &str, body: Body<'_>) -> Result<UploadResponse, DomainError> {
        let len = body.len()?;
        if len > self.max_upload_bytes {
            return Err(DomainError::TooLarge {
                error: format!("package body exceeds {} bytes", self.max_upload_bytes),
                fix: Some("send smaller packages".into()),
            });
        }
        let manifest = body.check(&self.limits())?;
        let manifest = &manifest;
        if manifest.device_id != device_id {
            return Err(DomainError::Forbidden {
                error: "the package's manifest names another device".into(),
                fix: Some("a device may only upload packages built with its own device id".into()),
            });
        }
        let package_id = manifest.package_id.clone();
        let raw = raw_key(device_id, &package_id)?;
        file_keys(manifest)?;

        let mut claim = self.admission.claim(device_id, &package_id);
        let duplicate = UploadResponse {
            package_id: package_id.clone(),
            outcome: UploadOutcome::Duplicate,
        };
        if self.tracking.package(device_id, &package_id)?.is_some() {
            tracing::info!(device = %device_id, package = %package_id, "duplicate upload");
            return Ok(duplicate);
        }
        // Stored twice until retention prunes it: the raw TAR and its files unpacked.
        self.admit(&mut claim, len)?;
        body.store_unsynced(self, &raw)?;
        let record = PackageRecord {
            device_id: device_id.to_owned(),
            package_id: package_id.clone(),
            raw_key: raw.to_string(),
            accepted_unix_ms: now_unix_ms(),
            processed_unix_ms: None,
            failed: None,
            problems: vec![],
        };
        // The claim is held until the record is durable: a second upload of this package
        // waits for it and then finds it recorded.
        let recorded = if self.tracking.commits_in_groups() {
            self.accepted
                .submit((raw, record.clone()), |group| self.commit_accepted(group))?
        } else {
            self.blobs.sync(std::slice::from_ref(&raw))?;
            self.tracking.record_accepted(&record)?
        };
        drop(claim);
        match recorded {
            Recorded::New => {
                // Kept for its processing, which then needs not read it back.
                self.uploads.note(&record);
                tracing::info!(device = %device_id, package = %package_id, bytes = len, "package accepted");
                Ok(UploadResponse {
                    package_id,
                    outcome: UploadOutcome::Accepted,
                })
            }
            Recorded::AlreadyKnown => Ok(duplicate),
        }
    }

    /// One group commit of accepted uploads: their raw TARs made durable, then their records
    /// in one commit (never a record whose raw TAR could still be lost).
    fn commit_accepted(
        &self,
        group: Vec<(BlobKey, PackageRecord)>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let (keys, records): (Vec<BlobKey>, Vec<PackageRecord>) = group.into_iter().unzip();
        self.blobs.sync(&keys)?;
        self.tracking.record_accepted_group(&records)
    }

    /// Package limits: the protocol defaults with the whole-package bound set to the upload cap.
    pub fn limits(&self) -> Limits {
        Limits {
            max_package_bytes: self.max_upload_bytes,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tinylcm_protocol::package::{FileKind, PackageBuilder};

    use super::*;
    use crate::adapters::{DirBlobs, RedbTracking};
    use crate::ports::prelude::*;
    use crate::ports::{Blobs, StoreError};

    /// Local blobs whose writes fail while `broken` is set (a full disk, an S3 outage).
    struct Flaky {
        inner: DirBlobs,
        broken: AtomicBool,
    }

    impl Blobs for Flaky {
        fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::new("blobs", "disk full"));
            }
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn presigned_get(
            &self,
            key: &BlobKey,
            expiry: std::time::Duration,
        ) -> Result<Option<String>, StoreError> {
            self.inner.presigned_get(key, expiry)
        }
    }

    #[test]
    fn a_storage_failure_is_a_retryable_error_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(Flaky {
            inner: DirBlobs::open(&dir.path().join("blobs")).unwrap(),
            broken: AtomicBool::new(true),
        });
        let sphere = Sphere::new(tracking.clone(), blobs.clone());
        let device = crate::test_support::enrolled(&sphere, None).device_id;
        let mut b = PackageBuilder::new("p1", device.as_str(), 1).unwrap();
        b.add("m.json", FileKind::Metrics, b"{}".to_vec()).unwrap();
        let pkg = b.finish().unwrap();

        // Not a client error (the device keeps the package and retries), nothing recorded.
        let err = sphere.accept_upload(&device, &pkg).unwrap_err();
        assert!(matches!(err, DomainError::Store(_)), "{err}");
        assert!(tracking.package(&device, "p1").unwrap().is_none());
        assert_eq!(tracking.device(&device).unwrap().unwrap().packages, 0);

        // The retry after the outage is accepted, not a duplicate.
        blobs.broken.store(false, Ordering::SeqCst);
        let ok = sphere.accept_upload(&device, &pkg).unwrap();
        assert_eq!(ok.outcome, UploadOutcome::Accepted);

        // Processing that fails on storage stays pending; it is done once storage is back.
        blobs.broken.store(true, Ordering::SeqCst);
        assert!(sphere.process(&device, "p1").is_err());
        assert_eq!(tracking.unprocessed().unwrap().len(), 1);
        blobs.broken.store(false, Ordering::SeqCst);
        assert_eq!(sphere.process_pending().unwrap(), 1);
        assert!(tracking.unprocessed().unwrap().is_empty());
        assert_eq!(
            blobs
                .get(&file_key(&device, "p1", "m.json").unwrap())
                .unwrap()
                .unwrap(),
            b"{}"
        );
    }

    #[test]
    fn a_raw_package_that_vanished_is_marked_failed_not_retried_forever() {
        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(DirBlobs::open(&dir.path().join("blobs")).unwrap());
        let sphere = Sphere::new(tracking.clone(), blobs.clone());
        tracking
            .record_accepted(&PackageRecord {
                device_id: "d".into(),
                package_id: "gone".into(),
                raw_key: "incoming/d/gone.tar".into(),
                accepted_unix_ms: 1,
                processed_unix_ms: None,
                failed: None,
                problems: vec![],
            })
            .unwrap();
        assert_eq!(sphere.process_pending().unwrap(), 1);
        assert!(tracking.unprocessed().unwrap().is_empty());
        let record = tracking.package("d", "gone").unwrap().unwrap();
        assert!(record.failed.unwrap().contains("missing"));
    }
}
