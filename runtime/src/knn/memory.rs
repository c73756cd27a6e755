//! The KNN's sample memory: flat row-major storage, parallel metadata,
//! bounded size with eviction, add and remove by id.

use super::KnnError;
use super::config::{Eviction, KnnConfig};
use super::labels::{LabelId, LabelTable};
use crate::features::l2_norm;

/// Identity of a stored sample: its insertion number, unique for the life
/// of a KNN (also across save and load).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SampleId(pub u64);

/// One stored sample, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRef<'a> {
    /// Its id.
    pub id: SampleId,
    /// Its class.
    pub label: LabelId,
    /// The caller's timestamp given at insertion (any monotonic unit).
    pub timestamp: u64,
    /// Its feature vector.
    pub features: &'a [f32],
}

/// What [`Knn::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// Id of the new sample.
    pub id: SampleId,
    /// The sample evicted to make room, if the memory was full.
    pub evicted: Option<SampleId>,
}

/// K-nearest-neighbour classifier over feature vectors, with a bounded
/// memory.
///
/// All vectors live in one contiguous row-major `Vec<f32>` allocated once
/// for `max_samples` rows; labels are interned ids; the per-row norm is
/// cached for the cosine metric. Searching ([`predict`](Knn::predict))
/// writes into a caller-provided [`Prediction`](super::Prediction) and
/// allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    pub(super) config: KnnConfig,
    pub(super) dim: usize,
    pub(super) labels: LabelTable,
    pub(super) data: Vec<f32>,
    pub(super) norms: Vec<f32>,
    pub(super) sample_labels: Vec<LabelId>,
    pub(super) ids: Vec<SampleId>,
    pub(super) timestamps: Vec<u64>,
    pub(super) class_counts: Vec<u32>,
    pub(super) next_id: u64,
    /// Per label: how far a sample of it may be from a query and still be its neighbour
    /// (`INFINITY`: no limit). Not part of the state: the caller sets it after loading.
    pub(super) reach: Vec<f32>,
}

