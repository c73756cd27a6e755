//! Retention and per-device quotas for stored packages.
//!
//! Why: every package was kept for ever, twice (its raw TAR under `incoming/` and its files
//! unpacked under `devices/<d>/packages/`), so one chatty device could fill the server's disk
//! or bucket. What is kept and what can go:
//!
//! * kept for ever (small, and what reviews and exports are made of): the tracking records
//!   (devices, package records — so a re-sent package is still a duplicate —, drift events
//!   and decisions, feedback, the prediction index, metric points), event embeddings, log
//!   index blobs;
//! * pruned: a processed package's raw TAR and unpacked files, once older than
//!   `[storage] retention_days`, or oldest first when its device needs room under
//!   `[storage] device_quota_mib`;
//! * never pruned: a package not processed yet, and the sample files a *pending* drift event
//!   shows (the operator has not seen them yet); they go once the event is decided and the
//!   package is due.
//!
//! A device over its quota with nothing left to prune (everything is needed by pending events)
//! gets 507 for its upload: the runtime keeps the package and retries later (only 400/401/
//! 403/413 are final to it), so no data is lost while an operator reviews or raises the quota.
//! A package that alone needs more than the quota is refused with 413.

use std::collections::{BTreeMap, HashSet};

use tinylcm_protocol::api::{DriftEventStatus, MAX_DRIFT_EVENT_PAGE};

use super::storage::StorageSettings;
use super::{DomainError, Sphere};
use crate::ports::{BlobKey, DriftEventFilter};

/// A device's stored packages: package id → its blobs (raw TAR and files) with their sizes.
type Stored = BTreeMap<String, Vec<(BlobKey, u64)>>;

/// What one retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Packages whose files were deleted (wholly or but for protected samples).
    pub packages: usize,
    /// Bytes deleted.
    pub bytes: u64,
}

impl Sphere {
    /// Run with `settings` (`[storage]`): retention, quota, last-seen interval.
    pub fn with_storage(mut self, settings: &StorageSettings) -> Self {
        let interval = u64::try_from(settings.last_seen_interval.as_millis()).unwrap_or(u64::MAX);
        self = self.with_last_seen_interval(interval);
        self.storage = settings.clone();
        self
    }

    /// The `[storage]` settings this service runs with.
    pub fn storage(&self) -> &StorageSettings {
        &self.storage
    }

    /// Blob keys the pending drift events of `device` show (never pruned).
    fn protected(&self, device: &str) -> Result<HashSet<String>, DomainError> {
        let filter = DriftEventFilter {
            device: Some(device.to_owned()),
            status: Some(DriftEventStatus::Pending),
            ..Default::default()
        };
        let mut keys = HashSet::new();
        let mut after = 0;
        loop {
            let page = self
                .tracking
                .drift_events(&filter, after, MAX_DRIFT_EVENT_PAGE)?;
            keys.extend(page.iter().flat_map(|e| e.samples.iter().cloned()));
            match page.last() {
                Some(last) if page.len() == MAX_DRIFT_EVENT_PAGE => after = last.id,
                _ => return Ok(keys),
            }
        }
    }

    /// `device`'s stored packages with their blobs and sizes.
    fn stored(&self, device: &str) -> Result<Stored, DomainError> {
        let mut out = Stored::new();
        let raw = format!("incoming/{device}/");
        for (key, size) in self.blobs.list_sizes(&raw)? {
            if let Some(id) = key
                .as_str()
                .strip_prefix(&raw)
                .and_then(|n| n.strip_suffix(".tar"))
            {
                out.entry(id.to_owned()).or_default().push((key, size));
            }
        }
        let files = format!("devices/{device}/packages/");
        for (key, size) in self.blobs.list_sizes(&files)? {
            if let Some((id, _)) = key
                .as_str()
                .strip_prefix(&files)
                .and_then(|r| r.split_once('/'))
            {
                out.entry(id.to_owned()).or_default().push((key, size));
            }
        }
        Ok(out)
    }

