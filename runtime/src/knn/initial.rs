//! The initial KNN memory and the reference statistics the distance-based
//! drift detector compares against, from labelled embeddings.
//!
//! Selection is class-balanced: at most `per_class` samples of each class,
//! evenly spaced through that class's samples in input order (consecutive
//! frames of a folder are often near-duplicates, so "the first N" would
//! cover less variety). The reference is the mean k-NN distance of every
//! input sample against the built memory **without self-matches**: a stored
//! sample does not count its own copy (leave-one-out). The original
//! included the copy (distance ≈ 0), which biased its reference low.

use super::KnnError;
use super::config::KnnConfig;
use super::distance::Metric;
use super::memory::{Knn, SampleId};
use super::search::Prediction;

/// Most values (`samples × dim`) [`build_initial`] holds in memory: 128 MiB.
pub const MAX_INITIAL_VALUES: usize = 32 << 20;

/// How to build the initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialOptions {
    /// Settings of the KNN built.
    pub config: KnnConfig,
    /// Samples kept per class at most (lowered to `max_samples / classes`
    /// when the classes would not all fit).
    pub per_class: usize,
    /// Timestamp given to the stored samples.
    pub timestamp: u64,
}

/// Summary of a set of mean-neighbour distances.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct DistanceStats {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Number of values.
    pub count: usize,
}

/// Reference statistics of one class.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassStats {
    /// Class name.
    pub label: String,
    /// Samples of the class stored in the KNN.
    pub stored: usize,
    /// Mean k-NN distance of the class's input samples.
    pub distance: DistanceStats,
}

/// Reference statistics of the mean k-NN distance, leave-one-out.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceStats {
    /// `k` of the KNN the distances were measured with.
    pub k: usize,
    /// Metric of those distances.
    pub metric: Metric,
    /// Over all input samples.
    pub overall: DistanceStats,
    /// Per class, in label-table order.
    pub per_class: Vec<ClassStats>,
}

/// A built initial state.
#[derive(Debug, Clone, PartialEq)]
pub struct Initial {
    /// The KNN memory.
    pub knn: Knn,
    /// Its reference statistics.
    pub reference: ReferenceStats,
}

/// Build the initial KNN (class-balanced) and its reference statistics from
/// `(label, embedding)` pairs, which must all have the same length.
pub fn build_initial<I>(samples: I, options: &InitialOptions) -> Result<Initial, KnnError>
where
    I: IntoIterator<Item = (String, Vec<f32>)>,
{
    // Group by class, keeping every input: all of them are measured.
    let mut dim = None;
    let mut classes: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    let mut values = 0usize;
    for (label, v) in samples {
        let d = *dim.get_or_insert(v.len());
        super::memory::check_vector(d, &v)?;
        values += d;
        if values > MAX_INITIAL_VALUES {
            return Err(KnnError::Initial(format!(
                "more than {MAX_INITIAL_VALUES} embedding values; use fewer images"
            )));
        }
        match classes.iter_mut().find(|(l, _)| *l == label) {
            Some((_, list)) => list.push(v),
            None => {
                if classes.len() >= super::labels::MAX_LABELS {
                    return Err(KnnError::Label("too many classes".into()));
                }
                classes.push((label, vec![v]));
            }
        }
    }
    let Some(dim) = dim else {
        return Err(KnnError::Initial("no labelled samples".into()));
    };
    let cap = options
        .per_class
        .min(options.config.max_samples / classes.len());
    if options.per_class == 0 {
        return Err(KnnError::Initial("per-class must be at least 1".into()));
    }
    if cap == 0 {
        return Err(KnnError::Initial(format!(
            "{} classes do not fit into max-samples {} (one sample each at least)",
            classes.len(),
            options.config.max_samples
        )));
    }

    let mut knn = Knn::new(dim, options.config)?;
    // Per input sample: its class and, if stored, its id.
    let mut stored: Vec<Vec<Option<SampleId>>> = Vec::with_capacity(classes.len());
    for (label, list) in &classes {
        let id = knn.intern_label(label)?;
        let mut ids = vec![None; list.len()];
        for j in 0..cap.min(list.len()) {
            let i = j * list.len() / cap.min(list.len());
            ids[i] = Some(knn.add(id, &list[i], options.timestamp)?.id);
        }
        stored.push(ids);
    }

    let mut pred = Prediction::with_capacity(options.config.k);
    let mut all = Accumulator::default();
    let mut per_class = Vec::with_capacity(classes.len());
    for ((label, list), ids) in classes.iter().zip(&stored) {
        let mut acc = Accumulator::default();
        for (v, id) in list.iter().zip(ids) {
            match id {
                Some(id) => knn.predict_excluding(v, *id, &mut pred)?,
                None => knn.predict(v, &mut pred)?,
            }
            if pred.k_effective() > 0 {
                let d = f64::from(pred.mean_distance);
                acc.push(d);
                all.push(d);
            }
        }
        per_class.push(ClassStats {
            label: label.clone(),
            stored: ids.iter().flatten().count(),
            distance: acc.stats(),
        });
    }
    Ok(Initial {
        reference: ReferenceStats {
            k: options.config.k,
            metric: options.config.metric,
            overall: all.stats(),
            per_class,
        },
        knn,
    })
}

/// Running sums for [`DistanceStats`].
#[derive(Default)]
struct Accumulator {
    count: usize,
    sum: f64,
    sum_sq: f64,
    min: f64,
    max: f64,
}

impl Accumulator {
    fn push(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        }
        self.count += 1;
        self.sum += x;
        self.sum_sq += x * x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn stats(&self) -> DistanceStats {
        if self.count == 0 {
            return DistanceStats::default();
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        DistanceStats {
            mean,
            std: (self.sum_sq / n - mean * mean).max(0.0).sqrt(),
            min: self.min,
            max: self.max,
            count: self.count,
        }
    }
}