impl Knn {
    /// An empty KNN for vectors of `dim` values.
    pub fn new(dim: usize, config: KnnConfig) -> Result<Self, KnnError> {
        config.validate(dim)?;
        let n = config.max_samples;
        Ok(Knn {
            config,
            dim,
            labels: LabelTable::default(),
            data: Vec::with_capacity(n * dim),
            norms: Vec::with_capacity(n),
            sample_labels: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            class_counts: Vec::new(),
            next_id: 0,
            reach: Vec::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &KnnConfig {
        &self.config
    }

    /// Length of the feature vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of stored samples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no sample is stored.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The label table (ids in [`Prediction`](super::Prediction) index it).
    pub fn labels(&self) -> &LabelTable {
        &self.labels
    }

    /// Id of `name`, adding it to the table if new.
    pub fn intern_label(&mut self, name: &str) -> Result<LabelId, KnnError> {
        let id = self.labels.intern(name)?;
        if self.class_counts.len() < self.labels.len() {
            self.class_counts.resize(self.labels.len(), 0);
        }
        if self.reach.len() < self.labels.len() {
            self.reach.resize(self.labels.len(), f32::INFINITY);
        }
        Ok(id)
    }

    /// Limit how far a sample of class `label` may be from a query and still count as its
    /// neighbour (`None`: no limit, the default). Beyond its reach a sample is not there for
    /// that query: the k nearest samples within reach vote instead. This is the open-set
    /// rule for a class the device proposed from a handful of samples: it may claim only
    /// what lies near them, not every frame that happens to fall on its side of the known
    /// classes. The limit is not saved with [`to_state`](Self::to_state).
    pub fn set_reach(&mut self, label: LabelId, reach: Option<f32>) -> Result<(), KnnError> {
        let slot = self
            .reach
            .get_mut(usize::from(label.0))
            .ok_or(KnnError::UnknownLabel(label.0))?;
        *slot = match reach {
            Some(r) if r.is_finite() && r >= 0.0 => r,
            Some(r) => {
                return Err(KnnError::Config(format!(
                    "reach {r} (a finite distance >= 0)"
                )));
            }
            None => f32::INFINITY,
        };
        Ok(())
    }

    /// The reach of class `label` (see [`set_reach`](Self::set_reach)); `None`: no limit.
    pub fn reach(&self, label: LabelId) -> Option<f32> {
        self.reach
            .get(usize::from(label.0))
            .copied()
            .filter(|r| r.is_finite())
    }

    /// Whether any class has a reach limit.
    pub(super) fn limited(&self) -> bool {
        self.reach.iter().any(|r| r.is_finite())
    }

    /// Stored samples of class `label`.
    pub fn class_count(&self, label: LabelId) -> usize {
        self.class_counts
            .get(usize::from(label.0))
            .map_or(0, |&c| c as usize)
    }

    /// Add a sample of class `label` (from [`intern_label`](Self::intern_label)).
    /// When the memory is full, the eviction policy first removes one sample.
    /// The vector must have `dim` finite values.
    pub fn add(
        &mut self,
        label: LabelId,
        features: &[f32],
        timestamp: u64,
    ) -> Result<Added, KnnError> {
        if self.labels.name(label).is_none() {
            return Err(KnnError::UnknownLabel(label.0));
        }
        check_vector(self.dim, features)?;
        let evicted = if self.len() >= self.config.max_samples {
            self.evict_index().map(|i| self.remove_at(i))
        } else {
            None
        };
        let id = SampleId(self.next_id);
        self.next_id += 1;
        self.data.extend_from_slice(features);
        self.norms.push(l2_norm(features));
        self.sample_labels.push(label);
        self.ids.push(id);
        self.timestamps.push(timestamp);
        self.class_counts[usize::from(label.0)] += 1;
        Ok(Added { id, evicted })
    }

    /// [`add`](Self::add) by label name (interned first).
    pub fn add_named(
        &mut self,
        label: &str,
        features: &[f32],
        timestamp: u64,
    ) -> Result<Added, KnnError> {
        check_vector(self.dim, features)?;
        let id = self.intern_label(label)?;
        self.add(id, features, timestamp)
    }

    /// Remove the sample `id`; false if there is none.
    pub fn remove(&mut self, id: SampleId) -> bool {
        match self.ids.iter().position(|&s| s == id) {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    /// Move every sample of class `from` to class `to` (interned if new), e.g. when a human
    /// names a class the device proposed. Returns how many samples moved (0 when `from` is
    /// unknown); `from` stays in the label table, empty, so old events keep their meaning.
    pub fn relabel(&mut self, from: &str, to: &str) -> Result<usize, KnnError> {
        let Some(from) = self.labels.get(from) else {
            return Ok(0);
        };
        let to = self.intern_label(to)?;
        if from == to {
            return Ok(0);
        }
        let mut moved = 0;
        for label in &mut self.sample_labels {
            if *label == from {
                *label = to;
                moved += 1;
            }
        }
        self.class_counts[usize::from(from.0)] = 0;
        self.class_counts[usize::from(to.0)] += moved as u32;
        Ok(moved)
    }

    /// Remove every sample (labels and the id counter stay).
    pub fn clear(&mut self) {
        self.data.clear();
        self.norms.clear();
        self.sample_labels.clear();
        self.ids.clear();
        self.timestamps.clear();
        self.class_counts.iter_mut().for_each(|c| *c = 0);
    }

    /// The sample `id`, if stored.
    pub fn sample(&self, id: SampleId) -> Option<SampleRef<'_>> {
        self.ids.iter().position(|&s| s == id).map(|i| self.at(i))
    }

    /// All stored samples (in storage order, which removals permute).
    pub fn samples(&self) -> impl Iterator<Item = SampleRef<'_>> {
        (0..self.len()).map(|i| self.at(i))
    }

    pub(super) fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    fn at(&self, i: usize) -> SampleRef<'_> {
        SampleRef {
            id: self.ids[i],
            label: self.sample_labels[i],
            timestamp: self.timestamps[i],
            features: self.row(i),
        }
    }

    /// Row the eviction policy picks: the oldest (smallest timestamp, then
    /// id) among all rows (FIFO) or among the rows of the most populous
    /// classes (class-balanced).
    fn evict_index(&self) -> Option<usize> {
        let top = match self.config.eviction {
            Eviction::Fifo => None,
            Eviction::ClassBalanced => self.class_counts.iter().copied().max(),
        };
        (0..self.len())
            .filter(|&i| {
                top.is_none_or(|t| self.class_counts[usize::from(self.sample_labels[i].0)] == t)
            })
            .min_by_key(|&i| (self.timestamps[i], self.ids[i]))
    }

    /// Remove row `i` by moving the last row into its place.
    fn remove_at(&mut self, i: usize) -> SampleId {
        let last = self.len() - 1;
        if i != last {
            self.data
                .copy_within(last * self.dim..(last + 1) * self.dim, i * self.dim);
        }
        self.data.truncate(last * self.dim);
        self.norms.swap_remove(i);
        let label = self.sample_labels.swap_remove(i);
        self.timestamps.swap_remove(i);
        self.class_counts[usize::from(label.0)] -= 1;
        self.ids.swap_remove(i)
    }
}

/// `dim` finite values, or the error saying what is wrong.
pub(super) fn check_vector(dim: usize, v: &[f32]) -> Result<(), KnnError> {
    if v.len() != dim {
        return Err(KnnError::Dimension {
            expected: dim,
            got: v.len(),
        });
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(KnnError::NonFinite { index }),
        None => Ok(()),
    }
}
