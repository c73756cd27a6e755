//! The KNN as a plain, versioned, serialisable struct, validated on load.
//!
//! The state store persists [`KnnState`] with serde; whatever comes back is
//! checked before it becomes a [`Knn`] (a damaged or foreign state must not
//! produce a classifier that panics or answers nonsense).

use super::KnnError;
use super::config::KnnConfig;
use super::labels::{LabelId, LabelTable};
use super::memory::{Knn, SampleId};
use crate::features::l2_norm;

/// Version of [`KnnState`] written, and the only one read.
pub const STATE_VERSION: u32 = 1;

/// Everything a [`Knn`] is, as plain data.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Settings.
    pub config: KnnConfig,
    /// Length of each feature vector.
    pub dim: u32,
    /// Label names; a sample's label is an index into this.
    pub labels: Vec<String>,
    /// Id the next added sample gets (greater than every stored id).
    pub next_id: u64,
    /// Row-major feature vectors, `dim` values per sample.
    pub features: Vec<f32>,
    /// Label index per sample.
    pub sample_labels: Vec<u16>,
    /// Id per sample.
    pub sample_ids: Vec<u64>,
    /// Timestamp per sample.
    pub timestamps: Vec<u64>,
}

impl Knn {
    /// The KNN as plain data (samples in storage order).
    pub fn to_state(&self) -> KnnState {
        KnnState {
            version: STATE_VERSION,
            config: self.config,
            dim: self.dim as u32,
            labels: self.labels.names().to_vec(),
            next_id: self.next_id,
            features: self.data.clone(),
            sample_labels: self.sample_labels.iter().map(|l| l.0).collect(),
            sample_ids: self.ids.iter().map(|i| i.0).collect(),
            timestamps: self.timestamps.clone(),
        }
    }

    /// Rebuild a KNN from its state, refusing anything inconsistent: wrong
    /// version, bad settings, lengths that disagree, more samples than
    /// `max_samples`, unknown label indexes, duplicate or too-large ids,
    /// NaN or infinite values.
    pub fn from_state(state: KnnState) -> Result<Self, KnnError> {
        let bad = |m: String| Err(KnnError::InvalidState(m));
        if state.version != STATE_VERSION {
            return bad(format!(
                "version {} (this build reads version {STATE_VERSION})",
                state.version
            ));
        }
        let dim = state.dim as usize;
        let mut knn = Knn::new(dim, state.config)?;
        knn.labels = LabelTable::from_names(state.labels)?;
        knn.class_counts = vec![0; knn.labels.len()];
        knn.reach = vec![f32::INFINITY; knn.labels.len()];
        let n = state.sample_ids.len();
        if state.sample_labels.len() != n || state.timestamps.len() != n {
            return bad(format!(
                "{n} ids, {} labels and {} timestamps: the lengths must match",
                state.sample_labels.len(),
                state.timestamps.len()
            ));
        }
        if state.features.len() != n.saturating_mul(dim) {
            return bad(format!(
                "{} feature values for {n} samples of {dim}",
                state.features.len()
            ));
        }
        if n > knn.config.max_samples {
            return bad(format!(
                "{n} samples, more than max-samples {}",
                knn.config.max_samples
            ));
        }
        if let Some(i) = state.features.iter().position(|v| !v.is_finite()) {
            return bad(format!("feature value {i} is {}", state.features[i]));
        }
        for &l in &state.sample_labels {
            if usize::from(l) >= knn.labels.len() {
                return bad(format!("label index {l} with {} labels", knn.labels.len()));
            }
            knn.class_counts[usize::from(l)] += 1;
        }
        let mut sorted = state.sample_ids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return bad("duplicate sample ids".into());
        }
        if sorted.last().is_some_and(|&max| max >= state.next_id) {
            return bad(format!(
                "a sample id is not below next-id {}",
                state.next_id
            ));
        }
        knn.next_id = state.next_id;
        knn.norms = state.features.chunks_exact(dim).map(l2_norm).collect();
        knn.data = state.features;
        knn.data
            .reserve_exact(knn.config.max_samples * dim - knn.data.len());
        knn.sample_labels = state.sample_labels.into_iter().map(LabelId).collect();
        knn.ids = state.sample_ids.into_iter().map(SampleId).collect();
        knn.timestamps = state.timestamps;
        // Room for max_samples rows, as a new KNN has: adds never reallocate.
        let room = knn.config.max_samples - n;
        knn.norms.reserve_exact(room);
        knn.sample_labels.reserve_exact(room);
        knn.ids.reserve_exact(room);
        knn.timestamps.reserve_exact(room);
        Ok(knn)
    }
}

impl TryFrom<KnnState> for Knn {
    type Error = KnnError;

    fn try_from(state: KnnState) -> Result<Self, KnnError> {
        Knn::from_state(state)
    }
}
