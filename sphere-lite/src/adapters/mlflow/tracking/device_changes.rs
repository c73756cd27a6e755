//! Device token changes announced to every replica: after a device's token is rotated or
//! revoked in MLflow, an empty S3 object `device-changes/<unix ms>-<device>-<nonce>` under the
//! tracking prefix; each replica lists the recent ones at most once per [`POLL`] and drops its
//! cached record of each device named.
//!
//! Why: a device's every request is authorised against its record, which a replica caches.
//! Re-reading each record every few seconds to notice a rotation cost one MLflow read per
//! device and replica every 10 s, the largest share of MLflow's load under a 500-device fleet
//! (measured with the fleet bench). One listing a second per replica, whatever the fleet's
//! size, bounds a rotated or revoked token's life on another replica to about [`POLL`]
//! instead. The announcement is written after the MLflow write, so a replica that drops its
//! record reads the new token. Keys are listed from [`WINDOW`] before the newest one seen, so
//! an announcement whose writer's clock is behind by less than that, or whose write took that
//! long, is still found. Announcements older than [`RETAIN_MS`] are deleted by the replicas
//! (each prunes every [`PRUNE_EVERY`]), so the prefix stays small.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::adapters::S3Blobs;
use crate::ports::{BlobKey, Blobs, StoreError};

/// How often a replica lists the announcements (the bound on a rotated token's life
/// elsewhere, plus one listing's time).
pub const POLL: Duration = Duration::from_secs(1);
/// How far back each listing starts (clock skew and slow writes tolerated).
const WINDOW_MS: u64 = 120_000;
/// Most announcements read by one listing (an error beyond: a replica cannot know which of its
/// records are stale).
const MAX_LISTED: usize = 10_000;
/// Announcements older than this are deleted by whichever replica prunes next: ten windows,
/// far past any listing that could still need them.
const RETAIN_MS: u64 = 10 * WINDOW_MS;
/// How often a replica prunes old announcements (its first listing prunes too).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Most old announcements one pruning deletes (more are left to the next).
const MAX_PRUNED: usize = 1_000;
const PREFIX: &str = "device-changes/";

/// The announcements (see the module docs).
pub(super) struct DeviceChanges {
    store: Arc<S3Blobs>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the last listing started (none yet: list before trusting any cached record).
    listed_at: Option<Instant>,
    /// Announcements seen, by key, with their time (forgotten once out of the window).
    seen: HashMap<String, u64>,
    /// When this replica last pruned old announcements (none yet: at its first listing).
    pruned_at: Option<Instant>,
}

/// The time and device of an announcement key (`<13-digit ms>-<device>-<nonce>`).
fn parse(name: &str) -> Option<(u64, &str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (ms, rest) = rest.split_once('-')?;
    let (device, _nonce) = rest.rsplit_once('-')?;
    Some((ms.parse().ok()?, device))
}

impl DeviceChanges {
    /// Announcements in `store` (the tracking prefix of the S3 bucket).
    pub(super) fn new(store: Arc<S3Blobs>) -> Self {
        DeviceChanges {
            store,
            state: Mutex::new(State::default()),
        }
    }

    /// Tell every replica that `device`'s token changed (call after the change is stored).
    pub(super) fn announce(&self, device: &str) -> Result<(), StoreError> {
        let nonce =
            super::hex(&crate::secret::random_bytes::<8>().map_err(|e| StoreError::new("s3", e))?);
        let name = format!(
            "{PREFIX}{:013}-{device}-{nonce}",
            crate::domain::now_unix_ms()
        );
        let key = BlobKey::new(name)
            .map_err(|e| StoreError::new("s3", format!("device change key: {}", e.reason)))?;
        self.store.put(&key, &[])
    }

    /// The devices announced since the last listing, when a listing is due ([`POLL`]); empty
    /// otherwise. A failed listing is an error, and the next call lists again.
    pub(super) fn changed(&self) -> Result<Vec<String>, StoreError> {
        let newest = {
            let mut state = super::lock(&self.state);
            if state.listed_at.is_some_and(|t| t.elapsed() < POLL) {
                return Ok(vec![]);
            }
            // Others use their cache meanwhile rather than all listing at once.
            state.listed_at = Some(Instant::now());
            state.seen.values().copied().max()
        };
        let from = newest
            .unwrap_or_else(crate::domain::now_unix_ms)
            .saturating_sub(WINDOW_MS);
        let start = format!("{PREFIX}{from:013}");
        let listed = match self.store.list_page(PREFIX, Some(&start), MAX_LISTED + 1) {
            Ok(l) if l.len() > MAX_LISTED => Err(StoreError::new(
                "s3",
                format!("more than {MAX_LISTED} device changes in {WINDOW_MS} ms"),
            )),
            other => other,
        };
        let mut state = super::lock(&self.state);
        let listed = match listed {
            Ok(l) => l,
            Err(e) => {
                state.listed_at = None;
                return Err(e);
            }
        };
        let mut devices = Vec::new();
        for (key, _) in &listed {
            if let Some((ms, device)) = parse(key.as_str()) {
                if state.seen.insert(key.as_str().to_owned(), ms).is_none() {
                    devices.push(device.to_owned());
                }
            }
        }
        state.seen.retain(|_, ms| *ms >= from);
        let prune = state.pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
        if prune {
            state.pruned_at = Some(Instant::now());
        }
        drop(state);
        if prune {
            if let Err(e) = self.prune(crate::domain::now_unix_ms().saturating_sub(RETAIN_MS)) {
                tracing::warn!(error = %e, "old device change announcements not deleted; retried later");
            }
        }
        Ok(devices)
    }

    /// Delete announcements older than `before_ms` (at most [`MAX_PRUNED`]), so the prefix
    /// holds the last [`RETAIN_MS`] of them instead of every change ever made. Replicas may
    /// prune at once: deleting a deleted object is no error.
    fn prune(&self, before_ms: u64) -> Result<(), StoreError> {
        self.store
            .delete_before(PREFIX, &format!("{PREFIX}{before_ms:013}"), MAX_PRUNED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_keys_name_their_time_and_device() {
        assert_eq!(
            parse("device-changes/0001764147600000-dev-a-1-00ff"),
            Some((1_764_147_600_000, "dev-a-1"))
        );
        assert_eq!(parse("device-changes/x-dev-00ff"), None);
        assert_eq!(parse("other/0001-dev-00ff"), None);
    }
}
