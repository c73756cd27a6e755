//! Where the autonomy layer's state lives in the state store, and how it is restored.
//!
//! The store holds the KNN, the detector states and a little bookkeeping under fixed names,
//! together with the SHA-256 of the model they belong to: after a model update the old
//! KNN (another feature space) is not used, the new model's initial state is.

use serde::{Deserialize, Serialize};

use crate::drift::DetectorSetState;
use crate::knn::{KnnState, ReferenceStats};
use crate::state::{Batch, StateError, Store};

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
