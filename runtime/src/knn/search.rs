//! One neighbour search per query, with everything the caller needs
//! (class, both confidences, the neighbours, their mean distance) written
//! into a reused [`Prediction`].
//!
//! Neighbour order is deterministic: smaller distance first, then the newer
//! sample (larger timestamp), then the lower sample id. The elected class is
//! the one with the most votes (or weight); a tie between classes goes to
//! the class whose nearest neighbour comes first in that order. A class with a reach
//! ([`Knn::set_reach`]) is only a neighbour within it.

use super::KnnError;
use super::config::Vote;
use super::distance::{Metric, cosine_with_norms, euclidean, manhattan};
use super::labels::LabelId;
use super::memory::{Knn, SampleId, check_vector};
use crate::features::l2_norm;
use std::cmp::Ordering;

/// Added to a distance before inverting it for distance-weighted votes, so
/// an exact match weighs a finite amount.
pub const WEIGHT_EPSILON: f32 = 1e-6;

/// One of the k nearest samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The stored sample.
    pub id: SampleId,
    /// Its class.
    pub label: LabelId,
    /// Its distance to the query.
    pub distance: f32,
    /// Its timestamp (the tie rule prefers newer samples).
    pub timestamp: u64,
}

/// Result of one search, reused across queries (its neighbour list keeps
/// its capacity, so the steady state allocates nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction {
    /// Elected class; `None` when the KNN is empty.
    pub label: Option<LabelId>,
    /// The confidence of the configured [`Vote`]: `vote_share` for majority,
    /// `weighted_share` for distance-weighted.
    pub confidence: f32,
    /// Neighbours of the elected class / neighbours found (`k_effective`,
    /// which is less than k when fewer samples are stored).
    pub vote_share: f32,
    /// Σ 1/(d+ε) over neighbours of the elected class / the same over all
    /// neighbours.
    pub weighted_share: f32,
    /// Mean distance of the neighbours found (0 when none).
    pub mean_distance: f32,
    /// The neighbours, nearest first (at most k).
    pub neighbors: Vec<Neighbor>,
}

impl Prediction {
    /// An empty result with room for `k` neighbours.
    pub fn with_capacity(k: usize) -> Self {
        Prediction {
            neighbors: Vec::with_capacity(k),
            ..Prediction::default()
        }
    }

    /// Number of neighbours found (≤ k).
    pub fn k_effective(&self) -> usize {
        self.neighbors.len()
    }

    fn reset(&mut self) {
        self.label = None;
        self.confidence = 0.0;
        self.vote_share = 0.0;
        self.weighted_share = 0.0;
        self.mean_distance = 0.0;
        self.neighbors.clear();
    }
}

/// Neighbour order: distance, then newer timestamp, then lower id.
fn order(a: &Neighbor, b: &Neighbor) -> Ordering {
    a.distance
        .total_cmp(&b.distance)
        .then(b.timestamp.cmp(&a.timestamp))
        .then(a.id.cmp(&b.id))
}

impl Knn {
    /// Find the k nearest samples to `query` and elect a class, into `out`.
    /// The query must have `dim` finite values.
    pub fn predict(&self, query: &[f32], out: &mut Prediction) -> Result<(), KnnError> {
        self.search(query, None, out)
    }

    /// [`predict`](Self::predict) ignoring the stored sample `exclude`
    /// (leave-one-out: a sample's distance to its own copy is not
    /// information).
    pub fn predict_excluding(
        &self,
        query: &[f32],
        exclude: SampleId,
        out: &mut Prediction,
    ) -> Result<(), KnnError> {
        self.search(query, Some(exclude), out)
    }

    fn search(
        &self,
        query: &[f32],
        exclude: Option<SampleId>,
        out: &mut Prediction,
    ) -> Result<(), KnnError> {
        check_vector(self.dim, query)?;
        out.reset();
        match self.config.metric {
            Metric::Euclidean => self.collect(exclude, out, |i| euclidean(query, self.row(i))),
            Metric::Manhattan => self.collect(exclude, out, |i| manhattan(query, self.row(i))),
            Metric::Cosine => {
                let qn = l2_norm(query);
                self.collect(exclude, out, |i| {
                    cosine_with_norms(query, self.row(i), qn, self.norms[i])
                })
            }
        }
        self.elect(out);
        Ok(())
    }

    /// Keep the k best rows in `out.neighbors`, sorted (insertion into a
    /// short sorted list: k is small).
    #[inline(always)]
    fn collect(
        &self,
        exclude: Option<SampleId>,
        out: &mut Prediction,
        dist: impl Fn(usize) -> f32,
    ) {
        let k = self.config.k;
        let limited = self.limited();
        let list = &mut out.neighbors;
        for i in 0..self.len() {
            if exclude == Some(self.ids[i]) {
                continue;
            }
            let label = self.sample_labels[i];
            let distance = dist(i) + 0.0;
            // A sample beyond its class's reach is not there for this query.
            if limited && distance > self.reach[usize::from(label.0)] {
                continue;
            }
            let cand = Neighbor {
                id: self.ids[i],
                label,
                distance,
                timestamp: self.timestamps[i],
            };
            if list.len() == k {
                match list.last() {
                    Some(worst) if order(&cand, worst) == Ordering::Less => {
                        list.pop();
                    }
                    _ => continue,
                }
            }
            let at = list.partition_point(|n| order(n, &cand) == Ordering::Less);
            list.insert(at, cand);
        }
    }

    /// Elect the class and fill the confidences from `out.neighbors`.
    fn elect(&self, out: &mut Prediction) {
        let n = out.neighbors.len();
        if n == 0 {
            return;
        }
        let weight = |d: f32| 1.0 / (d + WEIGHT_EPSILON);
        let total_weight: f32 = out.neighbors.iter().map(|nb| weight(nb.distance)).sum();
        let mut best: Option<(LabelId, f32, usize, f32)> = None;
        for (i, nb) in out.neighbors.iter().enumerate() {
            // Score each class once, at its nearest neighbour (first seen).
            if out.neighbors[..i].iter().any(|p| p.label == nb.label) {
                continue;
            }
            let (votes, w) = out.neighbors[i..]
                .iter()
                .filter(|p| p.label == nb.label)
                .fold((0usize, 0.0f32), |(c, w), p| {
                    (c + 1, w + weight(p.distance))
                });
            let score = match self.config.vote {
                Vote::Majority => votes as f32,
                Vote::DistanceWeighted => w,
            };
            if best.is_none_or(|(_, s, _, _)| score > s) {
                best = Some((nb.label, score, votes, w));
            }
        }
        if let Some((label, _, votes, w)) = best {
            out.label = Some(label);
            out.vote_share = votes as f32 / n as f32;
            out.weighted_share = if total_weight > 0.0 {
                w / total_weight
            } else {
                0.0
            };
            out.confidence = match self.config.vote {
                Vote::Majority => out.vote_share,
                Vote::DistanceWeighted => out.weighted_share,
            };
        }
        out.mean_distance = out.neighbors.iter().map(|nb| nb.distance).sum::<f32>() / n as f32;
    }
}
