//! The model's original reference samples as a protected set: what adaptation may never
//! evict, and the one piece of ground truth a label-free device carries.
//!
//! The guard's proxy metrics (confidence, distance, class mix) improve whenever frames get a
//! class of their own, so they cannot see a round that teaches the KNN something wrong. The
//! original samples were labelled by a human when the model was made: if, after a round,
//! fewer of them are classified as their own class by their neighbours (leave-one-out, the
//! sample itself excluded), the round has moved a class boundary into territory the model
//! knew — harm the device can measure without a label. [`Protected::agreement`] measures it;
//! the caller rolls back when it falls by more than `protected-drop`.
//!
//! [`Protected::make_room`] keeps the set in the KNN: when the memory is full, a round's
//! samples replace the oldest *learnt* samples, never an original one.

use crate::knn::{Knn, LabelId, Prediction, SampleId};

/// The original reference samples of a model's KNN.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    /// (id, class, features), sorted by id.
    samples: Vec<(SampleId, LabelId, Vec<f32>)>,
}

impl Protected {
    /// Every sample `knn` holds now (call it on the model's initial KNN).
    pub fn of(knn: &Knn) -> Self {
        let mut samples: Vec<_> = knn
            .samples()
            .map(|s| (s.id, s.label, s.features.to_vec()))
            .collect();
        samples.sort_by_key(|(id, _, _)| *id);
        Protected { samples }
    }

    /// Number of protected samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Whether `id` is protected.
    pub fn contains(&self, id: SampleId) -> bool {
        self.samples
            .binary_search_by_key(&id, |(s, _, _)| *s)
            .is_ok()
    }

    /// Whether `label` is a class of the protected samples (a class of the model).
    pub fn has_class(&self, label: LabelId) -> bool {
        self.samples.iter().any(|(_, l, _)| *l == label)
    }

    /// Share of the protected samples that `knn` classifies as their own class, each with
    /// itself left out; `None` without protected samples or when a search fails.
    pub fn agreement(&self, knn: &Knn) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut out = Prediction::with_capacity(knn.config().k);
        let mut agree = 0usize;
        for (id, label, features) in &self.samples {
            knn.predict_excluding(features, *id, &mut out).ok()?;
            agree += usize::from(out.label == Some(*label));
        }
        Some(agree as f64 / self.samples.len() as f64)
    }

    /// Make room for one more sample in `knn`: when its memory is full, remove its oldest
    /// unprotected sample.
    pub fn make_room(&self, knn: &mut Knn) -> Room {
        if knn.len() < knn.config().max_samples {
            return Room::Free;
        }
        match knn
            .samples()
            .map(|s| s.id)
            .filter(|id| !self.contains(*id))
            .min()
        {
            Some(oldest) => {
                knn.remove(oldest);
                Room::Made(oldest)
            }
            None => Room::Full,
        }
    }
}

/// What [`Protected::make_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// The memory had room.
    Free,
    /// This learnt sample was removed.
    Made(SampleId),
    /// The memory is full of protected samples: nothing may be added.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::test_knn::line_knn;

    fn knn(max: usize) -> Knn {
        line_knn(
            &[
                (0.0, "a"),
                (0.1, "a"),
                (0.2, "a"),
                (5.0, "b"),
                (5.1, "b"),
                (5.2, "b"),
            ],
            max,
        )
    }

    #[test]
    fn agreement_sees_a_boundary_moved_into_known_territory() {
        let mut k = knn(100);
        let p = Protected::of(&k);
        assert_eq!(p.agreement(&k), Some(1.0));
        // Wrongly learnt: three "b" samples right among the "a" ones.
        for x in [0.05, 0.15, 0.12] {
            k.add_named("b", &[x], 1).unwrap();
        }
        assert!(p.agreement(&k).unwrap() < 0.6);
        // Learnt far from what the model knew: no harm visible, none done.
        let mut k = knn(100);
        for x in [9.0, 9.1, 9.2] {
            k.add_named("a", &[x], 1).unwrap();
        }
        assert_eq!(p.agreement(&k), Some(1.0));
    }

    #[test]
    fn room_is_made_from_learnt_samples_only() {
        let mut k = knn(7);
        let p = Protected::of(&k);
        assert_eq!(p.make_room(&mut k), Room::Free);
        let learnt = k.add_named("a", &[1.0], 1).unwrap().id;
        assert_eq!(k.len(), 7);
        assert_eq!(p.make_room(&mut k), Room::Made(learnt));
        assert_eq!(k.len(), 6);
        let mut full = knn(6);
        assert_eq!(Protected::of(&full).make_room(&mut full), Room::Full);
    }
}
