//! The `LearningStore` part of the `Tracking` port.
//!
//! It holds what devices report they learnt (adaptation rounds, proposed classes, rollbacks,
//! closed incidents, class renames) and the class renames operators asked for.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use tinylcm_protocol::learning::{ClassRenameView, LearningEventView};

use super::StoreError;

/// A class rename an operator asks for (before it is queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRename {
    /// The class as the device names it now.
    pub from: String,
    /// Its new name (an existing class: merge into it).
    pub to: String,
    /// The operator.
    pub by: String,
    /// When (Unix ms).
    pub unix_ms: u64,
}

/// Devices' learning events and operators' class renames.
///
/// MLflow: learning events are runs of `<ns>/drift-events` tagged
/// `sphere.kind=learning-event`, `sphere.device`, `sphere.package_id`, `sphere.event_seq`,
/// `sphere.epoch`, with the event as the JSON tag `sphere.learning`, started at the device's
/// time of the event (so they list newest first without a metric); a class rename is
/// the device's feedback queue item itself (the queue run keeps every item) plus the
/// write-once param `rename.<id>` of that run with who asked and when.
pub trait LearningStore: Send + Sync {
    /// Store learning events, skipping any whose (device, epoch, event_seq) is stored
    /// already; returns how many were new. Idempotent, so re-processing a package after a
    /// crash stores nothing twice.
    /// MLflow: one `runs/search` per package (device + package id), `runs/create` for the
    /// events it does not hold (a copy made by a racing replica is listed once).
    fn put_learning_events(&self, events: &[LearningEventView]) -> Result<usize, StoreError>;

    /// The newest `limit` learning events of `device_id` (by the device's time, then its
    /// event number), newest first.
    /// MLflow: one page of `runs/search` on kind and device ordered by
    /// `attributes.start_time DESC` (copies left by racing replicas listed once).
    fn learning_events(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<LearningEventView>, StoreError>;

    /// Queue a `Class { from, to }` feedback item for `device_id` and remember who asked, in
    /// one step; returns the item's id.
    /// MLflow: the item as in [`super::DriftStore::append_feedback`], then the write-once
    /// param `rename.<id>` of the queue run.
    fn queue_class_rename(&self, device_id: &str, rename: &ClassRename) -> Result<u64, StoreError>;

    /// The newest `limit` class renames asked for `device_id`, newest first, each with its
    /// feedback item's progress (queued, delivered up to the ack watermark, applied or refused
    /// as the device reported).
    /// MLflow: the queue run's `rename.<id>` params with their `feedback.<id>` items, its
    /// ack watermark and `result.<id>` params.
    fn class_renames(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<ClassRenameView>, StoreError>;
}