    /// Delete `blobs` but the `protected` ones; the bytes deleted, or `None` when nothing was
    /// left to delete (a package pruned before, of which only protected samples remain: it is
    /// neither counted nor logged again at every sweep).
    fn prune(
        &self,
        device: &str,
        package: &str,
        blobs: &[(BlobKey, u64)],
        protected: &HashSet<String>,
    ) -> Result<Option<u64>, DomainError> {
        let mut deleted = 0;
        let mut freed = 0;
        for (key, size) in blobs {
            if protected.contains(key.as_str()) {
                continue;
            }
            self.blobs.delete(key)?;
            deleted += 1;
            freed += size;
        }
        if deleted == 0 {
            return Ok(None);
        }
        tracing::info!(device, package, bytes = freed, "stored package pruned");
        Ok(Some(freed))
    }

    /// Prune every device's processed packages accepted before `now_unix_ms` minus the
    /// retention (nothing when retention is off), keeping what pending drift events show.
    pub fn sweep_retention(&self, now_unix_ms: u64) -> Result<Pruned, DomainError> {
        let Some(retention) = self.storage.retention else {
            return Ok(Pruned::default());
        };
        let keep_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_unix_ms.saturating_sub(keep_ms);
        let mut done = Pruned::default();
        for device in self.tracking.devices()? {
            let device = device.device_id;
            let stored = self.stored(&device)?;
            if stored.is_empty() {
                continue;
            }
            let mut protected = None;
            for (package, blobs) in &stored {
                let Some(record) = self.tracking.package(&device, package)? else {
                    continue;
                };
                if record.processed_unix_ms.is_none() || record.accepted_unix_ms >= cutoff {
                    continue;
                }
                if protected.is_none() {
                    protected = Some(self.protected(&device)?);
                }
                let keep = protected.as_ref().expect("set above");
                if let Some(freed) = self.prune(&device, package, blobs, keep)? {
                    done.bytes += freed;
                    done.packages += 1;
                }
            }
        }
        if done.packages > 0 {
            tracing::info!(
                packages = done.packages,
                bytes = done.bytes,
                "retention sweep pruned stored packages"
            );
        }
        Ok(done)
    }

    /// Make room for `incoming` more bytes of `device` under its quota, pruning its oldest
    /// processed packages (but what pending drift events show) if needed; the bytes the
    /// device has stored then (without `incoming`). 413 when `incoming` alone is over the
    /// quota; 507 when what is left is all still needed.
    pub(super) fn make_room(&self, device: &str, incoming: u64) -> Result<u64, DomainError> {
        let Some(quota) = self.storage.device_quota_bytes else {
            return Ok(0);
        };
        if incoming > quota {
            return Err(DomainError::TooLarge {
                error: format!(
                    "this package needs {incoming} bytes stored (raw and unpacked), more than the device's quota of {quota}"
                ),
                fix: Some(
                    "send smaller packages, or ask the operator to raise [storage] device_quota_mib"
                        .into(),
                ),
            });
        }
        let stored = self.stored(device)?;
        let mut used: u64 = stored.values().flatten().map(|(_, size)| size).sum();
        if used.saturating_add(incoming) <= quota {
            return Ok(used);
        }
        // Oldest first; only processed packages (a pending one is still to be unpacked).
        let mut candidates = Vec::new();
        for package in stored.keys() {
            if let Some(record) = self.tracking.package(device, package)? {
                if record.processed_unix_ms.is_some() {
                    candidates.push((record.accepted_unix_ms, package.clone()));
                }
            }
        }
        candidates.sort();
        let protected = self.protected(device)?;
        for (_, package) in candidates {
            if used.saturating_add(incoming) <= quota {
                break;
            }
            let freed = self.prune(device, &package, &stored[&package], &protected)?;
            used = used.saturating_sub(freed.unwrap_or(0));
        }
        if used.saturating_add(incoming) <= quota {
            return Ok(used);
        }
        tracing::warn!(
            device,
            used,
            incoming,
            quota,
            "device over its storage quota"
        );
        Err(DomainError::InsufficientStorage {
            error: format!(
                "the device's stored packages use {used} of its {quota} bytes and what is left is needed by drift events waiting for review"
            ),
            fix: Some(
                "keep the package and retry later; an operator reviews the pending drift events or raises [storage] device_quota_mib"
                    .into(),
            ),
        })
    }
}
