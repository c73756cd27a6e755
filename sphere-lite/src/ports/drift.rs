//! The `DriftStore` part of the `Tracking` port.
//!
//! It holds the Drift Hub's drift events, the operator's decisions and the feedback queues.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use tinylcm_protocol::api::{DriftEventView, FeedbackItem, FeedbackResult, FeedbackVerdict};

use super::{DecideOutcome, Decision, DriftEventFilter, StoreError};

/// The Drift Hub: drift events, the operator's decisions and each device's feedback queue.
///
/// MLflow: one experiment `<ns>/drift-events`; each event is a run tagged
/// `sphere.kind=drift-event`, `sphere.device`, `sphere.event_seq`, `sphere.detector_hex`,
/// `sphere.status`, with the report as the JSON tag `sphere.event` and the metrics
/// `sphere.id` (server id) and `sphere.unix_ms`; a decision is the write-once param
/// `sphere.decision`. Feedback items are write-once params `feedback.<id>` of the device's
/// `feedback-queue` run; the ack watermark is its metric `sphere.feedback_acked`; the
/// device's result of an item is the write-once param `result.<id>` of the same run.
pub trait DriftStore: Send + Sync {
    /// Store new drift events (their `id` is ignored and assigned here, increasing), skipping any
    /// whose (device, event_seq) is stored already; returns how many were new. Idempotent, so
    /// re-processing a package after a crash stores nothing twice.
    /// MLflow: `runs/search` on `sphere.device` + `sphere.event_seq`, then `runs/create` for
    /// the missing ones, with ids from the clock checked for uniqueness after writing.
    fn put_drift_events(&self, events: &[DriftEventView]) -> Result<usize, StoreError>;

    /// One drift event by server id, a decided one with its decision's feedback items and how
    /// far each got ([`DriftEventView::feedback`]: queued, delivered = at or below the
    /// device's ack watermark, applied / refused = the device's result).
    /// MLflow: `runs/search` with `metrics.sphere.id = <id>`; for a decided event also the
    /// device's queue run: its items whose idempotency key is `drift-event/<id>/<n>`, its ack
    /// watermark and its `result.<id>` params.
    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError>;

    /// Drift events matching `filter` with an id above `after`, ascending by id, at most
    /// `limit` (the caller caps it), decided ones with their feedback as in
    /// [`DriftStore::drift_event`].
    /// MLflow: `runs/search` with the filter as tag/metric conditions (the detector through
    /// its hex tag), ordered by `metrics.sphere.id`, `max_results = limit`; the queue run of
    /// each device with a decided event on the page, read once per page.
    fn drift_events(
        &self,
        filter: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError>;

    /// Atomically move a *pending* event to `decision.status` with the audit fields, and queue
    /// `feedback` for its device in the same step (so a decision never exists without its
    /// feedback, nor twice). A decided event is left unchanged: `AlreadyDecided`.
    /// MLflow: the write-once param `sphere.decision` decides (exact across replicas), then
    /// `runs/set-tag sphere.status` and the feedback items (idempotent per event).
    fn decide_drift_event(
        &self,
        id: u64,
        decision: &Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError>;

    /// Queue `verdicts` for `device_id`, each with the next per-device id (1, 2, …).
    /// Returns the ids given.
    /// MLflow: each id claimed as the write-once param `feedback.<id>` of the device's queue run
    /// (unique and increasing across replicas).
    fn append_feedback(
        &self,
        device_id: &str,
        verdicts: &[FeedbackVerdict],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError>;

    /// Unacknowledged feedback of `device_id` with an id above `after`, ascending, at most
    /// `limit`.
    /// MLflow: the queue run's params above the larger of `after` and the ack watermark.
    fn feedback_after(
        &self,
        device_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError>;

    /// Record what `device_id` did with feedback items it was given: per item the first result
    /// stands (a repeat changes nothing); a result for an id never given to the device is
    /// skipped. Returns how many were recorded now.
    /// MLflow: each result claimed as the write-once param `result.<id>` of the device's queue
    /// run (`Taken` = reported before; exact across replicas).
    fn record_feedback_results(
        &self,
        device_id: &str,
        results: &[FeedbackResult],
    ) -> Result<usize, StoreError>;

    /// Acknowledge every item of `device_id` up to `up_to` (clamped to the last id given, never
    /// moving backwards); acknowledged items are never returned again. Returns the watermark.
    /// MLflow: metric `sphere.feedback_acked` logged with `step` = watermark (MLflow's latest
    /// value is the largest step: never backwards); acknowledged params stay but are skipped.
    fn ack_feedback(&self, device_id: &str, up_to: u64) -> Result<u64, StoreError>;
}
