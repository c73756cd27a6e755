//! Model releases (OTA): publish a signed release, assign it to a device group (whole or as a
//! canary share), tell each device which release it should run.
//!
//! Why the server verifies too, although devices verify again before installing: an operator
//! learns at upload time, not from a fleet of refusing devices, that a release is unsigned,
//! signed by an untrusted key, or does not match its file. The server never re-signs anything:
//! devices get the signed release exactly as uploaded.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tinylcm_protocol::api::{ModelAssignment, RolloutRequest};
use tinylcm_protocol::ids::valid_package_id;
use tinylcm_protocol::release::{MAX_MANIFEST_BYTES, ReleaseManifest, SignedRelease};

use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::{
    ALL_DEVICES, BlobKey, DeviceSettings, Recorded, ReleaseRecord, Rollout, StoreError,
};

/// How long a presigned model download URL stays valid.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(3600);

/// Blob key of a release's model file.
pub fn release_key(name: &str, version: &str) -> Result<BlobKey, DomainError> {
    BlobKey::new(format!("models/{name}/{version}/model.tflite"))
        .map_err(|e| DomainError::Store(StoreError::new("blobs", e)))
}

/// One release as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseSummary {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// File size.
    pub size: u64,
    /// File SHA-256.
    pub sha256: String,
    /// Signing key id.
    pub key_id: String,
    /// Its signed security epoch (0 when the release has none): a device that committed a
    /// release of a higher epoch refuses it.
    pub epoch: u32,
    /// The product or board it is signed for (absent: not bound; only devices without a
    /// `[models] compatible` take it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatible: Option<String>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When (Unix ms).
    pub uploaded_unix_ms: u64,
}

/// `GET /api/v2/models` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReleaseList {
    /// Releases by name, then upload time.
    pub releases: Vec<ReleaseSummary>,
    /// Rollouts by group.
    pub rollouts: Vec<Rollout>,
}

fn summary(r: &ReleaseRecord) -> ReleaseSummary {
    // Verified when it was published; stored exactly as signed, so it parses again.
    let manifest = serde_json::from_str::<ReleaseManifest>(&r.signed.manifest).ok();
    ReleaseSummary {
        epoch: manifest.as_ref().map_or(0, |m| m.epoch),
        compatible: manifest.and_then(|m| m.compatible),
        name: r.name.clone(),
        version: r.version.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        key_id: r.signed.key_id.clone(),
        uploaded_by: r.uploaded_by.clone(),
        uploaded_unix_ms: r.uploaded_unix_ms,
    }
}

fn bad(error: String, fix: &str) -> DomainError {
    DomainError::BadRequest {
        error,
        fix: Some(fix.into()),
    }
}

