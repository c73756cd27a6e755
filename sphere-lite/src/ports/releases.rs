//! The `ReleaseStore` part of the `Tracking` port.
//!
//! It holds model releases (OTA), each group's rollout and what each device was served.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{Recorded, ReleaseRecord, Rollout, StoreError};

/// Model releases (OTA), each group's rollout and which releases each device was served.
///
/// MLflow: runs and tags of `<ns>/releases`, mirrored in the model registry.
pub trait ReleaseStore: Send + Sync {
    /// Record a verified release (its model blob stored before); idempotent on
    /// (name, version): a second record of the same pair is `AlreadyKnown` and changes nothing.
    /// MLflow: a run of `<ns>/releases` holds the record (tags); the release is also made a
    /// version of the registered model `<ns with / as .>.<name>` (once per run; a repeat of
    /// the publish completes a registration that failed).
    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError>;

    /// One release.
    /// MLflow: `runs/search` of `<ns>/releases` on the name and version tags (oldest run).
    fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>, StoreError>;

    /// Every release, by name then upload time.
    /// MLflow: `runs/search` of `<ns>/releases`, paginated.
    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError>;

    /// Set the rollout of `rollout.group` (replacing the group's previous one).
    /// MLflow: tag `sphere.rollout.<group>` (JSON) of `<ns>/releases`, mirrored as the
    /// registered model's alias `rollout-<group>` (100 %) or `canary-<group>`.
    fn set_rollout(&self, rollout: &Rollout) -> Result<(), StoreError>;

    /// Every group's rollout, by group.
    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError>;

    /// Remember that device `device_id` was served release `name`/`version` while it was
    /// assigned it, so it may fetch that file again later (a resumed download, a rollback)
    /// after its assignment moved on. Idempotent.
    /// MLflow: tag `sphere.granted/<name>/<version>` of the device's experiment.
    fn grant_release(&self, device_id: &str, name: &str, version: &str) -> Result<(), StoreError>;

    /// Whether [`ReleaseStore::grant_release`] was recorded for this device and release.
    /// MLflow: that tag of the device's experiment.
    fn release_granted(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError>;
}
