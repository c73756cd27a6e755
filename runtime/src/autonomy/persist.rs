//! Where the autonomy layer's state lives in the state store, and how it is restored.
//!
//! The store holds the KNN, the detector states and a little bookkeeping under fixed names,
//! together with the SHA-256 of the model they belong to: after a model update the old
//! KNN (another feature space) is not used, the new model's initial state is.
//!
//! The running layer queues its writes (events, counters, checkpoints of the KNN and the
//! detectors) into one batch and hands it to the store's writer without waiting: a busy
//! store defers the batch to the next frame, never the frame.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::drift::DetectorSetState;
use crate::knn::{KnnState, ReferenceStats};
use crate::state::{Batch, StateError, Store, TrySubmitError};

use super::Autonomy;
use super::event::{self, EventKind, RuntimeEvent};

/// `kv` name of the KNN state.
pub const KNN: &str = "knn";
/// `kv` name of the detector states.
pub const DRIFT: &str = "drift";
/// `kv` name of [`Meta`].
pub const META: &str = "autonomy";

/// Counter of frames processed.
pub const FRAMES_COUNTER: &str = "frames";
/// Counter of drift onsets.
pub const DRIFT_COUNTER: &str = "drift.onsets";
/// Counter of incidents opened.
pub const INCIDENTS_COUNTER: &str = "drift.incidents";

/// Bookkeeping saved beside the KNN and detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// SHA-256 of the model the states belong to.
    pub model_sha256: String,
    /// The reference statistics of the KNN's distances (none without a KNN).
    pub reference: Option<ReferenceStats>,
    /// Number the next incident gets.
    pub next_incident: u64,
    /// Number the next adaptation round gets.
    pub next_adaptation: u64,
}

/// What the store held for this model.
#[derive(Debug, Default)]
pub struct Saved {
    /// Bookkeeping.
    pub meta: Option<Meta>,
    /// The KNN.
    pub knn: Option<KnnState>,
    /// The detectors.
    pub drift: Option<DetectorSetState>,
}

/// Read the saved states; states of another model are ignored (and logged).
pub fn load(store: &Store, model_sha256: &str) -> Result<Saved, StateError> {
    let Some(meta) = store.get_state::<Meta>(META)? else {
        return Ok(Saved::default());
    };
    if meta.model_sha256 != model_sha256 {
        tracing::info!(
            saved = %meta.model_sha256,
            running = %model_sha256,
            "the saved KNN and detectors belong to another model; starting from this model's initial state"
        );
        return Ok(Saved::default());
    }
    Ok(Saved {
        knn: store.get_state(KNN)?,
        drift: store.get_state(DRIFT)?,
        meta: Some(meta),
    })
}

/// Queue the current states into `batch`.
pub fn save(
    batch: &mut Batch,
    meta: &Meta,
    knn: Option<&KnnState>,
    drift: &DetectorSetState,
) -> Result<(), StateError> {
    batch.put_state(META, meta)?;
    if let Some(knn) = knn {
        batch.put_state(KNN, knn)?;
    }
    batch.put_state(DRIFT, drift)?;
    Ok(())
}

impl Autonomy {
    /// Queue an event (when there is a store).
    pub(super) fn push(&mut self, kind: EventKind) {
        if self.store.is_none() {
            return;
        }
        let entry = RuntimeEvent {
            unix_ms: event::now_unix_ms(),
            kind,
        };
        if let Err(e) = self.pending.append_event(&entry) {
            tracing::warn!("cannot record an event: {e}");
        }
    }

    /// Queue this frame's events and the `opened` incidents' count (never on frames without
    /// any: no allocation).
    pub(super) fn record(&mut self, closed: Option<EventKind>, opened: u64) {
        if self.store.is_none() {
            return;
        }
        if self.step.events.is_empty() && closed.is_none() {
            if !self.pending.is_empty() {
                self.submit();
            }
            return;
        }
        let unix_ms = event::now_unix_ms();
        let incident = self.incidents.open().map_or(0, |i| i.id);
        for event in &self.step.events {
            let entry = RuntimeEvent {
                unix_ms,
                kind: EventKind::Drift {
                    incident,
                    event: *event,
                },
            };
            if let Err(e) = self.pending.append_event(&entry) {
                tracing::warn!("cannot record a drift event: {e}");
            }
        }
        if let Some(kind) = closed {
            if let Err(e) = self.pending.append_event(&RuntimeEvent { unix_ms, kind }) {
                tracing::warn!("cannot record an incident: {e}");
            }
        }
        self.pending
            .increment(DRIFT_COUNTER, self.step.events.len() as u64);
        if opened > 0 {
            self.pending.increment(INCIDENTS_COUNTER, opened);
        }
        self.submit();
    }

    pub(super) fn maybe_checkpoint(&mut self) {
        if self.store.is_some()
            && self.last_checkpoint.elapsed() >= Duration::from_secs(self.config.checkpoint_seconds)
        {
            self.checkpoint();
        }
    }

    /// Queue the KNN and detector states now (also done every `checkpoint-seconds`).
    pub fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if self.store.is_none() {
            return;
        }
        let meta = Meta {
            model_sha256: self.model_sha256.clone(),
            reference: self.side.as_ref().map(|s| s.reference.clone()),
            next_incident: self.incidents.next_id(),
            next_adaptation: self.adaptation.as_ref().map_or(1, |a| a.next_id),
        };
        let knn = self.side.as_ref().map(|s| s.knn.to_state());
        if let Err(e) = save(
            &mut self.pending,
            &meta,
            knn.as_ref(),
            &self.detectors.save(),
        ) {
            tracing::warn!("cannot checkpoint the KNN and detectors: {e}");
        }
        self.pending
            .increment(FRAMES_COUNTER, self.counts.frames - self.frames_counted);
        self.frames_counted = self.counts.frames;
        self.submit();
    }

    fn submit(&mut self) {
        let Some(store) = &self.store else { return };
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        match store.try_submit(batch) {
            Ok(_) => {}
            Err(TrySubmitError::Full { batch, .. }) => {
                self.counts.deferred_writes += 1;
                self.pending = batch;
            }
            Err(TrySubmitError::Stopped(e)) => {
                tracing::error!("the state store stopped; states are no longer saved: {e}");
                self.store = None;
            }
        }
    }

    /// Checkpoint and wait until everything is durable (at a clean stop).
    pub fn finish(&mut self) -> Result<(), StateError> {
        if let Some(q) = &self.quarantine {
            q.flush_thumbnails();
        }
        self.checkpoint();
        if let Some(store) = &self.store {
            if !self.pending.is_empty() {
                store.submit(std::mem::take(&mut self.pending))?;
            }
            store.flush()?;
        }
        // Everything applied is durable now: the inbox may remove those files.
        if let Some(inbox) = &self.inbox {
            for delivery in self.unacked.drain(..) {
                inbox.ack(delivery);
            }
        }
        Ok(())
    }
}