/// Whether `device` falls in the first `percent` % of release `name`/`version`'s canary
/// (a stable hash: the same devices stay in as the share grows).
fn in_canary(device: &str, name: &str, version: &str, percent: u8) -> bool {
    if percent >= 100 {
        return true;
    }
    let digest = Sha256::new()
        .chain_update(device.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .chain_update([0])
        .chain_update(version.as_bytes())
        .finalize();
    u16::from_le_bytes([digest[0], digest[1]]) % 100 < u16::from(percent)
}

impl Sphere {
    /// Publish the release `signed` (JSON of a [`SignedRelease`]) with its `model` file.
    /// Publishing the same release again answers it as stored; another file under the same
    /// name and version is a conflict.
    pub fn publish_release(
        &self,
        operator: &str,
        signed: &[u8],
        model: &[u8],
    ) -> Result<ReleaseSummary, DomainError> {
        if self.release_keys.is_empty() {
            return Err(bad(
                "this server trusts no release keys, so it cannot accept releases".into(),
                "start sphere-lite with --release-keys FILE (the public key from `tinylcm model keygen`)",
            ));
        }
        if signed.len() > MAX_MANIFEST_BYTES * 2 {
            return Err(DomainError::TooLarge {
                error: "the signed release is too large".into(),
                fix: None,
            });
        }
        let signed: SignedRelease = serde_json::from_slice(signed).map_err(|e| {
            bad(
                format!("the `release` part is not a signed release: {e}"),
                "send the .release.json written by `tinylcm model sign`",
            )
        })?;
        let manifest = signed.verify(&self.release_keys).map_err(|e| {
            bad(
                e.to_string(),
                "sign with a key whose public half is in --release-keys",
            )
        })?;
        manifest.check_model(model).map_err(|e| {
            bad(
                e.to_string(),
                "upload the model file the release was signed for",
            )
        })?;
        // The walk a device runs before LiteRT sees the file: a release no device could load
        // is refused here rather than rolled out.
        tinylcm_protocol::tflite::verify_tflite(model).map_err(|reason| {
            bad(
                format!("the model is not a well-formed TFLite file ({reason})"),
                "publish the .tflite file your converter wrote, signed with `tinylcm model sign`",
            )
        })?;
        if let Some(existing) = self.tracking.release(&manifest.name, &manifest.version)? {
            if existing.sha256 == manifest.sha256 {
                return Ok(summary(&existing));
            }
            return Err(DomainError::Exists {
                error: format!(
                    "release {} {} exists with another model file",
                    manifest.name, manifest.version
                ),
                fix: Some("give the new model a new version".into()),
            });
        }
        let key = release_key(&manifest.name, &manifest.version)?;
        self.blobs.put(&key, model)?;
        let record = ReleaseRecord {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            size: manifest.size,
            sha256: manifest.sha256.clone(),
            signed,
            blob_key: key.to_string(),
            uploaded_by: operator.to_owned(),
            uploaded_unix_ms: now_unix_ms(),
        };
        if self.tracking.put_release(&record)? == Recorded::AlreadyKnown {
            // Another upload of the same release won the race; it describes the same file.
            if let Some(existing) = self.tracking.release(&record.name, &record.version)? {
                return Ok(summary(&existing));
            }
        }
        tracing::info!(name = %record.name, version = %record.version, by = operator, "release published");
        Ok(summary(&record))
    }

    /// Every release and rollout.
    pub fn list_releases(&self) -> Result<ReleaseList, DomainError> {
        Ok(ReleaseList {
            releases: self.tracking.releases()?.iter().map(summary).collect(),
            rollouts: self.tracking.rollouts()?,
        })
    }

    /// Assign release `name`/`version` to `request.group` (default all devices) for
    /// `request.percent` % of it (default 100).
    pub fn set_rollout(
        &self,
        operator: &str,
        name: &str,
        version: &str,
        request: &RolloutRequest,
    ) -> Result<Rollout, DomainError> {
        let group = request.group.as_deref().unwrap_or(ALL_DEVICES);
        if !valid_package_id(group) {
            return Err(bad(
                format!("invalid group {group:?}"),
                "use \"all\" or a group name of A-Z a-z 0-9 _ -",
            ));
        }
        let percent = request.percent.unwrap_or(100);
        if !(1..=100).contains(&percent) {
            return Err(bad(
                format!("percent {percent} is not 1..=100"),
                "give the share of the group that gets the release",
            ));
        }
        if self.tracking.release(name, version)?.is_none() {
            return Err(DomainError::NotFound {
                error: format!("no release {name} {version}"),
                fix: Some("publish it first (POST /api/v2/models)".into()),
            });
        }
        let old = self
            .tracking
            .rollouts()?
            .into_iter()
            .find(|r| r.group == group);
        // The rest of a canary keeps the group's last full release.
        let previous = old.and_then(|r| {
            if r.percent >= 100 {
                Some((r.name, r.version))
            } else {
                r.previous
            }
        });
        let rollout = Rollout {
            group: group.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            percent,
            previous: previous.filter(|(n, v)| (n.as_str(), v.as_str()) != (name, version)),
            by: operator.to_owned(),
            unix_ms: now_unix_ms(),
        };
        self.tracking.set_rollout(&rollout)?;
        tracing::info!(%group, %name, %version, percent, by = operator, "rollout set");
        Ok(rollout)
    }

    /// The release (name, version) each of `devices` (id and settings) is assigned, for the
    /// fleet overview (rollouts are read once); devices without one are left out.
    pub fn assigned_releases(
        &self,
        devices: &[(&str, &DeviceSettings)],
    ) -> Result<std::collections::HashMap<String, (String, String)>, DomainError> {
        let rollouts = self.tracking.rollouts()?;
        Ok(devices
            .iter()
            .filter_map(|&(id, settings)| {
                assigned(id, settings, &rollouts).map(|release| (id.to_owned(), release))
            })
            .collect())
    }

    /// The release device `device_id` (already authorised) should run, if any.
    pub fn model_for_device(
        &self,
        device_id: &str,
    ) -> Result<Option<ModelAssignment>, DomainError> {
        let settings = self
            .tracking
            .device_settings(device_id)?
            .unwrap_or_default();
        let rollouts = self.tracking.rollouts()?;
        let Some((name, version)) = assigned(device_id, &settings, &rollouts) else {
            return Ok(None);
        };
        let Some(release) = self.tracking.release(&name, &version)? else {
            return Ok(None);
        };
        let key = release_key(&name, &version)?;
        let download_url = match self.blobs.presigned_get(&key, DOWNLOAD_URL_TTL)? {
            Some(url) => url,
            None => tinylcm_protocol::paths::model_file(device_id, &name, &version),
        };
        Ok(Some(ModelAssignment {
            name,
            version,
            size: release.size,
            sha256: release.sha256,
            release: release.signed,
            download_url,
        }))
    }

    /// The release `name`/`version` as device `device_id` (already authorised) may download
    /// it: only a release it is assigned now, or one it was served before while assigned (a
    /// resumed download, a rollback). Anything else is "not found", as for a release that does
    /// not exist, so a device learns nothing about releases that are not its own. Serving an
    /// assigned release records that grant.
    pub fn model_release_for(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<ReleaseRecord, DomainError> {
        let not_found = || DomainError::NotFound {
            error: format!("no release {name} {version}"),
            fix: Some("ask GET /api/v2/devices/{id}/model which release to fetch".into()),
        };
        if !valid_package_id(name) || !valid_package_id(version) {
            return Err(not_found());
        }
        let settings = self
            .tracking
            .device_settings(device_id)?
            .unwrap_or_default();
        if settings.decommissioned {
            return Err(not_found());
        }
        let rollouts = self.tracking.rollouts()?;
        let now = assigned(device_id, &settings, &rollouts)
            .is_some_and(|(n, v)| n == name && v == version);
        if !now && !self.tracking.release_granted(device_id, name, version)? {
            return Err(not_found());
        }
        let release = self
            .tracking
            .release(name, version)?
            .ok_or_else(not_found)?;
        if now && !self.tracking.release_granted(device_id, name, version)? {
            self.tracking.grant_release(device_id, name, version)?;
        }
        Ok(release)
    }

    /// How many bytes of release `name` `version` the blob store really holds, when its record
    /// says `recorded`. Normally `recorded` (its last byte is there); a file damaged on the
    /// server's disk is shorter, and a download must then say its true length, so the device
    /// sees a whole answer shorter than its assignment and leaves the release alone, instead of
    /// a broken answer it would resume again and again. Only that rare damaged case lists the
    /// file to learn its length.
    pub fn stored_model_len(
        &self,
        name: &str,
        version: &str,
        recorded: u64,
    ) -> Result<u64, DomainError> {
        if recorded == 0 {
            return Ok(0);
        }
        let mut last = [0u8; 1];
        let mut tail = self.open_model_file(name, version, recorded - 1, Some(1))?;
        let read = std::io::Read::read(&mut tail, &mut last).map_err(|e| {
            crate::ports::StoreError::new(
                "blobs",
                format!("cannot read the model file of release {name} {version}: {e}"),
            )
        })?;
        if read == 1 {
            return Ok(recorded);
        }
        let key = release_key(name, version)?;
        // The listing gives the size without reading the file (up to 256 MiB) into memory.
        let stored = self
            .blobs
            .list_sizes(key.as_str())?
            .into_iter()
            .find_map(|(k, size)| (k == key).then_some(size))
            .unwrap_or(0);
        tracing::error!(
            release = %format!("{name} {version}"),
            recorded,
            stored,
            "the stored model file is shorter than its release says: it was damaged on this \
             server's disk; publish the release again"
        );
        Ok(stored.min(recorded))
    }

    /// `len` bytes (`None`: to the end) of release `name`/`version`'s model file from byte
    /// `start`, streamed from the blob store; check the device with
    /// [`Sphere::model_release_for`] first.
    pub fn open_model_file(
        &self,
        name: &str,
        version: &str,
        start: u64,
        len: Option<u64>,
    ) -> Result<crate::ports::BlobStream, DomainError> {
        self.blobs
            .open(&release_key(name, version)?, start, len)?
            .ok_or_else(|| DomainError::NotFound {
                error: format!("the model file of release {name} {version} is missing"),
                fix: None,
            })
    }
}

/// The release (name, version) a device with `settings` should run under `rollouts`: its
/// group's rollout, else the `all` rollout; outside a canary, the rollout's previous release.
fn assigned(
    device_id: &str,
    settings: &DeviceSettings,
    rollouts: &[Rollout],
) -> Option<(String, String)> {
    if settings.decommissioned {
        return None;
    }
    let rollout = settings
        .group
        .as_deref()
        .and_then(|g| rollouts.iter().find(|r| r.group == g))
        .or_else(|| rollouts.iter().find(|r| r.group == ALL_DEVICES))?;
    if in_canary(device_id, &rollout.name, &rollout.version, rollout.percent) {
        Some((rollout.name.clone(), rollout.version.clone()))
    } else {
        rollout.previous.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::in_canary;

    #[test]
    fn canary_shares_are_stable_and_roughly_right() {
        let inside = (0..1000)
            .filter(|i| in_canary(&format!("dev-{i}"), "m", "2", 10))
            .count();
        assert!((50..150).contains(&inside), "{inside}");
        // Growing the share keeps the devices already in.
        for i in 0..1000 {
            let d = format!("dev-{i}");
            if in_canary(&d, "m", "2", 10) {
                assert!(in_canary(&d, "m", "2", 50));
            }
        }
        assert!(in_canary("any", "m", "2", 100));
    }
}
